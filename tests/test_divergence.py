"""The divergence guard: a non-finite loss, gradient or parameter stops training by name (or is skipped,
or warned about), nothing non-finite is ever saved, and training never starts from non-finite values."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from neuroplastic.backend import get_backend
from neuroplastic.cells import LIF, LeakyReadout
from neuroplastic.data import from_arrays
from neuroplastic.layers import Dense
from neuroplastic.network import Network
from neuroplastic.rules.bptt import BPTT
from neuroplastic.train import NonFiniteError, Trainer
from neuroplastic.tree import tree_flatten_dict, tree_map

BACKENDS = ["torch", "jax"]


def data(n: int = 64, T: int = 6) -> object:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    x = (rng.normal(0.0, 0.5, (T, n, 3)) + y[None, :, None]).astype(np.float32)
    return from_arrays(x, y, x[:, :16], y[:16])


def net() -> Network:
    return Network(3, [Dense(6), LIF(tau_mem=3.0), Dense(2), LeakyReadout(tau_out=3.0)])


class PoisonedBPTT(BPTT):
    """BPTT whose gradient is NaN on the ``bad``-th call (counting from 1): a divergence at a known step."""

    def __init__(self, bad: int) -> None:
        super().__init__()
        self.bad, self.calls = bad, 0

    def gradients(self, network, params, rule_state, batch, objective):
        grads, rule_state, aux = super().gradients(network, params, rule_state, batch, objective)
        self.calls += 1
        if self.calls == self.bad:
            grads = tree_map(lambda g: g * float("nan"), grads)
        return grads, rule_state, aux


def numpy_params(B, params) -> dict:
    return {k: np.array(B.to_numpy(v)) for k, v in tree_flatten_dict(params).items()}


@pytest.mark.parametrize("backend", BACKENDS)
def test_raise_names_the_quantity_the_step_and_the_last_finite_loss(backend):
    tr = Trainer(net(), PoisonedBPTT(bad=3), "ce_mean", "adam", lr=1e-2, backend=backend, progress=False, jit=False)
    with pytest.raises(NonFiniteError, match=r"non-finite gradient at epoch 1, step 3 \(last finite loss: \d"):
        tr.fit(net().init(0, backend=backend), data(), epochs=2, batch_size=16)


@pytest.mark.parametrize("backend", BACKENDS)
def test_skip_drops_exactly_the_bad_step(backend):
    """Skipping the poisoned step leaves every state as if that batch had not been there."""
    B = get_backend(backend)
    d = data()
    tr = Trainer(net(), PoisonedBPTT(bad=2), "ce_mean", "adam", lr=1e-2, backend=backend, progress=False, jit=False, on_nonfinite="skip")
    p, hist = tr.fit(net().init(0, backend=backend), d, epochs=1, batch_size=16)
    assert hist[0]["skipped_steps"] == 1
    # by hand: the same optimizer on batches 1, 3 and 4 of the epoch
    ref = Trainer(net(), "bptt", "ce_mean", "adam", lr=1e-2, backend=backend, progress=False, jit=False)
    params = net().init(0, backend=backend)
    opt_state, rule_state = ref.init_state(params, 0)
    from neuroplastic.train.trainer import epoch_batches

    for i, (xb, yb) in enumerate(epoch_batches(d, 16, 0, 0)):
        if i == 1:
            continue
        params, opt_state, rule_state, _ = ref._step(params, opt_state, rule_state, B.asarray(xb), B.asarray(yb))
    got, want = numpy_params(B, p), numpy_params(B, params)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_warn_goes_on_with_a_warning_but_never_saves_non_finite_values(backend, tmp_path):
    B = get_backend(backend)
    tr = Trainer(net(), PoisonedBPTT(bad=2), "ce_mean", "naive", lr=1e-2, backend=backend, progress=False, jit=False, on_nonfinite="warn")
    with pytest.warns(RuntimeWarning, match="non-finite") as caught:
        p, hist = tr.fit(net().init(0, backend=backend), data(), epochs=1, batch_size=16)
    assert "non-finite gradient at epoch 1, step 2" in str(caught[0].message)
    assert len(hist) == 1 and not np.all(np.isfinite(B.to_numpy(p["layers"][0]["w"])))  # it went on, as asked
    tr = Trainer(net(), PoisonedBPTT(bad=2), "ce_mean", "naive", lr=1e-2, backend=backend, progress=False, jit=False, on_nonfinite="warn")
    with pytest.warns(RuntimeWarning), pytest.raises(NonFiniteError, match="checkpoint: not writing epoch 1"):
        tr.fit(net().init(0, backend=backend), data(), epochs=1, batch_size=16, checkpoint_dir=tmp_path / "ck")
    assert not (tmp_path / "ck" / "checkpoint.json").exists()


def test_an_unknown_guard_is_refused_by_name():
    with pytest.raises(ValueError, match="on_nonfinite: unknown value 'ignore'"):
        Trainer(net(), "bptt", on_nonfinite="ignore", progress=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_huge_learning_rate_stops_with_named_parameters_and_keeps_the_good_checkpoint(backend, tmp_path):
    d = data()
    ck = tmp_path / "ck"
    good = Trainer(net(), "bptt", "ce_mean", "naive", lr=1e-2, backend=backend, progress=False)
    p, _ = good.fit(net().init(0, backend=backend), d, epochs=1, batch_size=16, checkpoint_dir=ck)
    files = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in ck.iterdir()}
    bad = Trainer(net(), "bptt", "ce_mean", "naive", lr=1e38, backend=backend, progress=False)
    with pytest.raises(NonFiniteError, match=r"non-finite (parameters|gradient|loss) at epoch 2"):
        bad.fit(p, d, epochs=1, batch_size=16, start_epoch=1, checkpoint_dir=ck, state=bad.init_state(p, 0))
    assert {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in ck.iterdir()} == files


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_never_starts_from_nan_weights(backend):
    B = get_backend(backend)
    p = net().init(0, backend=backend)
    w = np.array(B.to_numpy(p["layers"][1]["w"]))
    w[0, 0] = np.nan
    p["layers"][1]["w"] = B.asarray(w)
    tr = Trainer(net(), "bptt", "ce_mean", backend=backend, progress=False)
    with pytest.raises(NonFiniteError, match=r"cannot train from non-finite parameters; params: non-finite values in layers\.1\.w"):
        tr.fit(p, data(), epochs=1, batch_size=16)


def test_checkpoints_and_parameter_files_refuse_non_finite_values(tmp_path):
    from neuroplastic.experiment import save_params
    from neuroplastic.train.checkpoint import Checkpoint, save_checkpoint

    B = get_backend("jax")
    p = net().init(0, backend=B)
    p["layers"][0]["w"] = p["layers"][0]["w"] * float("inf")
    with pytest.raises(NonFiniteError, match=r"checkpoint: not writing epoch 3 .*layers\.0\.w"):
        save_checkpoint(tmp_path / "ck", Checkpoint(p, {}, {}, 3, 0))
    assert not (tmp_path / "ck" / "checkpoint.json").exists()
    with pytest.raises(NonFiniteError, match=r"params: not writing .*params\.safetensors"):
        save_params(p, B, tmp_path / "params.safetensors")
    assert not (tmp_path / "params.safetensors").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_resuming_from_a_checkpoint_with_nan_weights_is_refused(backend, tmp_path, monkeypatch):
    """A checkpoint written with NaN weights (by another tool: ours refuses to) is refused at resume."""
    from neuroplastic.train import checkpoint as ckmod

    p = net().init(0, backend=backend)
    p["layers"][0]["w"] = p["layers"][0]["w"] * float("nan")
    tr = Trainer(net(), "bptt", "ce_mean", backend=backend, progress=False)
    monkeypatch.setattr(ckmod, "check_finite", lambda *a, **k: None)
    ckmod.save_checkpoint(tmp_path, ckmod.Checkpoint(p, *tr.init_state(p, 0), epoch=1, seed=0))
    monkeypatch.undo()
    fresh = net().init(0, backend=backend)
    loaded = ckmod.load_checkpoint(tmp_path, ckmod.Checkpoint(fresh, *tr.init_state(fresh, 0)))
    with pytest.raises(NonFiniteError, match="cannot train from non-finite parameters"):
        tr.fit(loaded.params, data(), epochs=1, batch_size=16, state=(loaded.opt_state, loaded.rule_state), start_epoch=1)


def test_cli_divergence_exits_non_zero_marks_the_run_failed_and_writes_no_parameters(tmp_path, capsys):
    from neuroplastic.cli import main

    args = ["train", "--data", "mnist1d", "--model", "snn",
            "--hidden", "8", "--epochs", "2", "--optimizer", "naive", "--lr", "1e38", "--schedule", "constant",
            "--out", str(tmp_path), "--name", "diverged", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "neuroplastic: error: training diverged: non-finite" in err and "epoch 1" in err
    run = tmp_path / "diverged"
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and "NonFiniteError: training diverged" in status["error"]
    assert not (run / "params.safetensors").exists()
    assert not (run / "checkpoints" / "checkpoint.json").exists()
