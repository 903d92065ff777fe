"""Neko Fig. 4 style: how well the three e-prop variants follow BPTT, per layer, along training, over seeds.

On a network where e-prop is *not* exact (recurrent ALIF, ``tau_mem`` of several steps, so
the recurrence and the adaptation carry gradient paths that e-prop's eligibility traces
truncate), BPTT trains the network and at every ``--every``-th step the gradients of
symmetric, random and adaptive e-prop are computed at the same parameters on the same
batch (:class:`neuroplastic.train.compare.GradientComparison`) and compared with BPTT's
per parameter: cosine, relative deviation ``|g - g_bptt| / |g_bptt|`` and sign agreement.

Writes ``results.json`` (every record of every seed) to ``--out``, the figure (metrics
averaged over seeds) to ``docs/img/eprop_alignment.png`` and the page
``docs/studies/eprop-alignment.md`` with mean +- std over seeds.  Usage::

    python examples/eprop_alignment.py                       # 3 seeds
    python examples/eprop_alignment.py --tiny --out /tmp/ea --no-doc
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from neuroplastic.backend import get_backend
from neuroplastic.data import load_dataset
from neuroplastic.data.arrays import Dataset, from_arrays
from neuroplastic.experiment import machine_description
from neuroplastic.models import build_model
from neuroplastic.train.compare import GradientComparison

VARIANTS = ("eprop-symmetric", "eprop-random", "eprop-adaptive")
METRICS = ("cosine", "rel_deviation", "sign_agreement")
TRAINED_BY = {
    "self": "Each variant trains its own network from the same initialisation (so that random and adaptive"
            " feedback can align, which needs the rule to train), and BPTT's gradient is computed beside it.",
    "bptt": "BPTT trains the network; the three variants are compared on BPTT's trajectory.",
}
LAYER_NAMES = {"layers.0.w": "input", "layers.0.w_rec": "recurrent", "layers.1.w": "output", "all": "all"}


def seed_stats(records_by_seed: Sequence[Sequence[dict]], metrics: Iterable[str] = METRICS, kind: str = "gradient") -> list[dict]:
    """Records averaged over seeds: one per (step, rule, layer) with ``<metric>`` the mean and ``<metric>_std``."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for records in records_by_seed:
        for r in records:
            if r.get("kind", kind) == kind:
                groups[(r["step"], r["rule"], r["layer"])].append(r)
    out = []
    for (step, rule, layer), rows in groups.items():
        row = {"step": step, "rule": rule, "layer": layer, "kind": kind, "n_seeds": len(rows)}
        for m in metrics:
            vals = np.array([np.nan if r[m] is None else r[m] for r in rows], dtype=np.float64)
            row[m], row[f"{m}_std"] = float(np.nanmean(vals)), float(np.nanstd(vals))
        out.append(row)
    return sorted(out, key=lambda r: (r["step"], r["rule"], r["layer"]))


def phase_table(records_by_seed: Sequence[Sequence[dict]], rules: Sequence[str], layers: Sequence[str], metric: str,
                phases: int = 3, kind: str = "gradient") -> list[str]:
    """Markdown rows: per rule and layer, ``metric`` averaged over each third of training, mean +- std over seeds."""
    steps = sorted({r["step"] for recs in records_by_seed for r in recs})
    phases = min(phases, len(steps))
    bounds = np.array_split(np.array(steps), phases)
    head = ["early", "middle", "late"] if phases == 3 else [f"phase {i + 1}" for i in range(phases)]
    lines = [f"| rule | parameter | {' | '.join(f'{h} (steps {b[0]}-{b[-1]})' for h, b in zip(head, bounds))} |",
             "|---|---|" + "---|" * phases]
    for rule in rules:
        for layer in layers:
            cells = []
            for b in bounds:
                per_seed = [np.nanmean([r[metric] for r in recs if r["rule"] == rule and r["layer"] == layer and r["kind"] == kind
                                        and r["step"] in set(b.tolist()) and r[metric] is not None])
                            for recs in records_by_seed]
                cells.append(f"{np.mean(per_seed):.3f} +- {np.std(per_seed):.3f}")
            lines.append(f"| {rule} | {LAYER_NAMES.get(layer, layer)} | {' | '.join(cells)} |")
    return lines


def subset(data: Dataset, n_train: int | None) -> Dataset:
    if n_train is None or n_train >= data.x_train.shape[1]:
        return data
    return from_arrays(data.x_train[:, :n_train], data.y_train[:n_train], data.x_test, data.y_test, name=data.name)


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    """One seed: the records of the comparison(s) and the test accuracy of each trained network.

    ``args.trained_by == "self"``: each variant trains its own network (from the same
    initialisation) and BPTT's gradient is computed beside it at every compared step, so
    random and adaptive feedback have the chance to align (feedback alignment needs the
    rule to train).  ``"bptt"``: BPTT trains one network and all variants are compared on it.
    """
    B = get_backend(args.backend)
    data = subset(load_dataset("mnist1d"), args.train_examples)
    net = build_model("rsnn-alif", data.n_features, data.n_classes, hidden=args.hidden, tau_mem=args.tau_mem,
                      tau_out=args.tau_out, tau_adapt=args.tau_adapt)
    init = net.init(seed, backend=B)
    t0 = time.perf_counter()
    runs = [(v, ["bptt", v]) for v in VARIANTS] if args.trained_by == "self" else [("bptt", ["bptt", *VARIANTS])]
    records, accs = [], {}
    for primary, rules in runs:
        comp = GradientComparison(net, rules, primary=primary, reference="bptt", loss="ce_mean",
                                  optimizer="adam", lr=args.lr, backend=B)
        params, recs, _ = comp.run(init, data, epochs=args.epochs, batch_size=args.batch_size, seed=seed,
                                   every=args.every, max_steps=args.max_steps)
        records += [r for r in recs if r["rule"] != "bptt" or primary == "bptt"]
        accs[primary] = float(comp.trainer.evaluate(params, data.x_test, data.y_test)["acc"])
    return {"seed": seed, "records": records, "test_acc": accs, "seconds": time.perf_counter() - t0}


def plot(records_by_seed: Sequence[Sequence[dict]], path: Path, title: str) -> None:
    from neuroplastic.analysis.plots import plot_alignment_curves

    mean = [r for r in seed_stats(records_by_seed) if r["rule"] != "bptt"]
    plot_alignment_curves(mean, path, metrics=METRICS, layers=["layers.0.w", "layers.0.w_rec", "layers.1.w"],
                          kind="gradient", reference="BPTT", title=title)


def write_doc(path: Path, results: list[dict], args: argparse.Namespace, command: str, seconds: float, img: str) -> None:
    recs = [r["records"] for r in results]
    layers = ["layers.0.w", "layers.0.w_rec", "layers.1.w", "all"]
    trained = list(results[0]["test_acc"])
    acc_text = "; ".join(f"{k} {100 * np.mean([r['test_acc'][k] for r in results]):.1f} +- {100 * np.std([r['test_acc'][k] for r in results]):.1f}%"
                         for k in trained)
    n_steps = max(r["step"] for r in recs[0]) + 1
    lines = [
        "# E-prop against BPTT along training (Neko Fig. 4 style)",
        "",
        "Per-layer agreement of the three e-prop variants (Bellec et al. 2020: symmetric feedback `B = W_out^T`,"
        " fixed random feedback, adaptive feedback trained like the readout) with BPTT's gradient, measured"
        " while BPTT trains the network: at every step all rules compute their gradient at the *same*"
        " parameters on the *same* batch (`GradientComparison`).  As Neko's Figure 4, but on a network where"
        " e-prop is not exact.  The row *all* concatenates all parameters; the readout's gradient, which every"
        " variant computes exactly, dominates it, so the hidden layers' rows are the informative ones.",
        "",
        "## Setup",
        "",
        f"MNIST-1D ({args.train_examples or 4000} training examples, 40 steps), recurrent ALIF network"
        f" (`rsnn-alif`): {args.hidden} hidden neurons, `tau_mem = {args.tau_mem:g}` steps,"
        f" `tau_adapt = {args.tau_adapt:g}`, adaptation strength 0.5, leaky readout `tau_out = {args.tau_out:g}`;"
        f" loss `ce_mean`; Adam lr {args.lr}, batch {args.batch_size}, {n_steps} steps; gradients compared"
        f" every {args.every} steps.  {TRAINED_BY[args.trained_by]}  Test accuracy at the end: {acc_text}."
        f"  Seeds {', '.join(str(r['seed']) for r in results)}; every number is mean +- std over them (each seed's"
        " value first averaged over the steps of the phase).",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: {machine_description()} (shared with other jobs),"
        f" {args.backend} backend, float32; {seconds:.0f} s in all.  Numbers move a little from machine to machine"
        " (float32 summation order decides spikes at threshold), not their ordering.",
        "",
        f"![per-layer agreement with BPTT, mean over seeds]({img})",
        "",
    ]
    for m, what in (("cosine", "Cosine to BPTT's gradient (1 = same direction)"),
                    ("rel_deviation", "Relative deviation `|g - g_bptt| / |g_bptt|` (0 = identical)"),
                    ("sign_agreement", "Sign agreement with BPTT (fraction of weights)")):
        lines += [f"## {what}", "", *phase_table(recs, VARIANTS, layers, m), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--tau-mem", type=float, default=10.0)
    ap.add_argument("--tau-adapt", type=float, default=40.0)
    ap.add_argument("--tau-out", type=float, default=20.0)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--every", type=int, default=4)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--train-examples", type=int, default=None, help="use the first N training examples (default: all 4000)")
    ap.add_argument("--trained-by", choices=list(TRAINED_BY), default="self",
                    help="self: each variant trains and BPTT is computed beside it; bptt: BPTT trains, variants compared")
    ap.add_argument("--backend", default="jax", choices=["jax", "torch"])
    ap.add_argument("--out", default="runs/studies/eprop-alignment")
    ap.add_argument("--img", default="docs/img/eprop_alignment.png")
    ap.add_argument("--doc", default="docs/studies/eprop-alignment.md")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long run (tests): 2 seeds, 16 hidden, 4 steps")
    args = ap.parse_args()
    if args.tiny:
        args.seeds, args.hidden, args.max_steps, args.every, args.train_examples = args.seeds[:2], 16, 4, 2, 128
    t0 = time.perf_counter()
    results = []
    for seed in args.seeds:
        r = run_seed(args, seed)
        last = [x for x in r["records"] if x["layer"] == "all" and x["kind"] == "gradient" and x["rule"] != "bptt"]
        final = {x["rule"]: x["cosine"] for x in last if x["step"] == max(y["step"] for y in last)}
        print(f"seed {seed}: test acc {r['test_acc']} ({r['seconds']:.0f} s); last cosine (all parameters) "
              + ", ".join(f"{k} {v:.3f}" for k, v in final.items()), flush=True)
        results.append(r)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results))
    plot([r["records"] for r in results], Path(args.img),
         f"e-prop vs BPTT on an ALIF network (tau_mem={args.tau_mem:g}, trained by {args.trained_by}), mean over {len(results)} seeds")
    for line in phase_table([r["records"] for r in results], VARIANTS, ["layers.0.w", "layers.0.w_rec"], "cosine"):
        print(line)
    if not args.no_doc:
        img = "../img/" + Path(args.img).name
        write_doc(Path(args.doc), results, args, "python " + " ".join(sys.argv), seconds, img)
        print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
