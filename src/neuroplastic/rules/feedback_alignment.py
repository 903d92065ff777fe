"""Feedback alignment (Lillicrap et al. 2016) and direct feedback alignment (Nokland 2016).

Both are backpropagation through time with the *spatial* transport of errors replaced
by fixed random matrices, for feed-forward and recurrent spiking networks.

**FA** (``FeedbackAlignment``, ``"fa"``).  Every connection ``I = x W`` whose input ``x``
carries a gradient (a block's output feeding another block, a recurrent ``z_{t-1} W_rec``,
a link from a block; dense or convolutional) is replaced, through the network's
``Hooks.apply``, by one whose backward pass uses a fixed random ``F`` of the shape of ``W``
in place of ``W``::

    forward:   I = x W
    backward:  dL/dx = (dL/dI) F^T          (BPTT: (dL/dI) W^T)
               dL/dW = x^T (dL/dI)          (unchanged)

through space and time; everything else (cells, surrogate derivatives, leaks, readout)
is differentiated exactly.  It is built from backend primitives as
``I = stop_gradient(x) W + (x F - stop_gradient(x F))``: the value is ``x W`` bit for
bit, the gradient w.r.t. ``x`` goes through ``F``, the one w.r.t. ``W`` through ``x``
(for any linear synapse ``s``: ``s(W, stop_gradient(x)) + s(F, x) - stop_gradient(s(F, x))``).
With ``F = W`` it *is* BPTT (tested).  ``F ~ N(0, scale^2 / fan_in)``, drawn in
:meth:`init` and kept in the rule state: ``rule_state["feedback"]`` lists one entry per
network connection (``None`` where none is needed: the network input's weights, biases).

**DFA** (``DirectFeedbackAlignment``, ``"dfa"``).  The error at the readout's input
current, ``e_t = dL/dI^out_t`` (which already contains the readout's own memory), is
sent straight to every hidden block ``l`` through a fixed random ``F^l`` (``n_l x
n_out``, ``N(0, scale^2 / n_l)``)::

    dL/dz^l_t  :=  e_t F^{l T}  (+ dR/dz^l_t for the rate regulariser)

and from there the gradient flows *within* block ``l`` exactly, through its cell state
and its own recurrent weights, over all steps (BPTT inside the block); the inputs a
block receives from other blocks are constants (the network's
``Hooks(detach_between_blocks=True)``), and ``e_t`` is the gradient with respect to a zero
current offset on the readout.  The readout's
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

from ..losses import Objective
from ..network import Connection, Hooks, Network
from ..protocols import require_network
from ..tree import tree_map
from .base import Rule, backend_of, key_rng, random_block_matrices


def fa_apply(c: Connection, p: dict, x: Any, f: dict) -> Any:
    """``c``'s current whose gradient w.r.t. ``x`` uses the weights ``f`` instead of ``p``'s."""
    B = backend_of(x)
    xf = c.synapse.apply(f, x)
    return c.synapse.apply(p, B.stop_gradient(x)) + (xf - B.stop_gradient(xf))


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
    def feedback_connections(network: Network) -> list[Connection]:
        """The connections whose input carries a gradient (the ones that get an ``F``)."""
        return [c for c in network.connections if c.from_block and c.trainable]

    def init(self, network: Network, params: dict, key: Any = None) -> dict:
        """``{"feedback": F}`` with ``F`` laid out as the parameters (only where an ``F`` is needed)."""
        network = require_network(network, "feedback alignment")
        B = backend_of(params)
        rng = key_rng(B, key)
        pieces = {}
        for c in self.feedback_connections(network):
            w = network.connection_params(params, c)["w"]
            f = rng.normal(0.0, self.feedback_scale / math.sqrt(c.synapse.n_src), tuple(w.shape))
            if getattr(c.synapse, "mask_diagonal", False):
                np.fill_diagonal(f, 0.0)
            pieces[c.index] = {"w": B.asarray(f)}
        return {"feedback": network.connection_tree(pieces)}

    def _hooks(self, network: Network, rule_state: Any) -> Hooks:
        if not isinstance(rule_state, dict) or "feedback" not in rule_state:
            raise ValueError("rule_state: feedback alignment needs the state from FeedbackAlignment.init")
        try:
            fb = [network.connection_params(rule_state["feedback"], c, partial=True) or None for c in network.connections]
        except (KeyError, IndexError, TypeError):
            raise ValueError("rule_state: the feedback of FeedbackAlignment.init was made for another network") from None

        def apply(c: Connection, p: dict, x: Any) -> Any:
            f = fb[c.index]
            if f is None:
                return c.synapse.apply(p, x)
            if tuple(f["w"].shape) != tuple(p["w"].shape):
                raise ValueError(f"rule_state: feedback for {c.name} has shape {tuple(f['w'].shape)}, the weight {tuple(p['w'].shape)}")
            return fa_apply(c, p, x, f)

        return Hooks(apply=apply)

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        network = require_network(network, "feedback alignment")
        xs, targets = batch
        network.check_input(xs)
        B = backend_of(params)
        hooks = self._hooks(network, rule_state)
        loss_of = _objective_on(network, objective, targets)

        def fn(p: dict):
            _, _, rec = network.run(p, xs, hooks=hooks)
            return loss_of(rec["out"]), rec["out"]

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
        network = require_network(network, "DFA")
        if len(network.blocks) < 2:
            raise ValueError("network: DFA needs at least one hidden block before the readout block")
        fb = random_block_matrices(network, params, key, self.feedback_scale)
        return {"feedback": fb}

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        network = require_network(network, "DFA")
        xs, targets = batch
        network.check_input(xs)
        B = backend_of(params)
        if not isinstance(rule_state, dict) or "feedback" not in rule_state:
            raise ValueError("rule_state: DFA needs the state from DirectFeedbackAlignment.init")
        F = list(rule_state["feedback"])
        if len(F) != len(network.blocks) - 1:
            raise ValueError(f"rule_state: {len(F)} feedback matrices for {len(network.blocks) - 1} hidden blocks")
        handle = B.zeros((xs.shape[0], xs.shape[1], network.n_out))
        none = [None] * (len(network.blocks) - 1)

        def forward(p: dict, d: Any) -> list:
            return network.run(p, xs, hooks=Hooks(offsets=none + [d], detach_between_blocks=True))[2]["out"]

        outs, pullback = B.vjp(forward, params, handle)
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
