"""Fused torch kernels: a voltage-based LIF layer over a whole sequence as one autograd node.

:meth:`neuroplastic.backend.base.Backend.lif_sequence` (the reference) scans ``LIF.step``
over time: per step a handful of tensor operations, each recorded by autograd, and in the
backward pass as many autograd nodes again.  At small layer sizes that per-step overhead,
not the arithmetic, is the time.  :class:`LIFSequence` runs the same recurrence as one
``torch.autograd.Function``:

**Forward** (under ``no_grad``): per step the reference's own operations, in place into
preallocated ``(T, B, N)`` buffers, so the spikes and the last membrane are bit-identical
to the reference (the same float operations in the same order)::

    u_t = alpha * v_{t-1} + I_t;   x_t = u_t - threshold;   z_t = (x_t > 0)
    v_t = u_t - z_t * threshold  |  u_t * (1 - z_t)  |  u_t        (subtract | zero | none)

It keeps ``u_t`` (one float per neuron and step, the same as the reference keeps for its
surrogate) and recomputes everything else from it: ``x_t = u_t - threshold`` (the same
operation, so the same bits), the spikes ``x_t > 0`` and the surrogate derivative.

**Backward**: with ``s_t = surrogate.derivative(x_t)`` evaluated for all steps at once, the
membrane's cotangent obeys a linear recurrence with per-element coefficients::

    dI_t = c_t * g_t + gz_t * s_t,      g_{t-1} = alpha * dI_t,      dv0 = g_{-1}

(``g_t = dL/dv_t``, ``gz_t = dL/dz_t``) where ``c_t = dv_t/du_t`` along the reset:
``1`` (subtract, none), ``1 - z_t`` (zero), and, when the reset is not detached, also
``- threshold * s_t`` (subtract) or ``- u_t * s_t`` (zero).  Written for ``dI`` itself,
``dI_{t-1} = (alpha c_{t-1}) dI_t + gz_{t-1} s_{t-1}``: one fused multiply-add per step.

The gradients equal the reference's up to the rounding of a different summation order.

**Compiled loops.**  At small layer sizes even one tensor operation per step costs more in
Python and dispatch than in arithmetic, so both loops also exist as a few lines of C
(:data:`C_SOURCE`: the same float operations in the same order, compiled with
``-ffp-contract=off`` so no multiply-add is fused), built with the system's C compiler on
first use into ``$NEUROPLASTIC_CACHE/kernels`` (:func:`.native.build`, for this CPU's vector
instructions) and loaded with ``ctypes``; the neurons are split into contiguous ranges, one
thread each (neurons are independent: the same numbers for any split), ``torch.get_num_threads()``
ranges when torch's OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, which the CLI, sweep
trials and the test suite set: :func:`neuroplastic.backend.prefer_passive_openmp`) and one otherwise
(:func:`loop_threads`).  For :class:`~neuroplastic.surrogates.FastSigmoid` (the default surrogate) the
compiled backward computes ``s_t`` itself, with ``FastSigmoid.derivative``'s operations in its order
(the same bits, tested), instead of reading a slope array torch computed block by block.
Without a compiler, on a non-CPU device, or with ``NEUROPLASTIC_C_KERNELS=0``, the Python loops run:
the same results (the tests check the two against each other bit for bit).
The Function has no forward-mode rule: :meth:`TorchBackend.lif_sequence` uses the
reference under ``torch.func`` transforms and for dual (forward-AD) tensors.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD
from torch._subclasses.fake_tensor import FakeTensor

from . import buffers_torch, native

RESETS = ("subtract", "zero", "none")
_RESET_CODE = native.LIF_RESET_CODES

#: the forward and backward loops in C, for float (suffix f) and double (suffix d); see the module docstring
C_SOURCE = (Path(__file__).with_name("lif_loops.c")).read_text()
C_FLAGS = ("-O3", "-ffp-contract=off", "-fno-fast-math", "-fPIC", "-shared", "-pthread")

def c_library() -> Any:
    """The compiled loops (a ``ctypes`` library), built on first use (:func:`.native.build`, cached per
    process like the other native libraries); ``None`` when there is no C compiler, the build fails
    (:func:`.native.build_error` says why), or ``NEUROPLASTIC_C_KERNELS=0``."""
    return native._load("lif", _build)


def _build() -> Any:
    lib = ctypes.CDLL(str(native.build("lif", C_SOURCE, C_FLAGS, language="c")))
    p, i64, dbl, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_double, ctypes.c_int
    for suffix in ("f", "d"):
        fwd = getattr(lib, f"lif_forward_{suffix}")
        fwd.argtypes = [p, p, p, p, p, p, i64, i64, dbl, dbl, c_int, c_int]
        fwd.restype = None
        bwd = getattr(lib, f"lif_backward_{suffix}")
        bwd.argtypes = [p, p, p, p, p, c_int, i64, i64, dbl, dbl, c_int, c_int, dbl, c_int]
        bwd.restype = None
    return lib


def loop_threads() -> int:
    """Threads for the C loops: ``torch.get_num_threads()`` under ``OMP_WAIT_POLICY=PASSIVE``, else 1.

    The backward calls the C loop once per block of steps between torch operations; with OpenMP's
    default (active) waiting, torch's idle workers spin on the cores those threads need.  Measured
    on a 2-core machine with a second process running (``python -m bench.lif_layer``): a layer of
    128 neurons took 0.90 s with 2 threads under active waiting against 0.020 s with one, and
    0.0135 s with 2 under passive waiting.
    """
    if os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE":
        return max(1, torch.get_num_threads())
    return 1


def _c_kernels_for(*tensors: torch.Tensor) -> Any:
    """The compiled library when it can run on ``tensors`` (contiguous CPU float32/float64), else ``None``."""
    first = tensors[0]
    if first.device.type != "cpu" or first.dtype not in (torch.float32, torch.float64):
        return None
    return c_library()


def _suffix(dtype: torch.dtype) -> str:
    return "f" if dtype == torch.float32 else "d"


def _check(currents: torch.Tensor, v0: torch.Tensor, alpha: float, threshold: float, reset: str) -> None:
    if currents.ndim != 3:
        raise ValueError(f"currents: expected a time-major array (T, B, N), got shape {tuple(currents.shape)}")
    if tuple(v0.shape) != tuple(currents.shape[1:]):
        raise ValueError(f"v0: expected shape {tuple(currents.shape[1:])} (the currents' (B, N)), got {tuple(v0.shape)}")
    if reset not in RESETS:
        raise ValueError(f"reset: unknown value {reset!r}; choose one of {list(RESETS)}")
    for name, value in (("alpha", alpha), ("threshold", threshold)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name}: expected a Python number, got {type(value).__name__}")


def lif_forward(currents: torch.Tensor, v0: torch.Tensor, alpha: float, threshold: float,
                reset: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(spikes, v_last, u)`` of the LIF recurrence, without autograd (the kernel's forward pass)."""
    T = currents.shape[0]
    if T == 0:
        return torch.empty_like(currents), v0.clone(), torch.empty_like(currents)
    lib = _c_kernels_for(currents)
    if lib is not None:
        currents, v0 = currents.contiguous(), v0.contiguous()
        u_all, spikes = buffers_torch.empty(currents.shape, currents.dtype), buffers_torch.empty(currents.shape, currents.dtype)
        v_a, v_b = torch.empty_like(v0), torch.empty_like(v0)
        getattr(lib, f"lif_forward_{_suffix(currents.dtype)}")(
            currents.data_ptr(), v0.data_ptr(), u_all.data_ptr(), spikes.data_ptr(), v_a.data_ptr(), v_b.data_ptr(),
            T, v0.numel(), float(alpha), float(threshold), _RESET_CODE[reset], loop_threads())
        return spikes, v_a, u_all
    return _lif_forward_loop(currents, v0, alpha, threshold, reset)


def _lif_forward_loop(currents: torch.Tensor, v0: torch.Tensor, alpha: float, threshold: float,
                      reset: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`lif_forward` as a Python loop of in-place tensor operations (any device)."""
    T = currents.shape[0]
    u_all = torch.empty_like(currents)
    spikes = torch.empty_like(currents)
    x = torch.empty_like(v0)
    v = v0
    v_next = torch.empty_like(v0)
    scratch = torch.empty_like(v0) if reset != "none" else None
    for t in range(T):
        u = u_all[t]
        torch.mul(v, alpha, out=u)
        u.add_(currents[t])
        torch.sub(u, threshold, out=x)
        z = spikes[t]
        torch.gt(x, 0, out=z)
        if reset == "subtract":
            torch.mul(z, threshold, out=scratch)
            torch.sub(u, scratch, out=v_next)
        elif reset == "zero":
            torch.neg(z, out=scratch).add_(1.0)  # 1 - z, exactly
            torch.mul(u, scratch, out=v_next)
        else:
            v_next.copy_(u)
        v, v_next = v_next, (v if t > 0 else torch.empty_like(v0))
    return spikes, v, u_all


#: elements per block of time steps in the backward pass (about 1 MB of float32): the surrogate and
#: the recurrence's coefficients are computed for a block of steps at a time, so their temporaries
#: stay in cache instead of being (T, B, N) arrays that are paged in, written once and freed
BLOCK_ELEMENTS = 1 << 18


def lif_backward(u_all: torch.Tensor, grad_spikes: torch.Tensor | None, grad_v: torch.Tensor | None, alpha: float,
                 threshold: float, reset: str, detach_reset: bool, surrogate: Any,
                 slope_all: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(dL/dcurrents, dL/dv0)`` from the kept ``u`` and the outputs' cotangents (the kernel's backward pass).

    ``grad_spikes`` / ``grad_v`` may be ``None`` (an output that the loss does not use).
    Runs backwards in blocks of steps (:data:`BLOCK_ELEMENTS`), except the compiled loop with the fast
    sigmoid, which needs no slope array and takes the whole sequence at once.  ``slope_all``: the
    surrogate's slope for every step, computed already (then ``surrogate`` is not used).
    """
    T = u_all.shape[0]
    grad_I = buffers_torch.empty(u_all.shape, u_all.dtype, u_all.device)
    if T == 0:
        return grad_I, (grad_v.clone() if grad_v is not None else None)
    per_step = max(1, u_all[0].numel())
    block = max(1, min(T, BLOCK_ELEMENTS // per_step))
    lib = _c_kernels_for(u_all) if u_all.is_contiguous() else None
    if lib is not None:
        g = torch.empty_like(u_all[0])  # dL/dv_t after the block being processed
        if grad_v is not None:
            g.copy_(grad_v)
        has_g = grad_v is not None
        run = getattr(lib, f"lif_backward_{_suffix(u_all.dtype)}")
        # the fast sigmoid's slope is computed inside the loop (slope pointer NULL): no slope array, so the whole
        # sequence in one call (a 128-neuron layer's backward, T=500, batch 64: 9.4 -> 4.0 ms); other surrogates'
        # slopes are computed block by block
        fast = slope_all is None and native.slope_in_loops(surrogate)
        step = T if fast or slope_all is not None else block
        for stop in range(T, 0, -step):
            start = max(0, stop - step)
            u = u_all[start:stop]
            slope = None if fast else slope_all[start:stop] if slope_all is not None else _slope(surrogate, u, threshold)
            gz = grad_spikes[start:stop].to(u.dtype).contiguous() if grad_spikes is not None else None
            run(u.data_ptr(), slope.data_ptr() if slope is not None else None, gz.data_ptr() if gz is not None else None,
                grad_I[start:stop].data_ptr(), g.data_ptr(), int(has_g), stop - start, per_step, float(alpha), float(threshold),
                _RESET_CODE[reset], int(bool(detach_reset)), float(surrogate.beta) if fast else 0.0, loop_threads())
            has_g = True
        return grad_I, g
    g = grad_v  # dL/dv_t after the block being processed (None: zero)
    for stop in range(T, 0, -block):
        start = max(0, stop - block)
        u = u_all[start:stop]
        x = u - threshold  # the forward's own operation: the same bits
        slope = slope_all[start:stop] if slope_all is not None else surrogate.derivative(x)
        # c_t = dv_t/du_t along the reset (None: 1 everywhere); it reuses x's buffer
        coef = None
        if reset == "zero":
            coef = torch.gt(x, 0, out=x)
            coef.neg_().add_(1.0)
            if not detach_reset:
                coef.addcmul_(u, slope, value=-1.0)
        elif reset == "subtract" and not detach_reset:
            coef = torch.mul(slope, -threshold, out=x).add_(1.0)
        out = grad_I[start:stop]
        # the direct term gz_t * s_t, then the recurrence in place: dI_t = c_t g_t + gz_t s_t, g_{t-1} = alpha dI_t
        if grad_spikes is None:
            out.zero_()
        else:
            torch.mul(slope, grad_spikes[start:stop], out=out)
        for k in range(stop - start - 1, -1, -1):
            if g is not None:
                if coef is None:
                    out[k].add_(g)
                else:
                    out[k].addcmul_(coef[k], g)
            g = out[k] * alpha
    return grad_I, g


def _slope(surrogate: Any, u: torch.Tensor, threshold: float) -> torch.Tensor:
    """``surrogate.derivative(u - threshold)`` as a contiguous array of ``u``'s shape and dtype."""
    slope = surrogate.derivative(u - threshold)
    if not isinstance(slope, torch.Tensor):
        slope = torch.as_tensor(slope, dtype=u.dtype, device=u.device)
    return torch.broadcast_to(slope.to(u.dtype), u.shape).contiguous()


class LIFSequence(torch.autograd.Function):
    """One autograd node for a voltage-based LIF layer over a whole sequence (module docstring).

    On traced tensors (:func:`traced`: :mod:`.compile_torch`) the two passes run as the custom operators
    ``neuroplastic::lif_forward`` / ``neuroplastic::lif_backward`` (:func:`traced_ops`), which a graph
    records as single nodes and calls with the real tensors when it runs: the compiled graph keeps the
    C loops instead of tracing the reference scan step by step.
    """

    @staticmethod
    def forward(ctx: Any, currents: torch.Tensor, v0: torch.Tensor, alpha: float, threshold: float, reset: str,
                detach_reset: bool, surrogate: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if traced(currents):
            spikes, v_last, u_all = traced_ops().lif_forward(currents, v0, float(alpha), float(threshold), reset)
        else:
            spikes, v_last, u_all = lif_forward(currents, v0, alpha, threshold, reset)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(u_all)
        ctx.settings = (alpha, threshold, reset, detach_reset, surrogate)
        return spikes, v_last

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_spikes: torch.Tensor | None, grad_v: torch.Tensor | None):
        (u_all,) = ctx.saved_tensors
        if traced(u_all):
            alpha, threshold, reset, detach_reset, surrogate = ctx.settings
            fast = native.slope_in_loops(surrogate)
            # another surrogate's slope is computed by torch operations in the graph, for the whole sequence
            slope = None if fast else _slope(surrogate, u_all, threshold)
            grad_I, grad_v0 = traced_ops().lif_backward(
                u_all, slope, grad_spikes, grad_v, float(alpha), float(threshold), reset, bool(detach_reset),
                float(surrogate.beta) if fast else 0.0)
        else:
            grad_I, grad_v0 = lif_backward(u_all, grad_spikes, grad_v, *ctx.settings)
        need_I, need_v0 = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        return (grad_I if need_I else None), (grad_v0 if need_v0 else None), None, None, None, None, None


@functools.lru_cache(maxsize=None)
def traced_ops() -> Any:
    """The custom operators ``neuroplastic::lif_forward`` and ``neuroplastic::lif_backward`` (registered with
    torch on first use, not at import): :func:`lif_forward` and :func:`lif_backward` for traced graphs, with
    shape-only ("fake") versions for the tracing itself.  Returns ``torch.ops.neuroplastic``."""
    from torch.library import custom_op

    @custom_op("neuroplastic::lif_forward", mutates_args=())
    def _forward(currents: torch.Tensor, v0: torch.Tensor, alpha: float, threshold: float,
                 reset: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        spikes, v_last, u_all = lif_forward(currents, v0, alpha, threshold, reset)
        return spikes, v_last.clone() if v_last is v0 else v_last, u_all

    @_forward.register_fake
    def _(currents, v0, alpha, threshold, reset):
        return torch.empty_like(currents), torch.empty_like(v0), torch.empty_like(currents)

    @custom_op("neuroplastic::lif_backward", mutates_args=())
    def _backward(u_all: torch.Tensor, slope: torch.Tensor | None, grad_spikes: torch.Tensor | None,
                  grad_v: torch.Tensor | None, alpha: float, threshold: float, reset: str, detach_reset: bool,
                  beta: float) -> tuple[torch.Tensor, torch.Tensor]:
        from ..surrogates import FastSigmoid

        grad_I, grad_v0 = lif_backward(u_all.contiguous(), grad_spikes, grad_v, alpha, threshold, reset, detach_reset,
                                       FastSigmoid(beta=beta) if slope is None else None,
                                       slope.contiguous() if slope is not None else None)
        if grad_v0 is None:
            grad_v0 = torch.zeros_like(u_all[0])
        return grad_I, grad_v0.clone() if grad_v0 is grad_v else grad_v0

    @_backward.register_fake
    def _(u_all, slope, grad_spikes, grad_v, alpha, threshold, reset, detach_reset, beta):
        return torch.empty_like(u_all), torch.empty_like(u_all[0])

    return torch.ops.neuroplastic


def fusable(currents: Any, v0: Any) -> bool:
    """Whether :class:`LIFSequence` can run on these arrays: plain (not ``torch.func``-wrapped, not
    forward-AD dual) float tensors of one dtype and device."""
    if not (isinstance(currents, torch.Tensor) and isinstance(v0, torch.Tensor)):
        return False
    if currents.dtype != v0.dtype or currents.device != v0.device or not currents.is_floating_point():
        return False
    if traced(currents) or traced(v0):  # compiled: the custom operators (traced_ops), on the CPU
        return currents.device.type == "cpu" and not in_torch_func(currents) and not in_torch_func(v0)
    if in_transform(currents) or in_transform(v0):
        return False
    return True


def in_torch_func(x: Any) -> bool:
    """True for a tensor inside a ``torch.func`` transform (jvp, vmap, grad) or carrying a forward-AD tangent
    (:func:`in_transform` without the tracing)."""
    if not isinstance(x, torch.Tensor):
        return False
    if torch._C._functorch.is_functorch_wrapped_tensor(x) or torch._C._functorch.maybe_current_level() is not None:
        return True
    return fwAD.unpack_dual(x).tangent is not None


def traced(x: Any) -> bool:
    """True for a tensor being traced for compilation: a fake tensor (shapes without data: every tensor
    :mod:`.compile_torch` traces), or any tensor while Dynamo captures a graph (``torch.compile``).

    It runs on the eager hot path (every spike, every product): asking for the active proxy mode too
    (``make_fx`` on real tensors, which nothing here uses) would double the cost of :func:`in_transform`
    (0.8 -> 2.0 us a call)."""
    return isinstance(x, FakeTensor) or torch.compiler.is_compiling()


def in_transform(x: Any) -> bool:
    """True for a tensor the native kernels cannot take: inside a ``torch.func`` transform (jvp, vmap,
    grad), carrying a forward-AD tangent, or being traced for compilation (:func:`traced`), where there
    is no data to hand to C and a ctypes call would not be recorded."""
    if not isinstance(x, torch.Tensor):
        return False
    return traced(x) or in_torch_func(x)


def lif_sequence(currents: torch.Tensor, v0: torch.Tensor, alpha: float, threshold: float, reset: str,
                 detach_reset: bool, surrogate: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes, v_last)`` through :class:`LIFSequence` (callers check :func:`fusable` first)."""
    _check(currents, v0, alpha, threshold, reset)
    return LIFSequence.apply(currents.contiguous(), v0, float(alpha), float(threshold), reset, bool(detach_reset), surrogate)


__all__ = ["LIFSequence", "fusable", "loop_threads", "in_torch_func", "in_transform", "traced", "traced_ops", "lif_backward", "lif_forward", "lif_sequence"]
