"""The dataset container and the array-dataset path for users' own ``(x, y)`` arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np


@dataclass
class Dataset:
    """Train and test splits, time-major.

    ``x_train``/``x_test``: float32 ``(T, N, C)`` — time, examples, channels.
    ``y_train``/``y_test``: int64 labels ``(N,)`` for classification, or float32 targets
    ``(T, N, K)`` for regression / target spike trains.
    ``dt`` is the duration of one step in milliseconds (used to report rates in Hz).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int | None = None
    dt: float = 1.0
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            check_arrays(x, y, f"x_{split}", f"y_{split}")

    @property
    def n_steps(self) -> int:
        return self.x_train.shape[0]

    @property
    def n_features(self) -> int:
        return self.x_train.shape[2]

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={self.x_train.shape}, test={self.x_test.shape},"
            f" classes={self.n_classes}, dt={self.dt} ms)"
        )


def check_arrays(x: Any, y: Any, x_name: str = "x", y_name: str = "y") -> None:
    """Raise ``ValueError`` naming the argument unless ``x`` is finite ``(T, N, C)`` matching ``y``."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 3:
        raise ValueError(f"{x_name}: expected a time-major array (T, N, C), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{x_name}: contains NaN or infinite values")
    if y.shape[:1] != (x.shape[1],) and not (y.ndim == 3 and y.shape[:2] == x.shape[:2]):
        raise ValueError(f"{y_name}: expected {x.shape[1]} labels (N,) or targets (T, N, K) for {x_name} of shape {x.shape}, got {y.shape}")


def from_arrays(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any, name: str = "arrays", time_major: bool = True, dt: float = 1.0
) -> Dataset:
    """A :class:`Dataset` from numpy arrays.

    ``time_major=False`` accepts ``(N, T, C)`` (or ``(N, T)``: one channel) and transposes.
    Labels that are integers make a classification set with ``max(label)+1`` classes.
    """
    xs = []
    for arr, nm in ((x_train, "x_train"), (x_test, "x_test")):
        a = np.asarray(arr, dtype=np.float32)
        if not time_major:
            if a.ndim == 2:
                a = a[:, :, None]
            if a.ndim != 3:
                raise ValueError(f"{nm}: expected (N, T, C) or (N, T) with time_major=False, got shape {a.shape}")
            a = np.ascontiguousarray(a.transpose(1, 0, 2))
        xs.append(a)
    ys = [np.asarray(y_train), np.asarray(y_test)]
    n_classes = None
    if ys[0].ndim == 1 and np.issubdtype(ys[0].dtype, np.integer):
        ys = [y.astype(np.int64) for y in ys]
        n_classes = int(max(ys[0].max(), ys[1].max())) + 1
    return Dataset(name, xs[0], ys[0], xs[1], ys[1], n_classes=n_classes, dt=dt)


def batches(x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator | None = None, drop_last: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Mini-batches along the example axis (axis 1 of ``x``); shuffled when ``rng`` is given."""
    if not (isinstance(batch_size, (int, np.integer)) and batch_size > 0):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    n = x.shape[1]
    order = rng.permutation(n) if rng is not None else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[:, idx], (y[idx] if y.ndim == 1 else y[:, idx])
