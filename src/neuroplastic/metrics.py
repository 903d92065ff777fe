"""Task metrics: accuracy and firing rates."""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import ops_for
from .losses import Loss


def accuracy(loss: Loss, outputs: Any, labels: Any) -> float:
    """Fraction of examples whose ``argmax(loss.scores(outputs))`` equals the label."""
    B = ops_for(outputs)
    pred = B.to_numpy(B.argmax(loss.scores(outputs), axis=-1))
    return float(np.mean(pred == ops_for(labels).to_numpy(labels)))


def correct_count(loss: Loss, outputs: Any, labels: Any) -> int:
    B = ops_for(outputs)
    pred = B.to_numpy(B.argmax(loss.scores(outputs), axis=-1))
    return int(np.sum(pred == ops_for(labels).to_numpy(labels)))


def spikes_per_step(z: Any) -> float:
    """Mean spikes per neuron per time step of a spike train ``(T, B, n)``."""
    B = ops_for(z)
    return float(B.to_numpy(B.mean(B.abs(z))))


def rate_hz(z: Any, dt_ms: float) -> float:
    """Mean firing rate in Hz, for steps of ``dt_ms`` milliseconds."""
    return spikes_per_step(z) * 1000.0 / dt_ms
