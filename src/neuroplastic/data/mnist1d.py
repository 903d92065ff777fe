"""MNIST-1D (Greydanus 2020), generated offline with ``mnist1d.data.make_dataset``."""

from __future__ import annotations

import numpy as np

from ._common import cached_arrays, check_bool, check_int
from .arrays import Dataset


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
    cached as ``.npz`` (no pickle) under ``$NEUROPLASTIC_CACHE`` (default ``~/.cache/neuroplastic``).
    """
    seed = check_int("mnist1d", "seed", seed, 0)
    as_sequence = check_bool("mnist1d", "as_sequence", as_sequence)
    shuffle_seq = check_bool("mnist1d", "shuffle_seq", shuffle_seq)
    cache = check_bool("mnist1d", "cache", cache)
    arrays = cached_arrays("mnist1d", {"seed": seed, "shuffle_seq": shuffle_seq, "v": 1}, lambda: _generate(seed, shuffle_seq), cache)

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
