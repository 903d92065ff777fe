"""Sweep throughput: trials per hour in one process and on a local Ray with 1 and 2 workers.

``python bench/sweep.py`` (or ``python -m bench.sweep``) runs the same sweep of tiny trials
(Randman, 2 classes x 24 examples + 8 test examples each, 10 steps x 8 channels; ``rsnn``
with 8 hidden neurons; BPTT, 2 epochs, JAX; one trial per seed) three ways, each in a fresh
process:

* ``in-process``: ``neuroplastic sweep --in-process``, the trials one after another;
* ``ray``, 1 worker and 2 workers: the embedded local Ray (``ray.init`` with that many CPUs).

Every trial runs with one CPU's thread limits (``cpus_per_trial = 1``), in process too, so
the runners compute the same thing the same way.

For each it records the Ray start-up (``ray.init`` and putting the dataset in the object
store), the *trial phase* (from submitting the first trial to the last result) and the
whole sweep (start-up, trials, report, shutdown).  Trials per hour are given for the trial
phase and end to end; Ray's per-trial overhead is the 1-worker trial phase minus the
in-process one, divided by the number of trials (it includes starting the worker process and
importing the frameworks there, spread over the trials).  Tiny trials are chosen so that
the overhead is visible: a real trial of minutes hides it.

The results go to ``bench/results/sweep.json`` and the table to ``docs/benchmarks.md``
between ``<!-- bench:sweep:start -->`` and ``<!-- bench:sweep:end -->``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common  # noqa: E402

NAME = "sweep"
HEADING = "## Sweeps: trials per hour and Ray's overhead"
#: the tiny trial every configuration runs (a sweep file without its [sweep] table)
TRIAL = """
[data]
name = "randman"
n_classes = 2
n_units = 8
n_steps = 10
samples_per_class = 24
test_per_class = 8
[network]
model = "rsnn"
hidden = 8
[trainer]
epochs = 2
batch_size = 8
backend = "jax"
"""
#: (label, runner, workers)
CONFIGS = [("in-process", "in-process", 1), ("ray, 1 worker", "ray", 1), ("ray, 2 workers", "ray", 2)]


def measure(config: dict) -> dict:
    """Child process: run one sweep of ``config['trials']`` tiny trials; phase times in seconds."""
    from neuroplastic.sweep import report as sweep_report
    from neuroplastic.sweep import runner

    marks: dict[str, float] = {}
    start_ray, started, finished, write_report = runner.start_ray, runner._Progress.started, runner._Progress.finished, sweep_report.write_sweep_report

    def timed_start_ray(*args, **kwargs):
        t0 = time.perf_counter()
        out = start_ray(*args, **kwargs)
        marks["ray_start_s"] = time.perf_counter() - t0
        return out

    def timed_started(self, name):
        marks.setdefault("first_start", time.perf_counter())
        return started(self, name)

    def timed_finished(self, name, outcome):
        marks["last_finish"] = time.perf_counter()
        return finished(self, name, outcome)

    def timed_report(*args, **kwargs):
        t0 = time.perf_counter()
        out = write_report(*args, **kwargs)
        marks["report_s"] = time.perf_counter() - t0
        return out

    runner.start_ray, runner._Progress.started, runner._Progress.finished = timed_start_ray, timed_started, timed_finished
    sweep_report.write_sweep_report = timed_report
    with tempfile.TemporaryDirectory(prefix="neuroplastic-bench-sweep-") as tmp:
        path = Path(tmp) / "bench.toml"
        path.write_text(TRIAL + f"\n[sweep]\nseed = {list(range(config['trials']))}\n")
        t0 = time.perf_counter()
        result = runner.run_sweep(path, out=Path(tmp) / "s", workers=config["workers"], in_process=config["runner"] == "in-process",
                                  log=lambda msg: None, notice=lambda msg: None, limit_threads=True)
        total = time.perf_counter() - t0
        m = runner.Manifest.load(Path(tmp) / "s")
        train_s = [t["wall_time_s"] for t in m.trials if t["status"] == "finished"]
    if result.counts != {"finished": config["trials"]}:
        raise RuntimeError(f"not every trial finished: {result.counts}")
    return {
        **config, "engine": result.engine, "total_s": total, "ray_start_s": marks.get("ray_start_s", 0.0),
        "trial_phase_s": marks["last_finish"] - marks["first_start"], "report_s": marks.get("report_s"),
        "mean_trial_train_s": sum(train_s) / len(train_s),
    }


def run(trials: int = 8, log: common.Progress | None = None) -> dict:
    """All three configurations, each in its own process; the JSON report."""
    log = log or common.Progress()
    results = []
    for label, runner_name, workers in CONFIGS:
        log(f"{label}: {trials} trials")
        r = common.run_isolated("bench.sweep:measure", {"runner": runner_name, "workers": workers, "trials": trials}, timeout=1800)
        r["label"] = label
        r["trials_per_hour"] = 3600 * trials / r["trial_phase_s"]
        r["trials_per_hour_end_to_end"] = 3600 * trials / r["total_s"]
        results.append(r)
        log(f"{label}: trial phase {r['trial_phase_s']:.1f} s, whole sweep {r['total_s']:.1f} s")
    base = next(r for r in results if r["runner"] == "in-process")
    for r in results:
        if r["runner"] == "ray" and r["workers"] == 1:
            r["overhead_per_trial_s"] = (r["trial_phase_s"] - base["trial_phase_s"]) / trials
    return {
        "benchmark": NAME, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": common.machine_info(),
        "ray": common.package_version("ray"), "git": common.git_state(), "load_average": common.load_average(),
        "config": {"trials": trials, "trial": TRIAL.strip()}, "results": results,
    }


def render(report: dict) -> str:
    """The markdown of the docs section."""
    mach = report["machine"]
    rows = []
    for r in report["results"]:
        over = r.get("overhead_per_trial_s")
        rows.append([r["label"], f"{r['ray_start_s']:.1f}", f"{r['trial_phase_s']:.1f}", f"{r['trials_per_hour']:,.0f}",
                     f"{r['total_s']:.1f}", f"{r['trials_per_hour_end_to_end']:,.0f}", "" if over is None else f"{over:+.2f}"])
    load = report.get("load_average")
    table = common.markdown_table(
        ["runner", "Ray start (s)", "trial phase (s)", "trials / hour (trial phase)", "whole sweep (s)", "trials / hour (whole sweep)",
         "Ray overhead per trial (s)"], rows, align="lrrrrrr")
    n = report["config"]["trials"]
    return "\n".join([
        f"`python bench/sweep.py`: {n} tiny trials (Randman 2 x 24 examples, 10 steps, `rsnn` with 8 hidden neurons, BPTT, "
        f"2 epochs, JAX; mean training time per trial "
        f"{min(r['mean_trial_train_s'] for r in report['results']):.1f}-{max(r['mean_trial_train_s'] for r in report['results']):.1f} s, "
        f"mostly XLA compilation) on {mach['cpu']}, {mach['cores']} cores, Ray {report['ray']}, {report['date']}"
        + (f", load average {load[0]:.1f} at the end" if load else "") + f"; {common.describe_git(report.get('git'))}.",
        "",
        table,
        "",
        "*Trial phase*: from submitting the first trial to the last result; *whole sweep*: the command from start to end "
        "(Ray start-up, trials, report, shutdown). Ray's overhead per trial is its 1-worker trial phase minus the in-process one, "
        "over the trials: it includes starting a worker process and importing JAX there, once per worker; where it is negative "
        "it is below this machine's noise, and Ray's cost is its start-up. Every trial runs with one CPU's thread limits, in "
        "process too. The machine is shared (see the load average), so these numbers move from run to run, and a second worker "
        "helps only when a second core is free; see docs/sweeps.md.",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=8, help="trials per configuration (default 8)")
    p.add_argument("--json", default=str(common.REPO / "bench" / "results" / "sweep.json"), help="where the JSON report goes")
    p.add_argument("--docs", default=str(common.REPO / "docs" / "benchmarks.md"), help="the markdown file whose sweep section is rewritten")
    p.add_argument("--from-json", default=None, metavar="IN", help="run nothing: rewrite the docs section from saved results")
    args = p.parse_args(argv)
    if args.trials < 1:
        p.error(f"--trials must be a positive integer, got {args.trials}")
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text())
    else:
        report = run(args.trials)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    common.update_docs(args.docs, NAME, render(report), heading=HEADING)
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
