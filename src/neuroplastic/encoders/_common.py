"""Shared argument handling for the encoders: backend lookup, shape and value checks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import Backend, ops_for


def prepare(x: Any, encoder: str) -> tuple[Backend, Any]:
    """``(backend, x)`` with ``x`` a floating array of its own framework (lists become numpy).

    Input that is not real numbers (strings, ragged lists, complex values) raises a
    ``ValueError`` naming ``encoder``.
    """
    if isinstance(x, (list, tuple, int, float)) or (isinstance(x, np.ndarray) and x.dtype.kind != "f"):
        if isinstance(x, np.ndarray) and x.dtype.kind not in "biu":
            raise ValueError(f"{encoder}: expected an array of real numbers, got dtype {x.dtype}")
        try:
            x = np.asarray(x, dtype=np.float32)
        except (ValueError, TypeError, OverflowError) as err:
            raise ValueError(f"{encoder}: cannot read the input as an array of real numbers ({err})") from None
    try:
        B = ops_for(x)
    except TypeError:
        raise ValueError(f"{encoder}: expected a numpy array, torch tensor or JAX array, got {type(x).__name__}") from None
    if "complex" in str(x.dtype):
        raise ValueError(f"{encoder}: expected an array of real numbers, got dtype {x.dtype}")
    if str(x.dtype).replace("torch.", "") not in ("float32", "float64"):  # integers, booleans, half precision
        x = B.astype(x, B.float_dtype_of("float32"))
        B = ops_for(x)
    return B, x


def check_ndim(x: Any, encoder: str, allowed: tuple[int, ...]) -> None:
    """Raise unless ``x`` is a signal ``(T, N, C)`` (ndim 3) or static features ``(N, C)`` (ndim 2)."""
    nd = len(x.shape)
    if nd not in allowed:
        names = {2: "static features (N, C)", 3: "a signal (T, N, C)"}
        want = " or ".join(names[a] for a in allowed)
        raise ValueError(f"{encoder}: expected {want}, got shape {tuple(x.shape)}")
    if any(s == 0 for s in x.shape):
        raise ValueError(f"{encoder}: empty input, shape {tuple(x.shape)}")


def is_real(value: Any) -> bool:
    """A real number (Python or numpy), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_number(value: Any, name: str, encoder: str, minimum: float | None = None) -> float:
    """A finite real number (``>= minimum`` when given), else ``ValueError('encoder: name must be ...')``."""
    if not (is_real(value) and math.isfinite(value) and (minimum is None or value >= minimum)):
        what = "a finite number" if minimum is None else f"a number >= {minimum:g}"
        raise ValueError(f"{encoder}: {name} must be {what}, got {value!r}")
    return float(value)


def check_positive(value: Any, name: str, encoder: str) -> float:
    """A positive finite number, else ``ValueError('encoder: name must be positive ...')``."""
    if not (is_real(value) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{encoder}: {name} must be positive, got {value!r}")
    return float(value)


def check_steps(n_steps: Any, encoder: str, name: str = "n_steps") -> int:
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"{encoder}: {name} must be a positive integer, got {n_steps!r}")
    return int(n_steps)


def check_choice(value: str, name: str, choices: tuple, encoder: str) -> None:
    if value not in choices:
        raise ValueError(f"{encoder}: unknown {name} {value!r}; choose one of {list(choices)}")


def check_finite(B: Backend, x: Any, encoder: str) -> None:
    if not B.is_traced(x) and not B.all_finite(x):
        raise ValueError(f"{encoder}: input contains NaN or infinite values")


def as_float(B: Backend, mask: Any, like: Any) -> Any:
    """Boolean array -> floats of ``like``'s dtype."""
    return B.astype(mask, like.dtype)


def split_on_off(spikes: Any, encoder: str) -> tuple[Any, Any]:
    """``(on, off)`` halves of a two-channel spike train ``(T, N, 2C)``."""
    if len(spikes.shape) != 3 or spikes.shape[2] % 2:
        raise ValueError(f"{encoder}: expected on/off spikes (T, N, 2C), got shape {tuple(spikes.shape)}")
    c = spikes.shape[2] // 2
    return spikes[..., :c], spikes[..., c:]
