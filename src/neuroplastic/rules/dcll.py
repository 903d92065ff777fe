"""Deep continuous local learning (DCLL; Kaiser, Mostafa & Neftci, Front. Neurosci. 2020).

Every hidden block ``l`` gets a fixed random linear readout ``G^l`` (``n_l x n_out``,
``N(0, scale^2 / n_l)``, drawn in :meth:`DCLL.init` and kept in the rule state) and its
own *local* loss on ``y^l_t = z^l_t G^l``, the same loss as the network's.  No error
crosses a block boundary: the input a block receives from another block is treated as a
constant (stop-gradient), and each block learns from its local loss only; the last block
(the network's readout) learns from the real loss.  Within a block, credit is assigned
forward in time with presynaptic traces, as in SuperSpike and OTTT::

    a^l_t      = PSP-filtered presynaptic activity (the cell's psp_decays; see traces.py)
    delta^l_t  = d l^l_t / d I^l_t = (d l^l_t / d y^l_t  G^{l T}) * dz^l_t/dI^l_t    (hidden)
    delta^r_t  = d l_t / d I^r_t                                                   (readout)
    dW^l       = sum_t (a^l_t)^T delta^l_t

The reset and, for recurrent blocks, the recurrent path are not differentiated.  For a
feed-forward network of voltage-based LIF blocks with detached resets this is *exactly*
the gradient of ``L(y) + sum_l L(y^l)`` with stop-gradient between blocks, which is how
the tests check it.

Modes: online/deferred with a per-step loss (each local loss uses the loss's per-step
form); offline with any loss and the rate regulariser (each block's own term joins its
local signal), by the two-pass form of :mod:`.ottt` with the local errors
``dL^l/dy^l_t`` recorded too.  ``aux["local_losses"]`` (offline) lists ``L^l``.

Memory per sample: the traces ``sum_l d_l P_l`` and the state ``sum_l k_l n_l``
(independent of ``T``); shared across samples, the readouts ``sum_l n_l n_out``.
Offline adds ``T * n_out`` per block for the recorded local errors.
"""

from __future__ import annotations

import math
from typing import Any


from ..backend import ops_for
from ..losses import Objective
from ..network import Network
from .base import StepLoss, no_regularizer, random_block_matrices, recorded_errors
from .ottt import OTTT


class DCLL(OTTT):
    """DCLL: fixed random local readouts and layer-local losses (module docstring)."""

    name = "dcll"
    cut = True

    def __init__(self, readout_scale: float = 1.0) -> None:
        if not (isinstance(readout_scale, (int, float)) and readout_scale > 0 and math.isfinite(readout_scale)):
            raise ValueError(f"readout_scale must be a positive number, got {readout_scale!r}")
        self.readout_scale = float(readout_scale)

    def __repr__(self) -> str:
        return f"DCLL(readout_scale={self.readout_scale})"

    def init(self, network: Network, params: dict, key: Any = None) -> dict:
        """``{"readouts": [G^l for each hidden block]}``, seeded from ``key``."""
        self._check(network)
        return {"readouts": random_block_matrices(network, params, key, self.readout_scale)}

    @staticmethod
    def _readouts(network: Network, rule_state: Any) -> list:
        if not isinstance(rule_state, dict) or "readouts" not in rule_state:
            raise ValueError("rule_state: DCLL needs the state from DCLL.init (the fixed local readouts)")
        G = list(rule_state["readouts"])
        if len(G) != len(network.blocks) - 1:
            raise ValueError(f"rule_state: {len(G)} local readouts for {len(network.blocks) - 1} hidden blocks")
        return G

    def local_outputs(self, network: Network, rule_state: Any, outs: list) -> list:
        """``y^l = z^l G^l`` for every hidden block (one step ``(B, n)`` or all ``(T, B, n)``)."""
        B = ops_for(outs[0])
        return [B.matmul(z, G) for z, G in zip(outs[:-1], self._readouts(network, rule_state))]

    def online_step(self, network: Network, params: dict, rule_state: Any, carry: dict, x_t: Any, target_t: Any, t: Any, T: int, objective: Objective):
        no_regularizer(objective, self.name)
        per_step = objective.loss.per_step

        def step_loss(outs: list) -> tuple:
            value = per_step(outs[-1], target_t, t, T)
            total = value
            for y_l in self.local_outputs(network, rule_state, outs):
                total = total + per_step(y_l, target_t, t, T)
            return total, value

        return self._step(network, params, rule_state, carry, x_t, step_loss)

    def injected_step_loss(self, network: Network, rule_state: Any, errors_t: dict) -> StepLoss:
        """OTTT's injected loss plus every local readout's recorded error ``<dL^l/dy^l_t, y^l_t>``."""
        base = super().injected_step_loss(network, rule_state, errors_t)

        def step_loss(outs: list) -> tuple:
            total, value = base(outs)
            B = ops_for(outs[-1])
            for y_l, err in zip(self.local_outputs(network, rule_state, outs), errors_t["local"]):
                total = total + B.sum(err * y_l)
            return total, value

        return step_loss

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        """Two-pass offline form with the local errors ``dL^l/dy^l_t`` recorded in the first pass."""
        xs, targets = batch
        B = ops_for(xs)
        loss, ys, spikes, err, reg = recorded_errors(network, params, batch, objective)
        locals_ = self.local_outputs(network, rule_state, [B.stop_gradient(z) for z in spikes])
        local_losses, local_errs = [], []
        for y_l in locals_:
            value, e_l = B.value_and_grad(lambda y: objective.loss(y, targets, None))(y_l)
            local_losses.append(value)
            local_errs.append(e_l)
        grads = self._replay(network, params, rule_state, xs, {"out": err, "reg": reg, "local": local_errs})
        return grads, rule_state, {"loss": loss, "outputs": ys, "spikes": spikes, "local_losses": local_losses}
