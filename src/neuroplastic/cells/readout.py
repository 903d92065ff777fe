"""Non-spiking leaky integrator, the usual readout of a spiking network."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import ops_for
from .base import Cell, State, decay_from, fixed_decays, trainable_decay


@dataclass(frozen=True)
class LeakyReadout(Cell):
    """``y_t = kappa y_{t-1} + I_t`` with ``kappa = exp(-dt/tau_out)``; output ``y_t``.

    ``tau_out=inf`` (or ``decay=1``) is a perfect integrator; ``decay=0`` passes the current.
    """

    tau_out: float | None = 20.0
    dt: float = 1.0
    decay: float | None = None
    train_decay: bool = False
    kappa: float = field(init=False, repr=False, default=0.0)

    state_names = ("v",)
    linear = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "kappa", decay_from(self.tau_out, self.decay, self.dt, "tau_out", "decay"))

    @property
    def psp_decays(self) -> tuple:
        """``(kappa,)``."""
        return fixed_decays(self, (self.kappa,))

    def init_params(self, rng: np.random.Generator, n: int) -> dict:
        return {"kappa": np.full(n, self.kappa)} if self.train_decay else {}

    def step(self, params: dict, state: State, current: Any) -> tuple[State, Any]:
        B = ops_for(current)
        v = trainable_decay(params, "kappa", self.kappa, B) * state["v"] + current
        return {"v": v}, v


@dataclass(frozen=True)
class Identity(Cell):
    """Passes the current through (a plain linear layer when placed after ``Dense``)."""

    state_names = ()
    psp_decays = ()
    linear = True

    def step(self, params: dict, state: State, current: Any) -> tuple[State, Any]:
        return {}, current
