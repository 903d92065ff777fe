"""Latency (time-to-first-spike) coding: stronger inputs spike earlier, once."""

from __future__ import annotations

from typing import Any

from ._common import check_choice, check_finite, check_ndim, check_number, check_positive, check_steps, prepare

LATENCY_KINDS = ("linear", "log")


def latency_times(x: Any, n_steps: int, kind: str = "linear", tau: float = 5.0, threshold: float = 0.01) -> Any:
    """Spike step of each feature of ``x`` ``(N, C)`` (floats; ``-1`` where it does not spike).

    * ``kind="linear"``: ``t = round((1 - x) * (n_steps - 1))`` for ``x`` clipped to
      ``[0, 1]``; features with ``x <= threshold`` stay silent.
    * ``kind="log"``: the time an RC membrane ``tau dV/dt = -V + x`` charged from 0 takes to
      reach ``threshold``: ``t = floor(tau * ln(x / (x - threshold)))`` for ``x > threshold``
      (``tau`` in steps); silent when ``x <= threshold`` or ``t >= n_steps``.
    """
    enc = "latency_encode"
    B, x = prepare(x, enc)
    check_ndim(x, enc, (2,))
    check_finite(B, x, enc)
    T = check_steps(n_steps, enc)
    check_choice(kind, "kind", LATENCY_KINDS, enc)
    check_number(threshold, "threshold", enc)
    if kind == "linear":
        xc = B.clip(x, 0.0, 1.0)
        t = B.round((1.0 - xc) * (T - 1))
        fires = x > threshold
    else:
        check_positive(tau, "tau", enc)
        check_positive(threshold, "threshold", enc)
        fires = x > threshold
        safe = B.where(fires, x, 2.0 * threshold + 0.0 * x)
        t = B.floor(tau * B.log(safe / (safe - threshold)))
        fires = fires & (t < T)
    return B.where(fires, t, -1.0 + 0.0 * x)


def latency_encode(x: Any, n_steps: int, kind: str = "linear", tau: float = 5.0, threshold: float = 0.01) -> Any:
    """One spike per feature at the step :func:`latency_times` gives: ``(N, C)`` -> ``(T, N, C)``.

    ``s[t, n, c] = 1`` iff ``t == t_spike[n, c]``; silent features have no spike.
    """
    B, x = prepare(x, "latency_encode")
    t = latency_times(x, n_steps, kind, tau, threshold)
    steps = B.reshape(B.astype(B.arange(int(n_steps)), x.dtype), (int(n_steps), 1, 1))
    return B.astype(steps == t[None], x.dtype)


def latency_decode(spikes: Any, kind: str = "linear", tau: float = 5.0, threshold: float = 0.01) -> Any:
    """Invert :func:`latency_encode` from the first spike of each channel: ``(T, N, C)`` -> ``(N, C)``.

    * linear: ``x = 1 - t / (T - 1)`` (``T = 1``: ``x = 1``);
    * log: ``x = threshold / (1 - exp(-(t + 0.5) / tau))`` (the middle of the step the
      crossing fell in).

    Channels without a spike decode to ``0``.
    """
    enc = "latency_decode"
    B, s = prepare(spikes, enc)
    check_ndim(s, enc, (3,))
    check_choice(kind, "kind", LATENCY_KINDS, enc)
    T = s.shape[0]
    steps = B.reshape(B.astype(B.arange(T), s.dtype), (T, 1, 1))
    # first spike: the smallest step with a spike (T where none)
    t = B.min(B.where(s > 0, steps + 0.0 * s, float(T) + 0.0 * s), axis=0)
    fired = t < T
    if kind == "linear":
        x = 1.0 - t / (T - 1) if T > 1 else 1.0 + 0.0 * t
    else:
        check_positive(tau, "tau", enc)
        check_positive(threshold, "threshold", enc)
        x = threshold / (1.0 - B.exp(-(t + 0.5) / tau))
    return B.where(fired, x, 0.0 * t)
