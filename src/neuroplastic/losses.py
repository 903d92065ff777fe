"""Losses on network outputs ``(T, B, C)`` and the firing-rate regulariser.

Every loss is a frozen dataclass called as ``loss(outputs, targets, rec=None) -> scalar``
(mean over the batch).  Classification losses also give ``scores(outputs) -> (B, C)``,
the per-class evidence their prediction is read from, so accuracy always matches what
the loss optimises.  ``per_step(outputs_t, targets, t, T)`` is the loss's share at one
step, for online training; it exists where the loss decomposes over time.

=================  ==========================================================
name               loss
=================  ==========================================================
``ce_sum``         cross-entropy of ``sum_t y_t`` (readout summed over time)
``ce_mean``        cross-entropy of ``mean_t y_t``
``ce_last``        cross-entropy of ``y_T`` (last step)
``ce_max``         cross-entropy of ``max_t y_t`` (Zenke & Vogels 2021)
``ce_count``       cross-entropy of the spike count ``sum_t z_t`` times ``scale``
``mse_count``      squared error of the spike count against ``on``/``off`` counts
``mse_membrane``   squared error of ``y_t`` against targets ``(T, B, C)`` (regression)
``van_rossum``     van Rossum distance: squared error of exponentially filtered spike trains
=================  ==========================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .backend import ops_for


def cross_entropy(logits: Any, labels: Any) -> Any:
    """Mean cross-entropy of ``logits (B, C)`` against integer ``labels (B,)``."""
    B = ops_for(logits)
    logp = B.log_softmax(logits, axis=-1)
    return -B.mean(B.sum(logp * B.one_hot(labels, logits.shape[-1]), axis=-1))


@dataclass(frozen=True)
class Loss:
    """Base class; see the module docstring."""

    name = "loss"
    classification = True

    def scores(self, outputs: Any) -> Any:
        raise NotImplementedError

    def __call__(self, outputs: Any, targets: Any, rec: dict | None = None) -> Any:
        return cross_entropy(self.scores(outputs), targets)

    def per_step(self, outputs_t: Any, targets: Any, t: int, T: int) -> Any:
        raise NotImplementedError(f"loss {self.name!r} does not decompose over time steps; use an offline mode")

    @property
    def decomposes_over_time(self) -> bool:
        """Whether the loss is a sum of per-step terms (:meth:`per_step`), as online modes need."""
        return type(self).per_step is not Loss.per_step


@dataclass(frozen=True)
class CESum(Loss):
    name = "ce_sum"

    def scores(self, outputs: Any) -> Any:
        return ops_for(outputs).sum(outputs, axis=0)


@dataclass(frozen=True)
class CEMean(Loss):
    name = "ce_mean"

    def scores(self, outputs: Any) -> Any:
        return ops_for(outputs).mean(outputs, axis=0)


@dataclass(frozen=True)
class CELast(Loss):
    name = "ce_last"

    def scores(self, outputs: Any) -> Any:
        return outputs[-1]

    def per_step(self, outputs_t: Any, targets: Any, t: int, T: int) -> Any:
        B = ops_for(outputs_t)
        return cross_entropy(outputs_t, targets) * B.astype(B.asarray(t) == T - 1, outputs_t.dtype)


@dataclass(frozen=True)
class CEMax(Loss):
    name = "ce_max"

    def scores(self, outputs: Any) -> Any:
        return ops_for(outputs).max(outputs, axis=0)


@dataclass(frozen=True)
class CEPerStep(Loss):
    """Cross-entropy at every step, averaged over time: ``(1/T) sum_t CE(y_t, label)``.

    Decomposes over time, so it is the usual loss for online rules (e-prop, OSTL, OTTT).
    Prediction from the summed readout.
    """

    name = "ce_per_step"

    def scores(self, outputs: Any) -> Any:
        return ops_for(outputs).sum(outputs, axis=0)

    def __call__(self, outputs: Any, targets: Any, rec: dict | None = None) -> Any:
        B = ops_for(outputs)
        logp = B.log_softmax(outputs, axis=-1)
        return -B.mean(B.sum(logp * B.one_hot(targets, outputs.shape[-1]), axis=-1))

    def per_step(self, outputs_t: Any, targets: Any, t: int, T: int) -> Any:
        return cross_entropy(outputs_t, targets) / T


@dataclass(frozen=True)
class CECount(Loss):
    """Cross-entropy of ``scale * sum_t z_t`` (output spike counts)."""

    scale: float = 1.0
    name = "ce_count"

    def scores(self, outputs: Any) -> Any:
        return self.scale * ops_for(outputs).sum(outputs, axis=0)


@dataclass(frozen=True)
class MSECount(Loss):
    """``mean_b sum_c (count_bc - target_bc)^2 / 2`` with target ``on`` for the label, ``off`` elsewhere."""

    on: float = 10.0
    off: float = 0.0
    name = "mse_count"

    def scores(self, outputs: Any) -> Any:
        return ops_for(outputs).sum(outputs, axis=0)

    def __call__(self, outputs: Any, targets: Any, rec: dict | None = None) -> Any:
        B = ops_for(outputs)
        counts = B.sum(outputs, axis=0)
        oh = B.one_hot(targets, outputs.shape[-1])
        target = self.off + (self.on - self.off) * oh
        return 0.5 * B.mean(B.sum((counts - target) ** 2, axis=-1))


@dataclass(frozen=True)
class MSEMembrane(Loss):
    """``(1/2) mean_{t,b} sum_c (y_tbc - target_tbc)^2``: regression on the readout trace."""

    name = "mse_membrane"
    classification = False

    def scores(self, outputs: Any) -> Any:
        return outputs

    def __call__(self, outputs: Any, targets: Any, rec: dict | None = None) -> Any:
        B = ops_for(outputs)
        return 0.5 * B.mean(B.sum((outputs - targets) ** 2, axis=-1))

    def per_step(self, outputs_t: Any, targets_t: Any, t: int, T: int) -> Any:
        B = ops_for(outputs_t)
        return 0.5 * B.mean(B.sum((outputs_t - targets_t) ** 2, axis=-1)) / T


def exp_filter(x: Any, tau: float, dt: float = 1.0) -> Any:
    """Causal exponential filter along axis 0: ``f_t = exp(-dt/tau) f_{t-1} + x_t``."""
    B = ops_for(x)
    decay = math.exp(-dt / tau)

    def body(f, x_t):
        f = decay * f + x_t
        return f, f

    _, out = B.scan(body, B.zeros_like(x[0]), x)
    return out


@dataclass(frozen=True)
class VanRossum(Loss):
    """Van Rossum (2001) distance ``(dt/tau) sum_t sum_c ((k * z)_t - (k * s)_t)^2 / 2``, batch mean.

    ``k`` is the causal exponential kernel with time constant ``tau``; ``targets`` are
    spike trains ``(T, B, C)``.
    """

    tau: float = 10.0
    dt: float = 1.0
    name = "van_rossum"
    classification = False

    def scores(self, outputs: Any) -> Any:
        return outputs

    def __call__(self, outputs: Any, targets: Any, rec: dict | None = None) -> Any:
        B = ops_for(outputs)
        diff = exp_filter(outputs - targets, self.tau, self.dt)
        return 0.5 * (self.dt / self.tau) * B.mean(B.sum(diff**2, axis=(0, 2)))


LOSSES: dict[str, type[Loss]] = {
    cls.name: cls for cls in (CESum, CEMean, CELast, CEMax, CEPerStep, CECount, MSECount, MSEMembrane, VanRossum)
}


def per_step_losses() -> list[str]:
    """Names of the losses that decompose over time steps (usable in online/deferred modes)."""
    return sorted(n for n, cls in LOSSES.items() if cls.per_step is not Loss.per_step)


def make_loss(spec: str | Loss, **options: Any) -> Loss:
    """A loss from an instance or a name in ``LOSSES``."""
    if isinstance(spec, Loss):
        return spec
    if spec not in LOSSES:
        raise ValueError(f"loss: unknown loss {spec!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[spec](**options)


@dataclass(frozen=True)
class RateRegularizer:
    """``strength * sum_l mean_j (r_lj - target)^2`` over spiking layers.

    ``r_lj`` is neuron ``j``'s rate in spikes per step, averaged over time and batch;
    ``target_hz`` converts with ``dt`` (ms per step).  Bellec et al. 2020 use this form.
    """

    target_hz: float = 10.0
    strength: float = 1.0
    dt: float = 1.0

    def __post_init__(self) -> None:
        if self.target_hz < 0:
            raise ValueError(f"target_hz must be >= 0, got {self.target_hz!r}")
        if self.strength < 0:
            raise ValueError(f"strength must be >= 0, got {self.strength!r}")

    @property
    def target_per_step(self) -> float:
        return self.target_hz * self.dt / 1000.0

    def __call__(self, spikes: list, spiking: list) -> Any:
        total = 0.0
        for z, is_spiking in zip(spikes, spiking):
            if is_spiking:
                B = ops_for(z)
                rate = B.mean(z, axis=(0, 1))
                total = total + B.mean((rate - self.target_per_step) ** 2)
        return self.strength * total


@dataclass(frozen=True)
class Objective:
    """Task loss plus an optional firing-rate regulariser: what rules differentiate."""

    loss: Loss
    regularizer: RateRegularizer | None = None

    def __call__(self, outputs: Any, targets: Any, rec: dict | None, spiking: list | None = None) -> Any:
        value = self.loss(outputs, targets, rec)
        if self.regularizer is not None and rec is not None:
            value = value + self.regularizer(rec["out"], spiking or [True] * len(rec["out"]))
        return value
