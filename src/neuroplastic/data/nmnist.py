"""N-MNIST (Orchard et al. 2015) from the ``.bin`` files tonic stores; never downloads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._common import MissingDataError, data_root
from ._events import camera_dataset
from .arrays import Dataset

SENSOR = (34, 34, 2)  # (W, H, P)
N_CLASSES = 10
OVERFLOW_Y = 240  # an event with y == 240 marks a timestamp overflow (+2^13 µs), as tonic reads it


def read_nmnist_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, p, t_us)`` of one N-MNIST recording in the 40-bit format.

    Each event is 5 bytes: x (8 bits), y (8 bits), polarity (1 bit), timestamp in µs (23
    bits, big-endian).  Events with ``y == 240`` are overflow markers: they add ``2^13`` to
    the timestamps from there on and are dropped (the same reading as ``tonic.io.read_mnist_file``).
    """
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 5:
        raise ValueError(f"nmnist: {path} is {raw.size} bytes, not a whole number of 5-byte events")
    ev = raw.reshape(-1, 5).astype(np.int64)
    x, y = ev[:, 0], ev[:, 1]
    p = ev[:, 2] >> 7
    t = ((ev[:, 2] & 127) << 16) | (ev[:, 3] << 8) | ev[:, 4]
    marker = y == OVERFLOW_Y
    t = t + np.cumsum(marker) * (1 << 13)
    keep = ~marker
    return x[keep], y[keep], p[keep], t[keep]


def nmnist_files(root: str | os.PathLike | None, split: str) -> tuple[list[Path], np.ndarray]:
    """Sorted ``.bin`` files of ``split`` (``"Train"``/``"Test"``) and their labels (the digit folder)."""
    base = data_root(root, "nmnist")
    candidates = [base / "NMNIST" / split, base / split]
    for folder in candidates:
        if folder.is_dir():
            files, labels = [], []
            for digit in range(N_CLASSES):
                found = sorted((folder / str(digit)).glob("*.bin"))
                files += found
                labels += [digit] * len(found)
            if files:
                return files, np.asarray(labels, dtype=np.int64)
    raise MissingDataError(
        f"nmnist: no N-MNIST {split} files; looked for {split}/<digit>/*.bin under "
        f"{' and '.join(str(c.parent) for c in candidates)}. This loader never downloads: unpack train.zip and "
        f"test.zip there (tonic.datasets.NMNIST(save_to={str(base)!r}) does it) or pass root=DIR"
    )


def load_nmnist(
    root: str | None = None,
    n_steps: int = 30,
    duration_ms: float = 300.0,
    downsample: int = 1,
    binary: bool = False,
    align: str = "zero",
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> Dataset:
    """N-MNIST event counts ``(n_steps, N, 2 * H' * W')``, 10 classes, the official 60000/10000 split.

    Reads ``root/NMNIST/{Train,Test}/<digit>/*.bin`` (tonic's layout, or ``root/{Train,Test}``;
    ``root`` defaults to ``$NEUROPLASTIC_DATA``, else ``~/data``).  The 34x34 sensor is
    downsampled by ``downsample`` (``W' = H' = ceil(34 / downsample)``); the channel of an
    event is ``p * H' * W' + (y // downsample) * W' + x // downsample``, so frames reshape to
    ``(T, N, 2, H', W')`` as tonic's ``ToFrame`` lays them out.  The window ``[0, duration_ms)``
    (``align="first"``: from each recording's first event) is cut into ``n_steps`` bins;
    events past it are dropped; ``binary=True`` clips counts at 1.  The full train set
    (60000 x 30 x 2312 float32) is 17 GB: use ``max_train``/``max_test`` (a random subset by
    ``default_rng(seed)``, in file order) and ``downsample``.
    """
    return camera_dataset(
        "nmnist", lambda: [nmnist_files(root, "Train"), nmnist_files(root, "Test")], read_nmnist_file, SENSOR, N_CLASSES,
        n_steps, duration_ms, downsample, binary, align, max_train, max_test, seed,
    )
