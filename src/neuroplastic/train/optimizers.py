"""Optimizers with one functional interface on both backends.

``opt.init(params) -> state`` and ``opt.update(grads, state, params) -> (params, state)``.
On JAX the named optimizers are optax transforms; on torch they are ``torch.optim``
optimizers driven through the same two calls (their state is the ``torch.optim`` object,
which updates the parameter tensors in place).  ``naive`` adds ``-lr * grads`` as given,
for rules that produce weight changes directly.
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import Backend, get_backend
from ..tree import tree_leaves, tree_map

OPTIMIZERS = ("adam", "adamw", "sgd", "momentum", "rmsprop", "naive")


class Optimizer:
    name = "optimizer"

    def init(self, params: Any) -> Any:
        raise NotImplementedError

    def update(self, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        raise NotImplementedError


class NaiveOptimizer(Optimizer):
    """``params <- params - lr * grads``: the update exactly as the rule gives it."""

    name = "naive"

    def __init__(self, lr: float = 1.0) -> None:
        self.lr = lr

    def init(self, params: Any) -> Any:
        return {}

    def update(self, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        return tree_map(lambda p, g: p - self.lr * g, params, grads), state


class OptaxOptimizer(Optimizer):
    """An optax gradient transformation (JAX backend)."""

    def __init__(self, name: str, lr: float, **options: Any) -> None:
        import optax

        self.name = name
        makers = {
            "adam": lambda: optax.adam(lr, **options),
            "adamw": lambda: optax.adamw(lr, **options),
            "sgd": lambda: optax.sgd(lr, **options),
            "momentum": lambda: optax.sgd(lr, momentum=options.pop("momentum", 0.9), **options),
            "rmsprop": lambda: optax.rmsprop(lr, **options),
        }
        self.tx = makers[name]()

    def init(self, params: Any) -> Any:
        return self.tx.init(params)

    def update(self, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        import optax

        updates, state = self.tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state


class TorchOptimizer(Optimizer):
    """A ``torch.optim`` optimizer over the parameter tensors (torch backend)."""

    def __init__(self, name: str, lr: float, **options: Any) -> None:
        import torch

        self.name = name
        classes = {
            "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
            "momentum": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
        }
        if name == "momentum":
            options.setdefault("momentum", 0.9)
        self.cls, self.lr, self.options = classes[name], lr, options

    def init(self, params: Any) -> Any:
        return self.cls(tree_leaves(params), lr=self.lr, **self.options)

    def update(self, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        import torch

        leaves = tree_leaves(params)
        for p, g in zip(leaves, tree_leaves(grads)):
            p.grad = g.detach().to(p.dtype)
        with torch.no_grad():
            state.step()
        state.zero_grad(set_to_none=True)
        return params, state


def make_optimizer(name: str, lr: float, backend: str | Backend = "jax", **options: Any) -> Optimizer:
    """Optimizer ``name`` (one of ``OPTIMIZERS``) with learning rate ``lr`` for ``backend``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr: learning rate must be a positive number, got {lr!r}")
    if name == "naive":
        return NaiveOptimizer(lr)
    B = get_backend(backend)
    return OptaxOptimizer(name, lr, **options) if B.name == "jax" else TorchOptimizer(name, lr, **options)
