"""Non-spiking leaky integrator, the usual readout of a spiking network."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import ops_for
from .base import Cell, State, check_finite, decay_from, fixed_decays, trainable_decay


@dataclass(frozen=True)
class LeakyReadout(Cell):
    """``y_t = kappa y_{t-1} + (1 - kappa) v_leak + g I_t`` with ``kappa = exp(-dt/tau_out)``; output ``y_t``.

    ``tau_out=inf`` (or ``decay=1``) is a perfect integrator; ``decay=0`` passes the current.
    ``g`` is ``input_gain`` and ``v_leak`` the resting potential (1 and 0 by default, giving
    ``y_t = kappa y_{t-1} + I_t``); Norse's ``LIBoxCell`` is ``decay = 1 - dt tau_mem_inv``,
    ``input_gain = dt tau_mem_inv`` (what NIR's ``LI`` node imports as).  A resting potential
    makes the output affine in the input, so the cell is ``linear`` only with ``v_leak = 0``,
    and trace-based rules refuse a gain other than 1.
    """

    tau_out: float | None = 20.0
    dt: float = 1.0
    decay: float | None = None
    train_decay: bool = False
    input_gain: float = 1.0
    v_leak: float = 0.0
    kappa: float = field(init=False, repr=False, default=0.0)

    state_names = ("v",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kappa", decay_from(self.tau_out, self.decay, self.dt, "tau_out", "decay"))
        check_finite(self.input_gain, "input_gain")
        check_finite(self.v_leak, "v_leak")

    @property
    def linear(self) -> bool:  # type: ignore[override]
        """Whether ``y`` is linear in the input currents (no resting potential)."""
        return self.v_leak == 0.0

    @property
    def psp_decays(self) -> tuple:
        """``(kappa,)``."""
        from .lif import check_unit_gain

        check_unit_gain(self)
        return fixed_decays(self, (self.kappa,))

    def init_params(self, rng: np.random.Generator, n: int) -> dict:
        return {"kappa": np.full(n, self.kappa)} if self.train_decay else {}

    def step(self, params: dict, state: State, current: Any) -> tuple[State, Any]:
        B = ops_for(current)
        kappa = trainable_decay(params, "kappa", self.kappa, B)
        drive = current if self.input_gain == 1.0 else self.input_gain * current
        if self.v_leak != 0.0:
            drive = drive + (1.0 - kappa) * self.v_leak
        v = kappa * state["v"] + drive
        return {"v": v}, v


@dataclass(frozen=True)
class Identity(Cell):
    """Passes the current through (a plain linear layer when placed after ``Dense``)."""

    state_names = ()
    psp_decays = ()
    linear = True

    def step(self, params: dict, state: State, current: Any) -> tuple[State, Any]:
        return {}, current
