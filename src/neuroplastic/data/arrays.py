"""The dataset container and the array-dataset path for users' own ``(x, y)`` arrays.

Everything that enters a :class:`Dataset` is checked here, at the door: shapes, emptiness,
finiteness, the label type (integer class labels ``(N,)`` or float targets ``(T, N, K)``)
and the label range ``[0, n_classes)``.  Errors are ``ValueError`` s that name the argument
and the offending value (``y_train: label 7 at index 12 is outside [0, 3)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ._common import _is_int


@dataclass
class Dataset:
    """Train and test splits, time-major.

    ``x_train``/``x_test``: float32 ``(T, N, C)`` — time, examples, channels.
    ``y_train``/``y_test``: int64 labels ``(N,)`` for classification, or float targets
    ``(T, N, K)`` for regression / target spike trains.
    ``n_classes``: for labels, the number of classes (``None``: the largest label + 1 over
    both splits); every label must lie in ``[0, n_classes)``.  ``None`` for targets.
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
        if not isinstance(self.name, str):
            raise ValueError(f"name: expected a string, got {self.name!r}")
        for split in ("train", "test"):
            check_arrays(getattr(self, f"x_{split}"), getattr(self, f"y_{split}"), f"x_{split}", f"y_{split}")
            setattr(self, f"x_{split}", np.asarray(getattr(self, f"x_{split}")))
        if self.x_train.shape[2] != self.x_test.shape[2]:
            raise ValueError(f"x_test: {self.x_test.shape[2]} channels (shape {self.x_test.shape}) but x_train has "
                             f"{self.x_train.shape[2]} (shape {self.x_train.shape})")
        if isinstance(self.dt, (bool, np.bool_)) or not isinstance(self.dt, (int, float, np.integer, np.floating)) \
                or not (math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"dt: expected the step length in ms, a positive number, got {self.dt!r}")
        labels = [np.ndim(self.y_train) == 1, np.ndim(self.y_test) == 1]
        if labels[0] != labels[1]:
            kinds = ["class labels (N,)" if lab else "targets (T, N, K)" for lab in labels]
            raise ValueError(f"y_test: holds {kinds[1]} but y_train holds {kinds[0]}; both splits need the same kind")
        if not labels[0]:
            if self.n_classes is not None:
                raise ValueError(f"n_classes: only for class labels (N,), but y_train holds targets of shape "
                                 f"{np.shape(self.y_train)}; leave n_classes=None for regression targets")
            return
        if self.n_classes is None:
            ys = [np.asarray(self.y_train), np.asarray(self.y_test)]
            self.n_classes = int(max(y.max(initial=0) for y in ys)) + 1
        elif not (_is_int(self.n_classes) and self.n_classes >= 1):
            raise ValueError(f"n_classes: expected a positive integer, got {self.n_classes!r}")
        self.n_classes = int(self.n_classes)
        self.y_train = check_labels(self.y_train, self.n_classes, "y_train")
        self.y_test = check_labels(self.y_test, self.n_classes, "y_test")

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


# ---------------------------------------------------------------------------- checks
def _as_array(a: Any, name: str, dtype: Any = None) -> np.ndarray:
    """``a`` as a numpy array of real numbers (cast to ``dtype`` when given), with numpy's own
    errors (ragged lists, strings) and complex or out-of-range values named."""
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError, OverflowError) as err:
        raise ValueError(f"{name}: cannot be read as an array of numbers ({err})") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: expected an array of real numbers, got dtype {arr.dtype}")
    if dtype is not None and arr.dtype != dtype:
        with np.errstate(over="ignore"):
            cast = arr.astype(dtype)
        if arr.dtype.kind == "f" and np.isfinite(arr).all() and not np.isfinite(cast).all():
            raise ValueError(f"{name}: values beyond the {np.dtype(dtype).name} range (largest magnitude {np.abs(arr).max():g})")
        arr = cast
    return arr


def _label_dtype_error(y: np.ndarray, name: str) -> str | None:
    """Why ``y`` (1-d) cannot be class labels, or ``None`` when its dtype is an integer type."""
    if y.dtype.kind in "iu":
        return None
    if y.dtype.kind == "b":
        return f"{name}: class labels must be integers, got booleans; pass {name}.astype(int)"
    return (f"{name}: class labels must be integers, got {y.dtype} labels of shape {y.shape}; pass integer labels "
            f"({name}.astype(int)) for classification, or regression targets (T, N, K) with a regression loss")


def check_labels(y: Any, n_outputs: int, name: str = "y") -> np.ndarray:
    """Integer class labels ``(N,)`` in ``[0, n_outputs)`` as int64, else a ``ValueError`` naming ``name``.

    The message names the first offending label and its index
    (``y_train: label 7 at index 12 is outside [0, 3)``); float labels are refused with a
    pointer to regression targets.  ``n_outputs`` is the number of classes, or the
    output size of the network that is to classify them.
    """
    if not (_is_int(n_outputs) and n_outputs >= 1):
        raise ValueError(f"n_outputs: expected a positive integer, got {n_outputs!r}")
    y = _as_array(y, name)
    if y.ndim != 1:
        raise ValueError(f"{name}: expected class labels (N,), got shape {y.shape}")
    err = _label_dtype_error(y, name)
    if err is not None:
        raise ValueError(err)
    bad = np.flatnonzero((y < 0) | (y >= n_outputs))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}: label {y[i]} at index {i} is outside [0, {int(n_outputs)})")
    return y.astype(np.int64, copy=False)


def check_arrays(x: Any, y: Any, x_name: str = "x", y_name: str = "y") -> None:
    """Raise ``ValueError`` naming the argument unless ``x`` is a finite, non-empty ``(T, N, C)``
    array and ``y`` holds ``N`` integer labels ``(N,)`` or finite targets ``(T, N, K)``.

    Batch-major ``x`` (the examples on axis 0, matching the labels) gets a hint to pass
    ``time_major=False``.  Label ranges are checked by :func:`check_labels`.
    """
    x = _as_array(x, x_name)
    y = _as_array(y, y_name)
    n_labels = y.shape[0] if y.ndim == 1 else None
    looks_batch_major = bool(n_labels) and x.ndim >= 2 and x.shape[0] == n_labels and x.shape[1] != n_labels
    if x.ndim != 3:
        hint = ""
        if looks_batch_major and x.ndim == 2:
            hint = (f"; its first axis matches the {n_labels} labels of {y_name}: for batch-major (N, T) pass "
                    f"time_major=False, for static features (N, C) use {x_name}[None] (one time step)")
        raise ValueError(f"{x_name}: expected a time-major array (T, N, C), got shape {x.shape}{hint}")
    if looks_batch_major:
        raise ValueError(f"{x_name}: shape {x.shape} looks batch-major (N, T, C): its first axis matches the {n_labels} "
                         f"labels of {y_name}, but arrays are time-major (T, N, C); pass time_major=False to "
                         f"from_arrays, or transpose with {x_name}.transpose(1, 0, 2)")
    for axis, what in ((1, "no examples"), (0, "no time steps"), (2, "no channels")):
        if x.shape[axis] == 0:
            raise ValueError(f"{x_name}: {what} (shape {x.shape})")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{x_name}: contains NaN or infinite values")
    if y.ndim == 1 and y.shape[0] == x.shape[1]:
        err = _label_dtype_error(y, y_name)
        if err is not None:
            raise ValueError(err)
    elif y.ndim == 3 and y.shape[:2] == x.shape[:2]:
        if y.shape[2] == 0:
            raise ValueError(f"{y_name}: targets have no channels (shape {y.shape})")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"{y_name}: targets contain NaN or infinite values")
    else:
        raise ValueError(f"{y_name}: expected {x.shape[1]} labels (N,) or targets (T, N, K) for {x_name} of shape "
                         f"{x.shape}, got {y.shape}")


def from_arrays(
    x_train: Any, y_train: Any, x_test: Any, y_test: Any, name: str = "arrays", time_major: bool = True, dt: float = 1.0,
    n_classes: int | None = None,
) -> Dataset:
    """A :class:`Dataset` from numpy arrays (or anything ``numpy.asarray`` reads).

    ``time_major=False`` accepts ``(N, T, C)`` (or ``(N, T)``: one channel) and transposes.
    Integer labels ``(N,)`` make a classification set; ``n_classes`` says how many classes
    (default: the largest label + 1 over both splits) and every label must lie in
    ``[0, n_classes)``.  Float targets ``(T, N, K)`` make a regression set.  Bad input raises
    a ``ValueError`` naming the argument (see docs/reliability.md).
    """
    if not isinstance(time_major, (bool, np.bool_)):
        raise ValueError(f"time_major: expected true or false, got {time_major!r}")
    xs = []
    for arr, y, nm in ((x_train, y_train, "x_train"), (x_test, y_test, "x_test")):
        a = _as_array(arr, nm, np.float32)
        if not time_major:
            if a.ndim == 2:
                a = a[:, :, None]
            if a.ndim != 3:
                raise ValueError(f"{nm}: expected (N, T, C) or (N, T) with time_major=False, got shape {a.shape}")
            n = np.shape(y)[0] if np.ndim(y) == 1 else None
            if n is not None and a.shape[0] != n and a.shape[1] == n:
                raise ValueError(f"{nm}: with time_major=False expected (N, T, C) with the {n} examples on axis 0, got "
                                 f"shape {a.shape}, which looks time-major (T, N, C): drop time_major=False")
            a = np.ascontiguousarray(a.transpose(1, 0, 2))
        xs.append(a)
    ys = [_as_array(y_train, "y_train"), _as_array(y_test, "y_test")]
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
