"""EventProp: exact gradients of LIF networks from the adjoint with jumps at spike times.

Wunderlich & Pehle, *Event-based backpropagation can compute exact gradients for spiking
neural networks*, Sci. Rep. 11:12829 (2021).  The rule (:class:`EventProp`, registered as
``"eventprop"``) trains an :class:`~neuroplastic.models.event_lif.EventLIFNetwork`, whose
forward pass is an exact event-based simulation; this module holds the backward pass.

Forward (see :mod:`neuroplastic.models.event_lif`)::

    dV/dt = -V/tau_mem + I/tau_syn,  dI/dt = -I/tau_syn,
    I_j += w_ij at every spike of presynaptic i,  V_j -> 0 when V_j = theta.

Adjoint between events
----------------------
With the state ``x = (V, I)``, ``dx/dt = A x``, ``A = [[-1/tau_mem, 1/tau_syn], [0, -1/tau_syn]]``,
the adjoint ``lambda = (lambda_V, lambda_I) = dL/dx`` runs backward in time with
``dlambda/dt = -A^T lambda``::

    dlambda_V/dt = lambda_V / tau_mem,        dlambda_I/dt = (lambda_I - lambda_V) / tau_syn

from ``lambda(t_max) = 0``.  Between events it is solved exactly by the transposed forward
propagator: going back by ``s`` (``x = exp(-s/tau_mem)``, ``y = exp(-s/tau_syn)``,
``k = tau_mem / (tau_mem - tau_syn)``)::

    lambda_V <- x lambda_V,        lambda_I <- k (x - y) lambda_V + y lambda_I
    (tau_mem = inf:  lambda_V <- lambda_V,  lambda_I <- (1 - y) lambda_V + y lambda_I)

so no time grid enters the backward pass either.

Jumps at a spike of neuron ``j`` at ``t*``
------------------------------------------
``V_j(t*) = theta`` defines ``t*``; a perturbation ``dV`` of the membrane just before the spike
moves it by ``dt* = -dV / V'-`` with ``V'- = -theta/tau_mem + I_j(t*)/tau_syn`` (``> 0``).
Moving ``t*`` moves the reset (``dV+ = -V'+ dt*``, ``V'+ = I_j(t*)/tau_syn``), the jump of every
postsynaptic current, and the loss (``dL/dt*``).  A jump ``I_m += w_jm`` that comes ``dt*`` later
leaves, just after it, ``dI_m = (w_jm / tau_syn) dt*`` and ``dV_m = -(w_jm / tau_syn) dt*``
(the state change ``(x'- - x'+) dt*`` of a shifted jump: ``V_m`` is continuous but its slope
jumps).  So::

    lambda_V-  = (V'+ lambda_V+  -  dL/dt*  -  sum_m w_jm (lambda_I,m - lambda_V,m)(t*) / tau_syn) / V'-
    lambda_I-  = lambda_I+

(``V'+ = V'- + theta/tau_mem``: the paper's ``lambda_V- = lambda_V+ + ...`` form; with
``tau_mem = inf`` ``V'+ = V'-``).  ``lambda_I`` is continuous everywhere.

Gradient
--------
A weight acts only through the jumps it causes, so::

    dL/dw_ij = sum over the spikes t_i^k of presynaptic i of lambda_I,j(t_i^k)

(summed over the batch).  This is the paper's ``dL/dw_ji = -tau_syn sum_k lambda_I,j(t_k)``:
its adjoint runs in reversed time and its current is ``tau_mem / tau_syn`` times ours
(``tau_mem dV/dt = -V + I``, ``I`` jumping by ``w``), which changes the sign and the constant
but not the gradient.  The term ``sum_m w_jm (lambda_I,m - lambda_V,m)(t*) / tau_syn`` of the jump above is
``dL/dt*`` seen from layer ``l + 1``, so the layers are processed from the output down, each
one backward over its own input events and spikes.

Loss
----
The output is ``-t_first`` of the last layer, ``(1, B, n_out)`` (``t_max`` for a silent
neuron, with no gradient), as for :class:`~neuroplastic.models.spike_time.SpikeTimeNetwork`:
:class:`~neuroplastic.models.spike_time.FirstToSpike` is the first-spike-time cross-entropy
of the paper's Yin-Yang task (its ``alpha`` term is the paper's
``alpha (exp(t_label/tau_0) - 1)``), and any loss of ``-t_first`` works (its derivative comes
from the backend's ``vjp`` of the objective alone).  A silent output neuron gets no gradient;
``silent_penalty`` (``rho``) adds ``rho mean_b sum_j [output j silent]`` to the reported loss
and, for each silent output of an example, ``-rho / B`` to the weights into it from every
hidden neuron that spiked in that example (the direction that makes it fire), as the
weight-sum penalty of the spike-time rule does for Mostafa's neurons.  It is added after
``max_norm`` clips the loss gradient: clipped together, the loss scaled it away and the
outputs fell silent in half the Yin-Yang/Randman runs (``docs/rules/eventprop.md``).

Memory
------
The backward pass needs, per example and layer, the sorted input events (time, source) and
the layer's own spikes (time, the current at the spike, the input interval it fell in):
``O(number of spikes)``, padded to ``max_spikes`` per neuron, and nothing proportional to a
time resolution ``T`` (there is none).  The adjoint state is two numbers per neuron.
Compute is ``O(E n_l)`` per layer for ``E`` input events (plus the reset loops).

Execution
---------
The event loops have data-dependent lengths (number of events, spikes per interval), so
both the simulation and the adjoint run eagerly through the backend ops, one code path for
torch and JAX (train with ``Trainer(..., jit=False)`` on JAX).  By default
(``EventLIFNetwork(engine="host")``) the loops run on numpy float64 through the numpy
backend's ops and only the loss, the parameters and the gradients live on torch or JAX:
the loops move a few numbers per event, so per-op dispatch dominates and eager torch was
about 9x slower on Yin-Yang (``docs/rules/eventprop.md``).  ``engine="backend"`` runs the same
functions on the framework's arrays.  A fixed-size-buffer ``jit`` version would have to
unroll ``max_spikes`` crossings for every interval of every example.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import ops_for
from ..losses import Objective
from ..models.event_lif import INF, EventLIFNetwork, LayerTrace
from ..models.spike_time import FirstToSpike, _non_negative, _positive  # noqa: F401 - FirstToSpike re-exported: the loss of this rule
from .base import Rule
from .spike_time import clip_per_layer


def adjoint_propagate(lam_V: Any, lam_I: Any, s: Any, tau_syn: float, tau_mem: float, B: Any = None) -> tuple[Any, Any]:
    """The adjoint ``(lambda_V, lambda_I)`` a time ``s >= 0`` earlier, without events (the transposed propagator)."""
    B = B or ops_for(lam_V)
    y = B.exp(-s / tau_syn)
    if tau_mem == INF:
        return lam_V, (1.0 - y) * lam_V + y * lam_I
    x = B.exp(-s / tau_mem)
    k = tau_mem / (tau_mem - tau_syn)
    return x * lam_V, k * (x - y) * lam_V + y * lam_I


def layer_adjoint(
    w: Any, trace: LayerTrace, g_spk: Any, threshold: float, tau_syn: float, tau_mem: float, t_max: float
) -> tuple[Any, Any]:
    """``(dL/dw (n_in, n_out), dL/dt_pre (B, n_in, K_in))`` of one layer by the adjoint pass.

    ``g_spk`` ``(B, n_out, K)``: ``dL/dt`` of every own spike from the loss and the layers above
    (zero in empty slots).  Runs backward from ``t_max`` over the layer's input events, applying
    the jump at each own spike (see the module docstring); ``dL/dt_pre`` is the
    ``sum_j w_ij (lambda_I,j - lambda_V,j)(t_i) / tau_syn`` seen by the presynaptic spikes
    (zero for padding).
    """
    B = ops_for(w)
    batch, n = g_spk.shape[0], w.shape[1]
    n_in, K = w.shape[0], trace.times.shape[2]
    lam_V = B.zeros((batch, n), dtype=w.dtype)
    lam_I = B.zeros((batch, n), dtype=w.dtype)
    t_loc = B.full((batch, n), t_max, dtype=w.dtype)
    pointer = trace.count - 1.0
    g_w = B.zeros((n_in, n), dtype=w.dtype)
    g_events = []
    leak = 0.0 if tau_mem == INF else threshold / tau_mem

    def at(a: Any, idx: Any) -> Any:
        return B.take_along_axis(a, idx[..., None], 2)[..., 0]

    busy = set(np.unique(B.to_numpy(trace.interval)).tolist())   # intervals that hold a spike
    for e in range(trace.n_events, -1, -1):
        while float(e) in busy:                       # own spikes in interval e, the latest first
            idx = B.astype(B.clip(pointer, 0.0, K - 1.0), trace.ev_src.dtype)   # slot of each neuron's next spike
            has = (pointer >= 0) & (at(trace.interval, idx) == float(e))
            if not bool(B.any(has)):
                break
            t_s, I_s, g = at(trace.times, idx), at(trace.current, idx), at(g_spk, idx)
            lv, li = adjoint_propagate(lam_V, lam_I, B.where(has, t_loc - t_s, 0.0), tau_syn, tau_mem, B)
            dv_after = I_s / tau_syn
            dv_before = dv_after - leak
            dv_before = B.where(has, dv_before, 1.0)
            lam_V = B.where(has, (dv_after * lv - g) / dv_before, lam_V)
            lam_I = B.where(has, li, lam_I)
            t_loc = B.where(has, t_s, t_loc)
            pointer = pointer - B.astype(has, w.dtype)
        if e == 0:
            break
        t_ev = trace.ev_t[:, e - 1]
        valid = B.astype(t_ev < t_max, w.dtype)[:, None]
        t_ev = B.minimum(t_ev, t_max)[:, None]
        lam_V, lam_I = adjoint_propagate(lam_V, lam_I, t_loc - t_ev, tau_syn, tau_mem, B)
        t_loc = t_ev + 0.0 * t_loc
        lam_in = lam_I * valid                        # lambda_I of every neuron at this input spike
        src = trace.ev_src[:, e - 1]
        g_w = g_w + B.matmul(B.transpose(B.one_hot(src, n_in), (1, 0)), lam_in)
        g_events.append(B.sum(B.take(w, src, axis=0) * (lam_I - lam_V) * valid, axis=1) / tau_syn)
    n_flat = trace.inverse.shape[1]
    g_events = g_events[::-1]
    g_events += [B.zeros((batch,), dtype=w.dtype)] * (n_flat - len(g_events))
    g_ev = B.stack(g_events, axis=1) if g_events else B.zeros((batch, 0), dtype=w.dtype)
    g_flat = B.take_along_axis(g_ev, B.asarray(trace.inverse), 1)
    return g_w, B.reshape(g_flat, (batch, n_in, n_flat // n_in))


class EventProp(Rule):
    """Exact gradients of an :class:`EventLIFNetwork` by the adjoint method (see the module docstring).

    ``silent_penalty`` (``rho >= 0``, default 0) pushes silent output neurons to fire (see
    Loss in the module docstring).  ``max_norm`` (optional) rescales each layer's loss gradient
    to at most that Euclidean norm (the jump divides by ``V'-``, which is small for a spike
    that barely reaches threshold); the penalty's term is added after the clipping.  ``aux``: ``loss`` (objective plus penalty), ``penalty``,
    ``outputs`` (``-t_first``) and ``spikes`` (spike counts per layer).
    """

    name = "eventprop"
    modes = ("offline",)

    def __init__(self, silent_penalty: float = 0.0, max_norm: float | None = None) -> None:
        self.silent_penalty = _non_negative(silent_penalty, "silent_penalty")
        self.max_norm = None if max_norm is None else _positive(max_norm, "max_norm")

    def __repr__(self) -> str:
        return f"EventProp(silent_penalty={self.silent_penalty}, max_norm={self.max_norm})"

    @staticmethod
    def check_network(network: Any) -> EventLIFNetwork:
        if not isinstance(network, EventLIFNetwork):
            raise ValueError(f"network: the eventprop rule needs an EventLIFNetwork, got {type(network).__name__}")
        return network

    def gradients(self, network: Any, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        net = self.check_network(network)
        xs, targets = batch
        net.check_input(xs)
        net.check_params(params)
        B = ops_for(xs)
        params = B.tree_stop_gradient(params)
        weights, xs_e = net.to_engine(params, xs)
        E = ops_for(xs_e)
        layers = net.simulate(weights, xs_e)
        rec = net.record(layers, xs)
        times = rec["times"][-1]
        outputs = -net.first_times(times)[None]
        loss, pull = B.vjp(lambda o: objective(o, targets, rec, net.spiking), outputs)
        g_first = -pull(B.ones_like(loss))[0][0]                  # dL/dt_first (B, n_out)
        g_first = E.astype(E.asarray(B.to_numpy(g_first)), weights[-1].dtype) if E.name != B.name else g_first
        times_e = layers[-1][0]
        K = times_e.shape[2]
        first_slot = E.astype(E.arange(K) == 0, times_e.dtype)
        g_spk = E.where(times_e < net.t_max, g_first[:, :, None] * first_slot, 0.0)
        grads: list[Any] = [None] * net.n_layers
        for l in range(net.n_layers - 1, -1, -1):
            g_w, g_spk = layer_adjoint(weights[l], layers[l][1], g_spk, net.threshold, net.tau_syn, net.tau_mem, net.t_max)
            grads[l] = net.from_engine(g_w, net.layer_weight(params, l))
        grads = clip_per_layer(grads, self.max_norm)
        pen = 0.0 * loss
        if self.silent_penalty > 0:                    # after the clipping, so the loss cannot scale it away
            silent = B.astype(times[:, :, 0] >= net.t_max, xs.dtype)          # (B, n_out)
            pre = rec["times"][-2] if net.n_layers > 1 else B.transpose(xs, (1, 2, 0))
            pre_fired = B.astype(B.min(pre, axis=2) < net.t_max, xs.dtype)    # (B, n_in of the last layer)
            pen = self.silent_penalty * B.mean(B.sum(silent, axis=1))
            grads[-1] = grads[-1] - self.silent_penalty * B.matmul(B.transpose(pre_fired, (1, 0)), silent) / silent.shape[0]
        aux = {"loss": loss + pen, "penalty": pen, "outputs": outputs, "spikes": rec["out"]}
        return net.param_tree(grads), rule_state, aux


__all__ = ["EventLIFNetwork", "EventProp", "FirstToSpike", "adjoint_propagate", "layer_adjoint"]
