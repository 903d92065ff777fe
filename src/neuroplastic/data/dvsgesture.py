"""IBM DVS Gesture (Amir et al. 2017) from the ``.npy`` files tonic stores; never downloads."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._common import MissingDataError, data_root
from ._events import camera_dataset
from .arrays import Dataset

SENSOR = (128, 128, 2)  # (W, H, P)
N_CLASSES = 11
FOLDERS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}


def read_gesture_file(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, p, t_us)`` of one recording: tonic's preprocessed ``(n_events, 4)`` array of
    x, y, polarity and time in ms (converted to µs here, as tonic does)."""
    a = np.load(path, allow_pickle=False)
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"dvsgesture: {path} should hold an (n_events, 4) array of x, y, p, t; got shape {a.shape}")
    ints = a[:, :3].astype(np.int64)
    return ints[:, 0], ints[:, 1], ints[:, 2], a[:, 3].astype(np.float64) * 1000.0


def gesture_files(root: str | os.PathLike | None, split: str) -> tuple[list[Path], np.ndarray]:
    """Sorted recordings of ``split`` (``user*_<lighting>/<label>.npy``) and their labels."""
    base = data_root(root, "dvsgesture")
    candidates = [base / "DVSGesture" / FOLDERS[split], base / FOLDERS[split]]
    for folder in candidates:
        if folder.is_dir():
            files = [f for d in sorted(folder.iterdir()) if d.is_dir() for f in d.glob("*.npy") if f.stem.isdigit()]
            files.sort(key=lambda f: (f.parent.name, int(f.stem)))
            if files:
                return files, np.asarray([int(f.stem) for f in files], dtype=np.int64)
    raise MissingDataError(
        f"dvsgesture: no DVS Gesture {split} files; looked for user*/<label>.npy in {' and '.join(map(str, candidates))}. "
        f"This loader never downloads: unpack tonic's {FOLDERS[split]}.tar.gz there "
        f"(tonic.datasets.DVSGesture(save_to={str(base)!r}) does it) or pass root=DIR"
    )


def load_dvsgesture(
    root: str | None = None,
    n_steps: int = 50,
    duration_ms: float = 1500.0,
    downsample: int = 4,
    binary: bool = False,
    align: str = "first",
    max_train: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
) -> Dataset:
    """DVS Gesture event counts ``(n_steps, N, 2 * H' * W')``, 11 classes, the official user split.

    Reads tonic's preprocessed recordings ``root/DVSGesture/ibmGesture{Train,Test}/user*/<label>.npy``
    (or ``root/ibmGesture{Train,Test}``; ``root`` defaults to ``$NEUROPLASTIC_DATA``, else
    ``~/data``): 1077 train recordings (users 1-23) and 264 test (users 24-29).  The 128x128
    sensor is downsampled by ``downsample`` (default 4: 32x32, 2048 channels); the channel of
    an event is ``p * H' * W' + (y // downsample) * W' + x // downsample`` (tonic's
    ``(P, H, W)`` frame layout).  ``n_steps`` bins over ``[0, duration_ms)`` from each
    recording's first event (``align="zero"``: from time 0); later events are dropped;
    ``binary=True`` clips counts at 1.  ``max_train``/``max_test`` keep a random subset
    (``default_rng(seed)``, in file order).
    """
    return camera_dataset(
        "dvsgesture", lambda: [gesture_files(root, "train"), gesture_files(root, "test")], read_gesture_file, SENSOR, N_CLASSES,
        n_steps, duration_ms, downsample, binary, align, max_train, max_test, seed,
    )
