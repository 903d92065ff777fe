"""Event-driven ``x @ w`` for JAX: a ``custom_vjp`` whose forward and weight gradient are XLA FFI calls
into the event kernels (``event_matmul.cc``, see :mod:`.native`) on the CPU.

    forward:   y = x @ w                  (event kernel when x is sparse enough, else dense)
    backward:  dx = dy @ w^T              (dense: dy has no zeros to skip)
               dw = x^T @ dy              (event kernel under the same choice as the forward)

The choice between the event kernel and XLA's dense ``dot`` is made inside the compiled program
(``lax.cond`` on the density of ``x``, threshold :func:`.native.max_density` of the output width), once per call;
the backward reuses the forward's choice.  :func:`event_matmul` keeps the dense ``dot`` where the
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


def _ffi(name: str, a: jax.Array, b: jax.Array, shape: tuple[int, int], nthreads: int) -> jax.Array:
    call = jax.ffi.ffi_call(f"neuroplastic_{name}_{_SUFFIX[np.dtype(a.dtype)]}", jax.ShapeDtypeStruct(shape, a.dtype),
                            vmap_method="sequential")
    return call(a, b, nthreads=np.int32(nthreads))


def _sparse_enough(x2: jax.Array, m: int) -> jax.Array:
    return jnp.count_nonzero(x2) <= int(native.max_density(m) * x2.size)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _event_matmul(x2: jax.Array, w: jax.Array, nthreads: int) -> jax.Array:
    return _event_fwd(x2, w, nthreads)[0]


def _event_fwd(x2: jax.Array, w: jax.Array, nthreads: int) -> tuple:
    sparse = _sparse_enough(x2, int(w.shape[1]))
    shape = (x2.shape[0], w.shape[1])
    y = jax.lax.cond(sparse, lambda a, b: _ffi("event_matmul", a, b, shape, nthreads), jnp.matmul, x2, w)
    return y, (x2, w, sparse)


def _event_bwd(nthreads: int, res: tuple, g: jax.Array) -> tuple:
    x2, w, sparse = res
    shape = (x2.shape[1], g.shape[1])
    gw = jax.lax.cond(sparse, lambda a, b: _ffi("event_matmul_xt", a, b, shape, nthreads), lambda a, b: a.T @ b, x2, g)
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


__all__ = ["applicable", "event_matmul"]
