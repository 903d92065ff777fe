"""Online training with postsynaptic estimates (OTPE; Summe, Schaefer & Joshi 2023).

OTTT (:mod:`.ottt`) forgets that a spike of block ``l`` keeps acting on the loss after
its step: the next block's membrane (or the leaky readout) integrates it.  OTPE adds a
running estimate of that postsynaptic effect.  For a chain of blocks
``0 .. r`` (``r`` = readout), with ``mu_l`` the decay of the block *after* ``l``
(``mu_r = 0``: the loss reads the readout directly)::

    eps^l_t, e^l_t = eligibility step (per synapse; e^l_t = dz^l_t/dW^l along block l's own dynamics)
    R^l_t   = mu_l R^l_{t-1} + e^l_t                               postsynaptic estimate
    c^l_t   = mu_l c^l_{t-1} + 1
    gbar^l_t = (mu_l c^l_{t-1} gbar^l_{t-1} + dz^l_t/dI^l_t) / c^l_t   normalised running surrogate slope
    d^l_t   = d l_t / d z^l_t  (direct: the loss at the readout y_t = z^r_t, the rate regulariser at hidden blocks)
    g^r_t   = 0;  g^l_t = ((g^{l+1}_t + d^{l+1}_t) * gbar^{l+1}_t) W^{l+1 T}    signal to block l from above
    dW^l_t  = sum_j g^l_{j,t} R^l_{ij,t} + d^l_{j,t} e^l_{ij,t}       gradient at step t

The signal from above acts through the next block's membrane, hence ``R`` (filtered with
``mu_l``); a block's direct term ``d^l`` (its own regulariser term) does not, hence ``e``.

Each of ``eps, e, R, c, gbar`` advances exactly once per step.  (Slax's OTPE advanced
its trace twice per step; ``tests/test_rule_otpe.py`` checks the recursion above against
a hand-written numpy one.)  ``eps``/``e`` are the per-synapse eligibility vector and trace
of :mod:`.traces` (cell Jacobians by forward-mode autodiff, so ALIF's adaptation is
included).  ``R`` filters ``e`` with the *postsynaptic* decay ``mu_l``: the authors' code
uses the layer's own time constant, which is the same thing when all layers share one;
here hidden layers and the readout usually differ, and ``mu_l`` is the decay that makes
the estimate exact: for one recurrence-free hidden block under a leaky readout and a
per-step loss, OTPE equals BPTT (OTTT does not).  Deeper blocks use ``gbar`` in place of
the upper layers' instantaneous surrogate slopes.

``approximate=True`` is the authors' approximate OTPE, with presynaptic traces only:
``a^l_t`` = OTTT's PSP trace, ``zhat^l_t = mu_l zhat^l_{t-1} + a^l_t``, and
``dW^l_t = (zhat^l_t)^T (g^l_t * gbar^l_t) + (a^l_t)^T (d^l_t * dz^l_t/dI^l_t)`` (the direct
term as OTTT has it).

Modes: online/deferred need a per-step loss; offline takes any loss and the rate
regulariser: the same sums reordered over time (see :meth:`OTPE.gradients`), equal to
deferred for a per-step loss.  Networks: a chain of blocks without extra links.

Memory per sample, online: ``sum_l P_l n_l (k_l + 2)`` for ``eps`` (``k_l`` state
fields), ``e`` and ``R``, plus ``2 n_l + 1`` for ``gbar`` and ``c`` (``P_l`` presynaptic
inputs, ``n_l`` neurons); approximate: ``sum_l (P_l (d_l + 1) + n_l + 1)``.  Both are
independent of ``T``.  Offline (adjoint form, no per-synapse trace):
``T * sum_l (P_l + n_l (k_l + 1)^2)`` for the recorded activity and cell Jacobians.
"""

from __future__ import annotations

from typing import Any

from ..losses import Objective
from ..network import Network
from ..protocols import require_network
from .base import OnlineRule, StepLoss, backend_of, no_regularizer, per_step_loss
from .eprop import add_pieces
from .traces import adjoint_trace_sum, init_eligibility, psp_filter, psp_init, psp_step, single_decay, synapse_sum, trace_step


class OTPE(OnlineRule):
    """OTPE and approximate OTPE (module docstring)."""

    name = "otpe"

    def __init__(self, approximate: bool = False) -> None:
        if not isinstance(approximate, bool):
            raise ValueError(f"approximate must be True or False, got {approximate!r}")
        self.approximate = approximate

    def __repr__(self) -> str:
        return f"OTPE(approximate={self.approximate})"

    def _check(self, network: Any) -> list:
        """Validate the network; the postsynaptic decay ``mu_l`` of every block."""
        network = require_network(network, "OTPE")
        if network.links:
            raise ValueError("network: OTPE supports a chain of blocks without extra links")
        mus = [single_decay(nxt.cell, "OTPE's postsynaptic estimate") for nxt in network.blocks[1:]] + [0.0]
        if self.approximate:
            for blk in network.blocks:
                blk.cell.psp_decays  # noqa: B018 - raises by name for a cell without a declared filter
        return mus

    def init(self, network: Network, params: dict, key: Any = None) -> dict:
        self._check(network)
        return {}

    def online_init(self, network: Network, params: dict, rule_state: Any, batch_size: int) -> dict:
        self._check(network)
        B = backend_of(params)
        blocks = []
        for l, blk in enumerate(network.blocks):
            P = network.presynaptic_size(l)
            c = {"gbar": B.zeros((batch_size, blk.size)), "count": B.zeros((1,))}
            if self.approximate:
                c["a"] = psp_init(B, blk.cell.psp_decays, batch_size, P)
                c["zhat"] = B.zeros((batch_size, P))
            else:
                c["eps"] = init_eligibility(B, tuple(blk.cell.state_names), batch_size, P, blk.size)
                c["R"] = B.zeros((batch_size, P, blk.size))
            blocks.append(c)
        return {"net": network.initial_state(B, batch_size), "blocks": blocks}

    def _down(self, network: Network, params: dict, l: int, g: Any) -> Any:
        """``g W^{l T}``: a signal at block ``l``'s current sent to the block below."""
        c = network.feed_connection(l)
        return c.synapse.transpose(network.connection_params(params, c), g)

    def _step(self, network: Network, params: dict, carry: dict, x_t: Any, step_loss: StepLoss):
        """One online step; ``step_loss`` reads the readout's output only (a per-step loss, no regulariser)."""
        B = backend_of(params)
        mus = self._check(network)
        step = network.step_record(params, carry["net"], x_t, jacobians=True)
        new_blocks, directs = [], []
        for l, blk in enumerate(network.blocks):
            J, pre = step.jacobians[l], network.stacked_presynaptic(l, step.pres, like=x_t)
            old, mu = carry["blocks"][l], mus[l]
            count = mu * old["count"] + 1.0
            c = {"count": count, "gbar": (mu * old["count"] * old["gbar"] + J.z_I) / count}
            if self.approximate:
                c["a"], a = psp_step(blk.cell.psp_decays, old["a"], pre)
                c["zhat"] = mu * old["zhat"] + a
                direct = (a, J.z_I)
            else:
                c["eps"], e = trace_step(J, old["eps"], pre)
                c["R"] = mu * old["R"] + e
                direct = e
            new_blocks.append(c)
            directs.append(direct)

        # the loss reads the readout only, so a hidden block's direct term d^l is zero: it is left
        # out (None) rather than multiplied into a (B, P, n) trace
        outs = list(step.outs)
        (_, loss_t), d_y = B.value_and_grad(lambda y: step_loss(outs[:-1] + [y]), has_aux=True)(outs[-1])
        d_outs = [None] * (len(outs) - 1) + [d_y]
        pieces: dict = {}
        signal = None
        for l in range(len(network.blocks) - 1, -1, -1):
            c, d = new_blocks[l], d_outs[l]
            dW = None
            if self.approximate:
                a, z_I = directs[l]
                if d is not None:
                    dW = B.outer_sum(a, d * z_I)
                if signal is not None:
                    up = B.outer_sum(c["zhat"], signal * c["gbar"])
                    dW = up if dW is None else dW + up
            else:
                if d is not None:
                    dW = synapse_sum(directs[l], d)
                if signal is not None:
                    up = synapse_sum(c["R"], signal)
                    dW = up if dW is None else dW + up
            pieces = add_pieces(pieces, network.split_stacked(l, dW))
            if l > 0:
                g = d if signal is None else (signal if d is None else signal + d)
                signal = self._down(network, params, l, g * c["gbar"])
        new_carry = {"net": step.state, "blocks": new_blocks}
        return network.gradient_tree(params, pieces), new_carry, {"loss": loss_t, "output": step.outs[-1], "spikes": step.outs}

    def online_step(self, network: Network, params: dict, rule_state: Any, carry: dict, x_t: Any, target_t: Any, t: Any, T: int, objective: Objective):
        no_regularizer(objective, self.name)
        return self._step(network, params, carry, x_t, per_step_loss(objective, target_t, t, T))

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        """Offline form: the online sums reordered over time (any loss, rate regulariser included).

        ``sum_t (g_t R_t + d_t e_t) = sum_t (ghat_t + d_t) e_t`` with ``ghat_t = g_t + mu
        ghat_{t+1}`` (and ``zhat`` likewise for the approximate form), and the sum is
        evaluated in adjoint form (see :func:`.traces.adjoint_trace_sum`): no per-synapse trace
        is stored.  ``d_t`` (``dL/dy_t`` at the readout, the regulariser's ``dR/dz^l_t`` at hidden
        blocks) is recorded in a first pass from the whole objective; for a per-step loss this
        equals the deferred (summed online) gradient.
        """
        xs, targets = batch
        B = backend_of(params)
        mus = self._check(network)
        ys, _, rec = network.run(params, xs, record=("state", "current"))
        outs = [B.stop_gradient(o) for o in rec["out"]]
        pres = network.presynaptic_sequences(xs, outs)
        loss, d_outs = B.value_and_grad(lambda o: objective(o[-1], targets, {"out": o}, network.spiking))(outs)
        pieces: dict = {}
        signal = None
        for l in range(len(network.blocks) - 1, -1, -1):
            blk, mu = network.blocks[l], mus[l]
            pre = network.stacked_presynaptic(l, pres, like=xs)
            J = network.jacobians(params, l, rec)
            gbar = running_slope(J.z_I, mu)
            d = d_outs[l]
            if self.approximate:
                a = psp_filter(blk.cell.psp_decays, pre)
                post = d * J.z_I if signal is None else d * J.z_I + reverse_filter(signal * gbar, mu)
                dW = B.outer_sum(a, post)
            else:
                dW = adjoint_trace_sum(J, pre, d if signal is None else d + reverse_filter(signal, mu))
            pieces = add_pieces(pieces, network.split_stacked(l, dW))
            if l > 0:
                g = d if signal is None else signal + d
                signal = self._down(network, params, l, g * gbar)
        return network.gradient_tree(params, pieces), rule_state, {"loss": loss, "outputs": ys, "spikes": rec["out"]}


def running_slope(z_I: Any, mu: float) -> Any:
    """``gbar_t``, the normalised ``mu``-weighted running mean of ``dz/dI`` over time, for ``(T, B, n)``."""
    B = backend_of(z_I)

    def body(c, s_t):
        count, gbar = c
        new = mu * count + 1.0
        gbar = (mu * count * gbar + s_t) / new
        return (new, gbar), gbar

    _, out = B.scan(body, (B.zeros((1,)), B.zeros_like(z_I[0])), z_I)
    return out


def reverse_filter(g: Any, mu: float) -> Any:
    """``ghat_t = g_t + mu ghat_{t+1}`` over axis 0 (``ghat_{T+1} = 0``)."""
    B = backend_of(g)
    if mu == 0.0:
        return g

    def body(acc, g_t):
        acc = g_t + mu * acc
        return acc, acc

    _, out = B.scan(body, B.zeros_like(g[0]), B.flip(g, 0))
    return B.flip(out, 0)
