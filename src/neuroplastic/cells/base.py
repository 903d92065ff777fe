"""The cell interface and helpers shared by the neuron models.

A cell is a frozen dataclass of hyper-parameters with three methods:

``init_params(rng, n) -> dict``
    the cell's own trainable parameters for ``n`` neurons, as numpy arrays (often empty:
    input and recurrent weights belong to the layer);
``initial_state(B, batch, n) -> dict``
    the state at ``t = 0`` on backend ``B``;
``step(params, state, current) -> (state, out)``
    one time step: ``current`` is the total input current ``(batch, n)``.

Cells are *neuron-wise*: neuron ``j``'s new state and output depend only on its own state
and current.  Rules that need cell Jacobians (e-prop, OSTL, RTRL) rely on this: the
Jacobians are diagonal across neurons, and they get them by forward-mode autodiff of
``step``.  A cell holds no arrays between calls.

Decays are given either as time constants with a step ``dt`` (``decay = exp(-dt/tau)``) or
directly as decays in ``[0, 1]``.  With ``train_decay=True`` the decay becomes a
per-neuron parameter (clipped to ``[0, 1]`` in the step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


State = dict
RESETS = ("subtract", "zero", "none")
#: which spike resets the membrane in step ``t``: the spike of step ``t`` itself, applied at the end of
#: the step (the stored membrane is post-reset), or the spike of step ``t-1``, applied during step ``t``
#: (the stored membrane is pre-reset and the state carries that spike as ``z``)
RESET_FROM = ("this_step", "previous_step")
#: where a reset from the previous step's spike lands relative to the leak of step ``t``: on the
#: membrane before it decays (the reset decays with it), or after the leak and the input (unscaled)
RESET_ORDERS = ("before_leak", "after_leak")


def decay_from(tau: float | None, decay: float | None, dt: float, tau_name: str, decay_name: str) -> float:
    """``exp(-dt/tau)``, or ``decay`` itself, with argument checks that name the argument."""
    if dt <= 0 or not math.isfinite(dt):
        raise ValueError(f"dt must be a positive number, got {dt!r}")
    if decay is not None:
        if not (0.0 <= decay <= 1.0):
            raise ValueError(f"{decay_name} must lie in [0, 1], got {decay!r}")
        return float(decay)
    if tau is None:
        raise ValueError(f"give {tau_name} or {decay_name}")
    if not (tau > 0):
        raise ValueError(f"{tau_name} must be a positive time constant, got {tau!r}")
    return float(math.exp(-dt / tau)) if math.isfinite(tau) else 1.0


def check_positive(value: float, name: str) -> None:
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def check_choice(value: str, name: str, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name}: unknown value {value!r}; choose one of {list(choices)}")


def check_finite(value: float, name: str) -> None:
    """A ``ValueError`` naming ``name`` unless ``value`` is a finite real number."""
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def check_reset_timing(reset_from: str, reset_order: str) -> None:
    """Check the ``reset_from`` / ``reset_order`` pair of a spiking cell (see :data:`RESET_FROM`)."""
    check_choice(reset_from, "reset_from", RESET_FROM)
    check_choice(reset_order, "reset_order", RESET_ORDERS)
    if reset_from == "this_step" and reset_order != "before_leak":
        raise ValueError(
            f"reset_order: {reset_order!r} needs reset_from='previous_step' (a reset from this step's spike comes after"
            " this step's leak and before the next one; reset_order='after_leak' with reset_from='previous_step' is"
            " snnTorch's default)"
        )


@dataclass(frozen=True)
class Cell:
    """Base class of all cells (see the module docstring for the interface)."""

    #: whether ``out`` is a spike train (used by firing-rate metrics and regularisers)
    spiking = False
    #: names of the state fields, in a fixed order
    state_names = ()
    #: whether the output is linear in the input currents, ``y_t = (k * I)_t`` with the kernel of
    #: ``psp_decays`` (leaky readout, identity); online e-prop's readout filter relies on it
    linear = False

    def init_params(self, rng: np.random.Generator, n: int) -> dict:
        return {}

    def initial_state(self, B: Any, batch: int, n: int) -> State:
        return {name: B.zeros((batch, n)) for name in self.state_names}

    def step(self, params: dict, state: State, current: Any) -> tuple[State, Any]:  # pragma: no cover
        raise NotImplementedError

    #: whether :meth:`sequence` runs a fused kernel for this cell's settings
    fused = False

    def sequence(self, params: dict, state: State, currents: Any) -> tuple[State, Any] | None:
        """The cell over a whole sequence of input currents ``(T, B, n)`` in one fused kernel:
        ``(last state, outputs (T, B, n))``, or ``None`` when the cell has none (then the network
        scans :meth:`step`).  A kernel gives :meth:`step`'s numbers: the forward bit for bit, the
        gradients to round-off."""
        return None

    @property
    def psp_decays(self) -> tuple:
        """Decays of the linear filter from the input current to the membrane (the PSP kernel).

        ``()`` for a memoryless cell, ``(alpha,)`` for one exponential stage, ``(beta, alpha)``
        for a synaptic then a membrane stage.  Spike resets and adaptation are left out.
        Trace-based rules (OTTT, OTPE, SuperSpike, DCLL, online e-prop's readout) filter
        presynaptic activity with it; a cell without a linear input filter leaves it
        undeclared, and those rules then refuse it by name.
        """
        raise ValueError(
            f"network: cell {type(self).__name__} declares no psp_decays (the decays of its linear input filter);"
            " trace-based rules need it: give the cell a `psp_decays` property"
        )


def fixed_decays(cell: Cell, decays: tuple) -> tuple:
    """``decays`` as floats, or a ``ValueError`` when ``cell`` trains its decays per neuron."""
    if getattr(cell, "train_decay", False):
        raise ValueError(
            f"network: {type(cell).__name__}(train_decay=True) has per-neuron decays, so its presynaptic trace is not"
            " shared across neurons; trace-based rules need fixed decays"
        )
    return tuple(float(d) for d in decays)


def trainable_decay(params: dict, name: str, default: float, B: Any) -> Any:
    """The decay to use in a step: the trained per-neuron value if present, else the constant."""
    if name in params:
        return B.clip(params[name], 0.0, 1.0)
    return default
