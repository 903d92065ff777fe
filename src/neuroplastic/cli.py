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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="neuroplastic", description="Train and compare learning rules for spiking networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="the main job: a recurrent spiking network on MNIST-1D with BPTT")
    _add_train_options(p_run)
    p_train = sub.add_parser("train", help="one training run; every choice is an option")
    _add_train_options(p_train)
    args = parser.parse_args(argv)
    cfg = _config(args)
    try:
        train_run(cfg, _run_dir(args, cfg), progress=not args.no_progress)
    except ValueError as err:
        print(f"neuroplastic: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
