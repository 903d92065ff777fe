"""The backend interface, and the parts every backend shares."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from ..tree import tree_leaves, tree_map

Array = Any

#: every operation a backend implements (``Backend`` declares each; a test checks all three backends)
ARRAY_OPS = (
    'astype',
    'zeros',
    'ones',
    'full',
    'zeros_like',
    'ones_like',
    'eye',
    'arange',
    'exp',
    'log',
    'tanh',
    'abs',
    'sign',
    'sqrt',
    'sigmoid',
    'round',
    'floor',
    'isfinite',
    'maximum',
    'minimum',
    'clip',
    'where',
    'sum',
    'mean',
    'max',
    'min',
    'argmax',
    'any',
    'all',
    'logsumexp',
    'matmul',
    'einsum',
    'outer',
    'stack',
    'unstack',
    'concatenate',
    'reshape',
    'transpose',
    'swapaxes',
    'expand_dims',
    'take',
    'take_along_axis',
    'cumsum',
    'flip',
    'diag',
    'asarray',
    'to_numpy',
    'is_array',
    'stop_gradient',
    'spike',
    'value_and_grad',
    'vjp',
    'jvp',
    'vmap',
    'scan',
    'key',
    'split',
    'normal',
    'uniform',
    'permutation',
    'seed_from_key',
)


def cosine_lr(lr: float, total_steps: int):
    """``step -> lr * (1 + cos(pi * min(step, total) / total)) / 2`` for Python integer steps."""

    def at(step: int) -> float:
        return lr * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))

    return at


class Optimizer:
    name = "optimizer"

    def init(self, params: Any) -> Any:
        raise NotImplementedError

    def update(self, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        raise NotImplementedError

    def preview(self, grads: Any, state: Any, params: Any) -> Any:
        """The change ``new_params - params`` that :meth:`update` would make, leaving ``state`` untouched."""
        raise NotImplementedError

    def snapshot(self, state: Any) -> Any:
        """Something :meth:`restore` brings ``state`` back to (functional states are their own snapshot)."""
        return state

    def restore(self, state: Any, snapshot: Any) -> Any:
        """``state`` as it was when :meth:`snapshot` was taken."""
        return snapshot




class Backend:
    """Array operations and function transforms of one framework.

    Subclasses wrap one framework.  Array methods take numpy-style arguments (``axis``,
    ``keepdims``).  Transforms act on functions of pytrees of arrays.  A backend holds no
    arrays; it is a cheap, cached, immutable handle (name, device, float dtype).
    """

    name: str = "abstract"
    #: whether the framework can differentiate (numpy cannot)
    differentiable: bool = True
    #: whether ``jit`` compiles (JAX): traced code cannot branch on values, and vmap over a grid pays off
    compiles: bool = False
    #: whether ``jit`` traces and compiles the pieces of an otherwise eager step (torch with ``compile=True``)
    compile_steps: bool = False

    def __init__(self, device: str | None = None, dtype: str = "float32") -> None:
        self.device = device
        self.dtype_name = dtype

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r}, dtype={self.dtype_name!r})"

    # ---------------------------------------------------------------- conversion
    def asarray(self, x: Any, dtype: Any = None) -> Array:
        raise NotImplementedError

    def to_numpy(self, x: Array) -> np.ndarray:
        """``x``'s values as a numpy array that later in-place updates of ``x`` do not change."""
        raise NotImplementedError

    def tree_asarray(self, tree: Any) -> Any:
        """Convert every leaf of a pytree (numpy arrays, scalars) to this backend."""
        return tree_map(lambda a: self.asarray(a), tree)

    def tree_to_numpy(self, tree: Any) -> Any:
        return tree_map(lambda a: self.to_numpy(a), tree)

    def is_array(self, x: Any) -> bool:
        raise NotImplementedError

    # ---------------------------------------------------------------- array operations (declared here, implemented per framework)
    def astype(self, x, dtype) -> Any:
        """``x`` cast to ``dtype``."""
        raise NotImplementedError

    def zeros(self, shape, dtype=None) -> Any:
        """Zeros of ``shape`` (the backend's float dtype by default)."""
        raise NotImplementedError

    def ones(self, shape, dtype=None) -> Any:
        """Ones of ``shape``."""
        raise NotImplementedError

    def full(self, shape, value, dtype=None) -> Any:
        """``value`` everywhere in ``shape``."""
        raise NotImplementedError

    def zeros_like(self, x) -> Any:
        """Zeros shaped and typed like ``x``."""
        raise NotImplementedError

    def ones_like(self, x) -> Any:
        """Ones shaped and typed like ``x``."""
        raise NotImplementedError

    def eye(self, n, dtype=None) -> Any:
        """The ``n x n`` identity."""
        raise NotImplementedError

    def arange(self, n) -> Any:
        """``0 .. n-1`` (integers)."""
        raise NotImplementedError

    def exp(self, x) -> Any:
        """Elementwise ``e^x``."""
        raise NotImplementedError

    def log(self, x) -> Any:
        """Elementwise natural logarithm."""
        raise NotImplementedError

    def tanh(self, x) -> Any:
        """Elementwise ``tanh``."""
        raise NotImplementedError

    def abs(self, x) -> Any:
        """Elementwise ``|x|``."""
        raise NotImplementedError

    def sign(self, x) -> Any:
        """Elementwise sign (-1, 0, 1)."""
        raise NotImplementedError

    def sqrt(self, x) -> Any:
        """Elementwise square root."""
        raise NotImplementedError

    def sigmoid(self, x) -> Any:
        """Elementwise logistic function."""
        raise NotImplementedError

    def round(self, x) -> Any:
        """Round half to even."""
        raise NotImplementedError

    def floor(self, x) -> Any:
        """Elementwise floor."""
        raise NotImplementedError

    def isfinite(self, x) -> Any:
        """Elementwise finiteness (booleans)."""
        raise NotImplementedError

    def maximum(self, a, b) -> Any:
        """Elementwise maximum."""
        raise NotImplementedError

    def minimum(self, a, b) -> Any:
        """Elementwise minimum."""
        raise NotImplementedError

    def clip(self, x, lo=None, hi=None) -> Any:
        """``x`` clipped to ``[lo, hi]``."""
        raise NotImplementedError

    def where(self, c, a, b) -> Any:
        """``a`` where ``c`` else ``b``."""
        raise NotImplementedError

    def sum(self, x, axis=None, keepdims=False) -> Any:
        """Sum over ``axis`` (all axes by default)."""
        raise NotImplementedError

    def mean(self, x, axis=None, keepdims=False) -> Any:
        """Mean over ``axis``."""
        raise NotImplementedError

    def max(self, x, axis=None, keepdims=False) -> Any:
        """Maximum over ``axis``."""
        raise NotImplementedError

    def min(self, x, axis=None, keepdims=False) -> Any:
        """Minimum over ``axis``."""
        raise NotImplementedError

    def argmax(self, x, axis=-1) -> Any:
        """Index of the maximum along ``axis``."""
        raise NotImplementedError

    def any(self, x) -> Any:
        """Whether any element is true."""
        raise NotImplementedError

    def all(self, x) -> Any:
        """Whether every element is true."""
        raise NotImplementedError

    def logsumexp(self, x, axis=-1, keepdims=False) -> Any:
        """``log(sum(exp(x)))`` along ``axis``, stably."""
        raise NotImplementedError

    def matmul(self, a, b) -> Any:
        """Matrix product (batched over leading axes)."""
        raise NotImplementedError

    def event_matmul(self, x, w, bias=None) -> Any:
        """``x @ w (+ bias)`` for a ``x`` (``(..., K)``) that may be mostly zeros, such as spikes, a 2-D ``w`` and a
        1-D ``bias`` (or ``None``).

        Backends with an event-driven kernel (:mod:`neuroplastic.backend.native`) use it where it
        pays (large products, ``x`` at most :func:`~neuroplastic.backend.native.max_density` of the
        output width non-zero, reverse-mode differentiation), adding the bias inside it, and the dense
        product elsewhere: the same numbers up to the rounding of another summation order.  This reference
        is the dense product plus the bias.
        """
        y = self.matmul(x, w)
        return y if bias is None else y + bias

    def einsum(self, spec, *xs) -> Any:
        """Einstein summation."""
        raise NotImplementedError

    def outer(self, a, b) -> Any:
        """Outer product over the last axes: ``a[..., :, None] * b[..., None, :]``."""
        raise NotImplementedError

    def outer_sum(self, x, g) -> Any:
        """``sum over the leading axes of x[..., p] * g[..., n]``, ``(P, N)``: a weight gradient ``x^T g``
        (``x`` and ``g`` share their leading axes); one matrix product of the two flattened to 2-D."""
        if tuple(x.shape[:-1]) != tuple(g.shape[:-1]):
            raise ValueError(f"outer_sum: x {tuple(x.shape)} and g {tuple(g.shape)} must share their leading axes")
        return self._transposed_product(self.reshape(x, (-1, x.shape[-1])), self.reshape(g, (-1, g.shape[-1])))

    def _transposed_product(self, x2, g2) -> Any:
        """``x2^T g2`` for 2-D arrays (:meth:`outer_sum`'s product; backends may pick its order for speed)."""
        return self.matmul(self.transpose(x2, (1, 0)), g2)

    def stack(self, xs, axis=0) -> Any:
        """Stack arrays along a new ``axis``."""
        raise NotImplementedError

    def unstack(self, x) -> Any:
        """The slices of ``x`` along axis 0."""
        raise NotImplementedError

    def concatenate(self, xs, axis=0) -> Any:
        """Join arrays along ``axis``."""
        raise NotImplementedError

    def reshape(self, x, shape) -> Any:
        """``x`` with a new shape."""
        raise NotImplementedError

    def transpose(self, x, axes=None) -> Any:
        """Permute axes (reverse them by default)."""
        raise NotImplementedError

    def swapaxes(self, x, a, b) -> Any:
        """Swap two axes."""
        raise NotImplementedError

    def expand_dims(self, x, axis) -> Any:
        """Insert an axis of length 1."""
        raise NotImplementedError

    def take(self, x, idx, axis=0) -> Any:
        """Gather along ``axis``."""
        raise NotImplementedError

    def take_along_axis(self, x, idx, axis) -> Any:
        """Gather with an index array along ``axis``."""
        raise NotImplementedError

    def cumsum(self, x, axis=0) -> Any:
        """Cumulative sum along ``axis``."""
        raise NotImplementedError

    def flip(self, x, axis=0) -> Any:
        """Reverse along ``axis``."""
        raise NotImplementedError

    def diag(self, x) -> Any:
        """Diagonal of a matrix, or the diagonal matrix of a vector."""
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

    def float_dtype_of(self, name: str) -> Any:
        """The framework's float dtype called ``name`` (``"float32"``, ``"float64"``)."""
        raise NotImplementedError

    def is_traced(self, x: Any) -> bool:
        """True when ``x`` is a placeholder inside a transform (``jit``/``vjp``/``vmap``, torch's compile
        tracing) whose values are not known: nothing built from it may be kept past the call."""
        return False

    def all_finite(self, x: Array) -> bool:
        """Whether every value of ``x`` is finite, as a Python bool (reads the values)."""
        return bool(np.all(np.isfinite(self.to_numpy(x))))

    def all_finite_tree(self, tree: Any) -> Array:
        """Whether every leaf of ``tree`` is finite, as a backend boolean scalar (works under ``jit``)."""
        ok = None
        for leaf in tree_leaves(tree):
            leaf_ok = self.all(self.isfinite(leaf))
            ok = leaf_ok if ok is None else ok & leaf_ok
        return self.asarray(True) if ok is None else ok

    def tree_select(self, cond: Array, a: Any, b: Any) -> Any:
        """``a`` where the scalar ``cond`` is true, else ``b``, leaf by leaf (works under ``jit``)."""
        return tree_map(lambda x, y: self.where(cond, x, y), a, b)

    def tree_copy(self, tree: Any) -> Any:
        """A copy of every array leaf (for frameworks that update arrays in place)."""
        return tree_map(lambda x: x + 0 if self.is_array(x) else x, tree)

    def array_like(self, stored: np.ndarray, like: Any) -> Array:
        """The numpy array ``stored`` as an array of ``like``'s framework, device (and trainability)."""
        raise NotImplementedError

    def save_optimizer_object(self, opt: Any, json_leaf: Callable[[Any, str], Any]) -> tuple[dict, dict]:
        """``(arrays, info)`` of an optimizer whose state is an object (``torch.optim``), for a checkpoint."""
        raise ValueError(f"checkpoint: the {self.name} backend keeps optimizer states as pytrees, not objects")

    def load_optimizer_object(self, template: Any, info: dict, arrays: dict, used: set, from_json_leaf: Callable[[Any, str], Any]) -> Any:
        """``template`` (an optimizer object) loaded with what :meth:`save_optimizer_object` wrote."""
        raise ValueError(f"checkpoint: the {self.name} backend keeps optimizer states as pytrees, not objects")

    def tree_assign(self, target: Any, values: Any) -> Any:
        """``values`` in place of ``target``'s leaves; in place where the framework mutates arrays (torch)."""
        return values

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

    # ---------------------------------------------------------------- fused neuron kernels
    def lif_sequence(self, currents: Array, v0: Array, alpha: float, threshold: float, reset: str,
                     detach_reset: bool, surrogate: Any) -> tuple[Array, Array]:
        """A voltage-based LIF layer over a whole sequence: ``(spikes (T, B, N), last membrane (B, N))``.

        ``currents`` ``(T, B, N)`` is the input current, ``v0`` ``(B, N)`` the membrane before
        the first step; per step, exactly :meth:`neuroplastic.cells.LIF.step`'s arithmetic::

            u = alpha * v + I_t;  z = spike(u - threshold);  v = reset_membrane(u, z, ...)

        This is the reference (a :meth:`scan` of that step, bit-identical to running the cell
        step by step, differentiable in both modes); backends override it with fused kernels
        that give the same forward bit for bit and the same gradients to round-off.
        """
        from ..cells.lif import reset_membrane  # cells import the backend package: import here

        def body(v: Array, current: Array) -> tuple[Array, Array]:
            u = alpha * v + current
            z = self.spike(u - threshold, surrogate)
            return reset_membrane(self, u, z, threshold, reset, detach_reset), z

        v_last, spikes = self.scan(body, v0, currents)
        return spikes, v_last

    def in_forward_mode(self, x: Array) -> bool:
        """True when ``x`` is being differentiated in forward mode (a ``jvp``), where fused kernels with a
        hand-written backward cannot run and callers use the reference path."""
        return False

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

    # ---------------------------------------------------------------- optimizers
    def make_optimizer(self, name: str, lr: float, total_steps: int | None = None, **options: Any) -> Optimizer:
        """The framework's optimizer ``name`` (adam, adamw, sgd, momentum, rmsprop); cosine decay over ``total_steps``."""
        raise ValueError(f"optimizer: the {self.name} backend has no optimizers; use 'torch' or 'jax'")


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
