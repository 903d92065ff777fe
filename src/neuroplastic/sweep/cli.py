"""The ``neuroplastic sweep`` subcommand: its options and what it runs."""

from __future__ import annotations

import argparse


def add_sweep_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``sweep`` to the ``neuroplastic`` subcommands."""
    p = sub.add_parser("sweep", help="run a sweep over rules, seeds and hyper-parameters (on Ray) and write a report",
                       description="Run every trial of SWEEP.toml (a run config plus a [sweep] table; see docs/sweeps.md), each "
                                   "as a run folder, then write report.md and report.html with spreads over seeds.")
    p.add_argument("sweep_file", metavar="SWEEP.toml", help="the sweep file")
    p.add_argument("--out", default=None, metavar="DIR", help="the sweep folder (default runs/sweeps/<file name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the sweep in --out: finished trials are kept, interrupted ones continue from their checkpoints")
    p.add_argument("--address", default=None, metavar="ADDR",
                   help="a running Ray cluster, e.g. 10.0.0.1:6379 (default $RAY_ADDRESS; neither: a local Ray started for the sweep)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="trials at once (default: the CPUs here / cpus_per_trial; on a cluster, what it schedules)")
    p.add_argument("--in-process", action="store_true", help="run the trials in this process, one after another, without Ray")
    return p


def run_sweep_command(args: argparse.Namespace) -> int:
    """Run ``neuroplastic sweep``; exit status 1 when a trial ended in ``error`` (rerun it with ``--resume``)."""
    from .runner import run_sweep

    result = run_sweep(args.sweep_file, out=args.out, resume=args.resume, address=args.address, workers=args.workers,
                       in_process=args.in_process, limit_threads=True)
    return 1 if result.counts.get("error") else 0


__all__ = ["add_sweep_parser", "run_sweep_command"]
