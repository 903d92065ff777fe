"""Property-based tests of the checkpoint reader (hypothesis): a real checkpoint whose tensor file
or JSON sidecar has bytes flipped, cut off or appended either loads the very same values or
raises a ValueError that names the checkpoint; never another exception, never other values.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuroplastic.backend import get_backend
from neuroplastic.models import build_model
from neuroplastic.train import Trainer, make_optimizer
from neuroplastic.train.checkpoint import SIDECAR, Checkpoint, load_checkpoint, read_sidecar, save_checkpoint
from neuroplastic.tree import tree_map


def examples(n: int) -> settings:
    """``n`` cases, the same ones on every run and machine (no example database, no deadline)."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fresh_template(backend: str) -> Checkpoint:
    """The state of a small e-prop (random feedback) run with Adam: params, optimizer and rule state."""
    B = get_backend(backend)
    net = build_model("rsnn", 3, 2, hidden=4, dt=1.0)
    tr = Trainer(net, "eprop-random", "ce_mean", make_optimizer("adam", 1e-2, B, schedule="cosine", total_steps=4),
                 backend=B, progress=False)
    params = net.init(0, backend=B)
    return Checkpoint(params, *tr.init_state(params, 5))


def saved_files(ck: Checkpoint, folder: Path) -> dict[str, bytes]:
    """``save_checkpoint``'s files for ``ck``: what the state is, byte for byte."""
    save_checkpoint(folder, ck)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


_GOOD: dict[str, tuple[dict[str, bytes], str]] = {}


def good_checkpoint(backend: str, root: Path) -> tuple[dict[str, bytes], str]:
    """The files of one checkpoint after an optimizer step (so Adam's moments are not zero), and the tensor file's name."""
    if backend not in _GOOD:
        B = get_backend(backend)
        ck = fresh_template(backend)
        net = build_model("rsnn", 3, 2, hidden=4, dt=1.0)
        opt = make_optimizer("adam", 1e-2, B, schedule="cosine", total_steps=4)
        tr = Trainer(net, "eprop-random", "ce_mean", opt, backend=B, progress=False)
        ck.opt_state = tr.optimizer.init(ck.params)
        grads = tree_map(lambda w: B.asarray(np.linspace(-0.02, 0.03, int(np.prod(w.shape))).reshape(tuple(w.shape))), ck.params)
        ck.params, ck.opt_state = tr.optimizer.update(grads, ck.opt_state, ck.params)
        ck.epoch, ck.seed, ck.meta = 2, 5, {"note": "property test", "lr": 0.01}
        folder = Path(tempfile.mkdtemp(dir=root))
        files = saved_files(ck, folder)
        _GOOD[backend] = (files, read_sidecar(folder)["tensors"]["file"])
    return _GOOD[backend]


@st.composite
def corruptions(draw, size: int) -> list[tuple]:
    """One to three edits of a file of ``size`` bytes: flip (xor a non-zero byte), truncate, or append."""
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "flip", "truncate", "append"]))
        if kind == "flip":
            edits.append(("flip", draw(st.integers(0, size - 1)), draw(st.integers(1, 255))))
        elif kind == "truncate":
            edits.append(("truncate", draw(st.integers(0, size - 1))))
        else:
            edits.append(("append", draw(st.binary(min_size=1, max_size=16))))
    return edits


def corrupt(data: bytes, edits: list[tuple]) -> bytes:
    b = bytearray(data)
    for e in edits:
        if e[0] == "flip" and e[1] < len(b):
            b[e[1]] ^= e[2]
        elif e[0] == "truncate":
            del b[e[1]:]
        elif e[0] == "append":
            b += e[1]
    return bytes(b)


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("target", ["tensors", "sidecar"])
@examples(30)
@given(data=st.data())
def test_corrupted_checkpoints_fail_by_name_or_load_the_same_values(backend, target, data, tmp_path_factory):
    root = tmp_path_factory.getbasetemp()
    files, tensor_name = good_checkpoint(backend, root)
    name = tensor_name if target == "tensors" else SIDECAR
    edits = data.draw(corruptions(len(files[name])))
    bad = corrupt(files[name], edits)
    folder = Path(tempfile.mkdtemp(dir=root))
    try:
        for n, content in files.items():
            (folder / n).write_bytes(bad if n == name else content)
        try:
            loaded = load_checkpoint(folder, fresh_template(backend))
        except ValueError as err:
            msg = str(err)
            assert msg.startswith("checkpoint: ") and str(folder) in msg, f"error does not name the checkpoint: {msg!r}"
            return
        # it loaded: then it must be the very same state (the edit changed nothing that matters, e.g. JSON whitespace)
        again = saved_files(loaded, folder / "again")
        assert again[tensor_name] == files[tensor_name], "a corrupted checkpoint loaded other arrays"
        assert json.loads(again[SIDECAR]) == json.loads(files[SIDECAR]), "a corrupted checkpoint loaded other settings"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_changed_number_in_the_sidecar_is_refused(tmp_path):
    # valid JSON with another value (epoch 2 -> 3, an Adam hyper-parameter, the user's meta) must not load
    files, _ = good_checkpoint("torch", tmp_path)
    for old, new in (('"epoch": 2', '"epoch": 3'), ('"lr": 0.01', '"lr": 0.02'), ('"note": "property test"', '"note": "property tesT"')):
        text = files[SIDECAR].decode()
        assert old in text
        folder = tmp_path / f"edit{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        for n, content in files.items():
            (folder / n).write_bytes(text.replace(old, new, 1).encode() if n == SIDECAR else content)
        with pytest.raises(ValueError, match=f"^checkpoint: {folder / SIDECAR} is corrupted \\(checksum mismatch"):
            load_checkpoint(folder, fresh_template("torch"))
