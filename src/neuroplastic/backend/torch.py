"""PyTorch backend: eager ops, autograd / ``torch.func`` transforms, an ``autograd.Function`` spike."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..tree import tree_leaves, tree_map, tree_unflatten_like
from . import events_torch
from .base import Backend, seed_sequence_key, split_seed_sequence
from . import kernels_torch
from .kernels_torch import in_transform


class _Spike(torch.autograd.Function):
    """Heaviside forward; surrogate derivative in reverse (``backward``) and forward (``jvp``) mode."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, surrogate: Any) -> torch.Tensor:
        return (x > 0).to(x.dtype)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        x, surrogate = inputs
        ctx.surrogate = surrogate
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.derivative(x), None

    @staticmethod
    def jvp(ctx: Any, x_dot: torch.Tensor, _surrogate_dot: Any) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return x_dot * ctx.surrogate.derivative(x)


class _EagerSpike(torch.autograd.Function):
    """:class:`_Spike` for plain reverse-mode autograd, in the older ``forward(ctx, ...)`` form.

    A Function with ``setup_context`` (which ``torch.func`` transforms need) has its arguments bound
    to its signature by ``inspect`` on every call: 37 us a spike for a (64, 128) array against 20 us
    in this form (2-core AMD EPYC, one thread), once per layer and time step of an eager loop.
    Same forward, same backward (differentiable, so gradients of gradients work too).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, surrogate: Any) -> torch.Tensor:
        ctx.surrogate = surrogate
        ctx.save_for_backward(x)
        return _Spike.forward(x, surrogate)

    backward = staticmethod(_Spike.backward)


def python_scan(B: Backend, fn: Callable, init: Any, xs: Any, length: int | None = None):
    """A Python loop with ``lax.scan`` semantics; stacks the per-step outputs leaf-wise."""
    leaves = tree_leaves(xs)
    n = length if length is not None else (leaves[0].shape[0] if leaves else None)
    if n is None:
        raise ValueError("scan: give `length` when `xs` is empty")
    # unbind once: indexing a[t] inside the loop would make every step's backward
    # scatter into a full (T, ...) zero tensor, O(T^2) work for BPTT
    steps = [B.unstack(a) for a in leaves]
    carry, ys = init, []
    for t in range(n):
        x_t = tree_unflatten_like(xs, [u[t] for u in steps]) if xs is not None else None
        carry, y = fn(carry, x_t)
        ys.append(y)
    if not ys or ys[0] is None:
        return carry, None
    stacked = tree_map(lambda *a: B.stack(a), ys[0], *ys[1:])
    return carry, stacked


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, device: str | None = None, dtype: str = "float32", compile: bool = False) -> None:
        super().__init__(device=device, dtype=dtype)
        #: whether :meth:`jit` traces and compiles (:mod:`.compile_torch`) instead of returning ``fn``
        self.compile_steps = bool(compile)
        try:
            self.torch_device = torch.device(device or "cpu")
        except RuntimeError as err:
            raise ValueError(f"device: {err}") from None
        if self.torch_device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} was asked for but torch sees no CUDA device")
        self.float_dtype = getattr(torch, dtype)

    # conversion
    def asarray(self, x: Any, dtype: Any = None) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            t = x.to(self.torch_device)
        else:
            arr = np.asarray(x)
            t = torch.as_tensor(arr if arr.dtype != np.float16 else arr.astype(np.float32), device=self.torch_device)
        if dtype is not None:
            return t.to(dtype)
        if t.is_floating_point() and t.dtype != self.float_dtype:
            t = t.to(self.float_dtype)
        return t

    def to_numpy(self, x: Any) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            t = x.detach()
            # a CPU tensor's .numpy() shares its memory, and torch's optimizers update parameters in place:
            # a snapshot (a trajectory of parameters, a metric kept for later) must not change with them
            return t.numpy().copy() if t.device.type == "cpu" else t.cpu().numpy()
        return np.asarray(x)

    def is_array(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor)

    def array_like(self, stored: np.ndarray, like: Any) -> torch.Tensor:
        return torch.from_numpy(stored.copy()).to(like.device).requires_grad_(like.requires_grad)

    def save_optimizer_object(self, opt: Any, json_leaf: Callable[[Any, str], Any]) -> tuple[dict, dict]:
        from .optim_torch import save_state

        return save_state(opt, json_leaf)

    def load_optimizer_object(self, template: Any, info: dict, arrays: dict, used: set, from_json_leaf: Callable[[Any, str], Any]) -> Any:
        from .optim_torch import load_state

        return load_state(template, info, arrays, used, from_json_leaf)

    def is_traced(self, x: Any) -> bool:
        # inside a torch.func transform even a captured plain tensor cannot be read out; under
        # compile_torch's tracing the tensors are fake (no data)
        return isinstance(x, torch.Tensor) and (
            torch._C._functorch.is_functorch_wrapped_tensor(x) or torch._C._functorch.maybe_current_level() is not None
            or kernels_torch.traced(x)
        )

    def float_dtype_of(self, name: str) -> Any:
        return getattr(torch, name)

    def astype(self, x: torch.Tensor, dtype: Any) -> torch.Tensor:
        return x.to(dtype)

    def zeros(self, shape, dtype=None): return torch.zeros(tuple(shape), dtype=dtype or self.float_dtype, device=self.torch_device)
    def ones(self, shape, dtype=None): return torch.ones(tuple(shape), dtype=dtype or self.float_dtype, device=self.torch_device)
    def full(self, shape, value, dtype=None): return torch.full(tuple(shape), value, dtype=dtype or self.float_dtype, device=self.torch_device)
    def zeros_like(self, x): return torch.zeros_like(x)
    def ones_like(self, x): return torch.ones_like(x)
    def eye(self, n, dtype=None): return torch.eye(n, dtype=dtype or self.float_dtype, device=self.torch_device)
    def arange(self, n): return torch.arange(n, device=self.torch_device)

    # elementwise
    def exp(self, x): return torch.exp(x)
    def log(self, x): return torch.log(x)
    def tanh(self, x): return torch.tanh(x)
    def abs(self, x): return torch.abs(x)
    def sign(self, x): return torch.sign(x)
    def sqrt(self, x): return torch.sqrt(x)
    def sigmoid(self, x): return torch.sigmoid(x)
    def round(self, x): return torch.round(x)
    def floor(self, x): return torch.floor(x)
    def isfinite(self, x): return torch.isfinite(x)

    def _t(self, v: Any, like: torch.Tensor) -> torch.Tensor:
        return v if isinstance(v, torch.Tensor) else torch.as_tensor(v, dtype=like.dtype, device=like.device)

    def maximum(self, a, b):
        like = a if isinstance(a, torch.Tensor) else b
        return torch.maximum(self._t(a, like), self._t(b, like))

    def minimum(self, a, b):
        like = a if isinstance(a, torch.Tensor) else b
        return torch.minimum(self._t(a, like), self._t(b, like))

    def clip(self, x, lo=None, hi=None): return torch.clamp(x, lo, hi)

    def where(self, c, a, b):
        like = a if isinstance(a, torch.Tensor) else b
        if not isinstance(like, torch.Tensor):
            like = torch.as_tensor(0.0, dtype=self.float_dtype, device=c.device)
        return torch.where(c, self._t(a, like), self._t(b, like))

    # reductions
    @staticmethod
    def _dim(axis):
        return tuple(axis) if isinstance(axis, (list, tuple)) else axis

    def sum(self, x, axis=None, keepdims=False):
        if axis == ():  # numpy: no axis, no reduction (torch would reduce everything)
            return x
        return torch.sum(x) if axis is None else torch.sum(x, dim=self._dim(axis), keepdim=keepdims)

    def mean(self, x, axis=None, keepdims=False):
        if axis == ():
            return x
        return torch.mean(x) if axis is None else torch.mean(x, dim=self._dim(axis), keepdim=keepdims)

    def max(self, x, axis=None, keepdims=False):
        return torch.amax(x) if axis is None else torch.amax(x, dim=self._dim(axis), keepdim=keepdims)

    def min(self, x, axis=None, keepdims=False):
        return torch.amin(x) if axis is None else torch.amin(x, dim=self._dim(axis), keepdim=keepdims)

    def argmax(self, x, axis=-1): return torch.argmax(x, dim=axis)
    def any(self, x): return torch.any(x)
    def all(self, x): return torch.all(x)

    def logsumexp(self, x, axis=-1, keepdims=False):
        return torch.logsumexp(x, dim=axis, keepdim=keepdims)

    def log_softmax(self, x, axis=-1): return torch.log_softmax(x, dim=axis)
    def softmax(self, x, axis=-1): return torch.softmax(x, dim=axis)

    # shapes and products
    def matmul(self, a, b): return torch.matmul(a, b)

    def event_matmul(self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """The event kernel of :mod:`.events_torch` on the CPU where it applies, else :meth:`matmul` (plus ``bias``)."""
        from . import events_torch

        return events_torch.event_matmul(x, w, bias)

    def einsum(self, spec, *xs): return torch.einsum(spec, *xs)
    def outer(self, a, b): return a[..., :, None] * b[..., None, :]

    def _transposed_product(self, x2: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
        """``x2^T g2`` in the order torch's CPU GEMM runs fast (:func:`.events_torch.transposed_product`)."""
        return events_torch.transposed_product(x2, g2)

    def stack(self, xs, axis=0): return torch.stack(list(xs), dim=axis)
    def unstack(self, x): return torch.unbind(x, 0)
    def concatenate(self, xs, axis=0): return torch.cat(list(xs), dim=axis)
    def reshape(self, x, shape): return torch.reshape(x, tuple(shape))

    def transpose(self, x, axes=None):
        return x.permute(*axes) if axes is not None else x.permute(*reversed(range(x.ndim)))

    def swapaxes(self, x, a, b): return torch.swapaxes(x, a, b)
    def expand_dims(self, x, axis): return torch.unsqueeze(x, axis)
    def take(self, x, idx, axis=0): return torch.index_select(x, axis, self.asarray(idx).long().reshape(-1)).reshape(x.shape[:axis] + tuple(np.shape(idx)) + x.shape[axis + 1:])
    def take_along_axis(self, x, idx, axis): return torch.take_along_dim(x, idx, dim=axis)
    def cumsum(self, x, axis=0): return torch.cumsum(x, dim=axis)
    def flip(self, x, axis=0): return torch.flip(x, dims=(axis,))
    def diag(self, x): return torch.diag(x)

    # autodiff
    def tree_copy(self, tree: Any) -> Any:
        return tree_map(lambda x: x.detach().clone() if isinstance(x, torch.Tensor) else x, tree)

    def tree_assign(self, target: Any, values: Any) -> Any:
        with torch.no_grad():
            tree_map(lambda t, v: t.copy_(v), target, values)
        return target

    def stop_gradient(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach() if isinstance(x, torch.Tensor) else x

    def spike(self, x: torch.Tensor, surrogate: Any) -> torch.Tensor:
        """Heaviside of ``x`` with ``surrogate``'s derivative: :class:`_Spike` inside ``torch.func`` transforms
        and for forward-AD tensors, :class:`_EagerSpike` for plain autograd, no node where no gradient flows."""
        if in_transform(x):
            return _Spike.apply(x, surrogate)
        if x.requires_grad and torch.is_grad_enabled():
            return _EagerSpike.apply(x, surrogate)
        return (x > 0).to(x.dtype)

    def lif_sequence(self, currents: torch.Tensor, v0: torch.Tensor, alpha: float, threshold: float, reset: str,
                     detach_reset: bool, surrogate: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused kernel (:class:`.kernels_torch.LIFSequence`: one autograd node for the whole sequence);
        the reference scan under ``torch.func`` transforms and forward-mode AD, which the kernel lacks."""
        if not kernels_torch.fusable(currents, v0):
            return super().lif_sequence(currents, v0, alpha, threshold, reset, detach_reset, surrogate)
        return kernels_torch.lif_sequence(currents, v0, alpha, threshold, reset, detach_reset, surrogate)

    def in_forward_mode(self, x: Any) -> bool:
        # a traced tensor is not in forward mode: the fused LIF kernel runs as a custom operator there
        return kernels_torch.in_torch_func(x)

    def __repr__(self) -> str:
        return f"TorchBackend(device={self.device!r}, dtype={self.dtype_name!r}, compile={self.compile_steps})"

    def jit(self, fn: Callable, static_argnums: Sequence[int] = ()) -> Callable:
        """With ``compile=True``: ``fn`` traced once per signature and compiled by TorchInductor
        (:class:`.compile_torch.TracedFunction`; non-tensor arguments are constants of the graph, so
        ``static_argnums`` is implied); without it, ``fn`` itself."""
        if not self.compile_steps:
            return fn
        from .compile_torch import TracedFunction

        return TracedFunction(fn, on_failure="eager")

    def value_and_grad(self, fn: Callable, has_aux: bool = False) -> Callable:
        def wrapped(params: Any, *args: Any, **kwargs: Any):
            leaves = tree_leaves(params)
            live = [p.detach().requires_grad_(True) if p.is_floating_point() else p for p in leaves]
            with torch.enable_grad():
                out = fn(tree_unflatten_like(params, live), *args, **kwargs)
                value, aux = out if has_aux else (out, None)
                wrt = [p for p in live if p.requires_grad]
                found = torch.autograd.grad(value, wrt, allow_unused=True) if value.requires_grad else [None] * len(wrt)
            it = iter(found)
            grads = []
            for p in live:
                g = next(it) if p.requires_grad else None
                grads.append(torch.zeros_like(p) if g is None else g)
            grads_tree = tree_unflatten_like(params, grads)
            value = value.detach()
            if has_aux:
                aux = tree_map(self.stop_gradient, aux)
                return (value, aux), grads_tree
            return value, grads_tree

        return wrapped

    def vjp(self, fn: Callable, *primals: Any):
        return torch.func.vjp(fn, *primals)

    def jvp(self, fn: Callable, primals: Sequence[Any], tangents: Sequence[Any]):
        return torch.func.jvp(fn, tuple(primals), tuple(tangents))

    def vmap(self, fn: Callable, in_axes: Any = 0, out_axes: Any = 0) -> Callable:
        return torch.func.vmap(fn, in_dims=in_axes, out_dims=out_axes)

    def scan(self, fn: Callable, init: Any, xs: Any, length: int | None = None):
        return python_scan(self, fn, init, xs, length)

    # random: numpy SeedSequence keys, sampled on the CPU so results do not depend on the device
    def key(self, seed: int) -> np.random.SeedSequence:
        return seed_sequence_key(seed)

    def split(self, key: Any, n: int = 2) -> list:
        return split_seed_sequence(key, n)

    def _generator(self, key: np.random.SeedSequence) -> torch.Generator:
        g = torch.Generator(device="cpu")
        g.manual_seed(int(key.generate_state(1, np.uint64)[0] >> np.uint64(1)))
        return g

    def normal(self, key: Any, shape: Sequence[int]) -> torch.Tensor:
        return torch.randn(tuple(shape), generator=self._generator(key), dtype=self.float_dtype).to(self.torch_device)

    def uniform(self, key: Any, shape: Sequence[int], low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        u = torch.rand(tuple(shape), generator=self._generator(key), dtype=self.float_dtype)
        return (low + (high - low) * u).to(self.torch_device)

    def permutation(self, key: Any, n: int) -> np.ndarray:
        return torch.randperm(n, generator=self._generator(key)).numpy()

    def make_optimizer(self, name: str, lr: float, total_steps: int | None = None, **options: Any):
        from .optim_torch import TorchOptimizer

        return TorchOptimizer(name, lr, total_steps=total_steps, **options)

    def seed_from_key(self, key: Any) -> int:
        return int(key.generate_state(1)[0])
