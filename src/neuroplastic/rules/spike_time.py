"""Exact spike-time gradients (Mostafa 2018) for non-leaky integrate-and-fire neurons.

Mostafa, *Supervised learning based on temporal coding in spiking neural networks*,
IEEE TNNLS 29(7), 2018.  This module holds the event-based model
(:class:`SpikeTimeNetwork`), its first-to-spike loss (:class:`FirstToSpike`), the rule
(:class:`SpikeTime`, registered as ``"spike_time"``) and a time encoder for static
features (:func:`encode_times`).  The model lives here rather than in ``cells/`` because
it is not a time-stepped cell: it maps input spike times to output spike times in closed
form, and only this rule (or autodiff through the same closed form) trains it.

The neuron
----------
Every neuron fires at most once.  An input spike at ``t_i`` through weight ``w_i`` injects
an exponentially decaying synaptic current into a non-leaky membrane (capacitance 1,
weights absorb ``tau`` = ``tau_syn``)::

    dV/dt = sum_i (w_i / tau) exp(-(t - t_i)/tau) H(t - t_i)
    V(t)  = sum_{i: t_i <= t} w_i (1 - exp(-(t - t_i)/tau))

and the neuron spikes the first time ``V`` reaches ``theta``.  With the transformed time
``z = exp(t/tau)`` and the *causal set* ``C`` (the inputs that arrive before the output
spike), ``V(t_out) = theta`` solves in closed form::

    z_out = sum_{i in C} w_i z_i / (sum_{i in C} w_i - theta)
    t_out = tau ln z_out

Finding the causal set: sort the inputs by time, ``t_(1) <= ... <= t_(n)``; for each
``k`` take ``C_k = {(1)..(k)}``, ``W_k = sum_{C_k} w``, ``A_k = sum_{C_k} w_i
exp((t_i - t_(k))/tau)``.  Inside ``[t_(k), t_(k+1))`` the membrane is
``V = W_k - A_k exp(-(t - t_(k))/tau)``: monotone, rising iff ``A_k > 0``, so it crosses
``theta`` there iff ``W_k > theta``, ``A_k > 0`` and the candidate
``t_k* = t_(k) + tau ln(A_k / (W_k - theta))`` lies in ``[t_(k), t_(k+1))``.  The spike is
the first valid candidate; a neuron with none (or only candidates at ``t >= t_max``)
stays silent.  Sorting is done without a sort op: the pairwise order matrix
``M[k, j] = [j arrives no later than k]`` (ties broken by index) gives every ``W_k`` and
``A_k`` as one batched matmul, and ``t_(k+1)`` as a masked minimum.  All exponentials are
of non-positive time differences, so nothing overflows however late the spikes are.

Exact derivatives
-----------------
With ``D = sum_{i in C} w_i - theta`` (``> 0`` for a spiking neuron) and
``e_i = exp((t_i - t_out)/tau) = z_i / z_out`` (in ``(0, 1]`` for ``i`` in ``C``)::

    dz_out/dw_i = (z_i - z_out) / D          dz_out/dz_i = w_i / D
    dt_out/dw_i = tau (e_i - 1) / D  (< 0)   dt_out/dt_i = w_i e_i / D

(``sum_i w_i e_i = D``, so ``sum_i dt_out/dt_i = 1``: shifting every input shifts the
output by as much).  Inputs outside ``C`` and silent neurons get zero derivatives.  The
rule back-propagates ``dL/dt`` layer by layer with these formulas: with
``q_j = (dL/dt_out_j) / D_j``::

    dL/dw_ij  = tau sum_batch q_j (e_ij - 1) [i in C_j]
    dL/dt_i   = sum_j q_j w_ij e_ij [i in C_j]

Loss
----
The network output is ``-t_out`` of the last layer as ``(1, batch, n_out)`` (silent
neurons report ``t_max``, with zero derivative), so any classification loss reading
``scores = sum over the one step`` works; :class:`FirstToSpike` is the cross-entropy of
``softmax(-t_out / temperature)`` (first-to-spike code: the earliest output wins).  The
loss's derivative with respect to the output times comes from the backend's ``vjp`` of
the objective alone; everything below it is the analytic chain above.  The rule adds
Mostafa's weight-sum penalty, which keeps every neuron able to fire once all its inputs
have arrived (a neuron whose arrived inputs sum to more than ``theta`` always fires: in
the last interval ``V -> sum w > theta``)::

    P = K sum_l sum_j max(0, theta - sum_i w_ij),    dP/dw_ij = -K [sum_i w_ij < theta]

By default (``penalty_inputs="fired"``) the sum runs over the inputs that actually fired
in each example, averaged over the batch,
``P = K mean_b sum_l sum_j max(0, theta - sum_{i fired in b} w_ij)``: Mostafa's form
(``penalty_inputs="all"``) is satisfied by large weights from hidden neurons that have
gone silent, and then output neurons can stay silent for good (a silent neuron gets no
gradient from the loss); we saw whole Yin-Yang runs die that way.

Memory
------
Per example the backward pass needs every layer's spike times and the time of its
neurons' last causal input: ``O(sum_l n_l)`` numbers (the causal sets and ``e_ij`` are
recomputed from them).  The forward pass of layer ``l`` holds, transiently, the
pairwise order matrix ``(n_{l-1}, n_{l-1})`` and the candidates ``(n_{l-1}, n_l)``; the
backward pass the masks ``(n_{l-1}, n_l)``.  So the peak is
``O(B n_{l-1} (n_{l-1} + n_l))`` for the widest layer, independent of any time
resolution (there are no time steps).  Compute per example and layer is
``O(n_{l-1}^2 n_l)`` (the candidate matmuls), against ``O(n_{l-1} n_l)`` for a dense ANN
layer.

``docs/rules/spike_time.md`` has the derivation, the temporal XOR and Yin-Yang results
(``examples/spike_time_xor.py``, ``examples/spike_time_yinyang.py``) and an ablation of
the weight-sum penalty and gradient clipping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..backend import Backend, get_backend, ops_for
from ..losses import Loss, Objective, cross_entropy
from .base import Rule

INF = float("inf")
#: which inputs the weight-sum penalty sums over: those that fired in each example, or all
PENALTY_INPUTS = ("fired", "all")


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return float(value)


def _non_negative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: expected a non-negative finite number, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------- one layer
def layer_forward(w: Any, t_in: Any, fired_in: Any, threshold: float, tau: float, t_max: float, tol: float = 1e-6) -> tuple[Any, Any, Any]:
    """Spike times of one layer of non-leaky IF neurons (see the module docstring).

    ``w``: weights ``(n_in, n_out)``; ``t_in``: input spike times ``(B, n_in)``;
    ``fired_in``: booleans ``(B, n_in)``, false for silent inputs (their times are ignored).
    Returns ``(t_out, fired_out, t_last)``, each ``(B, n_out)``: the output spike times
    (``t_max`` for silent neurons), whether each neuron fired before ``t_max``, and the
    time of the last input in its causal set (the causal set is every fired input with
    ``t_i <= t_last``).  ``tol`` accepts candidates that fall a relative ``tol`` before
    their interval's start (round-off when ``V`` reaches ``theta`` exactly at an input).
    """
    B = ops_for(w)
    n = t_in.shape[-1]
    ts = B.where(fired_in, t_in, 0.0)
    tk, tj = ts[:, :, None], ts[:, None, :]                      # k: interval, j: other input
    fk, fj = fired_in[:, :, None], fired_in[:, None, :]
    idx = B.arange(n)
    tie = idx[None, :] <= idx[:, None]                           # [k, j] = j <= k
    both = fk & fj
    before = both & ((tj < tk) | ((tj == tk) & tie))            # j in C_k
    after = both & ~before
    wk = B.matmul(B.astype(before, w.dtype), w)                  # (B, n, m): W_k
    decay = B.where(before, B.exp(B.where(before, (tj - tk) / tau, 0.0)), 0.0)
    ak = B.matmul(decay, w)                                      # A_k relative to t_(k)
    t_next = B.min(B.where(after, tj, INF), axis=2)              # (B, n)
    d = wk - threshold
    ok = (d > 0) & (ak > 0) & fk
    ratio = B.where(ok, ak / B.where(ok, d, 1.0), 1.0)
    cand = tk + tau * B.log(ratio)
    valid = ok & (ratio >= 1.0 - tol) & (cand < t_next[:, :, None]) & (cand < t_max)
    first = B.min(B.where(valid, cand, INF), axis=1)            # (B, m)
    fired_out = first < t_max
    kstar = B.argmax(B.where(valid, -cand, -INF), axis=1)      # (B, m)
    t_last = B.sum(B.one_hot(kstar, n) * ts[:, None, :], axis=2)
    t_out = B.where(fired_out, first, t_max)
    return t_out, fired_out, t_last


def causal_mask(t_in: Any, fired_in: Any, fired_out: Any, t_last: Any) -> Any:
    """``C[b, i, j]``: input ``i`` is in output ``j``'s causal set (booleans ``(B, n_in, n_out)``)."""
    B = ops_for(t_in)
    ts = B.where(fired_in, t_in, 0.0)
    return fired_in[:, :, None] & fired_out[:, None, :] & (ts[:, :, None] <= t_last[:, None, :])


def layer_vjp(
    w: Any, t_in: Any, fired_in: Any, t_out: Any, fired_out: Any, t_last: Any, g_out: Any, threshold: float, tau: float
) -> tuple[Any, Any]:
    """Exact ``(dL/dw, dL/dt_in)`` of one layer from ``g_out = dL/dt_out`` ``(B, n_out)``.

    ``dL/dw_ij = tau sum_b q_bj (e_bij - 1) C_bij`` and ``dL/dt_bi = sum_j q_bj w_ij e_bij C_bij``
    with ``q = g_out / D``, ``D_j = sum_{i in C_j} w_ij - theta`` and
    ``e_ij = exp((t_i - t_out_j) / tau)``.  ``dL/dw`` is summed over the batch.
    """
    B = ops_for(w)
    c = causal_mask(t_in, fired_in, fired_out, t_last)
    cf = B.astype(c, w.dtype)
    ts = B.where(fired_in, t_in, 0.0)
    to = B.where(fired_out, t_out, 0.0)
    e = B.where(c, B.exp(B.where(c, (ts[:, :, None] - to[:, None, :]) / tau, 0.0)), 0.0)
    d = B.sum(cf * w[None], axis=1) - threshold
    q = B.where(fired_out, g_out / B.where(fired_out, d, 1.0), 0.0)
    g_w = tau * B.einsum("bj,bij->ij", q, e - cf)
    g_t = B.sum(e * (w[None] * q[:, None, :]), axis=2)
    return g_w, g_t


def closed_form_time(w: Any, t_in: Any, mask: Any, threshold: float, tau: float) -> Any:
    """``t_out = tau ln(sum_C w_i exp(t_i/tau) / (sum_C w_i - theta))`` for a *fixed* causal set.

    ``mask``: 0/1 floats ``(B, n_in, n_out)``.  Smooth in ``w`` and ``t_in``, so autodiff of
    it is a reference for :func:`layer_vjp` (valid where the causal set does not change).
    The times are taken relative to the per-example earliest input to avoid overflow.
    """
    B = ops_for(w)
    ref = B.stop_gradient(B.min(t_in, axis=1, keepdims=True))
    z = B.exp((t_in - ref) / tau)                                # (B, n)
    num = B.sum(mask * (w[None] * z[:, :, None]), axis=1)
    den = B.sum(mask * w[None], axis=1) - threshold
    return ref + tau * B.log(num / den)


# ---------------------------------------------------------------------------- the model
class SpikeTimeNetwork:
    """Feed-forward layers of non-leaky IF neurons that each fire at most once.

    ``n_in`` input channels carry one spike time each (inputs at ``t >= t_max`` are silent);
    ``sizes`` lists the neurons of every layer, the last being the output.  All layers
    share ``threshold`` (``theta``), ``tau_syn`` (``tau``) and the observation window
    ``t_max``: a neuron that has not fired by ``t_max`` is silent and reports ``t_max``.
    Weights start as ``N(init_mean * theta / n, (init_std * theta / sqrt(n))^2)`` for
    ``n`` inputs, so an average neuron gets ``init_mean`` thresholds of total weight.

    Event-based, not time-stepped: :meth:`run` takes ``xs`` of shape ``(1, B, n_in)`` (one
    "step" carrying the input spike times) and returns ``(ys, {}, rec)`` with
    ``ys = -t_out`` as ``(1, B, n_out)`` (so a cross-entropy of ``ys`` is a first-to-spike
    loss), ``rec["out"]`` every layer's fired flags ``(1, B, n_l)`` (spikes per neuron and
    example) and ``rec["times"]`` every layer's spike times ``(B, n_l)``.  It has the part
    of the :class:`~neuroplastic.network.Network` interface the trainer uses (``n_in``,
    ``spiking``, ``init``, ``run``), and ``run`` is differentiable by autodiff (so
    ``"bptt"`` trains it too, through the same closed form).
    """

    def __init__(
        self,
        n_in: int,
        sizes: Sequence[int],
        threshold: float = 1.0,
        tau_syn: float = 1.0,
        t_max: float = 10.0,
        init_mean: float = 2.0,
        init_std: float = 1.0,
    ) -> None:
        if isinstance(n_in, bool) or not (isinstance(n_in, (int, np.integer)) and n_in > 0):
            raise ValueError(f"n_in: expected a positive integer, got {n_in!r}")
        sizes = list(sizes) if isinstance(sizes, (list, tuple)) else sizes
        if not isinstance(sizes, list) or not sizes or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in sizes
        ):
            raise ValueError(f"sizes: expected a non-empty list of positive integers, got {sizes!r}")
        self.n_in = int(n_in)
        self.sizes = [int(s) for s in sizes]
        self.threshold = _positive(threshold, "threshold")
        self.tau_syn = _positive(tau_syn, "tau_syn")
        if isinstance(t_max, bool) or not isinstance(t_max, (int, float, np.integer, np.floating)) or not math.isfinite(t_max):
            raise ValueError(f"t_max: expected a finite number, got {t_max!r}")
        self.t_max = float(t_max)
        if isinstance(init_mean, bool) or not isinstance(init_mean, (int, float, np.integer, np.floating)) or not math.isfinite(init_mean):
            raise ValueError(f"init_mean: expected a finite number, got {init_mean!r}")
        self.init_mean = float(init_mean)
        self.init_std = _non_negative(init_std, "init_std")

    @property
    def n_out(self) -> int:
        return self.sizes[-1]

    @property
    def n_layers(self) -> int:
        return len(self.sizes)

    @property
    def spiking(self) -> list[bool]:
        return [True] * self.n_layers

    def __repr__(self) -> str:
        return (
            f"SpikeTimeNetwork(n_in={self.n_in}, sizes={self.sizes}, threshold={self.threshold}, "
            f"tau_syn={self.tau_syn}, t_max={self.t_max})"
        )

    # ------------------------------------------------------------------ params
    def init_numpy(self, seed: int | np.random.Generator = 0) -> dict:
        """``{"layers": [{"w": (n_{l-1}, n_l)}, ...]}`` as numpy float64 (the same on every backend)."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        layers, n_prev = [], self.n_in
        for n in self.sizes:
            mean = self.init_mean * self.threshold / n_prev
            std = self.init_std * self.threshold / math.sqrt(n_prev)
            layers.append({"w": rng.normal(mean, std, (n_prev, n))})
            n_prev = n
        return {"layers": layers}

    def init(self, seed: int | np.random.Generator = 0, backend: str | Backend = "jax", dtype: str = "float32", device: str | None = None) -> dict:
        """Initial parameters on ``backend`` (see :meth:`init_numpy`)."""
        B = get_backend(backend, device=device, dtype=dtype)
        return B.tree_asarray(self.init_numpy(seed))

    def check_params(self, params: Any) -> None:
        """Raise a ``ValueError`` naming ``params`` unless the weight shapes fit the network."""
        layers = params.get("layers") if isinstance(params, dict) else None
        if not isinstance(layers, (list, tuple)) or len(layers) != self.n_layers:
            raise ValueError(f"params: expected {{'layers': [...]}} with {self.n_layers} layers")
        n_prev = self.n_in
        for l, (p, n) in enumerate(zip(layers, self.sizes)):
            shape = tuple(getattr(p.get("w") if isinstance(p, dict) else None, "shape", ()))
            if shape != (n_prev, n):
                raise ValueError(f"params: layers[{l}]['w'] should have shape {(n_prev, n)}, got {shape}")
            n_prev = n

    def check_input(self, xs: Any, name: str = "xs") -> None:
        """Raise a ``ValueError`` naming ``name`` unless ``xs`` is ``(1, B, n_in)``."""
        shape = tuple(getattr(xs, "shape", ()))
        if len(shape) != 3 or shape[0] != 1 or shape[2] != self.n_in or shape[1] == 0:
            raise ValueError(
                f"{name}: expected input spike times of shape (1, batch, {self.n_in}) (one step carrying times), got {shape}"
            )

    # ------------------------------------------------------------------ forward
    def forward(self, params: dict, t_in: Any) -> list[tuple[Any, Any, Any]]:
        """``[(t, fired, t_last)]`` for every layer from input times ``(B, n_in)`` (see :func:`layer_forward`)."""
        fired = t_in < self.t_max
        out, t = [], t_in
        for p in params["layers"]:
            t, fired, t_last = layer_forward(p["w"], t, fired, self.threshold, self.tau_syn, self.t_max)
            out.append((t, fired, t_last))
        return out

    def spike_times(self, params: dict, xs: Any) -> list[Any]:
        """Every layer's spike times ``(B, n_l)`` (``t_max`` where silent) for ``xs`` ``(1, B, n_in)``."""
        self.check_input(xs)
        return [t for t, _, _ in self.forward(params, xs[0])]

    def run(self, params: dict, xs: Any, state: Any = None, record: bool = False, truncate: int | None = None) -> tuple[Any, dict, dict]:
        """``(ys, {}, rec)``: ``ys = -t_out`` ``(1, B, n_out)``; see the class docstring.

        ``state``, ``record`` and ``truncate`` are accepted for interface compatibility and
        ignored (there is no state across presentations and no time axis).
        """
        self.check_input(xs)
        self.check_params(params)
        B = ops_for(xs)
        layers = self.forward(params, xs[0])
        rec = {
            "out": [B.astype(f, xs.dtype)[None] for _, f, _ in layers],
            "times": [t for t, _, _ in layers],
        }
        return -layers[-1][0][None], {}, rec


# ---------------------------------------------------------------------------- loss
@dataclass(frozen=True)
class FirstToSpike(Loss):
    """Cross-entropy of ``softmax(-t_out / temperature)``: the earliest output neuron is the prediction.

    Reads outputs ``(1, B, C)`` holding ``-t_out`` (what :meth:`SpikeTimeNetwork.run`
    returns); ``temperature`` is in the network's time units.  ``alpha > 0`` adds Göltz et
    al.'s (2021) term ``alpha (exp(t_label / beta) - 1)`` (batch mean), which pulls the
    correct neuron's spike earlier, so a network cannot settle with every output late or
    silent.
    """

    temperature: float = 1.0
    alpha: float = 0.0
    beta: float = 1.0
    name = "first_to_spike"

    def __post_init__(self) -> None:
        _positive(self.temperature, "temperature")
        _non_negative(self.alpha, "alpha")
        _positive(self.beta, "beta")

    def scores(self, outputs: Any) -> Any:
        return ops_for(outputs).sum(outputs, axis=0) / self.temperature

    def __call__(self, outputs: Any, targets: Any, rec: dict | None = None) -> Any:
        value = cross_entropy(self.scores(outputs), targets)
        if self.alpha > 0:
            B = ops_for(outputs)
            t_label = -B.sum(B.sum(outputs, axis=0) * B.one_hot(targets, outputs.shape[-1]), axis=-1)
            value = value + self.alpha * B.mean(B.exp(t_label / self.beta) - 1.0)
        return value


# ---------------------------------------------------------------------------- encoding
def encode_times(features: Any, t_early: float = 0.0, t_late: float = 2.0, bias_time: float | None = None) -> np.ndarray:
    """Static features in ``[0, 1]`` ``(N, C)`` as spike times ``(1, N, C[+1])`` for :class:`SpikeTimeNetwork`.

    ``t = t_early + x (t_late - t_early)`` (Göltz et al. 2021, Kriener et al. 2021);
    ``bias_time`` appends a channel with one spike at that time for every example.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features: expected (N, C), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features: contains NaN or infinite values")
    for name, v in (("t_early", t_early), ("t_late", t_late)):
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise ValueError(f"{name}: expected a finite number, got {v!r}")
    t = t_early + np.clip(x, 0.0, 1.0) * (t_late - t_early)
    if bias_time is not None:
        if not (isinstance(bias_time, (int, float)) and math.isfinite(bias_time)):
            raise ValueError(f"bias_time: expected a finite number or None, got {bias_time!r}")
        t = np.concatenate([t, np.full((t.shape[0], 1), float(bias_time))], axis=1)
    return t[None].astype(np.float32)


# ---------------------------------------------------------------------------- the rule
class SpikeTime(Rule):
    """Mostafa's exact spike-time gradient for a :class:`SpikeTimeNetwork` (see the module docstring).

    ``weight_penalty`` is ``K`` of the weight-sum penalty and ``penalty_inputs`` whether it
    sums over the inputs that fired (``"fired"``, default) or all inputs (``"all"``,
    Mostafa's form).  ``max_norm`` (optional) rescales each layer's gradient to at most
    that Euclidean norm: the derivatives grow as ``1/D`` when ``sum_C w -> theta``, and
    one such step can undo a solution.  ``aux["loss"]`` is the objective plus the
    penalty (what the gradient descends), ``aux["penalty"]`` the penalty alone,
    ``aux["outputs"]`` the network output ``-t_out`` and ``aux["spikes"]`` the fired flags.
    """

    name = "spike_time"
    modes = ("offline",)

    def __init__(self, weight_penalty: float = 1.0, penalty_inputs: str = "fired", max_norm: float | None = None) -> None:
        self.weight_penalty = _non_negative(weight_penalty, "weight_penalty")
        if penalty_inputs not in PENALTY_INPUTS:
            raise ValueError(f"penalty_inputs: expected one of {list(PENALTY_INPUTS)}, got {penalty_inputs!r}")
        self.penalty_inputs = penalty_inputs
        self.max_norm = None if max_norm is None else _positive(max_norm, "max_norm")

    def __repr__(self) -> str:
        return f"SpikeTime(weight_penalty={self.weight_penalty}, penalty_inputs={self.penalty_inputs!r}, max_norm={self.max_norm})"

    @staticmethod
    def check_network(network: Any) -> SpikeTimeNetwork:
        if not isinstance(network, SpikeTimeNetwork):
            raise ValueError(f"network: the spike_time rule needs a SpikeTimeNetwork, got {type(network).__name__}")
        return network

    def penalty(self, network: SpikeTimeNetwork, params: dict, fired: Sequence[Any] | None = None) -> tuple[Any, list[Any]]:
        """``(P, [dP/dw_l])`` of the weight-sum penalty.

        ``fired[l]``: booleans ``(B, n_{l-1})``, which inputs of layer ``l`` fired; with
        ``inputs="fired"`` the penalty is ``K mean_b sum_l sum_j max(0, theta - sum_{i fired}
        w_ij)``, with ``inputs="all"`` (or ``fired=None``) Mostafa's
        ``K sum_l sum_j max(0, theta - sum_i w_ij)``.
        """
        total, grads = 0.0, []
        for l, p in enumerate(params["layers"]):
            w = p["w"]
            B = ops_for(w)
            if self.penalty_inputs == "all" or fired is None:
                short = network.threshold - B.sum(w, axis=0)        # (n_l,)
                total = total + self.weight_penalty * B.sum(B.relu(short))
                grads.append(-self.weight_penalty * B.astype(short > 0, w.dtype)[None] + 0.0 * w)
            else:
                f = B.astype(fired[l], w.dtype)                      # (B, n_{l-1})
                short = network.threshold - B.matmul(f, w)           # (B, n_l)
                total = total + self.weight_penalty * B.mean(B.sum(B.relu(short), axis=1))
                grads.append(-self.weight_penalty * B.matmul(B.transpose(f), B.astype(short > 0, w.dtype)) / f.shape[0])
        return total, grads

    def gradients(self, network: Any, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        net = self.check_network(network)
        xs, targets = batch
        net.check_input(xs)
        net.check_params(params)
        B = ops_for(xs)
        params = B.tree_stop_gradient(params)
        t_in = xs[0]
        layers = net.forward(params, t_in)
        outputs = -layers[-1][0][None]
        rec = {"out": [B.astype(f, xs.dtype)[None] for _, f, _ in layers], "times": [t for t, _, _ in layers]}
        loss, pull = B.vjp(lambda o: objective(o, targets, rec, net.spiking), outputs)
        g_t = -pull(B.ones_like(loss))[0][0]                       # dL/dt_out, (B, n_out)
        inputs = [(t_in, t_in < net.t_max)] + [(t, f) for t, f, _ in layers[:-1]]
        grads: list[Any] = [None] * net.n_layers
        for l in range(net.n_layers - 1, -1, -1):
            t, f, t_last = layers[l]
            grads[l], g_t = layer_vjp(params["layers"][l]["w"], *inputs[l], t, f, t_last, g_t, net.threshold, net.tau_syn)
        pen, pen_grads = self.penalty(net, params, [f for _, f in inputs])
        grads = [g + pg for g, pg in zip(grads, pen_grads)]
        if self.max_norm is not None:
            grads = [g * B.minimum(1.0, self.max_norm / (B.sqrt(B.sum(g * g)) + 1e-12)) for g in grads]
        aux = {"loss": loss + pen, "penalty": pen, "outputs": outputs, "spikes": rec["out"]}
        return {"layers": [{"w": g} for g in grads]}, rule_state, aux


__all__ = [
    "FirstToSpike",
    "SpikeTime",
    "SpikeTimeNetwork",
    "causal_mask",
    "closed_form_time",
    "encode_times",
    "layer_forward",
    "layer_vjp",
]
