"""SpikingJelly 2.0 on the peers problem (``bench/peers.py``); runs in ``.bench-venvs/spikingjelly``.

``torch.nn.Linear`` layers applied to the whole ``(T, B, n)`` sequence and
``neuron.LIFNode(tau=10, decay_input=False, v_threshold=1, v_reset=None, detach_reset=True,
step_mode="m")``: ``H = V - V/10 + X`` (decay 0.9 up to rounding), spike ``H >= 1``, soft
(subtractive) reset with the spike detached: neuroplastic's semantics.  The network is
reset (``functional.reset_net``) before every pass.  ``config["surrogate"]``:

* ``fast_sigmoid``: a user-defined surrogate ``1/(1+25|x|)^2`` (SpikingJelly has no
  built-in one of that slope); SpikingJelly then runs its Torch reference multistep path
  (a Python loop over time with autograd per step);
* ``softsign``: the built-in ``surrogate.SoftSign(alpha=25)``, whose derivative is
  ``12.5/(1+25|x|)^2``; built-in surrogates run SpikingJelly's registered multistep CPU
  operator (one autograd node per layer).  Same forward pass; gradients of that surrogate.

Loss: ``cross_entropy`` of the output spike counts.
"""

from __future__ import annotations

from typing import Any

from bench import peers


def measure(config: dict) -> dict:
    """Time and check one (surrogate, H) configuration; runs in the child process."""
    import spikingjelly
    import torch
    from spikingjelly.activation_based import functional, neuron, surrogate

    cfg = {**peers.DEFAULTS, **config}
    slope = cfg["slope"]

    class FastSigmoidSpike(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any) -> Any:
            ctx.save_for_backward(x)
            return (x >= 0).to(x.dtype)

        @staticmethod
        def backward(ctx: Any, g: Any) -> Any:
            (x,) = ctx.saved_tensors
            return g / (1.0 + slope * x.abs()) ** 2

    class FastSigmoid(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return FastSigmoidSpike.apply(x)

    if cfg["surrogate"] == "fast_sigmoid":
        make_surrogate = FastSigmoid
    elif cfg["surrogate"] == "softsign":
        def make_surrogate() -> Any:
            return surrogate.SoftSign(alpha=slope)
    else:
        raise ValueError(f"surrogate: expected 'fast_sigmoid' or 'softsign', got {cfg['surrogate']!r}")

    problem = peers.load_problem(cfg["problem"])
    layers = []
    for i in (1, 2, 3):
        w, b = problem[f"w{i}"], problem[f"b{i}"]
        lin = torch.nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
        tau = 1.0 / (1.0 - cfg["decay"])
        layers += [lin, neuron.LIFNode(tau=tau, decay_input=False, v_threshold=cfg["threshold"], v_reset=None,
                                       surrogate_function=make_surrogate(), detach_reset=True, step_mode="m")]
    net = torch.nn.Sequential(*layers)
    params = [q for lin in layers[0::2] for q in (lin.weight, lin.bias)]
    xs, labels = torch.from_numpy(problem["xs"]), torch.from_numpy(problem["labels"])

    def step() -> tuple:
        functional.reset_net(net)
        loss = torch.nn.functional.cross_entropy(net(xs).sum(0), labels)
        return loss.detach(), torch.autograd.grad(loss, params)

    result = peers.measure_step(cfg, step, lambda o: o, lambda o: (float(o[0]), [g.numpy() for g in o[1]]))
    result["threads"] = peers.torch_threads()
    result["version"] = getattr(spikingjelly, "__version__", None)
    return result
