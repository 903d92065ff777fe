"""SpikeGrad (Thiele, Bichler & Dupret 2019): backpropagation with spikes, trained through its integer ANN.

The spiking network
-------------------
Layers ``l = 1..L`` of signed integrate-and-fire neurons, threshold ``theta`` (``Θ``), no
leak, subtractive reset.  Forward compartment, for every incoming event::

    V_i  <- V_i + sum_j w_ij s_j                       (bias b_i injected once at t = 0)
    s_i  =  +1  if V_i >= Θ                              (spike activation, eq. 3/4)
            -1  if V_i <= -Θ  [and S_i > 0 for ReLU neurons]
    V_i  <- V_i - Θ s_i ;   S_i <- S_i + s_i ;   x_i = η S_i  (trace, eq. 2)

ReLU neurons (convolutions, dense layers) only send a negative spike while their count
``S_i`` is positive, so ``S_i >= 0``; linear neurons (average pooling) are symmetric.  The
first layer multiplies the analog input by its weights; the top layer integrates
``V^L = W^L S^{L-1} + b^L`` and never spikes.

Backward compartment (eq. 6-8), threshold ``Θ_bp`` (``error_threshold``): the top layer's
error compartment starts at ``U^L = α (softmax(V^L) - onehot(y))`` (``α`` = ``alpha``, the
*error scale factor*), every neuron integrates the errors sent down by the layer above and
emits ternary error spikes, gated by the surrogate derivative of its *final* forward
state::

    U_i  <- U_i + sum_k w_ki δ_k
    z_i  =  ±1 if ±U_i >= Θ_bp ;  U_i <- U_i - Θ_bp z_i
    δ_i  =  f'_i z_i,     f'_i = [S_i > 0] (ReLU, eq. 5),  1 (linear)
    ΔW_ij <- ΔW_ij + δ_i x_j      (weight increment accumulator; applied after the pass)

Residual spikes (eq. 16, 19) make the accumulated counts exactly integer-rounded: once a
layer has received all its input, it emits at most one more spike per neuron, ``+1`` if
``V/Θ > 1/2`` (or ``= 1/2`` with ``S >= 0``), ``-1`` if ``V/Θ < -1/2`` (or ``= -1/2`` with
``S <= 0``; ReLU neurons only with ``S > 0``) — rounding half away from zero.  Layers go to
residual mode bottom-up in the forward pass and top-down in the backward pass.  The
event-driven simulation is :mod:`neuroplastic.rules.spikegrad_events`.

The equivalent integer ANN (what this rule computes, eq. 15-20)
---------------------------------------------------------------
With ``R`` = round half away from zero and ``T_l`` the transpose (adjoint) of layer ``l``::

    S^0 = x ;   S^l = R(φ_l((W^l S^{l-1} + b^l) / Θ))   (φ = ReLU or identity)   l < L
    V^L = W^L S^{L-1} + b^L
    E^L = R(α (softmax(V^L) - onehot(y)) / Θ_bp)
    E^l = f'^l ⊙ R(T_{l+1}(E^{l+1}) / Θ_bp),   f'^l = [S^l > 0] (ReLU), 1 (linear)
    ΔW^l = sum_batch E^l ⊗ S^{l-1}   (the weight increments, eq. 14 with η = 1)

These are *exactly* the event simulation's accumulated outputs ``S``, error sums ``E`` and
increments, for any order of events (tests check it layer by layer).  The rule returns::

    grad^l = ΔW^l / (α · batch · κ_l · Θ^l),   κ_L = 1/Θ_bp,  κ_l = κ_{l+1} Θ^{l+1} / Θ_bp

(``Θ^L = 1`` for the top layer).  With ``Θ = Θ_bp = 1`` that is ``ΔW / (α · batch)``: the
paper's *rescaled learning rate* ``η/α`` applied to the batch-mean increments, so the
optimizer's ``lr`` is the paper's ``η``.  Without rounding (``integer=False`` net,
``round_errors=False``) ``grad`` is exactly the gradient of the mean cross-entropy
(``κ`` undoes the thresholds' scaling), which the tests check against autodiff.

Synaptic operations (per layer, summed over the batch, from the integer ANN as in the
paper's figures; the event simulation counts its real events, which can include
redundant spikes)::

    forward  l >= 2:  sum_j |S_j^{l-1}| fanout_j        (accumulations)
    forward  l = 1 :  sum_j [x_j != 0] fanout_j          (the analog input: multiply-accumulates)
    backward l >= 2:  sum_i |E_i^l| fanin_i             (error spikes sent down through W^l)
    backward l = 1 :  0                                  (nothing is sent to the input)
    update   l     :  sum_i |E_i^l| fanin_i             (weight-increment accumulations)
    MACs     l     :  connections of layer l per example (an ANN's forward, and backward, cost)

``aux["synops"]`` holds one batch's counts, ``rule_state`` their running sums; relative
operations are counts / MACs (:func:`relative_synops`).

Memory
------
Integer ANN, per example: the activations ``S^l`` of every layer (as backprop) and the
errors of one layer at a time, ``O(sum_l n_l)`` numbers; ``ΔW`` has the size of the
parameters.  On event hardware each neuron holds ``V``, ``U``, the trace ``x`` and one bit
``f'`` (4 numbers), each synapse its weight and increment.

The model container
-------------------
:class:`~neuroplastic.models.spikegrad.SpikeGradNet` (re-exported here) chains ``Dense``, ``Conv2d`` and ``AvgPool2d`` layers on a static
image (``(C, H, W)`` channels-first, or a flat vector).  It is not a time-stepped
:class:`~neuroplastic.network.Network`: SpikeGrad's neurons have no time constant, a
pass is one presentation whose result depends only on the total input, and layers are
convolutions and poolings on images rather than blocks of cells.  It offers the part of
the ``Network`` interface the :class:`~neuroplastic.train.Trainer` uses (``n_in``,
``spiking``, ``init``, ``run``), so ``Trainer(SpikeGradNet(...), "spikegrad", ...)`` and,
for the float baseline, ``Trainer(SpikeGradNet(..., integer=False), "bptt", ...)`` work.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import get_backend, ops_for
from ..losses import Objective
from ..models.spikegrad import SpikeGradNet, _positive, round_half_away
from ..tree import tree_leaves
from .base import Rule

#: losses that are the cross-entropy of the top layer's ``V^L`` for a one-step output
CE_LOSSES = ("ce_sum", "ce_mean", "ce_last", "ce_max", "ce_per_step")


def top_error(V: Any, labels: Any, alpha: float) -> Any:
    """``α (softmax(V) - onehot(labels))``: what the top layer's error compartment starts from."""
    B = ops_for(V)
    return alpha * (B.softmax(V, axis=-1) - B.one_hot(labels, V.shape[-1]))


def relative_synops(counts: dict, net: SpikeGradNet) -> dict:
    """Relative synaptic operations from counts (``aux["synops"]`` or ``rule_state``).

    Returns per-layer lists and totals: ``fwd`` (forward counts / MACs), ``bwd`` (error
    propagation / backward MACs, layers 2..L), ``update`` (increments / MACs).
    """
    to = lambda a: np.asarray(ops_for(a).to_numpy(a), dtype=np.float64)  # noqa: E731
    macs = to(counts["macs"])
    fwd, bwd, upd = to(counts["fwd"]), to(counts["bwd"]), to(counts["update"])
    safe = np.where(macs > 0, macs, 1.0)
    bwd_macs = macs.copy()
    bwd_macs[0] = 0.0
    return {
        "fwd": list(fwd / safe),
        "bwd": [None] + list(bwd[1:] / safe[1:]),
        "update": list(upd / safe),
        "fwd_total": float(fwd.sum() / max(macs.sum(), 1.0)),
        "bwd_total": float(bwd.sum() / max(bwd_macs.sum(), 1.0)),
        "update_total": float(upd.sum() / max(macs.sum(), 1.0)),
    }


class SpikeGrad(Rule):
    """SpikeGrad's weight increments from its integer ANN (see the module docstring).

    ``alpha``: the error scale factor ``α`` (the paper uses 50-100 on MNIST);
    ``error_threshold``: ``Θ_bp``; ``round_errors=False`` skips the error discretisation
    (then, on an ``integer=False`` net, the gradient is exact backprop).
    """

    name = "spikegrad"
    modes = ("offline",)

    def __init__(self, alpha: float = 100.0, error_threshold: float = 1.0, round_errors: bool = True) -> None:
        self.alpha = _positive(alpha, "alpha")
        self.error_threshold = _positive(error_threshold, "error_threshold")
        self.round_errors = bool(round_errors)

    def __repr__(self) -> str:
        return f"SpikeGrad(alpha={self.alpha}, error_threshold={self.error_threshold}, round_errors={self.round_errors})"

    @staticmethod
    def check_network(network: Any) -> SpikeGradNet:
        if not isinstance(network, SpikeGradNet):
            raise ValueError(f"network: SpikeGrad trains a SpikeGradNet (static feed-forward IF layers), got {type(network).__name__}")
        return network

    def init(self, network: Any, params: dict, key: Any = None) -> dict:
        """Running sums of the synaptic-operation counts (see :func:`relative_synops`)."""
        net = self.check_network(network)
        leaves = tree_leaves(params)
        B = ops_for(leaves[0]) if leaves else get_backend("numpy", dtype="float64")
        z = B.zeros((net.n_layers,))
        return {"synops": {"fwd": z, "bwd": z, "update": z, "macs": z}, "examples": B.zeros(())}

    def _round(self, x: Any) -> Any:
        return round_half_away(x) if self.round_errors else x

    def integer_pass(self, network: SpikeGradNet, params: dict, x: Any, labels: Any) -> dict:
        """Forward and backward pass of the integer ANN on images ``x`` ``(B, *input_shape)``.

        Returns ``inputs`` (``[x, S^1, .., S^{L-1}]``), ``outputs`` (``[S^1, .., V^L]``),
        ``top_error`` (``α(softmax - onehot)``), ``error_counts`` (``R(T(E)/Θ_bp)``, before
        gating), ``errors`` (``E^l``), ``increments`` (``ΔW^l``, summed over the batch) and
        ``synops`` (per-layer counts of this batch, shape ``(L,)`` each).
        """
        net = self.check_network(network)
        B = ops_for(x)
        L = net.n_layers
        outs = net.forward(params, x)
        inputs = [x] + outs[:-1]
        theta_bp = self.error_threshold
        u_top = top_error(outs[-1], labels, self.alpha)
        counts: list = [None] * L
        errors: list = [None] * L
        counts[L - 1] = self._round(u_top / theta_bp)
        errors[L - 1] = counts[L - 1]
        for l in range(L - 2, -1, -1):
            u = net.transpose_layer(l + 1, net.layer_params(params, l + 1), errors[l + 1])
            counts[l] = self._round(u / theta_bp)
            if net.activation(l) == "relu":
                errors[l] = counts[l] * B.astype(outs[l] > 0, outs[l].dtype)
            else:
                errors[l] = counts[l]
        increments = [net.layer_param_grads(l, net.layer_params(params, l), errors[l], inputs[l]) for l in range(L)]

        # synaptic operations of this batch (see the module docstring)
        fwd, bwd, upd, macs = [], [], [], []
        for l in range(L):
            src = B.astype(inputs[l] != 0, x.dtype) if l == 0 else B.abs(inputs[l])
            fwd.append(net.synapse_sum(l, src))
            macs.append(net.synapse_sum(l, B.ones_like(inputs[l])))
            fan = net.synapse_sum_transposed(l, B.abs(errors[l]))
            upd.append(fan if "w" in net.layer_params(params, l) else 0.0 * fan)
            bwd.append(fan if l > 0 else 0.0 * fan)
        synops = {"fwd": B.stack(fwd), "bwd": B.stack(bwd), "update": B.stack(upd), "macs": B.stack(macs)}
        return {
            "inputs": inputs,
            "outputs": outs,
            "top_error": u_top,
            "error_counts": counts,
            "errors": errors,
            "increments": increments,
            "synops": synops,
        }

    def gradient_scales(self, network: SpikeGradNet) -> list[float]:
        """``1 / (α κ_l Θ^l)`` per layer: turns increments into gradients of the summed loss."""
        net = self.check_network(network)
        L = net.n_layers
        kappa = [0.0] * L
        kappa[L - 1] = 1.0 / self.error_threshold
        for l in range(L - 2, -1, -1):
            kappa[l] = kappa[l + 1] * net.layer_threshold(l + 1) / self.error_threshold
        return [1.0 / (self.alpha * kappa[l] * net.layer_threshold(l)) for l in range(L)]

    def gradients(self, network: Any, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        net = self.check_network(network)
        if objective.loss.name not in CE_LOSSES or objective.regularizer is not None:
            raise ValueError(
                f"objective: SpikeGrad's top error is the cross-entropy gradient; use one of {list(CE_LOSSES)}"
                f" without a rate regularizer (got {objective.loss.name!r}"
                f"{' with a regularizer' if objective.regularizer is not None else ''})"
            )
        xs, targets = batch
        x = net.image(xs)
        B = ops_for(x)
        res = self.integer_pass(net, params, x, targets)
        n = x.shape[0]
        scales = self.gradient_scales(net)
        grads = net.param_tree([{k: v * (scales[l] / n) for k, v in res["increments"][l].items()} for l in range(net.n_layers)])
        flat = [B.reshape(o, (1, n, -1)) for o in res["outputs"]]
        loss = objective(flat[-1], targets, {"out": flat}, net.spiking)
        syn = res["synops"]
        state = {
            "synops": {k: rule_state["synops"][k] + syn[k] for k in syn},
            "examples": rule_state["examples"] + n,
        }
        aux = {"loss": loss, "outputs": flat[-1], "spikes": flat, "synops": syn}
        return grads, state, aux


__all__ = ["CE_LOSSES", "SpikeGrad", "SpikeGradNet", "relative_synops", "round_half_away", "top_error"]
