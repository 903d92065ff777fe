"""How well a Markov chain mixes: acceptance rate, autocorrelation, effective sample size, trace plots.

Everything is numpy float64 on traces of scalars: a chain ``x_0 .. x_{n-1}`` of one
quantity (a weight, the potential, a prediction), or several as columns of ``(n, k)``.

**Effective sample size.**  For a stationary chain with autocorrelations ``rho_t`` the
variance of the chain mean is ``sigma^2 tau / n`` with the integrated autocorrelation time
``tau = 1 + 2 sum_{t>=1} rho_t``, so ``ESS = n / tau``.  Two estimators:

* :func:`ess_geyer` -- Geyer's (1992) *initial monotone sequence*: the sums of adjacent
  pairs ``Gamma_m = rho_{2m} + rho_{2m+1}`` are positive and decreasing for a reversible
  chain; the sum is truncated at the first non-positive ``Gamma_m`` and each ``Gamma_m`` is
  replaced by the minimum of the ones before it.  ``tau = -1 + 2 sum_m Gamma_m``.
* :func:`ess_batch_means` -- the chain is cut into ``a`` batches of length ``b`` (default
  ``b = floor(sqrt(n))``); ``tau = b var(batch means) / var(x)``.

For an AR(1) chain ``x_t = phi x_{t-1} + e_t``: ``rho_t = phi^t``, ``tau = (1 + phi) / (1 - phi)``
(:func:`ar1_ess` gives ``n (1 - phi) / (1 + phi)``); the tests check both estimators against it.

The ESS is capped at ``n log10(n)`` (as Stan does) for anti-correlated chains; a constant
chain (a sampler that never moved) has ESS 1: it is one sample, repeated.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np


def _chain(x: Any, name: str = "x", min_length: int = 4) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim not in (1, 2):
        raise ValueError(f"{name}: expected a chain of shape (n,) or (n, k), got shape {a.shape}")
    if a.shape[0] < min_length:
        raise ValueError(f"{name}: need at least {min_length} states, got {a.shape[0]}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: the chain holds non-finite values")
    return a


def acceptance_rate(accepted: Any) -> float:
    """The fraction of accepted proposals in a sequence of 0/1 (or boolean) flags."""
    a = np.asarray(accepted, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("accepted: need at least one flag, got an empty sequence")
    if not np.all((a == 0) | (a == 1)):
        raise ValueError("accepted: expected 0/1 or boolean flags")
    return float(a.mean())


def autocorrelation(x: Any, max_lag: int | None = None) -> np.ndarray:
    """Autocorrelations ``rho_0 .. rho_max_lag`` of a 1-D chain (FFT; biased estimator, ``rho_0 = 1``).

    A constant chain gives ``rho_t = 1`` at every lag (it never decorrelates).
    """
    a = _chain(x, "x", 2)
    if a.ndim != 1:
        raise ValueError(f"x: expected a 1-D chain, got shape {a.shape}")
    n = a.size
    max_lag = n - 1 if max_lag is None else int(max_lag)
    if not 0 <= max_lag < n:
        raise ValueError(f"max_lag must be in [0, {n - 1}], got {max_lag}")
    d = a - a.mean()
    var = float(d @ d) / n
    if var <= 1e-300 * max(1.0, float(np.abs(a).max()) ** 2):
        return np.ones(max_lag + 1)
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(d, size)
    acov = np.fft.irfft(f * np.conj(f), size)[: max_lag + 1] / n
    return acov / var


def _cap(ess: float, n: int) -> float:
    return float(min(ess, n * math.log10(max(n, 10))))


def ess_geyer(x: Any) -> float | np.ndarray:
    """Effective sample size by Geyer's initial monotone sequence; one per column of ``(n, k)``."""
    a = _chain(x)
    if a.ndim == 2:
        return np.array([ess_geyer(a[:, j]) for j in range(a.shape[1])])
    n = a.size
    rho = autocorrelation(a)
    if np.all(rho == 1.0):
        return 1.0
    total, running_min = 0.0, math.inf
    for m in range(n // 2):
        gamma = rho[2 * m] + (rho[2 * m + 1] if 2 * m + 1 < n else 0.0)
        if gamma <= 0:
            break
        running_min = min(running_min, gamma)
        total += running_min
    tau = max(-1.0 + 2.0 * total, 1e-12)
    return _cap(n / tau, n)


def ess_batch_means(x: Any, batch_size: int | None = None) -> float | np.ndarray:
    """Effective sample size by batch means (batches of ``batch_size``, default ``floor(sqrt(n))``)."""
    a = _chain(x)
    if a.ndim == 2:
        return np.array([ess_batch_means(a[:, j], batch_size) for j in range(a.shape[1])])
    n = a.size
    b = int(math.isqrt(n)) if batch_size is None else batch_size
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 1 <= b <= n // 2:
        raise ValueError(f"batch_size must be an integer in [1, {n // 2}] (at least two batches), got {batch_size!r}")
    n_batches = n // b
    means = a[: n_batches * b].reshape(n_batches, b).mean(axis=1)
    var = float(a.var(ddof=1))
    if var <= 0:
        return 1.0
    tau = b * float(means.var(ddof=1)) / var
    return _cap(n / max(tau, 1e-12), n)


def ar1_ess(phi: float, n: int) -> float:
    """The exact large-``n`` ESS of an AR(1) chain with coefficient ``phi``: ``n (1 - phi) / (1 + phi)``."""
    if isinstance(phi, bool) or not isinstance(phi, (int, float)) or not -1 < phi < 1:
        raise ValueError(f"phi: an AR(1) coefficient in (-1, 1), got {phi!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return n * (1.0 - phi) / (1.0 + phi)


def ar1_chain(phi: float, n: int, seed: int = 0, sigma: float = 1.0) -> np.ndarray:
    """A stationary AR(1) chain ``x_t = phi x_{t-1} + sigma e_t`` of length ``n`` (started from its stationary law)."""
    ar1_ess(phi, n)  # checks the arguments
    rng = np.random.default_rng(seed)
    e = rng.standard_normal(n) * sigma
    x = np.empty(n)
    x[0] = e[0] / math.sqrt(1.0 - phi * phi)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


def mixing_summary(traces: Mapping[str, Any], accepted: Any | None = None) -> dict[str, Any]:
    """Acceptance rate and, per named trace, ESS (Geyer and batch means) and ESS per 100 states.

    A trace of shape ``(n, k)`` gets the minimum, median and maximum over its ``k`` columns.
    """
    out: dict[str, Any] = {}
    if accepted is not None:
        out["accept_rate"] = acceptance_rate(accepted)
    for name, tr in traces.items():
        a = _chain(tr, name)
        g, bm = np.atleast_1d(ess_geyer(a)), np.atleast_1d(ess_batch_means(a))
        out[name] = {
            "n": int(a.shape[0]),
            "ess_geyer": {"min": float(g.min()), "median": float(np.median(g)), "max": float(g.max())},
            "ess_batch_means": {"min": float(bm.min()), "median": float(np.median(bm)), "max": float(bm.max())},
            "moved": float(np.mean(np.ptp(a.reshape(a.shape[0], -1), axis=0) > 0)),
        }
    return out


def plot_traces(traces: Mapping[str, Any], path: str | Path, title: str = "Trace plots", burnin: int = 0) -> Path:
    """One panel per named trace (``(n,)`` or ``(n, k)``: up to 6 columns drawn), burn-in shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = [(k, np.asarray(v, dtype=np.float64)) for k, v in traces.items()]
    if not items:
        raise ValueError("traces: need at least one named trace")
    fig, axes = plt.subplots(len(items), 1, figsize=(7, 1.9 * len(items)), sharex=True, squeeze=False)
    for ax, (name, a) in zip(axes[:, 0], items):
        a = a.reshape(a.shape[0], -1)[:, :6]
        ax.plot(np.arange(a.shape[0]), a, lw=0.8)
        if burnin:
            ax.axvspan(0, burnin, color="0.9", zorder=0)
        ax.set_ylabel(name, fontsize=8)
    axes[-1, 0].set_xlabel("transition" + (" (grey: burn-in)" if burnin else ""))
    axes[0, 0].set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = [
    "acceptance_rate", "ar1_chain", "ar1_ess", "autocorrelation", "ess_batch_means", "ess_geyer",
    "mixing_summary", "plot_traces",
]
