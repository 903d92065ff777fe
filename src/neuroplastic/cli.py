"""The ``neuroplastic`` command.

``neuroplastic run``    the main job (what ``make demo`` runs), with its defaults;
``neuroplastic train``  one training run with every choice exposed as an option.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from .experiment import RunConfig, train_run


def _add_train_options(p: argparse.ArgumentParser) -> None:
    d = RunConfig()
    from .data import LOADERS
    from .models import MODELS
    from .rules import RULES

    p.add_argument("--data", default=d.data, help=f"dataset, one of {sorted(LOADERS)} (default {d.data})")
    p.add_argument("--model", default=d.model, choices=MODELS, help=f"architecture (default {d.model})")
    p.add_argument("--hidden", type=int, default=d.hidden, help=f"hidden neurons per layer (default {d.hidden})")
    p.add_argument("--surrogate", default=d.surrogate, help=f"surrogate derivative of the spike (default {d.surrogate})")
    p.add_argument("--rule", default=d.rule, help=f"learning rule, one of {sorted(RULES)} (default {d.rule})")
    p.add_argument("--mode", default=d.mode, help="offline, online or deferred (default offline)")
    p.add_argument("--loss", default=d.loss, help=f"loss name (default {d.loss})")
    p.add_argument("--optimizer", default=d.optimizer, help=f"adam, adamw, sgd, momentum, rmsprop or naive (default {d.optimizer})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr})")
    p.add_argument("--schedule", default=d.schedule, help=f"learning-rate schedule: constant or cosine (default {d.schedule})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"batch size (default {d.batch_size})")
    p.add_argument("--backend", default=d.backend, help=f"torch or jax (default {d.backend})")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the framework's default)")
    p.add_argument("--dtype", default=d.dtype, choices=("float32", "float64"))
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed for init, shuffling and the rule (default {d.seed})")
    p.add_argument("--reg-rate", type=float, default=None, help="target firing rate in Hz for the rate regulariser (off by default)")
    p.add_argument("--reg-strength", type=float, default=d.reg_strength, help="strength of the rate regulariser")
    p.add_argument("--out", default="runs", help="folder in which the run folder is made (default runs/)")
    p.add_argument("--name", default=None, help="run folder name (default: time stamp, data and rule)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        data=args.data, model=args.model, hidden=args.hidden, surrogate=args.surrogate, rule=args.rule, mode=args.mode, loss=args.loss,
        optimizer=args.optimizer, lr=args.lr, schedule=args.schedule, epochs=args.epochs, batch_size=args.batch_size, backend=args.backend,
        device=args.device, dtype=args.dtype, seed=args.seed, reg_rate_hz=args.reg_rate, reg_strength=args.reg_strength,
    )


def _run_dir(args: argparse.Namespace, cfg: RunConfig) -> Path:
    name = args.name or f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.data}-{cfg.rule}"
    return Path(args.out) / name


def _add_study_options(p: argparse.ArgumentParser, quick: bool = True) -> None:
    from .study import StudyConfig

    d = StudyConfig()
    p.add_argument("--rules", nargs="+", default=list(d.rules), help=f"rules to compare (default: {' '.join(d.rules)})")
    p.add_argument("--reference", default=d.reference, help=f"reference rule for gradient alignment (default {d.reference})")
    p.add_argument("--data", default=d.data, help=f"dataset (default {d.data})")
    p.add_argument("--model", default=d.model, help=f"architecture (default {d.model})")
    p.add_argument("--hidden", type=int, default=None, help=f"hidden neurons (default {d.hidden}; 32 with --quick)")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs per rule (default {d.epochs}; 2 with --quick)")
    p.add_argument("--backend", default=d.backend, help=f"torch or jax (default {d.backend})")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default="runs", help="folder in which the run folder is made (default runs/)")
    p.add_argument("--name", default=None, help="run folder name (default: time stamp)")
    if quick:
        p.add_argument("--quick", action="store_true", help="a small version that finishes in about a minute")


def _study_config(args: argparse.Namespace, **extra):
    from .study import StudyConfig

    over = {k: v for k, v in (("hidden", args.hidden), ("epochs", args.epochs)) if v is not None}
    base = dict(rules=tuple(args.rules), reference=args.reference, data=args.data, model=args.model,
                backend=args.backend, seed=args.seed, **over, **extra)
    return StudyConfig.quick(**base) if getattr(args, "quick", False) else StudyConfig(**base)


def _stamp(args: argparse.Namespace, what: str) -> Path:
    return Path(args.out) / (args.name or f"{time.strftime('%Y%m%d-%H%M%S')}-{what}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neuroplastic", description="Train and compare learning rules for spiking networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="the main job: compare learning rules on MNIST-1D and write a report")
    _add_study_options(p_run)
    p_train = sub.add_parser("train", help="one training run; every choice is an option")
    _add_train_options(p_train)
    p_cmp = sub.add_parser("compare", help="gradient comparison only: rules against a reference along its training")
    _add_study_options(p_cmp)
    p_cmp.add_argument("--steps", type=int, default=40, help="optimizer steps to compare (default 40)")
    p_cmp.add_argument("--every", type=int, default=1, help="compare every N steps (default 1)")
    p_land = sub.add_parser("landscape", help="train one rule and draw the loss landscape around its final parameters")
    _add_study_options(p_land)
    p_land.add_argument("--grid", type=int, default=15, help="grid points per axis (default 15)")
    p_land.add_argument("--batches", type=int, default=2, help="test batches averaged per grid point (default 2)")
    p_rep = sub.add_parser("report", help="render report.md and report.html of a `neuroplastic run` folder again")
    p_rep.add_argument("run_dir", help="the run folder")
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            cfg = _config(args)
            train_run(cfg, _run_dir(args, cfg), progress=not args.no_progress)
        elif args.command == "run":
            from .study import run_study

            run_study(_study_config(args), _stamp(args, "study"))
        elif args.command == "compare":
            _compare(args)
        elif args.command == "landscape":
            from .study import run_study

            cfg = _study_config(args, rules=(args.reference,), landscape_grid=args.grid, landscape_batches=args.batches, compare_steps=1)
            run_study(cfg, _stamp(args, "landscape"))
        else:
            from .report import write_report

            for path in write_report(args.run_dir):
                print(path)
    except ValueError as err:
        print(f"neuroplastic: error: {err}", file=sys.stderr)
        return 2
    return 0


def _compare(args: argparse.Namespace) -> None:
    from .analysis import plots as P
    from .backend import get_backend
    from .data import load_dataset
    from .models import build_model
    from .train.compare import GradientComparison

    cfg = _study_config(args)
    cfg.validate()
    out = _stamp(args, "compare")
    B = get_backend(cfg.backend)
    data = load_dataset(cfg.data)
    net = build_model(cfg.model, data.n_features, data.n_classes, hidden=cfg.hidden, surrogate=cfg.surrogate, dt=data.dt)
    cmp = GradientComparison(net, list(cfg.rules), primary=cfg.reference, reference=cfg.reference, loss=cfg.loss, lr=cfg.lr, backend=B)
    _, records, _ = cmp.run(net.init(cfg.seed, backend=B), data, epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                            every=args.every, sample_steps=(0, args.steps - 1), max_steps=args.steps, out_dir=out)
    if P.have_matplotlib() and hasattr(P, "plot_alignment_curves"):
        P.plot_alignment_curves([r for r in records if r["rule"] != cfg.reference and r["kind"] == "gradient"], out / "alignment_curves.png")
    print(f"neuroplastic compare: {len(records)} records in {out / 'alignment.jsonl'}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
