"""MNIST-1D (Greydanus 2020), generated offline with ``mnist1d.data.make_dataset``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .arrays import Dataset


def cache_dir() -> Path:
    """``$NEUROPLASTIC_CACHE`` or ``~/.cache/neuroplastic``."""
    return Path(os.environ.get("NEUROPLASTIC_CACHE", Path.home() / ".cache" / "neuroplastic"))


def _generate(seed: int, shuffle_seq: bool) -> dict:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    args.shuffle_seq = shuffle_seq
    data = make_dataset(args)  # never the download path: the data is generated here
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


def load_mnist1d(
    seed: int = 42,
    as_sequence: bool = True,
    shuffle_seq: bool = False,
    cache: bool = True,
) -> Dataset:
    """The standard MNIST-1D split: 4000 train and 1000 test examples of 40 samples, 10 classes.

    ``as_sequence=True`` presents each example as 40 time steps of one channel ``(40, N, 1)``;
    ``False`` as one step with 40 features ``(1, N, 40)``.  ``shuffle_seq=True`` is the
    variant whose 40 positions are permuted (one fixed permutation).  The generated arrays are
    cached as ``.npz`` (no pickle) under :func:`cache_dir`.
    """
    key = json.dumps({"seed": seed, "shuffle_seq": shuffle_seq, "v": 1})
    path = cache_dir() / f"mnist1d-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"
    arrays = None
    if cache and path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
        except (OSError, ValueError, KeyError):
            arrays = None  # a damaged cache file is regenerated
    if arrays is None:
        arrays = _generate(seed, shuffle_seq)
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **arrays)
            os.replace(tmp, path)

    def shape(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)
        return np.ascontiguousarray(x.T[:, :, None]) if as_sequence else x[None]

    return Dataset(
        "mnist1d" + ("-shuffled" if shuffle_seq else ""),
        shape(arrays["x"]), arrays["y"].astype(np.int64),
        shape(arrays["x_test"]), arrays["y_test"].astype(np.int64),
        n_classes=10, dt=1.0,
        meta={"seed": seed, "as_sequence": as_sequence, "shuffle_seq": shuffle_seq},
    )
