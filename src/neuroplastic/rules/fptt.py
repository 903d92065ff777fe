"""Forward propagation through time (FPTT; Kag & Saligrama, ICML 2021).

FPTT updates the weights at every step ``t`` of a sequence and adds a *dynamic
regulariser* that keeps them near a running average ``Wbar``; with the state before
step ``t`` held constant, the step objective is::

    l_t(W) + (alpha/2) || W - Wbar_t - (1/(2 alpha)) lambda_t ||^2,      lambda_t = grad l_{t-1}

so the descent direction returned at step ``t`` is::

    d_t = grad l_t(W_t) + alpha (W_t - Wbar_t) - lambda_t / 2

and, after the optimizer's step ``W_{t+1} = W_t - lr * d_t`` (Algorithm 1)::

    lambda_{t+1} = grad l_t
    Wbar_{t+1}   = (Wbar_t + W_{t+1}) / 2 - lambda_{t+1} / (2 alpha)

with ``Wbar_1 = W_1`` and ``lambda_1 = 0`` at the start of each sequence.  ``Wbar_{t+1}``
needs ``W_{t+1}``, which the rule sees at the next step, so it is formed there.
Algorithm 1 evaluates ``grad l_t`` at ``W_{t+1}`` for ``lambda_{t+1}``; here it is the
gradient already computed at ``W_t`` (it differs by ``O(lr)`` and needs no second
pass, and it works with any base rule).

``grad l_t`` comes from a *base* rule: by default the one-step gradient of FPTT itself
(autodiff of one network step with the previous state as a constant, i.e. BPTT
truncated to one step); any online rule can be given instead (``base="ottt"``,
``base="eprop-symmetric"``...), and FPTT adds its regulariser to that rule's per-step
gradient, as Slax's ``FPTT`` wraps its online rules.  The base rule's state is kept in
``rule_state["base"]``; its ``online_finish`` receives the summed FPTT directions.

Modes: online only (the regulariser is defined by the per-step updates).  The loss must
have a per-step form.  ``Wbar`` and ``lambda`` start afresh with every sequence (batch):
the trainer does not hand a sequence's final carry back to the rule.

Memory per sample: the base rule's (one-step default: the network state
``sum_l k_l n_l`` and one step's graph); shared across the batch, ``2 |W|`` for ``Wbar``
and ``lambda``.
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import ops_for
from ..losses import Objective
from ..network import Network
from ..tree import tree_map
from .base import OnlineRule, Rule, backend_of, no_regularizer


class OneStepGradient(OnlineRule):
    """``grad l_t`` through the current step only (the previous state is a constant): FPTT's default base."""

    name = "one-step"

    def online_init(self, network: Network, params: dict, rule_state: Any, batch_size: int) -> dict:
        B = backend_of(params)
        return {"net": network.initial_state(B, batch_size)}

    def online_step(self, network: Network, params: dict, rule_state: Any, carry: dict, x_t: Any, target_t: Any, t: Any, T: int, objective: Objective):
        no_regularizer(objective, self.name)
        B = ops_for(x_t)
        state = B.tree_stop_gradient(carry["net"])

        def f(p: dict):
            new_state, y = network.step(p, state, x_t)
            return objective.loss.per_step(y, target_t, t, T), new_state

        (loss_t, new_state), grads = B.value_and_grad(f, has_aux=True)(params)
        spikes = network.block_outputs(new_state)
        return grads, {"net": new_state}, {"loss": loss_t, "output": spikes[-1], "spikes": spikes}


class FPTT(OnlineRule):
    """FPTT's dynamic regulariser on top of a base online rule (module docstring)."""

    name = "fptt"
    modes = ("online",)

    def __init__(self, alpha: float = 0.5, base: str | Rule | None = None, **base_options: Any) -> None:
        if not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
            raise ValueError(f"alpha must be a positive number, got {alpha!r}")
        self.alpha = float(alpha)
        if base is None:
            if base_options:
                raise ValueError(f"base: options {sorted(base_options)} given without a base rule")
            self.base: OnlineRule = OneStepGradient()
        else:
            from . import make_rule

            rule = make_rule(base, **base_options)
            if not isinstance(rule, OnlineRule) or "online" not in rule.modes:
                raise ValueError(f"base: FPTT needs an online rule as its base, got {rule!r}")
            if isinstance(rule, FPTT):
                raise ValueError("base: FPTT cannot wrap FPTT")
            self.base = rule

    def __repr__(self) -> str:
        return f"FPTT(alpha={self.alpha}, base={self.base!r})"

    def init(self, network: Network, params: dict, key: Any = None) -> dict:
        return {"base": self.base.init(network, params, key)}

    def online_init(self, network: Network, params: dict, rule_state: Any, batch_size: int) -> dict:
        B = backend_of(params)
        return {
            "base": self.base.online_init(network, params, rule_state["base"], batch_size),
            # a copy: torch optimizers update the parameter tensors in place
            "wbar": tree_map(lambda w: B.stop_gradient(w) + 0.0, params),
            "lam": B.tree_zeros_like(params),
        }

    def online_step(self, network: Network, params: dict, rule_state: Any, carry: dict, x_t: Any, target_t: Any, t: Any, T: int, objective: Objective):
        B = ops_for(x_t)
        g, base_carry, aux = self.base.online_step(network, params, rule_state["base"], carry["base"], x_t, target_t, t, T, objective)
        a = self.alpha
        w = B.tree_stop_gradient(params)
        wbar = tree_map(lambda wb, w_, lam: 0.5 * (wb + w_) - lam / (2.0 * a), carry["wbar"], w, carry["lam"])
        d = tree_map(lambda g_, w_, wb, lam: g_ + a * (w_ - wb) - 0.5 * lam, g, w, wbar, carry["lam"])
        return d, {"base": base_carry, "wbar": wbar, "lam": g}, aux

    def online_finish(self, network: Network, params: dict, rule_state: Any, grads: dict) -> Any:
        return {"base": self.base.online_finish(network, params, rule_state["base"], grads)}

    def gradients(self, network: Network, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        raise ValueError(
            "mode: FPTT's regulariser is defined by the weight updates made at every step; train it with mode='online'"
        )
