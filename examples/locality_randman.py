"""Slax-style temporal-locality study: online rules against RTRL on R-Randman and T-Randman.

Slax (Summe et al. 2024) compares learning rules that are local in time with RTRL, the
exact forward-mode gradient, on Randman in two codes: **R-Randman** (the manifold value is
in the spike *count*, spike times are random) and **T-Randman** (every unit fires once;
the value is in the spike *time*).  Here, per code and seed:

1. **Cosine to RTRL along training.**  RTRL trains the network; at every ``--every``-th
   step BPTT, OTTT, OTPE, OSTL, e-prop (symmetric) and FPTT's per-step gradient compute
   their gradient at the same parameters on the same batch
   (:class:`~neuroplastic.train.compare.GradientComparison`), compared with RTRL's.  FPTT
   cannot give an offline gradient (its regulariser is defined by the per-step updates), so
   the comparison uses its *base*, the one-step gradient ``grad l_t`` that FPTT regularises.
2. **Final accuracy.**  Every rule trains the same network from the same initialisation
   (offline: one update per batch, the per-step gradients summed; FPTT online, one update
   per time step, at ``--lr-online``).
3. **Memory per rule.**  Measured: the bytes per example of the rule's online carry
   (``online_init`` with batch 1: eligibility traces, sensitivities, network state); for
   BPTT the network state of every time step, which the backward pass needs.
4. **Loss landscape** (first seed): the plane of the first two principal directions of
   RTRL's trajectory around its end point (``analysis.landscape``), with every rule's
   trajectory (parameters after every epoch) projected on it.

Writes ``results.json`` to ``--out``, figures to ``docs/img/locality_*.png`` and
``docs/studies/locality.md``.  Usage::

    python examples/locality_randman.py                 # 3 seeds, both codes
    python examples/locality_randman.py --tiny --out /tmp/loc --no-doc
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from neuroplastic.analysis.landscape import auto_span, loss_surface, plot_landscape, project_trajectory, trajectory_directions
from neuroplastic.backend import get_backend
from neuroplastic.data.randman import load_randman
from neuroplastic.models import build_model
from neuroplastic.rules import make_rule
from neuroplastic.rules.fptt import OneStepGradient
from neuroplastic.train import Trainer
from neuroplastic.train.compare import GradientComparison
from neuroplastic.tree import tree_leaves

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eprop_alignment import phase_table, seed_stats  # noqa: E402
from neuroplastic.experiment import machine_description  # noqa: E402

CODES = {"R-Randman": "rate", "T-Randman": "timing"}
COMPARED = ("bptt", "ottt", "otpe", "ostl", "eprop", "fptt")
LOSS = "ce_per_step"


def compared_rules() -> dict[str, Any]:
    """The rules compared with RTRL; FPTT through its per-step base gradient (see the module docstring)."""
    rules: dict[str, Any] = {"rtrl": "rtrl"}
    rules.update({name: name for name in COMPARED if name != "fptt"})
    rules["fptt"] = OneStepGradient()
    return rules


def carry_bytes(rule_name: str, net: Any, params: Any, B: Any, n_steps: int) -> int:
    """Bytes per example the rule keeps while it runs (see the module docstring)."""
    if rule_name == "bptt":
        state = net.initial_state(B, 1)
        return n_steps * sum(int(np.asarray(B.to_numpy(x)).nbytes) for x in tree_leaves(state))
    rule = make_rule(rule_name)
    carry = rule.online_init(net, params, rule.init(net, params, B.key(0)), 1)
    return sum(int(np.asarray(B.to_numpy(x)).nbytes) for x in tree_leaves(carry))


def load(code: str, args: argparse.Namespace, seed: int) -> Any:
    return load_randman(CODES[code], n_classes=args.classes, n_units=args.units, n_steps=args.steps,
                        samples_per_class=args.per_class + args.test_per_class, test_per_class=args.test_per_class,
                        max_spikes=args.max_spikes, seed=seed)


def run_seed(code: str, args: argparse.Namespace, seed: int, landscape: bool) -> dict:
    B = get_backend(args.backend)
    data = load(code, args, seed)
    net = build_model("rsnn", data.n_features, data.n_classes, hidden=args.hidden, tau_mem=args.tau_mem, tau_out=args.tau_out)
    init = net.init(seed, backend=B)
    t0 = time.perf_counter()
    comp = GradientComparison(net, compared_rules(), primary="rtrl", reference="rtrl", loss=LOSS, optimizer="adam", lr=args.lr, backend=B)
    final, records, extra = comp.run(init, data, epochs=args.epochs, batch_size=args.batch_size, seed=seed, every=args.every,
                                     keep_trajectory=True)
    out: dict[str, Any] = {"code": code, "seed": seed, "records": records, "acc": {}, "memory_bytes": {}}
    trajectories = {"rtrl": extra["trajectory"]}
    out["acc"]["rtrl"] = float(comp.trainer.evaluate(final, data.x_test, data.y_test)["acc"])
    for name in COMPARED:
        online = name == "fptt"
        trainer = Trainer(net, name, loss=LOSS, optimizer="adam", lr=args.lr_online if online else args.lr, backend=B,
                          mode="online" if online else "offline", progress=False)
        traj = [B.tree_to_numpy(init)]
        _, hist = trainer.fit(init, data, epochs=args.epochs, batch_size=args.batch_size, seed=seed,
                              callbacks=[lambda tr, rec, p: traj.append(B.tree_to_numpy(p)) and False])
        out["acc"][name] = float(hist[-1]["test_acc"])
        trajectories[name] = traj
    for name in ("rtrl", *COMPARED):
        out["memory_bytes"][name] = carry_bytes(name, net, init, B, args.steps)
    if landscape:
        d1, d2, explained = trajectory_directions(trajectories["rtrl"], B.tree_to_numpy(final))
        coords = {k: project_trajectory(v, B.tree_to_numpy(final), d1, d2) for k, v in trajectories.items()}
        span = auto_span(list(coords.values()))
        batches = [(data.x_train[:, i:i + 256], data.y_train[i:i + 256]) for i in range(0, min(512, data.x_train.shape[1]), 256)]
        a, b, L = loss_surface(net, comp.objective, final, d1, d2, batches, grid=args.grid, span=span, backend=B)
        out["landscape"] = {"alphas": a.tolist(), "betas": b.tolist(), "losses": L.tolist(), "explained": list(map(float, explained)),
                            "coords": {k: np.asarray(v).tolist() for k, v in coords.items()}}
    out["seconds"] = time.perf_counter() - t0
    return out


def accuracy_table(results: list[dict], codes: list[str]) -> list[str]:
    rules = ["rtrl", *COMPARED]
    lines = ["| rule | " + " | ".join(f"{c} test accuracy" for c in codes) + " | memory per example (bytes, measured) |",
             "|---|" + "---|" * len(codes) + "---|"]
    for rule in rules:
        cells = []
        for c in codes:
            accs = np.array([r["acc"][rule] for r in results if r["code"] == c])
            cells.append(f"{100 * accs.mean():.1f} +- {100 * accs.std():.1f}%")
        mem = results[0]["memory_bytes"][rule]
        lines.append(f"| {rule} | {' | '.join(cells)} | {mem:,} |")
    return lines


def write_doc(path: Path, results: list[dict], args: argparse.Namespace, command: str, seconds: float, codes: list[str]) -> None:
    seeds = sorted({r["seed"] for r in results})
    rules = [r for r in COMPARED]
    lines = [
        "# Temporal locality: online rules against RTRL on R-Randman and T-Randman (Slax-style)",
        "",
        "Slax compares learning rules that are local in time with RTRL, the exact gradient computed forward in"
        " time, on Randman with the manifold value coded in spike counts (**R-Randman**: each unit fires"
        " `round(v * max_spikes)` times at random steps) or in spike times (**T-Randman**: each unit fires once, at"
        " step `floor(v T)`; the original Randman), and reports that OTPE approximates RTRL better than OTTT.",
        "",
        "## Setup",
        "",
        f"Randman ({args.classes} classes, {args.units} units, {args.steps} steps, intrinsic dimension 1,"
        f" {args.per_class} training and {args.test_per_class} test examples per class, `max_spikes = {args.max_spikes}` for"
        f" R-Randman; the manifolds are drawn from the seed).  Network: `rsnn`, {args.hidden} recurrent LIF neurons"
        f" (`tau_mem = {args.tau_mem:g}` steps), leaky readout (`tau_out = {args.tau_out:g}`); loss `{LOSS}` (per-step"
        f" cross-entropy, which the online rules need); Adam lr {args.lr}, batch {args.batch_size}, {args.epochs} epochs."
        " RTRL trains and at every"
        f" {args.every}th step each rule's gradient is compared with RTRL's at the same parameters and batch."
        " FPTT enters the gradient comparison through its per-step base gradient (the one-step gradient it"
        " regularises; FPTT has no offline gradient) and trains online (one update per time step,"
        f" lr {args.lr_online}); every other rule trains offline (one update per batch, its per-step gradients summed).",
        f" Seeds {', '.join(map(str, seeds))}: mean +- std over seeds (each seed first averaged over the steps of a phase).",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: {machine_description()} (shared with other jobs),"
        f" {args.backend} backend, float32; {seconds:.0f} s in all.  Numbers move a little from machine to machine"
        " (float32 summation order decides spikes at threshold).  This is a small network trained for a few epochs to"
        " fit a few minutes of a shared CPU; the command above with `--hidden 64 --epochs 20 --per-class 400` is the"
        " full size.",
        "",
    ]
    for code in codes:
        recs = [r["records"] for r in results if r["code"] == code]
        lines += [f"## {code}: cosine to RTRL's gradient (all parameters)", "",
                  *phase_table(recs, rules, ["all"], "cosine"), "",
                  f"![cosine to RTRL along training, {code}](../img/locality_{CODES[code]}_cosine.png)", ""]
    lines += ["## Final accuracy and memory", "", *accuracy_table(results, codes), "",
              "Memory: the bytes per example each rule keeps while it runs (float32), measured from its online"
              " carry; BPTT's is the network state of all steps that its backward pass needs (a lower bound: the"
              " autodiff tape keeps more).  RTRL's sensitivity matrix grows with parameters times state size.", ""]
    for code in codes:
        lines += [f"![loss landscape, {code}](../img/locality_{CODES[code]}_landscape.png)", ""]
    lines += ["The landscapes: loss on the plane of the first two principal directions of RTRL's trajectory"
              " around its end point (first seed), every rule's trajectory (one point per epoch) projected on it.", ""]
    lines += verdict(results, codes)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def mean_cosine(results: list[dict], code: str, rule: str) -> tuple[float, float]:
    per_seed = [np.mean([r["cosine"] for r in res["records"] if r["rule"] == rule and r["layer"] == "all" and r["kind"] == "gradient"])
                for res in results if res["code"] == code]
    return float(np.mean(per_seed)), float(np.std(per_seed))


def verdict(results: list[dict], codes: list[str]) -> list[str]:
    lines = ["## Does Slax's finding hold here?", ""]
    for code in codes:
        (o, os_), (p, ps) = mean_cosine(results, code, "ottt"), mean_cosine(results, code, "otpe")
        wins = sum(
            np.mean([r["cosine"] for r in res["records"] if r["rule"] == "otpe" and r["layer"] == "all" and r["kind"] == "gradient"])
            > np.mean([r["cosine"] for r in res["records"] if r["rule"] == "ottt" and r["layer"] == "all" and r["kind"] == "gradient"])
            for res in results if res["code"] == code)
        n = sum(1 for res in results if res["code"] == code)
        holds = "holds" if wins == n else ("does not hold" if wins == 0 else "holds on some seeds only")
        lines.append(f"* {code}: mean cosine to RTRL over training, OTPE {p:.3f} +- {ps:.3f} against OTTT {o:.3f} +- {os_:.3f};"
                     f" OTPE closer on {wins} of {n} seeds: the finding **{holds}**.")
    return lines + [""]


def plots(results: list[dict], codes: list[str], img_dir: Path) -> None:
    from neuroplastic.analysis.plots import plot_alignment_curves

    img_dir.mkdir(parents=True, exist_ok=True)
    for code in codes:
        mean = [r for r in seed_stats([x["records"] for x in results if x["code"] == code], metrics=("cosine",)) if r["rule"] != "rtrl"]
        plot_alignment_curves(mean, img_dir / f"locality_{CODES[code]}_cosine.png", metrics=("cosine",), layers=["all"], kind="gradient",
                              reference="RTRL", title=f"{code}: cosine to RTRL (mean over seeds)")
        first = next(x for x in results if x["code"] == code and "landscape" in x)
        ls = first["landscape"]
        plot_landscape(np.array(ls["alphas"]), np.array(ls["betas"]), np.array(ls["losses"]),
                       {k: np.array(v) for k, v in ls["coords"].items()}, img_dir / f"locality_{CODES[code]}_landscape.png",
                       title=f"{code}, seed {first['seed']}: loss around RTRL's end point", explained_variance=ls["explained"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codes", nargs="+", default=list(CODES), choices=list(CODES))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--classes", type=int, default=5)
    ap.add_argument("--units", type=int, default=20)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--max-spikes", type=int, default=8)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--test-per-class", type=int, default=40)
    ap.add_argument("--hidden", type=int, default=24)
    ap.add_argument("--tau-mem", type=float, default=5.0)
    ap.add_argument("--tau-out", type=float, default=10.0)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--lr-online", type=float, default=5e-4)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--grid", type=int, default=15)
    ap.add_argument("--backend", default="jax", choices=["jax", "torch"])
    ap.add_argument("--out", default="runs/studies/locality")
    ap.add_argument("--img-dir", default="docs/img")
    ap.add_argument("--doc", default="docs/studies/locality.md")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long run (tests): one code, one seed, 1 epoch, 8 hidden")
    args = ap.parse_args()
    if args.tiny:
        args.codes, args.seeds, args.epochs, args.hidden, args.per_class, args.test_per_class = args.codes[:1], args.seeds[:1], 2, 8, 20, 10
        args.steps, args.grid, args.classes, args.batch_size = 12, 3, 2, 20
    t0 = time.perf_counter()
    results = []
    for code in args.codes:
        for i, seed in enumerate(args.seeds):
            r = run_seed(code, args, seed, landscape=i == 0)
            cos = {k: round(mean_cosine([r], code, k)[0], 3) for k in COMPARED}
            print(f"{code} seed {seed} ({r['seconds']:.0f} s): acc " + ", ".join(f"{k} {v:.2f}" for k, v in r["acc"].items())
                  + f"; mean cosine to RTRL {cos}", flush=True)
            results.append(r)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results))
    plots(results, args.codes, Path(args.img_dir))
    print("\n".join(accuracy_table(results, args.codes)))
    print("\n".join(verdict(results, args.codes)))
    if not args.no_doc:
        write_doc(Path(args.doc), results, args, "python " + " ".join(sys.argv), seconds, args.codes)
        print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
