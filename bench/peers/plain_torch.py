"""Plain torch on the peers problem (``bench/peers.py``): the hand-written reference for torch.

Layer by layer: one ``(T, B, n) @ (n, m)`` matmul per layer over all steps, then a Python
loop over time for that layer's LIF (over ``unbind``, whose backward does not write a
full-size zero array per step as indexing ``x[t]`` does).  Neuron: neuroplastic's
semantics, ``u = decay v + I``, ``z = H(u - threshold)`` with the fast-sigmoid surrogate
``1/(1+slope|x|)^2`` (an ``autograd.Function``), ``v = u - z.detach() threshold``.  Loss:
mean cross-entropy of the output spike counts; ``torch.autograd.grad`` of it, eager.
"""

from __future__ import annotations

from typing import Any

from bench import peers


def make_loss(decay: float, threshold: float, slope: float) -> Any:
    """``loss(params, xs, labels)``, layer by layer."""
    import torch

    class Spike(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            return (x > 0).to(x.dtype)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return g / (1.0 + slope * x.abs()) ** 2

    def lif_seq(current: Any) -> Any:
        v = torch.zeros_like(current[0])
        out = []
        for i in current.unbind(0):
            u = decay * v + i
            z = Spike.apply(u - threshold)
            v = u - z.detach() * threshold
            out.append(z)
        return torch.stack(out)

    def loss(params: list, xs: Any, labels: Any) -> Any:
        h = xs
        for w, b in zip(params[0::2], params[1::2]):
            h = lif_seq(h @ w + b)
        return torch.nn.functional.cross_entropy(h.sum(0), labels)

    return loss


def measure(config: dict) -> dict:
    """Time and check one H; runs in the child process."""
    import torch

    cfg = {**peers.DEFAULTS, **config}
    problem = peers.load_problem(cfg["problem"])
    params = [torch.tensor(problem[k], requires_grad=True) for k in peers.GRAD_NAMES]
    xs, labels = torch.tensor(problem["xs"]), torch.tensor(problem["labels"])
    loss_fn = make_loss(cfg["decay"], cfg["threshold"], cfg["slope"])

    def step() -> tuple:
        loss = loss_fn(params, xs, labels)
        return loss.detach(), torch.autograd.grad(loss, params)

    result = peers.measure_step(cfg, step, lambda o: o, lambda o: (float(o[0]), [g.numpy() for g in o[1]]))
    result["threads"] = peers.torch_threads()
    return result
