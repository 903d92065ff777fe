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
of :mod:`.eligibility` (cell Jacobians by forward-mode autodiff, so ALIF's adaptation is
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

from ..backend import ops_for
from ..losses import Objective
from ..network import Network
from .base import OnlineRule
from .cell_jacobians import CellJacobians, step_with_jacobians
from .eligibility import (
    block_segments,
    init_eligibility,
    presynaptic_sequence,
    presynaptic_step,
    previous_states,
    split_gradient,
    stacked_weight,
    trace_step,
)
from .ottt import StepLoss, n_presynaptic, no_regularizer, per_step_loss, psp_decays, psp_init, psp_step, single_decay


class OTPE(OnlineRule):
    """OTPE and approximate OTPE (module docstring)."""

    name = "otpe"

    def __init__(self, approximate: bool = False) -> None:
        if not isinstance(approximate, bool):
            raise ValueError(f"approximate must be True or False, got {approximate!r}")
        self.approximate = approximate

    def __repr__(self) -> str:
        return f"OTPE(approximate={self.approximate})"

    def _check(self, network: Network) -> list:
        """Validate the network; the postsynaptic decay ``mu_l`` of every block."""
        if network.links:
            raise ValueError("network: OTPE supports a chain of blocks without extra links")
        mus = [single_decay(nxt.cell, "OTPE's postsynaptic estimate") for nxt in network.blocks[1:]] + [0.0]
        if self.approximate:
            for blk in network.blocks:
                psp_decays(blk.cell)
        return mus

    def init(self, network: Network, params: dict, key: Any = None) -> dict:
        self._check(network)
        return {}

    def online_init(self, network: Network, params: dict, rule_state: Any, batch_size: int) -> dict:
        self._check(network)
        B = ops_for(params["layers"][0]["w"])
        blocks = []
        for l, blk in enumerate(network.blocks):
            P = n_presynaptic(network, l, params)
            c = {"gbar": B.zeros((batch_size, blk.size)), "count": B.zeros((1,))}
            if self.approximate:
                c["a"] = psp_init(B, psp_decays(blk.cell), batch_size, P)
                c["zhat"] = B.zeros((batch_size, P))
            else:
                c["eps"] = init_eligibility(B, tuple(blk.cell.state_names), batch_size, P, blk.size)
                c["R"] = B.zeros((batch_size, P, blk.size))
            blocks.append(c)
        return {"net": network.initial_state(B, batch_size), "blocks": blocks}

    def _step(self, network: Network, params: dict, carry: dict, x_t: Any, step_loss: StepLoss):
        B = ops_for(x_t)
        mus = self._check(network)
        prev_outs = [s["out"] for s in carry["net"]["layers"]]
        outs: list = []
        layers, new_blocks, segs_all, directs = [], [], [], []
        for l, blk in enumerate(network.blocks):
            segs = block_segments(network, l, params)
            pre = presynaptic_step(network, l, x_t, outs, prev_outs, segs)
            current = B.matmul(pre, stacked_weight(network, l, params, segs))
            h_prev = carry["net"]["layers"][l]["cell"]
            new_h, z, J = step_with_jacobians(blk.cell, params["layers"][l]["cell"], h_prev, current)
            old, mu = carry["blocks"][l], mus[l]
            count = mu * old["count"] + 1.0
            c = {"count": count, "gbar": (mu * old["count"] * old["gbar"] + J.z_I) / count}
            if self.approximate:
                c["a"], a = psp_step(psp_decays(blk.cell), old["a"], pre)
                c["zhat"] = mu * old["zhat"] + a
                direct = (a, J.z_I)
            else:
                c["eps"], e = trace_step(J, old["eps"], pre)
                c["R"] = mu * old["R"] + e
                direct = e
            outs.append(z)
            layers.append({"cell": new_h, "out": z})
            new_blocks.append(c)
            segs_all.append(segs)
            directs.append(direct)

        (_, loss_t), d_outs = B.value_and_grad(lambda o: step_loss(o), has_aux=True)(list(outs))
        grads = B.tree_zeros_like(params)
        signal = None
        for l in range(len(network.blocks) - 1, -1, -1):
            c, d = new_blocks[l], d_outs[l]
            if self.approximate:
                a, z_I = directs[l]
                dW = B.einsum("bp,bn->pn", a, d * z_I)
                if signal is not None:
                    dW = dW + B.einsum("bp,bn->pn", c["zhat"], signal * c["gbar"])
            else:
                dW = B.einsum("bpn,bn->pn", directs[l], d)
                if signal is not None:
                    dW = dW + B.einsum("bpn,bn->pn", c["R"], signal)
            split_gradient(network, l, dW, segs_all[l], grads)
            if l > 0:
                g = d if signal is None else signal + d
                signal = B.matmul(g * c["gbar"], B.transpose(params["layers"][l]["w"], (1, 0)))
        new_carry = {"net": {"layers": layers}, "blocks": new_blocks}
        return grads, new_carry, {"loss": loss_t, "output": outs[-1], "spikes": outs}

    def online_step(self, network: Network, params: dict, rule_state: Any, carry: dict, x_t: Any, target_t: Any, t: Any, T: int, objective: Objective):
        no_regularizer(objective, self.name)
        return self._step(network, params, carry, x_t, per_step_loss(objective, target_t, t, T))

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        """Offline form: the online sums reordered over time (any loss, rate regulariser included).

        ``sum_t (g_t R_t + d_t e_t) = sum_t (ghat_t + d_t) e_t`` with ``ghat_t = g_t + mu
        ghat_{t+1}`` (and ``zhat`` likewise for the approximate form), and the sum is
        evaluated in adjoint form (see :func:`adjoint_sum`): no per-synapse trace is stored.
        ``d_t`` (``dL/dy_t`` at the readout, the regulariser's ``dR/dz^l_t`` at hidden blocks)
        is recorded in a first pass from the whole objective; for a per-step loss this equals
        the deferred (summed online) gradient.
        """
        xs, targets = batch
        B = ops_for(xs)
        mus = self._check(network)
        T, batch_size = xs.shape[0], xs.shape[1]
        ys, _, rec = network.run(params, xs, record=True)
        outs = [B.stop_gradient(o) for o in rec["out"]]
        loss, d_outs = B.value_and_grad(lambda o: objective(o[-1], targets, {"out": o}, network.spiking))(outs)
        grads = B.tree_zeros_like(params)
        signal = None
        for l in range(len(network.blocks) - 1, -1, -1):
            blk, mu = network.blocks[l], mus[l]
            segs = block_segments(network, l, params)
            pre = presynaptic_sequence(network, l, xs, outs, segs)
            current = B.matmul(pre, stacked_weight(network, l, params, segs))
            states = {k: B.stop_gradient(v) for k, v in rec["state"][l].items()}
            h_prev = previous_states(blk.cell.initial_state(B, batch_size, blk.size), states)
            flat = lambda x: B.reshape(x, (T * batch_size, blk.size))  # noqa: E731
            unflat = lambda x: B.reshape(x, (T, batch_size, blk.size))  # noqa: E731
            _, _, J = step_with_jacobians(blk.cell, params["layers"][l]["cell"], {k: flat(v) for k, v in h_prev.items()}, flat(current))
            J = CellJacobians(
                {a: {b: unflat(v) for b, v in row.items()} for a, row in J.h_h.items()},
                {a: unflat(v) for a, v in J.h_I.items()},
                {b: unflat(v) for b, v in J.z_h.items()},
                unflat(J.z_I),
            )
            gbar = running_slope(J.z_I, mu)
            d = d_outs[l]
            if self.approximate:
                _, a = B.scan(lambda st, p_t: _psp_scan(psp_decays(blk.cell), st, p_t), psp_init(B, psp_decays(blk.cell), batch_size, pre.shape[-1]), pre)
                post = d * J.z_I if signal is None else d * J.z_I + reverse_filter(signal * gbar, mu)
                dW = B.einsum("tbp,tbn->pn", a, post)
            else:
                dW = adjoint_sum(J, pre, d if signal is None else d + reverse_filter(signal, mu))
            split_gradient(network, l, dW, segs, grads)
            if l > 0:
                g = d if signal is None else signal + d
                signal = B.matmul(g * gbar, B.transpose(params["layers"][l]["w"], (1, 0)))
        return grads, rule_state, {"loss": loss, "outputs": ys, "spikes": rec["out"]}


def _psp_scan(decays: tuple, stages: list, p_t: Any) -> tuple:
    stages, a = psp_step(decays, stages, p_t)
    return stages, a


def running_slope(z_I: Any, mu: float) -> Any:
    """``gbar_t``, the normalised ``mu``-weighted running mean of ``dz/dI`` over time, for ``(T, B, n)``."""
    B = ops_for(z_I)

    def body(c, s_t):
        count, gbar = c
        new = mu * count + 1.0
        gbar = (mu * count * gbar + s_t) / new
        return (new, gbar), gbar

    _, out = B.scan(body, (B.zeros((1,)), B.zeros_like(z_I[0])), z_I)
    return out


def reverse_filter(g: Any, mu: float) -> Any:
    """``ghat_t = g_t + mu ghat_{t+1}`` over axis 0 (``ghat_{T+1} = 0``)."""
    B = ops_for(g)
    if mu == 0.0:
        return g

    def body(acc, g_t):
        acc = g_t + mu * acc
        return acc, acc

    _, out = B.scan(body, B.zeros_like(g[0]), B.flip(g, 0))
    return B.flip(out, 0)


def adjoint_sum(J: CellJacobians, pre: Any, signal: Any) -> Any:
    """``sum_t sum_b signal_t e_t`` (the per-synapse eligibility trace ``e``) without forming ``e``.

    With ``lam_T = 0`` and ``lam_t[a] = sum_b dh_{t+1}[b]/dh_t[a] lam_{t+1}[b] + dz_{t+1}/dh_t[a] signal_{t+1}``
    (per neuron), ``sum_t signal_t e_t = sum_t pre_t^T (signal_t dz_t/dI_t + sum_a lam_t[a] dh_t[a]/dI_t)``.
    """
    B = ops_for(pre)
    names = tuple(J.h_I)
    delta = signal * J.z_I
    if names:
        nxt = lambda x: B.flip(B.concatenate([x[1:], B.zeros_like(x[:1])], axis=0), 0)  # noqa: E731

        def back(lam, inp):
            hh, zh, s_next = inp
            new = {a: zh[a] * s_next + sum(hh[b][a] * lam[b] for b in names) for a in names}
            return new, new

        inputs = ({a: {b: nxt(J.h_h[a][b]) for b in names} for a in names}, {b: nxt(J.z_h[b]) for b in names}, nxt(signal))
        _, lam_rev = B.scan(back, {a: B.zeros_like(signal[0]) for a in names}, inputs)
        delta = delta + sum(B.flip(lam_rev[a], 0) * J.h_I[a] for a in names)
    return B.einsum("tbp,tbn->pn", pre, delta)
