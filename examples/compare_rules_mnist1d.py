"""Train every gradient-approximating rule on MNIST-1D with the same network and epochs.

Writes each rule's run folder (``neuroplastic train``'s) to ``runs/compare-mnist1d/<rule>/``, the rows to
``runs/compare-mnist1d/results.json`` and the table to ``docs/rules-mnist1d.md``.  Usage::

    python examples/compare_rules_mnist1d.py                  # all rules, 60 epochs
    python examples/compare_rules_mnist1d.py --rules bptt fa --epochs 15 --doc /tmp/t.md
    python examples/compare_rules_mnist1d.py --rules ottt --set mode=online lr=1e-3

Every rule gets the network, optimizer, epochs, batch size and seed of ``SHARED``
(``examples/configs/rules-mnist1d.toml``); the
only per-rule settings are those in ``RULE_SETTINGS`` (and ``--set`` for tuning), and the
table lists them.  A rerun of some rules replaces only their rows (rows of other shared
settings or epochs are dropped).  The "What we noticed" section of an existing table is
kept when the table is rewritten.

The cosine schedule counts optimizer updates: ``epochs * batches`` offline, ``T`` times
that online (one update per time step).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from neuroplastic.config import load_config

#: the network and training every rule gets: examples/configs/rules-mnist1d.toml (also what
#: `make demo` trains), read once here so the table, the tests and the config cannot drift apart
CONFIG = Path(__file__).resolve().parent / "configs" / "rules-mnist1d.toml"
SHARED_KEYS = ("model", "hidden", "tau_mem", "tau_out", "surrogate", "optimizer", "lr", "schedule", "batch_size", "seed",
               "reg_rate_hz", "reg_strength", "mode", "loss")
SHARED = {k: getattr(load_config(CONFIG), k) for k in SHARED_KEYS}

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


def train_rule(row: str, epochs: int, backend: str = "jax", out_dir: str | Path | None = None, **overrides) -> dict:
    """Train the rule of ``row`` on MNIST-1D with ``SHARED`` + ``RULE_SETTINGS[row]`` + ``overrides``.

    Runs :func:`neuroplastic.experiment.train_run` (the run folder goes to ``out_dir``, or a
    temporary folder) and returns the row of the table: final and best test accuracy, hidden
    firing rate (Hz), training time and the settings used.
    """
    from neuroplastic.experiment import train_run

    s = settings_for(row, overrides)
    rule = s.pop("rule", row)
    rule_options = s.pop("rule_options", {}) or {}
    cfg = dataclasses.replace(load_config(CONFIG), **s, rule=rule, rule_options=rule_options, epochs=epochs, backend=backend,
                              checkpoint_every=0)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(out_dir) if out_dir is not None else Path(tmp) / row
        summary = train_run(cfg, run, progress=False, log=lambda *_: None)
        hist = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    final = summary["final"]
    return {
        "rule": row, "epochs": epochs, "backend": backend,
        "settings": {**s, "rule_options": rule_options},
        "test_acc": final["test_acc"], "best_test_acc": summary["best_test_acc"],
        "best_epoch": max(hist, key=lambda h: h["test_acc"])["epoch"],
        "rate_hz": [r for r in final["rate_hz"] if r is not None],
        "time_s": summary["wall_time_s"],
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
        row = train_rule(rule, args.epochs, args.backend, out_dir=out / rule, **overrides)
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
