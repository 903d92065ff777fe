"""Per-neuron Jacobians of a cell's step function, by forward-mode autodiff.

Online rules (e-prop, OSTL, OTPE, RTRL-style traces) need, at every step,

* ``dh_t/dh_{t-1}``: how the new state depends on the old one,
* ``dh_t/dI_t``:      how it depends on the input current,
* ``dz_t/dh_{t-1}`` and ``dz_t/dI_t``: the same for the output.

Cells are neuron-wise (see :mod:`neuroplastic.cells.base`), so each of these is diagonal
across neurons and is returned as arrays of shape ``(B, n)``: one forward-mode ``jvp``
per state field plus one for the current gives all of them.  Nothing here is specific to
a cell: a user's new cell gets the Jacobians for free.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..backend import ops_for
from .base import Cell


class CellJacobians(NamedTuple):
    """Diagonal Jacobians of one step; ``h_h[a][b] = d h_t[a] / d h_{t-1}[b]`` (a pytree)."""

    h_h: dict  # {a: {b: (B, n)}}
    h_I: dict  # {a: (B, n)}
    z_h: dict  # {b: (B, n)}
    z_I: Any  # (B, n)


def step_with_jacobians(cell: Cell, params: dict, state: dict, current: Any) -> tuple[dict, Any, CellJacobians]:
    """``(new_state, out, jacobians)`` for one step of ``cell`` (all arrays ``(B, n)``)."""
    B = ops_for(current)
    names = tuple(cell.state_names)

    def f(s: dict, i: Any) -> tuple[dict, Any]:
        return cell.step(params, s, i)

    zero_state = {k: B.zeros_like(state[k]) for k in names}
    (new_state, out), (d_state, d_out) = B.jvp(f, (state, current), (zero_state, B.ones_like(current)))
    h_I = {a: d_state[a] for a in names}
    z_I = d_out
    h_h: dict = {a: {} for a in names}
    z_h: dict = {}
    for b in names:
        tangent = {k: (B.ones_like(state[k]) if k == b else B.zeros_like(state[k])) for k in names}
        _, (d_state, d_out) = B.jvp(f, (state, current), (tangent, B.zeros_like(current)))
        for a in names:
            h_h[a][b] = d_state[a]
        z_h[b] = d_out
    return new_state, out, CellJacobians(h_h, h_I, z_h, z_I)


def reshape_jacobians(J: CellJacobians, shape: tuple) -> CellJacobians:
    """Every array of ``J`` reshaped to ``shape`` (e.g. from ``(T*B, n)`` to ``(T, B, n)``)."""
    B = ops_for(J.z_I)
    r = lambda x: B.reshape(x, shape)  # noqa: E731
    return CellJacobians(
        {a: {b: r(v) for b, v in row.items()} for a, row in J.h_h.items()},
        {a: r(v) for a, v in J.h_I.items()},
        {b: r(v) for b, v in J.z_h.items()},
        r(J.z_I),
    )
