"""Streaming data: training and evaluation from any source of ``(x, y)`` batches.

A :class:`StreamingData` is the streaming counterpart of an in-memory
:class:`~neuroplastic.data.arrays.Dataset`: :meth:`Trainer.fit
<neuroplastic.train.Trainer.fit>` and :meth:`Trainer.evaluate_batches
<neuroplastic.train.Trainer.evaluate_batches>` accept either.  Its splits are
:class:`BatchStream` s, each wrapping one of

* a **function** ``(seed, epoch) -> iterable of (x, y)``: called afresh for every epoch.
  This is the form with the arrays path's guarantee: the same ``seed`` and ``epoch`` give
  the same batches, on every backend and machine (:func:`npz_batches` is one, reading
  ``.npz`` files one at a time);
* a **re-iterable** (a ``torch.utils.data.DataLoader``, a tonic dataset wrapped in a
  DataLoader, a list of batches): iterated once per epoch; its order is its own (seed a
  DataLoader's ``generator`` for reproducible shuffling);
* a **one-shot iterator** (a generator): it can be read once, so it serves one epoch
  only; a second epoch raises a ``ValueError`` asking for a function instead.

Batches are what the source yields: ``x`` time-major ``(T, B, C)`` (``time_major=False``:
``(B, T, C)``, transposed here; ``(B, T)`` is one channel) as anything ``numpy.asarray``
reads (numpy, CPU torch tensors, JAX arrays), and ``y`` integer labels ``(B,)`` or targets
``(T, B, K)``.  Every batch is checked as it arrives (shape, finiteness, label type), and
the error names the split and the batch index.  Nothing is held beyond the current batch,
so a dataset larger than memory trains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import numpy as np

from ..backend import ops_for
from .arrays import Dataset, _as_array, batches, check_arrays, check_labels

Batch = tuple[np.ndarray, np.ndarray]
#: what a :class:`BatchStream` wraps: a function ``(seed, epoch) -> batches``, or an iterable of batches
BatchSource = Union[Callable[[int, int], Iterable[Any]], Iterable[Any]]


class BatchStream:
    """One split's batches, epoch after epoch (see the module docstring for the source kinds).

    ``time_major=False`` takes ``x`` as ``(B, T, C)`` (or ``(B, T)``) and transposes it.
    ``name`` appears in error messages (``"train"``, ``"test"``).
    """

    def __init__(self, source: BatchSource, time_major: bool = True, name: str = "batches") -> None:
        if not isinstance(time_major, (bool, np.bool_)):
            raise ValueError(f"time_major: expected true or false, got {time_major!r}")
        if isinstance(source, (np.ndarray, str, bytes, dict)) or not (callable(source) or hasattr(source, "__iter__")):
            raise ValueError(
                f"{name}: expected a function (seed, epoch) -> batches, or an iterable of (x, y) batches (a DataLoader,"
                f" a generator, a list), got {type(source).__name__}; for in-memory arrays use neuroplastic.data.from_arrays"
            )
        self.source = source
        self.time_major = bool(time_major)
        self.name = name
        self._one_shot = not callable(source) and hasattr(source, "__next__")  # a generator or other iterator
        self._used = False

    def __repr__(self) -> str:
        kind = "function" if callable(self.source) else ("one-shot iterator" if self._one_shot else type(self.source).__name__)
        return f"BatchStream({self.name!r}, {kind}, time_major={self.time_major})"

    def __len__(self) -> int:
        """The number of batches per epoch, where the source knows it (a DataLoader, a list)."""
        if callable(self.source) or not hasattr(self.source, "__len__"):
            raise TypeError(f"{self.name}: this stream does not know its length")
        return len(self.source)  # type: ignore[arg-type]

    def length(self) -> int | None:
        """:func:`len` of the source, or ``None`` when it does not know it."""
        try:
            return len(self)
        except TypeError:
            return None

    def epoch(self, seed: int = 0, epoch: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch`` as checked numpy arrays, time-major."""
        if callable(self.source):
            items = self.source(seed, epoch)
        else:
            if self._one_shot and self._used:
                raise ValueError(
                    f"{self.name}: a generator (one-shot iterator) yields its batches once, and they were used by an "
                    "earlier epoch or evaluation; pass a function (seed, epoch) -> batches, or a re-iterable such as a "
                    "DataLoader or a list"
                )
            self._used = True
            items = self.source
        for index, item in enumerate(items):
            yield self.check_batch(item, index)

    def check_batch(self, item: Any, index: int) -> Batch:
        """``item`` as ``(x (T, B, C) float32, y)`` numpy arrays, or a ``ValueError`` naming the batch."""
        where = f"{self.name} batch {index}"
        if isinstance(item, dict) or not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"{where}: expected a pair (x, y), got {type(item).__name__}"
                             f"{f' of length {len(item)}' if isinstance(item, (tuple, list)) else ''}")
        x = _as_array(_host(item[0]), f"{where}: x", np.float32)
        y = _as_array(_host(item[1]), f"{where}: y")
        if not self.time_major:
            if x.ndim == 2:
                x = x[:, :, None]
            if x.ndim != 3:
                raise ValueError(f"{where}: x with time_major=False must be (B, T, C) or (B, T), got shape {x.shape}")
            x = np.ascontiguousarray(x.transpose(1, 0, 2))
            if y.ndim == 3:
                y = np.ascontiguousarray(y.transpose(1, 0, 2))
        check_arrays(x, y, f"{where}: x", f"{where}: y")
        return x, (y.astype(np.int64, copy=False) if y.ndim == 1 else y.astype(np.float32, copy=False))


@dataclass
class StreamingData:
    """Train and test splits as :class:`BatchStream` s (or anything :class:`BatchStream` accepts).

    ``n_classes``: the number of classes (labels are checked against it batch by batch;
    ``None`` leaves the range check to the network's output size); ``None`` for regression
    targets.  ``dt``: the step length in ms.  ``test=None`` trains without evaluation.
    """

    train: Any
    test: Any = None
    n_classes: int | None = None
    dt: float = 1.0
    name: str = "stream"
    time_major: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise ValueError(f"name: expected a string, got {self.name!r}")
        if not isinstance(self.train, BatchStream):
            self.train = BatchStream(self.train, self.time_major, "train")
        if self.test is not None and not isinstance(self.test, BatchStream):
            self.test = BatchStream(self.test, self.time_major, "test")
        if self.n_classes is not None and (isinstance(self.n_classes, bool) or not isinstance(self.n_classes, (int, np.integer))
                                           or self.n_classes < 1):
            raise ValueError(f"n_classes: expected a positive integer or none, got {self.n_classes!r}")
        if isinstance(self.dt, bool) or not isinstance(self.dt, (int, float, np.integer, np.floating)) \
                or not (math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"dt: expected the step length in ms, a positive number, got {self.dt!r}")

    def check_labels(self, y: np.ndarray, n_outputs: int | None, name: str) -> None:
        """One batch's class labels within ``[0, n_classes)`` (the network's output size when ``n_classes`` is none)."""
        if y.ndim == 1:
            bound = self.n_classes if self.n_classes is not None else n_outputs
            check_labels(y, bound if bound is not None else int(y.max(initial=0)) + 1, name)


def training_batches(data: Dataset | StreamingData, batch_size: int, seed: int, epoch: int) -> Iterator[Batch]:
    """The training batches of ``epoch``: an in-memory set shuffled by ``numpy.random.default_rng([seed, epoch])``
    into ``batch_size`` batches; a stream's batches as its source gives them (``batch_size`` unused)."""
    if isinstance(data, StreamingData):
        return data.train.epoch(seed, epoch)
    return batches(data.x_train, data.y_train, batch_size, np.random.default_rng([seed, epoch]))


def npz_batches(paths: Sequence[str | Path], batch_size: int, shuffle: bool = True, x_key: str = "x", y_key: str = "y",
                time_major: bool = True, name: str = "train") -> BatchStream:
    """Batches read from ``.npz`` files one file at a time: a dataset larger than memory.

    Each file holds ``x_key`` (``(T, N, C)``, or ``(N, T, C)`` with ``time_major=False``) and
    ``y_key`` (``(N,)`` labels or targets).  With ``shuffle`` the file order and the examples
    within each file are permuted by ``numpy.random.default_rng([seed, epoch])`` (the arrays
    path's generator), so the same seed gives the same batches; examples left over at the end
    of a file fill the next batch, so every batch but the last has ``batch_size`` examples.
    Files are read with ``allow_pickle=False``: safe for files received from others.
    """
    if not (isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool) and batch_size > 0):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    files = [Path(p) for p in paths]
    if not files:
        raise ValueError("paths: no files given")
    for f in files:
        if not f.is_file():
            raise ValueError(f"paths: no such file {str(f)!r}")
    axis = 1 if time_major else 0

    def read(f: Path) -> tuple[np.ndarray, np.ndarray]:
        try:
            with np.load(f, allow_pickle=False) as z:
                names = list(z.files)
                missing = [k for k in (x_key, y_key) if k not in names]
                arrays = None if missing else (z[x_key], z[y_key])
        except Exception as err:  # not an .npz file, or one holding pickled objects
            raise ValueError(f"{f}: cannot be read as an .npz file of plain arrays ({type(err).__name__}: {err})") from None
        if arrays is None:
            raise ValueError(f"{f}: no array {missing[0]!r} in the file (it has {sorted(names)})")
        return arrays

    def epoch(seed: int, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([seed, epoch]) if shuffle else None
        order = rng.permutation(len(files)) if rng is not None else range(len(files))
        xs, ys, held = [], [], 0
        for i in order:
            x, y = read(files[i])
            n = x.shape[axis]
            idx = rng.permutation(n) if rng is not None else np.arange(n)
            x, y = np.take(x, idx, axis=axis), (y[idx] if y.ndim == 1 else np.take(y, idx, axis=axis))
            xs.append(x)
            ys.append(y)
            held += n
            while held >= batch_size:
                x_all, y_all = np.concatenate(xs, axis=axis), np.concatenate(ys, axis=0 if ys[0].ndim == 1 else axis)
                yield _cut(x_all, y_all, 0, batch_size, axis)
                rest_x, rest_y = _cut(x_all, y_all, batch_size, held, axis)
                xs, ys, held = [rest_x], [rest_y], held - batch_size
        if held:
            yield np.concatenate(xs, axis=axis), np.concatenate(ys, axis=0 if ys[0].ndim == 1 else axis)

    return BatchStream(epoch, time_major, name)


def _cut(x: np.ndarray, y: np.ndarray, start: int, stop: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    sl = [slice(None)] * x.ndim
    sl[axis] = slice(start, stop)
    ys = y[start:stop] if y.ndim == 1 else y[tuple(sl)]
    return x[tuple(sl)], ys


def _host(a: Any) -> Any:
    """A framework tensor as a host numpy array through its backend (CUDA tensors are copied to the CPU);
    anything else unchanged, for ``numpy.asarray``."""
    try:
        B = ops_for(a)
    except TypeError:  # a list or another array-like
        return a
    return B.to_numpy(a)


__all__ = ["BatchSource", "BatchStream", "StreamingData", "npz_batches", "training_batches"]
