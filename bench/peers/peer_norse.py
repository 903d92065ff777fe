"""Norse 1.1 on the peers problem (``bench/peers.py``); runs in ``.bench-venvs/norse``.

Norse's current-free LIF, ``LIFBoxCell`` with ``LIFBoxParameters(tau_mem_inv=0.1,
v_leak=0, v_th=1, v_reset=0, method="super", reset_method=reset_subtract)`` and ``dt=1``:
``v + 0.1 (I - v)`` = ``0.9 v + 0.1 I``, spike ``H(v - 1)``, reset ``v - z`` (the spike
is not detached).  Norse scales the input by ``dt * tau_mem_inv`` = 0.1, so the linear
layers hold 10x the problem's weights and biases (``0.9 v + I``, up to rounding), and the
reported gradient norms are those with respect to the problem's weights (10x Norse's).
Norse 1.1's SuperSpike ignores its ``alpha``: its surrogate is ``1/(1+|x|)^2`` (slope 1).
Layer by layer: one matmul per layer over all steps, then a Python loop over time calling
the cell.  Loss: ``cross_entropy`` of the output spike counts.
"""

from __future__ import annotations

from typing import Any

from bench import peers

#: Norse integrates dt * tau_mem_inv * input per step
INPUT_SCALE = 10.0


def measure(config: dict) -> dict:
    """Time and check one H; runs in the child process."""
    import norse
    import torch
    from norse.torch import LIFBoxCell, LIFBoxParameters
    from norse.torch.functional.lif_box import LIFBoxFeedForwardState
    from norse.torch.functional.reset import reset_subtract

    cfg = {**peers.DEFAULTS, **config}
    problem = peers.load_problem(cfg["problem"])
    p = LIFBoxParameters(tau_mem_inv=torch.as_tensor(1.0 - cfg["decay"]), v_leak=torch.as_tensor(0.0),
                         v_th=torch.as_tensor(cfg["threshold"]), v_reset=torch.as_tensor(0.0), method="super",
                         alpha=torch.as_tensor(cfg["slope"]), reset_method=reset_subtract)
    linears, cells = [], []
    for i in (1, 2, 3):
        w, b = problem[f"w{i}"], problem[f"b{i}"]
        lin = torch.nn.Linear(w.shape[0], w.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()) * INPUT_SCALE)
            lin.bias.copy_(torch.from_numpy(b) * INPUT_SCALE)
        linears.append(lin)
        cells.append(LIFBoxCell(p, dt=1.0))
    params = [q for lin in linears for q in (lin.weight, lin.bias)]
    xs, labels = torch.from_numpy(problem["xs"]), torch.from_numpy(problem["labels"])

    def lif_seq(cell: Any, current: Any) -> Any:
        state = LIFBoxFeedForwardState(v=torch.zeros_like(current[0]))
        out = []
        for c in current.unbind(0):
            z, state = cell(c, state)
            out.append(z)
        return torch.stack(out)

    def step() -> tuple:
        h = xs
        for lin, cell in zip(linears, cells):
            h = lif_seq(cell, lin(h))
        loss = torch.nn.functional.cross_entropy(h.sum(0), labels)
        return loss.detach(), torch.autograd.grad(loss, params)

    # gradients with respect to the problem's weights: d/dw = INPUT_SCALE * d/d(INPUT_SCALE w)
    result = peers.measure_step(cfg, step, lambda o: o, lambda o: (float(o[0]), [g.numpy() * INPUT_SCALE for g in o[1]]))
    result["threads"] = peers.torch_threads()
    result["version"] = norse.__version__
    return result
