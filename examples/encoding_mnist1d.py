"""Temporal spike encodings of MNIST-1D trained with BPTT and e-prop: Neko's Table 1 on a temporal dataset.

MNIST-1D is presented as a time series (40 steps x 1 channel) and fed to the same recurrent
spiking network either as it is (``none``) or through one of the temporal encoders of
Petro et al. 2020 (:mod:`neuroplastic.encoders`), each giving on/off channels (40 x 2):

* ``tc``  temporal contrast: a spike where the change since the last step reaches ``thr``;
* ``sf``  step-forward: spikes track the signal with a baseline that moves by ``thr``;
* ``mw``  moving window: spikes where the signal leaves ``mean(last 3 steps) +- thr``;
* ``tbr`` (optional) the toolbox's threshold-based representation, whose threshold is
  ``mean(d) + 0.5 std(d)`` of each sequence's own step changes ``d`` (this is what Neko's
  paper calls TC).

The threshold of ``tc``, ``sf`` and ``mw`` is one number for the whole dataset, fitted on
the training set only: ``thr = factor * mean |x_t - x_{t-1}|`` over all training examples
and steps ``t >= 1`` (``factor = 1`` by default).  Each encoding is trained with every rule
(BPTT and symmetric e-prop by default) with the same network, optimizer, epochs and seed.

For every encoding the script reports the test accuracy of each rule, the input sparsity
(fraction of zero entries of the network's input; for ``none`` the raw signal's fraction of
exact zeros), the input events per sample (non-zero input entries: spikes for the encoders)
and the encode-decode reconstruction error (:func:`~neuroplastic.encoders.contrast_decode`).
It writes the results as JSON and the markdown table ``docs/encoding-mnist1d.md``.  Usage::

    python examples/encoding_mnist1d.py                          # 4 encodings x 2 rules, 30 epochs (15 min on 2 shared CPU cores)
    python examples/encoding_mnist1d.py --epochs 2 --doc /tmp/t.md --json /tmp/t.json
    python examples/encoding_mnist1d.py --encodings none tc sf mw tbr
    python examples/encoding_mnist1d.py --from-json docs/img/encoding_mnist1d.json   # re-render the table

A "What we noticed" section already in the table is kept when the table is rewritten.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from neuroplastic.data import Dataset, load_dataset
from neuroplastic.encoders import contrast_decode, moving_window, step_forward, tbr_threshold, temporal_contrast, threshold_based

#: encodings in table order; ``none`` is the raw signal
ENCODINGS = ("none", "tc", "sf", "mw", "tbr")
DEFAULT_ENCODINGS = ("none", "tc", "sf", "mw")
DEFAULT_RULES = ("bptt", "eprop-symmetric")

#: the network and training settings every (encoding, rule) pair gets: ``neuroplastic train``'s defaults
SHARED: dict[str, Any] = {
    "model": "rsnn-alif",  # recurrent ALIF layer + leaky readout (neuroplastic.models)
    "hidden": 256,
    "surrogate": "triangle",
    "optimizer": "adam",
    "lr": 5e-3,
    "schedule": "cosine",
    "batch_size": 64,
    "seed": 0,
    "mode": "offline",
    "loss": "ce_mean",
}

NOTICED = "## What we noticed"


# ----------------------------------------------------------------------------- input statistics
def mean_abs_step(x: np.ndarray) -> float:
    """``mean |x_t - x_{t-1}|`` over steps ``t >= 1``, examples and channels of a ``(T, N, C)`` signal."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] < 2:
        raise ValueError(f"x: expected a signal (T, N, C) with T >= 2, got shape {x.shape}")
    return float(np.mean(np.abs(np.diff(x, axis=0))))


def fit_threshold(x_train: np.ndarray, factor: float = 1.0) -> float:
    """The encoders' threshold from training data only: ``factor * mean |x_t - x_{t-1}|``."""
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor: expected a positive number, got {factor!r}")
    thr = factor * mean_abs_step(x_train)
    if thr <= 0:
        raise ValueError("x_train: the signal never changes, so there is no threshold to fit")
    return thr


def input_sparsity(x: np.ndarray) -> float:
    """Fraction of the entries of an input ``(T, N, C)`` that are exactly zero (NeuroBench's activation sparsity)."""
    x = np.asarray(x)
    if x.size == 0:
        raise ValueError("x: empty input has no sparsity")
    return float(np.count_nonzero(x == 0) / x.size)


def events_per_sample(x: np.ndarray) -> float:
    """Non-zero input entries per example of a time-major ``(T, N, C)`` input (spikes, for spike trains)."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1] == 0:
        raise ValueError(f"x: expected a time-major input (T, N, C) with N >= 1, got shape {x.shape}")
    return float(np.count_nonzero(x) / x.shape[1])


# ----------------------------------------------------------------------------- encoding
def encode(name: str, x: np.ndarray, threshold: float | None = None, window: int = 3, tbr_factor: float = 0.5) -> np.ndarray:
    """``x`` ``(T, N, 1)`` through encoding ``name`` (see :data:`ENCODINGS`), as float32."""
    if name == "none":
        return np.asarray(x, dtype=np.float32)
    if name == "tbr":
        return np.asarray(threshold_based(x, factor=tbr_factor), dtype=np.float32)
    if name not in ("tc", "sf", "mw"):
        raise ValueError(f"encoding: unknown encoding {name!r}; choose one of {list(ENCODINGS)}")
    if threshold is None:
        raise ValueError(f"threshold: encoding {name!r} needs a threshold")
    if name == "tc":
        return np.asarray(temporal_contrast(x, threshold), dtype=np.float32)
    if name == "sf":
        return np.asarray(step_forward(x, threshold), dtype=np.float32)
    return np.asarray(moving_window(x, threshold, window=window), dtype=np.float32)


def reconstruction_error(name: str, x: np.ndarray, spikes: np.ndarray, threshold: float | None, tbr_factor: float = 0.5) -> dict | None:
    """RMS error of :func:`contrast_decode` (``start = x_0``) against ``x``, raw and over ``std(x)``; ``None`` for ``none``."""
    if name == "none":
        return None
    thr: Any = tbr_threshold(x, tbr_factor) if name == "tbr" else threshold
    rec = np.asarray(contrast_decode(spikes, thr, start=x[0]), dtype=np.float64)
    rmse = float(np.sqrt(np.mean((rec - np.asarray(x, dtype=np.float64)) ** 2)))
    return {"rmse": rmse, "nrmse": rmse / float(np.std(x))}


def encode_dataset(data: Dataset, name: str, factor: float = 1.0, window: int = 3, tbr_factor: float = 0.5) -> tuple[Dataset, dict]:
    """``data`` through encoding ``name``, with the threshold fitted on ``data.x_train``; returns ``(encoded, info)``.

    ``info`` holds the threshold, the input channels and, on the test split, the input
    sparsity, events per sample and reconstruction error (training-split sparsity too).
    """
    if data.n_features != 1:
        raise ValueError(f"data: expected one channel (T, N, 1), got {data.n_features} (load MNIST-1D with as_sequence=True)")
    thr = fit_threshold(data.x_train, factor) if name in ("tc", "sf", "mw") else None
    x_train = encode(name, data.x_train, thr, window, tbr_factor)
    x_test = encode(name, data.x_test, thr, window, tbr_factor)
    info = {
        "encoding": name,
        "threshold": thr,
        "threshold_rule": {
            "none": "-", "tbr": f"per sequence: mean(d) + {tbr_factor} std(d)",
        }.get(name, f"{factor} x mean|x_t - x_(t-1)| of the training set"),
        "window": window if name == "mw" else None,
        "channels": int(x_test.shape[2]),
        "sparsity": input_sparsity(x_test),
        "sparsity_train": input_sparsity(x_train),
        "events_per_sample": events_per_sample(x_test),
        "reconstruction": reconstruction_error(name, data.x_test, x_test, thr, tbr_factor),
    }
    enc = Dataset(f"{data.name}+{name}", x_train, data.y_train, x_test, data.y_test, n_classes=data.n_classes, dt=data.dt,
                  meta={**data.meta, "encoding": name, "threshold": thr})
    return enc, info


def threshold_sweep(x_train: np.ndarray, factors: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0), window: int = 3) -> list[dict]:
    """Sparsity and reconstruction error of TC, SF and MW on the training set for several threshold factors (no training)."""
    base = mean_abs_step(x_train)
    rows = []
    for f in factors:
        for name in ("tc", "sf", "mw"):
            s = encode(name, x_train, f * base, window)
            rec = reconstruction_error(name, x_train, s, f * base)
            rows.append({"encoding": name, "factor": f, "threshold": f * base, "sparsity": input_sparsity(s),
                         "events_per_sample": events_per_sample(s), "nrmse": rec["nrmse"] if rec else None})
    return rows


# ----------------------------------------------------------------------------- training
def train_one(data: Dataset, rule: str, epochs: int, backend: str = "jax", settings: dict | None = None) -> dict:
    """Train the shared network on ``data`` with ``rule``; returns accuracy, rates, time and the test curve."""
    from neuroplastic.models import build_model
    from neuroplastic.rules import make_rule
    from neuroplastic.train import Trainer, make_optimizer

    s = {**SHARED, **(settings or {})}
    net = build_model(s["model"], data.n_features, data.n_classes, hidden=s["hidden"], surrogate=s["surrogate"], dt=data.dt)
    updates = epochs * -(-data.x_train.shape[1] // s["batch_size"])
    opt = make_optimizer(s["optimizer"], s["lr"], backend, schedule=s["schedule"], total_steps=max(updates, 1))
    trainer = Trainer(net, make_rule(rule), s["loss"], opt, backend=backend, mode=s["mode"], dt=data.dt, progress=False)
    t0 = time.perf_counter()
    _, hist = trainer.fit(net.init(s["seed"], backend=backend), data, epochs=epochs, batch_size=s["batch_size"], seed=s["seed"])
    if not hist:
        raise ValueError(f"epochs: expected at least one epoch, got {epochs}")
    final = hist[-1]
    return {
        "rule": rule, "epochs": epochs,
        "test_acc": final["test_acc"], "train_acc": final["train_acc"],
        "best_test_acc": max(h["test_acc"] for h in hist),
        "best_epoch": max(hist, key=lambda h: h["test_acc"])["epoch"],
        "rate_hz": [r for r in final["rate_hz"] if r is not None],
        "time_s": time.perf_counter() - t0,
        "curve": [h["test_acc"] for h in hist],
    }


def run_experiment(
    data: Dataset,
    encodings: tuple[str, ...] | list[str] = DEFAULT_ENCODINGS,
    rules: tuple[str, ...] | list[str] = DEFAULT_RULES,
    epochs: int = 30,
    factor: float = 1.0,
    window: int = 3,
    tbr_factor: float = 0.5,
    backend: str = "jax",
    settings: dict | None = None,
    log: Callable[[str], Any] = print,
    done: Callable[[dict], Any] | None = None,
) -> dict:
    """Encode ``data`` (raw ``(T, N, 1)`` signal) each way and train each rule on it, one training at a time.

    Returns ``{"settings", "encodings": [info per encoding], "runs": [row per (encoding, rule)],
    "sweep"}``; ``done(results)`` is called after each training (to save partial results).
    """
    bad = [e for e in encodings if e not in ENCODINGS]
    if bad:
        raise ValueError(f"encodings: unknown {bad}; choose from {list(ENCODINGS)}")
    from neuroplastic.rules import RULES

    bad = [r for r in rules if r not in RULES]
    if bad:
        raise ValueError(f"rules: unknown {bad}; choose from {sorted(RULES)}")
    if not (isinstance(epochs, int) and epochs >= 1):
        raise ValueError(f"epochs: expected a positive integer, got {epochs!r}")
    results: dict = {
        "settings": {
            **SHARED, **(settings or {}), "epochs": epochs, "backend": backend, "factor": factor, "window": window,
            "tbr_factor": tbr_factor, "data": data.name, "n_train": int(data.x_train.shape[1]),
            "n_test": int(data.x_test.shape[1]), "steps": int(data.n_steps),
            "mean_abs_step_train": mean_abs_step(data.x_train),
            "machine": f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}",
        },
        "encodings": [], "runs": [], "sweep": threshold_sweep(data.x_train, window=window),
    }
    for name in encodings:
        enc, info = encode_dataset(data, name, factor, window, tbr_factor)
        results["encodings"].append(info)
        log(f"{name}: threshold {info['threshold']}, sparsity {info['sparsity']:.3f}, {info['events_per_sample']:.1f} events/sample")
        for rule in rules:
            row = {"encoding": name, **train_one(enc, rule, epochs, backend, settings)}
            results["runs"].append(row)
            log(f"  {rule}: test {100 * row['test_acc']:.1f}% (best {100 * row['best_test_acc']:.1f}%) in {row['time_s']:.0f} s")
            if done is not None:
                done(results)
    return results


# ----------------------------------------------------------------------------- the table
def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def table_rows(results: dict) -> list[dict]:
    """One row per encoding: its input statistics and each rule's final and best test accuracy."""
    rows = []
    for info in results["encodings"]:
        runs = {r["rule"]: r for r in results["runs"] if r["encoding"] == info["encoding"]}
        rows.append({**info, "runs": runs})
    return rows


def render_table(results: dict, command: str, noticed: str | None = None) -> str:
    """The markdown page: settings, the main table, per-training details, the threshold sweep, notes."""
    s = results["settings"]
    rules = list(dict.fromkeys(r["rule"] for r in results["runs"]))
    rows = table_rows(results)
    wall = sum(r["time_s"] for r in results["runs"])
    lines = [
        "# Temporal spike encodings on MNIST-1D (Neko's Table 1, BPTT and e-prop)",
        "",
        f"Produced by `{command}` ({len(results['runs'])} trainings, {wall / 60:.0f} min of training on {s['machine']}).",
        "",
        f"MNIST-1D ({s['data']}, {s['n_train']} train / {s['n_test']} test) as a time series of {s['steps']} steps x 1 channel,"
        " fed to the network raw (`none`) or through a temporal encoder with on/off channels (`(40, N, 2)`)."
        f" Same network and training for every cell: `{s['model']}` with {s['hidden']} hidden neurons ({s['surrogate']} surrogate),"
        f" {s['optimizer']} lr {s['lr']} with {s['schedule']} decay, {s['epochs']} epochs, batch {s['batch_size']}, loss `{s['loss']}`,"
        f" seed {s['seed']}, backend `{s['backend']}`.",
        "",
        f"Threshold of TC, SF and MW: one number for the dataset, fitted on the training set only,"
        f" `thr = {s['factor']} x mean|x_t - x_(t-1)|` = {s['factor'] * s['mean_abs_step_train']:.4f}"
        f" (the signal's standard deviation is about 1); MW averages the last {s['window']} steps.",
        "",
        "Input sparsity is the fraction of zero entries of the network's input on the test set"
        " (for `none`, the raw signal's fraction of exact zeros); events per sample counts its non-zero entries"
        " (spikes, for the encoders; every sample for `none`). Reconstruction: encode, decode with `contrast_decode`"
        " (start at `x_0`), RMS error over the test signal's standard deviation. Accuracy is the final-epoch test"
        " accuracy (best epoch in brackets).",
        "",
        "| encoding | threshold | input channels | input sparsity | events / sample | reconstruction error | "
        + " | ".join(f"{r} test acc" for r in rules) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(rules),
    ]
    for r in rows:
        thr = "—" if r["threshold"] is None else f"{r['threshold']:.4f}"
        if r["encoding"] == "tbr":
            thr = "per sequence"
        rec = "—" if r["reconstruction"] is None else f"{r['reconstruction']['nrmse']:.2f}"
        accs = " | ".join(
            f"{_pct(r['runs'][rule]['test_acc'])} ({_pct(r['runs'][rule]['best_test_acc'])})" if rule in r["runs"] else "—"
            for rule in rules
        )
        lines.append(f"| {r['encoding']} | {thr} | {r['channels']} | {r['sparsity']:.3f} | {r['events_per_sample']:.1f} | {rec} | {accs} |")
    lines += [
        "",
        "## Every training",
        "",
        "| encoding | rule | final test acc | best test acc (epoch) | final train acc | hidden rate (Hz) | wall time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results["runs"]:
        lines.append(
            f"| {r['encoding']} | {r['rule']} | {_pct(r['test_acc'])} | {_pct(r['best_test_acc'])} ({r['best_epoch']}) |"
            f" {_pct(r['train_acc'])} | {', '.join(f'{h:.1f}' for h in r['rate_hz'])} | {r['time_s']:.0f} |"
        )
    sweep = results.get("sweep") or []
    if sweep:
        factors = sorted({w["factor"] for w in sweep})
        lines += [
            "",
            "## Threshold sweep (training set, no training)",
            "",
            "Input sparsity / normalised reconstruction error for other threshold factors, as a guide to the"
            " accuracy-sparsity trade-off (Petro et al. tune each encoder's threshold for reconstruction).",
            "",
            "| factor | threshold | " + " | ".join(f"{e.upper()} sparsity / error" for e in ("tc", "sf", "mw")) + " |",
            "|---|---|---|---|---|",
        ]
        for f in factors:
            cells = {w["encoding"]: w for w in sweep if w["factor"] == f}
            lines.append(
                f"| {f:g} | {cells['tc']['threshold']:.4f} | "
                + " | ".join(f"{cells[e]['sparsity']:.3f} / {cells[e]['nrmse']:.2f}" for e in ("tc", "sf", "mw")) + " |"
            )
    lines += ["", NOTICED, "", noticed.strip() if noticed else "(to be written after looking at the numbers)"]
    return "\n".join(lines) + "\n"


def kept_notes(doc: Path) -> str | None:
    """The body of an existing table's "What we noticed" section, if any."""
    if not doc.exists():
        return None
    text = doc.read_text()
    if NOTICED not in text:
        return None
    return text.split(NOTICED, 1)[1].strip() or None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encodings", nargs="+", default=list(DEFAULT_ENCODINGS), choices=list(ENCODINGS))
    ap.add_argument("--rules", nargs="+", default=list(DEFAULT_RULES))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--factor", type=float, default=1.0, help="threshold = factor x mean |x_t - x_(t-1)| of the training set")
    ap.add_argument("--window", type=int, default=3, help="MW window (steps)")
    ap.add_argument("--tbr-factor", type=float, default=0.5, help="TBR's factor on the per-sequence std")
    ap.add_argument("--backend", default="jax")
    ap.add_argument("--json", default="docs/img/encoding_mnist1d.json")
    ap.add_argument("--doc", default="docs/encoding-mnist1d.md")
    ap.add_argument("--from-json", default=None, help="re-render the table from saved results (no training)")
    args = ap.parse_args(argv)
    doc, out = Path(args.doc), Path(args.json)
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        command = results.get("command", "python examples/encoding_mnist1d.py")
    else:
        command = "python " + " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix() if argv is None else "examples/encoding_mnist1d.py", *(sys.argv[1:] if argv is None else argv)])

        def save(res: dict) -> None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({**res, "command": command}, indent=2))

        data = load_dataset("mnist1d", as_sequence=True)
        results = run_experiment(data, args.encodings, args.rules, args.epochs, args.factor, args.window, args.tbr_factor,
                                 args.backend, done=save)
        save(results)
        print(f"wrote {out}")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render_table(results, command, kept_notes(doc)))
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
