"""Randman: spike patterns from random smooth manifolds (Zenke & Vogels 2021).

Reimplemented in numpy from the algorithm published in F. Zenke and T. P. Vogels, "The
remarkable robustness of surrogate gradient learning for instilling complex function in
spiking neural networks", Neural Computation 33 (2021).

Each class ``c`` owns one random manifold of intrinsic dimension ``D`` (``dim``) embedded in
``n_units`` dimensions.  Coordinate ``i`` of the embedding is a product over the ``D``
manifold coordinates of random smooth 1-d functions, each a sum of ``K`` (``n_basis``)
Fourier components whose amplitudes fall off as ``1/k^alpha``::

    f_ci(x) = prod_{d<D} sum_{k<K} A_cidk / (k+1)^alpha * sin(2 pi (k * x_d * F_cidk + P_cidk))

with ``A, F, P`` drawn uniformly from ``[0, 1)`` and ``A_cid0 = 0`` (no constant offset).
A sample of class ``c`` is a point ``x`` drawn uniformly from ``[0, 1)^D``; each unit's value
is min-max normalised over all samples of its class, ``v = (f - min) / (max - min + 1e-7)``,
and turned into spikes (see :func:`load_randman`).
"""

from __future__ import annotations

import math

import numpy as np

from ._common import check_choice, check_float, check_int, check_optional_int
from .arrays import Dataset

VARIANTS = ("timing", "rate", "mixed")
EPS = 1e-7  # as in the published normalisation


def n_basis_for(alpha: float, prec: float = 1e-3, max_basis: int = 1000) -> int:
    """The published frequency cut-off: ``min(ceil(prec^(-1/alpha)), max_basis)`` components."""
    return int(min(math.ceil(prec ** (-1.0 / alpha)), max_basis))


def manifold_values(params: np.ndarray, coords: np.ndarray, alpha: float) -> np.ndarray:
    """``f_i(x)`` for every unit ``i`` of one manifold at ``coords`` ``(N, D)``: ``(N, n_units)``.

    ``params`` is ``(n_units, D, 3, K)``: amplitude, frequency factor and phase of each
    component.
    """
    amp, freq, phase = params[:, :, 0], params[:, :, 1], params[:, :, 2]  # (U, D, K)
    k = np.arange(params.shape[-1], dtype=np.float64)
    scale = amp / (k + 1.0) ** alpha  # (U, D, K)
    out = np.ones((coords.shape[0], params.shape[0]))
    for d in range(params.shape[1]):
        # (N, 1, 1) * (K,) * (U, K) -> (N, U, K)
        arg = 2 * np.pi * (coords[:, d, None, None] * k * freq[None, :, d] + phase[None, :, d])
        out *= np.einsum("nuk,uk->nu", np.sin(arg), scale[:, d])
    return out


def _rate_spikes(counts: np.ndarray, n_steps: int, rng: np.random.Generator, chunk: int = 256) -> np.ndarray:
    """``(T, N, U)`` trains with ``counts[n, u]`` spikes each, at distinct steps chosen uniformly at random."""
    n, u = counts.shape
    out = np.zeros((n_steps, n, u), dtype=np.float32)
    for s in range(0, n, chunk):
        keys = rng.random((n_steps, min(chunk, n - s), u))
        ranks = keys.argsort(axis=0).argsort(axis=0)  # a random permutation of the steps per (sample, unit)
        out[:, s:s + chunk] = ranks < counts[None, s:s + chunk]
    return out


def load_randman(
    variant: str = "timing",
    n_classes: int = 10,
    n_units: int = 50,
    n_steps: int = 50,
    dim: int = 1,
    alpha: float = 2.0,
    n_basis: int | None = None,
    samples_per_class: int = 500,
    test_per_class: int = 100,
    max_spikes: int = 10,
    rate_fraction: float = 0.5,
    seed: int = 0,
) -> Dataset:
    """Randman spike patterns ``(n_steps, N, n_units)``; ``n_classes`` classes, one manifold each.

    Split: per class ``samples_per_class`` points, the last ``test_per_class`` of them to the
    test set (default 400 train / 100 test per class: 4000 / 1000), both sets shuffled.

    ``variant``:

    * ``"timing"`` (T-Randman, the published construction): every unit fires exactly once,
      at step ``floor(v * n_steps)``: the value is in the spike time;
    * ``"rate"`` (R-Randman): unit fires ``round(v * max_spikes)`` times at distinct steps
      drawn uniformly at random, so the value is in the count and timing carries nothing;
    * ``"mixed"`` (Slax's adjustable Randman): a fixed random ``rate_fraction`` of the units
      (the same for every class and sample, ``meta["rate_units"]``) is rate-coded, the rest
      timing-coded.

    ``n_basis`` defaults to the published cut-off ``ceil(1000^(1/alpha))`` (32 for
    ``alpha = 2``).  Everything follows from ``seed``: one stream draws the manifolds and the
    points, another the random spike steps and the rate-coded units, so all three variants
    with one seed share the same manifold values.  ``meta`` holds the random parameters
    (``params``: ``(n_classes, n_units, dim, 3, n_basis)``), the points
    (``coords_train``/``coords_test``), the normalisation (``vmin``/``vmax``:
    ``(n_classes, n_units)``) and the values ``v`` (``values_train``/``values_test``).
    """
    name = "randman"
    check_choice(name, "variant", variant, VARIANTS)
    n_classes = check_int(name, "n_classes", n_classes, 2)
    n_units = check_int(name, "n_units", n_units, 1)
    n_steps = check_int(name, "n_steps", n_steps, 1)
    dim = check_int(name, "dim", dim, 1)
    alpha = check_float(name, "alpha", alpha, low=0.0, low_open=True)
    n_basis = check_optional_int(name, "n_basis", n_basis, 2)
    samples_per_class = check_int(name, "samples_per_class", samples_per_class, 2)
    test_per_class = check_int(name, "test_per_class", test_per_class, 1)
    if test_per_class >= samples_per_class:
        raise ValueError(f"{name}: test_per_class must be < samples_per_class ({samples_per_class}), got {test_per_class}")
    max_spikes = check_int(name, "max_spikes", max_spikes, 1)
    if variant != "timing" and max_spikes > n_steps:
        raise ValueError(f"{name}: max_spikes must be <= n_steps ({n_steps}), got {max_spikes}")
    rate_fraction = check_float(name, "rate_fraction", rate_fraction, 0.0, 1.0)
    seed = check_int(name, "seed", seed, 0)
    if n_basis is None:
        n_basis = n_basis_for(alpha)

    manifold_ss, coding_ss, split_ss = np.random.SeedSequence(seed).spawn(3)
    mrng, crng = np.random.default_rng(manifold_ss), np.random.default_rng(coding_ss)
    params = mrng.random((n_classes, n_units, dim, 3, n_basis))
    params[:, :, :, 0, 0] = 0.0  # no constant term
    coords = mrng.random((n_classes, samples_per_class, dim))
    values = np.empty((n_classes, samples_per_class, n_units))
    vmin = np.empty((n_classes, n_units))
    vmax = np.empty((n_classes, n_units))
    for c in range(n_classes):
        f = manifold_values(params[c], coords[c], alpha)
        vmin[c], vmax[c] = f.min(axis=0), f.max(axis=0)
        values[c] = (f - vmin[c]) / (vmax[c] - vmin[c] + EPS)

    # examples in class order, then the two splits shuffled
    n_train = samples_per_class - test_per_class
    labels = np.repeat(np.arange(n_classes, dtype=np.int64), samples_per_class)
    within = np.tile(np.arange(samples_per_class), n_classes)
    flat_values = values.reshape(-1, n_units)
    flat_coords = coords.reshape(-1, dim)

    # spikes for every example (train and test together, in class order)
    steps = np.minimum(np.floor(flat_values * n_steps).astype(np.int64), n_steps - 1)
    # the coding stream is used the same way by every variant, so "mixed" with rate_fraction
    # 0 (1) equals "timing" ("rate") spike for spike
    order = crng.permutation(n_units)
    n_rate = {"timing": 0, "rate": n_units, "mixed": int(round(rate_fraction * n_units))}[variant]
    rate_units = np.zeros(n_units, dtype=bool)
    rate_units[order[:n_rate]] = True
    n_all = flat_values.shape[0]
    x = np.zeros((n_steps, n_all, n_units), dtype=np.float32)
    x[steps, np.arange(n_all)[:, None], np.arange(n_units)[None, :]] = 1.0
    if n_rate:
        counts = np.rint(flat_values * max_spikes).astype(np.int64)
        rate = _rate_spikes(counts, n_steps, crng)
        x[:, :, rate_units] = rate[:, :, rate_units]

    shuffle = np.random.default_rng(split_ss)
    idx_train = shuffle.permutation(np.flatnonzero(within < n_train))
    idx_test = shuffle.permutation(np.flatnonzero(within >= n_train))
    suffix = "" if variant == "timing" else f"-{variant}"
    return Dataset(
        name + suffix,
        np.ascontiguousarray(x[:, idx_train]), labels[idx_train],
        np.ascontiguousarray(x[:, idx_test]), labels[idx_test],
        n_classes=n_classes, dt=1.0,
        meta={
            "variant": variant, "seed": seed, "alpha": alpha, "dim": dim, "n_basis": n_basis, "max_spikes": max_spikes,
            "rate_fraction": float(rate_units.mean()), "rate_units": rate_units,
            "params": params, "vmin": vmin, "vmax": vmax,
            "coords_train": flat_coords[idx_train], "coords_test": flat_coords[idx_test],
            "values_train": flat_values[idx_train], "values_test": flat_values[idx_test],
        },
    )
