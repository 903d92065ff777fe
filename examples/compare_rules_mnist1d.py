"""Train every gradient-approximating rule on MNIST-1D with the same network and epochs.

Writes each rule's per-epoch metrics to ``runs/compare-mnist1d/<rule>.jsonl``, the rows to
``runs/compare-mnist1d/results.json`` and the table to ``docs/rules-mnist1d.md``.  Usage::

    python examples/compare_rules_mnist1d.py                  # all rules, 60 epochs
    python examples/compare_rules_mnist1d.py --rules bptt fa --epochs 15 --doc /tmp/t.md
    python examples/compare_rules_mnist1d.py --rules ottt --set mode=online lr=1e-3

Every rule gets the network, optimizer, epochs, batch size and seed of ``SHARED``; the
only per-rule settings are those in ``RULE_SETTINGS`` (and ``--set`` for tuning), and the
table lists them.  A rerun of some rules replaces only their rows (rows of other shared
settings or epochs are dropped).  The "What we noticed" section of an existing table is
kept when the table is rewritten.

The cosine schedule counts optimizer updates: ``epochs * batches`` offline, ``T`` times
that online (one update per time step).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

#: the network and training settings every rule gets
SHARED = {
    "model": "rsnn",  # recurrent LIF layer + leaky readout (neuroplastic.models)
    "hidden": 128,
    "tau_mem": 1.0,
    "tau_out": 20.0,
    "surrogate": "fast_sigmoid",
    "optimizer": "adam",
    "lr": 5e-3,
    "schedule": "cosine",
    "batch_size": 64,
    "seed": 0,
    "reg_rate_hz": 10.0,  # firing-rate regulariser (Bellec et al. 2020): target (None: off) and strength
    "reg_strength": 10.0,
    "mode": "offline",
    "loss": "ce_mean",
}

#: row -> overrides of ``SHARED`` (mode, loss, lr, regulariser, ``rule_options``); ``rule``
#: names the rule where the row is not named after it.  The nine rules of the comparison
#: run with the shared settings alone; the two ``-online`` rows are extra: OTTT and OTPE
#: updating at every time step, which needs a per-step loss, a smaller rate per update
#: (40 updates per batch) and no regulariser (offline only).
RULE_SETTINGS: dict[str, dict] = {
    "bptt": {},
    "eprop-symmetric": {},
    "eprop-random": {},
    "eprop-adaptive": {},
    "ostl": {},
    "ottt": {},
    "otpe": {},
    "dfa": {},
    "fa": {},
    "ottt-online": {"rule": "ottt", "mode": "online", "loss": "ce_per_step", "lr": 1e-4, "reg_rate_hz": None},
    "otpe-online": {"rule": "otpe", "mode": "online", "loss": "ce_per_step", "lr": 1e-4, "reg_rate_hz": None},
}

NOTICED = "## What we noticed"


def settings_for(rule: str, overrides: dict | None = None) -> dict:
    s = dict(SHARED)
    s.update(RULE_SETTINGS.get(rule, {}))
    s.update(overrides or {})
    return s


def train_rule(row: str, epochs: int, backend: str = "jax", log_path: str | Path | None = None, **overrides) -> dict:
    """Train the rule of ``row`` on MNIST-1D with ``SHARED`` + ``RULE_SETTINGS[row]`` + ``overrides``.

    Returns the row of the table: final and best test accuracy, hidden firing rate (Hz),
    wall time and the settings used.
    """
    from neuroplastic.data import load_dataset
    from neuroplastic.models import build_model
    from neuroplastic.train import Trainer, make_optimizer

    s = settings_for(row, overrides)
    rule = s.pop("rule", row)
    rule_options = s.pop("rule_options", {}) or {}
    data = load_dataset("mnist1d")
    net = build_model(s["model"], data.n_features, data.n_classes, hidden=s["hidden"], tau_mem=s["tau_mem"],
                      tau_out=s["tau_out"], surrogate=s["surrogate"], dt=data.dt)
    batches = -(-data.x_train.shape[1] // s["batch_size"])
    updates = epochs * batches * (data.n_steps if s["mode"] == "online" else 1)
    opt = make_optimizer(s["optimizer"], s["lr"], backend, schedule=s["schedule"], total_steps=max(updates, 1))
    from neuroplastic.losses import Objective, RateRegularizer, make_loss
    from neuroplastic.rules import make_rule

    reg = RateRegularizer(s["reg_rate_hz"], s["reg_strength"], data.dt) if s["reg_rate_hz"] is not None else None
    objective = Objective(make_loss(s["loss"]), reg)
    tr = Trainer(net, make_rule(rule, **rule_options), objective, opt, backend=backend, mode=s["mode"], dt=data.dt, progress=False)
    if log_path is not None:
        Path(log_path).unlink(missing_ok=True)
    t0 = time.perf_counter()
    _, hist = tr.fit(net.init(s["seed"], backend=backend), data, epochs=epochs, batch_size=s["batch_size"], seed=s["seed"], log_path=log_path)
    final = hist[-1]
    return {
        "rule": row, "epochs": epochs, "backend": backend,
        "settings": {**s, "rule_options": rule_options},
        "test_acc": final["test_acc"], "best_test_acc": max(h["test_acc"] for h in hist),
        "best_epoch": max(hist, key=lambda h: h["test_acc"])["epoch"],
        "rate_hz": [r for r in final["rate_hz"] if r is not None],
        "time_s": time.perf_counter() - t0,
        "curve": [h["test_acc"] for h in hist],
    }


def parse_set(items: list[str]) -> dict:
    out: dict = {}
    for item in items:
        key, _, value = item.partition("=")
        if not value:
            raise ValueError(f"--set: expected key=value, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", nargs="*", default=list(RULE_SETTINGS))
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--backend", default="jax")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override settings for these rules (tuning)")
    ap.add_argument("--out", default="runs/compare-mnist1d")
    ap.add_argument("--doc", default="docs/rules-mnist1d.md")
    args = ap.parse_args()
    from neuroplastic.rules import RULES

    overrides = parse_set(args.set)
    out = Path(args.out)
    results_path = out / "results.json"
    previous = json.loads(results_path.read_text()) if results_path.exists() else []
    shared = {k: v for k, v in SHARED.items() if k not in ("mode", "loss")}
    # rows of other rules, trained with the same shared settings and epochs, are kept
    rows = [
        r for r in previous
        if r["rule"] not in args.rules and r.get("epochs") == args.epochs and r.get("backend") == args.backend
        and all(r.get("settings", {}).get(k) == v for k, v in shared.items() if k not in RULE_SETTINGS.get(r["rule"], {}))
    ]
    for rule in args.rules:
        if rule not in RULE_SETTINGS and rule not in RULES:
            ap.error(f"--rules: unknown rule {rule!r}; choose from {list(RULE_SETTINGS)}")
        if RULE_SETTINGS.get(rule, {}).get("rule", rule) not in RULES:
            print(f"skipping {rule}: not implemented in this checkout")
            continue
        row = train_rule(rule, args.epochs, args.backend, log_path=out / f"{rule}.jsonl", **overrides)
        print(f"{rule}: {100 * row['test_acc']:.1f}% (best {100 * row['best_test_acc']:.1f}%) in {row['time_s']:.0f} s", flush=True)
        rows = [r for r in rows if r["rule"] != rule] + [row]
        rows.sort(key=lambda r: list(RULE_SETTINGS).index(r["rule"]) if r["rule"] in RULE_SETTINGS else 99)
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(rows, indent=2))
    write_table(rows, args, Path(args.doc))


def rule_specific(row: dict) -> str:
    """The row's settings that differ from ``SHARED`` (``-`` when none)."""
    s = row["settings"]
    diff = [f"{k}={s[k]}" for k in SHARED if s.get(k) != SHARED[k] and k not in ("mode", "loss")]
    diff = [d.replace("reg_rate_hz=None", "no regulariser") for d in diff]
    diff += [f"{k}={v}" for k, v in (s.get("rule_options") or {}).items()]
    return ", ".join(diff) or "-"


def write_table(rows: list[dict], args: argparse.Namespace, doc: Path) -> None:
    s = SHARED
    bptt = next((r["test_acc"] for r in rows if r["rule"] == "bptt"), None)
    lines = [
        "# Learning rules on MNIST-1D",
        "",
        f"Produced by `python examples/compare_rules_mnist1d.py --epochs {args.epochs} --backend {args.backend}`"
        " (per-epoch metrics in `runs/compare-mnist1d/`).",
        "",
        f"Same network and training for every rule: `{s['model']}`, {s['hidden']} recurrent LIF neurons"
        f" (`tau_mem = {s['tau_mem']}` step, subtractive reset, {s['surrogate']} surrogate) and a leaky readout"
        f" (`tau_out = {s['tau_out']}` steps); loss `{s['loss']}` (cross-entropy of the time-averaged readout) plus the"
        f" firing-rate regulariser `{s['reg_strength']:g} * mean_j (r_j - {s['reg_rate_hz']:g} Hz)^2` (rates in spikes per step);"
        f" {s['optimizer'].capitalize()} lr {s['lr']} with {s['schedule']} decay to zero over all updates, {args.epochs} epochs,"
        f" batch {s['batch_size']}, seed {s['seed']}, {args.backend} backend, float32, {s['mode']} (one update per batch);"
        " standard MNIST-1D split (4000 train / 1000 test, 40 steps x 1 channel).  OTTT and OTPE run offline in their"
        " two-pass form (the per-step OTTT/OTPE gradient of the linearised loss, summed over the sequence).",
        "The rows `ottt-online` and `otpe-online` are extra: the same two rules updating the weights at every time"
        " step (`mode=online`, 40 updates per batch), which needs a per-step loss and takes no regulariser; their"
        " rate is per update and the cosine schedule runs over all updates.",
        "",
        "*test accuracy* is the last epoch's; *best* is the best epoch's (not a selected model: there is no"
        " validation split).  *hidden rate* is the hidden layer's mean firing rate on the test set (1 ms steps)."
        " Wall time is the training time on a shared 2-core CPU.",
        "",
        "| rule | mode | loss | rule-specific settings | test accuracy | best | vs BPTT (points) | hidden rate (Hz) | wall time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = "" if bptt is None else f"{100 * (r['test_acc'] - bptt):+.1f}"
        lines.append(
            f"| {r['rule']} | {r['settings']['mode']} | {r['settings']['loss']} | {rule_specific(r)} | {100 * r['test_acc']:.1f}% |"
            f" {100 * r['best_test_acc']:.1f}% | {diff} | {', '.join(f'{h:.1f}' for h in r['rate_hz'])} | {r['time_s']:.0f} |"
        )
    noticed = ""
    if doc.exists():
        text = doc.read_text()
        if NOTICED in text:
            noticed = text[text.index(NOTICED):]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(lines) + "\n" + ("\n" + noticed.rstrip() + "\n" if noticed else ""))
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
