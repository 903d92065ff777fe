"""Rate coding: Bernoulli / Poisson spike trains whose probability follows the input."""

from __future__ import annotations

from typing import Any

from ._common import check_choice, check_finite, check_ndim, check_positive, check_steps, prepare

RATE_KINDS = ("bernoulli", "poisson")


def rate_encode(
    x: Any,
    n_steps: int | None = None,
    gain: float = 1.0,
    kind: str = "bernoulli",
    key: Any = None,
    seed: int = 0,
) -> Any:
    """Rate-coded spikes ``(T, N, C)`` from static features ``(N, C)`` or a signal ``(T, N, C)``.

    Each entry spikes independently at each step with probability

    * ``kind="bernoulli"``: ``p = clip(gain * x, 0, 1)``;
    * ``kind="poisson"``: ``p = 1 - exp(-gain * max(x, 0))`` (a Poisson process with
      ``gain * x`` expected events per step, at most one spike kept per step).

    Static features are repeated over ``n_steps`` steps; a signal keeps its own ``T``
    (``n_steps`` must then be ``None`` or ``T``).  ``key`` is a backend random key (made from
    ``seed`` when absent), so the same key gives the same spikes.
    """
    enc = "rate_encode"
    B, x = prepare(x, enc)
    check_ndim(x, enc, (2, 3))
    check_finite(B, x, enc)
    check_positive(gain, "gain", enc)
    check_choice(kind, "kind", RATE_KINDS, enc)
    if len(x.shape) == 2:
        T = check_steps(n_steps if n_steps is not None else 1, enc)
        x = B.zeros((T,) + tuple(x.shape), dtype=x.dtype) + x[None]
    elif n_steps is not None and n_steps != x.shape[0]:
        raise ValueError(f"rate_encode: n_steps={n_steps!r} differs from the signal's {x.shape[0]} steps")
    if kind == "bernoulli":
        p = B.clip(gain * x, 0.0, 1.0)
    else:
        p = 1.0 - B.exp(-gain * B.maximum(x, 0.0))
    if key is None:
        key = B.key(seed)
    u = B.astype(B.uniform(key, tuple(x.shape)), x.dtype)
    return B.astype(u < p, x.dtype)


def rate_decode(spikes: Any, gain: float = 1.0, kind: str = "bernoulli", window: int | None = None) -> Any:
    """Estimate the encoded value from spike frequency, inverting :func:`rate_encode`.

    With ``r`` the spike frequency (spikes per step): ``x = r / gain`` (bernoulli) or
    ``x = -log(1 - r) / gain`` (poisson).  ``window=None`` averages over all steps and
    returns ``(N, C)``; ``window=w`` uses a causal moving average over the last ``w``
    steps (fewer at the start) and returns ``(T, N, C)``.
    """
    enc = "rate_decode"
    B, s = prepare(spikes, enc)
    check_ndim(s, enc, (3,))
    check_positive(gain, "gain", enc)
    check_choice(kind, "kind", RATE_KINDS, enc)
    if window is None:
        r = B.mean(s, axis=0)
    else:
        w = check_steps(window, enc, "window")
        c = B.cumsum(s, axis=0)
        T = s.shape[0]
        if w < T:
            c = B.concatenate([c[:w], c[w:] - c[:-w]], axis=0)
        counts = B.asarray([min(t + 1, w) for t in range(T)], dtype=s.dtype)
        r = c / B.reshape(counts, (T, 1, 1))
    if kind == "bernoulli":
        return r / gain
    return -B.log(B.clip(1.0 - r, 1e-12, 1.0)) / gain
