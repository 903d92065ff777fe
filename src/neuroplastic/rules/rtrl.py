"""Real-time recurrent learning (Williams & Zipser 1989): exact forward-mode gradients.

With the whole network state ``S_t`` (every block's cell state and output) and all
parameters ``theta`` flattened to ``P`` numbers, RTRL carries the influence matrix
``M_t = dS_t / dtheta``::

    M_t = (dS_t/dS_{t-1}) M_{t-1} + dS_t/dtheta          (one jvp per parameter)
    dE/dtheta = sum_t sum_l (dE/dz^l_t) (dz^l_t/dtheta)

where ``dz^l_t/dtheta`` is read from ``M_t`` (outputs are part of the state).  Each
column of ``M_t`` is one forward-mode ``jvp`` of :meth:`Network.step` with the tangent
``(e_i, M_{t-1}[:, i])``; the columns are computed together with ``vmap``.  The result
equals BPTT up to rounding, for any network and cell, without storing the past.

Offline, a first pass gives ``dE/dz^l_t`` for any loss (and the rate regulariser),
and a second pass runs the recursion.  Online, the loss must decompose over steps.

Memory per sample: ``P * |S|`` for ``M`` (``|S| = sum_l n_l (k_l + 1)``), i.e.
``O(n^4)`` for a recurrent layer of ``n`` neurons; compute per step ``O(P * |S|)``.
Use it on small networks and as ground truth.
"""

from __future__ import annotations

from typing import Any

from ..backend import ops_for
from ..losses import Objective
from ..network import Network
from ..tree import tree_leaves, tree_map, tree_paths, tree_unflatten_like
from .base import OnlineRule


def parameter_basis(params: dict) -> tuple[Any, int]:
    """A pytree like ``params`` whose leaves have a leading axis of size ``P``: the unit tangents."""
    leaves = tree_leaves(params)
    B = ops_for(leaves[0])
    sizes = [int(_numel(x)) for x in leaves]
    P = sum(sizes)
    eye = B.eye(P, dtype=leaves[0].dtype)
    out, offset = [], 0
    for x, s in zip(leaves, sizes):
        out.append(B.reshape(eye[:, offset:offset + s], (P,) + tuple(x.shape)))
        offset += s
    return tree_unflatten_like(params, out), P


def flat_to_tree(flat: Any, params: dict) -> dict:
    """Split a vector of length ``P`` into a pytree shaped like ``params``."""
    B = ops_for(flat)
    out, offset = [], 0
    for x in tree_leaves(params):
        s = int(_numel(x))
        out.append(B.reshape(flat[offset:offset + s], tuple(x.shape)))
        offset += s
    return tree_unflatten_like(params, out)


def _numel(x: Any) -> int:
    n = 1
    for d in x.shape:
        n *= int(d)
    return n


class RTRL(OnlineRule):
    """Exact real-time recurrent learning (see the module docstring)."""

    name = "rtrl"

    def _advance(self, network: Network, params: dict, basis: Any, state: dict, M: dict, x_t: Any):
        B = ops_for(x_t)

        def column(tp: Any, ts: Any) -> Any:
            _, (d_state, _) = B.jvp(lambda p, s: network.step(p, s, x_t), (params, state), (tp, ts))
            return d_state

        M = B.vmap(column)(basis, M)
        state, y = network.step(params, state, x_t)
        return state, y, M

    def _init(self, network: Network, params: dict, batch_size: int):
        B = ops_for(tree_leaves(params)[0])
        basis, P = parameter_basis(params)
        state = network.initial_state(B, batch_size)
        M = tree_map(lambda s: B.zeros((P,) + tuple(s.shape), dtype=s.dtype), state)
        return basis, state, M

    @staticmethod
    def _contract(network: Network, M: dict, dz: list) -> Any:
        """``sum_l sum_{b,n} M^l_out[p, b, n] * dz^l[b, n]`` -> ``(P,)``; blocks with ``dz^l = None`` add nothing.

        Each term is a matrix-vector product of ``M^l_out`` flattened to ``(P, B n)``."""
        total = None
        for M_l, d in zip(network.block_outputs(M), dz):
            if d is None:
                continue
            B = ops_for(d)
            term = B.matmul(B.reshape(M_l, (M_l.shape[0], -1)), B.reshape(d, (-1,)))
            total = term if total is None else total + term
        return total

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        xs, targets = batch
        B = ops_for(xs)
        ys, _, rec = network.run(params, xs)
        outs = [B.stop_gradient(z) for z in rec["out"]]
        loss, dz = B.value_and_grad(lambda z: objective(z[-1], targets, {"out": z}, network.spiking))(outs)
        basis, state, M = self._init(network, params, xs.shape[1])
        P = int(tree_leaves(basis)[0].shape[0])

        def body(carry, inp):
            state, M, g = carry
            x_t, dz_t = inp
            state, _, M = self._advance(network, params, basis, state, M, x_t)
            return (state, M, g + self._contract(network, M, dz_t)), None

        (_, _, g), _ = B.scan(body, (state, M, B.zeros((P,))), (xs, dz))
        return flat_to_tree(g, params), rule_state, {"loss": loss, "outputs": ys, "spikes": rec["out"]}

    def _basis(self, params: dict) -> Any:
        """:func:`parameter_basis` of ``params``, built once per parameter layout for concrete arrays (eager
        torch would otherwise build a ``P x P`` identity at every online step); under a trace (``jit``,
        :mod:`~neuroplastic.backend.compile_torch`) it is built once per trace anyway, and a traced array
        must not outlive its trace."""
        leaves = tree_leaves(params)
        B = ops_for(leaves[0])
        if B.is_traced(leaves[0]):
            return parameter_basis(params)[0]
        key = (B.name, str(getattr(leaves[0], "device", "")), str(leaves[0].dtype), tuple(tree_paths(params)),
               tuple(tuple(x.shape) for x in leaves))
        cache = self.__dict__.setdefault("_basis_cache", {})
        if key not in cache:
            cache.clear()
            cache[key] = parameter_basis(params)[0]
        return cache[key]

    def online_init(self, network: Network, params: dict, rule_state: Any, batch_size: int) -> dict:
        basis, state, M = self._init(network, params, batch_size)
        return {"net": state, "M": M}

    def online_step(self, network: Network, params: dict, rule_state: Any, carry: dict, x_t: Any, target_t: Any, t: Any, T: int, objective: Objective):
        if objective.regularizer is not None:
            raise ValueError("regularizer: RTRL applies the rate regulariser in offline mode only")
        B = ops_for(x_t)
        state, y, M = self._advance(network, params, self._basis(params), carry["net"], carry["M"], x_t)
        loss_t, dy = B.value_and_grad(lambda yy: objective.loss.per_step(yy, target_t, t, T))(y)
        outs = network.block_outputs(state)
        # the per-step loss reads the readout only: the other blocks' dz are zero and left out
        dz = [None] * (len(outs) - 1) + [dy]
        grads = flat_to_tree(self._contract(network, M, dz), params)
        return grads, {"net": state, "M": M}, {"loss": loss_t, "output": y, "spikes": outs}
