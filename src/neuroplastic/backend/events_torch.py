"""Event-driven ``x @ w`` for torch: one autograd node whose forward and weight gradient visit only
the non-zeros of a spike matrix ``x`` (``event_matmul.cc``, see :mod:`.native`).

    forward:   y = x @ w                  (event kernel: p * N * K * M multiply-adds at density p)
    backward:  dx = dy @ w^T              (dense: dy has no zeros to skip)
               dw = x^T @ dy              (event kernel)
               db = dy.sum(0)             (with a bias: in the same event kernel, from its read of dy)

:func:`event_matmul` picks, per call, the event kernel or torch's dense ``matmul``: the event kernel
needs a plain CPU tensor of float32 or float64 (not ``torch.func``-wrapped, no forward-AD tangent:
the Function has no forward-mode rule), the library (:func:`.native.event_library`), enough work
(:func:`.native.worth_it`) and a density of ``x`` at most :func:`.native.max_density` of the output width, read
from the count that comes with the masks of its non-zeros (:func:`spike_masks`, :func:`_product`).  Both give the same numbers up to
the rounding of another summation order (tests/test_event_matmul.py).

A dense product with a narrow output (a readout's ten classes) takes :class:`NarrowOutputMatmul`, which
only orders the weight gradient's product the way torch's CPU GEMM runs fast (:func:`transposed_product`,
also behind torch's :meth:`~neuroplastic.backend.base.Backend.outer_sum`).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from . import buffers_torch, native
from .kernels_torch import in_torch_func, in_transform, traced

_FN = {torch.float32: "f32", torch.float64: "f64"}


def spike_masks(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """One read of ``x2`` (2-D, contiguous, CPU, float32/64): bit masks of its non-zeros (``(N, ceil(K / 64))``
    64-bit words, held as int64), the count of each row (int32), whether every non-zero is exactly 1 (a 0-d int32
    tensor: then the products never read ``x2`` again) and the total.  The products below take the first three
    (the *masks*), so the density check, the forward and the weight gradient read ``x2``'s zeros once."""
    n, k = x2.shape
    masks, counts = torch.empty((n, (k + 63) // 64), dtype=torch.int64), torch.empty(n, dtype=torch.int32)
    binary = torch.zeros((), dtype=torch.int32)
    fn = getattr(native.event_library(), f"np_spike_masks_{_FN[x2.dtype]}")
    total = fn(x2.data_ptr(), masks.data_ptr(), counts.data_ptr(), binary.data_ptr(), n, k, torch.get_num_threads())
    native.check_status(total, "spike_masks")
    return masks, counts, binary, total


def masked_product(x2: torch.Tensor, w: torch.Tensor, masks: tuple, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The event kernel's ``x2 @ w (+ bias)`` (contiguous CPU tensors of one dtype), ``x2``'s non-zeros given by
    :func:`spike_masks` (``masks``: its masks, counts and binary flag).  The bias is added to each finished sum (the
    rounding of a separate addition, without another pass over the output)."""
    out = buffers_torch.empty((x2.shape[0], w.shape[1]), x2.dtype)
    fn = getattr(native.event_library(), f"np_masked_matmul_{_FN[x2.dtype]}")
    native.check_status(fn(x2.data_ptr(), w.data_ptr(), bias.data_ptr() if bias is not None else None, masks[0].data_ptr(),
                           int(masks[2]), out.data_ptr(), x2.shape[0], x2.shape[1], w.shape[1], torch.get_num_threads()),
                        "event_matmul")
    return out


def masked_weight_grad(x2: torch.Tensor, g: torch.Tensor, masks: tuple) -> torch.Tensor:
    """The event kernel's ``x2^T g``, ``x2``'s non-zeros given by :func:`spike_masks`."""
    return masked_gradients(x2, g, masks, bias=False)[0]


def masked_gradients(x2: torch.Tensor, g: torch.Tensor, masks: tuple, bias: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The event kernel's weight gradient ``x2^T g`` and, with ``bias``, the bias gradient ``g.sum(0)`` from the
    same read of ``g`` (rows summed in blocks of 256 in order, then the blocks in order), else ``None``."""
    out = torch.empty((x2.shape[1], g.shape[1]), dtype=x2.dtype)
    gsum = torch.empty(g.shape[1], dtype=x2.dtype) if bias else None
    fn = getattr(native.event_library(), f"np_masked_matmul_xt_{_FN[x2.dtype]}")
    native.check_status(fn(x2.data_ptr(), g.data_ptr(), masks[0].data_ptr(), masks[1].data_ptr(), int(masks[2]), out.data_ptr(),
                           gsum.data_ptr() if bias else None, x2.shape[0], x2.shape[1], g.shape[1], torch.get_num_threads()),
                        "event_matmul_xt")
    return out, gsum


def kernel_product(x2: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """The event kernel's ``x2 @ w (+ bias)`` whatever the density (no choice; for measuring the kernel itself)."""
    return masked_product(x2, w, spike_masks(x2)[:3], bias)


def kernel_weight_grad(x2: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The event kernel's ``x2^T g`` whatever the density (no choice; for measuring the kernel itself)."""
    return masked_weight_grad(x2, g, spike_masks(x2)[:3])


def _product(x2: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple | None]:
    """``x2 @ w (+ bias)`` and, when the event kernel computed it, the masks it used (else ``None``): at most
    :func:`.native.max_nonzeros` non-zeros take the kernel, more torch's dense product (a separate
    ``torch.count_nonzero`` took 2-3 ms on a (32000, 128) spike matrix; the masks' count comes with them)."""
    *masks, total = spike_masks(x2)
    if total <= native.max_nonzeros(x2.numel(), int(w.shape[1])):
        return masked_product(x2, w, masks, bias), tuple(masks)
    out = torch.mm(x2, w, out=buffers_torch.empty((x2.shape[0], w.shape[1]), x2.dtype))
    return (out if bias is None else out.add_(bias)), None


def _input_grad(g: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``g @ w^T`` (the input gradient of ``x2 @ w``): into a block of :mod:`.buffers_torch` unless the gradient
    itself is being differentiated (``create_graph``: an ``out=`` product records no graph)."""
    if torch.is_grad_enabled():
        return g @ w.t()
    return torch.mm(g, w.t(), out=buffers_torch.empty((g.shape[0], w.shape[0]), g.dtype))


class EventMatmul(torch.autograd.Function):
    """``x2 @ w (+ bias)`` for a 2-D ``x2`` (``bias`` 1-D or ``None``): the event kernel for the forward and the
    weight gradient where ``x2`` is sparse enough (:func:`_product`), torch's dense products otherwise."""

    @staticmethod
    def forward(ctx: Any, x2: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        out, masks = _product(x2, w, bias)
        ctx.events = masks is not None
        ctx.save_for_backward(x2, w, *(masks or ()))
        return out

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):
        x2, w, *masks = ctx.saved_tensors
        g = g.contiguous()
        gx = _input_grad(g, w) if ctx.needs_input_grad[0] else None
        want_bias = ctx.needs_input_grad[2]
        # under create_graph the gradient itself is differentiated: the dense products record it
        if ctx.needs_input_grad[1] and ctx.events and not torch.is_grad_enabled():
            gw, gb = masked_gradients(x2, g, masks, bias=want_bias)  # the bias's gradient from the same read of g
            return gx, gw, gb
        gw = transposed_product(x2, g) if ctx.needs_input_grad[1] else None
        return gx, gw, (g.sum(0) if want_bias else None)


#: outputs narrower than this get their weight gradient as ``(g^T x)^T`` (:func:`transposed_product`)
NARROW_OUTPUT = 16
#: and a product of at least this many multiply-adds takes :class:`NarrowOutputMatmul` (a single time
#: step's product is left to ``torch.matmul``)
NARROW_MIN_WORK = 1 << 20


def transposed_product(x2: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    """``x2^T g2`` for 2-D ``x2`` (``(R, P)``) and ``g2`` (``(R, N)``): the weight gradient of ``x2 @ w``
    (:meth:`~neuroplastic.backend.base.Backend.outer_sum` on torch).

    With fewer than :data:`NARROW_OUTPUT` columns it is computed as ``(g2^T x2)^T``: the same sum in
    another order, which torch's CPU GEMM runs 3 to 7 times faster with ten columns and a long
    reduction (2-core AMD EPYC, one thread: 2560 x 128 x 10 0.71 -> 0.11 ms, the main job's readout
    gradient; 32000 rows: K=128 7.9 -> 2.5 ms, K=2048 188 -> 39 ms); from 32 columns both orders take
    the same time.  Differentiable (second derivatives work).
    """
    if g2.shape[1] < NARROW_OUTPUT:
        return (g2.t() @ x2).t().contiguous()
    return x2.t() @ g2


class NarrowOutputMatmul(torch.autograd.Function):
    """``x2 @ w`` for a 2-D ``x2`` and a narrow ``w`` (fewer than :data:`NARROW_OUTPUT` columns) whose
    weight gradient is :func:`transposed_product`'s ``(g^T x2)^T``, where torch's own matmul backward would take
    the slow ``x2^T g`` (a readout layer's weight gradient, 10 classes).  The backward is written with
    differentiable operations, so second derivatives (``create_graph``) work as with ``torch.matmul``.
    """

    @staticmethod
    def forward(ctx: Any, x2: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x2, w)
        return x2 @ w

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor):
        x2, w = ctx.saved_tensors
        gx = g @ w.t() if ctx.needs_input_grad[0] else None
        gw = transposed_product(x2, g) if ctx.needs_input_grad[1] else None
        return gx, gw


def narrow_output(x: Any, w: Any) -> bool:
    """Whether ``x @ w`` takes :class:`NarrowOutputMatmul`: plain CPU float tensors (no transform, no forward-AD
    tangent), ``w`` 2-D with fewer than :data:`NARROW_OUTPUT` columns, at least :data:`NARROW_MIN_WORK`
    multiply-adds, and a gradient to compute."""
    if not (isinstance(x, torch.Tensor) and isinstance(w, torch.Tensor)) or w.ndim != 2 or x.ndim < 2:
        return False
    if not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)) or w.shape[1] >= NARROW_OUTPUT:
        return False
    if x.shape[-1] != w.shape[0] or x.numel() * w.shape[1] < NARROW_MIN_WORK:
        return False
    if x.device.type != "cpu" or w.device.type != "cpu" or not x.is_floating_point() or x.dtype != w.dtype:
        return False
    return not (in_torch_func(x) or in_torch_func(w))  # traced tensors qualify: the Function is torch operations


def applicable(x: Any, w: Any, traced_ok: bool = False) -> bool:
    """Whether the event kernel can take ``x @ w`` (dtype, device, shapes and size, no transform, library built);
    with ``traced_ok``, tensors being traced qualify too (:class:`TracedEventMatmul`)."""
    if not (isinstance(x, torch.Tensor) and isinstance(w, torch.Tensor)) or x.dtype not in _FN or w.dtype != x.dtype:
        return False
    if x.device.type != "cpu" or w.device.type != "cpu":
        return False
    if not native.event_product_fits(tuple(x.shape), tuple(w.shape)):
        return False
    blocked = (in_torch_func(x) or in_torch_func(w)) if traced_ok else (in_transform(x) or in_transform(w))
    return not blocked and native.event_library() is not None


class TracedEventMatmul(torch.autograd.Function):
    """:func:`event_matmul` for tensors being traced (:mod:`.compile_torch`): the density, which a trace
    cannot read, is checked when the graph runs, inside the custom operators ``neuroplastic::spike_matmul``
    (the event kernel or the dense product, a flag saying which, and the masks of ``x2``'s non-zeros) and
    ``neuroplastic::spike_matmul_wgrad`` (the weight gradient, by the same choice, from the same masks)."""

    @staticmethod
    def forward(ctx: Any, x2: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        out, events, masks, counts, binary = traced_ops().spike_matmul(x2, w)
        ctx.save_for_backward(x2, w, events, masks, counts, binary)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g: torch.Tensor):
        x2, w, events, masks, counts, binary = ctx.saved_tensors
        g = g.contiguous()
        gx = g @ w.t() if ctx.needs_input_grad[0] else None
        gw = traced_ops().spike_matmul_wgrad(x2, g, events, masks, counts, binary) if ctx.needs_input_grad[1] else None
        return gx, gw


@functools.lru_cache(maxsize=None)
def traced_ops() -> Any:
    """The custom operators behind :class:`TracedEventMatmul` (registered with torch on first use, not at
    import); returns ``torch.ops.neuroplastic``."""
    from torch.library import custom_op

    @custom_op("neuroplastic::spike_matmul", mutates_args=())
    def _spike_matmul(x2: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        out, masks = _product(x2, w.contiguous())
        events = torch.tensor(masks is not None, dtype=torch.bool)
        if masks is None:  # the dense product: masks of the right shapes, never read
            masks = (torch.empty((x2.shape[0], (x2.shape[1] + 63) // 64), dtype=torch.int64),
                     torch.empty(x2.shape[0], dtype=torch.int32), torch.zeros((), dtype=torch.int32))
        return out, events, *masks

    @_spike_matmul.register_fake
    def _(x2, w):
        n, k = x2.shape
        return (x2.new_empty((n, w.shape[1])), torch.empty((), dtype=torch.bool, device=x2.device),
                torch.empty((n, (k + 63) // 64), dtype=torch.int64, device=x2.device), torch.empty(n, dtype=torch.int32, device=x2.device),
                torch.empty((), dtype=torch.int32, device=x2.device))

    @custom_op("neuroplastic::spike_matmul_wgrad", mutates_args=())
    def _wgrad(x2: torch.Tensor, g: torch.Tensor, events: torch.Tensor, masks: torch.Tensor, counts: torch.Tensor,
               binary: torch.Tensor) -> torch.Tensor:
        return masked_weight_grad(x2, g, (masks, counts, binary)) if bool(events) else transposed_product(x2, g)

    @_wgrad.register_fake
    def _(x2, g, events, masks, counts, binary):
        return x2.new_empty((x2.shape[1], g.shape[1]))

    return torch.ops.neuroplastic


def event_matmul(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ w (+ bias)`` over the last axis of ``x``; the event kernel when :func:`applicable` and ``x`` is sparse
    enough, with the bias added inside it (no second pass over the output)."""
    small = (isinstance(x, torch.Tensor) and isinstance(w, torch.Tensor) and w.ndim == 2
             and x.numel() * w.shape[1] < min(native.MIN_WORK, NARROW_MIN_WORK))
    if small:  # a single time step's product: no other check (this runs once per layer and step in eager loops)
        y = torch.matmul(x, w)
    elif traced(x) or traced(w):  # the density is chosen when the graph runs, inside the custom operators
        if applicable(x, w, traced_ok=True):
            x2 = x.reshape(-1, x.shape[-1]).contiguous()
            y = TracedEventMatmul.apply(x2, w.contiguous()).reshape(*x.shape[:-1], w.shape[1])
        else:
            y = _dense(x, w)
    elif applicable(x, w) and (bias is None or _bias_fits(bias, w)):
        x2 = x.reshape(-1, x.shape[-1]).contiguous()
        return EventMatmul.apply(x2, w.contiguous(), bias.contiguous() if bias is not None else None).reshape(*x.shape[:-1], w.shape[1])
    else:
        y = _dense(x, w)
    return y if bias is None else y + bias


def _dense(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    if narrow_output(x, w):  # torch operations only, so traced graphs record it as it is
        return NarrowOutputMatmul.apply(x.reshape(-1, x.shape[-1]), w).reshape(*x.shape[:-1], w.shape[1])
    return torch.matmul(x, w)


def _bias_fits(bias: Any, w: torch.Tensor) -> bool:
    """Whether the kernel can add ``bias`` itself: a plain tensor of ``w``'s dtype and device with ``w``'s columns."""
    return (isinstance(bias, torch.Tensor) and bias.dtype == w.dtype and bias.device == w.device
            and tuple(bias.shape) == (w.shape[1],) and not in_transform(bias))


__all__ = ["EventMatmul", "kernel_product", "kernel_weight_grad", "masked_gradients", "masked_product", "masked_weight_grad", "spike_masks", "NarrowOutputMatmul", "TracedEventMatmul", "applicable", "event_matmul", "narrow_output",
           "traced_ops", "transposed_product"]
