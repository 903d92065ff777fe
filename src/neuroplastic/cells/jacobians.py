"""Per-neuron Jacobians of a cell's step function, by forward-mode autodiff.

Online rules (e-prop, OSTL, OTPE, RTRL-style traces) need, at every step,

* ``dh_t/dh_{t-1}``: how the new state depends on the old one,
* ``dh_t/dI_t``:      how it depends on the input current,
* ``dz_t/dh_{t-1}`` and ``dz_t/dI_t``: the same for the output.

Cells are neuron-wise (see :mod:`neuroplastic.cells.base`), so each of these is diagonal
across neurons and is returned as arrays of shape ``(B, n)``.  Two ways give the same
numbers (to round-off: the chain rule's terms are summed in another order):

* ``"forward"``: one forward-mode ``jvp`` per state field plus one for the current;
* ``"reverse"``: one reverse-mode pass over ``k + 1`` copies of the inputs stacked along
  the batch axis (copy ``c`` differentiates output ``c``: state field ``c``, then the
  cell's output).  A diagonal Jacobian is its own row sum, so the gradient of
  ``sum_c sum(output_c[copy c])`` with respect to copy ``c`` of the inputs is row ``c`` of
  every Jacobian.  One backward of one step instead of ``k + 1`` forward-mode passes: the
  eager backend (torch) runs forward-mode AD op by op through slow decompositions, and this
  is about ten times faster there.

``method="auto"`` (the default) takes ``"reverse"`` on a backend that does not compile
(torch) and ``"forward"`` on one that does (JAX: both compile to the same work) or when
the inputs are traced by an outer transform.  Nothing here is specific to a cell: a
user's new cell gets the Jacobians for free.
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


#: the ways :func:`step_with_jacobians` differentiates (see the module docstring)
JACOBIAN_METHODS = ("auto", "forward", "reverse")


def jacobian_method(B: Any, state: dict, current: Any, method: str = "auto") -> str:
    """``"forward"`` or ``"reverse"``: ``method`` itself, or what ``"auto"`` picks for these inputs."""
    if method not in JACOBIAN_METHODS:
        raise ValueError(f"method: unknown Jacobian method {method!r}; choose one of {list(JACOBIAN_METHODS)}")
    if method != "auto":
        return method
    traced = B.is_traced(current) or any(B.is_traced(v) for v in state.values())
    return "forward" if B.compiles or traced or not B.differentiable else "reverse"


def step_with_jacobians(cell: Cell, params: dict, state: dict, current: Any, method: str = "auto") -> tuple[dict, Any, CellJacobians]:
    """``(new_state, out, jacobians)`` for one step of ``cell`` (all arrays ``(B, n)``).

    ``method``: ``"auto"``, ``"forward"`` or ``"reverse"`` (module docstring); the step's values
    are :meth:`Cell.step`'s in every case.
    """
    B = ops_for(current)
    if jacobian_method(B, state, current, method) == "reverse":
        return _reverse_jacobians(cell, params, state, current)
    return _forward_jacobians(cell, params, state, current)


def _forward_jacobians(cell: Cell, params: dict, state: dict, current: Any) -> tuple[dict, Any, CellJacobians]:
    """The reference: one ``jvp`` for the current, one per state field."""
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


def _reverse_jacobians(cell: Cell, params: dict, state: dict, current: Any) -> tuple[dict, Any, CellJacobians]:
    """One reverse-mode pass over ``k + 1`` stacked copies of the inputs (module docstring)."""
    B = ops_for(current)
    names = tuple(cell.state_names)
    m, batch = len(names) + 1, current.shape[0]

    def copies(x: Any) -> Any:
        return B.concatenate([B.stop_gradient(x)] * m, axis=0)

    def part(x: Any, c: int) -> Any:
        return x[c * batch:(c + 1) * batch]

    def total(inputs: tuple) -> Any:
        new, out = cell.step(params, inputs[0], inputs[1])
        outputs = [new[a] for a in names] + [out]
        value = B.sum(part(outputs[0], 0))
        for c in range(1, m):
            value = value + B.sum(part(outputs[c], c))
        return value

    _, (d_state, d_current) = B.value_and_grad(total)(({k: copies(state[k]) for k in names}, copies(current)))
    h_h = {a: {b: part(d_state[b], c) for b in names} for c, a in enumerate(names)}
    h_I = {a: part(d_current, c) for c, a in enumerate(names)}
    z_h = {b: part(d_state[b], m - 1) for b in names}
    new_state, out = cell.step(params, state, current)  # the values, with the caller's graph (if any)
    return new_state, out, CellJacobians(h_h, h_I, z_h, part(d_current, m - 1))


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
