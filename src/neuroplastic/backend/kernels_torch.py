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
The Function has no forward-mode rule: :meth:`TorchBackend.lif_sequence` uses the
reference under ``torch.func`` transforms and for dual (forward-AD) tensors.
"""

from __future__ import annotations

from typing import Any

import torch

RESETS = ("subtract", "zero", "none")


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
    u_all = torch.empty_like(currents)
    spikes = torch.empty_like(currents)
    x = torch.empty_like(v0)
    v = v0
    if T == 0:
        return spikes, v0.clone(), u_all
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
                 threshold: float, reset: str, detach_reset: bool, surrogate: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(dL/dcurrents, dL/dv0)`` from the kept ``u`` and the outputs' cotangents (the kernel's backward pass).

    ``grad_spikes`` / ``grad_v`` may be ``None`` (an output that the loss does not use).
    Runs backwards in blocks of steps (:data:`BLOCK_ELEMENTS`).
    """
    T = u_all.shape[0]
    grad_I = torch.empty_like(u_all)
    if T == 0:
        return grad_I, (grad_v.clone() if grad_v is not None else None)
    per_step = max(1, u_all[0].numel())
    block = max(1, min(T, BLOCK_ELEMENTS // per_step))
    g = grad_v  # dL/dv_t after the block being processed (None: zero)
    for stop in range(T, 0, -block):
        start = max(0, stop - block)
        u = u_all[start:stop]
        x = u - threshold  # the forward's own operation: the same bits
        slope = surrogate.derivative(x)
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


class LIFSequence(torch.autograd.Function):
    """One autograd node for a voltage-based LIF layer over a whole sequence (module docstring)."""

    @staticmethod
    def forward(ctx: Any, currents: torch.Tensor, v0: torch.Tensor, alpha: float, threshold: float, reset: str,
                detach_reset: bool, surrogate: Any) -> tuple[torch.Tensor, torch.Tensor]:
        spikes, v_last, u_all = lif_forward(currents, v0, alpha, threshold, reset)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(u_all)
        ctx.settings = (alpha, threshold, reset, detach_reset, surrogate)
        return spikes, v_last

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_spikes: torch.Tensor | None, grad_v: torch.Tensor | None):
        (u_all,) = ctx.saved_tensors
        grad_I, grad_v0 = lif_backward(u_all, grad_spikes, grad_v, *ctx.settings)
        need_I, need_v0 = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        return (grad_I if need_I else None), (grad_v0 if need_v0 else None), None, None, None, None, None


def fusable(currents: Any, v0: Any) -> bool:
    """Whether :class:`LIFSequence` can run on these arrays: plain (not ``torch.func``-wrapped, not
    forward-AD dual) float tensors of one dtype and device."""
    if not (isinstance(currents, torch.Tensor) and isinstance(v0, torch.Tensor)):
        return False
    if currents.dtype != v0.dtype or currents.device != v0.device or not currents.is_floating_point():
        return False
    if in_transform(currents) or in_transform(v0):
        return False
    return True


def in_transform(x: Any) -> bool:
    """True for a tensor inside a ``torch.func`` transform (jvp, vmap, grad) or carrying a forward-AD tangent."""
    if not isinstance(x, torch.Tensor):
        return False
    if torch._C._functorch.is_functorch_wrapped_tensor(x) or torch._C._functorch.maybe_current_level() is not None:
        return True
    import torch.autograd.forward_ad as fwAD

    return fwAD.unpack_dual(x).tangent is not None


def lif_sequence(currents: torch.Tensor, v0: torch.Tensor, alpha: float, threshold: float, reset: str,
                 detach_reset: bool, surrogate: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(spikes, v_last)`` through :class:`LIFSequence` (callers check :func:`fusable` first)."""
    _check(currents, v0, alpha, threshold, reset)
    return LIFSequence.apply(currents.contiguous(), v0, float(alpha), float(threshold), reset, bool(detach_reset), surrogate)


__all__ = ["LIFSequence", "fusable", "in_transform", "lif_backward", "lif_forward", "lif_sequence"]
