"""Predictive uncertainty from posterior samples of class probabilities.

For ``S`` samples ``p_s(y | x)`` of an example's class probabilities (``C`` classes), with
the posterior-mean predictive ``pbar = (1/S) sum_s p_s`` and ``H(p) = -sum_c p_c log p_c``
(nats; ``0 log 0 = 0``):

* ``entropy_of_mean``      ``H(pbar)``: total predictive uncertainty;
* ``expected_entropy``     ``(1/S) sum_s H(p_s)``: the aleatoric part (noise the model sees in the data);
* ``mutual_information``   ``H(pbar) - (1/S) sum_s H(p_s) >= 0``: the epistemic part, the
  information the label would give about the weights (BALD; Houlsby et al. 2011).

:class:`PredictiveAccumulator` gathers these without keeping the samples (two running
sums of ``N x C`` and ``N`` numbers).  Everything here is numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def entropy(p: Any, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats along ``axis`` (``0 log 0 = 0``)."""
    p = np.asarray(p, dtype=np.float64)
    logp = np.log(np.where(p > 0, p, 1.0))
    return -np.sum(p * logp, axis=axis)


def _check_probs(p: np.ndarray, name: str, ndim: int) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} axes, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or not np.allclose(p.sum(-1), 1.0, atol=1e-4):
        raise ValueError(f"{name}: expected probabilities (non-negative, summing to 1 over the last axis)")
    return p


def predictive_uncertainty(sample_probs: Any) -> dict[str, np.ndarray]:
    """``entropy_of_mean``, ``expected_entropy``, ``mutual_information`` and ``mean`` from ``(S, N, C)`` samples."""
    p = _check_probs(sample_probs, "sample_probs", 3)
    mean = p.mean(axis=0)
    h_mean = entropy(mean)
    h_exp = entropy(p).mean(axis=0)
    return {"mean": mean, "entropy_of_mean": h_mean, "expected_entropy": h_exp, "mutual_information": np.maximum(h_mean - h_exp, 0.0)}


class PredictiveAccumulator:
    """Running posterior-predictive statistics over ``N`` examples; add one ``(N, C)`` sample at a time.

    ``keep=True`` also stores every sample (``samples``: ``(S, N, C)``).
    """

    def __init__(self, keep: bool = False) -> None:
        self.keep = bool(keep)
        self.n = 0
        self._sum: np.ndarray | None = None
        self._sum_entropy: np.ndarray | None = None
        self._samples: list[np.ndarray] = []

    def add(self, probs: Any) -> None:
        p = _check_probs(probs, "probs", 2)
        if self._sum is None:
            self._sum, self._sum_entropy = np.zeros_like(p), np.zeros(p.shape[0])
        elif p.shape != self._sum.shape:
            raise ValueError(f"probs: expected shape {self._sum.shape} like the earlier samples, got {p.shape}")
        self._sum += p
        self._sum_entropy += entropy(p)
        self.n += 1
        if self.keep:
            self._samples.append(p)

    def _need(self) -> None:
        if self.n == 0:
            raise ValueError("PredictiveAccumulator: no samples added yet")

    @property
    def mean(self) -> np.ndarray:
        """Posterior-mean class probabilities ``(N, C)``."""
        self._need()
        return self._sum / self.n

    @property
    def entropy_of_mean(self) -> np.ndarray:
        return entropy(self.mean)

    @property
    def expected_entropy(self) -> np.ndarray:
        self._need()
        return self._sum_entropy / self.n

    @property
    def mutual_information(self) -> np.ndarray:
        return np.maximum(self.entropy_of_mean - self.expected_entropy, 0.0)

    @property
    def samples(self) -> np.ndarray:
        if not self.keep:
            raise ValueError("samples: the accumulator was made with keep=False")
        self._need()
        return np.stack(self._samples)

    def summary(self) -> dict[str, np.ndarray]:
        """The mean and the three per-example uncertainties."""
        return {
            "mean": self.mean,
            "entropy_of_mean": self.entropy_of_mean,
            "expected_entropy": self.expected_entropy,
            "mutual_information": self.mutual_information,
        }


def compare_uncertainty(uncertainty: Any, correct: Any) -> dict[str, float]:
    """One-sided Mann-Whitney U test that ``uncertainty`` is larger on wrong than on correct examples.

    Returns ``u`` (the statistic of the wrong group), ``p_value``, the group sizes and
    medians.  Needs scipy.
    """
    from scipy.stats import mannwhitneyu

    u = np.asarray(uncertainty, dtype=np.float64)
    c = np.asarray(correct, dtype=bool)
    if u.shape != c.shape or u.ndim != 1:
        raise ValueError(f"correct: expected one flag per example like uncertainty {u.shape}, got {c.shape}")
    wrong, right = u[~c], u[c]
    if wrong.size == 0 or right.size == 0:
        raise ValueError("correct: need both correctly and wrongly classified examples")
    res = mannwhitneyu(wrong, right, alternative="greater")
    return {
        "u": float(res.statistic), "p_value": float(res.pvalue),
        "n_wrong": int(wrong.size), "n_correct": int(right.size),
        "median_wrong": float(np.median(wrong)), "median_correct": float(np.median(right)),
    }


__all__ = ["PredictiveAccumulator", "compare_uncertainty", "entropy", "predictive_uncertainty"]
