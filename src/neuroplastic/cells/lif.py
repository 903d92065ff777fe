"""Leaky integrate-and-fire neuron, voltage- or current-based."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backend import ops_for
from ..surrogates import SurrogateLike, make_surrogate
from .base import (
    RESETS, Cell, State, check_choice, check_finite, check_positive, check_reset_timing, decay_from, fixed_decays,
    trainable_decay,
)


@dataclass(frozen=True)
class LIF(Cell):
    """Leaky integrate-and-fire neuron with a surrogate-gradient spike.

    Per step, with ``alpha = exp(-dt/tau_mem)`` (or ``decay``), input current ``I_t`` and
    ``theta`` the threshold::

        i_t = beta i_{t-1} + I_t            (current-based only, beta = exp(-dt/tau_syn))
        u_t = alpha v_{t-1} + (1 - alpha) v_leak + g i_t     (voltage-based: i_t = I_t)
        z_t = H(u_t - theta)                (surrogate derivative in the backward pass)
        v_t = R(u_t, z_t)                   the reset, below

    ``g`` is ``input_gain`` (1 by default) and ``v_leak`` the resting potential (0 by default).
    The reset ``R(u, z)``, with ``r(z) = stop_gradient(z)`` when ``detach_reset`` (the default:
    the reset carries no gradient, as in Zenke & Vogels 2021) and ``r(z) = z`` otherwise::

        R(u, z) = u - theta r(z)                       reset="subtract"
        R(u, z) = (1 - r(z)) u + r(z) v_reset          reset="zero" (to ``v_reset``, 0 by default)
        R(u, z) = u                                    reset="none"

    **Which spike resets, and where relative to the leak** (``reset_from``, ``reset_order``):

    * ``reset_from="this_step"`` (the default): as above, ``v_t = R(u_t, z_t)``; the stored
      membrane is the one after the reset, and the next step's leak scales the reset:
      ``u_{t+1} = alpha (u_t - theta z_t) + ...``.  Norse's ``LIFCell`` and snnTorch's
      ``Leaky(reset_delay=False)`` work this way.
    * ``reset_from="previous_step"``: step ``t`` applies the reset of the spike of step
      ``t-1`` (kept in the state as ``z``); the stored membrane is ``u_t`` itself, before any reset:

      - ``reset_order="before_leak"``: ``u_t = alpha R(u_{t-1}, z_{t-1}) + (1 - alpha) v_leak + g i_t``
        (the same spikes as ``"this_step"``; snnTorch's ``Leaky(reset_mechanism="zero")``);
      - ``reset_order="after_leak"``: ``u_t = R(alpha u_{t-1} + (1 - alpha) v_leak + g i_t, z_{t-1})``,
        so a subtractive reset is not scaled by the decay:
        ``u_t = alpha u_{t-1} + g i_t - theta r(z_{t-1})`` (snnTorch's default ``Leaky``,
        ``Synaptic`` and ``RLeaky``).

    The presets :meth:`snntorch` and :meth:`norse` set these options as those libraries do.
    None of the reset options changes the linear filter from the input current to the
    membrane (``psp_decays``, which leaves resets out); ``input_gain`` scales it, so trace-based
    rules refuse a gain other than 1.  State: ``v`` (and ``i`` when current-based, ``z`` when
    ``reset_from="previous_step"``); output: the spikes ``z_t``.
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
    reset_from: str = "this_step"
    reset_order: str = "before_leak"
    v_reset: float = 0.0
    v_leak: float = 0.0
    input_gain: float = 1.0
    alpha: float = field(init=False, repr=False, default=0.0)
    beta: float | None = field(init=False, repr=False, default=None)
    fused: bool = field(init=False, repr=False, default=False, compare=False)

    spiking = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", decay_from(self.tau_mem, self.decay, self.dt, "tau_mem", "decay"))
        if self.tau_syn is not None or self.syn_decay is not None:
            object.__setattr__(self, "beta", decay_from(self.tau_syn, self.syn_decay, self.dt, "tau_syn", "syn_decay"))
        check_choice(self.reset, "reset", RESETS)
        check_reset_timing(self.reset_from, self.reset_order)
        check_finite(self.v_reset, "v_reset")
        check_finite(self.v_leak, "v_leak")
        check_finite(self.input_gain, "input_gain")
        check_threshold(self.threshold, self.reset, self.v_reset, self.v_leak)
        if self.v_reset != 0.0 and self.reset != "zero":
            raise ValueError(f"v_reset: {self.v_reset!r} is the potential of reset='zero'; this cell has reset={self.reset!r}")
        object.__setattr__(self, "surrogate", make_surrogate(self.surrogate))
        object.__setattr__(self, "fused", type(self) is LIF and _defaults_outside(self, FUSED_FIELDS))

    @classmethod
    def snntorch(
        cls,
        beta: float,
        threshold: float = 1.0,
        alpha: float | None = None,
        reset_mechanism: str = "subtract",
        reset_delay: bool = True,
        recurrent: bool = False,
        surrogate: SurrogateLike | None = None,
    ) -> LIF:
        """snnTorch 1.0's ``Leaky(beta)``, ``Synaptic(alpha, beta)`` (``alpha`` given) or ``RLeaky(beta)``
        (``recurrent=True``; its recurrent weights belong to a :class:`~neuroplastic.layers.RecurrentDense`).

        snnTorch's names: ``beta`` is the membrane decay, ``alpha`` the synaptic decay.  With its
        defaults (``reset_mechanism="subtract"``, ``reset_delay=True``)::

            syn_t = alpha syn_{t-1} + I_t                           (Synaptic only; else syn_t = I_t)
            m_t = beta m_{t-1} + syn_t - theta stop_gradient(z_{t-1})
            z_t = H(m_t - theta)

        that is ``reset_from="previous_step"``, ``reset_order="after_leak"``, ``detach_reset=True``.
        ``reset_mechanism="zero"`` zeroes the membrane before the leak for ``Leaky`` and after it
        for ``RLeaky``; ``reset_delay=False`` resets with this step's spike, the gradient flowing
        through it (``reset_from="this_step"``, ``detach_reset=False``).  With ``reset_delay=False``
        snnTorch also subtracts ``theta`` before its spike test whenever the membrane left by the
        previous reset is still above threshold (it then undoes that subtraction); the preset
        matches it exactly as long as a reset brings the membrane below threshold.  The surrogate defaults to
        snnTorch's ``atan`` (our ``arctan`` with ``alpha=2``).
        """
        check_choice(reset_mechanism, "reset_mechanism", RESETS)
        if not isinstance(reset_delay, bool):
            raise ValueError(f"reset_delay: expected True or False, got {reset_delay!r}")
        if alpha is not None and recurrent:
            raise ValueError("alpha: snnTorch's RLeaky has no synaptic current (RSynaptic is not reproduced); leave alpha=None")
        timing = {"reset_from": "this_step", "reset_order": "before_leak", "detach_reset": False}
        if reset_delay:
            if reset_mechanism == "zero" and alpha is not None:
                raise ValueError(
                    "reset_mechanism: snnTorch's Synaptic(reset_mechanism='zero', reset_delay=True) also zeroes the synaptic"
                    " current, which no LIF option does; use reset_mechanism='subtract' or reset_delay=False"
                )
            order = "before_leak" if reset_mechanism == "zero" and not recurrent else "after_leak"
            timing = {"reset_from": "previous_step", "reset_order": order, "detach_reset": True}
        return cls(
            tau_mem=None, decay=min(max(float(beta), 0.0), 1.0),
            syn_decay=None if alpha is None else min(max(float(alpha), 0.0), 1.0),
            threshold=threshold, reset=reset_mechanism,
            surrogate=surrogate if surrogate is not None else make_surrogate("arctan", 2.0),
            **timing,
        )

    @classmethod
    def norse(
        cls,
        tau_mem_inv: float = 100.0,
        tau_syn_inv: float | None = 200.0,
        v_leak: float = 0.0,
        v_th: float = 1.0,
        v_reset: float = 0.0,
        dt: float = 0.001,
        surrogate: SurrogateLike | None = None,
    ) -> LIF:
        """Norse 1.1's ``LIFCell`` (``tau_syn_inv`` given) or ``LIFBoxCell`` (``tau_syn_inv=None``).

        Norse integrates ``dv/dt = tau_mem_inv ((v_leak - v) + i)``, ``di/dt = -tau_syn_inv i`` with
        one Euler step of ``dt`` and resets to ``v_reset`` with this step's spike, the gradient
        flowing through the reset::

            i_t = (1 - dt tau_syn_inv) i_{t-1} + I_t                (LIFCell; LIFBoxCell: i_t = I_t)
            u_t = v_{t-1} + dt tau_mem_inv ((v_leak - v_{t-1}) + i_t)
            z_t = H(u_t - v_th)
            v_t = (1 - z_t) u_t + z_t v_reset

        that is ``decay = 1 - dt tau_mem_inv``, ``syn_decay = 1 - dt tau_syn_inv``,
        ``input_gain = dt tau_mem_inv``, ``reset="zero"``, ``detach_reset=False``.  (Norse stores
        the synaptic current after its decay; this cell stores it before, which gives the same
        spikes.)  The surrogate defaults to Norse's ``"super"``: ``1 / (|x| + 1)^2``, our
        ``fast_sigmoid`` with ``beta=1`` (Norse ignores its ``alpha`` there).
        """
        check_positive(dt, "dt")
        check_positive(tau_mem_inv, "tau_mem_inv")
        k_mem = dt * tau_mem_inv
        if k_mem > 1.0:
            raise ValueError(f"tau_mem_inv: dt * tau_mem_inv must be at most 1 for a stable Euler step, got {k_mem!r}")
        syn_decay = None
        if tau_syn_inv is not None:
            check_positive(tau_syn_inv, "tau_syn_inv")
            if dt * tau_syn_inv > 1.0:
                raise ValueError(f"tau_syn_inv: dt * tau_syn_inv must be at most 1 for a stable Euler step, got {dt * tau_syn_inv!r}")
            syn_decay = 1.0 - dt * tau_syn_inv
        return cls(
            tau_mem=None, decay=1.0 - k_mem, syn_decay=syn_decay, dt=dt, threshold=v_th, reset="zero", v_reset=v_reset,
            v_leak=v_leak, input_gain=k_mem, detach_reset=False,
            surrogate=surrogate if surrogate is not None else make_surrogate("fast_sigmoid", 1.0),
        )

    @property
    def current_based(self) -> bool:
        return self.beta is not None

    @property
    def state_names(self) -> tuple:  # type: ignore[override]
        names = ("v", "i") if self.current_based else ("v",)
        return names + ("z",) if self.reset_from == "previous_step" else names

    @property
    def psp_decays(self) -> tuple:
        """``(beta, alpha)`` current-based, ``(alpha,)`` voltage-based (the reset options leave it unchanged)."""
        check_unit_gain(self)
        return fixed_decays(self, (self.beta, self.alpha) if self.current_based else (self.alpha,))

    def initial_state(self, B: Any, batch: int, n: int) -> State:
        """Zeros, with the membrane at the resting potential ``v_leak`` (as Norse starts it)."""
        state = super().initial_state(B, batch, n)
        if self.v_leak != 0.0:
            state["v"] = state["v"] + self.v_leak
        return state

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
        drive = i if self.input_gain == 1.0 else self.input_gain * i
        if self.v_leak != 0.0:
            drive = drive + (1.0 - alpha) * self.v_leak
        if self.reset_from == "this_step":
            u = alpha * state["v"] + drive
            z = B.spike(u - self.threshold, self.surrogate)
            new["v"] = reset_membrane(B, u, z, self.threshold, self.reset, self.detach_reset, self.v_reset)
            return _ordered(new, self.state_names), z
        z_prev = state["z"]
        if self.reset_order == "before_leak":
            u = alpha * reset_membrane(B, state["v"], z_prev, self.threshold, self.reset, self.detach_reset, self.v_reset) + drive
        else:
            u = reset_membrane(B, alpha * state["v"] + drive, z_prev, self.threshold, self.reset, self.detach_reset, self.v_reset)
        z = B.spike(u - self.threshold, self.surrogate)
        new["v"], new["z"] = u, z
        return _ordered(new, self.state_names), z

    def sequence(self, params: dict, state: State, currents: Any) -> tuple[State, Any] | None:
        """The whole sequence as :meth:`Backend.lif_sequence` (a fused kernel) when :attr:`fused`: a
        voltage-based LIF with fixed decay and every setting outside :data:`FUSED_FIELDS` at its default."""
        if not self.fused or params:
            return None
        spikes, v_last = ops_for(currents).lif_sequence(currents, state["v"], self.alpha, self.threshold, self.reset,
                                                        self.detach_reset, self.surrogate)
        return {"v": v_last}, spikes


#: the LIF settings ``Backend.lif_sequence`` implements; every other field must hold its default for
#: :meth:`LIF.sequence` to use it (a field added later keeps the reference path until the kernel has it)
FUSED_FIELDS = ("tau_mem", "decay", "dt", "threshold", "reset", "detach_reset", "surrogate")


def _defaults_outside(cell: Any, names: tuple) -> bool:
    """Whether every init field of ``cell`` not in ``names`` holds its default value."""
    for f in dataclasses.fields(cell):
        if not f.init or f.name in names:
            continue
        if f.default is dataclasses.MISSING or getattr(cell, f.name) != f.default:
            return False
    return True


def check_threshold(threshold: Any, reset: str, v_reset: float, v_leak: float) -> None:
    """The threshold is positive, or (with a resting or reset potential) above the reset potential."""
    if v_reset == 0.0 and v_leak == 0.0:
        check_positive(threshold, "threshold")
        return
    check_finite(threshold, "threshold")
    if reset == "zero" and not threshold > v_reset:
        raise ValueError(f"threshold must lie above v_reset={v_reset!r}, got {threshold!r}")


def check_unit_gain(cell: Cell) -> None:
    """A ``ValueError`` for trace-based rules when ``cell`` scales its input current."""
    gain = getattr(cell, "input_gain", 1.0)
    if gain != 1.0:
        raise ValueError(
            f"network: {type(cell).__name__}(input_gain={gain!r}) scales its input current, and trace-based rules"
            " assume unit gain; fold the gain into the weights (input_gain=1, weights times the gain)"
        )


def reset_membrane(B: Any, u: Any, z: Any, threshold: Any, reset: str, detach: bool, v_reset: float = 0.0) -> Any:
    """Apply the reset ``reset`` (subtract / zero (to ``v_reset``) / none) after spikes ``z``."""
    r = B.stop_gradient(z) if detach else z
    if reset == "subtract":
        return u - r * threshold
    if reset == "zero":
        return u * (1.0 - r) if v_reset == 0.0 else u * (1.0 - r) + r * v_reset
    return u


def _ordered(state: State, names: tuple) -> State:
    return {k: state[k] for k in names}
