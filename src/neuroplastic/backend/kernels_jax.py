"""Fused JAX kernels: a whole LIF layer's recurrence as one ``custom_vjp`` primitive.

:meth:`Backend.lif_sequence`'s reference is a ``lax.scan`` of the cell step, differentiated
by JAX: its backward scan carries the cotangents of every step's ``u``, spike and reset
through the surrogate's ``custom_jvp`` rule.  :func:`lif_sequence` runs the same forward
arithmetic (so its spikes and last membrane are bit-identical) but keeps only the
pre-reset membrane ``u_t`` for the backward, a hand-written reverse scan::

    g_u = g_z * s'(u - thr) + g_v * dv/du          (dv/du: 1 for a detached subtractive reset,
    g_I_t = g_u,  g_v <- alpha * g_u                 1 - z for a detached zeroing reset, ...)

On the CPU both passes run the C loops of ``lif_loops.c`` through XLA FFI; for
:class:`~neuroplastic.surrogates.FastSigmoid` the backward loop computes ``s'(u - thr)`` itself
instead of reading a slope array XLA wrote (:func:`.native.slope_in_loops`; a 512-neuron layer,
T=500, batch 64, forward + backward: 46 -> 24 ms).

XLA's own unrolling (:data:`UNROLL`) was measured slower on the CPU: a scan step here is
one small fused loop body, and its cost is the elements it touches, not the loop.  The
kernel cannot be differentiated in forward mode (``custom_vjp``); :meth:`JaxBackend.in_forward_mode` lets
callers fall back to the reference there.
"""

from __future__ import annotations

import functools
from typing import Any

import jax

#: time steps per loop iteration of the scans: 1 measured fastest on XLA CPU (a fused layer of
#: 128 neurons, T=500, batch 64, forward + backward: unroll 2, 4, 8 took about 2x, 3x, 10x as long)
UNROLL = 1


def _membrane_after(u: jax.Array, z: jax.Array, threshold: float, reset: str) -> jax.Array:
    """The membrane after the reset, with :func:`neuroplastic.cells.lif.reset_membrane`'s arithmetic."""
    if reset == "subtract":
        return u - z * threshold
    if reset == "zero":
        return u * (1.0 - z)
    return u


def _loops_apply(*arrays: jax.Array) -> str | None:
    """The dtype suffix of the compiled C loops (``lif_loops.c`` through XLA FFI) when they can run on
    ``arrays`` (float32/float64 of one dtype, the CPU, the library built), else ``None``: the scans run."""
    import numpy as np

    from . import native

    dtype = np.dtype(arrays[0].dtype)
    if dtype not in (np.float32, np.float64) or any(np.dtype(a.dtype) != dtype for a in arrays):
        return None
    if jax.default_backend() != "cpu" or _xla_without_fma() or native.lif_library_ffi() is None:
        return None
    return "f32" if dtype == np.float32 else "f64"


def _xla_without_fma() -> bool:
    """Whether ``XLA_FLAGS`` holds XLA's CPU code below FMA (``--xla_cpu_max_isa=SSE4_2`` or ``AVX``): the
    loops, built for this CPU, contract ``alpha * v + I`` into one rounding where XLA then does not."""
    import os
    import re

    found = re.search(r"--xla_cpu_max_isa=(\w+)", os.environ.get("XLA_FLAGS", ""))
    return bool(found) and found.group(1).upper() in ("SSE4_2", "AVX")


def _forward_loops(suffix: str, currents: jax.Array, v0: jax.Array, alpha: float, threshold: float, reset: str) -> tuple:
    import numpy as np

    from . import native

    steps, n = currents.shape[0], int(np.prod(currents.shape[1:]))
    flat, vec = jax.ShapeDtypeStruct((steps, n), currents.dtype), jax.ShapeDtypeStruct((n,), currents.dtype)
    call = jax.ffi.ffi_call(f"neuroplastic_lif_forward_{suffix}", (flat, vec, flat), vmap_method="sequential")
    spikes, v_last, us = call(currents.reshape(steps, n), v0.reshape(n), alpha=np.float64(alpha), threshold=np.float64(threshold),
                              reset=np.int32(native.LIF_RESET_CODES[reset]), threads=np.int32(native.usable_threads()))
    return spikes.reshape(currents.shape), v_last.reshape(v0.shape), us.reshape(currents.shape)


def _backward_loops(suffix: str, us: jax.Array, g_spikes: jax.Array, g_v_last: jax.Array, alpha: float, threshold: float,
                    reset: str, detach_reset: bool, surrogate: Any) -> tuple:
    """The backward loop through XLA FFI.  For the fast sigmoid (:func:`.native.slope_in_loops`) the loop computes
    the slope ``1 / (1 + beta |u - threshold|)^2`` itself (attribute ``beta``); for any other surrogate XLA computes
    ``surrogate.derivative(u - threshold)`` and passes it as an array."""
    import numpy as np

    from . import native

    steps, n = us.shape[0], int(np.prod(us.shape[1:]))
    flat, vec = jax.ShapeDtypeStruct((steps, n), us.dtype), jax.ShapeDtypeStruct((n,), us.dtype)
    attrs = dict(alpha=np.float64(alpha), threshold=np.float64(threshold), reset=np.int32(native.LIF_RESET_CODES[reset]),
                 detach=np.int32(bool(detach_reset)), threads=np.int32(native.usable_threads()))
    arrays = [us.reshape(steps, n), g_spikes.astype(us.dtype).reshape(steps, n), g_v_last.reshape(n)]
    if native.slope_in_loops(surrogate):
        target, attrs["beta"] = f"neuroplastic_lif_backward_fast_sigmoid_{suffix}", np.float64(surrogate.beta)
    else:
        target = f"neuroplastic_lif_backward_{suffix}"
        arrays.insert(1, surrogate.derivative(us - threshold).reshape(steps, n))
    g_currents, g_v0 = jax.ffi.ffi_call(target, (flat, vec), vmap_method="sequential")(*arrays, **attrs)
    return g_currents.reshape(us.shape), g_v0.reshape(g_v_last.shape)


def _forward(currents: jax.Array, v0: jax.Array, alpha: float, threshold: float, reset: str) -> tuple:
    suffix = _loops_apply(currents, v0)
    if suffix is not None:
        return _forward_loops(suffix, currents, v0, alpha, threshold, reset)

    def body(v: jax.Array, current: jax.Array) -> tuple:
        u = alpha * v + current
        z = (u - threshold > 0).astype(u.dtype)
        return _membrane_after(u, z, threshold, reset), (z, u)

    v_last, (spikes, us) = jax.lax.scan(body, v0, currents, unroll=UNROLL)
    return spikes, v_last, us


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def lif_sequence(currents: jax.Array, v0: jax.Array, alpha: float, threshold: float, reset: str,
                 detach_reset: bool, surrogate: Any) -> tuple[jax.Array, jax.Array]:
    """``(spikes (T, B, N), last membrane (B, N))`` of a voltage-based LIF; see the module docstring."""
    spikes, v_last, _ = _forward(currents, v0, alpha, threshold, reset)
    return spikes, v_last


def _lif_fwd(currents, v0, alpha, threshold, reset, detach_reset, surrogate):
    spikes, v_last, us = _forward(currents, v0, alpha, threshold, reset)
    return (spikes, v_last), us


def _lif_bwd(alpha, threshold, reset, detach_reset, surrogate, us, cotangents):
    g_spikes, g_v_last = cotangents
    suffix = _loops_apply(us, g_v_last)
    if suffix is not None:
        return _backward_loops(suffix, us, g_spikes, g_v_last, alpha, threshold, reset, detach_reset, surrogate)

    def body(g_v: jax.Array, step: tuple) -> tuple:
        u, g_z = step
        x = u - threshold
        ds = surrogate.derivative(x)
        if reset == "subtract":
            g_u = g_v if detach_reset else g_v - g_v * threshold * ds
        elif reset == "zero":
            z = (x > 0).astype(u.dtype)
            g_u = g_v * (1.0 - z) if detach_reset else g_v * (1.0 - z) - g_v * u * ds
        else:
            g_u = g_v
        g_u = g_u + g_z * ds
        return alpha * g_u, g_u

    g_v0, g_currents = jax.lax.scan(body, g_v_last, (us, g_spikes), reverse=True, unroll=UNROLL)
    return g_currents, g_v0


lif_sequence.defvjp(_lif_fwd, _lif_bwd)


def in_forward_mode(x: Any) -> bool:
    """Whether ``x`` carries a forward-mode tangent (a ``JVPTracer``), possibly under ``vmap`` or reverse mode."""
    from jax._src.interpreters import ad

    seen = 0
    while isinstance(x, jax.core.Tracer) and seen < 64:
        if isinstance(x, ad.JVPTracer):
            return True
        x = getattr(x, "val", None) if hasattr(x, "val") else getattr(x, "primal", None)
        seen += 1
    return False
