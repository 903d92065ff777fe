"""snnTorch 1.0 on the peers problem (``bench/peers.py``); runs in ``.bench-venvs/snntorch``.

``torch.nn.Linear`` layers (the problem's weights, transposed, and biases) and
``snntorch.Leaky(beta=0.9, threshold=1, spike_grad=surrogate.fast_sigmoid(slope=25),
reset_mechanism="subtract", reset_delay=False)``, layer by layer: one matmul per layer over
all steps, then a Python loop over time calling the ``Leaky`` module with its membrane.
``reset_delay=False`` makes the spike of step t reset the membrane of step t, as in
neuroplastic; snnTorch then undoes its own delayed reset (``mem - (spk - reset) *
threshold``), which lets the surrogate gradient flow through the reset and differs in the
forward pass when a membrane is still above threshold after its reset (see
``Semantics(model="snntorch")``).  Loss: ``cross_entropy`` of the output spike counts.
"""

from __future__ import annotations

from typing import Any

from bench import peers


def measure(config: dict) -> dict:
    """Time and check one H; runs in the child process."""
    import snntorch
    import torch
    from snntorch import surrogate

    cfg = {**peers.DEFAULTS, **config}
    problem = peers.load_problem(cfg["problem"])
    linears, neurons = [], []
    for i in (1, 2, 3):
        w, b = problem[f"w{i}"], problem[f"b{i}"]
        lin = torch.nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
        linears.append(lin)
        neurons.append(snntorch.Leaky(beta=cfg["decay"], threshold=cfg["threshold"], spike_grad=surrogate.fast_sigmoid(slope=cfg["slope"]),
                                      reset_mechanism="subtract", reset_delay=False))
    params = [p for lin in linears for p in (lin.weight, lin.bias)]
    xs, labels = torch.from_numpy(problem["xs"]), torch.from_numpy(problem["labels"])

    def lif_seq(neuron: Any, current: Any) -> Any:
        mem = torch.zeros_like(current[0])
        out = []
        for c in current.unbind(0):
            spk, mem = neuron(c, mem)
            out.append(spk)
        return torch.stack(out)

    def step() -> tuple:
        h = xs
        for lin, neuron in zip(linears, neurons):
            h = lif_seq(neuron, lin(h))
        loss = torch.nn.functional.cross_entropy(h.sum(0), labels)
        return loss.detach(), torch.autograd.grad(loss, params)

    result = peers.measure_step(cfg, step, lambda o: o, lambda o: (float(o[0]), [g.numpy() for g in o[1]]))
    result["threads"] = peers.torch_threads()
    result["version"] = snntorch.__version__
    return result
