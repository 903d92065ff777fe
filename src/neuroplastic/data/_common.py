"""Helpers shared by the dataset loaders: argument checks, errors, splits and layouts."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np

from ..config import did_you_mean  # one "did you mean" for config keys and loader options


class MissingDataError(FileNotFoundError, ValueError):
    """A dataset's files are not where the loader looked (loaders never download).

    Both a ``FileNotFoundError`` and a ``ValueError``, so the command line reports it as a
    bad argument (the ``root`` option) without a traceback.
    """


class OptionTypeError(TypeError, ValueError):
    """A loader option of the wrong type (``n_units=2.5``).

    Both a ``TypeError`` and a ``ValueError``, so the command line reports it as a bad
    argument without a traceback.
    """


class MissingPackageError(ImportError, ValueError):
    """An optional package a loader needs is not installed; the message names it and its extra."""


def require(module: str, package: str, extra: str, dataset: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingPackageError` naming ``package`` and the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingPackageError(
            f"{dataset}: needs the package {package!r}, which is not installed ({err}); "
            f"install it with `pip install {package}` or `pip install 'neuroplastic[{extra}]'`",
            name=package,
        ) from None


def data_root(root: str | os.PathLike | None, dataset: str) -> Path:
    """``root`` as a path; ``None`` means ``$NEUROPLASTIC_DATA`` (or ``~/data`` when unset)."""
    if root is None:
        root = os.environ.get("NEUROPLASTIC_DATA", str(Path.home() / "data"))
    if not isinstance(root, (str, os.PathLike)):
        raise OptionTypeError(f"{dataset}: root must be a path, got {type(root).__name__}")
    return Path(root).expanduser()


# ---------------------------------------------------------------------------- argument checks
def check_options(dataset: str, loader: Callable[..., Any], options: dict[str, Any]) -> None:
    """``ValueError`` for an option ``loader`` does not take: ``randman: unknown option 'nunits'; did you mean 'n_units'?``."""
    params = list(inspect.signature(loader).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for k in options:
        if k not in accepted:
            raise ValueError(f"{dataset}: unknown option {k!r}{did_you_mean(k, accepted or ['(none)'])}")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def check_int(dataset: str, name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``, else ``TypeError``/``ValueError`` naming ``name``."""
    if not _is_int(value):
        raise OptionTypeError(f"{dataset}: {name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{dataset}: {name} must be >= {minimum}, got {value}")
    return int(value)


def check_optional_int(dataset: str, name: str, value: Any, minimum: int = 1) -> int | None:
    """:func:`check_int` that lets ``None`` through."""
    return None if value is None else check_int(dataset, name, value, minimum)


def check_float(dataset: str, name: str, value: Any, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within the given bounds, else an error naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise OptionTypeError(f"{dataset}: {name} must be a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{dataset}: {name} must be finite, got {value!r}")
    if low is not None and (v <= low if low_open else v < low):
        raise ValueError(f"{dataset}: {name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and (v >= high if high_open else v > high):
        raise ValueError(f"{dataset}: {name} must be {'<' if high_open else '<='} {high:g}, got {value!r}")
    return v


def check_bool(dataset: str, name: str, value: Any) -> bool:
    """``value`` if it is a bool, else ``TypeError`` naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise OptionTypeError(f"{dataset}: {name} must be true or false, got {value!r}")
    return bool(value)


def check_choice(dataset: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else ``ValueError`` naming ``name``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{dataset}: {name} must be one of {list(choices)}, got {value!r}")
    return value


# ---------------------------------------------------------------------------- cache
def cache_dir() -> Path:
    """``$NEUROPLASTIC_CACHE`` or ``~/.cache/neuroplastic``."""
    return Path(os.environ.get("NEUROPLASTIC_CACHE", Path.home() / ".cache" / "neuroplastic"))


def cached_arrays(prefix: str, key: dict, build: Callable[[], dict[str, np.ndarray]], cache: bool) -> dict[str, np.ndarray]:
    """``build()``'s arrays, kept as ``.npz`` (no pickle) under the cache folder when ``cache``.

    The file name hashes ``key``; a damaged file is rebuilt.  Used where building is slow
    (importing scikit-learn, parsing a CSV), never for a different result.
    """
    path = cache_dir() / f"{prefix}-{hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]}.npz"
    if cache and path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError, KeyError):
            pass  # rebuilt below
    arrays = build()
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, **arrays)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache folder only costs the rebuild next time
    return arrays


# ---------------------------------------------------------------------------- splits and layouts
def stratified_indices(y: np.ndarray, n_test_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: per class a seeded permutation, the last ``n_test_per_class`` to test.

    Classes are visited in increasing order and both index lists are shuffled at the end
    with the same generator (``numpy.random.default_rng(seed)``).
    """
    rng = np.random.default_rng(seed)
    train: list[int] = []
    test: list[int] = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        train.extend(idx[: len(idx) - n_test_per_class])
        test.extend(idx[len(idx) - n_test_per_class:])
    return rng.permutation(np.asarray(train, dtype=np.int64)), rng.permutation(np.asarray(test, dtype=np.int64))


def images_time_major(x: np.ndarray, rows: int, as_sequence: bool) -> np.ndarray:
    """``(N, rows*cols)`` images as ``(1, N, rows*cols)`` or, row by row, ``(rows, N, cols)`` float32."""
    x = np.asarray(x, dtype=np.float32)
    if not as_sequence:
        return np.ascontiguousarray(x[None])
    n = x.shape[0]
    return np.ascontiguousarray(x.reshape(n, rows, -1).transpose(1, 0, 2))
