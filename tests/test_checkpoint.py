"""Checkpoints: exact round trip on both backends, corruption errors, atomic writes, and
resume after SIGKILL mid-epoch reaching the uninterrupted run's parameters bit for bit."""

from __future__ import annotations

import json
import os
import pickle
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from neuroplastic.backend import get_backend
from neuroplastic.data import from_arrays
from neuroplastic.models import build_model
from neuroplastic.train import Trainer, make_optimizer
from neuroplastic.train import checkpoint as ckmod
from neuroplastic.train.checkpoint import SIDECAR, Checkpoint, load_checkpoint, read_sidecar, save_checkpoint
from neuroplastic.tree import tree_flatten_dict, tree_map


def separable(seed=0, n=192, T=8):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0.0, 0.3, size=(T, n, 4)).astype(np.float32)
    x[:, :, 0] += 1.5 * (y == 0)
    x[:, :, 1] += 1.5 * (y == 1)
    return from_arrays(x[:, : n * 3 // 4], y[: n * 3 // 4], x[:, n * 3 // 4 :], y[n * 3 // 4 :])


EPOCHS, BATCH, SEED = 3, 48, 1


def make_trainer(backend, rule="eprop-random", optimizer="adam", hidden=8):
    B = get_backend(backend)
    net = build_model("rsnn", 4, 2, hidden=hidden, dt=1.0)
    schedule = "constant" if optimizer == "naive" else "cosine"
    opt = make_optimizer(optimizer, 0.05 if optimizer == "naive" else 1e-2, B, schedule=schedule, total_steps=EPOCHS * 3)
    return net, B, Trainer(net, rule, "ce_mean", opt, backend=B, progress=False)


def template(net, B, tr, seed=SEED):
    params = net.init(0, backend=B)
    return Checkpoint(params, *tr.init_state(params, seed))


def flat_numpy(tree, B):
    return {k: B.to_numpy(v) for k, v in tree_flatten_dict(tree).items()}


def state_arrays(opt_state, rule_state, B) -> dict:
    """Every array of the optimizer and rule state as numpy (torch.optim: its state_dict)."""
    if hasattr(opt_state, "state_dict"):
        sd = opt_state.state_dict()
        out = {f"opt.{i}.{k}": B.to_numpy(v) for i, e in sd["state"].items() for k, v in e.items() if hasattr(v, "shape")}
        out["opt.step_count"] = np.asarray(opt_state.step_count)
    else:
        out = {f"opt.{k}": v for k, v in flat_numpy(opt_state, B).items()}
    return {**out, **{f"rule.{k}": v for k, v in flat_numpy(rule_state, B).items()}}


def assert_bitwise(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("rule, optimizer", [("eprop-random", "adam"), ("bptt", "naive")])
def test_resume_equals_uninterrupted(backend_name, rule, optimizer, tmp_path):
    """Train 3 epochs; or 1 epoch, checkpoint, load into fresh templates, 2 more: same bits.

    (One trainer, so JAX compiles once; the SIGKILL test below resumes in a new process.)
    """
    data = separable()
    net, B, tr = make_trainer(backend_name, rule, optimizer)
    ref, ref_hist = tr.fit(net.init(0, backend=B), data, epochs=EPOCHS, batch_size=BATCH, seed=SEED)

    p1, _ = tr.fit(net.init(0, backend=B), data, epochs=1, batch_size=BATCH, seed=SEED, checkpoint_dir=tmp_path / "a", checkpoint_meta={"note": "x"})
    saved_params, saved_state = flat_numpy(p1, B), state_arrays(*tr.last_state, B)
    info = read_sidecar(tmp_path / "a")
    assert (info["epoch"], info["seed"], info["meta"]) == (1, SEED, {"note": "x"})

    ck = load_checkpoint(tmp_path / "a", template(net, B, tr))
    assert (ck.epoch, ck.seed) == (1, SEED)
    # exactly the in-memory state: values, dtypes and shapes (0-d step counts stay 0-d)
    assert_bitwise(flat_numpy(ck.params, B), saved_params)
    assert_bitwise(state_arrays(ck.opt_state, ck.rule_state, B), saved_state)
    if rule == "eprop-random":
        assert ck.rule_state["feedback"]  # a rule with state
    # saving the loaded state again gives the same tensor file
    save_checkpoint(tmp_path / "b", ck)
    a, b = read_sidecar(tmp_path / "a"), read_sidecar(tmp_path / "b")
    assert a["tensors"] == b["tensors"] and a["optimizer"] == b["optimizer"] and a["scalars"] == b["scalars"]

    out, hist = tr.fit(ck.params, data, epochs=EPOCHS - 1, batch_size=BATCH, seed=SEED, state=(ck.opt_state, ck.rule_state), start_epoch=ck.epoch)
    assert [h["epoch"] for h in hist] == [2, 3]
    assert_bitwise(flat_numpy(out, B), flat_numpy(ref, B))
    assert [h["train_loss"] for h in hist] == [h["train_loss"] for h in ref_hist[1:]]


def test_trainer_saves_every_n_epochs_and_the_last(tmp_path):
    data = separable()
    net, B, tr = make_trainer("torch", "bptt", "adam")
    seen = []
    tr.fit(net.init(0, backend=B), data, epochs=3, batch_size=BATCH, checkpoint_dir=tmp_path, checkpoint_every=2,
           callbacks=[lambda t, rec, p: seen.append(read_sidecar(tmp_path))])
    # callbacks run before the epoch's save: epoch 2 is saved (every 2), then the last one
    assert [s and s["epoch"] for s in seen] == [None, None, 2]
    assert read_sidecar(tmp_path)["epoch"] == 3
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0] == SIDECAR and files[1].startswith("epoch-000003-")  # older tensor files removed
    with pytest.raises(ValueError, match="checkpoint_every must be a positive integer"):
        tr.fit(net.init(0, backend=B), data, epochs=1, checkpoint_dir=tmp_path, checkpoint_every=0)


def test_non_array_leaves_round_trip(tmp_path):
    """Rule states may hold Python scalars, strings, numpy scalars and torch-style SeedSequence keys."""
    import jax

    seq = np.random.SeedSequence(5).spawn(2)[1]
    state = {"key": seq, "n": 3, "x": 0.1, "name": "a", "flag": True, "f32": np.float32(0.25), "jkey": jax.random.PRNGKey(3), "none": None}
    like = {"key": np.random.SeedSequence(0), "n": 0, "x": 0.0, "name": "", "flag": False, "f32": np.float32(0), "jkey": jax.random.PRNGKey(0), "none": None}
    params = {"w": np.arange(6, dtype=np.float64).reshape(2, 3)}
    save_checkpoint(tmp_path, Checkpoint(params, {}, state, epoch=2, seed=0))
    ck = load_checkpoint(tmp_path, Checkpoint({"w": np.zeros((2, 3))}, {}, like))
    r = ck.rule_state
    assert (r["n"], r["x"], r["name"], r["flag"], r["none"]) == (3, 0.1, "a", True, None)
    assert type(r["f32"]) is np.float32 and r["f32"] == np.float32(0.25)
    np.testing.assert_array_equal(r["key"].generate_state(4), seq.generate_state(4))
    assert r["key"].spawn(1)[0].spawn_key == seq.spawn(1)[0].spawn_key
    np.testing.assert_array_equal(np.asarray(r["jkey"]), np.asarray(jax.random.PRNGKey(3)))
    np.testing.assert_array_equal(ck.params["w"], params["w"])
    with pytest.raises(ValueError, match="checkpoint: cannot store rule.bad of type object"):
        save_checkpoint(tmp_path / "x", Checkpoint(params, {}, {"bad": object()}))


# ---------------------------------------------------------------------------- corruption
def saved_checkpoint(tmp_path, backend="jax"):
    """A checkpoint of an e-prop (random feedback) run with Adam after one optimizer step (no training: fast)."""
    net, B, tr = make_trainer(backend, "eprop-random", "adam")
    ck = template(net, B, tr)
    grads = tree_map(lambda w: B.asarray(np.full(tuple(w.shape), 0.01)), ck.params)
    ck.params, ck.opt_state = tr.optimizer.update(grads, ck.opt_state, ck.params)
    ck.epoch, ck.seed = 1, SEED
    d = tmp_path / "ck"
    save_checkpoint(d, ck)
    info = read_sidecar(d)
    return d, d / info["tensors"]["file"], lambda: template(*make_trainer(backend, "eprop-random", "adam"))


def listing(d: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_corrupted_truncated_or_missing_files_give_clear_errors(tmp_path):
    d, tensors, tmpl = saved_checkpoint(tmp_path)
    good = listing(d)
    blob = bytearray(good[tensors.name])
    blob[len(blob) // 2] ^= 0xFF
    tensors.write_bytes(bytes(blob))
    with pytest.raises(ValueError, match=re.escape(f"checkpoint: {tensors} is corrupted (sha256 mismatch)")):
        load_checkpoint(d, tmpl())
    tensors.write_bytes(good[tensors.name][:100])
    with pytest.raises(ValueError, match=re.escape(f"checkpoint: {tensors} is truncated or corrupted (100 bytes, expected")):
        load_checkpoint(d, tmpl())
    tensors.unlink()
    with pytest.raises(ValueError, match=re.escape(f"checkpoint: {tensors} is missing")):
        load_checkpoint(d, tmpl())
    tensors.write_bytes(good[tensors.name])
    (d / SIDECAR).write_bytes(good[SIDECAR][: len(good[SIDECAR]) // 2])
    with pytest.raises(ValueError, match=re.escape(f"checkpoint: {d / SIDECAR} is corrupted (not valid JSON")):
        load_checkpoint(d, tmpl())
    (d / SIDECAR).write_text("{}")
    with pytest.raises(ValueError, match="is not a neuroplastic checkpoint sidecar"):
        load_checkpoint(d, tmpl())
    (d / SIDECAR).unlink()
    with pytest.raises(ValueError, match="checkpoint: no checkpoint.json in"):
        load_checkpoint(d, tmpl())
    # loading never writes: nothing but the files put there by hand
    assert sorted(p.name for p in d.iterdir()) == [tensors.name]


def test_checkpoint_of_another_layout_is_refused_by_name(tmp_path):
    d, _, _ = saved_checkpoint(tmp_path)
    net, B, tr = make_trainer("jax", "eprop-random", "adam", hidden=9)
    with pytest.raises(ValueError, match=r"checkpoint: params\.layers\.0\.w has shape \(4, 8\) but the run expects \(4, 9\)"):
        load_checkpoint(d, template(net, B, tr))
    net, B, tr = make_trainer("jax", "bptt", "adam")
    with pytest.raises(ValueError, match=r"checkpoint: rule\.feedback\.0 is stored but the run has no such state"):
        load_checkpoint(d, template(net, B, tr))
    net, B, tr = make_trainer("jax", "eprop-random", "naive")
    with pytest.raises(ValueError, match=r"checkpoint: opt\.0\.0 is stored but the run has no such state"):
        load_checkpoint(d, template(net, B, tr))
    net, B, tr = make_trainer("torch", "eprop-random", "adam")
    with pytest.raises(ValueError, match="checkpoint: holds a 'pytree' optimizer state but the run uses torch.optim"):
        load_checkpoint(d, template(net, B, tr))


@pytest.mark.parametrize("fail_on", ["tensors", "sidecar", "fsync"])
def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, fail_on):
    d, _, tmpl = saved_checkpoint(tmp_path)
    before = listing(d)
    ck = load_checkpoint(d, tmpl())
    ck.epoch = 2
    real_replace, real_fsync = os.replace, os.fsync
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if (fail_on == "tensors" and str(dst).endswith(".safetensors")) or (fail_on == "sidecar" and str(dst).endswith(SIDECAR)):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    def fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckmod.os, "replace", replace)
    if fail_on == "fsync":
        monkeypatch.setattr(ckmod.os, "fsync", fsync)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(d, ck)
    monkeypatch.setattr(ckmod.os, "replace", real_replace)
    monkeypatch.setattr(ckmod.os, "fsync", real_fsync)
    assert listing(d) == before  # no temporary or half-committed file; the old checkpoint is intact
    assert load_checkpoint(d, tmpl()).epoch == 1


def _interrupt_at_line(k: int, filename: str):
    """A trace function raising ``KeyboardInterrupt`` at the ``k``-th line run in ``filename``
    (Python unsets a trace function that raises, so one interrupt per call)."""
    seen = [0]

    def trace(frame, event, arg):
        if frame.f_code.co_filename != filename:
            return None
        if event == "line":
            seen[0] += 1
            if seen[0] == k:
                raise KeyboardInterrupt(f"line {frame.f_lineno}")
        return trace

    return trace


def test_an_interrupt_at_any_line_of_a_save_leaves_a_loadable_checkpoint(tmp_path):
    """An exception may arrive anywhere, even after the sidecar's os.replace (Ctrl-C, or the
    SystemExit Ray raises in a task whose driver died): the checkpoint on disk then still
    loads, as the old epoch or the new one, and the next save leaves only its own files.
    (A save once deleted its new tensor file after the sidecar already named it.)"""
    d, _, tmpl = saved_checkpoint(tmp_path)
    good = listing(d)
    ck = load_checkpoint(d, tmpl())
    ck.epoch = 2
    outcomes = set()
    outer = sys.gettrace()  # a debugger's or coverage's trace function, put back after each save
    for k in range(1, 10_000):
        for p in d.iterdir():
            p.unlink()
        for name, data in good.items():
            (d / name).write_bytes(data)
        sys.settrace(_interrupt_at_line(k, ckmod.__file__))
        try:
            save_checkpoint(d, ck)
            interrupted = False
        except KeyboardInterrupt:
            interrupted = True
        finally:
            sys.settrace(outer)
        epoch = load_checkpoint(d, tmpl()).epoch
        assert epoch in (1, 2), k
        outcomes.add((interrupted, epoch))
        if not interrupted:
            break
    assert k > 20 and outcomes == {(True, 1), (True, 2), (False, 2)}  # interrupts fell before and after the commit
    ck.epoch = 3
    save_checkpoint(d, ck)
    assert sorted(listing(d)) == sorted([SIDECAR, read_sidecar(d)["tensors"]["file"]])


def test_loading_never_unpickles(tmp_path, monkeypatch, backend_name):
    d, _, tmpl = saved_checkpoint(tmp_path, backend_name)

    def refuse(*a, **k):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    assert load_checkpoint(d, tmpl()).epoch == 1
    source = Path(ckmod.__file__).read_text()
    assert "torch.load(" not in source and "import pickle" not in source and "allow_pickle=True" not in source


# ---------------------------------------------------------------------------- SIGKILL
RUN = ["--hidden", "16", "--epochs", "2", "--batch-size", "20", "--seed", "1"]
BAR = re.compile(r"epoch (\d+)/(\d+):\s+\d+%\|[^|\r\n]*\|\s*(\d+)/(\d+)")


def _train(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "neuroplastic.cli", "train", *args], stdout=subprocess.DEVNULL, **kw)


def _kill_mid_epoch(proc: subprocess.Popen, epoch: int, timeout: float = 240.0) -> tuple[int, int]:
    """SIGKILL ``proc`` once its progress bar shows ``epoch`` started but not finished."""
    fd, text, deadline = proc.stderr.fileno(), "", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            chunk = os.read(fd, 65536).decode(errors="replace")
            if not chunk:
                break
            text += chunk
            bars = [m for m in BAR.finditer(text) if int(m.group(1)) == epoch]
            if bars and 0 < int(bars[-1].group(3)) < int(bars[-1].group(4)):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return int(bars[-1].group(3)), int(bars[-1].group(4))
    proc.kill()
    raise AssertionError(f"never saw epoch {epoch} in progress; stderr tail:\n{text[-2000:]}")


def _sigkill_resume(tmp_path: Path, backend: str) -> None:
    args = [*RUN, "--backend", backend, "--out", str(tmp_path)]
    ref = _train(*args, "--name", "ref", "--no-progress", stderr=subprocess.DEVNULL)
    victim = _train(*args, "--name", "killed", "--progress", stderr=subprocess.PIPE)  # the progress bar says where it is
    try:
        step, total = _kill_mid_epoch(victim, epoch=2)
    finally:
        victim.stderr.close()
    assert victim.returncode == -signal.SIGKILL
    run = tmp_path / "killed"
    assert read_sidecar(run / "checkpoints")["epoch"] == 1 and not (run / "params.safetensors").exists()
    resumed = subprocess.run([sys.executable, "-m", "neuroplastic.cli", "train", "--resume", str(run), "--no-progress"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming" in resumed.stdout and "after epoch 1 of 2" in resumed.stdout
    assert ref.wait(timeout=300) == 0
    from safetensors.numpy import load_file

    a, b = load_file(str(tmp_path / "ref" / "params.safetensors")), load_file(str(run / "params.safetensors"))
    assert_bitwise(a, b)
    assert (tmp_path / "ref" / "params.safetensors").read_bytes() == (run / "params.safetensors").read_bytes()
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    ref_lines = [json.loads(l) for l in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2]
    for l, r in zip(lines, ref_lines):
        assert {k: v for k, v in l.items() if "time" not in k} == {k: v for k, v in r.items() if "time" not in k}
    assert json.loads((run / "summary.json").read_text())["resumed_after_epoch"] == 1
    assert not [p for p in run.rglob("*.tmp")]


def test_sigkill_mid_epoch_then_resume_is_bit_identical_jax(tmp_path):
    _sigkill_resume(tmp_path, "jax")


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bit_identical_torch(tmp_path):
    _sigkill_resume(tmp_path, "torch")


def test_cli_resume_with_a_corrupted_checkpoint_fails_cleanly(tmp_path, capsys):
    from neuroplastic.cli import main

    common = ["--hidden", "8", "--model", "snn", "--epochs", "1", "--batch-size", "1000", "--out", str(tmp_path), "--name", "r", "--no-progress"]
    assert main(["train", *common]) == 0
    run = tmp_path / "r"
    params = (run / "params.safetensors").read_bytes()
    # resuming a finished run trains nothing and writes the same parameters
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert (run / "params.safetensors").read_bytes() == params
    assert [json.loads(l)["epoch"] for l in (run / "metrics.jsonl").read_text().splitlines()] == [1]
    info = read_sidecar(run / "checkpoints")
    tensors = run / "checkpoints" / info["tensors"]["file"]
    tensors.write_bytes(tensors.read_bytes()[:-7])
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    assert f"checkpoint: {tensors} is truncated or corrupted" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing written, nothing partial
