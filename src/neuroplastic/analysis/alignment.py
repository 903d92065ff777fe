"""How well one gradient estimate agrees with a reference (usually BPTT's).

All functions take numpy arrays (use ``B.to_numpy``) and compute in float64.  For an
estimate ``g`` and reference ``r`` (same shape, flattened):

* cosine            ``g.r / sqrt((g.g) (r.r))``                    1 = same direction
* rel_deviation     ``||g - r|| / ||r||``                           0 = identical
* sign_agreement    fraction of elements with ``sign(g) == sign(r)``  (elements where both are 0 count as agreeing)
* bias              ``(g - r).r / (r.r)``: the deviation projected on the reference,
                    relative to its length; 0 = no systematic over/under-shoot along ``r``
* norm_ratio        ``||g|| / ||r||``

Identical inputs give cosine exactly 1 and deviation exactly 0.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..tree import tree_flatten_dict

METRICS = ("cosine", "rel_deviation", "sign_agreement", "bias", "norm_ratio")


def alignment(g: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """The metrics above for one pair of arrays."""
    g = np.asarray(g, dtype=np.float64).ravel()
    r = np.asarray(ref, dtype=np.float64).ravel()
    if g.shape != r.shape:
        raise ValueError(f"g: shape {g.shape} differs from the reference's {r.shape}")
    gg, rr, gr = float(g @ g), float(r @ r), float(g @ r)
    d = g - r
    nan = float("nan")
    return {
        "cosine": float(np.clip(gr / math.sqrt(gg * rr), -1.0, 1.0)) if gg > 0 and rr > 0 else (1.0 if gg == rr == 0 else nan),
        "rel_deviation": float(math.sqrt(float(d @ d)) / math.sqrt(rr)) if rr > 0 else (0.0 if gg == 0 else nan),
        "sign_agreement": float(np.mean(np.sign(g) == np.sign(r))) if g.size else nan,
        "bias": float((d @ r) / rr) if rr > 0 else nan,
        "norm_ratio": float(math.sqrt(gg / rr)) if rr > 0 else nan,
    }


def tree_alignment(grads: Any, ref: Any, to_numpy: Any = np.asarray) -> dict[str, dict[str, float]]:
    """``{layer path: metrics}`` for every parameter, plus ``"all"`` over all parameters together.

    Leaves are matched by path, never by position: two trees whose dicts list their keys in
    different orders (JAX returns gradients computed without ``jit`` with sorted keys) are
    compared parameter by parameter, and ``"all"`` concatenates both in the reference's order.
    """
    g = {k: np.asarray(to_numpy(v), dtype=np.float64) for k, v in tree_flatten_dict(grads).items()}
    r = {k: np.asarray(to_numpy(v), dtype=np.float64) for k, v in tree_flatten_dict(ref).items()}
    if g.keys() != r.keys():
        raise ValueError(f"grads: parameters {sorted(g)} differ from the reference's {sorted(r)}")
    paths = list(r)  # the reference's order, for the per-parameter rows and for "all"
    for k in paths:
        if g[k].shape != r[k].shape:
            raise ValueError(f"grads: {k} has shape {g[k].shape} but the reference's has {r[k].shape}")
    out = {k: alignment(g[k], r[k]) for k in paths}
    out["all"] = alignment(np.concatenate([g[k].ravel() for k in paths]), np.concatenate([r[k].ravel() for k in paths]))
    return out


def deviation_sample(g: np.ndarray, ref: np.ndarray, max_samples: int = 2000, seed: int = 0) -> np.ndarray:
    """Element-wise deviations ``(g - r) / rms(r)``, subsampled to at most ``max_samples`` values."""
    g = np.asarray(g, dtype=np.float64).ravel()
    r = np.asarray(ref, dtype=np.float64).ravel()
    rms = math.sqrt(float(np.mean(r * r))) if r.size else 0.0
    d = (g - r) / (rms if rms > 0 else 1.0)
    if d.size > max_samples:
        d = d[np.random.default_rng(seed).choice(d.size, max_samples, replace=False)]
    return d.astype(np.float32)
