"""Trace feedback: online learning with one presynaptic trace per input and a random feedback error.

The worked example of ``docs/adding-a-rule.md`` (the class below is the whole rule).  At
every step, each block ``l`` receives the readout's error through a fixed random matrix
(``F^l``, as DFA), gated by its cells' surrogate slope, and every connection ``c`` into it
pairs that error with a PSP-filtered trace of its presynaptic activity (``psp_decays`` of
block ``l``'s cell, as OTTT)::

    a^c_t = PSP filter of x^c_t                                   one trace per presynaptic input
    e^r_t = dl_t/dy_t * dz^r_t/dI^r_t                             readout
    e^l_t = (dl_t/dy_t F^{lT}) * dz^l_t/dI^l_t                    hidden blocks
    dW^c_t = c.param_grads(e^{dst(c)}_t, a^c_t)                   ((a^c_t)^T e_t for a dense map)

With a detached reset, a voltage-based LIF's eligibility factorises into ``dz_t/dI_t`` times
the PSP trace, so this is e-prop with random feedback and *presynaptic* traces (``P`` numbers
per block instead of ``P n``) under a memoryless readout; with ``F^l`` set to the readout
weights on one hidden layer it equals BPTT there (both are tested).

Modes: online and deferred (a per-step loss).  Memory per sample: ``sum_l d_l P_l`` for the
traces plus the network state; shared: ``sum_l n_l n_out`` for ``F``.
"""

from __future__ import annotations

from .base import OnlineRule, backend_of
from .feedback_alignment import DirectFeedbackAlignment
from .traces import psp_init, psp_step


class TraceFeedback(OnlineRule):
    name, modes = "trace-feedback", ("online", "deferred")

    def init(self, network, params, key=None):
        return DirectFeedbackAlignment().init(network, params, key)  # {"feedback": [F^l (n_l, n_out)]}

    def online_init(self, network, params, rule_state, batch_size):
        B, decays = backend_of(params), [blk.cell.psp_decays for blk in network.blocks]
        return {"net": network.initial_state(B, batch_size),
                "traces": [psp_init(B, decays[c.dst], batch_size, c.synapse.n_src) for c in network.connections]}

    def online_step(self, network, params, rule_state, carry, x_t, target_t, t, T, objective):
        B, step = backend_of(params), network.step_record(params, carry["net"], x_t, jacobians=True)
        loss_t, dy = B.value_and_grad(lambda y: objective.loss.per_step(y, target_t, t, T))(step.outs[-1])
        signals = [B.matmul(dy, B.transpose(F, (1, 0))) for F in rule_state["feedback"]] + [dy]
        traces, pieces = [], {}
        for c in network.connections:
            pre = B.ones((x_t.shape[0], 1), dtype=x_t.dtype) if c.is_bias else step.pres[c.index]
            stages, a = psp_step(network.blocks[c.dst].cell.psp_decays, carry["traces"][c.index], pre)
            traces.append(stages)
            if c.trainable:
                error = signals[c.dst] * step.jacobians[c.dst].z_I
                pieces[c.index] = c.synapse.param_grads(network.connection_params(params, c), error, a)
        aux = {"loss": loss_t, "output": step.outs[-1], "spikes": step.outs}
        return network.gradient_tree(params, pieces), {"net": step.state, "traces": traces}, aux
