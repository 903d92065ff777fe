"""Optimizers with one functional interface on both backends.

``opt.init(params) -> state`` and ``opt.update(grads, state, params) -> (params, state)``.
On JAX the named optimizers are optax transforms; on torch they are ``torch.optim``
optimizers driven through the same two calls (their state is the ``torch.optim`` object,
which updates the parameter tensors in place); both live in the backend layer
(``backend/optim_jax.py``, ``backend/optim_torch.py``) and are made by
``Backend.make_optimizer``.  ``naive`` adds ``-lr * grads`` as given, for rules that
produce weight changes directly.
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import Backend, get_backend
from ..backend.base import Optimizer, cosine_lr
from ..tree import tree_map

OPTIMIZERS = ("adam", "adamw", "sgd", "momentum", "rmsprop", "naive")
SCHEDULES = ("constant", "cosine")


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
    return get_backend(backend).make_optimizer(name, lr, total_steps=total_steps, **options)


__all__ = ["NaiveOptimizer", "OPTIMIZERS", "Optimizer", "SCHEDULES", "cosine_lr", "make_optimizer"]
