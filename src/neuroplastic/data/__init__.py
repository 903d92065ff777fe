"""Datasets, all time-major and available offline.

:func:`load_dataset` finds a loader by name; each loader lives in its own module and is
imported only when asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from .arrays import Dataset, batches, check_arrays, from_arrays

# name -> (module, function); modules are imported on first use
LOADERS: dict[str, tuple[str, str]] = {
    "mnist1d": ("mnist1d", "load_mnist1d"),
}


def load_dataset(name: str, **options: Any) -> Dataset:
    """Load the dataset called ``name`` (see ``LOADERS``) with loader-specific ``options``."""
    if name not in LOADERS:
        raise ValueError(f"data: unknown dataset {name!r}; choose one of {sorted(LOADERS)}")
    module, fn = LOADERS[name]
    loader = getattr(importlib.import_module(f"{__name__}.{module}"), fn)
    return loader(**options)


__all__ = ["Dataset", "LOADERS", "batches", "check_arrays", "from_arrays", "load_dataset"]
