"""Feedback alignment (Lillicrap et al. 2016) and direct feedback alignment (Nokland 2016).

Both are backpropagation through time with the *spatial* transport of errors replaced
by fixed random matrices, for feed-forward and recurrent spiking networks.

**FA** (``FeedbackAlignment``, ``"fa"``).  Every weight product ``I = x W`` whose input
``x`` carries a gradient (a block's output feeding another block, a recurrent ``z_{t-1}
W_rec``, a link) is replaced by one whose backward pass uses a fixed random ``F`` of the
shape of ``W`` in place of ``W``::

    forward:   I = x W
    backward:  dL/dx = (dL/dI) F^T          (BPTT: (dL/dI) W^T)
               dL/dW = x^T (dL/dI)          (unchanged)

through space and time; everything else (cells, surrogate derivatives, leaks, readout)
is differentiated exactly.  It is built from backend primitives as
``I = stop_gradient(x) W + (x F - stop_gradient(x F))``: the value is ``x W`` bit for
bit, the gradient w.r.t. ``x`` goes through ``F``, the one w.r.t. ``W`` through ``x``.
With ``F = W`` it *is* BPTT (tested).  ``F ~ N(0, scale^2 / fan_in)``, drawn in
:meth:`init` and kept in the rule state (``rule_state["feedback"]`` has the layout of the
parameters; the network input's weights need none).

**DFA** (``DirectFeedbackAlignment``, ``"dfa"``).  The error at the readout's input
current, ``e_t = dL/dI^out_t`` (which already contains the readout's own memory), is
sent straight to every hidden block ``l`` through a fixed random ``F^l`` (``n_l x
n_out``, ``N(0, scale^2 / n_l)``)::

    dL/dz^l_t  :=  e_t F^{l T}  (+ dR/dz^l_t for the rate regulariser)

and from there the gradient flows *within* block ``l`` exactly, through its cell state
and its own recurrent weights, over all steps (BPTT inside the block); the inputs a
block receives from other blocks are constants (stop-gradient).  The readout's
parameters get their exact gradient.  With one hidden block and ``F = W_out`` (the
readout weights), ``e_t W_out^T`` is exactly the gradient that reaches the hidden spikes,
so DFA equals BPTT there, recurrent or not (tested).

Both accept any loss and the rate regulariser.  Modes: offline only (the backward pass
runs over the whole sequence).

Memory per sample: as BPTT, the graph of the sequence, ``O(T sum_l k_l n_l)``; DFA adds
``T n_out`` for ``e_t``.  Shared across samples: FA one matrix per feedback path (the
size of the forward weights), DFA ``sum_l n_l n_out``.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..backend import ops_for
from ..losses import Objective
from ..network import Network
from ..tree import tree_map
from .base import Rule

MatMul = Callable[[tuple, Any, Any], Any]


def fa_matmul(x: Any, w: Any, f: Any) -> Any:
    """``x @ w`` whose gradient w.r.t. ``x`` uses ``f`` (same shape as ``w``) instead of ``w``."""
    B = ops_for(w)
    xf = B.matmul(x, f)
    return B.matmul(B.stop_gradient(x), w) + (xf - B.stop_gradient(xf))


def run_network(network: Network, params: dict, xs: Any, mm: MatMul | None = None, cut: bool = False, perturb: Any = None) -> list:
    """Every block's output over time ``[(T, B, n_l)]``, as :meth:`Network.run` computes it.

    ``mm(path, x, w)`` replaces each weight product (``path`` is the weight's key path,
    e.g. ``("layers", 1, "w_rec")``); ``cut=True`` stops gradients on inputs from other
    blocks; ``perturb`` ``(T, B, n_out)`` is added to the last block's current (zeros: a
    handle for ``dL/dI^out``).
    """
    B = ops_for(xs)
    mm = mm or (lambda path, x, w: B.matmul(x, w))
    batch = xs.shape[1]
    state0 = network.initial_state(B, batch)
    last = len(network.blocks) - 1

    def other(x: Any, src: int, dst: int) -> Any:
        return B.stop_gradient(x) if (cut and src >= 0 and src != dst) else x

    def feed(l: int, inputs: Any, x_seq: Any, outs: list, prev_outs: list | None) -> Any:
        """Block ``l``'s current from its input and links (recurrent weights excluded)."""
        p = params["layers"][l]
        current = mm(("layers", l, "w"), other(inputs, l - 1, l), p["w"])
        if "b" in p:
            current = current + p["b"]
        for i, link in network.links_into(l):
            if link.backward:
                pre = prev_outs[link.src]
            else:
                pre = x_seq if link.src == -1 else outs[link.src]
            current = current + mm(("links", i, "w"), other(pre, link.src, l), params["links"][i]["w"])
        return current

    def recurrent(l: int, z_prev: Any) -> Any:
        blk = network.blocks[l]
        return mm(("layers", l, "w_rec"), z_prev, blk.projection.recurrent_weight(params["layers"][l]))

    if network.layerwise:
        seqs: list = []
        for l, blk in enumerate(network.blocks):
            ext = feed(l, xs if l == 0 else seqs[l - 1], xs, seqs, None)
            if perturb is not None and l == last:
                ext = ext + perturb
            cell, pc = blk.cell, params["layers"][l]["cell"]

            def body(carry, ext_t, l=l, blk=blk, cell=cell, pc=pc):
                current = ext_t + recurrent(l, carry["out"]) if blk.recurrent else ext_t
                cs, out = cell.step(pc, carry["cell"], current)
                return {"cell": cs, "out": out}, out

            _, out_seq = B.scan(body, state0["layers"][l], ext)
            seqs.append(out_seq)
        return seqs

    def step(state, inp):
        x_t, pert_t = inp
        prev_outs = [s["out"] for s in state["layers"]]
        outs: list = []
        layers = []
        for l, blk in enumerate(network.blocks):
            current = feed(l, x_t if l == 0 else outs[l - 1], x_t, outs, prev_outs)
            if blk.recurrent:
                current = current + recurrent(l, prev_outs[l])
            if pert_t is not None and l == last:
                current = current + pert_t
            cs, out = blk.cell.step(params["layers"][l]["cell"], state["layers"][l]["cell"], current)
            outs.append(out)
            layers.append({"cell": cs, "out": out})
        return {"layers": layers}, outs

    _, outs = B.scan(step, state0, (xs, perturb))
    return list(outs)


def _check_scale(value: Any, name: str) -> float:
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def _objective_on(network: Network, objective: Objective, targets: Any) -> Callable[[list], Any]:
    return lambda outs: objective(outs[-1], targets, {"out": outs}, network.spiking)


class FeedbackAlignment(Rule):
    """FA: BPTT with fixed random matrices in place of the transposed weights (module docstring)."""

    name = "fa"
    modes = ("offline",)

    def __init__(self, feedback_scale: float = 1.0) -> None:
        self.feedback_scale = _check_scale(feedback_scale, "feedback_scale")

    def __repr__(self) -> str:
        return f"FeedbackAlignment(feedback_scale={self.feedback_scale})"

    @staticmethod
    def feedback_paths(network: Network) -> list[tuple]:
        """Key paths of the weights whose input carries a gradient (the ones that get an ``F``)."""
        paths = []
        for l, blk in enumerate(network.blocks):
            if l > 0:
                paths.append(("layers", l, "w"))
            if blk.recurrent:
                paths.append(("layers", l, "w_rec"))
        paths += [("links", i, "w") for i, link in enumerate(network.links) if link.src >= 0]
        return paths

    def init(self, network: Network, params: dict, key: Any = None) -> dict:
        """``{"feedback": F}`` with ``F`` laid out as the parameters (``{}`` where none is needed)."""
        B = ops_for(params["layers"][0]["w"])
        rng = np.random.default_rng(B.seed_from_key(key) if key is not None else 0)
        fb: dict = {"layers": [{} for _ in network.blocks], "links": [{} for _ in network.links]}
        for path in self.feedback_paths(network):
            kind, i, name = path
            w = params[kind][i][name]
            f = rng.normal(0.0, self.feedback_scale / math.sqrt(w.shape[0]), tuple(w.shape))
            if name == "w_rec" and not network.blocks[i].projection.self_connections:
                np.fill_diagonal(f, 0.0)
            fb[kind][i][name] = B.asarray(f)
        return {"feedback": fb}

    def _matmul(self, network: Network, rule_state: Any) -> MatMul:
        if not isinstance(rule_state, dict) or "feedback" not in rule_state:
            raise ValueError("rule_state: feedback alignment needs the state from FeedbackAlignment.init")
        fb = rule_state["feedback"]

        def mm(path: tuple, x: Any, w: Any) -> Any:
            kind, i, name = path
            f = fb[kind][i].get(name) if i < len(fb[kind]) else None
            if f is None:
                return ops_for(w).matmul(x, w)
            if tuple(f.shape) != tuple(w.shape):
                raise ValueError(f"rule_state: feedback for {kind}.{i}.{name} has shape {tuple(f.shape)}, the weight {tuple(w.shape)}")
            if name == "w_rec" and not network.blocks[i].projection.self_connections:
                f = f * (1.0 - ops_for(f).eye(f.shape[0], dtype=f.dtype))
            return fa_matmul(x, w, f)

        return mm

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        xs, targets = batch
        network.check_input(xs)
        B = ops_for(xs)
        mm = self._matmul(network, rule_state)
        loss_of = _objective_on(network, objective, targets)

        def fn(p: dict):
            outs = run_network(network, p, xs, mm)
            return loss_of(outs), outs

        (loss, outs), grads = B.value_and_grad(fn, has_aux=True)(params)
        return grads, rule_state, {"loss": loss, "outputs": outs[-1], "spikes": outs}


class DirectFeedbackAlignment(Rule):
    """DFA: the readout error sent to every hidden block by fixed random matrices (module docstring)."""

    name = "dfa"
    modes = ("offline",)

    def __init__(self, feedback_scale: float = 1.0) -> None:
        self.feedback_scale = _check_scale(feedback_scale, "feedback_scale")

    def __repr__(self) -> str:
        return f"DirectFeedbackAlignment(feedback_scale={self.feedback_scale})"

    def init(self, network: Network, params: dict, key: Any = None) -> dict:
        """``{"feedback": [F^l of shape (n_l, n_out) for each hidden block]}``."""
        if len(network.blocks) < 2:
            raise ValueError("network: DFA needs at least one hidden block before the readout block")
        B = ops_for(params["layers"][0]["w"])
        rng = np.random.default_rng(B.seed_from_key(key) if key is not None else 0)
        fb = [
            B.asarray(rng.normal(0.0, self.feedback_scale / math.sqrt(blk.size), (blk.size, network.n_out)))
            for blk in network.blocks[:-1]
        ]
        return {"feedback": fb}

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        xs, targets = batch
        network.check_input(xs)
        B = ops_for(xs)
        if not isinstance(rule_state, dict) or "feedback" not in rule_state:
            raise ValueError("rule_state: DFA needs the state from DirectFeedbackAlignment.init")
        F = list(rule_state["feedback"])
        if len(F) != len(network.blocks) - 1:
            raise ValueError(f"rule_state: {len(F)} feedback matrices for {len(network.blocks) - 1} hidden blocks")
        perturb = B.zeros((xs.shape[0], xs.shape[1], network.n_out))
        outs, pullback = B.vjp(lambda p, d: run_network(network, p, xs, cut=True, perturb=d), params, perturb)
        outs = list(outs)
        loss, d_outs = B.value_and_grad(_objective_on(network, objective, targets))(outs)
        # 1) the loss through the readout alone: exact readout gradients and e_t = dL/dI^out_t
        top = [B.zeros_like(o) for o in outs[:-1]] + [d_outs[-1]]
        g_top, e = pullback(top)
        # 2) e_t F^{lT} (+ the regulariser's own term) into every hidden block
        hidden = [d + B.matmul(e, B.transpose(f, (1, 0))) for d, f in zip(d_outs[:-1], F)] + [B.zeros_like(outs[-1])]
        g_hidden, _ = pullback(hidden)
        grads = tree_map(lambda a, b: a + b, g_top, g_hidden)
        return grads, rule_state, {"loss": loss, "outputs": outs[-1], "spikes": outs}
