"""Leaky integrate-and-fire neuron, voltage- or current-based."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import ops_for
from ..surrogates import SurrogateLike, make_surrogate
from .base import RESETS, Cell, State, check_choice, check_positive, decay_from, fixed_decays, trainable_decay


@dataclass(frozen=True)
class LIF(Cell):
    """Leaky integrate-and-fire neuron with a surrogate-gradient spike.

    Per step, with ``alpha = exp(-dt/tau_mem)`` and input current ``I_t``::

        i_t = beta i_{t-1} + I_t            (current-based only, beta = exp(-dt/tau_syn))
        u_t = alpha v_{t-1} + i_t           (voltage-based: i_t = I_t)
        z_t = H(u_t - threshold)            (surrogate derivative in the backward pass)
        v_t = u_t - r(z_t) * threshold      reset="subtract"
        v_t = u_t * (1 - r(z_t))            reset="zero"
        v_t = u_t                           reset="none"

    The reset uses the spike of the same step.  ``r(z) = stop_gradient(z)`` when
    ``detach_reset`` (the default: the reset carries no gradient, as in Zenke & Vogels 2021)
    and ``r(z) = z`` otherwise (the surrogate gradient also flows through the reset).
    State: ``v`` (and ``i`` when current-based); output: the spikes ``z_t``.
    """

    tau_mem: float | None = 20.0
    dt: float = 1.0
    decay: float | None = None
    tau_syn: float | None = None
    syn_decay: float | None = None
    threshold: float = 1.0
    reset: str = "subtract"
    detach_reset: bool = True
    surrogate: SurrogateLike = "fast_sigmoid"
    train_decay: bool = False
    alpha: float = field(init=False, repr=False, default=0.0)
    beta: float | None = field(init=False, repr=False, default=None)

    spiking = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", decay_from(self.tau_mem, self.decay, self.dt, "tau_mem", "decay"))
        if self.tau_syn is not None or self.syn_decay is not None:
            object.__setattr__(self, "beta", decay_from(self.tau_syn, self.syn_decay, self.dt, "tau_syn", "syn_decay"))
        check_positive(self.threshold, "threshold")
        check_choice(self.reset, "reset", RESETS)
        object.__setattr__(self, "surrogate", make_surrogate(self.surrogate))

    @property
    def current_based(self) -> bool:
        return self.beta is not None

    @property
    def state_names(self) -> tuple:  # type: ignore[override]
        return ("v", "i") if self.current_based else ("v",)

    @property
    def psp_decays(self) -> tuple:
        """``(beta, alpha)`` current-based, ``(alpha,)`` voltage-based."""
        return fixed_decays(self, (self.beta, self.alpha) if self.current_based else (self.alpha,))

    def init_params(self, rng: np.random.Generator, n: int) -> dict:
        if not self.train_decay:
            return {}
        p = {"alpha": np.full(n, self.alpha)}
        if self.current_based:
            p["beta"] = np.full(n, self.beta)
        return p

    def step(self, params: dict, state: State, current: Any) -> tuple[State, Any]:
        B = ops_for(current)
        alpha = trainable_decay(params, "alpha", self.alpha, B)
        new: State = {}
        if self.current_based:
            i = trainable_decay(params, "beta", self.beta, B) * state["i"] + current
            new["i"] = i
        else:
            i = current
        u = alpha * state["v"] + i
        z = B.spike(u - self.threshold, self.surrogate)
        new["v"] = reset_membrane(B, u, z, self.threshold, self.reset, self.detach_reset)
        return _ordered(new, self.state_names), z


def reset_membrane(B: Any, u: Any, z: Any, threshold: Any, reset: str, detach: bool) -> Any:
    """Apply the reset ``reset`` (subtract / zero / none) after spikes ``z``."""
    r = B.stop_gradient(z) if detach else z
    if reset == "subtract":
        return u - r * threshold
    if reset == "zero":
        return u * (1.0 - r)
    return u


def _ordered(state: State, names: tuple) -> State:
    return {k: state[k] for k in names}
