"""Finite-value checks shared by the trainer, checkpoints and run folders: training never starts
from, and no file is ever written with, NaN or infinite parameters."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..tree import tree_flatten_dict


class NonFiniteError(ValueError):
    """Training met a non-finite loss, gradient or parameter (or was asked to start from one)."""


def nonfinite_leaves(tree: Any, to_numpy: Callable[[Any], np.ndarray] = np.asarray) -> list[str]:
    """Dotted paths of the leaves of ``tree`` holding NaN or infinite values."""
    return [k for k, v in tree_flatten_dict(tree).items() if not np.all(np.isfinite(to_numpy(v)))]


def check_finite(tree: Any, what: str, to_numpy: Callable[[Any], np.ndarray] = np.asarray) -> None:
    """Raise a :class:`NonFiniteError` naming ``what`` and the first bad leaf unless ``tree`` is finite."""
    bad = nonfinite_leaves(tree, to_numpy)
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise NonFiniteError(f"{what}: non-finite values in {bad[0]}{more}")


__all__ = ["NonFiniteError", "check_finite", "nonfinite_leaves"]
