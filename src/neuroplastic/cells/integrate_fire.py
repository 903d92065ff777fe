"""Signed integrate-and-fire neuron with ternary output (the SpikeGrad forward neuron)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backend import ops_for
from ..surrogates import SurrogateLike, make_surrogate
from .base import Cell, State, check_positive


@dataclass(frozen=True)
class SignedIF(Cell):
    """Non-leaky integrate-and-fire neuron emitting spikes in ``{-1, 0, +1}``.

    Per step (Thiele, Bichler & Dupret 2019)::

        u_t = v_{t-1} + I_t
        z_t = H(u_t - theta) - g_t * H(-u_t - theta)
        v_t = u_t - theta * r(z_t)                 subtractive reset, r = stop_gradient if detach_reset
        c_t = c_{t-1} + z_t                         signed spike count

    With ``nonnegative=True`` (SpikeGrad's choice) a negative spike is only allowed while
    the neuron has a positive net count, ``g_t = H(c_{t-1})``, so the count stays ``>= 0``
    and the accumulated output approximates a ReLU; otherwise ``g_t = 1``.
    State: ``v``, ``c``; output ``z_t``.
    """

    threshold: float = 1.0
    nonnegative: bool = True
    detach_reset: bool = True
    surrogate: SurrogateLike = "straight_through"

    spiking = True
    state_names = ("v", "c")
    psp_decays = (1.0,)  # a perfect integrator

    def __post_init__(self) -> None:
        check_positive(self.threshold, "threshold")
        object.__setattr__(self, "surrogate", make_surrogate(self.surrogate))

    def step(self, params: dict, state: State, current: Any) -> tuple[State, Any]:
        B = ops_for(current)
        u = state["v"] + current
        pos = B.spike(u - self.threshold, self.surrogate)
        neg = B.spike(-u - self.threshold, self.surrogate)
        if self.nonnegative:
            neg = neg * B.stop_gradient(B.heaviside(state["c"]))
        z = pos - neg
        r = B.stop_gradient(z) if self.detach_reset else z
        return {"v": u - self.threshold * r, "c": state["c"] + B.stop_gradient(z)}, z
