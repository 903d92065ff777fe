"""Numpy backend: plain array math (encoders, metrics, references); no autodiff."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ._numpy_ops import NumpyLikeOps
from .base import Backend, numpy_rng, seed_sequence_key, split_seed_sequence


class NumpyBackend(NumpyLikeOps, Backend):
    name = "numpy"
    differentiable = False
    xp = np

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def is_array(self, x: Any) -> bool:
        return isinstance(x, np.ndarray)

    def array_like(self, stored: np.ndarray, like: Any) -> np.ndarray:
        return stored.copy()

    def stop_gradient(self, x: Any) -> Any:
        return x

    def spike(self, x: Any, surrogate: Any) -> Any:
        return (x > 0).astype(x.dtype)

    def scan(self, fn: Callable, init: Any, xs: Any, length: int | None = None):
        from .torch import python_scan

        return python_scan(self, fn, init, xs, length)

    def vmap(self, fn, in_axes=0, out_axes=0):
        raise NotImplementedError("the numpy backend has no vmap; use 'torch' or 'jax'")

    def value_and_grad(self, fn, has_aux=False):
        raise NotImplementedError("the numpy backend cannot differentiate; use 'torch' or 'jax'")

    def vjp(self, fn, *primals):
        raise NotImplementedError("the numpy backend cannot differentiate; use 'torch' or 'jax'")

    def jvp(self, fn, primals, tangents):
        raise NotImplementedError("the numpy backend cannot differentiate; use 'torch' or 'jax'")

    def key(self, seed: int) -> np.random.SeedSequence:
        return seed_sequence_key(seed)

    def split(self, key: Any, n: int = 2) -> list:
        return split_seed_sequence(key, n)

    def normal(self, key: Any, shape: Sequence[int]) -> np.ndarray:
        return numpy_rng(key).standard_normal(tuple(shape)).astype(self.float_dtype)

    def uniform(self, key: Any, shape: Sequence[int], low: float = 0.0, high: float = 1.0) -> np.ndarray:
        return numpy_rng(key).uniform(low, high, tuple(shape)).astype(self.float_dtype)

    def permutation(self, key: Any, n: int) -> np.ndarray:
        return numpy_rng(key).permutation(n)

    def seed_from_key(self, key: Any) -> int:
        return int(key.generate_state(1)[0])
