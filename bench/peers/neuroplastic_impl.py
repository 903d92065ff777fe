"""neuroplastic on the peers problem (``bench/peers.py``), through its public API only.

``Network(100, [Dense(H, bias=True), LIF(decay=0.9, threshold=1, surrogate=FastSigmoid(25)),
Dense(H, bias=True), LIF(...), Dense(10, bias=True), LIF(...)])`` (LIF's default
subtractive, detached reset), one ``BPTT().gradients`` of ``ce_sum``; jit-compiled on JAX
(compiled ahead of time, timed as ``compile_s``), eager on torch; options ``fused=False`` and
``events=False`` run the reference path instead of the fused LIF kernels and the event-driven
products.  The problem's numpy weights replace
the initial parameters leaf by leaf (the ``w``/``b`` leaves of the parameter tree, in layer
order, checked by shape).
"""

from __future__ import annotations

from typing import Any

from bench import peers


def _weight_paths(paths: list[str], leaves: list[Any], problem: dict) -> dict[str, str]:
    """``{tree path: problem key}`` for the six weight and bias leaves, checked by shape."""
    wanted = [k for k in peers.GRAD_NAMES]
    found = [p for p in paths if p.rsplit(".", 1)[-1] in ("w", "b")]
    if len(found) != len(wanted):
        raise ValueError(f"network parameters: expected {len(wanted)} w/b leaves, found {found}")
    out = {}
    shapes = dict(zip(paths, (tuple(x.shape) for x in leaves)))
    for path, key in zip(found, wanted):
        if path.rsplit(".", 1)[-1] != key[0] or shapes[path] != tuple(problem[key].shape):
            raise ValueError(f"network parameters: leaf {path} {shapes[path]} does not match {key} {problem[key].shape}")
        out[path] = key
    return out


def measure(config: dict) -> dict:
    """Time and check one (backend, H) configuration; runs in the child process."""
    import os

    import numpy as np

    from bench import common
    from neuroplastic.backend import get_backend
    from neuroplastic.cells import LIF
    from neuroplastic.layers import Dense
    from neuroplastic.losses import Objective, make_loss
    from neuroplastic.network import Network
    from neuroplastic.rules.bptt import BPTT
    from neuroplastic.surrogates import FastSigmoid
    from neuroplastic.tree import tree_flatten_dict, tree_leaves, tree_paths, tree_unflatten_like

    from neuroplastic.backend import native, prefer_passive_openmp

    prefer_passive_openmp()  # as the CLI's entry points do (before torch loads): idle OpenMP threads sleep
    # freed buffers stay in the heap: XLA's whole-sequence buffers too on JAX (no change in its peak RSS);
    # on torch only the CLI's default (with LARGE_BUFFERS torch ran faster but its peak RSS doubled)
    native.keep_freed_memory(**(native.LARGE_BUFFERS if config.get("backend") == "jax" else {}))
    cfg = {**peers.DEFAULTS, **config}
    if not cfg.get("events", True):
        os.environ["NEUROPLASTIC_EVENT_KERNELS"] = "0"  # the dense products (this child process only)
    name = cfg["backend"]
    problem = peers.load_problem(cfg["problem"])
    H, n_out = problem["w2"].shape[0], problem["w3"].shape[1]
    cell = dict(decay=cfg["decay"], threshold=cfg["threshold"], surrogate=FastSigmoid(beta=cfg["slope"]))
    net = Network(problem["w1"].shape[0], [Dense(H, bias=True), LIF(**cell), Dense(H, bias=True), LIF(**cell),
                                           Dense(n_out, bias=True), LIF(**cell)], fused=bool(cfg.get("fused", True)))
    B = get_backend(name, dtype="float32", compile=bool(cfg.get("compile", False)))
    template = net.init_numpy(cfg["seed"])
    paths, leaves = tree_paths(template), tree_leaves(template)
    mapping = _weight_paths(paths, leaves, problem)
    values = [problem[mapping[p]] if p in mapping else np.asarray(x, dtype=np.float32) for p, x in zip(paths, leaves)]
    params = tree_unflatten_like(template, [B.asarray(v.astype(np.float32)) for v in values])
    xs, labels = B.asarray(problem["xs"]), B.asarray(problem["labels"])
    rule, objective = BPTT(), Objective(make_loss("ce_sum"))

    def step(p: dict, x: Any, y: Any) -> tuple:
        grads, _, aux = rule.gradients(net, p, {}, (x, y), objective)
        return aux["loss"], grads

    jitted = B.jit(step)
    compiled: dict = {}

    def compile_fn() -> None:
        compiled["fn"] = jitted.lower(params, xs, labels).compile()

    is_jax = hasattr(jitted, "lower")
    if not is_jax:
        compiled["fn"] = jitted

    def read(out: tuple) -> tuple:
        loss, grads = out
        flat = tree_flatten_dict(grads)
        return float(B.to_numpy(loss)), [B.to_numpy(flat[p]) for p in mapping]

    result = peers.measure_step(cfg, lambda: compiled["fn"](params, xs, labels), lambda o: common.block(name, None, o), read,
                                compile_fn if is_jax else None)
    result["threads"] = peers.torch_threads()
    _, _, rec = net.run(B.tree_stop_gradient(params), xs)
    result["spike_rates"] = [float(B.to_numpy(B.mean(z))) for z in rec["out"]]
    return result
