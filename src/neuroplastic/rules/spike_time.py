"""Exact spike-time gradients (Mostafa 2018) for non-leaky integrate-and-fire neurons.

Mostafa, *Supervised learning based on temporal coding in spiking neural networks*,
IEEE TNNLS 29(7), 2018.  This module holds the rule (:class:`SpikeTime`, registered as
``"spike_time"``) and its exact backward map (:func:`layer_vjp`).  The event-based model
(:class:`SpikeTimeNetwork`), its first-to-spike loss (:class:`FirstToSpike`) and a time
encoder for static features (:func:`encode_times`) live in
:mod:`neuroplastic.models.spike_time` and are re-exported here: the model is not a
time-stepped cell (it maps input spike times to output spike times in closed form).

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

from typing import Any, Sequence


from ..backend import ops_for
from ..losses import Objective
from ..models.spike_time import (  # noqa: F401 - re-exported: the model and the rule are used together
    INF, FirstToSpike, SpikeTimeNetwork, _non_negative, _positive, causal_mask, closed_form_time, encode_times, layer_forward,
)
from .base import Rule

#: which inputs the weight-sum penalty sums over: those that fired in each example, or all
PENALTY_INPUTS = ("fired", "all")


# ---------------------------------------------------------------------------- one layer, backward
def clip_per_layer(grads: list[Any], max_norm: float | None) -> list[Any]:
    """Each layer's gradient rescaled to Euclidean norm at most ``max_norm`` (unchanged when ``None``)."""
    if max_norm is None:
        return grads
    B = ops_for(grads[0])
    return [g * B.minimum(1.0, max_norm / (B.sqrt(B.sum(g * g)) + 1e-12)) for g in grads]


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
        for l in range(network.n_layers):
            w = network.layer_weight(params, l)
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
            grads[l], g_t = layer_vjp(net.layer_weight(params, l), *inputs[l], t, f, t_last, g_t, net.threshold, net.tau_syn)
        pen, pen_grads = self.penalty(net, params, [f for _, f in inputs])
        grads = [g + pg for g, pg in zip(grads, pen_grads)]
        grads = clip_per_layer(grads, self.max_norm)
        aux = {"loss": loss + pen, "penalty": pen, "outputs": outputs, "spikes": rec["out"]}
        return net.param_tree(grads), rule_state, aux


__all__ = [
    "clip_per_layer",
    "FirstToSpike",
    "SpikeTime",
    "SpikeTimeNetwork",
    "causal_mask",
    "closed_form_time",
    "encode_times",
    "layer_forward",
    "layer_vjp",
]
