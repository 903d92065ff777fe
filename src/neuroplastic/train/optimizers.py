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
from ..tree import tree_leaves, tree_map, tree_unflatten_like

OPTIMIZERS = ("adam", "adamw", "sgd", "momentum", "rmsprop", "naive")
SCHEDULES = ("constant", "cosine")


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


class NaiveOptimizer(Optimizer):
    """``params <- params - lr * grads``: the update exactly as the rule gives it."""

    name = "naive"

    def __init__(self, lr: float = 1.0) -> None:
        self.lr = lr

    def init(self, params: Any) -> Any:
        return {}

    def update(self, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        return tree_map(lambda p, g: p - self.lr * g, params, grads), state

    def preview(self, grads: Any, state: Any, params: Any) -> Any:
        return tree_map(lambda g: -self.lr * g, grads)


class OptaxOptimizer(Optimizer):
    """An optax gradient transformation (JAX backend); cosine decay over ``total_steps`` if given."""

    def __init__(self, name: str, lr: float, total_steps: int | None = None, **options: Any) -> None:
        import optax

        self.name = name
        if total_steps is not None:  # cosine decay to zero, as cosine_lr
            lr = optax.cosine_decay_schedule(lr, total_steps)
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

    def preview(self, grads: Any, state: Any, params: Any) -> Any:
        return self.tx.update(grads, state, params)[0]


class TorchOptimizer(Optimizer):
    """A ``torch.optim`` optimizer over the parameter tensors (torch backend).

    With ``total_steps`` the rate follows :func:`cosine_lr`, set on every parameter group
    before each step (steps are counted in the optimizer's own ``step_count`` attribute).
    """

    def __init__(self, name: str, lr: float, total_steps: int | None = None, **options: Any) -> None:
        import torch

        self.name = name
        classes = {
            "adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
            "momentum": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
        }
        if name == "momentum":
            options.setdefault("momentum", 0.9)
        self.cls, self.options = classes[name], options
        self.lr: Any = cosine_lr(lr, total_steps) if total_steps is not None else lr

    def init(self, params: Any) -> Any:
        lr0 = self.lr(0) if callable(self.lr) else self.lr
        opt = self.cls(tree_leaves(params), lr=lr0, **self.options)
        opt.step_count = 0
        return opt

    def update(self, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        import torch

        leaves = tree_leaves(params)
        for p, g in zip(leaves, tree_leaves(grads)):
            p.grad = g.detach().to(p.dtype)
        if callable(self.lr):
            for group in state.param_groups:
                group["lr"] = self.lr(state.step_count)
        with torch.no_grad():
            state.step()
        state.step_count += 1
        state.zero_grad(set_to_none=True)
        return params, state

    def preview(self, grads: Any, state: Any, params: Any) -> Any:
        """Step a copy of the optimizer on copies of the parameters."""
        import copy

        import torch

        leaves = tree_leaves(params)
        clones = [p.detach().clone() for p in leaves]
        twin = self.cls(clones, lr=state.param_groups[0]["lr"], **self.options)
        twin.load_state_dict(copy.deepcopy(state.state_dict()))
        for c, g in zip(clones, tree_leaves(grads)):
            c.grad = g.detach().to(c.dtype).clone()
        if callable(self.lr):
            for group in twin.param_groups:
                group["lr"] = self.lr(state.step_count)
        with torch.no_grad():
            twin.step()
        deltas = [c - p.detach() for c, p in zip(clones, leaves)]
        return tree_unflatten_like(params, deltas)


def make_optimizer(
    name: str, lr: float, backend: str | Backend = "jax", schedule: str = "constant", total_steps: int | None = None, **options: Any
) -> Optimizer:
    """Optimizer ``name`` (one of ``OPTIMIZERS``) with learning rate ``lr`` for ``backend``.

    ``schedule="cosine"`` decays the rate to zero over ``total_steps`` optimizer steps.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: unknown optimizer {name!r}; choose one of {list(OPTIMIZERS)}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr: learning rate must be a positive number, got {lr!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: unknown schedule {schedule!r}; choose one of {list(SCHEDULES)}")
    if schedule == "cosine":
        if not (isinstance(total_steps, int) and total_steps > 0):
            raise ValueError(f"total_steps: the cosine schedule needs a positive number of steps, got {total_steps!r}")
        if name == "naive":
            raise ValueError("schedule: the naive optimizer applies updates as given; use schedule='constant'")
    else:
        total_steps = None
    if name == "naive":
        return NaiveOptimizer(lr)
    B = get_backend(backend)
    cls = OptaxOptimizer if B.name == "jax" else TorchOptimizer
    return cls(name, lr, total_steps=total_steps, **options)
