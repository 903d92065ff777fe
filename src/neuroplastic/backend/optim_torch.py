"""``torch.optim`` optimizers behind the library's optimizer interface (torch backend)."""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from ..tree import tree_leaves, tree_unflatten_like
from .base import Optimizer, cosine_lr


#: optimizers with a fused torch kernel (``fused=True``) on the CPU and CUDA
FUSED = ("adam", "adamw", "sgd", "momentum")


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

    def kernel_options(self, leaves: list) -> dict:
        """The options with torch's fastest update kernels where the caller chose none.

        Fused (one kernel per step for all tensors: ``fused=True``) for Adam, AdamW and SGD on
        floating-point CPU or CUDA tensors, else multi-tensor (``foreach=True``; on the CPU torch
        defaults to one kernel per tensor).  The foreach path gives the per-tensor numbers bit for bit,
        the fused one to float rounding (both tested).  One Adam step over the main job's parameters
        took 155 us with foreach and 59 us fused on a 2-core AMD EPYC (one thread), a quarter of an
        online rule's time step on torch.
        """
        options = dict(self.options)
        if "foreach" in options or "fused" in options:
            return options
        fusable = self.name in FUSED and bool(leaves) and all(
            p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in leaves)
        options["fused" if fusable else "foreach"] = True
        return options

    def init(self, params: Any) -> Any:
        lr0 = self.lr(0) if callable(self.lr) else self.lr
        leaves = tree_leaves(params)
        opt = self.cls(leaves, lr=lr0, **self.kernel_options(leaves))
        opt.step_count = 0
        return opt

    def update(self, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
        leaves = tree_leaves(params)
        fused = _fused_adam_lists(state, leaves)
        if fused is not None:
            return self._fused_adam_step(fused, grads, state, params, leaves)
        for p, g in zip(leaves, tree_leaves(grads)):
            p.grad = _as_grad(g, p)
        if callable(self.lr):
            for group in state.param_groups:
                group["lr"] = self.lr(state.step_count)
        with torch.no_grad():
            state.step()
        state.step_count += 1
        # what ``state.zero_grad(set_to_none=True)`` does for these tensors, without its 23 us of
        # bookkeeping (an online rule updates at every time step)
        for p in leaves:
            p.grad = None
        return params, state

    def _fused_adam_step(self, fused: tuple, grads: Any, state: Any, params: Any, leaves: list) -> tuple[Any, Any]:
        """What ``state.step()`` does for a fused Adam / AdamW (torch's ``_fused_adam``: the step counters, then one
        kernel over all tensors, with the same arguments), without ``Optimizer.step``'s per-call bookkeeping
        (hooks, grouping the tensors, reading each parameter's state: about 70 of an online step's 120 us).
        Bit-equal to ``state.step()`` (tested)."""
        group, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = fused
        grad_list = [_as_grad(g, p) for p, g in zip(leaves, tree_leaves(grads))]
        if callable(self.lr):
            group["lr"] = self.lr(state.step_count)
        beta1, beta2 = group["betas"]
        kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
        with torch.no_grad():
            torch._foreach_add_(steps, 1)
            kernel(group["params"], grad_list, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, amsgrad=group["amsgrad"],
                   lr=group["lr"], beta1=float(beta1), beta2=float(beta2), weight_decay=group["weight_decay"], eps=group["eps"],
                   maximize=group["maximize"], grad_scale=None, found_inf=None)
        state.step_count += 1
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
        twin = self.cls(clones, lr=state.param_groups[0]["lr"], **self.kernel_options(clones))
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


def _as_grad(g: Any, p: Any) -> Any:
    """``g`` as parameter ``p``'s gradient: in ``p``'s dtype and outside any autograd graph."""
    return g if g.dtype == p.dtype and not g.requires_grad else g.detach().to(p.dtype)


def _fused_adam_lists(opt: Any, leaves: list) -> tuple | None:
    """``(group, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps)`` for :meth:`TorchOptimizer._fused_adam_step`, or
    ``None`` where ``opt.step()`` must run: not a fused ``Adam`` / ``AdamW`` with one parameter group over
    ``leaves`` (one device and dtype, every parameter's state made by a first step), or step hooks, gradient
    scaling, ``differentiable`` or ``capturable`` in use.  Kept on the optimizer (``neuroplastic_fused_lists``)
    while its parameter group is the same dict (``load_state_dict`` replaces the groups with the state)."""
    if len(opt.param_groups) != 1 or _step_hooks(opt) or getattr(opt, "grad_scale", None) is not None \
            or getattr(opt, "found_inf", None) is not None:
        return None
    group = opt.param_groups[0]
    params = group["params"]
    if len(params) != len(leaves) or any(p is not q for p, q in zip(params, leaves)):
        return None  # not the tensors this optimizer updates: Optimizer.step decides (it skips them)
    cached = getattr(opt, "neuroplastic_fused_lists", None)
    if cached is not None and cached[0] is group:  # load_state_dict makes new group dicts (and state tensors)
        return cached
    if type(opt) not in (torch.optim.Adam, torch.optim.AdamW) or not group.get("fused") or group.get("differentiable") \
            or group.get("capturable") or len({(p.device, p.dtype) for p in params}) != 1:
        return None
    names = ("exp_avg", "exp_avg_sq", "step") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
    states = [opt.state.get(p, {}) for p in params]
    if not all(all(n in st for n in names) for st in states):
        return None  # before the first step: torch.optim creates the state
    lists = ([st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states],
             [st["max_exp_avg_sq"] for st in states] if group["amsgrad"] else [], [st["step"] for st in states])
    opt.neuroplastic_fused_lists = fused = (group, *lists)
    return fused


def _step_hooks(opt: Any) -> bool:
    from torch.optim import optimizer as optimizer_module

    return bool(opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks
                or optimizer_module._global_optimizer_pre_hooks or optimizer_module._global_optimizer_post_hooks)


# ---------------------------------------------------------------------------- checkpoints
def _jsonable(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise ValueError(f"checkpoint: cannot store optimizer setting of type {type(x).__name__}")


def _like(value: Any, template: Any) -> Any:
    """JSON lists back to tuples where the template has tuples (``betas``)."""
    if isinstance(template, tuple) and isinstance(value, list):
        return tuple(_like(v, t) for v, t in zip(value, template)) if len(value) == len(template) else tuple(value)
    if isinstance(template, dict) and isinstance(value, dict):
        return {k: _like(v, template.get(k)) for k, v in value.items()}
    return value


def save_state(opt: Any, json_leaf: Callable[[Any, str], Any]) -> tuple[dict, dict]:
    """``(arrays, info)``: a ``torch.optim`` optimizer's tensors as numpy arrays (keyed
    ``opt.state.<i>.<name>``) and everything else as JSON for a checkpoint's sidecar."""
    sd = opt.state_dict()
    arrays: dict = {}
    other: dict = {}
    for idx, entries in sd["state"].items():
        for name, v in entries.items():
            key = f"opt.state.{idx}.{name}"
            if isinstance(v, torch.Tensor):
                arrays[key] = v.detach().cpu().numpy()
                other[key] = {"tensor": True, "dtype": str(v.dtype).replace("torch.", "")}
            else:
                other[key] = json_leaf(v, key)
    return arrays, {
        "kind": "torch",
        "class": type(opt).__name__,
        "param_groups": _jsonable(sd["param_groups"]),
        "state": {str(i): sorted(e) for i, e in sd["state"].items()},
        "entries": other,
        "step_count": getattr(opt, "step_count", None),
    }


def load_state(template: Any, info: dict, tensors: dict, used: set, from_json_leaf: Callable[[Any, str], Any]) -> Any:
    """``template`` (a ``torch.optim`` optimizer) loaded with what :func:`save_state` wrote; named errors."""
    if info.get("kind") != "torch":
        raise ValueError(f"checkpoint: holds a {info.get('kind')!r} optimizer state but the run uses torch.optim")
    if info["class"] != type(template).__name__:
        raise ValueError(f"checkpoint: optimizer is {info['class']} but the run uses {type(template).__name__}")
    tsd = template.state_dict()
    groups = info["param_groups"]
    if len(groups) != len(tsd["param_groups"]):
        raise ValueError("checkpoint: optimizer has a different number of parameter groups than the run")
    groups = [_like(g, t) for g, t in zip(groups, tsd["param_groups"])]
    state: dict = {}
    for idx, names in info["state"].items():
        entry = {}
        for name in names:
            key = f"opt.state.{idx}.{name}"
            meta = info["entries"][key]
            if meta.get("tensor"):
                if key not in tensors:
                    raise ValueError(f"checkpoint: {key} is missing")
                used.add(key)
                t = torch.from_numpy(tensors[key].copy())
                if str(t.dtype).replace("torch.", "") != meta["dtype"]:
                    raise ValueError(f"checkpoint: {key} has dtype {t.dtype} but was saved as {meta['dtype']}")
                entry[name] = t
            else:
                entry[name] = from_json_leaf(meta, key)
        state[int(idx)] = entry
    try:
        template.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, RuntimeError, KeyError) as err:
        raise ValueError(f"checkpoint: the optimizer state does not fit the run ({err})") from None
    if info.get("step_count") is not None:
        template.step_count = info["step_count"]
    return template
