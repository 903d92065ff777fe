"""Non-spiking tanh RNN cell: a smooth reference for checking rules with finite differences."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backend import ops_for
from .base import Cell, State


@dataclass(frozen=True)
class TanhRNN(Cell):
    """``h_t = leak * h_{t-1} + tanh(I_t)``; output ``h_t``.

    With ``leak = 0`` (the default) and a recurrent layer this is the Elman RNN
    ``h_t = tanh(W_in x_t + W_rec h_{t-1} + b)``.  A ``leak`` in ``(0, 1)`` gives the cell its
    own state dependence, which exercises the state Jacobian of online rules.
    """

    leak: float = 0.0

    state_names = ("h",)

    def __post_init__(self) -> None:
        if not (0.0 <= self.leak <= 1.0):
            raise ValueError(f"leak must lie in [0, 1], got {self.leak!r}")

    @property
    def psp_decays(self) -> tuple:
        """``(leak,)``: the state's own decay (the input passes a tanh first)."""
        return (float(self.leak),)

    def step(self, params: dict, state: State, current: Any) -> tuple[State, Any]:
        B = ops_for(current)
        h = self.leak * state["h"] + B.tanh(current)
        return {"h": h}, h
