"""The backend interface, and the parts every backend shares."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..tree import tree_leaves, tree_map

Array = Any


class Backend:
    """Array operations and function transforms of one framework.

    Subclasses wrap one framework.  Array methods take numpy-style arguments (``axis``,
    ``keepdims``).  Transforms act on functions of pytrees of arrays.  A backend holds no
    arrays; it is a cheap, cached, immutable handle (name, device, float dtype).
    """

    name: str = "abstract"
    #: whether the framework can differentiate (numpy cannot)
    differentiable: bool = True

    def __init__(self, device: str | None = None, dtype: str = "float32") -> None:
        self.device = device
        self.dtype_name = dtype

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r}, dtype={self.dtype_name!r})"

    # ---------------------------------------------------------------- conversion
    def asarray(self, x: Any, dtype: Any = None) -> Array:
        raise NotImplementedError

    def to_numpy(self, x: Array) -> np.ndarray:
        raise NotImplementedError

    def tree_asarray(self, tree: Any) -> Any:
        """Convert every leaf of a pytree (numpy arrays, scalars) to this backend."""
        return tree_map(lambda a: self.asarray(a), tree)

    def tree_to_numpy(self, tree: Any) -> Any:
        return tree_map(lambda a: self.to_numpy(a), tree)

    def is_array(self, x: Any) -> bool:
        raise NotImplementedError

    # ---------------------------------------------------------------- composite ops
    def log_softmax(self, x: Array, axis: int = -1) -> Array:
        return x - self.logsumexp(x, axis=axis, keepdims=True)

    def softmax(self, x: Array, axis: int = -1) -> Array:
        return self.exp(self.log_softmax(x, axis=axis))

    def relu(self, x: Array) -> Array:
        return self.maximum(x, 0.0 * x)

    def one_hot(self, labels: Array, n: int) -> Array:
        return self.astype(labels[..., None] == self.arange(n), self.float_dtype)

    def heaviside(self, x: Array) -> Array:
        return self.astype(x > 0, x.dtype)

    def tree_zeros_like(self, tree: Any) -> Any:
        return tree_map(self.zeros_like, tree)

    def tree_add(self, a: Any, b: Any) -> Any:
        return tree_map(lambda x, y: x + y, a, b)

    def tree_scale(self, tree: Any, s: Any) -> Any:
        return tree_map(lambda x: x * s, tree)

    def tree_vdot(self, a: Any, b: Any) -> Array:
        return sum(self.sum(x * y) for x, y in zip(tree_leaves(a), tree_leaves(b)))

    def tree_stop_gradient(self, tree: Any) -> Any:
        return tree_map(self.stop_gradient, tree)

    def all_finite(self, x: Array) -> bool:
        return bool(np.all(np.isfinite(self.to_numpy(x))))

    # ---------------------------------------------------------------- transforms (abstract)
    def value_and_grad(self, fn: Callable[..., Any], has_aux: bool = False) -> Callable[..., Any]:
        """``fn(params, *args) -> scalar`` (or ``(scalar, aux)``); gradient w.r.t. ``params``."""
        raise NotImplementedError

    def vjp(self, fn: Callable[..., Any], *primals: Any) -> tuple[Any, Callable[[Any], tuple]]:
        """``(fn(*primals), pullback)`` where ``pullback(cotangent)`` returns one cotangent per primal."""
        raise NotImplementedError

    def jvp(self, fn: Callable[..., Any], primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
        """Forward-mode derivative: ``(fn(*primals), J @ tangents)``."""
        raise NotImplementedError

    def vmap(self, fn: Callable[..., Any], in_axes: Any = 0, out_axes: Any = 0) -> Callable[..., Any]:
        raise NotImplementedError

    def scan(self, fn: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any, length: int | None = None) -> tuple[Any, Any]:
        """``carry, y_t = fn(carry, x_t)`` for each ``t``; returns ``(carry, stacked ys)``."""
        raise NotImplementedError

    def jit(self, fn: Callable[..., Any], static_argnums: Sequence[int] = ()) -> Callable[..., Any]:
        """Compile ``fn`` where the framework can (JAX); identity elsewhere."""
        return fn

    def stop_gradient(self, x: Array) -> Array:
        raise NotImplementedError

    def spike(self, x: Array, surrogate: Any) -> Array:
        """Heaviside ``H(x)`` forward; ``surrogate.derivative(x)`` in forward and reverse mode."""
        raise NotImplementedError

    # ---------------------------------------------------------------- random keys
    def key(self, seed: int) -> Any:
        raise NotImplementedError

    def split(self, key: Any, n: int = 2) -> list[Any]:
        raise NotImplementedError

    def normal(self, key: Any, shape: Sequence[int]) -> Array:
        raise NotImplementedError

    def uniform(self, key: Any, shape: Sequence[int], low: float = 0.0, high: float = 1.0) -> Array:
        raise NotImplementedError

    def bernoulli(self, key: Any, p: Any, shape: Sequence[int] | None = None) -> Array:
        """0/1 floats, 1 with probability ``p``."""
        shape = tuple(shape) if shape is not None else tuple(p.shape)
        return self.astype(self.uniform(key, shape) < p, self.float_dtype)

    def permutation(self, key: Any, n: int) -> np.ndarray:
        raise NotImplementedError

    def seed_from_key(self, key: Any) -> int:
        """A non-negative integer drawn from ``key``, to seed numpy generators deterministically."""
        raise NotImplementedError


def seed_sequence_key(seed: Any) -> np.random.SeedSequence:
    """Numpy-based functional keys used by the torch and numpy backends."""
    if isinstance(seed, np.random.SeedSequence):
        return seed
    return np.random.SeedSequence(int(seed))


def split_seed_sequence(key: np.random.SeedSequence, n: int) -> list[np.random.SeedSequence]:
    """``n`` independent child keys of ``key``, without mutating it.

    ``SeedSequence.spawn`` mutates the parent, and appending to ``spawn_key`` makes every
    split one entry longer (a chain of k splits then costs O(k^2)).  Each child is instead
    a fresh sequence seeded with 128 bits of the parent's state plus the child's index, so
    keys stay the same size however long the chain.
    """
    state = [int(w) for w in key.generate_state(4, np.uint32)]
    return [np.random.SeedSequence(state + [i, 0x6E70]) for i in range(n)]


def numpy_rng(key: np.random.SeedSequence) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(key))
