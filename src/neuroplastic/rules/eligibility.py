"""Per-synapse eligibility traces for one block, shared by e-prop and OSTL.

For block ``l`` with cell state ``h_t`` (``k`` fields per neuron) and input current
``I_t = p_t @ W`` the presynaptic vector ``p_t`` stacks everything that drives the
block at step ``t``::

    p_t = [ input_t  |  z^l_{t-1} (if recurrent)  |  1 (if bias)  |  link sources ]

and ``W`` stacks ``w``, ``w_rec``, ``b`` and the link weights along its first axis, so
``I_t = p_t @ W`` is exactly the block's current.  For every synapse ``(i, j)``::

    eps_t[a]  = sum_b dh_t[a]/dh_{t-1}[b] * eps_{t-1}[b] + dh_t[a]/dI_t * p_{t,i}
    e_t       = sum_b dz_t/dh_{t-1}[b]    * eps_{t-1}[b] + dz_t/dI_t    * p_{t,i}

(eligibility vector ``eps``, eligibility trace ``e``; Bellec et al. 2020, eqs. 12-13,
written for a step ``(h_t, z_t) = f(h_{t-1}, I_t)`` whose spike is read from the
same step).  The presynaptic term uses ``p_t`` itself, so the input trace does not lag
by a step.  The Jacobians come from :mod:`.cell_jacobians`.

Memory: ``eps`` holds ``B * P * n * k`` numbers for ``P`` presynaptic inputs, ``n``
neurons and ``k`` state fields: a per-synapse, per-sample trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backend import ops_for
from ..network import Network
from ..tree import get_at, set_at
from .cell_jacobians import CellJacobians


@dataclass(frozen=True)
class Segment:
    """Rows ``start:stop`` of the stacked weight belong to parameter ``path`` (``kind`` names it)."""

    path: tuple
    kind: str
    start: int
    stop: int


def block_segments(network: Network, l: int, params: dict) -> list[Segment]:
    """How block ``l``'s presynaptic vector is laid out."""
    blk = network.blocks[l]
    p = params["layers"][l]
    segs, pos = [], 0
    n_src = network.size_of(l - 1)
    segs.append(Segment(("layers", l, "w"), "input", pos, pos + n_src))
    pos += n_src
    if blk.recurrent:
        segs.append(Segment(("layers", l, "w_rec"), "recurrent", pos, pos + blk.size))
        pos += blk.size
    if "b" in p:
        segs.append(Segment(("layers", l, "b"), "bias", pos, pos + 1))
        pos += 1
    for i, link in network.links_into(l):
        n = network.size_of(link.src)
        segs.append(Segment(("links", i, "w"), f"link{i}", pos, pos + n))
        pos += n
    return segs


def stacked_weight(network: Network, l: int, params: dict, segs: list[Segment]) -> Any:
    """``W`` with ``I_t = p_t @ W`` (the recurrent diagonal masked when self-connections are off)."""
    blk = network.blocks[l]
    parts = []
    for s in segs:
        if s.kind == "recurrent":
            parts.append(blk.projection.recurrent_weight(params["layers"][l]))
        elif s.kind == "bias":
            parts.append(params["layers"][l]["b"][None, :])
        else:
            parts.append(get_at(params, s.path))
    B = ops_for(parts[0])
    return B.concatenate(parts, axis=0)


def presynaptic_sequence(network: Network, l: int, xs: Any, outs: list, segs: list[Segment]) -> Any:
    """``p_t`` for all steps, ``(T, B, P)``, from the input and every block's recorded output."""
    B = ops_for(xs)
    parts = []
    for s in segs:
        if s.kind == "input":
            parts.append(xs if l == 0 else outs[l - 1])
        elif s.kind == "recurrent":
            parts.append(shift(outs[l]))
        elif s.kind == "bias":
            parts.append(B.ones(xs.shape[:2] + (1,), dtype=xs.dtype))
        else:
            link = network.links[s.path[1]]
            src = xs if link.src == -1 else outs[link.src]
            parts.append(shift(src) if link.backward else src)
    return B.concatenate(parts, axis=-1)


def shift(seq: Any) -> Any:
    """``seq`` delayed by one step with zeros at ``t = 0`` (the previous-step value)."""
    B = ops_for(seq)
    return B.concatenate([B.zeros_like(seq[:1]), seq[:-1]], axis=0)


def init_eligibility(B: Any, names: tuple, batch: int, n_pre: int, n: int) -> dict:
    return {a: B.zeros((batch, n_pre, n)) for a in names}


def trace_step(J: CellJacobians, eps: dict, pre: Any) -> tuple[dict, Any]:
    """Advance the eligibility vectors once and return ``(eps_t, e_t)``; see the module docstring."""
    pre3 = pre[:, :, None]
    e = J.z_I[:, None, :] * pre3
    for b, eps_b in eps.items():
        e = e + J.z_h[b][:, None, :] * eps_b
    new = {}
    for a in eps:
        acc = J.h_I[a][:, None, :] * pre3
        for b, eps_b in eps.items():
            acc = acc + J.h_h[a][b][:, None, :] * eps_b
        new[a] = acc
    return new, e


def split_gradient(network: Network, l: int, grad_stacked: Any, segs: list[Segment], grads: dict) -> None:
    """Write the rows of a stacked-weight gradient ``(P, n)`` into the parameter gradient tree."""
    blk = network.blocks[l]
    B = ops_for(grad_stacked)
    for s in segs:
        g = grad_stacked[s.start:s.stop]
        if s.kind == "bias":
            g = g[0]
        elif s.kind == "recurrent" and not blk.projection.self_connections:
            g = g * (1.0 - B.eye(blk.size, dtype=g.dtype))
        set_at(grads, s.path, g)



def presynaptic_step(network: Network, l: int, x_t: Any, outs: list, prev_outs: list, segs: list[Segment]) -> Any:
    """``p_t`` at one step ``(B, P)``: ``outs`` are this step's outputs of blocks ``< l``."""
    B = ops_for(x_t)
    parts = []
    for s in segs:
        if s.kind == "input":
            parts.append(x_t if l == 0 else outs[l - 1])
        elif s.kind == "recurrent":
            parts.append(prev_outs[l])
        elif s.kind == "bias":
            parts.append(B.ones((x_t.shape[0], 1), dtype=x_t.dtype))
        else:
            link = network.links[s.path[1]]
            if link.backward:
                parts.append(prev_outs[link.src])
            else:
                parts.append(x_t if link.src == -1 else outs[link.src])
    return B.concatenate(parts, axis=-1)


def previous_states(cell_initial: dict, states: dict) -> dict:
    """``h_{t-1}`` for every step from the recorded ``h_t`` ``(T, B, n)`` and the initial state."""
    out = {}
    for k, seq in states.items():
        B = ops_for(seq)
        out[k] = B.concatenate([cell_initial[k][None], seq[:-1]], axis=0)
    return out
