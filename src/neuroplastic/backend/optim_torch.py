"""``torch.optim`` optimizers behind the library's optimizer interface (torch backend)."""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..tree import tree_leaves, tree_unflatten_like
from .base import Optimizer, cosine_lr


class TorchOptimizer(Optimizer):
    """A ``torch.optim`` optimizer over the parameter tensors (torch backend).

    With ``total_steps`` the rate follows :func:`cosine_lr`, set on every parameter group
    before each step (steps are counted in the optimizer's own ``step_count`` attribute).
    """

    def __init__(self, name: str, lr: float, total_steps: int | None = None, **options: Any) -> None:
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

    def snapshot(self, state: Any) -> Any:
        return copy.deepcopy(state.state_dict()), state.step_count

    def restore(self, state: Any, snapshot: Any) -> Any:
        state.load_state_dict(snapshot[0])
        state.step_count = snapshot[1]
        return state

    def preview(self, grads: Any, state: Any, params: Any) -> Any:
        """Step a copy of the optimizer on copies of the parameters."""
        import copy

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
