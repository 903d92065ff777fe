"""Training checkpoints: safetensors for the arrays, a JSON sidecar for everything else.

A checkpoint directory holds::

    epoch-000003.safetensors   params, optimizer state and rule state arrays
    checkpoint.json            the sidecar: epoch, seed, file name, sha256 and size of the
                               tensor file, the non-array parts of the states, user meta

Writes are atomic: each file is written to a temporary file in the same directory, flushed
and fsync'ed, then moved into place with ``os.replace``.  The tensor file has a new name
for every epoch and the sidecar is written last, so the sidecar is the commit point: a
process killed at any moment leaves either the previous checkpoint or the new one, never
a mix.  Loading checks the size and sha256 of the tensor file and the sidecar's own
checksum (sha256 of its canonical JSON), and raises a ``ValueError`` naming the file for a
corrupted or truncated checkpoint: a changed byte is never loaded as a different value.  Nothing is ever pickled: arrays go
through ``safetensors`` (no code execution on load) and the rest through ``json``.

What is stored
--------------
* ``params``: a pytree of backend arrays, under ``params.<dotted path>``;
* the optimizer state: an optax pytree (under ``opt.<path>``), a ``torch.optim``
  optimizer (its ``state_dict()`` tensors under ``opt.state.<i>.<name>``; ``param_groups``,
  non-tensor entries and the ``step_count`` attribute in the sidecar), or ``{}`` (naive);
* the rule state: a pytree whose leaves are arrays (``rule.<path>``), Python scalars and
  strings, or numpy ``SeedSequence`` keys (the torch backend's random keys), which go to
  the sidecar;
* ``epoch`` (completed epochs) and ``seed``: the trainer's shuffling generator is
  ``default_rng([seed, epoch])``, so these two are its whole state;
* ``meta``: any JSON-serialisable dictionary.

Loading needs templates with the run's structure, shapes and dtypes (fresh params,
``optimizer.init(params)``, ``rule.init(...)``), and returns the stored values in that
structure with the templates' array types and devices.  On torch the template parameter
tensors are overwritten in place and the template optimizer loads the stored state, since
a ``torch.optim`` optimizer holds references to the parameter tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import is_array, ops_for
from ..tree import tree_leaves, tree_map, tree_paths
from .guard import check_finite

SIDECAR = "checkpoint.json"
FORMAT = "neuroplastic-checkpoint"
VERSION = 2  # 2: the sidecar carries a checksum of its own content


@dataclass
class Checkpoint:
    """A training state: what :func:`save_checkpoint` writes and :func:`load_checkpoint` returns."""

    params: Any
    opt_state: Any = None
    rule_state: Any = None
    epoch: int = 0
    seed: int = 0
    meta: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------- files
def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file in the same folder, fsync, ``os.replace``.

    On any failure the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _tensor_name(epoch: int, sha256: str) -> str:
    # the content hash in the name: a new checkpoint never overwrites the committed tensor file
    return f"epoch-{epoch:06d}-{sha256[:16]}.safetensors"


def _remove_stale(directory: Path, keep: str | None) -> None:
    """Tensor files the sidecar does not name and temporary files of killed writers."""
    for p in directory.iterdir():
        stale_tensor = p.name.startswith("epoch-") and p.name.endswith(".safetensors") and p.name != keep
        if stale_tensor or (p.name.startswith(".") and p.name.endswith(".tmp")):
            p.unlink(missing_ok=True)


def clear_checkpoints(directory: str | Path) -> None:
    """Remove a checkpoint (sidecar first, so a kill half-way leaves no loadable leftovers)."""
    d = Path(directory)
    if not d.is_dir():
        return
    (d / SIDECAR).unlink(missing_ok=True)
    _remove_stale(d, keep=None)


# ---------------------------------------------------------------------------- leaves
def _to_numpy(x: Any, key: str) -> np.ndarray:
    try:
        arr = np.asarray(ops_for(x).to_numpy(x))
    except (TypeError, RuntimeError) as err:
        raise ValueError(f"checkpoint: cannot store {key} ({type(x).__name__}: {err})") from None
    if arr.dtype == object:
        raise ValueError(f"checkpoint: cannot store {key}, an array of Python objects")
    # not np.ascontiguousarray, which turns a 0-d array (optax's step count) into shape (1,)
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def _json_leaf(x: Any, key: str) -> Any:
    """A non-array leaf as JSON, or a ``ValueError`` naming it."""
    if x is None or isinstance(x, (bool, int, float, str)):
        return {"value": x}
    if isinstance(x, np.generic):
        return {"numpy": x.dtype.str, "value": x.item()}
    if isinstance(x, np.random.SeedSequence):
        return {"seed_sequence": {"entropy": x.entropy, "spawn_key": list(x.spawn_key), "pool_size": x.pool_size,
                                  "n_children_spawned": x.n_children_spawned}}
    raise ValueError(f"checkpoint: cannot store {key} of type {type(x).__name__} (arrays, numbers, strings and SeedSequence keys only)")


def _from_json_leaf(d: Any, key: str) -> Any:
    try:
        if "seed_sequence" in d:
            s = d["seed_sequence"]
            return np.random.SeedSequence(s["entropy"], spawn_key=tuple(s["spawn_key"]), pool_size=s["pool_size"],
                                          n_children_spawned=s["n_children_spawned"])
        if "numpy" in d:
            return np.dtype(d["numpy"]).type(d["value"])
        if "value" in d:
            return d["value"]
    except (TypeError, KeyError, ValueError, OverflowError):
        pass
    raise ValueError(f"checkpoint: unreadable entry for {key} in the sidecar")


def _flatten(tree: Any, prefix: str, tensors: dict, scalars: dict) -> None:
    """Array leaves into ``tensors``, the others into ``scalars``, keyed ``prefix.path``."""
    for path, leaf in zip(tree_paths(tree), tree_leaves(tree)):
        key = f"{prefix}.{path}" if path else prefix
        if key in tensors or key in scalars:
            raise ValueError(f"checkpoint: two leaves share the name {key!r} (a dict key with a dot?)")
        if is_array(leaf):
            tensors[key] = _to_numpy(leaf, key)
        else:
            scalars[key] = _json_leaf(leaf, key)


def _restore_array(stored: np.ndarray, like: Any, key: str) -> Any:
    """``stored`` as an array of the type, dtype and device of the template leaf ``like``."""
    want = _to_numpy(like, key)
    if stored.dtype != want.dtype:
        raise ValueError(f"checkpoint: {key} has dtype {stored.dtype} but the run expects {want.dtype}")
    if stored.shape != want.shape:
        raise ValueError(f"checkpoint: {key} has shape {stored.shape} but the run expects {want.shape}")
    return ops_for(like).array_like(stored, like)


def _unflatten(template: Any, prefix: str, tensors: dict, scalars: dict, used: set) -> Any:
    """``template``'s structure filled from ``tensors``/``scalars`` (missing keys raise by name)."""
    paths = iter(tree_paths(template))

    def fill(like: Any) -> Any:
        path = next(paths)
        key = f"{prefix}.{path}" if path else prefix
        used.add(key)
        if is_array(like):
            if key not in tensors:
                raise ValueError(f"checkpoint: {key} is missing (the checkpoint was written for another run layout)")
            return _restore_array(tensors[key], like, key)
        if key not in scalars:
            raise ValueError(f"checkpoint: {key} is missing (the checkpoint was written for another run layout)")
        return _from_json_leaf(scalars[key], key)

    return tree_map(fill, template)


# ---------------------------------------------------------------------------- optimizer
def _is_optimizer_object(state: Any) -> bool:
    """An optimizer whose state is an object holding the parameters (``torch.optim``), not a pytree."""
    return hasattr(state, "state_dict") and hasattr(state, "param_groups")


def _params_backend(params: Any) -> Any:
    leaves = tree_leaves(params)
    if not leaves:
        raise ValueError("checkpoint: params has no arrays")
    return ops_for(leaves[0])


# ---------------------------------------------------------------------------- public
def save_checkpoint(directory: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` into ``directory`` atomically; returns the sidecar path.

    Replaces the previous checkpoint of the directory only once the new one is complete.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if not (isinstance(ckpt.epoch, (int, np.integer)) and ckpt.epoch >= 0):
        raise ValueError(f"epoch: expected a non-negative integer, got {ckpt.epoch!r}")
    check_finite(ckpt.params, f"checkpoint: not writing epoch {ckpt.epoch} to {d}; its parameters", lambda x: np.asarray(ops_for(x).to_numpy(x)))
    tensors: dict[str, np.ndarray] = {}
    scalars: dict[str, Any] = {}
    _flatten(ckpt.params, "params", tensors, scalars)
    if _is_optimizer_object(ckpt.opt_state):
        arrays, optimizer = _params_backend(ckpt.params).save_optimizer_object(ckpt.opt_state, _json_leaf)
        tensors.update({k: _to_numpy(v, k) for k, v in arrays.items()})
    else:
        _flatten(ckpt.opt_state, "opt", tensors, scalars)
        optimizer = {"kind": "pytree"}
    _flatten(ckpt.rule_state, "rule", tensors, scalars)
    from safetensors.numpy import save

    blob = save(tensors, metadata={"format": FORMAT})
    sha = hashlib.sha256(blob).hexdigest()
    name = _tensor_name(int(ckpt.epoch), sha)
    sidecar = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": int(ckpt.epoch),
        "seed": ckpt.seed,
        "rng": {"shuffle": "numpy default_rng([seed, epoch]) for each epoch", "next_epoch": int(ckpt.epoch)},
        "tensors": {"file": name, "sha256": sha, "bytes": len(blob)},
        "optimizer": optimizer,
        "scalars": scalars,
        "meta": ckpt.meta,
    }
    try:
        text = json.dumps(sidecar, indent=1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"checkpoint: meta is not JSON-serialisable ({err})") from None
    sidecar = json.loads(text)  # the checksum covers what a reader will see (dict keys as strings)
    sidecar["checksum"] = _sidecar_checksum(sidecar)
    text = json.dumps(sidecar, indent=1)
    atomic_write(d / name, blob)
    try:
        atomic_write(d / SIDECAR, text.encode())  # the commit point
    except BaseException:
        # An exception can arrive after the sidecar was replaced (a KeyboardInterrupt, or the
        # SystemExit Ray raises in a task whose driver died, between os.replace and the return):
        # what is on disk now decides, never where the exception came from.
        _drop_unless_named(d, name)
        raise
    _remove_stale(d, keep=name)
    return d / SIDECAR


def _drop_unless_named(d: Path, name: str) -> None:
    """Remove the tensor file ``name`` of a failed save unless the sidecar on disk names it."""
    try:
        named = (read_sidecar(d) or {}).get("tensors", {}).get("file")
    except ValueError:
        named = None
    if named != name:
        (d / name).unlink(missing_ok=True)  # the previous checkpoint stays as it was


def _sidecar_checksum(info: dict) -> str:
    """sha256 of the sidecar's canonical JSON (sorted keys, no spaces), the ``checksum`` entry left out."""
    body = {k: v for k, v in info.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_sidecar(directory: str | Path) -> dict | None:
    """The sidecar of the checkpoint in ``directory``, or ``None`` when there is none."""
    path = Path(directory) / SIDECAR
    if not path.exists():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"checkpoint: {path} is corrupted (not valid JSON: {err})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise ValueError(f"checkpoint: {path} is not a neuroplastic checkpoint sidecar")
    if info.get("version") == 1:
        raise ValueError(f"checkpoint: {path} has format version 1, written before sidecars carried a checksum; "
                         f"this neuroplastic reads version {VERSION}: start the run again")
    if info.get("version") != VERSION:
        raise ValueError(f"checkpoint: {path} has format version {info.get('version')!r}; this neuroplastic reads {VERSION}")
    if info.get("checksum") != _sidecar_checksum(info):
        raise ValueError(f"checkpoint: {path} is corrupted (checksum mismatch: the sidecar changed after it was written)")
    for k in ("epoch", "seed", "tensors", "optimizer", "scalars", "meta"):
        if k not in info:
            raise ValueError(f"checkpoint: {path} is corrupted (no {k!r} entry)")
    epoch = info["epoch"]
    if not (isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0):
        raise ValueError(f"checkpoint: {path} is corrupted (epoch {epoch!r} is not a non-negative integer)")
    for k in ("optimizer", "scalars", "meta"):
        if not isinstance(info[k], dict):
            raise ValueError(f"checkpoint: {path} is corrupted (bad {k!r} entry)")
    t = info["tensors"]
    if not (isinstance(t, dict) and isinstance(t.get("file"), str) and isinstance(t.get("sha256"), str) and isinstance(t.get("bytes"), int)):
        raise ValueError(f"checkpoint: {path} is corrupted (bad 'tensors' entry)")
    if "/" in t["file"] or "\\" in t["file"] or t["file"].startswith("."):
        raise ValueError(f"checkpoint: {path} is corrupted (bad tensor file name {t['file']!r})")
    return info


def load_checkpoint(directory: str | Path, template: Checkpoint) -> Checkpoint:
    """The checkpoint in ``directory``, restored into ``template``'s structure, dtypes and devices.

    ``template.opt_state`` is ``optimizer.init(template.params)`` and ``template.rule_state``
    the rule's fresh state.  Raises ``ValueError`` when there is no checkpoint, when the
    tensor file is truncated or corrupted, or when the stored state does not fit.
    """
    d = Path(directory)
    info = read_sidecar(d)
    if info is None:
        raise ValueError(f"checkpoint: no {SIDECAR} in {d}")
    meta = info["tensors"]
    path = d / meta["file"]
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"checkpoint: {path} is missing (named by {d / SIDECAR})") from None
    if len(blob) != meta["bytes"]:
        raise ValueError(f"checkpoint: {path} is truncated or corrupted ({len(blob)} bytes, expected {meta['bytes']})")
    if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        raise ValueError(f"checkpoint: {path} is corrupted (sha256 mismatch)")
    from safetensors.numpy import load

    try:
        tensors = load(blob)
    except Exception as err:  # safetensors raises its own error type
        raise ValueError(f"checkpoint: {path} is corrupted ({err})") from None
    scalars = info["scalars"]
    used: set = set()
    params = _unflatten(template.params, "params", tensors, scalars, used)
    B = _params_backend(template.params)
    # a torch.optim optimizer holds the template tensors: they are filled in place
    params = B.tree_assign(template.params, params)
    if _is_optimizer_object(template.opt_state):
        try:
            opt_state = B.load_optimizer_object(template.opt_state, info["optimizer"], tensors, used, _from_json_leaf)
        except (KeyError, TypeError, AttributeError) as err:  # a hand-edited sidecar that still has a valid checksum
            raise ValueError(f"checkpoint: {d / SIDECAR} is corrupted (bad optimizer entry: {type(err).__name__} {err})") from None
    else:
        if info["optimizer"].get("kind") != "pytree":
            raise ValueError(f"checkpoint: holds a {info['optimizer'].get('kind')!r} optimizer state but the run's is a pytree")
        opt_state = _unflatten(template.opt_state, "opt", tensors, scalars, used)
    rule_state = _unflatten(template.rule_state, "rule", tensors, scalars, used)
    extra = sorted((set(tensors) | set(scalars)) - used)
    if extra:
        raise ValueError(f"checkpoint: {extra[0]} is stored but the run has no such state (written for another run layout)")
    return Checkpoint(params, opt_state, rule_state, epoch=int(info["epoch"]), seed=info["seed"], meta=info["meta"])


__all__ = ["Checkpoint", "SIDECAR", "atomic_write", "clear_checkpoints", "load_checkpoint", "read_sidecar", "save_checkpoint"]
