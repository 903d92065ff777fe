"""The sweep file: a base run configuration plus a ``[sweep]`` table, expanded into trials.

A sweep file is a run-configuration TOML (``seed``, ``[data]``, ``[encoder]``, ``[network]``,
``[rule]``, ``[trainer]``; see docs/runs.md) with one more table::

    [sweep]
    mode = "grid"                          # grid, random or search
    seed = [0, 1, 2]                       # an axis: any run-config field by its dotted key
    "trainer.lr" = [0.001, 0.005]
    rule = ["bptt", {name = "eprop-random", mode = "online"}, {name = "tbptt", options = {k = 10}}]

A list is a grid axis (every value, crossed with the other lists). In ``random`` and
``search`` mode an axis may instead be a distribution table, sampled ``samples`` times
(seeded by ``sample_seed``) and crossed with the lists::

    "trainer.lr" = {loguniform = [1e-4, 1e-2]}     # also uniform, randint (both ends included), choice

``search`` runs the same trials under Ray Tune with an early-stopping scheduler; its
settings are the ``[sweep.search]`` table (``metric``, ``mode``, ``scheduler``,
``grace_period``, ``reduction_factor``).

The whole-section axes ``rule``, ``data`` and ``encoder`` take a name or a table
``{name, options}`` (``rule`` also ``mode``, the trainer's mode); such an entry replaces the
base file's section, options included.  ``"rule.k"``-style keys set one option on top.

:func:`load_sweep` reads and checks the file (unknown keys are named, with the closest
known key); :func:`expand_trials` lists the trials, each with its validated
:class:`~neuroplastic.config.RunConfig` or the error that makes it invalid.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import OPTIONS_FIELD, SECTIONS, TOP_LEVEL, RunConfig, did_you_mean, _read_section, _show, config_from_dict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: how the trials are chosen
MODES = ("grid", "random", "search")
#: distribution name -> what its list holds
DISTRIBUTIONS = {
    "uniform": "[low, high]", "loguniform": "[low, high] with 0 < low", "randint": "[low, high] integers, both included",
    "choice": "a non-empty list of values",
}
#: keys of ``[sweep]`` that are settings of the sweep, not axes
SWEEP_SETTINGS = ("mode", "samples", "sample_seed", "cpus_per_trial", "gpus_per_trial", "search")
#: keys of ``[sweep.search]``
SEARCH_SETTINGS = ("metric", "mode", "scheduler", "grace_period", "reduction_factor")
#: per-epoch metrics a search can optimise (fields of a run's ``metrics.jsonl``)
SEARCH_METRICS = ("test_acc", "test_loss", "train_acc", "train_loss")
SCHEDULERS = ("asha", "none")
#: sections an axis can replace as a whole (name + options)
WHOLE_SECTIONS = ("data", "encoder", "rule")
#: every axis key a sweep accepts, for the "did you mean" of an unknown one
AXIS_KEYS = ["seed", *WHOLE_SECTIONS] + [f"{s}.{k}" for s, keys in SECTIONS.items() for k in keys]


@dataclass(frozen=True)
class Axis:
    """One swept field: ``values`` for a grid axis, or a ``distribution`` with its ``bounds``."""

    key: str
    values: tuple = ()
    distribution: str | None = None
    bounds: tuple = ()

    @property
    def sampled(self) -> bool:
        return self.distribution is not None


@dataclass
class SearchSettings:
    """``[sweep.search]``: what Ray Tune optimises and how it stops trials early."""

    metric: str = "test_acc"
    mode: str = "max"
    scheduler: str = "asha"
    grace_period: int = 1
    reduction_factor: float = 2.0


@dataclass
class SweepSpec:
    """A parsed sweep file: the base run config (sectioned, as in the TOML) and the axes."""

    base: dict
    axes: list[Axis]
    mode: str = "grid"
    samples: int = 1
    sample_seed: int = 0
    cpus_per_trial: int = 1
    gpus_per_trial: float | None = None
    search: SearchSettings = field(default_factory=SearchSettings)
    source: str = "sweep"

    def to_dict(self) -> dict:
        """The sweep's settings for the manifest (JSON)."""
        return {
            "mode": self.mode, "samples": self.samples, "sample_seed": self.sample_seed,
            "cpus_per_trial": self.cpus_per_trial, "gpus_per_trial": self.gpus_per_trial,
            "search": vars(self.search) if self.mode == "search" else None,
            "axes": [{"key": a.key, "values": list(a.values)} if not a.sampled else
                     {"key": a.key, "distribution": a.distribution, "bounds": list(a.bounds)} for a in self.axes],
        }


@dataclass
class Trial:
    """One point of the sweep: ``setting`` maps axis keys to values; ``config`` is ``None`` when invalid."""

    index: int
    name: str
    setting: dict
    config: RunConfig | None
    error: str | None = None

    @property
    def seed(self) -> int | None:
        return self.config.seed if self.config is not None else self.setting.get("seed")


# ---------------------------------------------------------------------------- reading
def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file (``ValueError`` naming the bad key)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"sweep: cannot read {p} ({err.strerror or err})") from None
    return loads_sweep(text, source=str(p))


def loads_sweep(text: str, source: str = "sweep") -> SweepSpec:
    """:func:`load_sweep` for TOML text."""
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"sweep: {source} is not valid TOML ({err})") from None
    return parse_sweep(d, source)


def parse_sweep(d: dict, source: str = "sweep") -> SweepSpec:
    """A :class:`SweepSpec` from the dictionary of a sweep file."""
    if not isinstance(d, dict):
        raise ValueError(f"sweep: expected a table, got {_show(d)}")
    d = copy.deepcopy(d)
    table = d.pop("sweep", None)
    if table is None:
        raise ValueError(f"sweep: {source} has no [sweep] table; add one with the fields to sweep, e.g. seed = [0, 1, 2]")
    if not isinstance(table, dict):
        raise ValueError(f"sweep: expected a [sweep] table, got {_show(table)}")
    _check_base(d)
    mode = table.get("mode", "grid")
    if mode not in MODES:
        raise ValueError(f"sweep.mode: expected one of {list(MODES)}, got {_show(mode)}")
    spec = SweepSpec(base=d, axes=[], mode=mode, source=source)
    spec.samples = _int_setting(table, "samples", 1, lo=1)
    spec.sample_seed = _int_setting(table, "sample_seed", 0, lo=0)
    spec.cpus_per_trial = _int_setting(table, "cpus_per_trial", 1, lo=1)
    if "gpus_per_trial" in table:
        g = table["gpus_per_trial"]
        if not (isinstance(g, (int, float)) and not isinstance(g, bool) and math.isfinite(g) and g >= 0):
            raise ValueError(f"sweep.gpus_per_trial: expected a non-negative number, got {_show(g)}")
        spec.gpus_per_trial = float(g)
    if "search" in table:
        if mode != "search":
            raise ValueError(f"sweep.search: search settings need mode = 'search', but mode is {mode!r}")
        spec.search = _search_settings(table["search"])
    for key, value in table.items():
        if key in SWEEP_SETTINGS:
            continue
        spec.axes.append(_axis(key, value, mode))
    _check_axis_combination(spec.axes)
    sampled = [a for a in spec.axes if a.sampled]
    if mode == "grid" and "samples" in table:
        raise ValueError("sweep.samples: grid mode takes every value of every axis; samples needs mode = 'random' or 'search'")
    if mode != "grid" and not sampled and spec.samples > 1:
        raise ValueError(f"sweep.samples: {spec.samples} samples but no axis is a distribution; the samples would be identical")
    return spec


def _check_base(d: dict) -> None:
    """Unknown sections and keys of the base run config, named as ``config`` names them."""
    for key, val in d.items():
        if key in TOP_LEVEL:
            continue
        if key not in SECTIONS:
            raise ValueError(f"{key}: unknown key{did_you_mean(key, [*TOP_LEVEL, *SECTIONS, 'sweep'])}")
        if not isinstance(val, dict):
            raise ValueError(f"{key}: expected a [{key}] section, got {_show(val)}")
        _read_section(key, val)


def _int_setting(table: dict, key: str, default: int, lo: int) -> int:
    v = table.get(key, default)
    if not (isinstance(v, int) and not isinstance(v, bool) and v >= lo):
        raise ValueError(f"sweep.{key}: expected an integer >= {lo}, got {_show(v)}")
    return v


def _search_settings(t: Any) -> SearchSettings:
    if not isinstance(t, dict):
        raise ValueError(f"sweep.search: expected a [sweep.search] table, got {_show(t)}")
    for k in t:
        if k not in SEARCH_SETTINGS:
            raise ValueError(f"sweep.search.{k}: unknown key{did_you_mean(k, SEARCH_SETTINGS)}")
    s = SearchSettings(**t)
    if s.metric not in SEARCH_METRICS:
        close = difflib.get_close_matches(s.metric, SEARCH_METRICS, n=1) if isinstance(s.metric, str) else []
        raise ValueError(f"sweep.search.metric: expected one of {list(SEARCH_METRICS)}, got {_show(s.metric)}"
                         + (f"; did you mean {close[0]!r}?" if close else ""))
    if s.mode not in ("max", "min"):
        raise ValueError(f"sweep.search.mode: expected 'max' or 'min', got {_show(s.mode)}")
    if s.scheduler not in SCHEDULERS:
        raise ValueError(f"sweep.search.scheduler: expected one of {list(SCHEDULERS)}, got {_show(s.scheduler)}")
    if not (isinstance(s.grace_period, int) and not isinstance(s.grace_period, bool) and s.grace_period >= 1):
        raise ValueError(f"sweep.search.grace_period: expected a positive number of epochs, got {_show(s.grace_period)}")
    rf = s.reduction_factor
    if not (isinstance(rf, (int, float)) and not isinstance(rf, bool) and math.isfinite(rf) and rf > 1):
        raise ValueError(f"sweep.search.reduction_factor: expected a number > 1, got {_show(rf)}")
    s.reduction_factor = float(rf)
    return s


def _check_axis_key(key: str) -> None:
    if key == "seed" or key in WHOLE_SECTIONS:
        return
    section, dot, name = key.partition(".")
    if dot and section in SECTIONS and "." not in name and name and (name in SECTIONS[section] or section in OPTIONS_FIELD):
        return
    raise ValueError(f"sweep.{key}: unknown run-config key{did_you_mean(key, AXIS_KEYS + list(SWEEP_SETTINGS))}")


def _axis(key: str, value: Any, mode: str) -> Axis:
    _check_axis_key(key)
    if isinstance(value, list):
        if not value:
            raise ValueError(f"sweep.{key}: the list of values is empty")
        seen = set()
        for i, v in enumerate(value):
            if key in WHOLE_SECTIONS:
                _check_section_entry(key, v, f"sweep.{key}[{i}]")
            tag = json.dumps(v, sort_keys=True)
            if tag in seen:
                raise ValueError(f"sweep.{key}: value {v!r} is listed twice")
            seen.add(tag)
        return Axis(key, tuple(value))
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in DISTRIBUTIONS:
            names = list(value)
            hint = did_you_mean(names[0], DISTRIBUTIONS) if len(names) == 1 else f"; use one of {list(DISTRIBUTIONS)}"
            raise ValueError(f"sweep.{key}: a distribution table has one key, the distribution's name; got {names}{hint}")
        if mode == "grid":
            raise ValueError(f"sweep.{key}: a distribution needs mode = 'random' or 'search'; grid mode takes a list of values")
        if key in WHOLE_SECTIONS:
            raise ValueError(f"sweep.{key}: sample a {key} with {{choice = [...]}} is not supported; list the entries instead")
        dist, args = next(iter(value.items()))
        return Axis(key, (), dist, _check_distribution(key, dist, args))
    raise ValueError(f"sweep.{key}: expected a list of values or a distribution table such as "
                     f"{{loguniform = [1e-4, 1e-2]}}, got {_show(value)}")


def _check_distribution(key: str, dist: str, args: Any) -> tuple:
    what = f"sweep.{key}.{dist}"
    if dist == "choice":
        if not (isinstance(args, list) and args):
            raise ValueError(f"{what}: expected {DISTRIBUTIONS[dist]}, got {_show(args)}")
        return tuple(args)
    ints = dist == "randint"
    ok = isinstance(args, list) and len(args) == 2 and all(
        isinstance(a, int if ints else (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in args)
    if ok:
        lo, hi = args
        ok = (lo <= hi) if ints else (lo < hi and (dist != "loguniform" or lo > 0))
    if not ok:
        raise ValueError(f"{what}: expected {DISTRIBUTIONS[dist]} with low {'<=' if ints else '<'} high, got {_show(args)}")
    return tuple(args)


def _check_section_entry(section: str, entry: Any, where: str) -> None:
    """An entry of a whole-section axis: a name, or ``{name, options}`` (``rule``: also ``mode``)."""
    if isinstance(entry, str):
        return
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a {section} name or a table {{name = ..., options = {{...}}}}, got {_show(entry)}")
    allowed = ["name", "options"] + (["mode"] if section == "rule" else [])
    for k in entry:
        if k not in allowed:
            raise ValueError(f"{where}.{k}: unknown key{did_you_mean(k, allowed)}")
    if not isinstance(entry.get("name"), str):
        raise ValueError(f"{where}.name: expected the {section}'s name, got {_show(entry.get('name'))}")
    if not isinstance(entry.get("options", {}), dict):
        raise ValueError(f"{where}.options: expected a table of options, got {_show(entry['options'])}")


def _check_axis_combination(axes: list[Axis]) -> None:
    keys = [a.key for a in axes]
    for section in WHOLE_SECTIONS:
        if section in keys and f"{section}.name" in keys:
            raise ValueError(f"sweep.{section}.name: the {section!r} axis already sets the {section}'s name; keep one of the two")
    rule = next((a for a in axes if a.key == "rule"), None)
    if rule is not None and "trainer.mode" in keys and any(isinstance(v, dict) and "mode" in v for v in rule.values):
        raise ValueError("sweep.trainer.mode: the 'rule' axis sets the mode of some rules; set modes in one place")


# ---------------------------------------------------------------------------- trials
def expand_trials(spec: SweepSpec) -> list[Trial]:
    """Every trial of the sweep, in a stable order, each validated (invalid ones carry their error)."""
    grid = [a for a in spec.axes if not a.sampled]
    sampled = [a for a in spec.axes if a.sampled]
    rng = np.random.default_rng(spec.sample_seed)
    draws = [{a.key: _draw(a, rng) for a in sampled} for _ in range(spec.samples if sampled else 1)]
    settings = []
    for draw in draws:
        for combo in itertools.product(*(a.values for a in grid)):
            values = {**dict(zip((a.key for a in grid), combo)), **draw}
            settings.append({a.key: values[a.key] for a in spec.axes})  # file order
    shorts = short_names([a.key for a in spec.axes])
    width = max(3, len(str(len(settings) - 1)))
    trials = []
    for i, setting in enumerate(settings):
        parts = [f"{shorts[k]}={value_label(v)}" for k, v in setting.items()]
        name = _safe_name(f"{i:0{width}d}" + "".join("_" + p for p in parts))
        try:
            cfg, err = config_from_dict(apply_setting(spec.base, setting)), None
        except ValueError as e:
            cfg, err = None, str(e)
        trials.append(Trial(i, name, setting, cfg, err))
    return trials


def _draw(axis: Axis, rng: np.random.Generator) -> Any:
    lo_hi = axis.bounds
    if axis.distribution == "choice":
        return copy.deepcopy(lo_hi[int(rng.integers(len(lo_hi)))])
    if axis.distribution == "randint":
        return int(rng.integers(lo_hi[0], lo_hi[1] + 1))
    if axis.distribution == "uniform":
        x = rng.uniform(lo_hi[0], lo_hi[1])
    else:  # loguniform
        x = math.exp(rng.uniform(math.log(lo_hi[0]), math.log(lo_hi[1])))
    return float(f"{x:.6g}")  # a readable config.toml; the draw is still seeded and stable


def apply_setting(base: dict, setting: dict) -> dict:
    """The sectioned run-config dictionary of ``base`` with the axes' values put in."""
    d = copy.deepcopy(base)
    for key in sorted(setting, key=lambda k: k not in WHOLE_SECTIONS):  # whole sections first, then single keys
        value = copy.deepcopy(setting[key])
        if key == "seed":
            d["seed"] = value
        elif key in WHOLE_SECTIONS:
            entry = {"name": value} if isinstance(value, str) else value
            if key == "encoder" and entry["name"] == "none":
                d.pop("encoder", None)
                continue
            d[key] = {"name": entry["name"], **entry.get("options", {})}
            if "mode" in entry:
                d.setdefault("trainer", {})["mode"] = entry["mode"]
        else:
            section, _, name = key.partition(".")
            d.setdefault(section, {})[name] = value
    return d


def short_names(keys: list[str]) -> dict[str, str]:
    """Axis key -> the short name used in trial names (``trainer.lr -> lr``; the full key where two collide)."""
    short = {k: ("seed" if k == "seed" else k.split(".")[0] if k.endswith(".name") else k.split(".")[-1]) for k in keys}
    counts: dict[str, int] = {}
    for s in short.values():
        counts[s] = counts.get(s, 0) + 1
    return {k: (s if counts[s] == 1 else k) for k, s in short.items()}


def value_label(v: Any) -> str:
    """A short readable label of an axis value (``0.005``, ``eprop-random-online``, ``tbptt-k10``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        parts = [str(v.get("name"))]
        if "mode" in v:
            parts.append(str(v["mode"]))
        parts += [f"{k}{value_label(x)}" for k, x in v.get("options", {}).items()]
        return "-".join(parts)
    if isinstance(v, list):
        return "-".join(value_label(x) for x in v)
    return str(v)


def setting_label(setting: dict, keys: list[str] | None = None) -> str:
    """``rule=bptt lr=0.005``: the setting without its seed (what the seeds of one setting share)."""
    shorts = short_names(list(setting))
    parts = [f"{shorts[k]}={value_label(v)}" for k, v in setting.items() if k != "seed" and (keys is None or k in keys)]
    return " ".join(parts) or "(base)"


_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def _safe_name(name: str, limit: int = 100) -> str:
    name = _UNSAFE.sub("-", name).strip("-.")
    return name[:limit].rstrip("-.")


__all__ = [
    "AXIS_KEYS", "Axis", "DISTRIBUTIONS", "MODES", "SEARCH_METRICS", "SearchSettings", "SweepSpec", "Trial",
    "apply_setting", "expand_trials", "load_sweep", "loads_sweep", "parse_sweep", "setting_label", "short_names", "value_label",
]
