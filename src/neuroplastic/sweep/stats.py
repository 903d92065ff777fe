"""Statistics over seeds: mean, spread, t intervals and tests between settings.

* :func:`describe`: mean, sample standard deviation (``ddof=1``) and the two-sided 95%
  confidence interval of the mean from Student's t with ``n - 1`` degrees of freedom;
* :func:`compare_paired`: paired t-test and Wilcoxon signed-rank test over shared seeds;
* :func:`compare_welch`: Welch's unequal-variance t-test when the seeds differ;
* :func:`holm`: Holm-Bonferroni adjusted p-values for a family of tests.

SciPy (the ``data`` extra) provides the distributions and tests; it is imported on use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: confidence level of the intervals
LEVEL = 0.95


@dataclass(frozen=True)
class Summary:
    """``n`` values: mean, standard deviation and the 95% t interval ``[low, high]`` (``nan`` for n < 2)."""

    n: int
    mean: float
    std: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Comparison:
    """A test between two settings: which test, on how many seeds, the mean difference ``a - b`` and p-values."""

    test: str  # "paired" or "welch"
    n_a: int
    n_b: int
    mean_diff: float
    statistic: float
    p: float
    p_wilcoxon: float | None = None


def _scipy_stats():
    try:
        from scipy import stats
    except ImportError:
        raise ValueError("statistics: the sweep report needs SciPy; pip install 'neuroplastic[data]'") from None
    return stats


def _values(values: Sequence[float], what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{what}: expected a list of numbers, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: expected finite numbers, got {list(values)!r}")
    return x


def describe(values: Sequence[float]) -> Summary:
    """Mean, standard deviation (n - 1) and 95% confidence interval of the mean (Student's t)."""
    x = _values(values, "values")
    n = len(x)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if n < 2:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(_scipy_stats().t.ppf(0.5 + LEVEL / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def compare_paired(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Paired t-test and Wilcoxon signed-rank test (two-sided) of ``a - b``, matched by position (same seeds)."""
    x, y = _values(a, "a"), _values(b, "b")
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"a, b: a paired test needs two equally long lists of at least 2 values, got {len(x)} and {len(y)}")
    stats = _scipy_stats()
    d = x - y
    if np.all(d == d[0]):  # no spread of the differences: t is undefined (0/0 or c/0)
        t, p = math.nan, (1.0 if d[0] == 0 else math.nan)
    else:
        res = stats.ttest_rel(x, y)
        t, p = float(res.statistic), float(res.pvalue)
    if np.all(d == 0):
        pw = 1.0
    else:
        pw = float(stats.wilcoxon(x, y, zero_method="wilcox", alternative="two-sided").pvalue)
    return Comparison("paired", len(x), len(y), float(d.mean()), t, p, pw)


def compare_welch(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Welch's t-test (two-sided, unequal variances) of ``mean(a) - mean(b)``."""
    x, y = _values(a, "a"), _values(b, "b")
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"a, b: Welch's test needs at least 2 values on each side, got {len(x)} and {len(y)}")
    diff = float(x.mean() - y.mean())
    if x.var(ddof=1) == 0 and y.var(ddof=1) == 0:
        return Comparison("welch", len(x), len(y), diff, math.nan, 1.0 if diff == 0 else math.nan)
    res = _scipy_stats().ttest_ind(x, y, equal_var=False)
    return Comparison("welch", len(x), len(y), diff, float(res.statistic), float(res.pvalue))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (``nan`` entries are left out of the family and stay ``nan``)."""
    p = [float(v) for v in pvalues]
    idx = sorted((i for i, v in enumerate(p) if not math.isnan(v)), key=lambda i: p[i])
    m = len(idx)
    out = [math.nan] * len(p)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def min_wilcoxon_p(n: int) -> float:
    """The smallest two-sided p-value Wilcoxon's exact test can give with ``n`` pairs (``2 / 2**n``)."""
    return min(1.0, 2.0 / 2**n)


__all__ = ["Comparison", "LEVEL", "Summary", "compare_paired", "compare_welch", "describe", "holm", "min_wilcoxon_p"]
