"""Posterior sampling of a spiking network on MNIST-1D: is uncertainty higher on errors?

Reproduces Neko's uncertainty result (Figure 3, right) with an exact chain:

1. warm start: a recurrent LIF network trained by BPTT + Adam for a few epochs (the chain
   starts near a mode instead of spending its budget on finding one);
2. MALA (or HMC) on the *full-data* posterior (``N = 4000`` training examples, full batches,
   so the Metropolis-Hastings test is exact), Gaussian prior, surrogate gradients in the
   proposal, step size adapted to the target acceptance during burn-in and then frozen;
   preconditioned (``--precondition``, the default) by per-weight scales from the squared
   gradients at the warm start (``fisher_scale``: a diagonal Laplace approximation, capped
   at ``--max-scale``), optionally re-estimated from the chain's own variance in burn-in
   windows (``--adapt-scale``); ``--blocks layers`` (the default) moves the readout, the
   input and the recurrent weights in turn, each with its own step size
   (Metropolis-within-Gibbs), because the recurrent weights' energy jumps (spikes that
   appear or vanish) would otherwise set one tiny step for all; ``--probe`` first measures
   the acceptance of moving each parameter array alone;
3. mixing: acceptance rate (per block), effective sample sizes (Geyer's initial monotone
   sequence) of the potential, of ``--track`` randomly chosen weights (and per parameter
   array) and of the predicted probability of the true class of test examples, per kept
   state and per 1000 gradient evaluations and per minute, and trace plots
   (``neuroplastic.analysis.mixing``);
4. after burn-in, the class probabilities of every kept state on the 1000 test examples
   are accumulated (predictions, not weights);
5. posterior-mean accuracy, per-example entropy of the mean, expected entropy and mutual
   information; one-sided Mann-Whitney U tests that each is larger on wrongly classified
   test examples than on correct ones; a box plot.

Usage::

    python examples/hmc_uncertainty_mnist1d.py                 # writes docs/img + docs/sampling.md
    python examples/hmc_uncertainty_mnist1d.py --sampler hmc --leapfrog 5
    python examples/hmc_uncertainty_mnist1d.py --blocks none --hidden 128 --burnin 100 --samples 150 --max-scale 0.02
                                                               # the earlier run: all weights at once
    python examples/hmc_uncertainty_mnist1d.py --quick --no-doc  # a reduced run (the slow test)
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from neuroplastic.analysis.mixing import mixing_summary, plot_traces
from neuroplastic.analysis.plots import have_matplotlib, plot_uncertainty_boxplot
from neuroplastic.analysis.uncertainty import compare_uncertainty
from neuroplastic.backend import get_backend
from neuroplastic.data import load_dataset
from neuroplastic.models import build_model
from neuroplastic.rules.langevin import HMC, MALA, sample
from neuroplastic.train import Trainer
from neuroplastic.train.sampling import fisher_scale
from neuroplastic.tree import tree_leaves, tree_map, tree_paths

MEASURES = ("entropy_of_mean", "expected_entropy", "mutual_information")
#: ``--blocks layers``: one block per parameter array of the RSNN (readout first)
LAYER_BLOCKS = [["layers.1.w"], ["layers.0.w"], ["layers.0.w_rec"]]
LAYER_NAMES = {"layers.0.w": "input weights", "layers.0.w_rec": "recurrent weights", "layers.1.w": "readout weights"}


def probe_blocks(rule: MALA, net: Any, params: Any, data: Any, scale: Any, B: Any, steps: list[float], draws: int = 4) -> dict:
    """Mean acceptance probability of one MALA proposal from the warm start that moves one
    parameter array only (scales ``scale``), for each step in ``steps``: which weights limit the step."""
    from neuroplastic.losses import Objective, make_loss
    from neuroplastic.tree import tree_map, tree_paths, tree_unflatten_like

    potential = rule.potential(net, (B.asarray(data.x_train), B.asarray(data.y_train)), Objective(make_loss("ce_mean")))
    u0, g0, _ = B.jit(potential)(params)
    ones = tree_map(lambda w, s: B.astype(B.asarray(s), w.dtype), params, scale)

    def accept(mask: Any, eps: float, key: Any) -> Any:
        _, log_alpha, _ = MALA.propose(rule, B, potential, params, u0, g0, {}, eps, key, ones, mask)
        return B.exp(B.minimum(log_alpha, 0.0))

    accept = B.jit(accept)
    out: dict[str, list[float]] = {}
    paths = tree_paths(params)
    for path in paths:
        mask = tree_unflatten_like(params, [B.asarray(1.0 if q == path else 0.0) for q in paths])
        out[path] = [float(np.mean([float(B.to_numpy(accept(mask, eps, B.key(1000 + k)))) for k in range(draws)])) for eps in steps]
    return {"steps": list(steps), "accept": out}


def run(args: argparse.Namespace) -> dict[str, Any]:
    B = get_backend(args.backend)
    data = load_dataset("mnist1d")
    net = build_model("rsnn", data.n_features, 10, hidden=args.hidden, surrogate="fast_sigmoid")
    params = net.init(args.seed, backend=B)

    t0 = time.perf_counter()
    trainer = Trainer(net, "bptt", loss=args.loss, optimizer="adam", lr=args.lr, backend=B, progress=False)
    params, hist = trainer.fit(params, data, epochs=args.pretrain_epochs, batch_size=64, seed=args.seed)
    if args.polish_steps:  # full-batch Adam steps: closer to a mode of the full-data energy the chain samples
        polish = Trainer(net, "bptt", loss=args.loss, optimizer="adam", lr=args.polish_lr, backend=B, progress=False)
        params, more = polish.fit(params, data, epochs=args.polish_steps, batch_size=data.x_train.shape[1], seed=args.seed)
        hist = hist + more
    warm_acc = hist[-1]["test_acc"] if hist else trainer.evaluate(params, data.x_test, data.y_test)["acc"]
    pretrain_s = time.perf_counter() - t0
    print(f"warm start: {args.pretrain_epochs} epochs of BPTT + {args.polish_steps} full-batch steps, test accuracy {warm_acc:.3f} ({pretrain_s:.0f} s)", flush=True)

    n = data.x_train.shape[1]
    paths = tree_paths(params)
    sizes = [int(np.prod(np.shape(a))) for a in tree_leaves(params)]
    scale = None
    if args.precondition:
        scale = fisher_scale(net, params, data.x_train, data.y_train, n_data=n, prior_std=args.prior_std, loss=args.loss,
                             batch_size=100, backend=B, max_scale=args.max_scale)
        flat = np.concatenate([np.ravel(a) for a in tree_leaves(scale)])
        print(f"preconditioner: per-weight scales from {flat.min():.2e} to {flat.max():.2e} (median {np.median(flat):.2e})", flush=True)
    blocks = LAYER_BLOCKS if args.blocks == "layers" else None
    n_blocks = 1 if blocks is None else len(blocks)
    thin = args.thin * n_blocks  # a kept state every `thin` sweeps through the blocks
    burnin = args.burnin * n_blocks
    common = dict(step_size=args.step_size, n_data=n, prior_std=args.prior_std, burnin=burnin, scale=scale,
                  adapt_scale=args.adapt_scale, blocks=blocks)
    rule = HMC(n_leapfrog=args.leapfrog, **common) if args.sampler == "hmc" else MALA(**common)
    probe = None
    if args.probe:
        probe = probe_blocks(MALA(n_data=n, prior_std=args.prior_std), net, params, data,
                             scale if scale is not None else tree_map(lambda w: np.ones(np.shape(w)), B.tree_to_numpy(params)),
                             B, [0.003, 0.01, 0.03, 0.1, 0.3, 1.0])
        for path, acc in probe["accept"].items():
            print(f"  probe {path}: " + ", ".join(f"eps {e:g}: {a:.2f}" for e, a in zip(probe["steps"], acc)), flush=True)

    def progress(i: int, rec: dict) -> None:
        if (i + 1) % (50 * n_blocks) == 0:
            print(f"  transition {i + 1}: U={rec['potential']:.1f} loss={rec['loss']:.4f} "
                  f"accept_prob={rec['accept_prob']:.2f} step={rec['step_size']:.2e}", flush=True)

    res = sample(rule, net, params, data.x_train, data.y_train, n_samples=args.samples, thin=thin,
                 loss=args.loss, eval_x=data.x_test, backend=B, seed=args.seed, progress=progress,
                 track=args.track, keep_predictions=True)
    steps = np.atleast_1d(res.step_size)
    print(f"sampling: {len(res.trace)} transitions ({res.gradient_evals} gradient evaluations) in {res.seconds:.0f} s, "
          f"acceptance after burn-in {res.accept_rate:.2f}, step size {', '.join(f'{e:.2e}' for e in steps)}", flush=True)

    # the chain of states before each kept sweep (k = 0 .. samples - 1); predictions come from the states after them
    at = burnin + thin * np.arange(args.samples)
    potential = np.array([t["potential"] for t in res.trace])
    accepted = np.array([t["accepted"] for t in res.trace])
    probs = res.predictive.samples  # (S, N_test, C)
    p_true = probs[:, np.arange(probs.shape[1]), data.y_test]  # (S, N_test)
    layer = np.searchsorted(np.cumsum(sizes), res.tracked_index, side="right")  # parameter array of each tracked weight
    traces = {"potential": potential[at], "weights": res.tracked[at - 1], "p_true": p_true}
    for i, path in enumerate(paths):
        if np.any(layer == i):
            traces[path] = res.tracked[at - 1][:, layer == i]
    mixing = mixing_summary(traces, accepted=accepted[burnin:])
    kept_evals = (len(res.trace) - burnin) * rule.potential_evals(True)
    kept_s = res.seconds * (len(res.trace) - burnin) / len(res.trace)
    efficiency = {name: {"per_1000_gradients": 1000 * mixing[name]["ess_geyer"]["median"] / kept_evals,
                         "per_minute": 60 * mixing[name]["ess_geyer"]["median"] / kept_s} for name in traces}
    block_accept = {("all" if blocks is None else "+".join(blocks[b])): float(np.mean(accepted[burnin + b::n_blocks]))
                    for b in range(n_blocks)}
    half = args.samples // 2
    drift = {"warm_start": float(potential[0]), "end_of_burnin": float(potential[burnin]),
             "kept_first_half": float(potential[at[:half]].mean()), "kept_second_half": float(potential[at[half:]].mean()),
             "kept_std": float(potential[at].std()), "half_dimension": sum(sizes) / 2}
    scales = None
    if res.scale is not None:
        scales = {path: float(np.median(s)) for path, s in zip(paths, tree_leaves(res.scale))}
    print(f"mixing (per sweep): acceptance {mixing['accept_rate']:.2f} {block_accept}; ESS potential "
          f"{mixing['potential']['ess_geyer']['median']:.1f}, weights median {mixing['weights']['ess_geyer']['median']:.1f} "
          f"(min {mixing['weights']['ess_geyer']['min']:.1f}), test predictions median {mixing['p_true']['ess_geyer']['median']:.1f} "
          f"of {args.samples} kept states", flush=True)
    for path in paths:
        if path in mixing:
            print(f"  {path}: ESS median {mixing[path]['ess_geyer']['median']:.1f} (min {mixing[path]['ess_geyer']['min']:.1f},"
                  f" max {mixing[path]['ess_geyer']['max']:.1f}) over {mixing[path].get('n', 0)} states", flush=True)
    print(f"potential: warm start {drift['warm_start']:.1f}, end of burn-in {drift['end_of_burnin']:.1f}, kept halves "
          f"{drift['kept_first_half']:.1f} / {drift['kept_second_half']:.1f} (d/2 = {drift['half_dimension']:.0f})", flush=True)
    summary = res.predictive.summary()
    pred = summary["mean"].argmax(axis=1)
    correct = pred == data.y_test
    tests = {m: compare_uncertainty(summary[m], correct) for m in MEASURES}
    last = Trainer(net, "bptt", loss=args.loss, backend=B, progress=False).evaluate(res.params, data.x_test, data.y_test)["acc"]
    out = {
        "sampler": args.sampler, "hidden": args.hidden, "loss": args.loss, "backend": args.backend,
        "pretrain_epochs": args.pretrain_epochs, "polish_steps": args.polish_steps, "warm_start_test_acc": warm_acc,
        "burnin": args.burnin, "samples": args.samples, "thin": args.thin, "leapfrog": args.leapfrog if args.sampler == "hmc" else None,
        "prior_std": args.prior_std, "n_data": n, "n_params": sum(sizes), "max_scale": args.max_scale,
        "blocks": blocks, "adapt_scale": bool(args.adapt_scale), "transitions": len(res.trace),
        "gradient_evals": res.gradient_evals, "accept_rate": res.accept_rate, "block_accept": block_accept,
        "step_size": [float(e) for e in steps], "scale_median": scales,
        "posterior_mean_test_acc": float(correct.mean()), "last_sample_test_acc": last,
        "tests": tests, "pretrain_s": pretrain_s, "sampling_s": res.seconds, "seed": args.seed,
        "precondition": bool(args.precondition), "mixing": mixing, "efficiency": efficiency, "potential_drift": drift,
        "track": args.track, "probe": probe, "command": args.command,
        "tracked_per_array": {path: int(np.sum(layer == i)) for i, path in enumerate(paths)},
    }
    if args.trace_plot and have_matplotlib():
        # burn-in included (shaded; one point per sweep); predictions exist for kept states only
        sweeps = np.arange(0, len(res.trace), n_blocks)
        pad = np.full((args.burnin, min(6, p_true.shape[1])), np.nan)
        panels = {"potential U": potential[sweeps]}
        for i, path in enumerate(paths):
            if np.any(layer == i):
                panels[LAYER_NAMES.get(path, path)] = res.tracked[sweeps[1:] - 1][:, layer == i][:, :4]
        panels["p(true class), 6 test examples"] = np.concatenate([pad, p_true[:, :6]])[: len(sweeps)]
        panels = {k: v[: min(len(x) for x in panels.values())] for k, v in panels.items()}
        plot_traces(panels, args.trace_plot, burnin=args.burnin,
                    title=f"{args.sampler.upper()} on MNIST-1D ({args.hidden} hidden"
                          f"{', blocks by layer' if blocks else ''}{', adapted scales' if args.adapt_scale else ''}): per sweep")
        out["trace_plot"] = str(args.trace_plot)
    for m in MEASURES:
        t = tests[m]
        print(f"{m:>20}: median correct {t['median_correct']:.4f}, wrong {t['median_wrong']:.4f}, "
              f"one-sided Mann-Whitney p = {t['p_value']:.2e}")
    print(f"posterior-mean test accuracy {out['posterior_mean_test_acc']:.3f} (warm start {warm_acc:.3f}, last sample {last:.3f})")
    if args.plot and have_matplotlib():
        plot_uncertainty_boxplot(
            summary["entropy_of_mean"][correct], summary["entropy_of_mean"][~correct], args.plot,
            label="entropy of the posterior-mean prediction (nats)", p_value=tests["entropy_of_mean"]["p_value"],
            test="one-sided Mann-Whitney U", title=f"{args.sampler.upper()} posterior of an RSNN on MNIST-1D (test set)",
        )
        mi_path = str(args.plot).replace(".png", "_mi.png")
        plot_uncertainty_boxplot(
            summary["mutual_information"][correct], summary["mutual_information"][~correct], mi_path,
            label="mutual information (nats)", p_value=tests["mutual_information"]["p_value"],
            test="one-sided Mann-Whitney U", title=f"{args.sampler.upper()} posterior: epistemic part",
        )
        out["plots"] = [str(args.plot), mi_path]
    return out


def _ess_row(label: str, m: dict, eff: dict | None = None) -> str:
    g = m["ess_geyer"]
    cost = "" if eff is None else f" | {eff['per_1000_gradients']:.1f} | {eff['per_minute']:.2f}"
    return f"| {label} | {g['median']:.1f} ({g['min']:.1f}-{g['max']:.1f}){cost} |"


def write_doc(path: Path, out: dict[str, Any]) -> None:
    """Replace the block between the results markers of ``path`` with this run's numbers."""
    mx, eff, drift = out["mixing"], out["efficiency"], out["potential_drift"]
    blocks = "one block per parameter array (readout, input, recurrent) in turn" if out["blocks"] else "all weights at once"
    sweep = "sweeps (one transition per block)" if out["blocks"] else "transitions"
    sampler = out["sampler"].upper() + (f" ({out['leapfrog']} leapfrog steps)" if out["leapfrog"] else "")
    lines = [
        "<!-- results:start (written by examples/hmc_uncertainty_mnist1d.py) -->",
        f"Run: `{out['command']}`",
        "",
        f"{sampler}, recurrent LIF network"
        f" with {out['hidden']} hidden neurons ({out['n_params']} weights), `{out['loss']}` loss, {out['backend']} backend,"
        f" seed {out['seed']}; warm start {out['pretrain_epochs']} epochs of BPTT (Adam, batches of 64) and {out['polish_steps']}"
        f" full-batch Adam steps ({out['pretrain_s']:.0f} s); moves {blocks};"
        f" {out['burnin']} burn-in + {out['samples']} kept {sweep} (thin {out['thin']}), {out['transitions']} transitions,"
        f" {out['gradient_evals']} gradient evaluations on the full {out['n_data']}-example posterior"
        f" ({out['sampling_s']:.0f} s on the shared 2-core CPU machine).",
        "",
        "| quantity | value |",
        "| --- | --- |",
        f"| preconditioned (`fisher_scale`, cap {out['max_scale']:g}) / scales adapted in burn-in |"
        f" {'yes' if out['precondition'] else 'no'} / {'yes' if out['adapt_scale'] else 'no'} |",
        f"| acceptance rate after burn-in | {out['accept_rate']:.2f}"
        + ("" if not out["blocks"] else " (" + ", ".join(f"{LAYER_NAMES.get(k, k)} {v:.2f}" for k, v in out["block_accept"].items()) + ")")
        + " |",
        f"| adapted step size (in units of the scales) | {', '.join(f'{e:.2e}' for e in out['step_size'])} |",
    ]
    if out["scale_median"]:
        lines.append("| median scale of the kept chain | "
                     + ", ".join(f"{LAYER_NAMES.get(k, k)} {v:.1e}" for k, v in out["scale_median"].items()) + " |")
    lines += [
        f"| potential U: warm start, end of burn-in, kept first / second half (std) | {drift['warm_start']:.0f}, {drift['end_of_burnin']:.0f},"
        f" {drift['kept_first_half']:.0f} / {drift['kept_second_half']:.0f} ({drift['kept_std']:.1f}); d/2 = {drift['half_dimension']:.0f} |",
        f"| test accuracy, warm start | {100 * out['warm_start_test_acc']:.1f}% |",
        f"| test accuracy, posterior mean ({out['samples']} samples) | **{100 * out['posterior_mean_test_acc']:.1f}%** |",
        f"| test accuracy, last sample alone | {100 * out['last_sample_test_acc']:.1f}% |",
        "",
        f"Effective sample sizes (Geyer) of the {out['samples']} kept states, and per cost of the kept chain"
        " (its gradient evaluations and seconds):",
        "",
        "| trace | effective sample size, median (min-max) | per 1000 gradient evaluations | per minute |",
        "| --- | --- | --- | --- |",
        _ess_row("potential U", mx["potential"], eff["potential"]),
        _ess_row(f"{out['track']} random weights", mx["weights"], eff["weights"]),
    ]
    for key, label in LAYER_NAMES.items():
        if key in mx:
            lines.append(_ess_row(f"&nbsp;&nbsp;of which {out['tracked_per_array'][key]} {label}", mx[key], eff[key]))
    lines += [
        _ess_row("p(true class), 1000 test examples", mx["p_true"], eff["p_true"]),
        "",
        "| uncertainty (per test example) | median, correct | median, wrong | one-sided Mann-Whitney p |",
        "| --- | --- | --- | --- |",
    ]
    for m in MEASURES:
        t = out["tests"][m]
        lines.append(f"| {m.replace('_', ' ')} | {t['median_correct']:.3g} | {t['median_wrong']:.3g} | **{t['p_value']:.1e}** |")
    n = out["tests"]["entropy_of_mean"]
    lines += ["", f"{n['n_correct']} test examples were classified correctly and {n['n_wrong']} wrongly by the posterior mean."]
    if out.get("probe"):
        pr = out["probe"]
        lines += ["", "Probe at the warm start: mean acceptance probability of one MALA proposal that moves one parameter"
                  " array only, by step (in units of the scales):", "",
                  "| moved | " + " | ".join(f"{e:g}" for e in pr["steps"]) + " |", "| --- |" + " --- |" * len(pr["steps"])]
        for key, acc in pr["accept"].items():
            lines.append(f"| {LAYER_NAMES.get(key, key)} | " + " | ".join(f"{a:.2f}" for a in acc) + " |")
    lines.append("<!-- results:end -->")
    text = path.read_text()
    block = "\n".join(lines)
    new = re.sub(r"<!-- results:start.*?<!-- results:end -->", lambda _: block, text, flags=re.S)
    if new == text and "<!-- results:start" not in text:
        new = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)


def build_parser() -> argparse.ArgumentParser:
    """The example's command line (defaults: the run in docs/sampling.md)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sampler", choices=["mala", "hmc"], default="mala")
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--loss", default="ce_mean")
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--pretrain-epochs", type=int, default=15)
    ap.add_argument("--polish-steps", type=int, default=300,
                    help="full-batch Adam steps after the warm start (the chain then starts nearer a mode of its energy)")
    ap.add_argument("--polish-lr", type=float, default=2e-3)
    ap.add_argument("--burnin", type=int, default=200, help="burn-in sweeps (a sweep: one transition per block)")
    ap.add_argument("--samples", type=int, default=900, help="kept states (one every --thin sweeps)")
    ap.add_argument("--thin", type=int, default=1, help="sweeps between kept states")
    ap.add_argument("--leapfrog", type=int, default=5)
    ap.add_argument("--step-size", type=float, default=None,
                    help="initial step (adapted during burn-in); default 0.05 preconditioned (a multiple of the scales), 3e-4 plain")
    ap.add_argument("--prior-std", type=float, default=1.0)
    ap.add_argument("--backend", choices=["jax", "torch"], default="jax")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default="docs/img/hmc_uncertainty_mnist1d.png")
    ap.add_argument("--trace-plot", default="docs/img/hmc_traces_mnist1d.png")
    ap.add_argument("--max-scale", type=float, default=0.1,
                    help="largest preconditioner scale (weights with zero surrogate gradient would otherwise take prior-sized steps)")
    ap.add_argument("--track", type=int, default=200, help="weights followed at every transition (trace plots, ESS)")
    ap.add_argument("--precondition", action=argparse.BooleanOptionalAction, default=True,
                    help="per-weight proposal scales from the warm start's squared gradients (fisher_scale)")
    ap.add_argument("--adapt-scale", action=argparse.BooleanOptionalAction, default=True,
                    help="adapt the per-weight scales from the chain's variance in burn-in windows (Stan's warm-up)")
    ap.add_argument("--blocks", choices=["none", "layers"], default="layers",
                    help="'layers': move the readout, input and recurrent weights in turn, each with its own step size")
    ap.add_argument("--probe", action="store_true", help="first measure the acceptance of moving each parameter array alone")
    ap.add_argument("--doc", default="docs/sampling.md")
    ap.add_argument("--no-doc", action="store_true", help="do not write the results into --doc")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    ap.add_argument("--quick", action="store_true", help="a reduced run: 16 hidden, 5 warm-start epochs, 20 full-batch steps, 30 + 40 sweeps")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long run (tests): 8 hidden, 1 epoch, 2 full-batch steps, 20 + 6 sweeps")
    return ap


def configure(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` and apply ``--quick`` / ``--tiny`` and the step-size default."""
    import shlex
    import sys

    args = build_parser().parse_args(argv)
    args.command = "python examples/hmc_uncertainty_mnist1d.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.hidden, args.pretrain_epochs, args.polish_steps, args.burnin, args.samples = 16, 5, 20, 30, 40
    if args.tiny:
        args.hidden, args.pretrain_epochs, args.polish_steps, args.burnin, args.samples, args.track = 8, 1, 2, 20, 6, 10
    if args.step_size is None:
        args.step_size = 0.05 if args.precondition else 3e-4
    return args


def main() -> None:
    args = configure()
    out = run(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    if not args.no_doc:
        write_doc(Path(args.doc), out)
        print(f"results written to {args.doc}")


if __name__ == "__main__":
    main()
