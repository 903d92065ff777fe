"""Sweeps over rules, seeds and hyper-parameters, on Ray (or in one process without it).

``neuroplastic sweep SWEEP.toml``: a run configuration plus a ``[sweep]`` table
(:mod:`.spec`) becomes a list of trials, each an ordinary run folder written by
:func:`neuroplastic.experiment.train_run` (:mod:`.runner`); the report gives every
setting's mean, spread and 95% interval over seeds and tests between rules
(:mod:`.stats`, :mod:`.report`).  See docs/sweeps.md.
"""

from __future__ import annotations

from .report import write_sweep_report
from .runner import Manifest, SweepResult, run_sweep, run_trial
from .spec import SweepSpec, Trial, expand_trials, load_sweep, loads_sweep
from .stats import compare_paired, compare_welch, describe, holm

__all__ = [
    "Manifest", "SweepResult", "SweepSpec", "Trial", "compare_paired", "compare_welch", "describe", "expand_trials", "holm",
    "load_sweep", "loads_sweep", "run_sweep", "run_trial", "write_sweep_report",
]
