"""SuperSpike (Zenke & Ganguli, Neural Computation 2018).

Supervised learning of target spike trains ``s*_t`` by the van Rossum distance
``L = (dt/tau) / 2 * sum_t sum_i ((k * (z - s*))_{i,t})^2`` (batch mean), with ``k`` the
causal exponential kernel of the loss (``kappa = exp(-dt/tau)``).  Online, for a weight
``W_ij`` from presynaptic input ``j`` to neuron ``i``::

    f_t        = kappa f_{t-1} + (z^out_t - s*_t)                 van Rossum-filtered error
    eps_{j,t}  = PSP-filtered presynaptic activity (the neuron's membrane kernel, reset dropped)
    lam_{ij,t} = kappa lam_{ij,t-1} + sigma'(u_{i,t}) eps_{j,t}   filtered eligibility
    e_{i,t}    = (dt/tau) f_{i,t} / batch                         output neurons
    e_{k,t}    = sum_i F_{ki} e_{i,t}                             hidden neurons (feedback F)
    dW_{ij}    = sum_t e_{i,t} lam_{ij,t}

``sigma'(u_t)`` is the cell's ``dz_t/dI_t`` (by forward-mode autodiff of its step: the
surrogate derivative at the membrane, the fast sigmoid ``1/(1+beta|u-theta|)^2`` for the
default LIF).  ``feedback="random"`` uses fixed ``F^l ~ N(0, scale^2/n_l)`` (rule state);
``"symmetric"`` uses the output weights (only for the hidden block that feeds the output
block).  The paper's per-parameter RMS normalisation of the learning rate is an
optimizer choice (``optimizer="rmsprop"``), not part of the rule.

For one spiking layer with a detached reset (the default LIF) the eligibility is the
exact ``d(k * z)/dW``, so SuperSpike equals BPTT on the van Rossum loss there.

Networks: a chain of blocks; the last block must spike (output spike trains).  Loss: the
``van_rossum`` loss (its ``tau`` and ``dt`` are used) with targets ``(T, B, n_out)``.
Modes: offline (= deferred), online, deferred.

Memory per sample: the eligibilities ``sum_l P_l n_l`` (``P_l`` presynaptic inputs,
``n_l`` neurons), the PSP traces ``sum_l d_l P_l``, the error filter ``n_out`` and the
network state: independent of ``T``.
"""

from __future__ import annotations

import math
from typing import Any


from ..losses import Objective, VanRossum
from ..network import Network
from ..protocols import require_network
from .base import OnlineRule, backend_of, random_block_matrices
from .eprop import add_pieces
from .traces import psp_init, psp_step, synapse_sum

FEEDBACK = ("random", "symmetric")


class SuperSpike(OnlineRule):
    """SuperSpike with random or symmetric feedback to hidden blocks (module docstring)."""

    name = "superspike"

    def __init__(self, feedback: str = "random", feedback_scale: float = 1.0) -> None:
        if feedback not in FEEDBACK:
            raise ValueError(f"feedback: unknown SuperSpike feedback {feedback!r}; choose one of {list(FEEDBACK)}")
        if not (isinstance(feedback_scale, (int, float)) and feedback_scale > 0 and math.isfinite(feedback_scale)):
            raise ValueError(f"feedback_scale must be a positive number, got {feedback_scale!r}")
        self.feedback = feedback
        self.feedback_scale = float(feedback_scale)

    def __repr__(self) -> str:
        return f"SuperSpike(feedback={self.feedback!r})"

    def _check(self, network: Network) -> list:
        network = require_network(network, "SuperSpike")
        if network.links:
            raise ValueError("network: SuperSpike supports a chain of blocks without extra links")
        if not network.blocks[-1].cell.spiking:
            raise ValueError(
                f"network: SuperSpike learns output spike trains; the last block's cell must spike, got {type(network.blocks[-1].cell).__name__}"
            )
        if self.feedback == "symmetric" and len(network.blocks) > 2:
            raise ValueError("feedback: symmetric SuperSpike feedback reaches only one hidden block; use feedback='random'")
        return [blk.cell.psp_decays for blk in network.blocks]

    @staticmethod
    def _loss(objective: Objective) -> VanRossum:
        if not isinstance(objective.loss, VanRossum):
            raise ValueError(
                f"loss: SuperSpike minimises the van Rossum distance to target spike trains; use loss='van_rossum', got {objective.loss.name!r}"
            )
        if objective.regularizer is not None:
            raise ValueError("regularizer: SuperSpike does not support the rate regulariser")
        return objective.loss

    def check_online_objective(self, objective: Objective, mode: str) -> None:
        """SuperSpike filters its own per-step error: it needs the van Rossum loss, not ``per_step``."""
        self._loss(objective)

    def init(self, network: Network, params: dict, key: Any = None) -> dict:
        self._check(network)
        if self.feedback == "symmetric":
            return {}
        fb = random_block_matrices(network, params, key, self.feedback_scale)
        return {"feedback": fb}

    def feedback_matrices(self, network: Network, params: dict, rule_state: Any) -> list:
        """``F^l`` of shape ``(n_l, n_out)`` for every hidden block."""
        if self.feedback == "symmetric":
            return [network.dense_weight(params, network.feed_connection(1))] if len(network.blocks) == 2 else []
        if not isinstance(rule_state, dict) or "feedback" not in rule_state:
            raise ValueError("rule_state: random-feedback SuperSpike needs the state from SuperSpike.init")
        return list(rule_state["feedback"])

    def online_init(self, network: Network, params: dict, rule_state: Any, batch_size: int) -> dict:
        decays = self._check(network)
        B = backend_of(params)
        traces, elig = [], []
        for l, blk in enumerate(network.blocks):
            P = network.presynaptic_size(l)
            traces.append(psp_init(B, decays[l], batch_size, P))
            elig.append(B.zeros((batch_size, P, blk.size)))
        return {
            "net": network.initial_state(B, batch_size),
            "traces": traces,
            "elig": elig,
            "error": B.zeros((batch_size, network.n_out)),
        }

    def online_step(self, network: Network, params: dict, rule_state: Any, carry: dict, x_t: Any, target_t: Any, t: Any, T: int, objective: Objective):
        loss = self._loss(objective)
        decays = self._check(network)
        B = backend_of(params)
        if tuple(target_t.shape) != (x_t.shape[0], network.n_out):
            raise ValueError(f"targets: SuperSpike needs target spike trains (T, batch, {network.n_out}); got a step of shape {tuple(target_t.shape)}")
        kappa = math.exp(-loss.dt / loss.tau)
        step = network.step_record(params, carry["net"], x_t, jacobians=True)
        traces, elig = [], []
        for l in range(len(network.blocks)):
            stages, eps = psp_step(decays[l], carry["traces"][l], network.stacked_presynaptic(l, step.pres, like=x_t))
            traces.append(stages)
            elig.append(kappa * carry["elig"][l] + eps[:, :, None] * step.jacobians[l].z_I[:, None, :])
        f = kappa * carry["error"] + (step.outs[-1] - target_t)
        batch = x_t.shape[0]
        scale = loss.dt / loss.tau
        loss_t = 0.5 * scale * B.sum(f * f) / batch
        err = (scale / batch) * f
        r = len(network.blocks) - 1
        pieces = network.split_stacked(r, synapse_sum(elig[r], err))
        for l, F in enumerate(self.feedback_matrices(network, params, rule_state)):
            e_l = B.matmul(err, B.transpose(F, (1, 0)))
            pieces = add_pieces(pieces, network.split_stacked(l, synapse_sum(elig[l], e_l)))
        grads = network.gradient_tree(params, pieces)
        new_carry = {"net": step.state, "traces": traces, "elig": elig, "error": f}
        return grads, new_carry, {"loss": loss_t, "output": step.outs[-1], "spikes": step.outs}

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        """The summed per-step updates at fixed parameters (offline equals deferred)."""
        self._loss(objective)
        targets = batch[1]
        if getattr(targets, "ndim", 0) != 3:
            raise ValueError(f"targets: SuperSpike needs target spike trains (T, batch, {network.n_out}), got shape {tuple(getattr(targets, 'shape', ()))}")
        return super().gradients(network, params, rule_state, batch, objective)
