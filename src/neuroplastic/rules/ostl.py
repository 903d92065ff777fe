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
hidden block (the deep online form would need traces filtered per error path).

Memory per sample: as e-prop, ``sum_l k_l P_l n_l`` for the traces; offline adds
``T * sum_l (n_l + P_l)`` for recorded activity.
"""

from __future__ import annotations

from typing import Any

from ..backend import ops_for
from ..network import Network
from .eprop import EProp


class OSTL(EProp):
    """OSTL: e-prop traces with same-step backpropagated learning signals."""

    name = "ostl"

    def __init__(self) -> None:
        super().__init__(feedback="symmetric")

    def __repr__(self) -> str:
        return "OSTL()"

    def init(self, network: Network, params: dict, key: Any = None) -> dict:
        self._check(network)
        if network.links:
            raise ValueError("network: OSTL supports a chain of blocks without extra links")
        return {}

    def _hidden_gradients(self, network, params, rule_state, xs, outs, states, delta, reg_grads, grads) -> None:
        B = ops_for(xs)
        r = len(network.blocks) - 1
        signal = B.matmul(delta, B.transpose(params["layers"][r]["w"], (1, 0)))
        for l in range(r - 1, -1, -1):
            if reg_grads is not None:
                signal = signal + reg_grads[l]
            z_I = self._block_gradient(network, l, params, xs, outs, states[l], signal, grads)
            if l > 0:
                signal = B.matmul(signal * z_I, B.transpose(params["layers"][l]["w"], (1, 0)))

    def online_init(self, network: Network, params: dict, rule_state: Any, batch_size: int) -> dict:
        if len(network.blocks) != 2:
            raise ValueError("mode: online OSTL is implemented for one hidden block; use mode='offline' for deeper networks")
        return super().online_init(network, params, rule_state, batch_size)
