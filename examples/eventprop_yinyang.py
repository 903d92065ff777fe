"""EventProp (Wunderlich & Pehle 2021) on Yin-Yang, and on T-Randman with ``--task randman``.

Yin-Yang: ``load_dataset("yinyang")`` (5000 train / 1000 test), each example's features
``(x, y, 1-x, 1-y)`` as input spike times ``t = 2 x tau_syn`` plus a bias spike at 0 (as in
``examples/spike_time_yinyang.py``): inputs ``(1, N, 5)``.  T-Randman: ``load_randman``
(timing code: every unit fires once, at step ``floor(v * n_steps)``), the raster turned into
spike times ``step * dt`` with :func:`~neuroplastic.models.event_lif.raster_to_times`.

Network: one hidden layer of current-based LIF neurons (``tau_syn = 1``, ``tau_mem = 2``,
``theta = 1``, window ``t_max = 10``, several spikes per neuron) and a spiking output layer;
loss: first-spike-time cross-entropy (:class:`FirstToSpike`, temperature 0.2) plus the
silent-output penalty ``rho = 1`` and each layer's gradient clipped to norm 1 (without them
the outputs fell silent after one or two epochs: ``docs/rules/eventprop.md``); Adam 2e-3 with cosine decay, eager (``jit=False``), the event
loops on the host (``engine="host"``).  Prints a markdown table (per seed, mean +- sample sd)
for ``docs/rules/eventprop.md``.

Usage::

    python examples/eventprop_yinyang.py                          # Yin-Yang, 3 seeds x 6 epochs, torch
    python examples/eventprop_yinyang.py --task randman --out rm.json
    python examples/eventprop_yinyang.py --backend jax --seeds 1 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from neuroplastic.data import Dataset, from_arrays, load_dataset
from neuroplastic.data.randman import load_randman
from neuroplastic.losses import Objective
from neuroplastic.models.event_lif import EventLIFNetwork, raster_to_times
from neuroplastic.models.spike_time import encode_times
from neuroplastic.rules.eventprop import EventProp, FirstToSpike
from neuroplastic.train import Trainer, make_optimizer


def yinyang_times() -> tuple[Dataset, str]:
    """Yin-Yang as spike times ``(1, N, 5)`` (features at ``2 x``, a bias spike at 0)."""
    data = load_dataset("yinyang")
    xtr, xte = data.x_train[0], data.x_test[0]
    return (from_arrays(encode_times(xtr, 0.0, 2.0, 0.0), data.y_train, encode_times(xte, 0.0, 2.0, 0.0), data.y_test,
                        name="yinyang-times"),
            'load_dataset("yinyang"): 5000 train (seed 42) / 1000 test (seed 40)')


def randman_times(n_classes: int = 5, n_units: int = 20, n_steps: int = 50, dt: float = 0.05) -> tuple[Dataset, str]:
    """T-Randman as spike times ``(1, N, n_units)``: step ``k`` at time ``k dt`` (``[0, 2.5)`` by default)."""
    data = load_randman("timing", n_classes=n_classes, n_units=n_units, n_steps=n_steps, samples_per_class=500,
                        test_per_class=100, seed=0)
    xtr, xte = raster_to_times(data.x_train, dt), raster_to_times(data.x_test, dt)
    return (from_arrays(xtr.astype(np.float32), data.y_train, xte.astype(np.float32), data.y_test, name="randman-times"),
            f"load_randman('timing', n_classes={n_classes}, n_units={n_units}, n_steps={n_steps}, seed=0):"
            f" {data.x_train.shape[1]} train / {data.x_test.shape[1]} test, step k at time {dt} k")


def train(data: Dataset, n_out: int, backend: str, seed: int, epochs: int, hidden: int, lr: float, batch_size: int,
          silent_penalty: float, max_norm: float | None) -> tuple[list[dict], EventLIFNetwork]:
    """The per-epoch history of one run."""
    net = EventLIFNetwork(data.x_train.shape[-1], [hidden, n_out], threshold=1.0, tau_syn=1.0, t_max=10.0,
                          max_spikes=8, init_mean=3.0, init_std=1.0)
    steps = epochs * -(-data.x_train.shape[1] // batch_size)
    opt = make_optimizer("adam", lr, backend, schedule="cosine", total_steps=steps)
    trainer = Trainer(net, EventProp(silent_penalty=silent_penalty, max_norm=max_norm), Objective(FirstToSpike(temperature=0.2)), opt,
                      backend=backend, progress=False, jit=False)
    _, hist = trainer.fit(net.init(seed, backend=backend), data, epochs=epochs, batch_size=batch_size, seed=seed)
    return hist, net


def table(hists: list[list[dict]], task: str, hidden: int, n_in: int, n_out: int, epochs: int, batch_size: int,
          lr: float, backend: str, source: str) -> str:
    finals = np.array([h[-1]["test_acc"] for h in hists])
    best = np.array([max(e["test_acc"] for e in h) for h in hists])
    train = np.array([h[-1]["train_acc"] for h in hists])
    secs = np.mean([e["epoch_time_s"] for h in hists for e in h])
    sd = finals.std(ddof=1) if len(finals) > 1 else 0.0
    return "\n".join([
        f"{task}: {n_in}-{hidden}-{n_out}, {epochs} epochs, batch {batch_size}, Adam {lr:g} with cosine decay, {backend},"
        f" seeds 0-{len(hists) - 1}; data: {source}.",
        "",
        "| task | final test accuracy (per seed, %) | mean ± sd | best epoch (mean) | final train accuracy (mean) | s/epoch |",
        "|---|---|---|---|---|---|",
        f"| {task} | {', '.join(f'{100 * a:.1f}' for a in finals)} | {100 * finals.mean():.1f} ± {100 * sd:.1f} % "
        f"| {100 * best.mean():.1f} % | {100 * train.mean():.1f} % | {secs:.0f} |",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="yinyang", choices=["yinyang", "randman"])
    ap.add_argument("--backend", default="torch", choices=["torch", "jax"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--hidden", type=int, default=60)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--silent-penalty", type=float, default=1.0)
    ap.add_argument("--max-norm", type=float, default=1.0, help="per-layer gradient norm clip (0: none)")
    ap.add_argument("--out", default=None, help="JSON path for the per-epoch histories and the table")
    args = ap.parse_args()
    data, source = yinyang_times() if args.task == "yinyang" else randman_times()
    n_out = int(data.n_classes or max(data.y_train.max(), data.y_test.max()) + 1)
    hists = []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        hist, _ = train(data, n_out, args.backend, seed, args.epochs, args.hidden, args.lr, args.batch_size,
                        args.silent_penalty, args.max_norm or None)
        hists.append(hist)
        print(f"seed {seed}: test accuracy {hist[-1]['test_acc']:.4f} (train {hist[-1]['train_acc']:.4f}),"
              f" {np.mean([h['epoch_time_s'] for h in hist]):.1f} s/epoch ({time.perf_counter() - t0:.0f} s)", flush=True)
    text = table(hists, args.task, args.hidden, data.x_train.shape[-1], n_out, args.epochs, args.batch_size, args.lr,
                 args.backend, source)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"task": args.task, "args": vars(args), "source": source,
                                              "histories": hists, "table": text}))


if __name__ == "__main__":
    main()
