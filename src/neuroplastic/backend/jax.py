"""JAX backend: ``jax.numpy`` ops, ``lax.scan``, ``jit``, threefry keys, ``custom_jvp`` spikes."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._numpy_ops import NumpyLikeOps
from .base import Backend


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _spike(x: jax.Array, surrogate: Any) -> jax.Array:
    return (x > 0).astype(x.dtype)


@_spike.defjvp
def _spike_jvp(surrogate: Any, primals: tuple, tangents: tuple) -> tuple:
    (x,), (x_dot,) = primals, tangents
    return _spike(x, surrogate), surrogate.derivative(x) * x_dot


class JaxBackend(NumpyLikeOps, Backend):
    name = "jax"
    xp = jnp
    compiles = True

    #: XLA matmul precision. "highest" keeps float32 products in float32 on GPUs, where the
    #: default would use TF32 and move spike thresholds; it is the same on the CPU.
    matmul_precision = "highest"

    def __init__(self, device: str | None = None, dtype: str = "float32") -> None:
        super().__init__(device=device, dtype=dtype)
        if dtype == "float64" and not jax.config.read("jax_enable_x64"):
            # float64 arrays need this switch; it only widens what JAX allows
            jax.config.update("jax_enable_x64", True)
        self._device = None
        if device is not None:
            kind, _, idx = device.partition(":")
            kind = {"cuda": "gpu"}.get(kind, kind)
            try:
                self._device = jax.devices(kind)[int(idx or 0)]
            except RuntimeError as err:
                raise ValueError(f"device: JAX has no {device!r} device ({err})") from None

    def asarray(self, x: Any, dtype: Any = None) -> jax.Array:
        arr = NumpyLikeOps.asarray(self, x, dtype)
        return jax.device_put(arr, self._device) if self._device is not None else arr

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def is_array(self, x: Any) -> bool:
        return isinstance(x, jax.Array)

    def array_like(self, stored: np.ndarray, like: Any) -> jax.Array:
        devices = list(like.devices()) if hasattr(like, "devices") else []
        if len(devices) == 1 and devices[0] != jax.devices()[0]:
            return jax.device_put(stored, devices[0])
        return jnp.asarray(stored)

    def is_traced(self, x: Any) -> bool:
        return isinstance(x, jax.core.Tracer)

    def matmul(self, a: Any, b: Any) -> Any:
        return jnp.matmul(a, b, precision=self.matmul_precision)

    def event_matmul(self, x: Any, w: Any, bias: Any = None) -> Any:
        """The event kernel of :mod:`.events_jax` on the CPU where it applies, else :meth:`matmul` (plus ``bias``)."""
        from . import events_jax

        if self.matmul_precision == "highest":
            return events_jax.event_matmul(x, w, bias)
        y = self.matmul(x, w)
        return y if bias is None else y + bias

    def einsum(self, spec: str, *xs: Any) -> Any:
        return jnp.einsum(spec, *xs, precision=self.matmul_precision)

    def stop_gradient(self, x: Any) -> Any:
        return jax.lax.stop_gradient(x)

    def spike(self, x: Any, surrogate: Any) -> Any:
        return _spike(x, surrogate)

    def lif_sequence(self, currents: Any, v0: Any, alpha: float, threshold: float, reset: str,
                     detach_reset: bool, surrogate: Any) -> tuple[Any, Any]:
        """The fused kernel :func:`~neuroplastic.backend.kernels_jax.lif_sequence` (reverse mode only)."""
        from . import kernels_jax

        return kernels_jax.lif_sequence(currents, v0, float(alpha), float(threshold), reset, bool(detach_reset), surrogate)

    def in_forward_mode(self, x: Any) -> bool:
        from . import kernels_jax

        return kernels_jax.in_forward_mode(x)

    # transforms
    def value_and_grad(self, fn: Callable, has_aux: bool = False) -> Callable:
        return jax.value_and_grad(fn, has_aux=has_aux)

    def vjp(self, fn: Callable, *primals: Any):
        return jax.vjp(fn, *primals)

    def jvp(self, fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]):
        return jax.jvp(fn, tuple(primals), tuple(tangents))

    def vmap(self, fn: Callable, in_axes: Any = 0, out_axes: Any = 0) -> Callable:
        return jax.vmap(fn, in_axes=in_axes, out_axes=out_axes)

    def scan(self, fn: Callable, init: Any, xs: Any, length: int | None = None):
        return jax.lax.scan(fn, init, xs, length=length)

    def jit(self, fn: Callable, static_argnums: Sequence[int] = ()) -> Callable:
        return jax.jit(fn, static_argnums=tuple(static_argnums))

    # random
    def key(self, seed: int) -> jax.Array:
        return jax.random.PRNGKey(int(seed))

    def split(self, key: Any, n: int = 2) -> list:
        return list(jax.random.split(key, n))

    def normal(self, key: Any, shape: Sequence[int]) -> jax.Array:
        return jax.random.normal(key, tuple(shape), self.float_dtype)

    def uniform(self, key: Any, shape: Sequence[int], low: float = 0.0, high: float = 1.0) -> jax.Array:
        return jax.random.uniform(key, tuple(shape), self.float_dtype, low, high)

    def permutation(self, key: Any, n: int) -> np.ndarray:
        return np.asarray(jax.random.permutation(key, n))

    def make_optimizer(self, name: str, lr: float, total_steps: int | None = None, **options: Any):
        from .optim_jax import OptaxOptimizer

        return OptaxOptimizer(name, lr, total_steps=total_steps, **options)

    def seed_from_key(self, key: Any) -> int:
        return int(jax.random.randint(key, (), 0, 2**31 - 1))
