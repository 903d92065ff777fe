"""Adaptive LIF neuron (Bellec et al. 2018, 2020): a spike raises the threshold, which decays back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import ops_for
from ..surrogates import SurrogateLike, make_surrogate
from .base import RESETS, Cell, State, check_choice, check_positive, decay_from, fixed_decays, trainable_decay
from .lif import reset_membrane

#: what an ALIF reset subtracts: the base threshold or the adaptive threshold of the step
RESET_AMOUNTS = ("threshold", "adaptive_threshold")


@dataclass(frozen=True)
class ALIF(Cell):
    """LIF with threshold adaptation.

    With ``alpha = exp(-dt/tau_mem)`` and ``rho = exp(-dt/tau_adapt)``::

        A_t = threshold + beta_adapt * a_{t-1}         adaptive threshold
        u_t = alpha v_{t-1} + I_t
        z_t = H(u_t - A_t)
        v_t = u_t - r(z_t) * theta_r                   (reset="subtract"; "zero" and "none" as in LIF)
        a_t = rho a_{t-1} + z_t

    ``r`` detaches the reset when ``detach_reset``.  The reset subtracts ``theta_r``: the
    base ``threshold`` (``reset_by="threshold"``, the default, as in Bellec et al. 2020's e-prop
    equations) or the adaptive threshold ``A_t`` of the step (``reset_by="adaptive_threshold"``,
    which brings the membrane as far below the moving threshold as it went over it).  Either way
    the reset uses the spike of the same step.  State: ``v``, ``a``; output ``z_t``.
    ``beta_adapt = 0`` gives back the LIF neuron.
    """

    tau_mem: float | None = 20.0
    tau_adapt: float | None = 200.0
    dt: float = 1.0
    decay: float | None = None
    adapt_decay: float | None = None
    beta_adapt: float = 1.8
    threshold: float = 1.0
    reset: str = "subtract"
    detach_reset: bool = True
    surrogate: SurrogateLike = "fast_sigmoid"
    train_decay: bool = False
    reset_by: str = "threshold"
    alpha: float = field(init=False, repr=False, default=0.0)
    rho: float = field(init=False, repr=False, default=0.0)

    spiking = True
    state_names = ("v", "a")

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", decay_from(self.tau_mem, self.decay, self.dt, "tau_mem", "decay"))
        object.__setattr__(self, "rho", decay_from(self.tau_adapt, self.adapt_decay, self.dt, "tau_adapt", "adapt_decay"))
        check_positive(self.threshold, "threshold")
        if self.beta_adapt < 0:
            raise ValueError(f"beta_adapt must be >= 0, got {self.beta_adapt!r}")
        check_choice(self.reset, "reset", RESETS)
        check_choice(self.reset_by, "reset_by", RESET_AMOUNTS)
        object.__setattr__(self, "surrogate", make_surrogate(self.surrogate))

    @property
    def psp_decays(self) -> tuple:
        """``(alpha,)``: the membrane filter (threshold adaptation is left out)."""
        return fixed_decays(self, (self.alpha,))

    def init_params(self, rng: np.random.Generator, n: int) -> dict:
        if not self.train_decay:
            return {}
        return {"alpha": np.full(n, self.alpha), "rho": np.full(n, self.rho)}

    def step(self, params: dict, state: State, current: Any) -> tuple[State, Any]:
        B = ops_for(current)
        alpha = trainable_decay(params, "alpha", self.alpha, B)
        rho = trainable_decay(params, "rho", self.rho, B)
        thr = self.threshold + self.beta_adapt * state["a"]
        u = alpha * state["v"] + current
        z = B.spike(u - thr, self.surrogate)
        amount = self.threshold if self.reset_by == "threshold" else thr
        v = reset_membrane(B, u, z, amount, self.reset, self.detach_reset)
        a = rho * state["a"] + z
        return {"v": v, "a": a}, z
