"""Trace once, compile, replay: JAX-style ``jit`` for pure functions of torch tensors.

An eager torch step pays Python, dispatcher and autograd costs for every one of its small
operations.  An online rule's time step on the main job's network (OTTT: about 100 tensor
operations, forward and backward) took 0.72 ms eagerly on a 2-core AMD EPYC, 0.42 ms replayed
from its traced graph and 0.10-0.13 ms compiled by TorchInductor, as fast as JAX's compiled step.

:class:`TracedFunction` does what ``jax.jit`` does, with torch's own tools:

1. On the first call with a new *signature* (the arguments' tree structure; each tensor's shape,
   dtype, device and strides; the value of every non-tensor leaf), the function is traced with
   ``make_fx`` on *fake* tensors (shapes without data): every tensor operation, including the
   backward passes of ``torch.autograd.grad`` inside it, is recorded as one graph of ATen operations.
   Code that reads a tensor's value (``.item()``, ``bool(x)``, ``.numpy()``) cannot run on fake
   tensors and fails loudly here, as it does under ``jax.jit``.  The library's native kernels are ctypes
   calls on raw data, which a trace cannot record: the fused LIF layer runs as the custom operators
   ``neuroplastic::lif_forward`` / ``lif_backward`` (:func:`.kernels_torch.traced_ops`), the event
   products as ``neuroplastic::spike_matmul`` / ``spike_matmul_wgrad`` (:func:`.events_torch.traced_ops`),
   which choose between the event kernel and the dense product by the density when the graph runs.
2. The graph is compiled by TorchInductor (fused C++ loops; ``compile_fx``, the stage ``torch.compile``
   runs after Dynamo has captured a graph, called directly: Dynamo would add nothing to a graph that
   is already captured but its per-call guards, 0.31-0.47 against 0.22 ms a step above), or, with
   ``compiler="graph"``, replayed as traced (no compiler needed).
3. Later calls with the same signature run the compiled graph on the real tensors.

The function must be pure in its tensor arguments (as for ``jax.jit``): Python side effects run
once, at tracing; a non-tensor argument is a constant of the graph (a new value traces again), and
so is a tensor the function reads from its closure (its value at tracing, as under ``jax.jit``).
A graph that writes into one of its inputs is refused.  Calls that a graph cannot serve run ``fn``
eagerly instead, with a warning the first time: arguments that require gradients while grad mode
is on (the graph's outputs would not carry them), calls inside ``torch.func`` transforms or a
forward-AD level, non-tensor leaves that cannot be compared by value (a numpy ``SeedSequence`` key,
for instance), and new signatures once :data:`MAX_SIGNATURES` are compiled.

The compiled graph's floating-point results can differ from the eager ones by rounding
(the compiler fuses and reorders operations); the tests compare every online and offline rule's
gradients with their eager values in float64.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from ..tree import tree_leaves, tree_unflatten_like

#: compilers :class:`TracedFunction` accepts
COMPILERS = ("inductor", "graph")
#: signatures compiled per function before new ones run eagerly (each compile takes seconds)
MAX_SIGNATURES = 8
#: non-tensor leaves that are graph constants, compared by value
STATIC_TYPES = (bool, int, float, complex, str, bytes, type(None), np.generic)


class CompileError(RuntimeError):
    """A function could not be traced or compiled (names the function and the reason)."""


def _flatten(tree: Any, leaves: list) -> Any:
    """Append ``tree``'s leaves (in :func:`tree_leaves` order) to ``leaves``; a hashable description of
    its containers (types, dict keys, lengths) and of every leaf (:func:`_leaf_key`), or ``None`` when
    a leaf cannot be a graph input or constant."""
    if tree is None:
        return ()
    if isinstance(tree, dict):
        parts = []
        for k, v in tree.items():
            d = _flatten(v, leaves)
            if d is None:
                return None
            parts.append((k, d))
        return (dict, tuple(parts))
    if isinstance(tree, (list, tuple)):
        parts = []
        for v in tree:
            d = _flatten(v, leaves)
            if d is None:
                return None
            parts.append(d)
        return (type(tree), tuple(parts))
    leaves.append(tree)
    return _leaf_key(tree)


def _leaf_key(x: Any) -> Any:
    """A tensor's layout, or a static leaf's type and value; ``None`` when the leaf cannot be a graph
    input (a tensor that needs autograd while grad mode is on) or a constant (no value comparison)."""
    if isinstance(x, torch.Tensor):
        if x.requires_grad and torch.is_grad_enabled():
            return None
        return (x.shape, x.dtype, x.device, x.stride())
    if isinstance(x, STATIC_TYPES):
        return (type(x), x)
    return None


def _in_transform() -> bool:
    """Whether a ``torch.func`` transform or a forward-AD level is active (its tensors are served eagerly)."""
    return torch._C._functorch.maybe_current_level() is not None or fwAD._current_level >= 0


class TracedFunction:
    """``fn`` traced per signature and compiled (module docstring); call it as ``fn``.

    ``on_failure``: what a function that cannot be traced does (a ``ValueError`` raised by ``fn``
    itself, the library's error for bad input, always propagates unchanged): ``"raise"`` a
    :class:`CompileError`, or ``"eager"``: warn once and run ``fn`` uncompiled from then on.  With
    ``"eager"`` a compiler that fails (no C++ compiler for TorchInductor) falls back, with a warning,
    to replaying the traced graph.
    """

    def __init__(self, fn: Callable[..., Any], compiler: str = "inductor", name: str | None = None,
                 on_failure: str = "raise") -> None:
        if compiler not in COMPILERS:
            raise ValueError(f"compiler: expected one of {list(COMPILERS)}, got {compiler!r}")
        if on_failure not in ("raise", "eager"):
            raise ValueError(f"on_failure: expected 'raise' or 'eager', got {on_failure!r}")
        if not callable(fn):
            raise ValueError(f"fn: expected a callable, got {type(fn).__name__}")
        self.fn = fn
        self.compiler = compiler
        self.on_failure = on_failure
        self.name = name or getattr(fn, "__qualname__", None) or repr(fn)
        self._graphs: dict = {}
        #: calls served by ``fn`` itself, and why (``{reason: count}``)
        self.eager_calls: dict[str, int] = {}
        self._failed: str | None = None
        self._warned: set = set()

    def __repr__(self) -> str:
        return f"TracedFunction({self.name}, compiler={self.compiler!r}, signatures={len(self._graphs)})"

    @property
    def signatures(self) -> int:
        """How many signatures have been compiled."""
        return len(self._graphs)

    def __call__(self, *args: Any) -> Any:
        if self._failed is not None:
            return self._eager(args, "could not be traced")
        if _in_transform():
            return self._eager(args, "inside a torch.func transform or forward-AD level")
        leaves: list = []
        # graphs never write into their inputs (checked when traced), so inputs that share memory need
        # no signature of their own
        signature = _flatten(args, leaves)
        if signature is None:
            return self._eager(args, "an argument that requires gradients, or a non-tensor argument without a value "
                                     "to compare (a random key object?)")
        entry = self._graphs.get(signature)
        if entry is None:
            if len(self._graphs) >= MAX_SIGNATURES:
                return self._eager(args, f"{MAX_SIGNATURES} signatures compiled already (a shape or a non-tensor "
                                         "argument that changes on every call?)")
            try:
                entry = self._build(args, leaves)
            except CompileError as err:
                if self.on_failure == "raise":
                    raise
                self._failed = str(err)
                warnings.warn(f"{err}; it runs uncompiled", stacklevel=2)
                return self._eager(args, "could not be traced")
            self._graphs[signature] = entry
        graph, positions, rebuild = entry
        with torch.no_grad():
            outs = graph(*[leaves[i] for i in positions])
        return rebuild(outs)

    def _eager(self, args: tuple, reason: str) -> Any:
        self.eager_calls[reason] = self.eager_calls.get(reason, 0) + 1
        if reason not in self._warned and reason != "could not be traced":
            self._warned.add(reason)
            warnings.warn(f"{self.name} runs uncompiled: {reason}", stacklevel=3)
        return self.fn(*args)

    def _build(self, args: tuple, leaves: list) -> tuple:
        from torch.fx.experimental.proxy_tensor import make_fx

        positions = [i for i, x in enumerate(leaves) if isinstance(x, torch.Tensor)]
        recorded: dict = {}

        def flat(*tensors: torch.Tensor) -> list:
            full = list(leaves)
            for i, t in zip(positions, tensors):
                full[i] = t
            out = self.fn(*tree_unflatten_like(args, full))
            recorded["template"] = out
            return [x for x in tree_leaves(out) if isinstance(x, torch.Tensor)]

        tensors = [leaves[i] for i in positions]
        try:
            gm = make_fx(flat, tracing_mode="fake", _allow_non_fake_inputs=True)(*tensors)
        except ValueError:
            raise  # the library's own error for bad input (names the argument): not a tracing problem
        except Exception as err:  # noqa: BLE001 - re-raised with the function's name
            raise CompileError(f"{self.name}: could not be traced for compilation ({type(err).__name__}: "
                               f"{str(err).splitlines()[0] if str(err) else ''}); a compiled function must be pure in "
                               "its tensor arguments, as under jax.jit (no .item(), bool(tensor) or .numpy() on "
                               "values)") from err
        written = _written_inputs(gm)
        if written:
            raise CompileError(f"{self.name}: writes into its argument(s) in place ({', '.join(written)}); a compiled "
                               "function must be pure in its tensor arguments")
        for s in tree_leaves(recorded["template"]):
            if not isinstance(s, (torch.Tensor, STATIC_TYPES)):
                raise CompileError(f"{self.name}: returns a {type(s).__name__}, which a compiled graph cannot produce; "
                                   "return tensors or constants")
        graph = gm
        if self.compiler == "inductor":
            _broadcast_bmm_as_mm(gm)
            import torch._inductor.config as inductor_config
            from torch._inductor.compile_fx import compile_fx

            try:
                # the signature already pins every input's shape and strides: no size checks per call
                # (OTTT's online step 0.129 -> 0.120 ms, medians of 7 alternated rounds)
                with inductor_config.patch(size_asserts=False):
                    graph = compile_fx(gm, tensors)
            except Exception as err:  # noqa: BLE001 - a compiler failure (no C++ compiler, ...)
                if self.on_failure == "raise":
                    raise CompileError(f"{self.name}: TorchInductor failed ({type(err).__name__}: {err})") from err
                warnings.warn(f"{self.name}: TorchInductor failed ({type(err).__name__}: {str(err)[:300]}); "
                              "replaying the traced graph uncompiled instead", stacklevel=3)
        return graph, positions, _rebuilder(recorded["template"])


def _broadcast_bmm_as_mm(gm: Any) -> int:
    """Rewrite, in place, every batched product of traced graph ``gm`` whose left operand is the same matrix
    for the whole batch (stride 0 along it) as one product; the number rewritten.

    ``torch.func.vmap`` of ``x @ w`` over tangents of ``w`` only (RTRL's parameter tangents: ``z @ dW`` for each
    of P tangent columns) records ``bmm(expand(z), dW)``, P products of (B, k) x (k, n), about 0.3 ms each time
    for P=432, B=64, k=16 on 2 cores, where XLA runs one product.  Here ``z @ dW`` becomes one (B, k) x
    (k, P n) product (the same sums; the rounding may differ, so only compiled graphs are rewritten, not the
    replayed ``compiler="graph"`` ones, which stay exact replays of the eager operations).
    """
    aten = torch.ops.aten
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not aten.bmm.default:
            continue
        a, b = node.args[:2]
        va, vb = a.meta.get("val"), b.meta.get("val")
        if va is None or vb is None or va.ndim != 3 or va.shape[0] < 2 or va.stride(0) != 0:
            continue
        P, m, k = va.shape
        n = vb.shape[2]
        with gm.graph.inserting_before(node):
            a2 = gm.graph.call_function(aten.select.int, (a, 0, 0))  # (m, k): every batch entry is this matrix
            bt = gm.graph.call_function(aten.permute.default, (b, [1, 0, 2]))  # (k, P, n)
            bt = gm.graph.call_function(aten.clone.default, (bt,), {"memory_format": torch.contiguous_format})
            bt = gm.graph.call_function(aten.view.default, (bt, [k, P * n]))
            out = gm.graph.call_function(aten.mm.default, (a2, bt))  # (m, P n)
            out = gm.graph.call_function(aten.view.default, (out, [m, P, n]))
            out = gm.graph.call_function(aten.permute.default, (out, [1, 0, 2]))
            out = gm.graph.call_function(aten.clone.default, (out,), {"memory_format": torch.contiguous_format})
        out.meta["val"] = node.meta["val"]
        node.replace_all_uses_with(out)
        gm.graph.erase_node(node)
        count += 1
    if count:
        gm.graph.lint()
        gm.recompile()
    return count


def _written_inputs(gm: Any) -> list[str]:
    """The operations of traced graph ``gm`` that write into one of its inputs (or a view of one)."""
    def base_input(node: Any) -> bool:
        while node.op == "call_function":
            schema = getattr(node.target, "_schema", None)
            if schema is None or not schema.returns or schema.returns[0].alias_info is None or not node.args:
                return False
            node = node.args[0]  # a view: follow it to what it views
        return node.op == "placeholder"

    found = []
    for node in gm.graph.nodes:
        schema = getattr(node.target, "_schema", None) if node.op == "call_function" else None
        if schema is None:
            continue
        for arg, value in zip(schema.arguments, node.args):
            if arg.alias_info is not None and arg.alias_info.is_write and hasattr(value, "op") and base_input(value):
                found.append(str(node.target))
    return found


def _rebuilder(template: Any) -> Callable[[list], Any]:
    """A function that puts a graph's output tensors (in :func:`tree_leaves` order) back into ``template``'s
    structure, with its non-tensor leaves as they were at tracing.

    Generated as one Python expression per structure (dicts, lists, tuples, named tuples): 3 us against
    50 us for a tree walk over an online step's outputs, paid at every call."""
    constants: list = []
    count = [0]

    def expr(node: Any) -> str:
        if node is None:
            return "None"
        if isinstance(node, dict):
            items = []
            for k, v in node.items():
                constants.append(k)
                items.append(f"C[{len(constants) - 1}]: {expr(v)}")
            return "{" + ", ".join(items) + "}"
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            constants.append(type(node))
            return f"C[{len(constants) - 1}](" + ", ".join(expr(v) for v in node) + ")"
        if isinstance(node, (list, tuple)):
            inner = ", ".join(expr(v) for v in node)
            if isinstance(node, list):
                return "[" + inner + "]"
            return "(" + inner + ("," if len(node) == 1 else "") + ")"
        if isinstance(node, torch.Tensor):
            count[0] += 1
            return f"T[{count[0] - 1}]"
        constants.append(node)
        return f"C[{len(constants) - 1}]"

    body = expr(template)
    build = eval(f"lambda T: {body}", {"C": constants})  # noqa: S307 - an expression built above from types and indices only
    return build


__all__ = ["COMPILERS", "CompileError", "MAX_SIGNATURES", "TracedFunction"]
