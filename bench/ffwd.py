"""Forward + backward (BPTT) time and peak memory of a feed-forward spiking network.

Network: ``Network(n_in, [Dense(H), LIF(), Dense(H), LIF(), Dense(10), LIF()])``
(defaults of :class:`~neuroplastic.cells.LIF`, no bias), float32.  Inputs: Bernoulli
spike trains ``(T, batch, n_in)`` with rate ``input_rate`` per step, labels uniform in
``0..9``; both drawn with numpy from a fixed seed, so every backend sees the same data.
One step is ``BPTT().gradients`` of ``ce_sum`` on the last layer's spikes (the
cross-entropy of the output spike counts), i.e. one forward and one backward pass over
all ``T`` steps, with the loss and the gradients as the step's outputs.

* JAX: the step is ``jax.jit``-ed; tracing plus XLA compilation is timed on its own
  (``compile_s``, ahead of time through ``.lower().compile()``); each timed call ends
  with ``block_until_ready`` on its outputs.
* torch: the eager call (on CUDA followed by ``torch.cuda.synchronize``).

Each (backend, H) configuration runs in a fresh process (:func:`bench.common.run_isolated`).
Memory: peak host RSS over the RSS just before the phase (after imports, parameters and
inputs exist), for the compile / first call and for the warm-up and timed calls
separately; on a GPU also the framework's peak allocated device memory.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from . import common

NAME = "ffwd"
BACKENDS = ("torch", "jax")
DEFAULTS: dict = {
    "backends": ["torch", "jax"],
    "hidden": [128, 512, 2048],
    "T": 500,
    "batch": 64,
    "n_in": 100,
    "n_out": 10,
    "repeats": 5,
    "warmup": 2,
    "min_repeats": 3,
    "budget_s": 900.0,
    # fast configurations: more timed calls (up to max_repeats) until they add up to min_timed_s (common.time_calls)
    "min_timed_s": 2.0,
    "max_repeats": 60,
    "device": "cpu",
    "dtype": "float32",
    "input_rate": 0.2,
    "seed": 0,
}


def build(config: dict) -> tuple[Any, Any, dict, tuple]:
    """``(backend, network, params, (xs, labels))`` for one configuration, on its backend."""
    import numpy as np

    from neuroplastic.backend import get_backend
    from neuroplastic.cells import LIF
    from neuroplastic.layers import Dense
    from neuroplastic.network import Network

    H, n_out = config["hidden"], config["n_out"]
    B = get_backend(config["backend"], device=config["device"], dtype=config["dtype"])
    net = Network(config["n_in"], [Dense(H), LIF(), Dense(H), LIF(), Dense(n_out), LIF()])
    params = net.init(config["seed"], backend=B, dtype=config["dtype"], device=config["device"])
    rng = np.random.default_rng(config["seed"] + 1)
    xs = (rng.random((config["T"], config["batch"], config["n_in"])) < config["input_rate"]).astype(config["dtype"])
    labels = rng.integers(0, n_out, config["batch"])
    return B, net, params, (B.asarray(xs), B.asarray(labels))


def make_step(network: Any) -> Callable[[dict, Any, Any], tuple]:
    """``step(params, xs, labels) -> (loss, grads)``: one BPTT gradient of ``ce_sum``."""
    from neuroplastic.losses import Objective, make_loss
    from neuroplastic.rules.bptt import BPTT

    rule, objective = BPTT(), Objective(make_loss("ce_sum"))

    def step(params: dict, xs: Any, labels: Any) -> tuple:
        grads, _, aux = rule.gradients(network, params, {}, (xs, labels), objective)
        return aux["loss"], grads

    return step


def count_params(params: Any) -> int:
    """Number of scalars in a parameter pytree."""
    import math

    from neuroplastic.tree import tree_leaves

    return int(sum(math.prod(p.shape) for p in tree_leaves(params)))


def measure(config: dict) -> dict:
    """Time and memory of one configuration (runs in the child process); see the module docstring."""
    config = {**DEFAULTS, **config}
    name, device = config["backend"], config["device"]
    t_setup = time.perf_counter()
    B, net, params, (xs, labels) = build(config)
    common.block(name, device, (params, xs, labels))
    step = make_step(net)
    sync = lambda out: common.block(name, device, out)  # noqa: E731
    result: dict = {"backend": name, "hidden": config["hidden"], "T": config["T"],
                    "batch": config["batch"], "device": device, "device_name": common.device_name(name, device), "dtype": config["dtype"],
                    "n_params": count_params(params), "setup_s": time.perf_counter() - t_setup}

    # phase 1: compile (JAX) and the first call, memory counted on its own
    gpu_mark = common.gpu_memory_mark(name, device)
    result["gpu_baseline_mib"] = _mib(gpu_mark)
    with common.RssPhase() as first:
        t0 = time.perf_counter()
        jitted = B.jit(step)
        if hasattr(jitted, "lower"):  # JAX: ahead-of-time trace + compile
            compiled = jitted.lower(params, xs, labels).compile()
            result["compile_s"] = time.perf_counter() - t0
            result["xla_memory"] = common.xla_memory_analysis(compiled)
            fn = compiled
        else:
            result["compile_s"] = None
            fn = jitted
        t1 = time.perf_counter()
        loss, grads = sync(fn(params, xs, labels))
        first_call = time.perf_counter() - t1
    result["rss_baseline_mib"] = first.start_bytes / common.MiB
    result["first_call_s"] = first_call
    result["first_rss_increase_mib"] = first.increase_bytes / common.MiB
    result["first_gpu_increase_mib"] = _mib(common.gpu_peak_increase(name, device, gpu_mark))
    result["loss"] = float(B.to_numpy(loss))
    result["grad_finite"] = all(B.all_finite(g) for g in _leaves(grads))
    del loss, grads

    # phase 2: warm-up and timed calls, fewer where they would outrun the budget
    warmup, repeats = plan_calls(first_call, config["warmup"], config["repeats"], config["min_repeats"], config["budget_s"])
    reduced = (warmup, repeats) != (config["warmup"], config["repeats"])
    gpu_mark = common.gpu_memory_mark(name, device)
    with common.RssPhase() as steady:  # a configuration cut to fit the budget gets no extra calls
        times = common.time_calls(lambda: fn(params, xs, labels), repeats, warmup, sync,
                                  min_seconds=0.0 if reduced else config["min_timed_s"], max_repeats=config["max_repeats"])
    # the headline number: peak over the baseline before the first call (imports, parameters, inputs)
    result["rss_increase_mib"] = max(0, steady.peak_bytes - first.start_bytes) / common.MiB
    result["rss_phase_start_mib"] = steady.start_bytes / common.MiB
    result["rss_phase_increase_mib"] = steady.increase_bytes / common.MiB
    result["rss_peak_mib"] = steady.peak_bytes / common.MiB
    result["rss_resettable"] = steady.resettable
    result["gpu_increase_mib"] = _mib(common.gpu_peak_increase(name, device, gpu_mark))
    result["warmup"] = warmup
    result["reduced"] = reduced
    result["times_s"] = times
    result["time"] = common.summarize(times)
    result["threads"] = _threads(name)
    # activity check, outside the measured phases: mean spikes per neuron and step, per layer
    _, _, rec = net.run(B.tree_stop_gradient(params), xs)
    result["spike_rates"] = [float(B.to_numpy(B.mean(z))) for z in rec["out"]]
    return result


def plan_calls(first_call_s: float, warmup: int, repeats: int, min_repeats: int, budget_s: float) -> tuple[int, int]:
    """``(warmup, repeats)`` cut so that their calls fit ``budget_s``, dropping warm-ups first.

    The first call already warmed up, so warm-ups may go to 0; repeats stay at least
    ``min(repeats, min_repeats)``.
    """
    floor = min(repeats, min_repeats)
    while (warmup + repeats) * first_call_s > budget_s and warmup > 0:
        warmup -= 1
    while (warmup + repeats) * first_call_s > budget_s and repeats > floor:
        repeats -= 1
    return warmup, repeats


def _mib(n: int | None) -> float | None:
    return None if n is None else n / common.MiB


def _leaves(tree: Any) -> list:
    from neuroplastic.tree import tree_leaves

    return tree_leaves(tree)


def _threads(name: str) -> int | None:
    """torch's intra-op thread count (JAX/XLA sizes its own pool)."""
    if name == "torch":
        import torch

        return int(torch.get_num_threads())
    return None


def check_config(backends: Sequence[str], hidden: Sequence[int], T: int, batch: int, repeats: int, warmup: int, device: str) -> None:
    """Raise ``ValueError`` naming the bad argument."""
    if not backends or any(b not in BACKENDS for b in backends):
        raise ValueError(f"--backends must be a non-empty list of {', '.join(BACKENDS)}, got {list(backends)!r}")
    if not hidden or any(not (isinstance(h, int) and h > 0) for h in hidden):
        raise ValueError(f"--hidden must be positive integers, got {list(hidden)!r}")
    for name, v, lo in (("--T", T, 1), ("--batch", batch, 1), ("--repeats", repeats, 1), ("--warmup", warmup, 0)):
        if not (isinstance(v, int) and v >= lo):
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"--device must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")


def run_suite(
    backends: Sequence[str] = DEFAULTS["backends"],
    hidden: Sequence[int] = DEFAULTS["hidden"],
    T: int = DEFAULTS["T"],
    batch: int = DEFAULTS["batch"],
    repeats: int = DEFAULTS["repeats"],
    warmup: int = DEFAULTS["warmup"],
    device: str = DEFAULTS["device"],
    budget_s: float = DEFAULTS["budget_s"],
    timeout: float | None = 3600.0,
    progress: Callable[[str], None] = lambda msg: None,
    min_timed_s: float = DEFAULTS["min_timed_s"],
) -> dict:
    """Measure every (backend, H) configuration, each in its own process; the JSON report.

    ``budget_s`` caps the warm-up and timed calls of one configuration (see
    :func:`plan_calls`); a configuration whose ``repeats`` calls take less than ``min_timed_s``
    gets more (up to ``max_repeats``; 0: none).  A configuration that fails (error, out of memory, timeout) is
    reported with its ``error`` and the suite goes on.
    """
    check_config(backends, hidden, T, batch, repeats, warmup, device)
    if not budget_s > 0:
        raise ValueError(f"--budget must be positive, got {budget_s!r}")
    if not min_timed_s >= 0:
        raise ValueError(f"--min-time must be >= 0, got {min_timed_s!r}")
    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load_before = common.load_average()
    results = []
    for H in hidden:
        for name in backends:
            cfg = {**DEFAULTS, "backend": name, "hidden": int(H), "T": T, "batch": batch, "repeats": repeats,
                   "warmup": warmup, "device": device, "budget_s": float(budget_s), "min_timed_s": float(min_timed_s)}
            cfg.pop("backends")
            progress(f"{NAME}: {name} H={H} T={T} batch={batch} on {device} ...")
            load = common.load_average()
            try:
                r = common.run_isolated(f"{__name__}:measure", cfg, timeout=timeout, device=device)
                progress(f"{NAME}: {name} H={H}: median {r['time']['median']:.4f} s over {r['time']['n']}, "
                         f"peak RSS +{r['rss_increase_mib']:.0f} MiB ({r['child_wall_s']:.0f} s in all)")
            except common.BenchmarkError as err:
                r = {"backend": name, "hidden": int(H), "T": T, "batch": batch, "device": device, "error": str(err)}
                progress(f"{NAME}: {name} H={H} FAILED: {str(err).splitlines()[0]}")
            r["load_average_before"] = load
            results.append(r)
    config = {**DEFAULTS, "backends": list(backends), "hidden": [int(h) for h in hidden], "T": T, "batch": batch,
              "repeats": repeats, "warmup": warmup, "device": device, "budget_s": float(budget_s),
              "min_timed_s": float(min_timed_s)}
    return {
        "benchmark": NAME,
        "config": config,
        "machine": common.machine_info(),
        "started": started,
        "load_average_before": load_before,
        "load_average_after": common.load_average(),
        "wall_s": time.perf_counter() - t0,
        "results": results,
    }


def section_name(device: str) -> str:
    """Docs section of a run on ``device``: ``ffwd`` on the CPU, ``ffwd-cuda`` on a GPU."""
    return NAME if device.split(":")[0] == "cpu" else f"{NAME}-{device.split(':')[0]}"


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}f}" if abs(x) < 100 else f"{x:.0f}"


def _load(la: Sequence[float] | None) -> str:
    return "–" if not la else ", ".join(f"{x:.1f}" for x in la)


def render_markdown(report: dict) -> str:
    """The generated docs section of ``report``: setup, results table, ratios (same run)."""
    cfg, mach = report["config"], report["machine"]
    v = mach["versions"]
    gpu = common.is_gpu(cfg["device"])
    reduced = [r for r in report["results"] if r.get("reduced")]
    gpus = sorted({r["device_name"] for r in report["results"] if r.get("device_name") and gpu})
    lines = [
        f"Measured {report['started']} with `python bench/run.py`"
        + (f" `--device {cfg['device']}`" if cfg["device"] != "cpu" else "")
        + f": T={cfg['T']}, batch={cfg['batch']}, n_in={cfg['n_in']}, {cfg['dtype']}, Bernoulli input spikes "
        f"(rate {cfg['input_rate']}); {cfg['warmup']} warm-up + {cfg['repeats']} timed calls per configuration"
        + (f", more (up to {cfg['max_repeats']}) until the timed calls add up to {cfg['min_timed_s']:g} s" if cfg.get("min_timed_s") else "")
        + (f" (*: fewer warm-ups or timed calls, to stay within {cfg['budget_s']:.0f} s per configuration)" if reduced else "")
        + f"; the whole suite took {report['wall_s'] / 60:.1f} min.",
        "",
        "Machine: " + (f"GPU {' / '.join(gpus)}; host " if gpus else "") + f"{mach['cpu']}, {mach['cores']} cores, {mach['memory_gib']} GiB RAM, {mach['os']}; "
        f"Python {mach['python']}, torch {v.get('torch')}, jax {v.get('jax')} (jaxlib {v.get('jaxlib')}), "
        f"numpy {v.get('numpy')}" + (f"; {mach['allocator']}" if mach.get("allocator") else "") + ". Load average (1, 5, 15 min) before / after: "
        f"{_load(report.get('load_average_before'))} / {_load(report.get('load_average_after'))}.",
        "",
    ]
    header = ["backend", "H", "params", "median (s)", "IQR (s)", "n", "compile (s)", "first call (s)",
              "peak RSS + (MiB)", "timed RSS + (MiB)", "XLA temp (MiB)"]
    if gpu:
        header += ["GPU peak + (MiB)"]
    rows = []
    for r in report["results"]:
        if "error" in r:
            msg = "failed: " + r["error"].splitlines()[0].replace("|", "/")[:80]
            rows.append([r["backend"], r["hidden"], "–", msg] + ["–"] * (len(header) - 4))
            continue
        t, xla = r["time"], r.get("xla_memory") or {}
        row = [r["backend"], r["hidden"], f"{r['n_params']:,}", _fmt(t["median"], 4), _fmt(t["iqr"], 4),
               f"{t['n']}{'*' if r.get('reduced') else ''}", _fmt(r.get("compile_s"), 2), _fmt(r["first_call_s"], 2),
               _fmt(r["rss_increase_mib"], 0), _fmt(r["rss_phase_increase_mib"], 0), _fmt(xla["temp_size_bytes"] / common.MiB if "temp_size_bytes" in xla else None, 0)]
        if gpu:
            row += [_fmt(r.get("gpu_increase_mib"), 0)]
        rows.append(row)
    lines.append(common.markdown_table(header, rows, align="lr" + "r" * (len(header) - 2)))
    ratios = ratio_rows(report["results"])
    if ratios:
        lines += ["", "Ratios of the medians above (same run; > 1: the first is slower / uses more):", "",
                  common.markdown_table(["H", "pair", "time", "peak RSS"] + (["GPU peak"] if gpu else []), ratios, align="rl" + "r" * (3 if gpu else 2))]
    return "\n".join(lines)


RATIO_PAIRS = (("torch", "jax"),)


def ratio_rows(results: Sequence[dict]) -> list[list[str]]:
    """Per H, for each pair in ``RATIO_PAIRS`` with both measured: ratios of median time and peak memory."""
    ok = {(r["backend"], r["hidden"]): r for r in results if "error" not in r}
    rows = []
    for H in sorted({h for _, h in ok}):
        for x, y in RATIO_PAIRS:
            a, b = ok.get((x, H)), ok.get((y, H))
            if a is None or b is None:
                continue
            row = [str(H), f"{x} / {y}", _ratio(a["time"]["median"], b["time"]["median"]),
                   _ratio(a["rss_increase_mib"], b["rss_increase_mib"])]
            if common.is_gpu(a["device"]):
                row.append(_ratio(a.get("gpu_increase_mib"), b.get("gpu_increase_mib")))
            rows.append(row)
    return rows


def _ratio(a: float | None, b: float | None) -> str:
    return "–" if a is None or b is None or b <= 0 else f"{a / b:.2f}"
