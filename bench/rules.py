"""Speed of the rule comparison itself: seconds per training epoch of each rule, torch and JAX.

The main job's six rules (the arms of ``StudyConfig.default()``, the study file
``neuroplastic/studies/main.toml``: bptt, eprop-symmetric, eprop-random, eprop-adaptive,
ostl, dfa) on the main job's network and data (recurrent LIF, hidden 128, tau_mem 1 step,
rate regulariser, MNIST-1D, batch 64, Adam with a cosine schedule), each built as the main
job builds an arm (``StudyConfig.run_config``, ``study_data``,
``experiment.build_trainer``), plus the online rules in online mode (an update per
time step, with the per-step loss ``ce_per_step`` and no regulariser, as the ``-online`` rows
of ``examples/compare_rules_mnist1d.py``): ``rtrl`` on a small network (hidden
``rtrl_hidden``), ``ottt`` and ``otpe``.

Each (rule, backend) runs in its own process (:func:`bench.common.run_isolated`) and trains
``epochs`` epochs with ``Trainer.fit`` on a fixed subset (the first ``train_examples``
training and ``test_examples`` test examples).  The first epoch includes JIT compilation
(JAX) and is reported on its own; the figure is the median of the other epochs' training
time (``train_time_s``: the batches, without the test-set evaluation), and its inverse,
epochs per second.  Times scale with the subset: an epoch of the full 4,000 examples takes
about ``4000 / train_examples`` times as long.

The results go to ``bench/results/rules-<column>.json``; ``column`` is ``before`` when no
``rules-before.json`` exists yet and ``after`` otherwise, so the same command first records
the numbers before the library's speed work (issue 12) and then the numbers after it.  The
docs table shows both columns.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from . import common

NAME = "rules"
#: ``torch-compiled``: torch with ``compile=True`` (the rule's step traced and compiled by TorchInductor)
BACKENDS = ("torch", "torch-compiled", "jax")
COLUMNS = ("before", "after")
DEFAULTS: dict = {
    "backends": ["torch", "torch-compiled", "jax"],
    "epochs": 3,
    "train_examples": 512,
    "test_examples": 256,
    "rtrl_hidden": 16,
    "seed": 0,
}

#: run-config overrides of an online arm, as the ``-online`` rows of
#: examples/compare_rules_mnist1d.py run it: an update per time step needs a per-step loss,
#: and takes no rate regulariser
ONLINE: dict = {"loss": "ce_per_step", "lr": 1e-4, "reg_rate_hz": None}


@dataclass(frozen=True)
class RuleCase:
    """One row of the table: a rule, its training mode and (optionally) another hidden size."""

    rule: str
    mode: str = "offline"
    hidden: int | None = None  # None: the main job's

    @property
    def name(self) -> str:
        return self.rule + (" (online)" if self.mode == "online" else "") + (f" (hidden {self.hidden})" if self.hidden else "")


def default_cases(rtrl_hidden: int = DEFAULTS["rtrl_hidden"]) -> list[RuleCase]:
    """The main job's arms (``StudyConfig.default()``), then rtrl (small network), ottt and otpe online."""
    from neuroplastic.study import StudyConfig

    main = [RuleCase(a.rule, a.mode) for a in StudyConfig.default().arms]
    return main + [RuleCase("rtrl", "online", rtrl_hidden), RuleCase("ottt", "online"), RuleCase("otpe", "online")]


def parse_case(text: str) -> RuleCase:
    """``rule``, ``rule:online`` or ``rule:online:hidden`` (e.g. ``rtrl:online:16``)."""
    parts = text.split(":")
    if not parts[0] or len(parts) > 3:
        raise ValueError(f"--rules: expected rule[:mode[:hidden]], got {text!r}")
    mode = parts[1] if len(parts) > 1 and parts[1] else "offline"
    if mode not in ("offline", "online"):
        raise ValueError(f"--rules: mode must be 'offline' or 'online', got {mode!r} in {text!r}")
    hidden = None
    if len(parts) == 3:
        try:
            hidden = int(parts[2])
        except ValueError:
            hidden = -1
        if hidden <= 0:
            raise ValueError(f"--rules: hidden must be a positive integer, got {parts[2]!r} in {text!r}")
    return RuleCase(parts[0], mode, hidden)


def measure(config: dict) -> dict:
    """Train one (rule, backend) for ``epochs`` epochs; per-epoch times (runs in the child process)."""
    from dataclasses import replace

    from neuroplastic.backend import prefer_passive_openmp

    from neuroplastic.backend import native

    prefer_passive_openmp()  # as the main job's CLI does, before torch loads
    native.keep_freed_memory()  # as the CLI does: freed temporaries stay in the heap

    from neuroplastic.backend import get_backend
    from neuroplastic.experiment import build_trainer
    from neuroplastic.study import Arm, StudyConfig, study_data

    cfg = {**DEFAULTS, **config}
    main = StudyConfig.default()
    framework, compiled = ("torch", True) if cfg["backend"] == "torch-compiled" else (cfg["backend"], False)
    study = replace(main, base=replace(main.base, backend=framework, compile=compiled, epochs=cfg["epochs"], seed=cfg["seed"]),
                    train_examples=cfg["train_examples"])
    overrides = dict(ONLINE) if cfg["mode"] == "online" else {}
    if cfg.get("hidden"):
        overrides["hidden"] = cfg["hidden"]
    run = study.run_config(Arm(cfg["rule"], mode=cfg["mode"], overrides=overrides))
    data = study_data(study)
    data = replace(data, x_test=data.x_test[:, : cfg["test_examples"]], y_test=data.y_test[: cfg["test_examples"]])
    B = get_backend(framework, compile=compiled)
    net, trainer = build_trainer(run, data, B)
    params = net.init(run.seed, backend=B)
    t0 = time.perf_counter()
    _, history = trainer.fit(params, data, epochs=run.epochs, batch_size=run.batch_size, seed=run.seed)
    wall = time.perf_counter() - t0
    train = [h["train_time_s"] for h in history]
    epoch = [h["epoch_time_s"] for h in history]
    steady = train[1:] or train
    result = {
        "rule": cfg["rule"], "mode": cfg["mode"], "backend": cfg["backend"], "hidden": run.hidden,
        "train_examples": int(data.x_train.shape[1]), "test_examples": int(data.x_test.shape[1]),
        "T": int(data.x_train.shape[0]), "batch": run.batch_size, "epochs": len(history),
        "first_epoch_train_s": train[0], "train_s": train, "epoch_s": epoch,
        "train_s_per_epoch": statistics.median(steady), "epoch_s_per_epoch": statistics.median(epoch[1:] or epoch),
        "epochs_per_s": 1.0 / statistics.median(steady), "fit_wall_s": wall,
        "final_train_loss": history[-1]["train_loss"], "final_test_acc": history[-1]["test_acc"],
    }
    if framework == "torch":
        import torch

        result["threads"] = int(torch.get_num_threads())
    return result


def check_config(cases: Sequence[RuleCase], backends: Sequence[str], epochs: int, train_examples: int, test_examples: int) -> None:
    """Raise ``ValueError`` naming the bad argument."""
    from neuroplastic.rules import RULES

    unknown = [c.rule for c in cases if c.rule not in RULES]
    if not cases or unknown:
        raise ValueError(f"--rules: unknown rule(s) {unknown}; choose from {sorted(RULES)}")
    if not backends or any(b not in BACKENDS for b in backends):
        raise ValueError(f"--backends must be a non-empty list of {', '.join(BACKENDS)}, got {list(backends)!r}")
    for name, v, lo in (("--epochs", epochs, 2), ("--train-examples", train_examples, 1), ("--test-examples", test_examples, 1)):
        if not (isinstance(v, int) and v >= lo):
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


def run_suite(
    cases: Sequence[RuleCase] | None = None,
    backends: Sequence[str] = DEFAULTS["backends"],
    epochs: int = DEFAULTS["epochs"],
    train_examples: int = DEFAULTS["train_examples"],
    test_examples: int = DEFAULTS["test_examples"],
    timeout: float | None = 3600.0,
    progress: Callable[[str], None] = lambda msg: None,
) -> dict:
    """Train every (rule, backend) in its own process; the JSON report.  A failure is reported with its ``error``."""
    cases = list(cases) if cases is not None else default_cases()
    check_config(cases, backends, epochs, train_examples, test_examples)
    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load_before = common.load_average()
    results = []
    for case in cases:
        for backend in backends:
            cfg = {"rule": case.rule, "mode": case.mode, "hidden": case.hidden, "backend": backend, "epochs": epochs,
                   "train_examples": train_examples, "test_examples": test_examples, "seed": DEFAULTS["seed"]}
            progress(f"{NAME}: {case.name} on {backend}, {epochs} epochs of {train_examples} examples ...")
            load = common.load_average()
            try:
                r = common.run_isolated(f"{__name__}:measure", cfg, timeout=timeout)
                progress(f"{NAME}: {case.name} on {backend}: {r['train_s_per_epoch']:.2f} s per epoch "
                         f"(first {r['first_epoch_train_s']:.1f} s; {r['child_wall_s']:.0f} s in all)")
            except common.BenchmarkError as err:
                r = {**cfg, "error": str(err)}
                progress(f"{NAME}: {case.name} on {backend} FAILED: {str(err).splitlines()[-1][:200]}")
            r["case"] = case.name
            r["load_average_before"] = load
            results.append(r)
    return {
        "benchmark": NAME,
        "config": {"cases": [case.name for case in cases], "backends": list(backends), "epochs": epochs,
                   "train_examples": train_examples, "test_examples": test_examples},
        "machine": common.machine_info(),
        "git": common.git_state(),
        "started": started,
        "load_average_before": load_before,
        "load_average_after": common.load_average(),
        "wall_s": time.perf_counter() - t0,
        "results": results,
    }


def results_path(column: str, results_dir: str | Path = common.REPO / "bench" / "results") -> Path:
    """``bench/results/rules-<column>.json``."""
    if column not in COLUMNS:
        raise ValueError(f"column: expected one of {', '.join(COLUMNS)}, got {column!r}")
    return Path(results_dir) / f"{NAME}-{column}.json"


def default_column(results_dir: str | Path = common.REPO / "bench" / "results") -> str:
    """``before`` until ``rules-before.json`` exists, then ``after``."""
    return "after" if results_path("before", results_dir).exists() else "before"


def _per_epoch(r: dict | None) -> float | None:
    return None if r is None or "error" in r else r["train_s_per_epoch"]


def _fmt(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def render_markdown(reports: dict[str, dict]) -> str:
    """The docs section from the ``before`` and/or ``after`` reports (``{column: report}``)."""
    if not reports:
        raise ValueError("reports: need a 'before' or an 'after' report")
    la = lambda x: "–" if not x else ", ".join(f"{y:.1f}" for y in x)  # noqa: E731
    lines = []
    for column in COLUMNS:
        rep = reports.get(column)
        if rep is None:
            lines.append(f"*{column}*: not measured yet (`python bench/run.py --suite rules` writes it).")
            lines.append("")
            continue
        c, m = rep["config"], rep["machine"]
        v = m["versions"]
        lines.append(f"*{column}*: measured {rep['started']} with `python bench/run.py --suite rules`: {c['epochs']} epochs of "
                     f"the first {c['train_examples']} MNIST-1D training examples (test set: the first {c['test_examples']}), "
                     f"each (rule, backend) in its own process; the suite took {rep['wall_s'] / 60:.1f} min. {m['cpu']}, "
                     f"{m['cores']} cores; torch {v.get('torch')}, jax {v.get('jax')}; {common.describe_git(rep.get('git'))}"
                     + (f"; {m['allocator']}" if m.get("allocator") else "") + ". "
                     f"Load average before / after: "
                     f"{la(rep.get('load_average_before'))} / {la(rep.get('load_average_after'))}."
                     + (f" Note: {rep['merged']}." if rep.get("merged") else ""))
        lines.append("")
    cases: list[str] = []
    for column in COLUMNS:
        for r in (reports.get(column) or {}).get("results", []):
            if r["case"] not in cases:
                cases.append(r["case"])
    header = ["rule", "hidden"]
    for column in COLUMNS:
        header += [f"torch s/epoch ({column})", f"torch compiled s/epoch ({column})", f"JAX s/epoch ({column})",
                   f"torch / JAX ({column})", f"torch compiled / JAX ({column})"]
    header += ["first epoch s, torch compiled / JAX (after)", "speed-up after / before (torch, JAX)"]
    rows = []
    for case in cases:
        row: list[str] = [case, "–"]
        times: dict = {}
        first = "–"
        for column in COLUMNS:
            by = {r["backend"]: r for r in (reports.get(column) or {}).get("results", []) if r["case"] == case}
            for r in by.values():
                if "hidden" in r and r["hidden"]:
                    row[1] = str(r["hidden"])
            t, c, j = (_per_epoch(by.get(b)) for b in BACKENDS)
            times[column] = (t, j)
            failed = [b for b, r in by.items() if "error" in r]
            row += [_fmt(x) if b not in failed else "failed" for x, b in zip((t, c, j), BACKENDS)]
            row += ["–" if x is None or j is None else f"{x / j:.1f}" for x in (t, c)]
            firsts = [(by.get(b) or {}).get("first_epoch_train_s") for b in ("torch-compiled", "jax")]
            if column == "after" and None not in firsts:
                first = f"{firsts[0]:.1f} / {firsts[1]:.1f}"
        row.append(first)
        speedups = []
        for k in (0, 1):
            b, a = (times.get("before") or (None, None))[k], (times.get("after") or (None, None))[k]
            speedups.append("–" if a is None or b is None else f"{b / a:.2f}x")
        row.append(", ".join(speedups))
        rows.append(row)
    lines.append("Seconds per training epoch (median of the epochs after the first; the first includes JAX's "
                 "compilation, and torch compiled's tracing and TorchInductor's compilation), on the subset above. "
                 "*torch compiled*: `get_backend(\"torch\", compile=True)` (`[trainer] compile = true`, "
                 "`neuroplastic train --compile`):")
    lines.append("")
    lines.append(common.markdown_table(header, rows, align="lr" + "r" * (len(header) - 2)))
    return "\n".join(lines)


def load_reports(results_dir: str | Path = common.REPO / "bench" / "results") -> dict[str, dict]:
    """The ``before`` and ``after`` reports that exist."""
    out = {}
    for column in COLUMNS:
        path = results_path(column, results_dir)
        if path.exists():
            try:
                out[column] = json.loads(path.read_text())
            except ValueError as err:
                raise ValueError(f"{path}: not a results file ({err})") from None
    return out

