"""Array operations shared by the numpy and JAX backends (``jax.numpy`` mirrors numpy)."""

from __future__ import annotations

from typing import Any, Sequence


class NumpyLikeOps:
    """Array methods for a backend whose namespace ``self.xp`` follows numpy."""

    xp: Any

    @property
    def float_dtype(self) -> Any:
        return getattr(self.xp, self.dtype_name)

    def float_dtype_of(self, name: str) -> Any:
        return getattr(self.xp, name)

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        arr = self.xp.asarray(x)
        if dtype is not None:
            return arr.astype(dtype)
        if arr.dtype.kind == "f" and arr.dtype != self.float_dtype:
            arr = arr.astype(self.float_dtype)
        return arr

    def astype(self, x: Any, dtype: Any) -> Any:
        return x.astype(dtype)

    def zeros(self, shape: Sequence[int], dtype: Any = None) -> Any:
        return self.xp.zeros(tuple(shape), dtype or self.float_dtype)

    def ones(self, shape: Sequence[int], dtype: Any = None) -> Any:
        return self.xp.ones(tuple(shape), dtype or self.float_dtype)

    def full(self, shape: Sequence[int], value: float, dtype: Any = None) -> Any:
        return self.xp.full(tuple(shape), value, dtype or self.float_dtype)

    def zeros_like(self, x: Any) -> Any:
        return self.xp.zeros_like(x)

    def ones_like(self, x: Any) -> Any:
        return self.xp.ones_like(x)

    def eye(self, n: int, dtype: Any = None) -> Any:
        return self.xp.eye(n, dtype=dtype or self.float_dtype)

    def arange(self, n: int) -> Any:
        return self.xp.arange(n)

    # elementwise
    def exp(self, x): return self.xp.exp(x)
    def log(self, x): return self.xp.log(x)
    def tanh(self, x): return self.xp.tanh(x)
    def abs(self, x): return self.xp.abs(x)
    def sign(self, x): return self.xp.sign(x)
    def sqrt(self, x): return self.xp.sqrt(x)
    def maximum(self, a, b): return self.xp.maximum(a, b)
    def minimum(self, a, b): return self.xp.minimum(a, b)
    def clip(self, x, lo=None, hi=None): return self.xp.clip(x, lo, hi)
    def where(self, c, a, b): return self.xp.where(c, a, b)
    def round(self, x): return self.xp.round(x)
    def floor(self, x): return self.xp.floor(x)
    def isfinite(self, x): return self.xp.isfinite(x)

    def sigmoid(self, x):
        return 1.0 / (1.0 + self.xp.exp(-x))

    # reductions
    def sum(self, x, axis=None, keepdims=False): return self.xp.sum(x, axis=axis, keepdims=keepdims)
    def mean(self, x, axis=None, keepdims=False): return self.xp.mean(x, axis=axis, keepdims=keepdims)
    def max(self, x, axis=None, keepdims=False): return self.xp.max(x, axis=axis, keepdims=keepdims)
    def min(self, x, axis=None, keepdims=False): return self.xp.min(x, axis=axis, keepdims=keepdims)
    def argmax(self, x, axis=-1): return self.xp.argmax(x, axis=axis)
    def any(self, x): return self.xp.any(x)
    def all(self, x): return self.xp.all(x)

    def logsumexp(self, x, axis=-1, keepdims=False):
        m = self.xp.max(x, axis=axis, keepdims=True)
        m = self.stop_gradient(m)
        out = self.xp.log(self.xp.sum(self.xp.exp(x - m), axis=axis, keepdims=True)) + m
        return out if keepdims else self.xp.squeeze(out, axis=axis)

    # shapes and products
    def matmul(self, a, b): return self.xp.matmul(a, b)
    def einsum(self, spec, *xs): return self.xp.einsum(spec, *xs)
    def outer(self, a, b): return a[..., :, None] * b[..., None, :]
    def stack(self, xs, axis=0): return self.xp.stack(list(xs), axis=axis)
    def unstack(self, x): return list(x)
    def concatenate(self, xs, axis=0): return self.xp.concatenate(list(xs), axis=axis)
    def reshape(self, x, shape): return self.xp.reshape(x, tuple(shape))
    def transpose(self, x, axes=None): return self.xp.transpose(x, axes)
    def swapaxes(self, x, a, b): return self.xp.swapaxes(x, a, b)
    def expand_dims(self, x, axis): return self.xp.expand_dims(x, axis)
    def take(self, x, idx, axis=0): return self.xp.take(x, idx, axis=axis)
    def take_along_axis(self, x, idx, axis): return self.xp.take_along_axis(x, idx, axis=axis)
    def cumsum(self, x, axis=0): return self.xp.cumsum(x, axis=axis)
    def flip(self, x, axis=0): return self.xp.flip(x, axis=axis)
    def diag(self, x): return self.xp.diag(x)
