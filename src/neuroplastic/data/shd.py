"""Spiking Heidelberg Digits (Cramer et al. 2020) from the HDF5 files tonic stores; never downloads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._common import MissingDataError, data_root, require
from ._events import check_binning, event_dataset, subset
from .arrays import Dataset

N_UNITS = 700
N_CLASSES = 20


def shd_file(root: str | os.PathLike | None, split: str) -> Path:
    """The path of ``shd_{split}.h5``: ``root/SHD/`` (tonic's ``SHD(save_to=root)``) or ``root/``."""
    base = data_root(root, "shd")
    candidates = [base / "SHD" / f"shd_{split}.h5", base / f"shd_{split}.h5"]
    for c in candidates:
        if c.is_file():
            return c
    raise MissingDataError(
        f"shd: no {split} file for the Spiking Heidelberg Digits; looked for {' and '.join(map(str, candidates))}. "
        f"This loader never downloads: put shd_train.h5 and shd_test.h5 there (tonic.datasets.SHD(save_to={str(base)!r}) "
        f"downloads and unpacks them, or get them from https://zenkelab.org/datasets/) or pass root=DIR"
    )


def load_shd(
    root: str | None = None,
    n_steps: int = 100,
    duration_ms: float = 1000.0,
    downsample: int = 1,
    binary: bool = False,
    align: str = "zero",
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> Dataset:
    """SHD spike counts ``(n_steps, N, ceil(700 / downsample))``, 20 classes, the official split.

    Reads ``shd_train.h5`` (8156 recordings) and ``shd_test.h5`` (2264) from ``root/SHD/``
    (tonic's layout) or ``root/`` (``root`` defaults to ``$NEUROPLASTIC_DATA``, else ``~/data``):
    datasets ``spikes/times`` (seconds), ``spikes/units`` (0..699) and ``labels``.  The window
    ``[0, duration_ms)`` (``align="first"``: from each recording's first spike) is cut into
    ``n_steps`` bins of ``duration_ms / n_steps`` ms; bin ``k`` counts the spikes of unit
    group ``u // downsample`` in ``[k dt, (k+1) dt)``; spikes past the window are dropped;
    ``binary=True`` clips counts at 1.  ``max_train``/``max_test`` keep a random subset
    (``default_rng(seed)``, sorted).  Needs h5py (the ``neuromorphic`` extra).
    """
    name = "shd"
    check_binning(name, n_steps, duration_ms, downsample, binary, align, max_train, max_test, seed)
    paths = [shd_file(root, "train"), shd_file(root, "test")]
    h5py = require("h5py", "h5py", "neuromorphic", name)
    n_channels = -(-N_UNITS // downsample)
    splits = []
    handles = []
    try:
        for path, limit in zip(paths, (max_train, max_test)):
            f = h5py.File(path, "r")
            handles.append(f)
            for key in ("spikes/times", "spikes/units", "labels"):
                if key not in f:
                    raise ValueError(f"{name}: {path} has no dataset {key!r}; is it an SHD file?")
            keep = subset(len(f["labels"]), limit, seed)
            labels = np.asarray(f["labels"][()], dtype=np.int64)[keep]

            def read(i: int, f=f, keep=keep, path=path) -> tuple[np.ndarray, np.ndarray]:
                j = int(keep[i])
                t = np.asarray(f["spikes/times"][j], dtype=np.float64) * 1e6
                u = np.asarray(f["spikes/units"][j], dtype=np.int64)
                if t.shape != u.shape:
                    raise ValueError(f"{name}: {path} recording {j} has {t.size} times but {u.size} units")
                if u.size and (u.min() < 0 or u.max() >= N_UNITS):
                    raise ValueError(f"{name}: {path} recording {j} has a unit outside 0..{N_UNITS - 1}")
                return t, u // downsample

            splits.append((read, labels))
        return event_dataset(
            name, splits, N_CLASSES, n_steps, duration_ms, n_channels, align, binary,
            meta={"root": str(paths[0].parent), "downsample": downsample, "align": align, "binary": binary, "n_units": N_UNITS},
        )
    finally:
        for f in handles:
            f.close()
