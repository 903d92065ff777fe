"""The ``neuroplastic`` command.

``neuroplastic run``    the main job (what ``make demo`` runs), with its defaults;
``neuroplastic sweep``  many runs over rules, seeds and hyper-parameters, on Ray (docs/sweeps.md);
``neuroplastic train``  one training run with every choice exposed as an option, or read
                        from a TOML file with ``--config FILE`` (options given on the
                        command line override the file); ``--resume RUN_DIR`` continues a
                        run that was killed, from its latest checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .experiment import RunConfig, resume_run, train_run

# argparse dest -> RunConfig field, for the options of `train` that set the config
_FIELDS = {
    "data": "data", "encoder": "encoder", "model": "model", "hidden": "hidden", "surrogate": "surrogate", "tau_mem": "tau_mem", "tau_out": "tau_out", "rule": "rule",
    "mode": "mode", "loss": "loss", "optimizer": "optimizer", "lr": "lr", "schedule": "schedule", "epochs": "epochs",
    "batch_size": "batch_size", "backend": "backend", "device": "device", "dtype": "dtype", "compile": "compile", "seed": "seed",
    "reg_rate": "reg_rate_hz", "reg_strength": "reg_strength", "checkpoint_every": "checkpoint_every",
}
# repeated KEY=VALUE options -> RunConfig field
_OPTION_FIELDS = {"data_option": "data_options", "encoder_option": "encoder_options", "rule_option": "rule_options"}


class _Given(argparse.Action):
    """Store the value and note that the option was given (so it overrides ``--config``)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, True if self.nargs == 0 else values)  # nargs=0: a flag
        namespace.given = set(getattr(namespace, "given", ())) | {self.dest}


def _one_of(names: Any) -> str:
    """``one of: a, b, c``: the closed set of an option, for its help (the value is checked by the library, which names it)."""
    return "one of: " + ", ".join(str(n) for n in names)


def _add_train_options(p: argparse.ArgumentParser) -> None:
    d = RunConfig()
    from .backend import BACKENDS
    from .data import LOADERS
    from .encoders import ENCODERS
    from .losses import LOSSES
    from .models import MODELS
    from .rules import MODES, RULES
    from .surrogates import SURROGATES
    from .train.optimizers import OPTIMIZERS, SCHEDULES

    p.add_argument("--config", default=None, metavar="FILE", help="TOML run configuration; options given here override it")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a killed run from its latest checkpoint (with its own config)")
    p.add_argument("--data", action=_Given, default=d.data, help=f"dataset, {_one_of(sorted(LOADERS))} (default {d.data})")
    p.add_argument("--data-option", action="append", default=None, metavar="KEY=VALUE", help="a dataset option (repeatable; VALUE read as TOML)")
    p.add_argument("--encoder", action=_Given, default=None, help=f"spike encoder applied to the data, {_one_of(sorted(ENCODERS))} (default: none)")
    p.add_argument("--encoder-option", action="append", default=None, metavar="KEY=VALUE", help="an encoder option (repeatable)")
    p.add_argument("--model", action=_Given, default=d.model, choices=MODELS, help=f"architecture (default {d.model})")
    p.add_argument("--hidden", action=_Given, type=int, default=d.hidden, help=f"hidden neurons per layer (default {d.hidden})")
    p.add_argument("--surrogate", action=_Given, default=d.surrogate, help=f"surrogate derivative of the spike, {_one_of(SURROGATES)} (default {d.surrogate})")
    p.add_argument("--tau-mem", action=_Given, type=float, default=d.tau_mem, help=f"membrane time constant of the hidden cells (default {d.tau_mem:g})")
    p.add_argument("--tau-out", action=_Given, type=float, default=d.tau_out, help=f"time constant of the leaky readout (default {d.tau_out:g})")
    p.add_argument("--rule", action=_Given, default=d.rule, help=f"learning rule, {_one_of(sorted(RULES))} (default {d.rule})")
    p.add_argument("--mode", action=_Given, default=d.mode, help=f"training mode, {_one_of(MODES)} (default {d.mode})")
    p.add_argument("--loss", action=_Given, default=d.loss, help=f"loss, {_one_of(LOSSES)} (default {d.loss})")
    p.add_argument("--optimizer", action=_Given, default=d.optimizer, help=f"optimizer, {_one_of(OPTIMIZERS)} (default {d.optimizer})")
    p.add_argument("--lr", action=_Given, type=float, default=d.lr, help=f"learning rate (default {d.lr})")
    p.add_argument("--schedule", action=_Given, default=d.schedule, help=f"learning-rate schedule, {_one_of(SCHEDULES)} (default {d.schedule})")
    p.add_argument("--epochs", action=_Given, type=int, default=d.epochs, help=f"epochs (default {d.epochs})")
    p.add_argument("--batch-size", action=_Given, type=int, default=d.batch_size, help=f"batch size (default {d.batch_size})")
    p.add_argument("--backend", action=_Given, default=d.backend, help=f"array framework, {_one_of(BACKENDS)} (default {d.backend})")
    p.add_argument("--device", action=_Given, default=None, help="cpu, cuda or cuda:N (default: the framework's default)")
    p.add_argument("--dtype", action=_Given, default=d.dtype, choices=("float32", "float64"), help=f"floating-point type (default {d.dtype})")
    p.add_argument("--compile", action=_Given, nargs=0, default=d.compile,
                   help="torch: trace and compile the rule's step with TorchInductor (seconds to start, then several "
                        "times faster steps; JAX always compiles)")
    p.add_argument("--seed", action=_Given, type=int, default=d.seed, help=f"seed for init, shuffling and the rule (default {d.seed})")
    p.add_argument("--reg-rate", action=_Given, type=float, default=None, help="target firing rate in Hz for the rate regulariser (off by default)")
    p.add_argument("--reg-strength", action=_Given, type=float, default=d.reg_strength, help="strength of the rate regulariser")
    p.add_argument("--rule-option", action="append", default=None, metavar="KEY=VALUE", help="a rule option, e.g. k=10 (repeatable; VALUE read as TOML)")
    p.add_argument("--checkpoint-every", action=_Given, type=int, default=d.checkpoint_every,
                   help=f"save a checkpoint every N epochs, for --resume; 0: never (default {d.checkpoint_every})")
    p.add_argument("--out", action=_Given, default="runs", help="folder in which the run folder is made (default runs/)")
    p.add_argument("--name", action=_Given, default=None, help="run folder name (default: time stamp, data and rule)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (there is none either when stderr is not a terminal)")
    p.add_argument("--quiet", action="store_true", help="the same as --no-progress")
    p.add_argument("--progress", action="store_true", help="a progress bar on stderr even when it is not a terminal (a log file, a pipe)")


def _config(args: argparse.Namespace) -> RunConfig:
    """The run config of ``train``: ``--config FILE`` (or the defaults) with the given options on top."""
    from .config import load_config, parse_option

    base = load_config(args.config) if args.config else RunConfig()
    over: dict[str, Any] = {_FIELDS[k]: getattr(args, k) for k in getattr(args, "given", ()) if k in _FIELDS}
    for dest, fld in _OPTION_FIELDS.items():
        items = getattr(args, dest, None)
        if items:
            over[fld] = {**getattr(base, fld), **dict(parse_option(t, "--" + dest.replace("_", "-")) for t in items)}
    cfg = dataclasses.replace(base, **over)
    cfg.validate()
    return cfg


def _train(args: argparse.Namespace) -> None:
    if args.resume is not None:
        extra = sorted(getattr(args, "given", ())) + [k for k in ("config", *_OPTION_FIELDS) if getattr(args, k, None)]
        if extra:
            flag = "--" + extra[0].replace("_", "-")
            raise ValueError(f"--resume: the run continues with its own config.toml; leave out {flag}")
        resume_run(args.resume, progress=_progress(args))
        return
    cfg = _config(args)
    train_run(cfg, _run_dir(args, cfg), progress=_progress(args))


def _progress(args: argparse.Namespace) -> bool:
    """Progress on stderr unless ``--quiet``/``--no-progress`` or stderr is not a terminal (logs, tests)."""
    from .progress import wants_progress

    if getattr(args, "progress", False) and not (getattr(args, "quiet", False) or getattr(args, "no_progress", False)):
        return True
    return wants_progress(bool(getattr(args, "quiet", False) or getattr(args, "no_progress", False)))


def _run_dir(args: argparse.Namespace, cfg: RunConfig) -> Path:
    name = args.name or f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.data}-{cfg.rule}"
    return Path(args.out) / name


def _positive_int(name: str):
    """argparse type: an integer >= 1, or an error naming the option."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= 1, got {text!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= 1, got {v}")
        return v

    return parse


def _add_study_options(p: argparse.ArgumentParser, quick: bool = True) -> None:
    from .backend import BACKENDS
    from .data import LOADERS
    from .models import MODELS
    from .rules import RULES
    from .study import StudyConfig

    d = StudyConfig.default()
    q = d.quick()
    p.add_argument("--config", default=None, metavar="FILE",
                   help="study TOML: a run config plus [study] and [[rules]] tables (default: the main job's, neuroplastic/studies/main.toml)")
    p.add_argument("--rules", nargs="+", default=None, metavar="RULE",
                   help=f"rules to compare, each with its defaults, {_one_of(sorted(RULES))} (default: {' '.join(d.labels)})")
    p.add_argument("--reference", default=None, help=f"reference rule for gradient alignment, one of the compared rules (default {d.reference})")
    p.add_argument("--data", default=None, help=f"dataset, {_one_of(sorted(LOADERS))} (default {d.base.data})")
    p.add_argument("--model", default=None, help=f"architecture, {_one_of(MODELS)} (default {d.base.model})")
    p.add_argument("--hidden", type=_positive_int("--hidden"), default=None, help=f"hidden neurons (default {d.base.hidden}; {q.base.hidden} with --quick)")
    p.add_argument("--epochs", type=_positive_int("--epochs"), default=None, help=f"epochs per rule (default {d.base.epochs}; {q.base.epochs} with --quick)")
    p.add_argument("--backend", default=None, help=f"array framework, {_one_of(BACKENDS)} (default {d.base.backend})")
    p.add_argument("--compile", action="store_const", const=True, default=None,
                   help="torch: trace and compile each rule's step with TorchInductor (seconds per rule to start, then "
                        "several times faster steps; JAX always compiles)")
    p.add_argument("--seed", type=int, default=None, help=f"first seed (default {d.base.seed})")
    p.add_argument("--seeds", type=_positive_int("--seeds"), default=None, help=f"seeds per rule, for spreads (default {d.seeds})")
    p.add_argument("--out", default="runs", help="folder in which the run folder is made (default runs/)")
    p.add_argument("--name", default=None, help="run folder name (default: time stamp)")
    if quick:
        p.add_argument("--quick", action="store_true",
                       help=f"a small version that finishes in about a minute: {q.train_examples} training examples, {q.base.epochs} epochs, "
                            f"{q.base.hidden} hidden (accuracy far below the full run's; the table and the report say so)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or phase lines on stderr (there are none either when stderr is not a terminal)")


def _study_config(args: argparse.Namespace, **extra: Any):
    """The study of ``run``/``compare``/``landscape``: the study file (or the main job's) with the options on top.

    Unknown rules fail here, with a "did you mean", before anything is trained or written.
    """
    from .study import StudyConfig, load_study

    cfg = load_study(args.config) if args.config else StudyConfig.default()
    if args.rules is not None:
        cfg = cfg.with_rules(args.rules)
        if args.reference is None and cfg.reference not in cfg.labels:
            cfg = dataclasses.replace(cfg, reference=cfg.labels[0])
    base = {k: getattr(args, k) for k in ("data", "model", "hidden", "epochs", "backend", "compile", "seed") if getattr(args, k) is not None}
    if base:
        cfg = dataclasses.replace(cfg, base=dataclasses.replace(cfg.base, **base))
    if args.reference is not None:
        cfg = dataclasses.replace(cfg, reference=args.reference)
    if getattr(args, "seeds", None) is not None:
        cfg = dataclasses.replace(cfg, seeds=args.seeds)
    if getattr(args, "quick", False):
        cfg = cfg.quick()
        if args.hidden is not None or args.epochs is not None:  # explicit sizes win over --quick's
            cfg = dataclasses.replace(cfg, base=dataclasses.replace(cfg.base, **{k: v for k, v in base.items() if k in ("hidden", "epochs")}))
    cfg = dataclasses.replace(cfg, **extra)
    cfg.validate()
    return cfg


def _stamp(args: argparse.Namespace, what: str) -> Path:
    return Path(args.out) / (args.name or f"{time.strftime('%Y%m%d-%H%M%S')}-{what}")


def main(argv: Sequence[str] | None = None) -> int:
    from .backend import native, prefer_passive_openmp

    prefer_passive_openmp()
    native.keep_freed_memory()  # multi-MB temporaries reuse the heap instead of fresh pages
    parser = argparse.ArgumentParser(prog="neuroplastic", description="Train and compare learning rules for spiking networks.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="the main job: compare learning rules on MNIST-1D and write a report")
    _add_study_options(p_run)
    p_train = sub.add_parser("train", help="one training run; every choice is an option")
    _add_train_options(p_train)
    p_cmp = sub.add_parser("compare", help="gradient comparison only: rules against a reference along its training")
    _add_study_options(p_cmp)
    p_cmp.add_argument("--steps", type=_positive_int("--steps"), default=40, help="optimizer steps to compare (default 40)")
    p_cmp.add_argument("--every", type=_positive_int("--every"), default=1, help="compare every N steps (default 1)")
    p_land = sub.add_parser("landscape", help="train one rule and draw the loss landscape around its final parameters")
    _add_study_options(p_land)
    p_land.add_argument("--grid", type=_positive_int("--grid"), default=15, help="grid points per axis (default 15)")
    p_land.add_argument("--batches", type=_positive_int("--batches"), default=2, help="test batches averaged per grid point (default 2)")
    p_rep = sub.add_parser("report", help="render report.md and report.html of a `neuroplastic run` folder again")
    p_rep.add_argument("run_dir", help="the run folder")
    p_exp = sub.add_parser("export", help="write a trained run's network as a NIR graph (neuromorphic hardware, snnTorch, Norse)")
    p_exp.add_argument("run_dir", help="a `neuroplastic train` run folder")
    p_exp.add_argument("--nir", required=True, help="the .nir file to write")
    p_exp.add_argument("--dt", type=float, default=1e-4, help="the step length in seconds written into the graph (default 1e-4)")
    p_exp.add_argument("--approximate", action="store_true",
                       help="export cells NIR cannot express exactly (subtractive reset) as their closest NIR node; the exact semantics go in node metadata")
    from .sweep.cli import add_sweep_parser, run_sweep_command

    add_sweep_parser(sub)
    args = parser.parse_args(argv)
    from .progress import progress_enabled

    try:
        if args.command == "train":
            _train(args)
        elif args.command == "run":
            from .study import run_study

            cfg = _study_config(args)
            with progress_enabled(_progress(args)):
                results = run_study(cfg, _stamp(args, "study"), progress=_progress(args))
            print(results_table(results))
        elif args.command == "compare":
            with progress_enabled(_progress(args)):
                _compare(args)
        elif args.command == "landscape":
            from .study import run_study

            cfg = _study_config(args, landscape_grid=args.grid, landscape_batches=args.batches, compare_steps=1)
            cfg = dataclasses.replace(cfg, arms=(cfg.arm(cfg.reference),))
            with progress_enabled(_progress(args)):
                run_study(cfg, _stamp(args, "landscape"), progress=_progress(args))
        elif args.command == "sweep":
            return run_sweep_command(args)
        elif args.command == "export":
            from .interop import export_run

            print(export_run(args.run_dir, args.nir, dt=args.dt, approximate=args.approximate))
        else:
            from .report import write_report

            for path in write_report(args.run_dir):
                print(path)
    except ValueError as err:
        print(f"neuroplastic: error: {err}", file=sys.stderr)
        return 2
    return 0


def results_table(results: dict) -> str:
    """The printed summary of a study: test accuracy per rule and what each trained on (examples, epochs)."""
    from .report import subset_note, training_subset

    cfg = results["config"]
    lines = ["", f"{'rule':20s} {'test acc':>9s}  trained on", f"{'-' * 20} {'-' * 9}  {'-' * 34}"]
    for label, r in results["rules"].items():
        acc, spread = r["final"].get("test_acc"), r.get("test_acc_spread")
        shown = "n/a" if acc is None else f"{100 * (spread['mean'] if spread else acc):.1f}%"
        lines.append(f"{label:20s} {shown:>9s}  {training_subset(cfg, r)}")
    note = subset_note(cfg)
    return "\n".join(lines + ([note] if note else []))


def _compare(args: argparse.Namespace) -> None:
    from .analysis import plots as P
    from .backend import get_backend
    from .rules import make_rule
    from .study import study_data, study_trainer
    from .train.compare import GradientComparison

    cfg = _study_config(args)
    B = get_backend(cfg.base.backend)
    data = study_data(cfg)
    net, reference = study_trainer(cfg, data, cfg.reference, B)
    rules = {a.name: make_rule(a.rule, **a.options) for a in cfg.arms}
    out = _stamp(args, "compare")
    cmp = GradientComparison(net, rules, primary=cfg.reference, reference=cfg.reference, loss=reference.objective,
                             optimizer=reference.optimizer, backend=B)
    _, records, _ = cmp.run(net.init(cfg.base.seed, backend=B), data, epochs=cfg.base.epochs, batch_size=cfg.base.batch_size,
                            seed=cfg.base.seed, every=args.every, sample_steps=(0, args.steps - 1), max_steps=args.steps, out_dir=out)
    if P.have_matplotlib():
        P.plot_alignment_curves([r for r in records if r["rule"] != cfg.reference and r["kind"] == "gradient"], out / "alignment_curves.png")
    print(f"neuroplastic compare: {len(records)} records in {out / 'alignment.jsonl'}")


def entry() -> None:  # pragma: no cover - replaces the process
    """The ``neuroplastic`` console command: :func:`main`, in a process whose allocator uses transparent huge
    pages where the machine has them (:func:`neuroplastic.backend.native.exec_with_huge_pages`)."""
    from .backend import native

    native.exec_with_huge_pages()
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
