"""optax optimizers behind the library's optimizer interface (JAX backend)."""

from __future__ import annotations

from typing import Any

import optax

from .base import Optimizer


class OptaxOptimizer(Optimizer):
    """An optax gradient transformation (JAX backend); cosine decay over ``total_steps`` if given."""

    def __init__(self, name: str, lr: float, total_steps: int | None = None, **options: Any) -> None:
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
        updates, state = self.tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    def preview(self, grads: Any, state: Any, params: Any) -> Any:
        return self.tx.update(grads, state, params)[0]
