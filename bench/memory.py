"""Peak memory of one training step against the sequence length T: BPTT vs online rules.

Network: ``Network(n_in, [RecurrentDense(H), LIF(), Dense(n_out), LeakyReadout()])``,
float32, Bernoulli input spikes, labels uniform.  One step is

* ``bptt``: ``BPTT().gradients`` of ``ce_per_step`` (offline: the whole graph is kept);
* an online rule (``eprop-symmetric``, ``ostl``, ``ottt`` ... whichever are installed):
  ``run_online(..., mode="online")`` with a plain SGD update after every step, i.e. the
  rule's per-step form, which keeps traces but no history.

Both are ``jit``-compiled (JAX, the default here, since torch's eager loop also keeps the
graph alive for BPTT but is much slower at T = 10,000).  Each (rule, T) runs in a fresh
process; the figure is the peak resident memory during the compiled call over the
resident memory just before it (:class:`bench.common.RssPhase`), plus XLA's own
temporary-buffer size for the compiled step.  The child runs with glibc's mmap threshold
fixed at 64 KiB (``CHILD_ENV``): otherwise glibc raises the threshold after the first call
frees its buffers, the measured call reuses heap pages that are already resident, and its
increase reads as about 0 at random.

A rule is *flat in T* when XLA's buffers grow by at most ``FLAT_BYTES_PER_STEP`` bytes per
extra step.  ``run_online`` sums the per-step loss and the rates in its carry, so the
online rules' buffers do not grow with T here; BPTT keeps the graph.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from . import common

NAME = "memory"
#: environment of each measuring child (see the module docstring)
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}
DEFAULTS: dict = {
    "rules": ["bptt", "eprop-symmetric", "ostl", "ottt"],
    "T": [100, 300, 1000, 3000, 10000],
    "hidden": 128,
    "batch": 16,
    "n_in": 40,
    "n_out": 10,
    "backend": "jax",
    "device": "cpu",
    "input_rate": 0.1,
    "seed": 0,
}


def measure(config: dict) -> dict:
    """Peak memory and time of one step for one (rule, T) (runs in the child process)."""
    import numpy as np

    from neuroplastic.backend import get_backend
    from neuroplastic.cells import LIF, LeakyReadout
    from neuroplastic.layers import Dense, RecurrentDense
    from neuroplastic.losses import Objective, make_loss
    from neuroplastic.network import Network
    from neuroplastic.rules import make_rule, run_online
    from neuroplastic.train import make_optimizer

    cfg = {**DEFAULTS, **config}
    B = get_backend(cfg["backend"], device=None if cfg["device"] == "cpu" else cfg["device"])
    net = Network(cfg["n_in"], [RecurrentDense(cfg["hidden"]), LIF(), Dense(cfg["n_out"]), LeakyReadout()])
    rng = np.random.default_rng(cfg["seed"])
    xs = B.asarray((rng.random((cfg["T"], cfg["batch"], cfg["n_in"])) < cfg["input_rate"]).astype(np.float32))
    ys = B.asarray(rng.integers(0, cfg["n_out"], cfg["batch"]))
    params = net.init(cfg["seed"], backend=B)
    objective = Objective(make_loss("ce_per_step"))
    rule = make_rule(cfg["rule"])
    rule_state = rule.init(net, params, B.key(0))
    if cfg["rule"] == "bptt":
        def step(p: Any, x: Any, y: Any) -> Any:
            g, _, aux = rule.gradients(net, p, rule_state, (x, y), objective)
            return aux["loss"], g
    else:
        opt = make_optimizer("sgd", 1e-3, B)

        def step(p: Any, x: Any, y: Any) -> Any:
            p, g, _, aux, _ = run_online(rule, net, p, rule_state, (x, y), objective, "online", opt, opt.init(p))
            return aux["loss"], p

    result = {"rule": cfg["rule"], "T": cfg["T"], "hidden": cfg["hidden"], "batch": cfg["batch"], "backend": B.name}
    t0 = time.perf_counter()
    jitted = B.jit(step)
    fn: Callable = jitted
    if hasattr(jitted, "lower"):
        compiled = jitted.lower(params, xs, ys).compile()
        result["xla_memory"] = common.xla_memory_analysis(compiled)
        fn = compiled
    result["compile_s"] = time.perf_counter() - t0
    common.block(B.name, cfg["device"], fn(params, xs, ys))  # first call outside the measured phase
    with common.RssPhase() as phase:
        t1 = time.perf_counter()
        out = common.block(B.name, cfg["device"], fn(params, xs, ys))
        result["call_s"] = time.perf_counter() - t1
    result["loss"] = float(B.to_numpy(out[0]))
    result["rss_increase_mib"] = phase.increase_bytes / common.MiB
    result["rss_resettable"] = phase.resettable
    temp = (result.get("xla_memory") or {}).get("temp_size_bytes")
    result["xla_temp_mib"] = None if temp is None else temp / common.MiB
    return result


def run_suite(rules: Sequence[str] = DEFAULTS["rules"], Ts: Sequence[int] = DEFAULTS["T"], backend: str = "jax",
              timeout: float | None = 1800.0, progress: Callable[[str], None] = lambda m: None, **overrides: Any) -> dict:
    """Every (rule, T) in its own process; rules that are not installed are listed as skipped."""
    from neuroplastic.rules import RULES

    t0 = time.perf_counter()
    results, skipped = [], [r for r in rules if r not in RULES]
    for rule in [r for r in rules if r in RULES]:
        for T in Ts:
            cfg = {**DEFAULTS, **overrides, "rule": rule, "T": int(T), "backend": backend}
            cfg.pop("rules")
            progress(f"{NAME}: {rule} T={T} ...")
            try:
                r = common.run_isolated("bench.memory:measure", cfg, timeout=timeout, env=CHILD_ENV)
                progress(f"{NAME}: {rule} T={T}: peak RSS +{r['rss_increase_mib']:.1f} MiB, XLA temp {r['xla_temp_mib'] or 0:.1f} MiB, {r['call_s']:.2f} s")
            except common.BenchmarkError as err:
                r = {"rule": rule, "T": int(T), "error": str(err)}
                progress(f"{NAME}: {rule} T={T} FAILED: {str(err).splitlines()[0]}")
            results.append(r)
    return {"benchmark": NAME, "config": {**DEFAULTS, **overrides, "rules": list(rules), "T": [int(t) for t in Ts], "backend": backend},
            "machine": common.machine_info(), "started": time.strftime("%Y-%m-%d %H:%M %Z"), "wall_s": time.perf_counter() - t0,
            "results": results, "skipped": skipped}


#: a rule's memory counts as flat in T when it grows by at most this many bytes per extra step (16
#: float32 numbers for the whole batch: scalars, no per-neuron history); BPTT's graph grows by
#: ``batch * sum_l k_l n_l * 4`` bytes and more per step
FLAT_BYTES_PER_STEP = 64


def growth(report: dict, key: str) -> dict[str, float | None]:
    """Per rule: bytes per extra time step of ``key`` (MiB) between the smallest and the largest T measured."""
    out: dict[str, float | None] = {}
    for rule in dict.fromkeys(r["rule"] for r in report["results"]):
        rows = sorted((r for r in report["results"] if r["rule"] == rule and "error" not in r and r.get(key) is not None), key=lambda r: r["T"])
        ok = len(rows) >= 2 and rows[-1]["T"] > rows[0]["T"]
        out[rule] = (rows[-1][key] - rows[0][key]) * common.MiB / (rows[-1]["T"] - rows[0]["T"]) if ok else None
    return out


def render_markdown(report: dict, plot: str | None = None) -> str:
    """Tables of peak memory (MiB) per rule and T with the growth factor, the flatness verdict, the plot."""
    cfg = report["config"]
    Ts = cfg["T"]
    rules = list(dict.fromkeys(r["rule"] for r in report["results"]))
    cell = {(r["rule"], r["T"]): r for r in report["results"]}

    def fmt(r: dict | None, key: str) -> str:
        if r is None or "error" in r or r.get(key) is None:
            return "–"
        return f"{r[key]:.1f}" if r[key] >= 10 else f"{r[key]:.3g}"

    def table(key: str) -> str:
        g = growth(report, key)
        return common.markdown_table(
            ["rule"] + [f"T={t}" for t in Ts] + ["bytes per extra step"],
            [[r] + [fmt(cell.get((r, t)), key) for t in Ts] + ["–" if g[r] is None else f"{int(round(g[r])):,}"] for r in rules],
        )

    online = [r for r in rules if r != "bptt"]
    rss, temp = growth(report, "rss_increase_mib"), growth(report, "xla_temp_mib")
    # XLA's figure is deterministic; the measured RSS is the check (and the fallback)
    judged = {r: temp[r] if temp[r] is not None else rss[r] for r in rules}
    flat = [r for r in online if judged[r] is not None and judged[r] <= FLAT_BYTES_PER_STEP]
    steep = [r for r in online if r not in flat]
    verdict = (
        f"Flat in T (at most {FLAT_BYTES_PER_STEP} bytes per extra step, from T={Ts[0]} to T={Ts[-1]}, XLA's buffers):"
        f" {', '.join(flat) or 'none'}." + (f" **Not flat: {', '.join(steep)}.**" if steep else "")
    )
    if judged.get("bptt") is not None:
        verdict += f" BPTT: {int(round(judged['bptt'])):,} bytes per step."
    lines = [
        f"Measured {report['started']} with `python -m bench.memory` on {cfg['backend']} (CPU): recurrent LIF network "
        f"{cfg['n_in']}-{cfg['hidden']}-{cfg['n_out']}, batch {cfg['batch']}, float32, one jit-compiled step per process; "
        f"BPTT offline (gradient of `ce_per_step` over the whole sequence), the other rules in online mode "
        f"(`run_online`, an SGD update after every step); glibc's mmap threshold fixed at 64 KiB in the measuring process;"
        f" the suite took {report['wall_s'] / 60:.1f} min.",
        "",
        "Peak resident memory of the call over the memory just before it (MiB):",
        "",
        table("rss_increase_mib"),
        "",
        "XLA temporary buffers of the compiled step (MiB, from XLA's buffer assignment):",
        "",
        table("xla_temp_mib"),
        "",
        verdict,
        "",
        "Time of one call (s), for scale (a shared machine; not a timing benchmark):",
        "",
        common.markdown_table(["rule"] + [f"T={t}" for t in Ts], [[r] + [fmt(cell.get((r, t)), "call_s") for t in Ts] for r in rules]),
    ]
    if report.get("skipped"):
        lines += ["", f"Not installed when measured, so not in the table: {', '.join(report['skipped'])}."]
    if plot:
        lines += ["", f"![peak memory against T, log-log]({plot})"]
    return "\n".join(lines)


def plot(report: dict, path: str) -> str | None:
    """Log-log curves of peak memory against T per rule (PNG): measured RSS increase and XLA temp."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    cfg = report["config"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    panels = [("rss_increase_mib", "peak RSS increase of one step (MiB)"), ("xla_temp_mib", "XLA temporary buffers (MiB)")]
    styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", "-")]
    for ax, (key, label) in zip(axes, panels):
        for i, rule in enumerate(dict.fromkeys(r["rule"] for r in report["results"])):
            rows = [r for r in report["results"] if r["rule"] == rule and "error" not in r and r.get(key) is not None]
            if not rows:
                continue
            mode = "offline" if rule == "bptt" else "online"
            marker, line = styles[i % len(styles)]
            ax.plot([r["T"] for r in rows], [max(r[key], 1e-3) for r in rows], marker=marker, linestyle=line, label=f"{rule} ({mode})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T (steps)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend()
    fig.suptitle(
        f"Memory of one training step against T (recurrent LIF {cfg['n_in']}-{cfg['hidden']}-{cfg['n_out']}, batch {cfg['batch']},"
        f" {cfg['backend']} CPU): BPTT grows, online rules stay flat"
    , fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.memory [--T 100,1000] [--rules bptt,eprop-symmetric]``: run and update docs/benchmarks.md."""
    import argparse
    import json
    from pathlib import Path

    ap = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    ap.add_argument("--rules", default=",".join(DEFAULTS["rules"]))
    ap.add_argument("--T", default=",".join(str(t) for t in DEFAULTS["T"]))
    ap.add_argument("--hidden", type=int, default=DEFAULTS["hidden"])
    ap.add_argument("--batch", type=int, default=DEFAULTS["batch"])
    ap.add_argument("--json", default="bench/results/memory.json")
    ap.add_argument("--docs", default="docs/benchmarks.md")
    ap.add_argument("--no-docs", action="store_true")
    ap.add_argument("--from-json", metavar="IN", help="run nothing; rewrite the docs section and the plot from saved results")
    args = ap.parse_args(argv)
    try:
        Ts = [int(t) for t in args.T.split(",")]
    except ValueError:
        ap.error(f"--T must be comma-separated positive integers, got {args.T!r}")
    if any(t <= 0 for t in Ts):
        ap.error(f"--T must be comma-separated positive integers, got {args.T!r}")
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text())
    else:
        report = run_suite(args.rules.split(","), Ts, hidden=args.hidden, batch=args.batch, progress=print)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    if not args.no_docs:
        img = Path(args.docs).parent / "img"
        img.mkdir(parents=True, exist_ok=True)
        png = plot(report, str(img / "memory_vs_T.png"))
        rel = "img/memory_vs_T.png" if png else None
        common.update_docs(args.docs, NAME, render_markdown(report, rel), heading="## Memory against sequence length: BPTT vs online rules")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
