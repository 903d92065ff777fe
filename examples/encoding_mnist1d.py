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
``--seed N`` sets that seed (the initial weights, the rule's state and the batch order; the
data and the encodings do not depend on it); the page reports mean ± standard deviation over
the seeds it is given.

Two networks (``--network``):

* ``train-default`` (the first table): ``neuroplastic train``'s default network, recurrent
  ALIF with 256 hidden neurons (``tau_mem = 20``), no regulariser, 30 epochs (:data:`SHARED`);
* ``comparison``: the network of the rule comparison (``docs/rules-mnist1d.md``), read from
  ``examples/configs/rules-mnist1d.toml``: recurrent LIF with 128 hidden neurons,
  ``tau_mem = 1`` step, ``tau_out = 20``, fast_sigmoid surrogate, the firing-rate
  regulariser (10 Hz, strength 10), 60 epochs.

The input layer takes 1 channel for ``none`` and 2 (on/off) for the encoders.

For every encoding the script reports the test accuracy of each rule, the input sparsity
(fraction of zero entries of the network's input; for ``none`` the raw signal's fraction of
exact zeros), the input events per sample (non-zero input entries: spikes for the encoders)
and the encode-decode reconstruction error (:func:`~neuroplastic.encoders.contrast_decode`).
It writes the results as JSON, one file per (network, seed) (:func:`default_json`:
``docs/img/encoding_mnist1d.json`` for seed 0, ``docs/img/encoding_mnist1d_seed1.json`` for
seed 1, ``docs/img/encoding_mnist1d_comparison*.json`` for the comparison network) and the page
``docs/encoding-mnist1d.md``, one table per network, each aggregating its seeds: a training
run re-renders the page from its own results plus the other saved JSON (``--with-json``; by
default every saved default file of either network and any seed, when writing the default
page).  Usage::

    python examples/encoding_mnist1d.py --epochs 30                       # train-default: 4 encodings x 2 rules (15 min on 2 shared CPU cores)
    python examples/encoding_mnist1d.py --epochs 30 --seed 1              # the same with seed 1 (docs/img/encoding_mnist1d_seed1.json)
    python examples/encoding_mnist1d.py --network comparison --epochs 60  # the rule-comparison network (3-5 min)
    python examples/encoding_mnist1d.py --epochs 2 --doc /tmp/t.md --json /tmp/t.json
    python examples/encoding_mnist1d.py --encodings none tc sf mw tbr
    python examples/encoding_mnist1d.py --from-json docs/img/encoding_mnist1d*.json  # re-render from every saved seed and network

A "What we noticed" section already in the table is kept when the table is rewritten.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from neuroplastic.data import Dataset, load_dataset
from neuroplastic.encoders import contrast_decode, moving_window, step_forward, tbr_threshold, temporal_contrast, threshold_based
from neuroplastic.experiment import machine_description
from neuroplastic.sweep.stats import Summary, describe

#: encodings in table order; ``none`` is the raw signal
ENCODINGS = ("none", "tc", "sf", "mw", "tbr")
DEFAULT_ENCODINGS = ("none", "tc", "sf", "mw")
DEFAULT_RULES = ("bptt", "eprop-symmetric")

ROOT = Path(__file__).resolve().parents[1]
#: the rule comparison's network and training (docs/rules-mnist1d.md), the ``comparison`` network
COMPARISON_CONFIG = ROOT / "examples" / "configs" / "rules-mnist1d.toml"

#: the network and training settings every (encoding, rule) pair gets on the ``train-default``
#: network: ``neuroplastic train``'s defaults (the first table)
SHARED: dict[str, Any] = {
    "model": "rsnn-alif",  # recurrent ALIF layer + leaky readout (neuroplastic.models)
    "hidden": 256,
    "surrogate": "triangle",
    "tau_mem": 20.0,
    "tau_out": 20.0,
    "optimizer": "adam",
    "lr": 5e-3,
    "schedule": "cosine",
    "batch_size": 64,
    "seed": 0,
    "mode": "offline",
    "loss": "ce_mean",
    "reg_rate_hz": None,  # no firing-rate regulariser
    "reg_strength": 1.0,
}

NETWORKS = ("train-default", "comparison")
#: the epochs each network was run for in its table (the default of ``--epochs``)
DEFAULT_EPOCHS = {"train-default": 30, "comparison": 60}
#: where each network's results go by default
DEFAULT_JSON = {"train-default": "docs/img/encoding_mnist1d.json", "comparison": "docs/img/encoding_mnist1d_comparison.json"}
DEFAULT_DOC = "docs/encoding-mnist1d.md"
#: settings that may differ between the seeds of one table
PER_SEED_SETTINGS = ("seed", "machine")


def default_json(network: str, seed: int = 0) -> str:
    """Where ``network``'s results for ``seed`` go by default: :data:`DEFAULT_JSON` for seed 0, ``..._seed<N>.json`` otherwise."""
    if network not in DEFAULT_JSON:
        raise ValueError(f"network: unknown network {network!r}; choose one of {list(NETWORKS)}")
    check_seed(seed)
    base = DEFAULT_JSON[network]
    return base if seed == 0 else base.removesuffix(".json") + f"_seed{seed}.json"


def check_seed(seed: Any) -> int:
    """``seed`` if it is a non-negative integer (numpy's batch shuffling takes no negative seed), else a ``ValueError``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative integer, got {seed!r}")
    return int(seed)

NOTICED = "## What we noticed"


def network_settings(network: str = "train-default") -> dict[str, Any]:
    """The shared network and training settings of ``network`` (see :data:`NETWORKS`), keyed like :data:`SHARED`.

    ``comparison`` reads :data:`COMPARISON_CONFIG` with :func:`neuroplastic.config.load_config`,
    so it follows the rule comparison's config file.
    """
    if network == "train-default":
        return dict(SHARED)
    if network != "comparison":
        raise ValueError(f"network: unknown network {network!r}; choose one of {list(NETWORKS)}")
    from neuroplastic.config import load_config

    cfg = load_config(COMPARISON_CONFIG)
    if cfg.data != "mnist1d" or cfg.rule_options or cfg.encoder:
        raise ValueError(f"{COMPARISON_CONFIG}: expected a plain MNIST-1D run, got data {cfg.data!r}, encoder {cfg.encoder!r}")
    return {k: getattr(cfg, k) for k in SHARED} | {"config": COMPARISON_CONFIG.relative_to(ROOT).as_posix()}


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
def build_trainer(data: Dataset, rule: str, epochs: int, backend: str = "jax", settings: dict | None = None,
                  network: str = "train-default") -> tuple[Any, Any, dict]:
    """``(net, trainer, settings)`` for ``rule`` on ``data`` with ``network``'s settings updated by ``settings``.

    The input layer takes ``data.n_features`` channels (1 raw, 2 encoded); the cosine schedule
    runs over ``epochs`` of updates.
    """
    from neuroplastic.experiment import RunConfig, build_trainer as build_run_trainer

    s = {**network_settings(network), **(settings or {})}
    if s["mode"] != "offline":
        raise ValueError(f"mode: this experiment trains offline (one update per batch), got {s['mode']!r}")
    cfg = RunConfig(**{k: s[k] for k in SHARED}, rule=rule, epochs=epochs, backend=backend)
    cfg.validate()
    net, trainer = build_run_trainer(cfg, data)
    return net, trainer, s


def train_one(data: Dataset, rule: str, epochs: int, backend: str = "jax", settings: dict | None = None,
              network: str = "train-default") -> dict:
    """Train ``network`` on ``data`` with ``rule``; returns accuracy, rates, time and the test curve."""
    net, trainer, s = build_trainer(data, rule, epochs, backend, settings, network)
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
    network: str = "train-default",
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
    check_seed({**network_settings(network), **(settings or {})}["seed"])
    results: dict = {
        "settings": {
            "network": network, **network_settings(network), **(settings or {}), "epochs": epochs, "backend": backend, "factor": factor, "window": window,
            "tbr_factor": tbr_factor, "data": data.name, "n_train": int(data.x_train.shape[1]),
            "n_test": int(data.x_test.shape[1]), "steps": int(data.n_steps),
            "mean_abs_step_train": mean_abs_step(data.x_train),
            "machine": machine_description(),
        },
        "encodings": [], "runs": [], "sweep": threshold_sweep(data.x_train, window=window),
    }
    for name in encodings:
        enc, info = encode_dataset(data, name, factor, window, tbr_factor)
        results["encodings"].append(info)
        log(f"{name}: threshold {info['threshold']}, sparsity {info['sparsity']:.3f}, {info['events_per_sample']:.1f} events/sample")
        for rule in rules:
            row = {"encoding": name, **train_one(enc, rule, epochs, backend, settings, network)}
            results["runs"].append(row)
            log(f"  {rule}: test {100 * row['test_acc']:.1f}% (best {100 * row['best_test_acc']:.1f}%) in {row['time_s']:.0f} s")
            if done is not None:
                done(results)
    return results


# ----------------------------------------------------------------------------- the table
MACHINE_NOTE = (
    "Figures move by machine: floating-point sums round differently on other CPUs and instruction sets (AVX2,"
    " AVX-512), thread counts and library versions, and the difference grows over the epochs, so a single"
    " training's accuracy can move by a few points elsewhere; compare encodings and rules by their spreads"
    " over seeds, not by single numbers."
)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _spread_pct(s: Summary) -> str:
    """``mean ± std%`` of a :class:`~neuroplastic.sweep.stats.Summary` of accuracies (just the value for one seed)."""
    return f"{100 * s.mean:.1f}%" if s.n < 2 else f"{100 * s.mean:.1f} ± {100 * s.std:.1f}%"


def network_of(results: dict) -> str:
    """The network a result set was trained on (results saved before ``--network`` existed: ``train-default``)."""
    return results["settings"].get("network", "train-default")


def seed_of(results: dict) -> int:
    """The training seed of a result set."""
    return check_seed(results["settings"].get("seed", 0))


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def setup_difference(a: dict, b: dict) -> str | None:
    """What makes result sets ``a`` and ``b`` not two seeds of one table (``None`` if nothing does).

    They must share every setting both record (but the seed and the machine) and, for every
    encoding both ran, its input statistics (threshold, sparsity, events, reconstruction).
    """
    sa, sb = a["settings"], b["settings"]
    for k in sorted((sa.keys() & sb.keys()) - set(PER_SEED_SETTINGS)):
        if not _close(sa[k], sb[k]):
            return f"setting {k!r}: {sa[k]!r} against {sb[k]!r}"
    ea = {e["encoding"]: e for e in a["encodings"]}
    eb = {e["encoding"]: e for e in b["encodings"]}
    for name in ea.keys() & eb.keys():
        if not _close(ea[name], eb[name]):
            return f"encoding {name!r}: input statistics {ea[name]} against {eb[name]}"
    return None


def group_by_network(result_sets: list[dict]) -> list[list[dict]]:
    """Result sets grouped by network (in :data:`NETWORKS` order, others after), each group ordered by seed.

    A ``ValueError`` if a network has a seed twice or two of its seeds were run with
    different settings (:func:`setup_difference`).
    """
    groups: dict[str, list[dict]] = {}
    for res in result_sets:
        groups.setdefault(network_of(res), []).append(res)
    out = []
    for net in sorted(groups, key=lambda n: (NETWORKS.index(n) if n in NETWORKS else len(NETWORKS), n)):
        sets = sorted(groups[net], key=seed_of)
        for prev, res in zip(sets, sets[1:]):
            if seed_of(prev) == seed_of(res):
                raise ValueError(f"result_sets: network {net!r} has two result sets for seed {seed_of(res)}"
                                 f" ({prev.get('command')!r} and {res.get('command')!r})")
        for res in sets[1:]:
            diff = setup_difference(sets[0], res)
            if diff is not None:
                raise ValueError(f"result_sets: seeds {seed_of(sets[0])} and {seed_of(res)} of network {net!r}"
                                 f" were not run the same way ({diff})")
        out.append(sets)
    return out


def aggregate_runs(sets: list[dict]) -> dict[tuple[str, str], dict]:
    """Per ``(encoding, rule)`` over the seeds of one network: ``{"seeds", "test_acc", "best_test_acc"}``.

    ``test_acc`` and ``best_test_acc`` are :class:`~neuroplastic.sweep.stats.Summary` objects
    (mean, standard deviation with ``n - 1``) of the final and best-epoch test accuracy.
    """
    runs: dict[tuple[str, str], list[tuple[int, dict]]] = {}
    for res in sets:
        for r in res["runs"]:
            runs.setdefault((r["encoding"], r["rule"]), []).append((seed_of(res), r))
    return {
        key: {
            "seeds": [seed for seed, _ in rows],
            "test_acc": describe([r["test_acc"] for _, r in rows]),
            "best_test_acc": describe([r["best_test_acc"] for _, r in rows]),
        }
        for key, rows in runs.items()
    }


def table_rows(sets: list[dict]) -> list[dict]:
    """One row per encoding (in :data:`ENCODINGS` order): its input statistics and, per rule, :func:`aggregate_runs`'s cell."""
    infos: dict[str, dict] = {}
    for res in sets:
        for info in res["encodings"]:
            infos.setdefault(info["encoding"], info)
    cells = aggregate_runs(sets)
    order = sorted(infos, key=lambda e: ENCODINGS.index(e) if e in ENCODINGS else len(ENCODINGS))
    return [{**infos[e], "runs": {rule: c for (enc, rule), c in cells.items() if enc == e}} for e in order]


def describe_network(s: dict, seeds: list[int] | None = None) -> str:
    """One sentence on the network and training of the settings ``s`` of a result set (``seeds``: those of its table)."""
    seeds = [s["seed"]] if seeds is None else seeds
    reg = s.get("reg_rate_hz")
    loss = (f"loss `{s['loss']}` plus the firing-rate regulariser `{s['reg_strength']:g} * mean_j (r_j - {reg:g} Hz)^2`"
            if reg is not None else f"loss `{s['loss']}` (no rate regulariser)")
    return (
        f"Same network and training for every cell: `{s['model']}` with {s['hidden']} hidden neurons"
        f" (`tau_mem = {s.get('tau_mem', 20.0):g}` step{'' if s.get('tau_mem', 20.0) == 1 else 's'}, {s['surrogate']} surrogate) and a leaky readout"
        f" (`tau_out = {s.get('tau_out', 20.0):g}` steps), {s['optimizer']} lr {s['lr']} with {s['schedule']} decay,"
        f" {s['epochs']} epochs, batch {s['batch_size']}, {loss}, seed{'s' if len(seeds) > 1 else ''} {_seed_list(seeds)},"
        f" backend `{s['backend']}`"
        + (f"; settings from `{s['config']}`." if s.get("config") else ".")
    )


def _seed_list(seeds: list[int]) -> str:
    return ", ".join(str(s) for s in seeds)


def _threshold_line(s: dict) -> str:
    return (f"Threshold of TC, SF and MW: one number for the dataset, fitted on the training set only,"
            f" `thr = {s['factor']} x mean|x_t - x_(t-1)|` = {s['factor'] * s['mean_abs_step_train']:.4f}"
            f" (the signal's standard deviation is about 1); MW averages the last {s['window']} steps.")


def render_section(sets: list[dict], title: str) -> list[str]:
    """One network's part of the page from its result sets (one per seed): commands, settings, the main table and every training."""
    if not sets:
        raise ValueError("sets: expected at least one result set")
    sets = sorted(sets, key=seed_of)
    s = sets[0]["settings"]
    seeds = [seed_of(r) for r in sets]
    n = len(seeds)
    runs = [(seed_of(res), r) for res in sets for r in res["runs"]]
    rules = list(dict.fromkeys(r["rule"] for _, r in runs))
    wall = sum(r["time_s"] for _, r in runs)
    machines: dict[str, list[int]] = {}
    for res in sets:
        machines.setdefault(res["settings"]["machine"], []).append(seed_of(res))
    where = next(iter(machines)) if len(machines) == 1 else " and ".join(
        f"{m} (seed{'s' if len(ss) > 1 else ''} {_seed_list(ss)})" for m, ss in machines.items())
    commands = [res.get("command", "python examples/encoding_mnist1d.py") for res in sets]
    lines = [
        f"## {title}",
        "",
        f"Produced by {'; '.join(f'`{c}`' for c in commands)}"
        f" ({n} seed{'s' if n > 1 else ''}: {_seed_list(seeds)}; {len(runs)} trainings,"
        f" {wall / 60:.0f} min of training on {where}).",
        "",
        describe_network(s, seeds),
        "",
        (f"Test accuracy: mean ± standard deviation (n - 1) over the {n} seeds of the final epoch's accuracy"
         " (of the best epoch's in brackets)" if n > 1 else
         f"Test accuracy of 1 seed (seed {seeds[0]}): final epoch (best epoch in brackets)")
        + "; the input columns do not depend on the seed.",
        "",
        "| encoding | threshold | input channels | input sparsity | events / sample | reconstruction error | "
        + " | ".join(f"{r} test acc" for r in rules) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(rules),
    ]
    for r in table_rows(sets):
        thr = "—" if r["threshold"] is None else f"{r['threshold']:.4f}"
        if r["encoding"] == "tbr":
            thr = "per sequence"
        rec = "—" if r["reconstruction"] is None else f"{r['reconstruction']['nrmse']:.2f}"
        cells = []
        for rule in rules:
            c = r["runs"].get(rule)
            if c is None:
                cells.append("—")
                continue
            part = "" if c["test_acc"].n == n else f", seed{'s' if c['test_acc'].n > 1 else ''} {_seed_list(c['seeds'])} only"
            cells.append(f"{_spread_pct(c['test_acc'])} ({_spread_pct(c['best_test_acc'])}){part}")
        lines.append(f"| {r['encoding']} | {thr} | {r['channels']} | {r['sparsity']:.3f} | {r['events_per_sample']:.1f} | {rec} | {' | '.join(cells)} |")
    enc_order = [e["encoding"] for e in table_rows(sets)]
    runs.sort(key=lambda sr: (enc_order.index(sr[1]["encoding"]), rules.index(sr[1]["rule"]), sr[0]))
    lines += [
        "",
        "Every training:",
        "",
        "| encoding | rule | seed | final test acc | best test acc (epoch) | final train acc | hidden rate (Hz) | wall time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed, r in runs:
        lines.append(
            f"| {r['encoding']} | {r['rule']} | {seed} | {_pct(r['test_acc'])} | {_pct(r['best_test_acc'])} ({r['best_epoch']}) |"
            f" {_pct(r['train_acc'])} | {', '.join(f'{h:.1f}' for h in r['rate_hz'])} | {r['time_s']:.0f} |"
        )
    return lines


SECTION_TITLES = {
    "train-default": "Table 1: `neuroplastic train`'s default network (recurrent ALIF, 256 hidden, `tau_mem = 20`)",
    "comparison": "Table 2: the rule-comparison network (recurrent LIF, 128 hidden, `tau_mem = 1`, rate regulariser)",
}


def render_page(result_sets: list[dict], noticed: str | None = None) -> str:
    """The markdown page: what is measured, one section per network (its seeds aggregated), the threshold sweep, notes.

    Each result set carries its ``command``; result sets of one network are its seeds
    (:func:`group_by_network`), networks are ordered as :data:`NETWORKS`.
    """
    if not result_sets:
        raise ValueError("result_sets: expected at least one set of results")
    groups = group_by_network(result_sets)
    s0 = groups[0][0]["settings"]
    lines = [
        "# Temporal spike encodings on MNIST-1D (Neko's Table 1, BPTT and e-prop)",
        "",
        f"MNIST-1D ({s0['data']}, {s0['n_train']} train / {s0['n_test']} test) as a time series of {s0['steps']} steps x 1 channel,"
        " fed to the network raw (`none`, 1 input channel) or through a temporal encoder with on/off channels (`(40, N, 2)`)."
        f" Each table trains every encoding with every rule on one network ({len(groups)} network{'s' if len(groups) > 1 else ''} below),"
        " once per training seed.",
        "",
        _threshold_line(s0),
        "",
        "Input sparsity is the fraction of zero entries of the network's input on the test set"
        " (for `none`, the raw signal's fraction of exact zeros); events per sample counts its non-zero entries"
        " (spikes, for the encoders; every sample for `none`). Reconstruction: encode, decode with `contrast_decode`"
        " (start at `x_0`), RMS error over the test signal's standard deviation. Accuracy is the final-epoch test"
        " accuracy (best epoch in brackets), mean ± standard deviation over the seeds each table names. The seed sets"
        " the initial weights and the order of the training batches; the data, the thresholds and the spikes, and so"
        " the input columns, are the same for every seed.",
        "",
        MACHINE_NOTE,
    ]
    for i, sets in enumerate(groups):
        net = network_of(sets[0])
        title = SECTION_TITLES.get(net, f"Table {i + 1}: network `{net}`")
        if net in SECTION_TITLES:
            title = f"Table {i + 1}:" + title.split(":", 1)[1]
        lines += ["", *render_section(sets, title)]
        if _threshold_line(sets[0]["settings"]) != _threshold_line(s0):
            lines += ["", _threshold_line(sets[0]["settings"])]
    sweep = next((r["sweep"] for sets in groups for r in sets if r.get("sweep")), None)
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


def saved_default_files() -> list[Path]:
    """The result files saved at the default places (:func:`default_json`) that exist: every network, seeds in order."""
    files = []
    for network, base in DEFAULT_JSON.items():
        b = Path(base)
        found = (re.fullmatch(rf"{re.escape(b.stem)}_seed(\d+)", f.stem) for f in b.parent.glob(f"{b.stem}_seed*.json"))
        seeds = sorted({0, *(int(m.group(1)) for m in found if m)})
        files += [f for f in (Path(default_json(network, seed)) for seed in seeds) if f.exists()]
    return files


def render_table(results: dict, command: str, noticed: str | None = None) -> str:
    """The page for one result set (``command`` overrides the one it carries)."""
    return render_page([{**results, "command": command}], noticed)


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
    ap.add_argument("--network", default="train-default", choices=list(NETWORKS),
                    help="train-default: neuroplastic train's default (table 1); comparison: examples/configs/rules-mnist1d.toml")
    ap.add_argument("--encodings", nargs="+", default=list(DEFAULT_ENCODINGS), choices=list(ENCODINGS))
    ap.add_argument("--rules", nargs="+", default=list(DEFAULT_RULES))
    ap.add_argument("--epochs", type=int, default=None, help=f"default: {DEFAULT_EPOCHS}")
    ap.add_argument("--factor", type=float, default=1.0, help="threshold = factor x mean |x_t - x_(t-1)| of the training set")
    ap.add_argument("--window", type=int, default=3, help="MW window (steps)")
    ap.add_argument("--tbr-factor", type=float, default=0.5, help="TBR's factor on the per-sequence std")
    ap.add_argument("--backend", default="jax")
    ap.add_argument("--seed", type=int, default=0,
                    help="training seed: initial weights, the rule's state and batch order (the encodings do not depend on it)")
    ap.add_argument("--json", default=None,
                    help=f"where the results go (default: {DEFAULT_JSON} for seed 0, with _seed<N> before .json for seed N)")
    ap.add_argument("--doc", default=DEFAULT_DOC)
    ap.add_argument("--with-json", nargs="*", default=None, metavar="JSON",
                    help="saved results (other seeds, other networks) to keep on the page after training (default: every"
                         " saved default JSON file, any network and seed, when writing the default page; none otherwise)")
    ap.add_argument("--from-json", nargs="+", default=None, metavar="JSON",
                    help="re-render the page from saved results, any seeds and networks: one table per network,"
                         " aggregated over its seeds (no training)")
    args = ap.parse_args(argv)
    doc = Path(args.doc)
    if args.from_json:
        result_sets = [json.loads(Path(p).read_text()) for p in args.from_json]
    else:
        try:
            out = Path(args.json or default_json(args.network, args.seed))
        except ValueError as err:
            ap.error(str(err))
        epochs = args.epochs if args.epochs is not None else DEFAULT_EPOCHS[args.network]
        command = "python " + " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix() if argv is None else "examples/encoding_mnist1d.py", *(sys.argv[1:] if argv is None else argv)])

        def save(res: dict) -> None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({**res, "command": command}, indent=2))

        data = load_dataset("mnist1d", as_sequence=True)
        results = run_experiment(data, args.encodings, args.rules, epochs, args.factor, args.window, args.tbr_factor,
                                 args.backend, settings={"seed": args.seed}, done=save, network=args.network)
        save(results)
        print(f"wrote {out}")
        others = args.with_json
        if others is None:
            others = [str(p) for p in saved_default_files()] if doc == Path(DEFAULT_DOC) else []
        fresh = {**results, "command": command}
        result_sets = [fresh]
        for p in others:
            if not Path(p).exists() or Path(p).resolve() == out.resolve():
                continue
            res = json.loads(Path(p).read_text())
            if network_of(res) == args.network:
                # another seed of this table joins it only if it was run the same way
                diff = "the same seed" if seed_of(res) == args.seed else setup_difference(fresh, res)
                if diff is not None:
                    print(f"left {p} off the page: not another seed of this run ({diff})")
                    continue
            result_sets.append(res)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render_page(result_sets, kept_notes(doc)))
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
