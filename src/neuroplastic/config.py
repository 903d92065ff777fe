"""Run configurations: the :class:`RunConfig` dataclass and its TOML form.

A run is described by a TOML file with a top-level ``seed`` and five sections::

    seed = 0

    [data]            # name + the loader's options
    name = "mnist1d"

    [encoder]         # optional: name + the encoder's options (omit for raw input)
    name = "tc"
    threshold = 0.05

    [network]
    model = "rsnn-alif"
    hidden = 256
    surrogate = "triangle"
    tau_mem = 20.0    # membrane and readout time constants, in the data's time unit
    tau_out = 20.0

    [rule]            # name + the rule's options
    name = "eprop-random"

    [trainer]
    mode = "offline"
    loss = "ce_mean"
    optimizer = "adam"
    lr = 0.005
    ...

:func:`load_config` reads and validates such a file, :func:`config_to_toml` writes one.
Validation errors are ``ValueError`` s that start with the dotted key
(``trainer.lr: expected a positive number, got -1``); unknown keys are rejected by name.
Errors about the ``name`` of ``[data]``, ``[encoder]`` and ``[rule]`` start with the
section (``rule: unknown rule 'nope'; ...``), as the registries word them.

The dataclass itself stays flat (``cfg.rule``, ``cfg.lr``), which is also the layout of a
run folder's ``config.json``.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass
class RunConfig:
    """Everything that defines a training run (defaults: the MNIST-1D BPTT main job).

    ``checkpoint_every`` saves a checkpoint every that many epochs (0: never), which is what
    ``neuroplastic train --resume`` continues from.
    """

    data: str = "mnist1d"
    model: str = "rsnn-alif"
    hidden: int = 256
    surrogate: str = "triangle"
    tau_mem: float = 20.0
    tau_out: float = 20.0
    rule: str = "bptt"
    mode: str = "offline"
    loss: str = "ce_mean"
    optimizer: str = "adam"
    lr: float = 5e-3
    schedule: str = "cosine"
    epochs: int = 60
    batch_size: int = 64
    backend: str = "jax"
    device: str | None = None
    dtype: str = "float32"
    compile: bool = False
    seed: int = 0
    reg_rate_hz: float | None = None
    reg_strength: float = 1.0
    data_options: dict = field(default_factory=dict)
    rule_options: dict = field(default_factory=dict)
    encoder: str | None = None
    encoder_options: dict = field(default_factory=dict)
    checkpoint_every: int = 1

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field by its dotted TOML key; normalises numbers."""
        _validate(self)

    def to_dict(self) -> dict:
        """The flat dictionary written to ``config.json``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        """A validated config from the flat dictionary of :meth:`to_dict` (``config.json``)."""
        if not isinstance(d, dict):
            raise ValueError(f"config: expected a table of settings, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        for k in d:
            if k not in names:
                raise ValueError(f"{k}: unknown key{did_you_mean(k, names)}")
        cfg = cls(**d)
        cfg.validate()
        return cfg


# ---------------------------------------------------------------------------- sections
# section -> {TOML key: RunConfig field}; sections with an "options" field take any other key
SECTIONS: dict[str, dict[str, str]] = {
    "data": {"name": "data"},
    "encoder": {"name": "encoder"},
    "network": {"model": "model", "hidden": "hidden", "surrogate": "surrogate", "tau_mem": "tau_mem", "tau_out": "tau_out"},
    "rule": {"name": "rule"},
    "trainer": {
        "mode": "mode", "loss": "loss", "optimizer": "optimizer", "lr": "lr", "schedule": "schedule",
        "epochs": "epochs", "batch_size": "batch_size", "backend": "backend", "device": "device", "dtype": "dtype",
        "compile": "compile", "reg_rate_hz": "reg_rate_hz", "reg_strength": "reg_strength", "checkpoint_every": "checkpoint_every",
    },
}
OPTIONS_FIELD = {"data": "data_options", "encoder": "encoder_options", "rule": "rule_options"}
TOP_LEVEL = ("seed",)

#: the dotted TOML key of every flat field (``lr -> trainer.lr``)
KEY_OF: dict[str, str] = {"seed": "seed"}
for _sec, _keys in SECTIONS.items():
    for _k, _f in _keys.items():
        KEY_OF[_f] = f"{_sec}.{_k}"


def config_from_dict(d: dict, source: str = "config") -> RunConfig:
    """A validated :class:`RunConfig` from the sectioned dictionary of a TOML file."""
    if not isinstance(d, dict):
        raise ValueError(f"{source}: expected a table, got {type(d).__name__}")
    values: dict[str, Any] = {}
    for key, val in d.items():
        if key in TOP_LEVEL:
            values[key] = val
        elif key in SECTIONS:
            if not isinstance(val, dict):
                raise ValueError(f"{key}: expected a [{key}] section, got {_show(val)}")
            values.update(_read_section(key, val))
        else:
            raise ValueError(f"{key}: unknown key{did_you_mean(key, [*TOP_LEVEL, *SECTIONS])}")
    if "encoder_options" in values and "encoder" not in values:
        raise ValueError("encoder.name: the [encoder] section has options but no name")
    cfg = RunConfig(**values)
    cfg.validate()
    return cfg


def _read_section(section: str, table: dict) -> dict:
    keys = SECTIONS[section]
    out: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for k, v in table.items():
        if k in keys:
            out[keys[k]] = v
        elif section in OPTIONS_FIELD:
            options[k] = v
        else:
            raise ValueError(f"{section}.{k}: unknown key{did_you_mean(k, keys)}")
    if options:
        out[OPTIONS_FIELD[section]] = options
    return out


def config_to_dict(cfg: RunConfig) -> dict:
    """The sectioned dictionary of ``cfg`` (``None`` values and an absent encoder left out)."""
    out: dict[str, Any] = {"seed": cfg.seed}
    for section, keys in SECTIONS.items():
        table = {k: getattr(cfg, f) for k, f in keys.items() if getattr(cfg, f) is not None}
        if section in OPTIONS_FIELD:
            table.update(getattr(cfg, OPTIONS_FIELD[section]))
        if section == "encoder" and cfg.encoder is None:
            continue
        out[section] = table
    return out


def read_toml(path: str | Path) -> dict:
    """The table of the TOML file ``path``, or a ``ValueError`` naming the file (unreadable, not TOML)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"config: cannot read {p} ({getattr(err, 'strerror', None) or err})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config: {p} is not valid TOML ({err})") from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML run configuration."""
    return config_from_dict(read_toml(path))


def loads_config(text: str) -> RunConfig:
    """:func:`load_config` for TOML text."""
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"config: not valid TOML ({err})") from None
    return config_from_dict(d)


def config_to_toml(cfg: RunConfig) -> str:
    """``cfg`` as TOML text that :func:`load_config` reads back to an equal config."""
    d = config_to_dict(cfg)
    lines = ["# neuroplastic run configuration", f"seed = {_toml_value(d.pop('seed'), 'seed')}"]
    for section, table in d.items():
        lines += ["", f"[{section}]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v, f'{section}.{k}')}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def parse_option(text: str, what: str) -> tuple[str, Any]:
    """``"key=value"`` from the command line, the value read as TOML (``k=10`` is an int, ``f=random`` a string)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"{what}: expected KEY=VALUE, got {text!r}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word is a string
    return key, value


# ---------------------------------------------------------------------------- TOML writing
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _toml_key(k: Any) -> str:
    k = str(k)
    return k if _BARE.match(k) else json.dumps(k)


def _toml_value(v: Any, key: str) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        r = repr(v)
        return r if any(c in r for c in ".en") else r + ".0"
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x, f"{key}[{i}]") for i, x in enumerate(v)) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x, f'{key}.{k}')}" for k, x in v.items()) + "}"
    raise ValueError(f"{key}: cannot write {_show(v)} to TOML")


# ---------------------------------------------------------------------------- validation
def did_you_mean(k: str, names: Any) -> str:
    """``"; did you mean 'x'?"`` for the name in ``names`` closest to ``k`` (``""`` when none is close):
    the one suggestion used by config keys, rule names, loader options and CLI values."""
    names = [str(n) for n in names]
    close = difflib.get_close_matches(str(k), names, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known: {', '.join(sorted(names))}"


def _show(v: Any) -> str:
    if isinstance(v, (int, float, str)) and not isinstance(v, bool):
        return repr(v)
    return f"{v!r} ({type(v).__name__})"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    """A finite int or float that converts to a float (TOML integers can be arbitrarily long)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an int beyond the float range
        return False


def _choice(cfg: RunConfig, name: str, choices: Any, what: str, key: str | None = None) -> None:
    v = getattr(cfg, name)
    key = key or KEY_OF[name]
    if not isinstance(v, str):
        raise ValueError(f"{key}: expected a string, got {_show(v)}")
    if v not in choices:
        raise ValueError(f"{key}: unknown {what} {v!r}; choose one of {sorted(choices)}")


def _check_options(section: str, options: Any, target: Any, skip: int = 0) -> None:
    """Reject options ``target`` (a function or class) does not accept, by ``section.key``."""
    if not isinstance(options, dict):
        raise ValueError(f"{section}: options must be a table, got {_show(options)}")
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return
    params = list(sig.parameters.values())[skip:]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for k in options:
        if k == "name" or k not in accepted:
            raise ValueError(f"{section}.{k}: unknown option{did_you_mean(k, accepted or ['(none)'])}")


def _validate(cfg: RunConfig) -> None:
    from .backend import BACKENDS
    from .data import LOADERS
    from .losses import LOSSES
    from .models import MODELS
    from .rules import MODES, RULES
    from .surrogates import SURROGATES
    from .train.optimizers import OPTIMIZERS, SCHEDULES

    # seed
    if not (_is_int(cfg.seed) and cfg.seed >= 0):
        raise ValueError(f"seed: expected a non-negative integer, got {_show(cfg.seed)}")
    # [data]
    if not isinstance(cfg.data, str):
        raise ValueError(f"data.name: expected a string, got {_show(cfg.data)}")
    if cfg.data not in LOADERS:
        raise ValueError(f"data: unknown dataset {cfg.data!r}; choose one of {sorted(LOADERS)}")
    module, fn = LOADERS[cfg.data]
    import importlib

    _check_options("data", cfg.data_options, getattr(importlib.import_module(f"neuroplastic.data.{module}"), fn))
    # [encoder]
    if cfg.encoder is not None:
        from .encoders import ENCODERS

        if not isinstance(cfg.encoder, str):
            raise ValueError(f"encoder.name: expected a string, got {_show(cfg.encoder)}")
        if cfg.encoder not in ENCODERS:
            raise ValueError(f"encoder: unknown encoder {cfg.encoder!r}; choose one of {sorted(ENCODERS)}")
        _check_options("encoder", cfg.encoder_options, ENCODERS[cfg.encoder], skip=1)
    elif cfg.encoder_options:
        raise ValueError("encoder.name: encoder options are given but no encoder")
    # [network]
    _choice(cfg, "model", MODELS, "model")
    if not (_is_int(cfg.hidden) and cfg.hidden > 0):
        raise ValueError(f"network.hidden: expected a positive integer, got {_show(cfg.hidden)}")
    _choice(cfg, "surrogate", SURROGATES, "surrogate")
    for name in ("tau_mem", "tau_out"):
        value = getattr(cfg, name)
        if not (_is_number(value) and value > 0):
            raise ValueError(f"network.{name}: expected a positive time constant (in the data's time steps), got {_show(value)}")
        setattr(cfg, name, float(value))
    # [rule]
    if not isinstance(cfg.rule, str):
        raise ValueError(f"rule.name: expected a string, got {_show(cfg.rule)}")
    if cfg.rule not in RULES:
        raise ValueError(f"rule: unknown rule {cfg.rule!r}{did_you_mean(cfg.rule, RULES)}")
    rmod, rcls, _ = RULES[cfg.rule]
    _check_options("rule", cfg.rule_options, getattr(importlib.import_module(f"neuroplastic.rules.{rmod}"), rcls))
    # [trainer]
    _choice(cfg, "mode", MODES, "training mode")
    _choice(cfg, "loss", LOSSES, "loss")
    _choice(cfg, "optimizer", OPTIMIZERS, "optimizer")
    if not (_is_number(cfg.lr) and cfg.lr > 0):
        raise ValueError(f"trainer.lr: expected a positive number, got {_show(cfg.lr)}")
    cfg.lr = float(cfg.lr)
    _choice(cfg, "schedule", SCHEDULES, "schedule")
    if not (_is_int(cfg.epochs) and cfg.epochs >= 0):
        raise ValueError(f"trainer.epochs: expected a non-negative integer, got {_show(cfg.epochs)}")
    if not (_is_int(cfg.batch_size) and cfg.batch_size > 0):
        raise ValueError(f"trainer.batch_size: expected a positive integer, got {_show(cfg.batch_size)}")
    _choice(cfg, "backend", BACKENDS, "backend")
    if cfg.device is not None and not (isinstance(cfg.device, str) and cfg.device):
        raise ValueError(f"trainer.device: expected a device name such as 'cpu' or 'cuda:0', got {_show(cfg.device)}")
    _choice(cfg, "dtype", ("float32", "float64"), "dtype")
    if not isinstance(cfg.compile, bool):
        raise ValueError(f"trainer.compile: expected true or false, got {_show(cfg.compile)}")
    if cfg.reg_rate_hz is not None:
        if not (_is_number(cfg.reg_rate_hz) and cfg.reg_rate_hz >= 0):
            raise ValueError(f"trainer.reg_rate_hz: expected a non-negative rate in Hz, got {_show(cfg.reg_rate_hz)}")
        cfg.reg_rate_hz = float(cfg.reg_rate_hz)
    if not (_is_number(cfg.reg_strength) and cfg.reg_strength >= 0):
        raise ValueError(f"trainer.reg_strength: expected a non-negative number, got {_show(cfg.reg_strength)}")
    cfg.reg_strength = float(cfg.reg_strength)
    if not (_is_int(cfg.checkpoint_every) and cfg.checkpoint_every >= 0):
        raise ValueError(f"trainer.checkpoint_every: expected a non-negative integer (0: no checkpoints), got {_show(cfg.checkpoint_every)}")
    # options must be writable to TOML and JSON
    for section in OPTIONS_FIELD:
        for k, v in getattr(cfg, OPTIONS_FIELD[section]).items():
            _toml_value(v, f"{section}.{k}")


__all__ = [
    "KEY_OF", "RunConfig", "SECTIONS", "config_from_dict", "config_to_dict", "config_to_toml", "load_config",
    "loads_config", "parse_option",
]
