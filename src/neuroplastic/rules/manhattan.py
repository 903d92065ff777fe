"""Manhattan rules (Zamanidoost et al. 2015): sign-of-gradient updates, plain and on memristor pairs.

Both rules wrap a *base* rule (BPTT by default; any rule name or instance) that supplies
the gradient estimate ``g``; only its sign is used.  Both are meant for the ``naive``
optimizer with ``lr = 1`` (``params <- params - grads``): the ``grads`` they return are
the weight changes themselves, with the sign convention of a descent direction.

**Plain** (:class:`Manhattan`, ``"manhattan"``)::

    grads = step * sign(g)          so   w <- w - step * sign(g)

Every weight moves by exactly ``step`` against the sign of its gradient; weights whose
gradient is exactly zero are left unchanged (``sign(0) = 0``).

**Conductance-limited** (:class:`ManhattanConductance`, ``"manhattan-conductance"``).
Each weight is the difference of a pair of memristor conductances::

    w = (G+ - G-) * scale,      gmin <= G+, G- <= gmax

The pair lives in the rule state (``rule_state["g_pos"]``, ``["g_neg"]``, with the
layout of the params).  :meth:`init` programs it from the initial weights,
``G+- = clip(g0 +- w / (2 scale))`` with ``g0 = (gmin + gmax) / 2`` (then snapped to the
conductance levels, if finite).  Each update with ``s = sign(g)`` sends one pulse to
both devices of a pair in opposite directions::

    G+ <- clip(G+ + dG(G+, -s, delta+),  gmin, gmax)
    G- <- clip(G- + dG(G-, +s, delta-),  gmin, gmax)

so ``w`` moves against the gradient; ``s = 0`` sends no pulse.  The pulse response is

    dG(G, d, delta) = d * delta                                  (linear, ``nonlinearity = 0``)
    dG(G, +1, delta) = +delta * exp(-nu (G - gmin) / (gmax - gmin))   (potentiation)
    dG(G, -1, delta) = -delta * exp(-nu (gmax - G) / (gmax - gmin))   (depression)

with ``nu = nonlinearity``: the step shrinks as the device approaches the bound it is
driven towards (the usual exponential-saturation device model).  Options:

* ``d2d`` device-to-device variation: every device has its own pulse size
  ``delta_i = delta * max(0, 1 + d2d * xi_i)``, ``xi_i ~ N(0, 1)`` drawn once in
  :meth:`init` (``rule_state["delta_pos"]``, ``["delta_neg"]``) and fixed for all steps;
* ``levels = n``: a device holds only ``n`` conductances ``gmin + k (gmax - gmin)/(n-1)``;
  after each pulse the conductance is rounded to the nearest level (``delta`` defaults to
  one level spacing, so a pulse moves one level; a pulse smaller than half a spacing
  never moves a device).

**The contract with the optimizer.**  ``gradients`` returns ``grads = w - w_new`` with
``w_new = (G+ - G-) * scale`` from the updated conductances, so the naive optimizer at
``lr = 1`` lands exactly on the weights the devices represent (after the first step
the params *are* the conductance weights: ``w - (w - w_new)`` is exact in floating point
when ``w`` and ``w_new`` are within a factor of two).  With any other optimizer or rate
the params and the devices drift apart; the rule does not check this.  Every float leaf
of the params (biases, trainable decays) is mapped to a device pair.

Memory: plain, nothing beyond the base rule.  Conductance, two conductances per weight
(``2 |w|``), plus two pulse sizes per weight with ``d2d > 0`` (``4 |w|`` in all), plus the
base rule's memory (BPTT: the graph of the sequence, ``O(T sum_l n_l)`` per sample).
Compute: the base rule's, plus ``O(|w|)`` elementwise work.
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import ops_for
from ..losses import Objective
from ..tree import tree_leaves, tree_map, tree_unflatten_like
from .base import Rule


def _base_rule(base: Any) -> Rule:
    from . import make_rule  # the package is fully imported before this module

    if not isinstance(base, (str, Rule)):
        raise ValueError(f"base: expected a rule name or Rule instance, got {type(base).__name__}")
    rule = make_rule(base)
    if "offline" not in rule.modes:
        raise ValueError(f"base: rule {rule.name!r} has no offline gradients() to take the sign of")
    return rule


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


class Manhattan(Rule):
    """Plain Manhattan rule: ``grads = step * sign(g_base)``; see the module docstring.

    ``step`` is the fixed weight change per update (use the ``naive`` optimizer, ``lr=1``);
    ``base`` names the rule whose gradient sign is used.
    """

    name = "manhattan"
    modes = ("offline",)

    def __init__(self, step: float = 1e-3, base: str | Rule = "bptt") -> None:
        self.step = _positive(step, "step")
        self.base = _base_rule(base)

    def init(self, network: Any, params: dict, key: Any = None) -> Any:
        return self.base.init(network, params, key)

    def gradients(self, network: Any, params: dict, rule_state: Any, batch: tuple, objective: Objective):
        g, rule_state, aux = self.base.gradients(network, params, rule_state, batch, objective)
        B = ops_for(batch[0])
        return tree_map(lambda x: self.step * B.sign(x), g), rule_state, aux

    def __repr__(self) -> str:
        return f"Manhattan(step={self.step}, base={self.base!r})"


class ManhattanConductance(Rule):
    """Manhattan rule on memristor pairs ``w = (G+ - G-) * scale``; see the module docstring.

    ``delta``: conductance change per pulse (default ``1e-3 (gmax - gmin)``, or one level
    spacing when ``levels`` is set); ``scale``: weight per unit conductance difference;
    ``gmin``/``gmax``: the device range; ``d2d``: relative std of the per-device pulse size;
    ``nonlinearity``: ``nu`` of the state-dependent pulse response (0 = linear);
    ``levels``: number of distinct conductances per device (``None`` = continuous).
    """

    name = "manhattan-conductance"
    modes = ("offline",)

    def __init__(
        self,
        delta: float | None = None,
        scale: float = 1.0,
        gmin: float = 0.0,
        gmax: float = 1.0,
        d2d: float = 0.0,
        nonlinearity: float = 0.0,
        levels: int | None = None,
        base: str | Rule = "bptt",
    ) -> None:
        for value, name in ((gmin, "gmin"), (gmax, "gmax")):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not gmax > gmin:
            raise ValueError(f"gmax must be greater than gmin, got gmin={gmin!r}, gmax={gmax!r}")
        self.gmin, self.gmax = float(gmin), float(gmax)
        self.scale = _positive(scale, "scale")
        if isinstance(d2d, bool) or not isinstance(d2d, (int, float)) or not (d2d >= 0 and math.isfinite(d2d)):
            raise ValueError(f"d2d must be a non-negative number, got {d2d!r}")
        if isinstance(nonlinearity, bool) or not isinstance(nonlinearity, (int, float)) or not (nonlinearity >= 0 and math.isfinite(nonlinearity)):
            raise ValueError(f"nonlinearity must be a non-negative number, got {nonlinearity!r}")
        self.d2d, self.nonlinearity = float(d2d), float(nonlinearity)
        if levels is not None and not (isinstance(levels, int) and not isinstance(levels, bool) and levels >= 2):
            raise ValueError(f"levels must be an integer >= 2 or None, got {levels!r}")
        self.levels = levels
        if delta is None:
            delta = self.spacing if levels is not None else 1e-3 * (self.gmax - self.gmin)
        self.delta = _positive(delta, "delta")
        self.base = _base_rule(base)

    @property
    def spacing(self) -> float | None:
        """Distance between neighbouring conductance levels (``None``: continuous)."""
        return None if self.levels is None else (self.gmax - self.gmin) / (self.levels - 1)

    # ------------------------------------------------------------------ device model
    def quantize(self, g: Any) -> Any:
        """Round conductances to the nearest allowed level (identity when continuous)."""
        if self.levels is None:
            return g
        B = ops_for(g)
        k = B.clip(B.round((g - self.gmin) / self.spacing), 0, self.levels - 1)
        return self.gmin + k * self.spacing

    def pulse(self, g: Any, direction: Any, delta: Any) -> Any:
        """``dG``: the conductance change of devices at ``g`` for pulses ``direction`` in {-1, 0, +1}."""
        B = ops_for(g)
        if self.nonlinearity == 0.0:
            return direction * delta
        span = self.gmax - self.gmin
        up = delta * B.exp(-self.nonlinearity * (g - self.gmin) / span)
        down = delta * B.exp(-self.nonlinearity * (self.gmax - g) / span)
        return B.where(direction > 0, up, B.where(direction < 0, -down, 0.0 * g))

    def program(self, g: Any, direction: Any, delta: Any) -> Any:
        """Conductances after one pulse: clipped to ``[gmin, gmax]``, then snapped to the levels."""
        B = ops_for(g)
        return self.quantize(B.clip(g + self.pulse(g, direction, delta), self.gmin, self.gmax))

    def weights(self, g_pos: Any, g_neg: Any) -> Any:
        """``w = (G+ - G-) * scale``, leaf-wise."""
        return tree_map(lambda a, b: (a - b) * self.scale, g_pos, g_neg)

    # ------------------------------------------------------------------ rule interface
    def init(self, network: Any, params: dict, key: Any = None) -> dict:
        leaves = tree_leaves(params)
        if not leaves:
            raise ValueError("params: nothing to map onto conductances")
        B = ops_for(leaves[0])
        key = B.key(0) if key is None else key
        k_base, k_dev = B.split(key, 2)
        # one compiled call on JAX (eager JAX compiles every small op separately)
        devices = B.jit(self.program_devices)(params, k_dev)
        return {"base": self.base.init(network, params, k_base), **devices}

    def program_devices(self, params: dict, key: Any) -> dict:
        """``g_pos``/``g_neg`` programmed from the weights ``params``, and the per-device pulse sizes."""
        leaves = tree_leaves(params)
        B = ops_for(leaves[0])
        g0 = 0.5 * (self.gmin + self.gmax)
        g_pos = tree_map(lambda w: self.quantize(B.clip(g0 + w / (2 * self.scale), self.gmin, self.gmax)), params)
        g_neg = tree_map(lambda w: self.quantize(B.clip(g0 - w / (2 * self.scale), self.gmin, self.gmax)), params)
        state = {"g_pos": g_pos, "g_neg": g_neg}
        if self.d2d > 0:
            keys = B.split(key, 2 * len(leaves))

            def draw(w: Any, k: Any) -> Any:
                return self.delta * B.maximum(1.0 + self.d2d * B.normal(k, w.shape), 0.0)

            state["delta_pos"] = tree_unflatten_like(params, [draw(w, k) for w, k in zip(leaves, keys[0::2])])
            state["delta_neg"] = tree_unflatten_like(params, [draw(w, k) for w, k in zip(leaves, keys[1::2])])
        return state

    def gradients(self, network: Any, params: dict, rule_state: dict, batch: tuple, objective: Objective):
        g, base_state, aux = self.base.gradients(network, params, rule_state["base"], batch, objective)
        B = ops_for(batch[0])
        sign = tree_map(B.sign, g)
        d_pos = rule_state.get("delta_pos", tree_map(lambda _: self.delta, params))
        d_neg = rule_state.get("delta_neg", tree_map(lambda _: self.delta, params))
        # descending: w must move by -sign(g), so G+ moves by -sign(g) and G- by +sign(g)
        g_pos = tree_map(lambda G, s, d: self.program(G, -s, d), rule_state["g_pos"], sign, d_pos)
        g_neg = tree_map(lambda G, s, d: self.program(G, s, d), rule_state["g_neg"], sign, d_neg)
        w_new = self.weights(g_pos, g_neg)
        grads = tree_map(lambda w, wn: w - wn, params, w_new)
        state = {**rule_state, "base": base_state, "g_pos": g_pos, "g_neg": g_neg}
        return grads, state, aux

    def __repr__(self) -> str:
        return (
            f"ManhattanConductance(delta={self.delta}, scale={self.scale}, gmin={self.gmin}, gmax={self.gmax},"
            f" d2d={self.d2d}, nonlinearity={self.nonlinearity}, levels={self.levels}, base={self.base!r})"
        )
