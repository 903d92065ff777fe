"""Trace machinery shared by the forward-in-time rules (e-prop, OSTL, OTTT, OTPE, SuperSpike, DCLL).

Two kinds of traces, both driven by what the network and its cells declare, never by
cell classes:

**Presynaptic (PSP) traces.**  A block's cell declares ``psp_decays``, the decays of the
linear filter from its input current to its membrane (``(alpha,)`` for a voltage LIF,
``(beta, alpha)`` for a current-based one, ``()`` for a memoryless cell).  Filtering a
connection's presynaptic activity ``x_t`` with that cascade,

    s^1_t = d_1 s^1_{t-1} + x_t,   s^k_t = d_k s^k_{t-1} + s^{k-1}_t,   a_t = s^K_t,

gives the trace ``a_t`` with ``dI-filtered/dW = a_t`` (:func:`psp_init`, :func:`psp_step`).

**Per-synapse eligibility.**  For block ``l`` with cell state ``h_t`` (``k`` fields per
neuron), stacked presynaptic vector ``p_t`` (:meth:`Network.stacked_presynaptic`: every
trainable connection's input side by side, ``1`` for a bias) and the cell's diagonal
Jacobians (:mod:`neuroplastic.cells.jacobians`), for every synapse ``(i, j)``::

    eps_t[a] = sum_b dh_t[a]/dh_{t-1}[b] * eps_{t-1}[b] + dh_t[a]/dI_t * p_{t,i}
    e_t      = sum_b dz_t/dh_{t-1}[b]    * eps_{t-1}[b] + dz_t/dI_t    * p_{t,i}

(eligibility vector ``eps`` and trace ``e``; Bellec et al. 2020, eqs. 12-13, for a step
whose spike is read from the same step; :func:`init_eligibility`, :func:`trace_step`).
Memory: ``B * P * n * k`` numbers per block.

Offline, ``sum_t L_t e_t`` for a learning signal ``L`` is evaluated in adjoint form
without any per-synapse trace (:func:`adjoint_trace_sum`).
"""

from __future__ import annotations

from typing import Any

from ..backend import ops_for
from ..cells.jacobians import CellJacobians


# ----------------------------------------------------------------------------- PSP traces
def single_decay(cell: Any, role: str) -> float:
    """The one decay of ``cell``'s input filter (0 for a memoryless cell); a ``ValueError`` for a cascade."""
    d = cell.psp_decays
    if len(d) > 1:
        raise ValueError(f"network: {role} needs a cell with a single decay, got {type(cell).__name__} with decays {d}")
    return d[0] if d else 0.0


def readout_leak(network: Any, rule: str) -> float:
    """The readout's leak ``kappa`` (``y_t = kappa y_{t-1} + I_t``) for ``rule``'s online readout filter;
    a named error for a nonlinear readout or a cascade of decays."""
    cell = network.blocks[-1].cell
    if not cell.linear:
        raise ValueError(
            f"network: {rule} needs a linear readout cell (LeakyReadout or Identity), got {type(cell).__name__};"
            " use mode='offline'"
        )
    return single_decay(cell, f"{rule}'s readout filter")


def psp_init(B: Any, decays: tuple, batch: int, n: int) -> list:
    """The filter stages of one trace at ``t = 0``: one ``(batch, n)`` zero array per decay."""
    return [B.zeros((batch, n)) for _ in decays]


def psp_step(decays: tuple, stages: list, p: Any) -> tuple[list, Any]:
    """Advance a cascade of exponential filters once: ``(new_stages, filtered p)``."""
    new, x = [], p
    for d, s in zip(decays, stages):
        x = d * s + x
        new.append(x)
    return new, x


def psp_filter(decays: tuple, seq: Any) -> Any:
    """The PSP trace of a whole sequence ``(T, B, n)`` (:func:`psp_step` scanned over time)."""
    B = ops_for(seq)
    _, out = B.scan(lambda st, x_t: psp_step(decays, st, x_t), psp_init(B, decays, seq.shape[1], seq.shape[-1]), seq)
    return out


# ----------------------------------------------------------------------------- eligibility
def init_eligibility(B: Any, names: tuple, batch: int, n_pre: int, n: int) -> dict:
    """``eps`` at ``t = 0``: one ``(batch, n_pre, n)`` zero array per cell state field."""
    return {a: B.zeros((batch, n_pre, n)) for a in names}


def trace_step(J: CellJacobians, eps: dict, pre: Any) -> tuple[dict, Any]:
    """Advance the eligibility vectors once and return ``(eps_t, e_t)``; see the module docstring."""
    # the (B, P, 1) operand first: torch lays the product out after its first operand, and with the
    # (B, 1, n) one first it walks the stride-0 axis innermost, 30x slower (the same numbers either way)
    pre3 = pre[:, :, None]
    e = pre3 * J.z_I[:, None, :]
    for b, eps_b in eps.items():
        e = e + J.z_h[b][:, None, :] * eps_b
    new = {}
    for a in eps:
        acc = pre3 * J.h_I[a][:, None, :]
        for b, eps_b in eps.items():
            acc = acc + J.h_h[a][b][:, None, :] * eps_b
        new[a] = acc
    return new, e


def synapse_sum(trace: Any, signal: Any) -> Any:
    """``sum_b trace[b, p, n] * signal[b, n]`` ``(P, n)``: a per-synapse trace ``(B, P, n)`` weighted by a
    per-neuron signal ``(B, n)`` and summed over the batch (``einsum("bpn,bn->pn")``).

    Written as a product and a sum: torch's ``einsum`` turns this contraction into a batched
    product over ``n`` and copies the trace into that layout slice by slice (ten times slower
    on a ``(64, 129, 128)`` trace), and XLA fuses the two into one reduction.
    """
    B = ops_for(trace)
    return B.sum(trace * signal[:, None, :], axis=0)


def adjoint_trace_sum(J: CellJacobians, pre: Any, signal: Any) -> Any:
    """``sum_t sum_b signal_t e_t`` ``(P, n)`` (``e`` the per-synapse eligibility trace) without forming ``e``.

    With ``lam_T = 0`` and, per neuron,
    ``lam_t[a] = sum_b dh_{t+1}[b]/dh_t[a] lam_{t+1}[b] + dz_{t+1}/dh_t[a] signal_{t+1}``::

        sum_t signal_t e_t = sum_t pre_t^T (signal_t dz_t/dI_t + sum_a lam_t[a] dh_t[a]/dI_t)

    one product over all steps and ``O(T B n k^2)`` memory instead of ``O(B P n k)``: the
    same linear algebra in the other order.  ``J`` holds ``(T, B, n)`` arrays, ``pre`` is
    ``(T, B, P)``, ``signal`` ``(T, B, n)``.
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
    return B.outer_sum(pre, delta)


__all__ = [
    "adjoint_trace_sum", "init_eligibility", "synapse_sum", "psp_filter", "psp_init", "psp_step", "single_decay", "trace_step",
]
