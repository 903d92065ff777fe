"""Event-driven ``x @ w`` for JAX: a ``custom_vjp`` whose forward and weight gradient are XLA FFI calls
into the event kernels (``event_matmul.cc``, see :mod:`.native`) on the CPU.

    forward:   y = x @ w                  (event kernel when x is sparse enough, else dense)
    backward:  dx = dy @ w^T              (dense: dy has no zeros to skip)
               dw = x^T @ dy              (event kernel under the same choice as the forward)

The choice between the event kernel and XLA's dense ``dot`` is made inside the compiled program, once per
call: the forward kernel counts the non-zeros of ``x`` (threshold :func:`.native.max_nonzeros`, from the density
limit of the output width) as the first step of its own work, computes only below it and says so with a flag,
and ``lax.cond`` on that flag keeps its output or takes the dense ``dot`` (a separate ``count_nonzero`` pass of
XLA took 2.4 ms of a 5.4 ms event product, (32000, 128) spikes); the backward reuses the forward's choice.  :func:`event_matmul` keeps the dense ``dot`` where the
kernel cannot run: not on the CPU, another dtype than float32/64, a product too small
(:func:`.native.worth_it`), no library, or ``x`` / ``w`` carrying a forward-mode tangent (a
``custom_vjp`` has no forward-mode rule).  ``vmap`` runs the kernel once per batch element.  Differentiating the gradient again (``grad`` of
``grad``) stops with JAX's error for the FFI call (no derivative rule), never with a wrong number;
``NEUROPLASTIC_EVENT_KERNELS=0`` keeps the dense product for such uses.
Both paths give the same numbers up to the rounding of another summation order
(tests/test_event_matmul.py).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import native
from .kernels_jax import in_forward_mode

_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def _target(name: str, dtype: Any) -> str:
    return f"neuroplastic_{name}_{_SUFFIX[np.dtype(dtype)]}"


def kernel_product(x2: jax.Array, w: jax.Array, nthreads: int, limit: int) -> tuple[jax.Array, jax.Array]:
    """The event kernel's ``x2 @ w`` (2-D, CPU, float32/64) and an int32 flag: 1 when it computed it (``x2`` has
    at most ``limit`` non-zeros), 0 when it did not (the output is then undefined)."""
    call = jax.ffi.ffi_call(_target("event_matmul", x2.dtype), (jax.ShapeDtypeStruct((x2.shape[0], w.shape[1]), x2.dtype),
                                                                jax.ShapeDtypeStruct((), np.int32)), vmap_method="sequential")
    return call(x2, w, nthreads=np.int32(nthreads), max_nnz=np.int64(limit))


def kernel_weight_grad(x2: jax.Array, g: jax.Array, nthreads: int) -> jax.Array:
    """The event kernel's ``x2^T g`` (2-D, CPU, float32/64)."""
    call = jax.ffi.ffi_call(_target("event_matmul_xt", x2.dtype), jax.ShapeDtypeStruct((x2.shape[1], g.shape[1]), x2.dtype),
                            vmap_method="sequential")
    return call(x2, g, nthreads=np.int32(nthreads))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _event_matmul(x2: jax.Array, w: jax.Array, nthreads: int) -> jax.Array:
    return _event_fwd(x2, w, nthreads)[0]


def _event_fwd(x2: jax.Array, w: jax.Array, nthreads: int) -> tuple:
    """The kernel counts x2's non-zeros and computes only under the limit (flag ``used``); otherwise XLA's dense
    ``dot`` replaces its output, inside ``lax.cond``."""
    y, used = kernel_product(x2, w, nthreads, native.max_nonzeros(x2.size, int(w.shape[1])))
    sparse = used == 1
    y = jax.lax.cond(sparse, lambda y, a, b: y, lambda y, a, b: a @ b, y, x2, w)
    return y, (x2, w, sparse)


def _event_bwd(nthreads: int, res: tuple, g: jax.Array) -> tuple:
    x2, w, sparse = res
    gw = jax.lax.cond(sparse, lambda a, b: kernel_weight_grad(a, b, nthreads), lambda a, b: a.T @ b, x2, g)
    return g @ w.T, gw


_event_matmul.defvjp(_event_fwd, _event_bwd)


def applicable(x: Any, w: Any) -> bool:
    """Whether the event kernel can take ``x @ w`` (platform, dtype, shapes and size, no forward mode, library)."""
    if np.dtype(x.dtype) not in _SUFFIX or w.dtype != x.dtype or jax.default_backend() != "cpu":
        return False
    if not native.event_product_fits(tuple(x.shape), tuple(w.shape)) or in_forward_mode(x) or in_forward_mode(w):
        return False
    return native.event_library_ffi() is not None


def event_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """``x @ w`` over the last axis of ``x``; the event kernel when :func:`applicable` and ``x`` is sparse enough."""
    if not applicable(x, w):
        return jnp.matmul(x, w)
    y = _event_matmul(x.reshape(-1, x.shape[-1]), w, native.usable_threads())
    return y.reshape(*x.shape[:-1], w.shape[1])


__all__ = ["applicable", "event_matmul", "kernel_product", "kernel_weight_grad"]
