"""SpikeGrad on the 8x8 digits: integer-ANN accuracy against float backprop, and synaptic operations.

For each topology (dense 64-100-10, and the paper's pattern conv-pool-conv-pool-dense-dense
scaled to 8x8: 8C3-P2-16C3-P2-64-10) and seed, trains

* ``float``: the same network with float ReLU activations, exact backprop (``bptt``);
* ``spikegrad``: the integer ANN with SpikeGrad's discretised errors (``α = 100``);

with the same initial weights, Adam with cosine decay, batches and epochs, and records
test accuracy and, for SpikeGrad, the synaptic operations of every epoch relative to an
ANN's MACs.  Then it runs the event-driven simulation of the trained SpikeGrad networks on
a few test digits and compares its accumulated outputs and its real event counts with the
integer ANN's.  Prints the markdown tables of ``docs/rules/spikegrad.md`` and writes them,
with the raw numbers, to ``--out``.  Usage::

    python examples/spikegrad_digits.py                 # 3 seeds, 15 epochs (about 3-5 min on 2 CPU cores)
    python examples/spikegrad_digits.py --quick         # 1 seed, 3 epochs
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from neuroplastic.backend import get_backend
from neuroplastic.data import Dataset, from_arrays, load_dataset
from neuroplastic.layers import AvgPool2d, Conv2d, Dense
from neuroplastic.rules.spikegrad import SpikeGrad, SpikeGradNet, relative_synops
from neuroplastic.rules.spikegrad_events import integer_ann_mismatches
from neuroplastic.train import Trainer
from neuroplastic.train.optimizers import make_optimizer


def load_digits_dataset() -> Dataset:
    """The digits as ``(1, N, 64)`` in ``[0, 1]``: the library's loader if there is one, else sklearn's."""
    try:
        data = load_dataset("digits")
        scale = float(np.max(data.x_train))
        if np.min(data.x_train) < 0 or scale <= 0:
            raise ValueError("digits: expected non-negative pixel values")
        return from_arrays(data.x_train / scale, data.y_train, data.x_test / scale, data.y_test, name="digits")
    except ValueError as err:
        if "unknown dataset" not in str(err):
            raise
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.data.astype(np.float32) / 16.0
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.25, random_state=0, stratify=d.target)
    return from_arrays(xtr[None], ytr, xte[None], yte, name="digits (sklearn)")


def make_net(arch: str, integer: bool) -> SpikeGradNet:
    """Large first-layer gain (a few spikes per neuron at threshold 1), small output gain."""
    if arch == "dense":
        return SpikeGradNet(64, [Dense(100, bias=True, gain=10.0), Dense(10, bias=True, gain=0.3)], integer=integer)
    if arch == "conv":
        layers = [
            Conv2d(8, 3, padding=1, gain=10.0), AvgPool2d(2),
            Conv2d(16, 3, padding=1, gain=2.0), AvgPool2d(2),
            Dense(64, bias=True, gain=2.0), Dense(10, bias=True, gain=0.3),
        ]
        return SpikeGradNet((1, 8, 8), layers, integer=integer)
    raise ValueError(f"arch: unknown topology {arch!r}; choose 'dense' or 'conv'")


def train(arch: str, mode: str, seed: int, data: Dataset, epochs: int, backend: str, alpha: float, lr: float, batch_size: int) -> dict:
    net = make_net(arch, integer=mode == "spikegrad")
    rule = SpikeGrad(alpha=alpha) if mode == "spikegrad" else "bptt"
    steps = epochs * -(-data.x_train.shape[1] // batch_size)
    opt = make_optimizer("adam", lr, backend, schedule="cosine", total_steps=steps)
    trainer = Trainer(net, rule, loss="ce_sum", optimizer=opt, backend=backend, progress=False)
    params, state, prev = net.init(seed, backend=backend), None, None
    rec = {"arch": arch, "mode": mode, "seed": seed, "alpha": alpha if mode == "spikegrad" else None,
           "test_acc": [], "bwd": [], "fwd": [], "bwd_layers": [], "spikes_per_neuron": []}
    t0 = time.perf_counter()
    for epoch in range(epochs):
        params, hist = trainer.fit(params, data, epochs=1, batch_size=batch_size, seed=seed, state=state, start_epoch=epoch)
        state = trainer.last_state
        rec["test_acc"].append(hist[-1]["test_acc"])
        if mode == "spikegrad":
            now = {k: np.array(v, dtype=np.float64) for k, v in state[1]["synops"].items()}  # copies
            counts = now if prev is None else {k: now[k] - prev[k] for k in now}
            prev = now
            rel = relative_synops(counts, net)
            rec["bwd"].append(rel["bwd_total"])
            rec["fwd"].append(rel["fwd_total"])
            rec["bwd_layers"].append(rel["bwd"])
            rec["spikes_per_neuron"].append(hist[-1]["spikes_per_step"])
    rec["time_s"] = time.perf_counter() - t0
    rec["params"] = get_backend(backend).tree_to_numpy(params)
    return rec


def event_check(arch: str, params: dict, data: Dataset, alpha: float, n: int = 10) -> dict:
    """Simulate ``n`` test digits event by event with trained weights; compare with the integer ANN (float64)."""
    net, rule = make_net(arch, integer=True), SpikeGrad(alpha=alpha)
    x = data.x_test[0, :n].astype(np.float64).reshape((n,) + net.input_shape)
    y = data.y_test[:n]
    sims, ann, mismatched = integer_ann_mismatches(net, params, x, y, rule)
    syn = {k: np.asarray(v) for k, v in ann["synops"].items()}
    return {
        "examples": n,
        "neurons_compared": 2 * n * sum(net.sizes[:-1]),
        "mismatched": mismatched,
        "fwd_events_over_ann": float(sum(s.synops_fwd[1:].sum() for s in sims) / syn["fwd"][1:].sum()),
        "bwd_events_over_ann": float(sum(s.synops_bwd.sum() for s in sims) / max(syn["bwd"].sum(), 1.0)),
    }


def tables(runs: list[dict], checks: dict, epochs: int) -> str:
    out = ["| topology | float backprop | SpikeGrad integer ANN | difference |", "|---|---|---|---|"]
    for arch in ("dense", "conv"):
        acc = {m: [r["test_acc"][-1] * 100 for r in runs if r["arch"] == arch and r["mode"] == m] for m in ("float", "spikegrad")}
        if not acc["float"]:
            continue
        f, s = np.mean(acc["float"]), np.mean(acc["spikegrad"])
        sd = lambda v: f" ± {np.std(v):.1f}" if len(v) > 1 else ""  # noqa: E731
        out.append(f"| {TOPOLOGY[arch]} | {f:.1f}{sd(acc['float'])} | {s:.1f}{sd(acc['spikegrad'])} | {s - f:+.1f} |")
    out += ["", "Backward synaptic operations relative to an ANN's backward MACs, per epoch (mean over seeds):", ""]
    shown = sorted({0, 1, 2, epochs // 2 - 1, epochs - 1} & set(range(epochs)))
    out.append("| topology | " + " | ".join(f"epoch {e + 1}" for e in shown) + " | forward (last epoch) |")
    out.append("|---|" + "---|" * (len(shown) + 1))
    for arch in ("dense", "conv"):
        sg = [r for r in runs if r["arch"] == arch and r["mode"] == "spikegrad"]
        if not sg:
            continue
        bwd = np.mean([r["bwd"] for r in sg], axis=0)
        fwd = np.mean([r["fwd"][-1] for r in sg])
        out.append(f"| {TOPOLOGY[arch]} | " + " | ".join(f"{bwd[e]:.3f}" for e in shown) + f" | {fwd:.3f} |")
    out += ["", "Per layer, backward (error spikes sent down through the layer's synapses / its MACs), first and last epoch:", ""]
    for arch in ("dense", "conv"):
        sg = [r for r in runs if r["arch"] == arch and r["mode"] == "spikegrad"]
        if not sg:
            continue
        for e in (0, epochs - 1):
            layers = np.mean([[v for v in r["bwd_layers"][e][1:]] for r in sg], axis=0)
            names = LAYER_NAMES[arch][1:]
            out.append(f"- {TOPOLOGY[arch]}, epoch {e + 1}: " + ", ".join(f"{n} {v:.3f}" for n, v in zip(names, layers)))
    if checks:
        out += ["", "Event-driven simulation of the trained networks (float weights, float64):", ""]
        out.append("| topology | neurons compared | mismatches | forward events / ANN minimum | backward events / ANN minimum |")
        out.append("|---|---|---|---|---|")
        for arch, c in checks.items():
            out.append(f"| {TOPOLOGY[arch]} | {c['neurons_compared']} | {c['mismatched']} | {c['fwd_events_over_ann']:.3f} | {c['bwd_events_over_ann']:.3f} |")
    return "\n".join(out)


TOPOLOGY = {"dense": "64-100-10", "conv": "8x8-8C3-P2-16C3-P2-64-10"}
LAYER_NAMES = {"dense": ["100", "10"], "conv": ["8C3", "P2", "16C3", "P2", "64", "10"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="*", default=["dense", "conv"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--alpha", type=float, default=100.0)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--backend", default="jax")
    ap.add_argument("--events", type=int, default=10, help="test digits to simulate event by event (0: skip)")
    ap.add_argument("--quick", action="store_true", help="1 seed, 3 epochs")
    ap.add_argument("--out", default="runs/spikegrad-digits")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.epochs = 1, 3
    data = load_digits_dataset()
    print(data)
    runs, checks = [], {}
    for arch in args.archs:
        for seed in range(args.seeds):
            for mode in ("float", "spikegrad"):
                rec = train(arch, mode, seed, data, args.epochs, args.backend, args.alpha, args.lr, args.batch_size)
                print(f"{arch:5s} {mode:9s} seed {seed}: test acc {rec['test_acc'][-1]:.4f}  ({rec['time_s']:.1f} s)"
                      + (f"  backward synops/MACs {rec['bwd'][0]:.3f} -> {rec['bwd'][-1]:.3f}" if rec["bwd"] else ""))
                runs.append(rec)
        if args.events:
            trained = next(r for r in runs if r["arch"] == arch and r["mode"] == "spikegrad")
            checks[arch] = event_check(arch, trained["params"], data, args.alpha, args.events)
            print(f"{arch:5s} events: {checks[arch]}")
    text = tables(runs, checks, args.epochs)
    print()
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tables.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps({"args": vars(args), "checks": checks,
                                                   "runs": [{k: v for k, v in r.items() if k != "params"} for r in runs]}, indent=1))
    print(f"\nwrote {out / 'tables.md'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
