"""Online training through time (OTTT; Xiao, Meng, Zhang, Wang & Lin, NeurIPS 2022).

OTTT keeps one *presynaptic* trace per input of each block and combines it, at every
step, with the error back-propagated through the layers *within that step*.  For every
connection ``c`` into block ``l`` (the input or lower block's spikes, the block's own
previous spikes if recurrent, ``1`` for a bias, link sources; dense, convolutional or
pooling maps alike) with presynaptic activity ``x^c_t`` and membrane decay ``lambda_l``::

    a^c_t      = lambda_l a^c_{t-1} + x^c_t                   presynaptic trace
    delta^l_t  = d l_t / d I^l_t   (same-step path only)      instantaneous error
    dW^c_t     = c.param_grads(delta^l_t, a^c_t)              gradient at step t ((a^c_t)^T delta^l_t for a dense map)
    dE/dW^c   ~= sum_t dW^c_t

``delta^l_t`` is computed by reverse-mode autodiff of one network step with the previous
state held constant, so it is ``(delta^{l+1}_t W^{l+1 T}) * dz^l_t/dI^l_t`` with the
surrogate derivative of block ``l`` (and skip links are followed too).  The trace filter
is the one the cell declares (``cell.psp_decays``): for a current-based LIF the
double-exponential PSP (``b_t = beta b_{t-1} + x_t``, ``a_t = alpha a_{t-1} + b_t``); for the
leaky readout ``lambda = kappa``; for ``Identity`` no filter (``a_t = x_t``).  The reset is
not differentiated (OTTT's "no leak through reset": the trace decays with ``lambda``
whatever the spikes), adaptation (ALIF) is ignored, recurrent weights get the trace of
``z_{t-1}`` but no credit through the recurrence.

When it is exact: with a detached reset and a voltage-based LIF, ``dz_t/dW = sigma'_t
a_t`` holds exactly, so OTTT equals BPTT for a single spiking layer, and for one hidden
LIF layer under a memoryless readout (``Identity``), with a loss that decomposes over
steps.  Through a leaky readout it drops the readout's memory of earlier hidden spikes
(OTPE adds it back, see :mod:`.otpe`).

Modes: ``online`` and ``deferred`` need a loss with a per-step form (``ce_per_step``,
``ce_last``, ``mse_membrane``).  ``offline`` accepts any loss and the rate regulariser:
a first pass records the outputs and takes ``e_t = dL/dy_t`` (and ``dR/dz^l_t``) by
autodiff; a second pass runs the online step with ``l_t = <e_t, y_t> (+ <dR/dz_t, z_t>)``.
For a per-step loss, offline equals deferred.

Memory per sample (online): the traces, ``sum_l d_l P_l`` numbers (``d_l`` = 1 for a
voltage-based LIF, 2 current-based, 0 for Identity; ``P_l`` presynaptic inputs over all
connections into block ``l``), plus
the network state ``sum_l k_l n_l``: independent of ``T``.  Offline adds ``T * n_out``
for the recorded errors (``T * sum_l n_l`` with the rate regulariser).
"""

from __future__ import annotations

from typing import Any

from ..losses import Objective
from ..network import Hooks, Network
from ..protocols import require_network
from .base import OnlineRule, StepLoss, backend_of, injected_loss, no_regularizer, per_step_loss, recorded_errors
from .traces import psp_init, psp_step


class OTTT(OnlineRule):
    """OTTT: presynaptic traces times the same-step back-propagated error (module docstring)."""

    name = "ottt"
    #: stop gradients between blocks within a step (DCLL sets this)
    cut = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def _check(self, network: Any) -> list:
        """The PSP decays of every block (raises by name for a cell without them)."""
        network = require_network(network, self.name.upper())
        return [blk.cell.psp_decays for blk in network.blocks]

    def init(self, network: Network, params: dict, key: Any = None) -> dict:
        self._check(network)
        return {}

    def online_init(self, network: Network, params: dict, rule_state: Any, batch_size: int) -> dict:
        decays = self._check(network)
        B = backend_of(params)
        traces = [
            psp_init(B, decays[c.dst], batch_size, c.synapse.n_src) if c.trainable else [] for c in network.connections
        ]
        return {"net": network.initial_state(B, batch_size), "traces": traces}

    def _step(self, network: Network, params: dict, rule_state: Any, carry: dict, x_t: Any, step_loss: StepLoss):
        B = backend_of(params)
        decays = self._check(network)
        batch = x_t.shape[0]
        zeros = [B.zeros((batch, blk.size)) for blk in network.blocks]

        def f(offsets: list):
            step = network.step_record(params, carry["net"], x_t, Hooks(offsets=offsets, detach_between_blocks=self.cut))
            total, reported = step_loss(step.outs)
            return total, (reported, step)

        (_, (loss_t, step)), deltas = B.value_and_grad(f, has_aux=True)(zeros)
        pieces, traces = {}, []
        for c in network.connections:
            if not c.trainable:
                traces.append([])
                continue
            pre = B.ones((batch, 1), dtype=x_t.dtype) if c.is_bias else step.pres[c.index]
            stages, a = psp_step(decays[c.dst], carry["traces"][c.index], pre)
            traces.append(stages)
            pieces[c.index] = c.synapse.param_grads(network.connection_params(params, c), deltas[c.dst], a)
        grads = network.gradient_tree(params, pieces)
        return grads, {"net": step.state, "traces": traces}, {"loss": loss_t, "output": step.outs[-1], "spikes": step.outs}

    def online_step(self, network: Network, params: dict, rule_state: Any, carry: dict, x_t: Any, target_t: Any, t: Any, T: int, objective: Objective):
        no_regularizer(objective, self.name)
        return self._step(network, params, rule_state, carry, x_t, per_step_loss(objective, target_t, t, T))

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        """Two-pass offline form (any loss, rate regulariser included); see the module docstring."""
        self._check(network)
        loss, ys, spikes, err, reg = recorded_errors(network, params, batch, objective)
        grads = self._replay(network, params, rule_state, batch[0], {"out": err, "reg": reg})
        return grads, rule_state, {"loss": loss, "outputs": ys, "spikes": spikes}

    def _replay(self, network: Network, params: dict, rule_state: Any, xs: Any, errors: dict) -> dict:
        """Second pass: scan the step with the recorded errors (a pytree of ``(T, ...)`` arrays)
        injected through :meth:`injected_step_loss`; the summed gradients."""
        B = backend_of(params)
        carry0 = self.online_init(network, params, rule_state, xs.shape[1])

        def body(c, inp):
            carry, gsum = c
            x_t, e_t = inp
            g, carry, _ = self._step(network, params, rule_state, carry, x_t, self.injected_step_loss(network, rule_state, e_t))
            return (carry, B.tree_add(gsum, g)), None

        (_, gsum), _ = B.scan(body, (carry0, B.tree_zeros_like(params)), (xs, errors))
        return gsum

    def injected_step_loss(self, network: Network, rule_state: Any, errors_t: dict) -> StepLoss:
        """A step's share of the recorded loss, linearised: ``<dL/dy_t, y_t> (+ <dR/dz^l_t, z^l_t>)``."""
        return injected_loss(errors_t["out"], errors_t["reg"])
