"""Train every gradient-approximating rule on MNIST-1D with the same network and epochs.

Writes one run folder per rule under ``runs/compare-mnist1d/`` and the results table to
``docs/rules-mnist1d.md``.  Usage::

    python examples/compare_rules_mnist1d.py                 # all rules, defaults
    python examples/compare_rules_mnist1d.py --rules bptt eprop-random --epochs 10

Every rule gets the same network (recurrent ALIF, 256 hidden), optimizer (Adam, cosine
decay), epochs, batch size and seed as ``neuroplastic train``'s defaults; only the loss
and mode are set per rule where the rule needs a per-step loss.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from neuroplastic.experiment import RunConfig, train_run
from neuroplastic.rules import RULES

# rule -> overrides of the shared configuration (mode / loss the rule needs)
RULE_SETTINGS = {
    "bptt": {},
    "eprop-symmetric": {},
    "eprop-random": {},
    "eprop-adaptive": {},
    "ostl": {},
    "ottt": {"mode": "online", "loss": "ce_per_step"},
    "otpe": {"mode": "online", "loss": "ce_per_step"},
    "dfa": {},
    "fa": {},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", nargs="*", default=list(RULE_SETTINGS))
    ap.add_argument("--epochs", type=int, default=RunConfig().epochs)
    ap.add_argument("--backend", default="jax")
    ap.add_argument("--out", default="runs/compare-mnist1d")
    ap.add_argument("--doc", default="docs/rules-mnist1d.md")
    args = ap.parse_args()
    results_path = Path(args.out) / "results.json"
    # earlier rows are kept (a rerun of some rules replaces just their rows)
    previous = json.loads(results_path.read_text()) if results_path.exists() else []
    rows = [r for r in previous if r["rule"] not in args.rules and r.get("epochs") == args.epochs]
    for rule in args.rules:
        if rule not in RULES:
            print(f"skipping {rule}: not implemented in this checkout")
            continue
        cfg = RunConfig(rule=rule, epochs=args.epochs, backend=args.backend, **RULE_SETTINGS.get(rule, {}))
        t0 = time.perf_counter()
        summary = train_run(cfg, Path(args.out) / rule, progress=False)
        final = summary["final"]
        rows.append({
            "rule": rule, "mode": cfg.mode, "loss": cfg.loss,
            "test_acc": final["test_acc"], "best_test_acc": summary["best_test_acc"],
            "rate_hz": [r for r in final["rate_hz"] if r is not None],
            "time_s": time.perf_counter() - t0, "epochs": args.epochs,
        })
        rows.sort(key=lambda r: list(RULE_SETTINGS).index(r["rule"]) if r["rule"] in RULE_SETTINGS else 99)
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(rows, indent=2))
    write_table(rows, args, Path(args.doc))


def write_table(rows: list[dict], args: argparse.Namespace, doc: Path) -> None:
    cfg = RunConfig()
    bptt = next((r["test_acc"] for r in rows if r["rule"] == "bptt"), None)
    lines = [
        "# Learning rules on MNIST-1D",
        "",
        f"Produced by `python examples/compare_rules_mnist1d.py --epochs {args.epochs} --backend {args.backend}`.",
        f"Same network for every rule: `{cfg.model}` with {cfg.hidden} hidden neurons ({cfg.surrogate} surrogate),"
        f" Adam lr {cfg.lr} with {cfg.schedule} decay, {args.epochs} epochs, batch {cfg.batch_size}, seed {cfg.seed};"
        " standard MNIST-1D split (4000 train / 1000 test, 40 steps x 1 channel). Final-epoch test accuracy.",
        "",
        "| rule | mode | loss | test accuracy | best epoch | vs BPTT (points) | hidden rate (Hz) | wall time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = "" if bptt is None else f"{100 * (r['test_acc'] - bptt):+.1f}"
        lines.append(
            f"| {r['rule']} | {r['mode']} | {r['loss']} | {100 * r['test_acc']:.1f}% | {100 * r['best_test_acc']:.1f}% | {diff} |"
            f" {', '.join(f'{h:.1f}' for h in r['rate_hz'])} | {r['time_s']:.0f} |"
        )
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(lines) + "\n")
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
