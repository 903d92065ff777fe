"""Datasets, all time-major ``(T, N, C)`` and available offline.

:func:`load_dataset` finds a loader by name; each loader lives in its own module and is
imported only when asked for.  Generated or bundled sets (MNIST-1D, Randman, Yin-Yang,
digits, the MNIST subset) need no files; the neuromorphic sets (SHD, N-MNIST, DVS Gesture)
read files the user has put in a folder and never download.  See ``docs/data.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..config import did_you_mean
from ._common import MissingDataError, MissingPackageError, OptionTypeError, check_options
from .arrays import Dataset, batches, check_arrays, check_labels, from_arrays
from .stream import BatchStream, StreamingData, npz_batches

# name -> (module, function); modules are imported on first use.  Each loader's options
# are its keyword arguments (see docs/data.md).
LOADERS: dict[str, tuple[str, str]] = {
    "mnist1d": ("mnist1d", "load_mnist1d"),
    "randman": ("randman", "load_randman"),
    "digits": ("digits", "load_digits"),
    "mnist-subset": ("mnist_subset", "load_mnist_subset"),
    "yinyang": ("yinyang", "load_yinyang"),
    "shd": ("shd", "load_shd"),
    "nmnist": ("nmnist", "load_nmnist"),
    "dvsgesture": ("dvsgesture", "load_dvsgesture"),
}


def load_dataset(name: str, **options: Any) -> Dataset:
    """Load the dataset called ``name`` (see ``LOADERS``) with loader-specific ``options``.

    An option the loader does not take is refused by name, with the closest one
    (``randman: unknown option 'nunits'; did you mean 'n_units'?``).
    """
    if name not in LOADERS:
        raise ValueError(f"data: unknown dataset {name!r}{did_you_mean(name, sorted(LOADERS))}")
    module, fn = LOADERS[name]
    loader = getattr(importlib.import_module(f"{__name__}.{module}"), fn)
    check_options(name, loader, options)
    return loader(**options)


__all__ = [
    "BatchStream", "Dataset", "StreamingData", "npz_batches", "LOADERS", "MissingDataError", "MissingPackageError", "OptionTypeError", "batches", "check_arrays",
    "check_labels", "from_arrays", "load_dataset",
]
