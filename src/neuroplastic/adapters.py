"""Adapters: train a user's existing PyTorch or JAX (Equinox, Flax, plain-function) model.

Architecture-agnostic rules (BPTT/backprop, Manhattan, MALA/HMC) only need what a
:class:`~neuroplastic.network.Network` offers them: ``n_in``, ``spiking`` (one bool per
block) and ``run(params, xs, state=None, record=False, truncate=None) -> (ys,
final_state, rec)`` on time-major input ``(T, B, n_in)`` with ``rec["out"]`` the list of
block outputs.  An adapter gives a framework model exactly that, so the same rule code
and :class:`~neuroplastic.train.Trainer` train it::

    import torch
    mlp = torch.nn.Sequential(torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    net = adapt(mlp, n_in=784)                # a TorchModuleAdapter
    params = net.params()                      # {"0.weight": tensor, ...}
    params, hist = Trainer(net, "bptt", backend="torch").fit(params, data)
    net.to_model(params)                       # writes the trained values back into ``mlp``

    import equinox as eqx
    mlp = eqx.nn.MLP(784, 10, 64, 2, key=jax.random.PRNGKey(0))
    net = adapt(mlp, n_in=784)                # an EquinoxAdapter (applied per example with vmap)
    trained_mlp = net.to_model(params)         # a new Equinox module (they are immutable)

The model is applied to every time step independently: ``xs (T, B, F)`` is reshaped to
``(T*B, F)``, passed through the model, and reshaped back to ``(T, B, n_out)``.  A model
that consumes whole sequences itself can be wrapped with ``time_distributed=False``
(it is then called on ``(T, B, F)`` directly).  Data with one time step (``T = 1``,
e.g. flattened images) makes an ordinary feed-forward classifier; with the ``ce_sum``
loss its scores are the model's logits.

Parameters are exposed as a flat ``{name: array}`` dict, so that every rule, optimizer
and pytree helper of the library (which handle dicts, lists and tuples) works on them:
torch parameter names from ``named_parameters()``; for JAX models, the key path of each
array leaf (``jax.tree_util.keystr``).  Buffers (torch) and non-array fields (Equinox)
are held fixed; models whose forward pass mutates buffers (BatchNorm in train mode)
are run functionally and the mutation is not kept.

This module imports torch, JAX and Equinox lazily, only when a model of that kind is
wrapped; like the backend layer, it is a place where framework imports are allowed.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .backend import ops_for
from .network import check_time_major


def _check_n_in(n_in: Any) -> int:
    if not (isinstance(n_in, (int, np.integer)) and not isinstance(n_in, bool) and n_in > 0):
        raise ValueError(f"n_in must be a positive integer (the number of input features), got {n_in!r}")
    return int(n_in)


class ModelAdapter:
    """What rules and the trainer use from a :class:`Network`, for a framework model.

    Subclasses implement :meth:`params`, :meth:`apply` (the model on ``(N, F)`` with given
    params) and :meth:`to_model`.
    """

    def __init__(self, n_in: int, spiking: bool | Sequence[bool] = False, time_distributed: bool = True) -> None:
        self.n_in = _check_n_in(n_in)
        if isinstance(spiking, (bool, np.bool_)):
            spiking = [bool(spiking)]
        spiking = list(spiking)
        if len(spiking) != 1 or not isinstance(spiking[0], (bool, np.bool_)):
            raise ValueError(f"spiking: expected one bool (whether the model's output is spikes), got {spiking!r}")
        self._spiking = [bool(spiking[0])]
        self.time_distributed = bool(time_distributed)

    @property
    def spiking(self) -> list[bool]:
        """One entry per block; an adapted model is one block."""
        return list(self._spiking)

    # ------------------------------------------------------------------ to implement
    def params(self) -> dict:
        """The model's current trainable parameters as a flat ``{name: array}`` dict."""
        raise NotImplementedError

    def apply(self, params: dict, x: Any) -> Any:
        """The model with ``params`` on ``x`` (``(N, F)``, or ``(T, B, F)`` when not time-distributed)."""
        raise NotImplementedError

    def to_model(self, params: dict) -> Any:
        """The user's model holding ``params``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ Network interface
    def init(self, seed: int = 0, backend: Any = None, dtype: str | None = None, device: str | None = None) -> dict:
        """The wrapped model's current parameters (``seed`` is ignored: the model is already initialised)."""
        return self.params()

    def check_input(self, xs: Any, name: str = "xs") -> None:
        """Raise a ``ValueError`` naming ``name`` unless ``xs`` is ``(T, B, n_in)``."""
        check_time_major(xs, self.n_in, name, finite=False)

    def run(
        self,
        params: dict,
        xs: Any,
        state: Any = None,
        record: bool = False,
        truncate: int | None = None,
    ) -> tuple[Any, dict, dict]:
        """``(ys, final_state, rec)`` like :meth:`Network.run`; ``rec["out"] = [ys]``.

        The model is stateless across steps (``final_state`` is ``{}``), so ``state`` and
        ``truncate`` change nothing; ``record=True`` adds ``rec["state"] = [{}]``.
        """
        self.check_input(xs)
        B = ops_for(xs)
        T, batch = xs.shape[0], xs.shape[1]
        if self.time_distributed:
            flat = B.reshape(xs, (T * batch, self.n_in))
            out = self.apply(params, flat)
            ys = B.reshape(out, (T, batch) + tuple(out.shape[1:]))
        else:
            ys = self.apply(params, xs)
        rec: dict = {"out": [ys]}
        if record:
            rec["state"] = [{}]
        return ys, {}, rec

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_in={self.n_in}, spiking={self._spiking[0]}, time_distributed={self.time_distributed})"


class TorchModuleAdapter(ModelAdapter):
    """A ``torch.nn.Module`` run functionally with ``torch.func.functional_call``.

    ``params()`` returns detached copies of ``named_parameters()``; buffers are passed
    unchanged.  :meth:`to_model` copies parameter values back into the module in place.
    """

    def __init__(self, module: Any, n_in: int, spiking: bool | Sequence[bool] = False, time_distributed: bool = True) -> None:
        import torch

        if not isinstance(module, torch.nn.Module):
            raise ValueError(f"module: expected a torch.nn.Module, got {type(module).__name__}")
        super().__init__(n_in, spiking, time_distributed)
        self.module = module
        self._names = [n for n, _ in module.named_parameters()]
        if not self._names:
            raise ValueError("module: the torch module has no parameters to train")

    def params(self) -> dict:
        return {n: p.detach().clone() for n, p in self.module.named_parameters()}

    def apply(self, params: dict, x: Any) -> Any:
        from torch.func import functional_call

        missing = [n for n in self._names if n not in params]
        if missing:
            raise ValueError(f"params: missing torch parameters {missing}")
        buffers = dict(self.module.named_buffers())
        # run in the input's dtype (the backend's), whatever dtype the module was built in
        params = {n: (p.to(x.dtype) if p.is_floating_point() and p.dtype != x.dtype else p) for n, p in params.items()}
        buffers = {n: (b.to(x.dtype) if b.is_floating_point() and b.dtype != x.dtype else b) for n, b in buffers.items()}
        return functional_call(self.module, {**buffers, **params}, (x,))

    def to_model(self, params: dict) -> Any:
        import torch

        with torch.no_grad():
            for n, p in self.module.named_parameters():
                if n not in params:
                    raise ValueError(f"params: missing torch parameter {n!r}")
                p.copy_(torch.as_tensor(params[n]).to(device=p.device, dtype=p.dtype))
        return self.module


class JaxFunctionAdapter(ModelAdapter):
    """A pure JAX model ``apply_fn(params, x)`` with a parameter pytree (Flax, Haiku, hand-written).

    For a Flax linen module: ``JaxFunctionAdapter(model.apply, variables, n_in)``; for a
    Flax NNX module: ``graphdef, state = nnx.split(m)`` and
    ``apply_fn = lambda s, x: nnx.merge(graphdef, s)(x)``.  ``per_example=True`` applies
    ``apply_fn`` to one example at a time with ``jax.vmap`` (for unbatched models).

    Parameters are exposed as ``{keystr(path): leaf}`` over the pytree's array leaves;
    :meth:`to_model` returns the original pytree structure with the given values.
    """

    def __init__(
        self,
        apply_fn: Callable[[Any, Any], Any],
        params: Any,
        n_in: int,
        spiking: bool | Sequence[bool] = False,
        time_distributed: bool = True,
        per_example: bool = False,
    ) -> None:
        import jax

        if not callable(apply_fn):
            raise ValueError(f"apply_fn: expected a callable apply_fn(params, x), got {type(apply_fn).__name__}")
        super().__init__(n_in, spiking, time_distributed)
        self.apply_fn = apply_fn
        self.per_example = bool(per_example)
        leaves_with_paths, self._treedef = jax.tree_util.tree_flatten_with_path(params)
        if not leaves_with_paths:
            raise ValueError("params: the parameter pytree has no array leaves")
        self._keys = [jax.tree_util.keystr(path) for path, _ in leaves_with_paths]
        if len(set(self._keys)) != len(self._keys):
            raise ValueError("params: two leaves of the parameter pytree have the same key path")
        self._values = [leaf for _, leaf in leaves_with_paths]

    def params(self) -> dict:
        import jax.numpy as jnp

        return {k: jnp.asarray(v) for k, v in zip(self._keys, self._values)}

    def unflatten(self, params: dict) -> Any:
        """The original parameter pytree holding the values of the flat dict ``params``."""
        missing = [k for k in self._keys if k not in params]
        if missing:
            raise ValueError(f"params: missing parameters {missing}")
        return self._treedef.unflatten([params[k] for k in self._keys])

    def apply(self, params: dict, x: Any) -> Any:
        import jax

        tree = self.unflatten(params)
        if self.per_example:
            return jax.vmap(lambda xi: self.apply_fn(tree, xi))(x)
        return self.apply_fn(tree, x)

    def to_model(self, params: dict) -> Any:
        return self.unflatten(params)


class EquinoxAdapter(JaxFunctionAdapter):
    """An Equinox module, split with ``eqx.partition(module, eqx.is_inexact_array)``.

    Equinox layers act on one example, so by default the module is applied per example
    with ``jax.vmap`` (``per_example=False`` for a module that takes a batch).
    :meth:`to_model` returns a new module (``eqx.combine``) holding the given params.
    """

    def __init__(
        self,
        module: Any,
        n_in: int,
        spiking: bool | Sequence[bool] = False,
        time_distributed: bool = True,
        per_example: bool = True,
    ) -> None:
        import equinox as eqx

        if not isinstance(module, eqx.Module):
            raise ValueError(f"module: expected an equinox.Module, got {type(module).__name__}")
        arrays, self.static = eqx.partition(module, eqx.is_inexact_array)
        self.module = module

        def apply_fn(arr: Any, x: Any) -> Any:
            return eqx.combine(arr, self.static)(x)

        super().__init__(apply_fn, arrays, n_in, spiking, time_distributed, per_example)

    def to_model(self, params: dict) -> Any:
        import equinox as eqx

        return eqx.combine(self.unflatten(params), self.static)


def _is_torch_module(model: Any) -> bool:
    return any(c.__module__.startswith("torch.nn") and c.__name__ == "Module" for c in type(model).__mro__)


def _is_equinox_module(model: Any) -> bool:
    return any(c.__module__.startswith("equinox") and c.__name__ == "Module" for c in type(model).__mro__)


def adapt(model: Any, n_in: int, params: Any = None, **options: Any) -> ModelAdapter:
    """Wrap ``model`` for the library's rules and trainer.

    ``model`` is a ``torch.nn.Module``, an Equinox module, or a pure function
    ``apply(params, x)`` together with its ``params`` pytree (Flax linen: ``model.apply``
    and its variables).  ``options`` go to the adapter (``spiking``, ``time_distributed``,
    ``per_example``).
    """
    if isinstance(model, ModelAdapter):
        return model
    if _is_torch_module(model):
        return TorchModuleAdapter(model, n_in, **options)
    if _is_equinox_module(model):
        return EquinoxAdapter(model, n_in, **options)
    if callable(model):
        if params is None:
            raise ValueError("params: wrapping a function apply(params, x) needs its parameter pytree")
        return JaxFunctionAdapter(model, params, n_in, **options)
    raise ValueError(f"model: cannot adapt a {type(model).__name__}; expected a torch.nn.Module, an equinox.Module or apply(params, x)")


__all__ = ["EquinoxAdapter", "JaxFunctionAdapter", "ModelAdapter", "TorchModuleAdapter", "adapt"]
