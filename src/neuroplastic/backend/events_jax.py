"""Event-driven ``x @ w`` for JAX: a ``custom_vjp`` whose forward and weight gradient are XLA FFI calls
into the event kernels (``event_matmul.cc``, see :mod:`.native`) on the CPU.

    forward:   y = x @ w                  (event kernel when x is sparse enough, else dense)
    backward:  dx = dy @ w^T              (dense: dy has no zeros to skip)
               dw = x^T @ dy              (event kernel under the same choice as the forward)
               db = dy.sum(0)             (with a bias: in the same event kernel, from its read of dy)

The choice between the event kernel and XLA's dense ``dot`` is made inside the compiled program, once per
call: :func:`spike_masks` reads ``x`` once into bit masks of its non-zeros and per-row counts and says whether
there are at most :func:`.native.max_nonzeros` (from the density limit of the output width); ``lax.cond`` on
that runs the kernel on the masks or the dense ``dot``; the weight gradient follows the same choice and reuses
the masks.  (XLA's own ``count_nonzero`` took 2.4 ms of a 5.4 ms event product on (32000, 128) spikes; a
kernel that counted and computed in one call, with ``lax.cond`` passing its output through, cost a copy of the
whole output.)  :func:`event_matmul` keeps the dense ``dot`` where the
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
    """The FFI target of kernel ``name`` for ``dtype``, registered with XLA on first use (a clear error, not XLA's
    missing-handler error, where the library cannot be built)."""
    if native.event_library_ffi() is None:
        raise RuntimeError(f"the event kernels are unavailable: {native.build_error('event_matmul_ffi')}")
    return f"neuroplastic_{name}_{_SUFFIX[np.dtype(dtype)]}"


def spike_masks(x2: jax.Array, nthreads: int, limit: int) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """One read of ``x2`` (2-D, CPU, float32/64): its non-zeros as bit masks (uint32 ``(N, 2 ceil(K / 64))``), the
    count of each row (int32 ``(N,)``), flags (an int32 scalar: bit 1 set when every non-zero is exactly 1, so the
    products never read ``x2`` again) and whether the total is at most ``limit`` (a bool scalar).  The products below
    take the first three (the *masks*), so the density check, the forward and the weight gradient read ``x2``'s
    zeros once."""
    n, k = x2.shape
    out = (jax.ShapeDtypeStruct((n, 2 * ((k + 63) // 64)), np.uint32), jax.ShapeDtypeStruct((n,), np.int32),
           jax.ShapeDtypeStruct((), np.int32))
    call = jax.ffi.ffi_call(_target("spike_masks", x2.dtype), out, vmap_method="sequential")
    bits, counts, flags = call(x2, nthreads=np.int32(nthreads), max_nnz=np.int64(limit))
    return bits, counts, flags, (flags & 1) == 1


def masked_product(x2: jax.Array, w: jax.Array, masks: tuple, nthreads: int, bias: jax.Array | None = None) -> jax.Array:
    """The event kernel's ``x2 @ w (+ bias)``, with ``x2``'s non-zeros given by :func:`spike_masks` (``masks``: its
    masks, counts and flags).  The bias is added to each finished sum (the rounding of a separate addition, without
    another pass over the output)."""
    call = jax.ffi.ffi_call(_target("event_matmul", x2.dtype), jax.ShapeDtypeStruct((x2.shape[0], w.shape[1]), x2.dtype),
                            vmap_method="sequential")
    b = bias if bias is not None else jnp.zeros((w.shape[1],), x2.dtype)  # not read (has_bias=0)
    bits, _, flags = masks
    return call(x2, w, b, bits, flags, nthreads=np.int32(nthreads), has_bias=np.int32(bias is not None))


def masked_weight_grad(x2: jax.Array, g: jax.Array, masks: tuple, nthreads: int) -> jax.Array:
    """The event kernel's ``x2^T g``, with ``x2``'s non-zeros given by :func:`spike_masks`."""
    return masked_gradients(x2, g, masks, nthreads, bias=False)[0]


def masked_gradients(x2: jax.Array, g: jax.Array, masks: tuple, nthreads: int, bias: bool) -> tuple[jax.Array, jax.Array | None]:
    """The event kernel's weight gradient ``x2^T g`` and, with ``bias``, the bias gradient ``g.sum(0)`` from the
    same read of ``g`` (rows summed in blocks of 256 in order, then the blocks in order), else ``None``."""
    out = (jax.ShapeDtypeStruct((x2.shape[1], g.shape[1]), x2.dtype), jax.ShapeDtypeStruct((g.shape[1],), x2.dtype))
    call = jax.ffi.ffi_call(_target("event_matmul_xt", x2.dtype), out, vmap_method="sequential")
    gw, gsum = call(x2, g, *masks, nthreads=np.int32(nthreads), with_sums=np.int32(bias))  # masks: bits, counts, flags
    return gw, (gsum if bias else None)


def kernel_product(x2: jax.Array, w: jax.Array, nthreads: int, bias: jax.Array | None = None) -> jax.Array:
    """The event kernel's ``x2 @ w (+ bias)`` whatever the density (no choice; for measuring the kernel itself)."""
    return masked_product(x2, w, spike_masks(x2, nthreads, x2.size)[:3], nthreads, bias)


def kernel_weight_grad(x2: jax.Array, g: jax.Array, nthreads: int) -> jax.Array:
    """The event kernel's ``x2^T g`` whatever the density (no choice; for measuring the kernel itself)."""
    return masked_weight_grad(x2, g, spike_masks(x2, nthreads, x2.size)[:3], nthreads)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _event_matmul(x2: jax.Array, w: jax.Array, bias: jax.Array | None, nthreads: int) -> jax.Array:
    return _event_fwd(x2, w, bias, nthreads)[0]


def _event_fwd(x2: jax.Array, w: jax.Array, bias: jax.Array | None, nthreads: int) -> tuple:
    """The masks and the density check in one read of x2, then ``lax.cond``: the kernel on the masks, or XLA's dense
    ``dot`` (and the bias).  The kernel runs inside its branch: its output is the branch's, with no copy."""
    *masks, sparse = spike_masks(x2, nthreads, native.max_nonzeros(x2.size, int(w.shape[1])))

    def events(a: jax.Array, b: jax.Array, c: Any, masks: tuple) -> jax.Array:
        return masked_product(a, b, masks, nthreads, c)

    def dense(a: jax.Array, b: jax.Array, c: Any, masks: tuple) -> jax.Array:
        return a @ b if c is None else a @ b + c

    y = jax.lax.cond(sparse, events, dense, x2, w, bias, tuple(masks))
    return y, (x2, w, sparse, tuple(masks), bias is not None)


def _event_bwd(nthreads: int, res: tuple, g: jax.Array) -> tuple:
    x2, w, sparse, masks, has_bias = res

    def events(a: jax.Array, b: jax.Array, m: tuple) -> tuple:  # a bias's gradient from the kernel's read of g
        return masked_gradients(a, b, m, nthreads, bias=has_bias)

    def dense(a: jax.Array, b: jax.Array, m: tuple) -> tuple:
        return a.T @ b, (b.sum(0) if has_bias else None)

    gw, gb = jax.lax.cond(sparse, events, dense, x2, g, masks)
    return g @ w.T, gw, gb


_event_matmul.defvjp(_event_fwd, _event_bwd)


def applicable(x: Any, w: Any) -> bool:
    """Whether the event kernel can take ``x @ w`` (platform, dtype, shapes and size, no forward mode, library)."""
    if np.dtype(x.dtype) not in _SUFFIX or w.dtype != x.dtype or jax.default_backend() != "cpu":
        return False
    if not native.event_product_fits(tuple(x.shape), tuple(w.shape)) or in_forward_mode(x) or in_forward_mode(w):
        return False
    return native.event_library_ffi() is not None


def event_matmul(x: jax.Array, w: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """``x @ w (+ bias)`` over the last axis of ``x``; the event kernel when :func:`applicable` and ``x`` is sparse
    enough, with the bias added inside it (no second pass over the output)."""
    bias_fits = bias is None or (hasattr(bias, "dtype") and bias.dtype == w.dtype and tuple(bias.shape) == (w.shape[1],)
                                 and not in_forward_mode(bias))
    if not (applicable(x, w) and bias_fits):
        y = jnp.matmul(x, w)
        return y if bias is None else y + bias
    y = _event_matmul(x.reshape(-1, x.shape[-1]), w, bias, native.usable_threads())
    return y.reshape(*x.shape[:-1], w.shape[1])


__all__ = ["applicable", "event_matmul", "kernel_product", "kernel_weight_grad", "masked_gradients", "masked_product",
           "masked_weight_grad", "spike_masks"]
