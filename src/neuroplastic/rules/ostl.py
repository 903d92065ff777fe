"""Online spatio-temporal learning (Bohnstingl et al. 2022).

OSTL splits the gradient into a *temporal* part, carried forward as per-synapse
eligibility traces inside each block (the same traces as e-prop, from
:mod:`.eligibility`), and a *spatial* part, the learning signal, obtained by
back-propagating the error through the layers *within the same time step*::

    L^{r-1}_t = delta_t W_out^T                               (delta_t = dE/dI^out_t)
    L^{l}_t   = (L^{l+1}_t * dz^{l+1}_t/dI^{l+1}_t) W^{l+1 T}  (spatial, same step)
    dE/dW^l  ~= sum_t L^l_t * e^l_t

The temporal dependencies that run *across* layers and through recurrent weights are
dropped, so OSTL is exact for a single hidden layer without recurrent weights (there it
equals BPTT), and an approximation otherwise.  With one hidden block it coincides with
symmetric e-prop; with several, it replaces e-prop's broadcast feedback by exact
same-step backpropagation.  ``dz/dI`` comes from autodiff of the cell step.

Modes: offline for any chain of blocks (no extra links); online/deferred for one
hidden block, where OSTL is symmetric e-prop (the deep online form needs traces filtered
per error path).

Memory per sample: as e-prop, ``sum_l k_l P_l n_l`` for the traces; offline adds
``T * sum_l (n_l + P_l)`` for recorded activity.
"""

from __future__ import annotations

from typing import Any

from ..losses import Objective
from ..network import Network
from ..protocols import require_network
from .base import OnlineRule
from .eprop import EProp, add_pieces, block_trace_gradient, readout_pass


class OSTL(OnlineRule):
    """OSTL: per-block eligibility traces with same-step backpropagated learning signals."""

    name = "ostl"

    def __repr__(self) -> str:
        return "OSTL()"

    def _check(self, network: Any) -> Network:
        network = require_network(network, "OSTL")
        if len(network.blocks) < 2:
            raise ValueError("network: OSTL needs at least one hidden block before the readout block")
        if network.links:
            raise ValueError("network: OSTL supports a chain of blocks without extra links")
        if network.blocks[-1].recurrent:
            raise ValueError("network: OSTL's readout block (the last) must not be recurrent")
        return network

    def init(self, network: Network, params: dict, key: Any = None) -> dict:
        self._check(network)
        return {}

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        network = self._check(network)
        first = readout_pass(network, params, batch, objective)
        pieces = first.pieces
        r = len(network.blocks) - 1
        # L^{r-1}_t = delta_t W_out^T, then down through the chain within each step
        up = network.feed_connection(r)
        signal = up.synapse.transpose(network.connection_params(params, up), first.delta)
        for l in range(r - 1, -1, -1):
            if first.reg is not None:
                signal = signal + first.reg[l]
            block, z_I = block_trace_gradient(network, params, l, first.rec, first.pres, batch[0], signal)
            pieces = add_pieces(pieces, block)
            if l > 0:
                c = network.feed_connection(l)
                signal = c.synapse.transpose(network.connection_params(params, c), signal * z_I)
        grads = network.gradient_tree(params, pieces, {r: first.readout_cell})
        return grads, rule_state, {"loss": first.loss, "outputs": first.ys, "spikes": first.rec["out"]}

    # online, one hidden block: the spatial signal is the readout's, so OSTL is symmetric e-prop
    def _online(self, network: Any) -> EProp:
        network = self._check(network)
        if len(network.blocks) != 2:
            raise ValueError("mode: online OSTL is implemented for one hidden block; use mode='offline' for deeper networks")
        return EProp(feedback="symmetric")

    def online_init(self, network: Network, params: dict, rule_state: Any, batch_size: int) -> dict:
        return self._online(network).online_init(network, params, {}, batch_size)

    def online_step(self, network: Network, params: dict, rule_state: Any, carry: dict, x_t: Any, target_t: Any, t: Any, T: int, objective: Objective):
        return self._online(network).online_step(network, params, {}, carry, x_t, target_t, t, T, objective)
