"""Posterior sampling of a spiking network on MNIST-1D: is uncertainty higher on errors?

Reproduces Neko's uncertainty result (Figure 3, right) with an exact chain:

1. warm start: a recurrent LIF network trained by BPTT + Adam for a few epochs (the chain
   starts near a mode instead of spending its budget on finding one);
2. MALA (or HMC) on the *full-data* posterior (``N = 4000`` training examples, full batches,
   so the Metropolis-Hastings test is exact), Gaussian prior, surrogate gradients in the
   proposal, step size adapted to the target acceptance during burn-in and then frozen;
   preconditioned (``--precondition``, the default) by per-weight scales from the squared
   gradients at the warm start (``fisher_scale``: a diagonal Laplace approximation), so
   that weights the data barely constrain take large steps;
3. mixing: acceptance rate, effective sample sizes (Geyer's initial monotone sequence) of
   the potential, of ``--track`` randomly chosen weights and of the predicted probability
   of the true class of test examples, and trace plots (``neuroplastic.analysis.mixing``);
4. after burn-in, the class probabilities of every kept state on the 1000 test examples
   are accumulated (predictions, not weights);
5. posterior-mean accuracy, per-example entropy of the mean, expected entropy and mutual
   information; one-sided Mann-Whitney U tests that each is larger on wrongly classified
   test examples than on correct ones; a box plot.

Usage::

    python examples/hmc_uncertainty_mnist1d.py                 # writes docs/img + docs/sampling.md
    python examples/hmc_uncertainty_mnist1d.py --sampler hmc --leapfrog 5
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
from neuroplastic.tree import tree_leaves

MEASURES = ("entropy_of_mean", "expected_entropy", "mutual_information")


def run(args: argparse.Namespace) -> dict[str, Any]:
    B = get_backend(args.backend)
    data = load_dataset("mnist1d")
    net = build_model("rsnn", data.n_features, 10, hidden=args.hidden, surrogate="fast_sigmoid")
    params = net.init(args.seed, backend=B)

    t0 = time.perf_counter()
    trainer = Trainer(net, "bptt", loss=args.loss, optimizer="adam", lr=args.lr, backend=B, progress=False)
    params, hist = trainer.fit(params, data, epochs=args.pretrain_epochs, batch_size=64, seed=args.seed)
    warm_acc = hist[-1]["test_acc"] if hist else trainer.evaluate(params, data.x_test, data.y_test)["acc"]
    pretrain_s = time.perf_counter() - t0
    print(f"warm start: {args.pretrain_epochs} epochs of BPTT, test accuracy {warm_acc:.3f} ({pretrain_s:.0f} s)", flush=True)

    n = data.x_train.shape[1]
    scale = None
    if args.precondition:
        scale = fisher_scale(net, params, data.x_train, data.y_train, n_data=n, prior_std=args.prior_std, loss=args.loss,
                             batch_size=100, backend=B, max_scale=args.max_scale)
        flat = np.concatenate([np.ravel(a) for a in tree_leaves(scale)])
        print(f"preconditioner: per-weight scales from {flat.min():.2e} to {flat.max():.2e} (median {np.median(flat):.2e})", flush=True)
    common = dict(step_size=args.step_size, n_data=n, prior_std=args.prior_std, burnin=args.burnin, scale=scale)
    rule = HMC(n_leapfrog=args.leapfrog, **common) if args.sampler == "hmc" else MALA(**common)

    def progress(i: int, rec: dict) -> None:
        if (i + 1) % 25 == 0:
            print(f"  step {i + 1}: U={rec['potential']:.1f} loss={rec['loss']:.4f} "
                  f"accept_prob={rec['accept_prob']:.2f} step={rec['step_size']:.2e}", flush=True)

    res = sample(rule, net, params, data.x_train, data.y_train, n_samples=args.samples, thin=args.thin,
                 loss=args.loss, eval_x=data.x_test, backend=B, seed=args.seed, progress=progress,
                 track=args.track, keep_predictions=True)
    print(f"sampling: {len(res.trace)} transitions in {res.seconds:.0f} s, acceptance after burn-in "
          f"{res.accept_rate:.2f}, step size {res.step_size:.2e}", flush=True)

    kept = slice(args.burnin, None)
    probs = res.predictive.samples  # (S, N_test, C)
    p_true = probs[:, np.arange(probs.shape[1]), data.y_test]  # (S, N_test)
    potential = np.array([t["potential"] for t in res.trace])
    mixing = mixing_summary({"potential": potential[kept], "weights": res.tracked[kept], "p_true": p_true},
                            accepted=[t["accepted"] for t in res.trace[kept]])
    print(f"mixing: acceptance {mixing['accept_rate']:.2f}; ESS potential {mixing['potential']['ess_geyer']['median']:.1f},"
          f" weights median {mixing['weights']['ess_geyer']['median']:.1f} (min {mixing['weights']['ess_geyer']['min']:.1f}),"
          f" test predictions median {mixing['p_true']['ess_geyer']['median']:.1f} of {p_true.shape[0]} kept states", flush=True)
    summary = res.predictive.summary()
    pred = summary["mean"].argmax(axis=1)
    correct = pred == data.y_test
    tests = {m: compare_uncertainty(summary[m], correct) for m in MEASURES}
    last = Trainer(net, "bptt", loss=args.loss, backend=B, progress=False).evaluate(res.params, data.x_test, data.y_test)["acc"]
    out = {
        "sampler": args.sampler, "hidden": args.hidden, "loss": args.loss, "backend": args.backend,
        "pretrain_epochs": args.pretrain_epochs, "warm_start_test_acc": warm_acc,
        "burnin": args.burnin, "samples": args.samples, "thin": args.thin, "leapfrog": args.leapfrog if args.sampler == "hmc" else None,
        "prior_std": args.prior_std, "n_data": n,
        "accept_rate": res.accept_rate, "step_size": res.step_size,
        "posterior_mean_test_acc": float(correct.mean()), "last_sample_test_acc": last,
        "tests": tests, "pretrain_s": pretrain_s, "sampling_s": res.seconds, "seed": args.seed,
        "precondition": bool(args.precondition), "mixing": mixing, "track": args.track,
    }
    if args.trace_plot and have_matplotlib():
        # burn-in included (shaded); predictions exist for kept states only, so they start after it
        pad = np.full((args.burnin, 6), np.nan)
        plot_traces({"potential U": potential, f"6 of {args.track} tracked weights": res.tracked[:, :6],
                     "p(true class), 6 test examples": np.concatenate([pad, p_true[:, :6]])}, args.trace_plot,
                    title=f"{args.sampler.upper()}{' (preconditioned)' if args.precondition else ''} on MNIST-1D: trace plots",
                    burnin=args.burnin)
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


def write_doc(path: Path, out: dict[str, Any]) -> None:
    """Replace the block between the results markers of ``path`` with this run's numbers."""
    lines = [
        "<!-- results:start (written by examples/hmc_uncertainty_mnist1d.py) -->",
        f"Run: {out['sampler'].upper()}, recurrent LIF network with {out['hidden']} hidden neurons, `{out['loss']}` loss,"
        f" {out['backend']} backend, seed {out['seed']}; warm start {out['pretrain_epochs']} epochs of BPTT"
        f" ({out['pretrain_s']:.0f} s); {out['burnin']} burn-in + {out['samples']} kept transitions"
        f" (thin {out['thin']}) on the full 4000-example posterior ({out['sampling_s']:.0f} s on the 2-core CPU machine).",
        "",
        "| quantity | value |",
        "| --- | --- |",
        f"| preconditioned (`fisher_scale`) | {'yes' if out['precondition'] else 'no'} |",
        f"| acceptance rate after burn-in | {out['accept_rate']:.2f} |",
        f"| adapted step size | {out['step_size']:.2e} |",
        f"| effective sample size, potential U | {out['mixing']['potential']['ess_geyer']['median']:.1f} of {out['samples']} |",
        f"| effective sample size, {out['track']} random weights: median (min-max) |"
        f" {out['mixing']['weights']['ess_geyer']['median']:.1f} ({out['mixing']['weights']['ess_geyer']['min']:.1f}-{out['mixing']['weights']['ess_geyer']['max']:.1f}) |",
        f"| effective sample size, p(true class) of the 1000 test examples: median (min-max) |"
        f" {out['mixing']['p_true']['ess_geyer']['median']:.1f} ({out['mixing']['p_true']['ess_geyer']['min']:.1f}-{out['mixing']['p_true']['ess_geyer']['max']:.1f}) |",
        f"| test accuracy, warm start | {100 * out['warm_start_test_acc']:.1f}% |",
        f"| test accuracy, posterior mean ({out['samples']} samples) | **{100 * out['posterior_mean_test_acc']:.1f}%** |",
        f"| test accuracy, last sample alone | {100 * out['last_sample_test_acc']:.1f}% |",
        "",
        "| uncertainty (per test example) | median, correct | median, wrong | one-sided Mann-Whitney p |",
        "| --- | --- | --- | --- |",
    ]
    for m in MEASURES:
        t = out["tests"][m]
        lines.append(f"| {m.replace('_', ' ')} | {t['median_correct']:.3g} | {t['median_wrong']:.3g} | **{t['p_value']:.1e}** |")
    n = out["tests"]["entropy_of_mean"]
    lines += [
        "",
        f"{n['n_correct']} test examples were classified correctly and {n['n_wrong']} wrongly by the posterior mean.",
        "<!-- results:end -->",
    ]
    text = path.read_text()
    block = "\n".join(lines)
    new = re.sub(r"<!-- results:start.*?<!-- results:end -->", lambda _: block, text, flags=re.S)
    if new == text and "<!-- results:start" not in text:
        new = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sampler", choices=["mala", "hmc"], default="mala")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--loss", default="ce_mean")
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--pretrain-epochs", type=int, default=15)
    ap.add_argument("--burnin", type=int, default=100)
    ap.add_argument("--samples", type=int, default=150)
    ap.add_argument("--thin", type=int, default=1)
    ap.add_argument("--leapfrog", type=int, default=5)
    ap.add_argument("--step-size", type=float, default=None,
                    help="initial step (adapted during burn-in); default 0.05 preconditioned (a multiple of the scales), 3e-4 plain")
    ap.add_argument("--prior-std", type=float, default=1.0)
    ap.add_argument("--backend", default="jax")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default="docs/img/hmc_uncertainty_mnist1d.png")
    ap.add_argument("--trace-plot", default="docs/img/hmc_traces_mnist1d.png")
    ap.add_argument("--max-scale", type=float, default=0.02,
                    help="largest preconditioner scale (weights with zero surrogate gradient would otherwise take prior-sized steps)")
    ap.add_argument("--track", type=int, default=200, help="weights followed at every transition (trace plots, ESS)")
    ap.add_argument("--precondition", action=argparse.BooleanOptionalAction, default=True,
                    help="per-weight proposal scales from the warm start's squared gradients (fisher_scale)")
    ap.add_argument("--doc", default="docs/sampling.md")
    ap.add_argument("--no-doc", action="store_true", help="do not write the results into --doc")
    ap.add_argument("--json", default=None, help="also write the results as JSON here")
    ap.add_argument("--quick", action="store_true", help="a reduced run: 64 hidden, 5 warm-start epochs, 30 + 40 transitions")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long run (tests): 8 hidden, 1 epoch, 4 + 6 transitions")
    args = ap.parse_args()
    if args.quick:
        args.hidden, args.pretrain_epochs, args.burnin, args.samples = 64, 5, 30, 40
    if args.step_size is None:
        args.step_size = 0.05 if args.precondition else 3e-4
    if args.tiny:
        args.hidden, args.pretrain_epochs, args.burnin, args.samples, args.track = 8, 1, 4, 6, 10
    out = run(args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    if not args.no_doc:
        write_doc(Path(args.doc), out)
        print(f"results written to {args.doc}")


if __name__ == "__main__":
    main()
