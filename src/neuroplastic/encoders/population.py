"""Population (place) coding: each value activates neurons tuned to nearby values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._common import check_finite, check_ndim, check_positive, check_steps, is_real, prepare
from .latency import latency_encode


def _range(lo: float, hi: float, enc: str) -> tuple[float, float]:
    if not (is_real(lo) and is_real(hi) and math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"{enc}: need finite lo < hi, got lo={lo!r}, hi={hi!r}")
    return float(lo), float(hi)


def grf_centers(n_neurons: int, lo: float = 0.0, hi: float = 1.0, beta: float = 1.5) -> tuple[np.ndarray, float]:
    """Centres and width of Bohte et al. (2002)'s Gaussian receptive fields.

    ``mu_i = lo + (2i - 3)/2 * (hi - lo)/(m - 2)`` for ``i = 1..m`` and
    ``sigma = (hi - lo) / (beta (m - 2))``; needs ``m >= 3`` neurons.
    """
    enc = "gaussian_receptive_fields"
    if isinstance(n_neurons, bool) or not isinstance(n_neurons, (int, np.integer)) or n_neurons < 3:
        raise ValueError(f"{enc}: n_neurons must be an integer >= 3, got {n_neurons!r}")
    lo, hi = _range(lo, hi, enc)
    check_positive(beta, "beta", enc)
    m = int(n_neurons)
    i = np.arange(1, m + 1, dtype=np.float64)
    mu = lo + (2 * i - 3) / 2 * (hi - lo) / (m - 2)
    return mu, (hi - lo) / (beta * (m - 2))


def gaussian_receptive_fields(x: Any, n_neurons: int, lo: float = 0.0, hi: float = 1.0, beta: float = 1.5) -> Any:
    """Analog responses ``a_i = exp(-(x - mu_i)^2 / (2 sigma^2))`` of the fields of :func:`grf_centers`.

    ``(..., C)`` -> ``(..., C * n_neurons)``; channel ``c`` maps to outputs
    ``c*m .. c*m + m - 1``.  Works on static features and on signals alike.
    """
    enc = "gaussian_receptive_fields"
    B, x = prepare(x, enc)
    check_ndim(x, enc, (2, 3))
    check_finite(B, x, enc)
    mu, sigma = grf_centers(n_neurons, lo, hi, beta)
    m = len(mu)
    mu_b = B.asarray(mu, dtype=x.dtype)
    a = B.exp(-((x[..., None] - mu_b) ** 2) / (2 * sigma**2))
    return B.reshape(a, tuple(x.shape[:-1]) + (x.shape[-1] * m,))


def grf_encode(
    x: Any, n_neurons: int, n_steps: int, lo: float = 0.0, hi: float = 1.0, beta: float = 1.5, cutoff: float = 0.1
) -> Any:
    """Gaussian receptive fields read out as first-spike latencies (Bohte et al. 2002).

    Static features ``(N, C)`` -> ``(T, N, C * n_neurons)``: neuron ``i`` spikes once at
    ``t = round((1 - a_i) (T - 1))`` (:func:`latency_encode`, linear) when its response
    ``a_i > cutoff``.  For a signal, apply :func:`gaussian_receptive_fields` and a rate
    encoder instead.
    """
    enc = "grf_encode"
    B, x = prepare(x, enc)
    check_ndim(x, enc, (2,))
    check_steps(n_steps, enc)
    if not (is_real(cutoff) and 0 <= cutoff < 1):
        raise ValueError(f"{enc}: cutoff must lie in [0, 1), got {cutoff!r}")
    a = gaussian_receptive_fields(x, n_neurons, lo, hi, beta)
    return latency_encode(a, n_steps, kind="linear", threshold=cutoff)


def grf_decode(responses: Any, n_neurons: int, lo: float = 0.0, hi: float = 1.0, beta: float = 1.5) -> Any:
    """Population-vector estimate ``x = sum_i a_i mu_i / sum_i a_i`` from responses ``(..., C * m)``.

    ``responses`` are analog activations, or values decoded from spikes (e.g. by
    :func:`~neuroplastic.encoders.latency_decode`).  Returns ``(..., C)``.
    """
    enc = "grf_decode"
    B, a = prepare(responses, enc)
    mu, _ = grf_centers(n_neurons, lo, hi, beta)
    m = len(mu)
    if a.shape[-1] % m:
        raise ValueError(f"{enc}: last axis {a.shape[-1]} is not a multiple of n_neurons={m}")
    a = B.reshape(a, tuple(a.shape[:-1]) + (a.shape[-1] // m, m))
    mu_b = B.asarray(mu, dtype=a.dtype)
    return B.sum(a * mu_b, axis=-1) / B.maximum(B.sum(a, axis=-1), 1e-12)


def one_hot_place(x: Any, n_bins: int, lo: float = 0.0, hi: float = 1.0, n_steps: int | None = None) -> Any:
    """Place code: the neuron of the bin holding the value spikes, every step.

    Bin ``k = clip(floor((x - lo) / (hi - lo) * n_bins), 0, n_bins - 1)``; output channel
    ``c * n_bins + k`` is 1.  Static ``(N, C)`` features give ``n_steps`` (default 1)
    identical steps; a signal ``(T, N, C)`` gives ``(T, N, C * n_bins)``.
    """
    enc = "one_hot_place"
    B, x = prepare(x, enc)
    check_ndim(x, enc, (2, 3))
    check_finite(B, x, enc)
    nb = check_steps(n_bins, enc, "n_bins")
    lo, hi = _range(lo, hi, enc)
    if len(x.shape) == 2:
        x = B.zeros((check_steps(n_steps if n_steps is not None else 1, enc),) + tuple(x.shape), dtype=x.dtype) + x[None]
    elif n_steps is not None and n_steps != x.shape[0]:
        raise ValueError(f"{enc}: n_steps={n_steps!r} differs from the signal's {x.shape[0]} steps")
    k = B.clip(B.floor((x - lo) / (hi - lo) * nb), 0, nb - 1)
    bins = B.astype(B.arange(nb), x.dtype)
    s = B.astype(k[..., None] == bins, x.dtype)
    return B.reshape(s, tuple(x.shape[:-1]) + (x.shape[-1] * nb,))


def one_hot_decode(spikes: Any, n_bins: int, lo: float = 0.0, hi: float = 1.0) -> Any:
    """Bin centre of the active neuron: ``x = lo + (k + 1/2)(hi - lo)/n_bins``; ``(T, N, C*n_bins)`` -> ``(T, N, C)``."""
    enc = "one_hot_decode"
    B, s = prepare(spikes, enc)
    nb = check_steps(n_bins, enc, "n_bins")
    lo, hi = _range(lo, hi, enc)
    if s.shape[-1] % nb:
        raise ValueError(f"{enc}: last axis {s.shape[-1]} is not a multiple of n_bins={nb}")
    s = B.reshape(s, tuple(s.shape[:-1]) + (s.shape[-1] // nb, nb))
    centres = B.asarray(lo + (np.arange(nb) + 0.5) * (hi - lo) / nb, dtype=s.dtype)
    return B.sum(s * centres, axis=-1) / B.maximum(B.sum(s, axis=-1), 1e-12)
