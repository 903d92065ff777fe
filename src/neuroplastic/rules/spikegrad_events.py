"""Event-driven reference simulation of SpikeGrad (Thiele, Bichler & Dupret 2019, algorithms 1-3).

One example at a time, one spike at a time, in numpy float64: the ground truth that the
integer ANN of :mod:`neuroplastic.rules.spikegrad` must reproduce exactly.

Forward (algorithm 1).  Every layer's forward compartment starts at its bias; the first
layer adds the analog input times its weights.  Every neuron whose spike activation is
non-zero fires (one event per spike, repeatedly until it is below threshold), and every
event ``(l, j, s)`` is delivered to layer ``l+1``: ``V <- V + s W[j, :]``, after which
layer ``l+1``'s neurons fire in turn.  The top layer only integrates.  Then the residual
phase: layers ``1..L-1`` in turn emit their residual spikes (eq. 16) and the resulting
events are propagated (the layers above in standard mode) before the next layer goes
residual.

Backward (algorithm 2).  The top error compartment starts at ``α (softmax(V^L) - onehot)``
and fires ternary error spikes at ``Θ_bp``; an error event ``δ = f' z`` of neuron ``i``
in layer ``l`` adds ``δ x`` to the weight-increment accumulators of ``i``'s incoming
synapses (``x`` the presynaptic trace, ``η = 1``) and ``δ W[:, i]`` to layer ``l-1``'s
error compartments, which fire in turn.  Then the residual error phase, top layer first
(eq. 19).

Events wait in a queue; ``order`` picks which is delivered next (``"fifo"``, ``"lifo"`` =
the depth-first recursion of algorithm 1, or ``"random"``).  The accumulated outputs and
error sums do not depend on it; the number of events can.  Layer maps are used through
their dense connection matrices ``W[j, i]`` (fine for the small networks this reference
is meant for: memory ``O(sum_l n_{l-1} n_l)``).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import get_backend, ops_for
from ..tree import tree_map
from .spikegrad import SpikeGrad, SpikeGradNet, top_error

ORDERS = ("fifo", "lifo", "random")


@dataclass
class EventResult:
    """What one simulated example (or a batch, summed) leaves behind, per layer ``l = 0..L-1``.

    ``outputs``: accumulated forward outputs ``S^l`` (spike counts; ``V^L`` for the top);
    ``error_counts``: accumulated error spikes ``Z^l`` (before gating);
    ``errors``: accumulated transmitted errors ``E^l = f' Z^l``;
    ``increments``: weight-increment accumulators (structure of the layer's params);
    ``spikes`` / ``error_spikes``: events emitted per layer (residual ones included);
    ``synops_fwd`` / ``synops_bwd``: accumulations the events caused in the layer's
    synapses (forward: into layer ``l``; backward: sent down through layer ``l``).
    """

    outputs: list
    error_counts: list
    errors: list
    increments: list
    spikes: np.ndarray
    error_spikes: np.ndarray
    synops_fwd: np.ndarray
    synops_bwd: np.ndarray
    meta: dict = field(default_factory=dict)


def _np(tree: Any) -> Any:
    return tree_map(lambda a: np.asarray(ops_for(a).to_numpy(a), dtype=np.float64), tree)


def connection_matrices(net: SpikeGradNet, params: dict) -> tuple[list, list, list]:
    """Per layer: dense weights ``W (n_in, n_out)``, bias vector ``(n_out,)``, connection mask."""
    B = get_backend("numpy", dtype="float64")
    mats, biases, masks = [], [], []
    for l in range(net.n_layers):
        p = net.layer_params(params, l)
        shape = net.shapes[l]
        n_in = int(np.prod(shape))
        eye = B.reshape(B.eye(n_in), (n_in,) + shape)
        no_bias = {k: v for k, v in p.items() if k != "b"}
        mats.append(np.asarray(net.apply_layer(l, no_bias, eye)).reshape(n_in, -1))
        biases.append(np.asarray(net.apply_layer(l, p, B.zeros((1,) + shape))).reshape(-1))
        masks.append(np.asarray(net.apply_layer(l, net.ones_params(l, p), eye)).reshape(n_in, -1) != 0)
    return mats, biases, masks


class _Queue:
    def __init__(self, order: str, seed: int | None) -> None:
        self.order = order
        self.items: deque = deque()
        self.rng = random.Random(seed)

    def push(self, item: tuple) -> None:
        self.items.append(item)

    def pop(self) -> tuple:
        if self.order == "fifo":
            return self.items.popleft()
        if self.order == "lifo":
            return self.items.pop()
        k = self.rng.randrange(len(self.items))
        self.items.rotate(-k)
        item = self.items.popleft()
        self.items.rotate(k)
        return item

    def __bool__(self) -> bool:
        return bool(self.items)


def simulate_example(
    net: SpikeGradNet,
    params: dict,
    image: Any,
    label: int,
    rule: SpikeGrad,
    order: str = "fifo",
    seed: int | None = 0,
    residual: bool = True,
    matrices: tuple | None = None,
) -> EventResult:
    """Simulate one example (``image`` of shape ``input_shape`` or flat) event by event.

    ``rule`` gives ``alpha`` and ``error_threshold``; ``residual=False`` skips both
    residual phases (then the counts carry the spike discretisation error).
    ``matrices`` reuses :func:`connection_matrices` across examples.
    """
    if not isinstance(net, SpikeGradNet):
        raise ValueError(f"net: expected a SpikeGradNet, got {type(net).__name__}")
    if not isinstance(rule, SpikeGrad):
        raise ValueError(f"rule: expected a SpikeGrad rule, got {type(rule).__name__}")
    if order not in ORDERS:
        raise ValueError(f"order: unknown event order {order!r}; choose one of {list(ORDERS)}")
    if rule.round_errors is False:
        raise ValueError("rule: the event simulation always discretises errors; use round_errors=True")
    params = _np(params)
    x = np.asarray(ops_for(image).to_numpy(image), dtype=np.float64).reshape(-1)
    if x.shape[0] != net.n_in:
        raise ValueError(f"image: expected {net.n_in} values ({net.input_shape}), got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError("image: contains NaN or infinite values")
    mats, biases, masks = matrices if matrices is not None else connection_matrices(net, params)
    fanout = [m.sum(axis=1) for m in masks]
    fanin = [m.sum(axis=0) for m in masks]
    L = net.n_layers
    top = L - 1
    theta, theta_bp = net.threshold, rule.error_threshold
    kinds = [net.activation(l) for l in range(L)]
    queue = _Queue(order, seed)
    spikes = np.zeros(L)
    error_spikes = np.zeros(L)
    syn_f = np.zeros(L)
    syn_b = np.zeros(L)

    # ------------------------------------------------------------------ forward
    V = [b.copy() for b in biases]
    S = [np.zeros_like(b) for b in biases]
    V[0] = V[0] + x @ mats[0]
    syn_f[0] += float(fanout[0][x != 0].sum())  # analog input: multiply-accumulates

    def emit(l: int, s: np.ndarray) -> None:
        idx = np.flatnonzero(s)
        V[l][idx] -= theta * s[idx]
        S[l][idx] += s[idx]
        spikes[l] += len(idx)
        for j in idx:
            queue.push((l, int(j), float(s[j])))

    def fire(l: int) -> None:
        """Standard spike activation (eq. 3/4), repeated until every neuron is below threshold."""
        if l == top:
            return
        while True:
            s = (V[l] >= theta).astype(float)
            neg = V[l] <= -theta
            if kinds[l] == "relu":
                neg &= S[l] > 0
            s -= neg
            if not s.any():
                return
            emit(l, s)

    def drain() -> None:
        while queue:
            l, j, s = queue.pop()
            V[l + 1] += s * mats[l + 1][j]
            syn_f[l + 1] += fanout[l + 1][j]
            fire(l + 1)

    def residual_forward(l: int) -> None:
        """Residual spike activation (eq. 16): one spike makes ``S = R(φ(a))``."""
        r = V[l] / theta
        pos = (r > 0.5) | ((r == 0.5) & (S[l] >= 0))
        neg = (r < -0.5) | ((r == -0.5) & (S[l] <= 0))
        if kinds[l] == "relu":
            neg &= S[l] > 0
        emit(l, pos.astype(float) - neg)

    for l in range(top):
        fire(l)
    drain()
    if residual:
        for l in range(top):
            residual_forward(l)
            drain()
    outputs = [S[l].copy() for l in range(top)] + [V[top].copy()]

    # ------------------------------------------------------------------ backward
    B = get_backend("numpy", dtype="float64")
    gate = [(S[l] > 0).astype(float) if kinds[l] == "relu" else np.ones_like(S[l]) for l in range(top)] + [np.ones_like(V[top])]
    U = [np.zeros_like(b) for b in biases]
    U[top] = np.asarray(top_error(B.asarray(V[top][None]), B.asarray(np.array([int(label)])), rule.alpha))[0]
    Z = [np.zeros_like(b) for b in biases]
    E = [np.zeros_like(b) for b in biases]
    traces = [x.reshape((1,) + net.shapes[0])] + [S[l].reshape((1,) + net.shapes[l + 1]) for l in range(top)]
    increments = [tree_map(np.zeros_like, net.layer_params(params, l)) for l in range(L)]

    def emit_errors(l: int, z: np.ndarray) -> None:
        idx = np.flatnonzero(z)
        U[l][idx] -= theta_bp * z[idx]
        Z[l][idx] += z[idx]
        d = gate[l] * z
        for i in idx:
            if d[i] != 0:
                E[l][i] += d[i]
                error_spikes[l] += 1
                queue.push((l, int(i), float(d[i])))

    def efire(l: int) -> None:
        """Ternary error spike activation, repeated until every compartment is below ``Θ_bp``."""
        while True:
            z = (U[l] >= theta_bp).astype(float) - (U[l] <= -theta_bp)
            if not z.any():
                return
            emit_errors(l, z)

    def edrain() -> None:
        while queue:
            l, i, d = queue.pop()
            # weight increments of neuron i's incoming synapses (eq. 8)
            g = np.zeros((1,) + net.shapes[l + 1])
            g.reshape(-1)[i] = d
            inc = net.layer_param_grads(l, net.layer_params(params, l), g, traces[l])
            increments[l] = tree_map(lambda a, b: a + b, increments[l], inc)
            if l > 0:  # send the error down through the same synapses
                U[l - 1] += d * mats[l][:, i]
                syn_b[l] += fanin[l][i]
                efire(l - 1)

    def residual_backward(l: int) -> None:
        """Residual error activation (eq. 19): one spike makes ``Z = R(U_total / Θ_bp)``."""
        r = U[l] / theta_bp
        pos = (r > 0.5) | ((r == 0.5) & (Z[l] >= 0))
        neg = (r < -0.5) | ((r == -0.5) & (Z[l] <= 0))
        emit_errors(l, pos.astype(float) - neg)

    efire(top)
    edrain()
    if residual:
        for l in range(top, -1, -1):
            residual_backward(l)
            edrain()
    return EventResult(
        outputs=outputs,
        error_counts=[z.copy() for z in Z],
        errors=[e.copy() for e in E],
        increments=increments,
        spikes=spikes,
        error_spikes=error_spikes,
        synops_fwd=syn_f,
        synops_bwd=syn_b,
        meta={"order": order, "residual": residual},
    )


def simulate_batch(
    net: SpikeGradNet,
    params: dict,
    images: Any,
    labels: Any,
    rule: SpikeGrad,
    order: str = "fifo",
    seed: int | None = 0,
    residual: bool = True,
) -> tuple[list[EventResult], list]:
    """Simulate every example of ``images`` ``(B, ...)``; returns the results and the summed increments."""
    params = _np(params)
    images = np.asarray(ops_for(images).to_numpy(images), dtype=np.float64)
    labels = np.asarray(ops_for(labels).to_numpy(labels)).reshape(-1)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"labels: expected {images.shape[0]} labels for images of shape {images.shape}, got {labels.shape[0]}")
    mats = connection_matrices(net, params)
    results = [
        simulate_example(net, params, images[b], int(labels[b]), rule, order, None if seed is None else seed + b, residual, mats)
        for b in range(images.shape[0])
    ]
    total = [tree_map(np.zeros_like, net.layer_params(params, l)) for l in range(net.n_layers)]
    for r in results:
        total = [tree_map(lambda a, b: a + b, t, inc) for t, inc in zip(total, r.increments)]
    return results, total


def integer_ann_mismatches(net: SpikeGradNet, params: dict, images: np.ndarray, labels: np.ndarray,
                           rule: SpikeGrad) -> tuple[list[EventResult], dict, int]:
    """Simulate every example event by event and count the hidden neurons whose spike count or error sum
    differs from the integer ANN's (:meth:`SpikeGrad.integer_pass`): SpikeGrad's equivalence, checked.

    Returns ``(event results, the ANN pass, mismatched values)``; ``0`` mismatches is the guarantee.
    """
    n = images.shape[0]
    ann = rule.integer_pass(net, params, images, labels)
    mats = connection_matrices(net, params)
    sims = [simulate_example(net, params, images[b], int(labels[b]), rule, matrices=mats) for b in range(n)]
    mismatched = sum(
        int(np.sum(np.stack([s.outputs[l] for s in sims]) != np.asarray(ann["outputs"][l]).reshape(n, -1)))
        + int(np.sum(np.stack([s.errors[l] for s in sims]) != np.asarray(ann["errors"][l]).reshape(n, -1)))
        for l in range(net.n_layers - 1)
    )
    return sims, ann, mismatched


__all__ = ["EventResult", "ORDERS", "connection_matrices", "integer_ann_mismatches", "simulate_batch", "simulate_example"]
