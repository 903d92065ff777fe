"""Delta modulation: on/off spikes where the signal changed by at least a threshold."""

from __future__ import annotations

from typing import Any

from ._common import check_choice, check_finite, check_ndim, check_positive, prepare

DELTA_INITIAL = ("zero", "first")


def delta_encode(x: Any, threshold: float, initial: str = "zero", off: bool = True) -> Any:
    """Spikes where the step-to-step change crosses ``threshold``: ``(T, N, C)`` -> ``(T, N, 2C)``.

    With ``d_t = x_t - x_{t-1}`` (``x_{-1} = 0`` for ``initial="zero"``, ``x_{-1} = x_0`` for
    ``initial="first"``)::

        on_t  = [d_t >=  threshold]      (channels 0..C-1)
        off_t = [d_t <= -threshold]      (channels C..2C-1)

    ``off=False`` returns only the on channels ``(T, N, C)``.  This is a stateless
    threshold crossing of each step's change, as in snnTorch's ``spikegen.delta``.
    """
    enc = "delta_encode"
    B, x = prepare(x, enc)
    check_ndim(x, enc, (3,))
    check_finite(B, x, enc)
    check_positive(threshold, "threshold", enc)
    check_choice(initial, "initial", DELTA_INITIAL, enc)
    prev = B.zeros_like(x[:1]) if initial == "zero" else x[:1]
    d = x - B.concatenate([prev, x[:-1]], axis=0)
    on = B.astype(d >= threshold, x.dtype)
    if not off:
        return on
    return B.concatenate([on, B.astype(d <= -threshold, x.dtype)], axis=2)
