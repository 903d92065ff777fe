"""scikit-learn's bundled 8x8 handwritten digits (the UCI optical digits test set), offline."""

from __future__ import annotations

import numpy as np

from ._common import cached_arrays, check_bool, check_float, check_int, images_time_major, require
from .arrays import Dataset


def _build(test_size: float, seed: int) -> dict[str, np.ndarray]:
    datasets = require("sklearn.datasets", "scikit-learn", "data", "digits")
    selection = require("sklearn.model_selection", "scikit-learn", "data", "digits")
    d = datasets.load_digits()
    x = np.asarray(d.data, dtype=np.float32) / 16.0
    y = np.asarray(d.target, dtype=np.int64)
    xtr, xte, ytr, yte = selection.train_test_split(x, y, test_size=test_size, random_state=seed, stratify=y)
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}


def load_digits(as_sequence: bool = False, test_size: float = 0.25, seed: int = 0, cache: bool = True) -> Dataset:
    """The 1,797 digits of ``sklearn.datasets.load_digits``, pixels scaled from 0..16 to ``[0, 1]``.

    Split: ``sklearn.model_selection.train_test_split(test_size=0.25, random_state=0,
    stratify=labels)``, 1347 train / 450 test, every class in both in proportion.
    ``as_sequence=False`` gives one static step of 64 pixels ``(1, N, 64)``; ``True`` the
    image row by row, 8 steps of 8 pixels ``(8, N, 8)``.  Needs scikit-learn (the ``data``
    extra); the split arrays are cached as ``.npz`` (``cache=False``: always from sklearn).
    """
    name = "digits"
    as_sequence = check_bool(name, "as_sequence", as_sequence)
    test_size = check_float(name, "test_size", test_size, 0.0, 1.0, low_open=True, high_open=True)
    seed = check_int(name, "seed", seed, 0)
    cache = check_bool(name, "cache", cache)
    a = cached_arrays(name, {"test_size": test_size, "seed": seed, "v": 1}, lambda: _build(test_size, seed), cache)
    xtr, ytr, xte, yte = a["x_train"], a["y_train"].astype(np.int64), a["x_test"], a["y_test"].astype(np.int64)
    return Dataset(
        name + ("-rows" if as_sequence else ""),
        images_time_major(xtr, 8, as_sequence), ytr, images_time_major(xte, 8, as_sequence), yte,
        n_classes=10, dt=1.0, meta={"as_sequence": as_sequence, "test_size": test_size, "seed": seed, "image_shape": (8, 8)},
    )
