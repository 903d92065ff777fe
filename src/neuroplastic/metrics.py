"""Task metrics: accuracy and firing rates.

The ``*_array`` forms return backend arrays and work inside ``jit`` (the trainer uses
them); the plain forms return Python floats.
"""

from __future__ import annotations

from typing import Any

from .backend import ops_for
from .losses import Loss


def correct_array(loss: Loss, outputs: Any, labels: Any) -> Any:
    """Number of examples whose ``argmax(loss.scores(outputs))`` equals the label (a 0-d array)."""
    B = ops_for(outputs)
    pred = B.argmax(loss.scores(outputs), axis=-1)
    return B.sum(B.astype(pred == labels, outputs.dtype))


def spikes_per_step_array(z: Any) -> Any:
    """Mean ``|z|`` per neuron and step of a spike train ``(T, B, n)`` (a 0-d array)."""
    B = ops_for(z)
    return B.mean(B.abs(z))


def accuracy(loss: Loss, outputs: Any, labels: Any) -> float:
    """Fraction of examples classified correctly, read the way ``loss`` scores them."""
    B = ops_for(outputs)
    return float(B.to_numpy(correct_array(loss, outputs, labels))) / int(outputs.shape[1])


def spikes_per_step(z: Any) -> float:
    """Mean spikes per neuron per time step of a spike train ``(T, B, n)``."""
    return float(ops_for(z).to_numpy(spikes_per_step_array(z)))


def rate_hz(z: Any, dt_ms: float) -> float:
    """Mean firing rate in Hz, for steps of ``dt_ms`` milliseconds."""
    return spikes_per_step(z) * 1000.0 / dt_ms
