"""The gradient-comparison trainer: exact self-agreement, RTRL against BPTT, no optimizer drift."""

import numpy as np
import pytest

from neuroplastic.analysis.alignment import alignment, deviation_sample
from neuroplastic.cells import ALIF, LIF, LeakyReadout
from neuroplastic.data import from_arrays
from neuroplastic.layers import Dense, RecurrentDense
from neuroplastic.network import Network
from neuroplastic.train.compare import GradientComparison, read_comparison


def tiny_data(T=12, n=48, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0.3, 1.0, size=(T, n, 3))
    x[:, np.arange(n), y] += 1.0
    return from_arrays(x[:, :32], y[:32], x[:, 32:], y[32:])


def test_alignment_metrics_by_hand():
    r = np.array([1.0, -2.0, 0.0, 3.0])
    g = np.array([2.0, -1.0, 1.0, 3.0])
    m = alignment(g, r)
    assert m["cosine"] == pytest.approx((2 + 2 + 0 + 9) / (np.sqrt(15) * np.sqrt(14)))
    assert m["rel_deviation"] == pytest.approx(np.sqrt(1 + 1 + 1 + 0) / np.sqrt(14))
    assert m["sign_agreement"] == 0.75
    assert m["bias"] == pytest.approx((1 * 1 + 1 * -2 + 1 * 0 + 0 * 3) / 14)
    same = alignment(r, r)
    assert same["cosine"] == 1.0 and same["rel_deviation"] == 0.0 and same["bias"] == 0.0
    d = deviation_sample(g, r)
    np.testing.assert_allclose(d, (g - r) / np.sqrt(np.mean(r**2)), rtol=1e-6)


def test_bptt_against_itself_is_exact(backend_name, tmp_path):
    net = Network(3, [RecurrentDense(10), LIF(), Dense(3), LeakyReadout()])
    cmp = GradientComparison(net, {"bptt": "bptt", "bptt_again": "bptt"}, primary="bptt", reference="bptt", lr=1e-2, backend=backend_name)
    _, records, extra = cmp.run(net.init(0, backend=backend_name), tiny_data(), epochs=1, batch_size=16, sample_steps=(0,), out_dir=tmp_path)
    mine = [r for r in records if r["rule"] == "bptt_again"]
    assert mine and all(r["cosine"] == 1.0 and r["rel_deviation"] == 0.0 for r in mine)
    loaded, samples = read_comparison(tmp_path)
    assert loaded == records
    assert all(np.all(v == 0) for k, v in samples.items() if "/bptt_again/" in k)


def test_rtrl_against_bptt_at_every_step(B64):
    net = Network(3, [RecurrentDense(6), ALIF(), Dense(3), LeakyReadout()])
    cmp = GradientComparison(net, ["bptt", "rtrl", "eprop-symmetric"], primary="bptt", reference="bptt", lr=1e-2, backend=B64)
    _, records, _ = cmp.run(net.init(1, backend=B64), tiny_data(), epochs=1, batch_size=16, max_steps=2)
    rtrl = [r for r in records if r["rule"] == "rtrl" and r["kind"] == "gradient" and r["layer"] == "all"]
    assert len(rtrl) == 2 and all(r["cosine"] >= 0.9999 for r in rtrl)
    ep = [r for r in records if r["rule"] == "eprop-symmetric" and r["layer"] == "layers.0.w_rec"]
    assert ep and all(r["cosine"] < 1.0 for r in ep)  # an approximation, and it shows


def test_only_primary_update_is_applied_and_updates_use_the_shared_state(backend_name):
    """Params after the comparison equal params after training the primary alone with the Trainer.

    A regression test: the comparison used to seed each rule's state with split keys while the
    Trainer uses ``key(seed)``, so e-prop random's feedback matrix in the comparison was not the
    one the rule trains with (this test then fails)."""
    from neuroplastic.train import Trainer
    from neuroplastic.backend import get_backend

    B = get_backend(backend_name)
    net = Network(3, [Dense(8), LIF(), Dense(3), LeakyReadout()])
    data = tiny_data()
    cmp = GradientComparison(net, ["bptt", "eprop-random"], primary="eprop-random", reference="bptt", lr=1e-2, backend=B, jit=False)
    p_cmp, records, _ = cmp.run(net.init(0, backend=B), data, epochs=1, batch_size=16, seed=3)
    # the primary alone, trained by the Trainer with the same optimizer settings and seed
    trainer = Trainer(net, "eprop-random", "ce_mean", "adam", lr=1e-2, backend=B, progress=False, jit=False)
    p, _ = trainer.fit(net.init(0, backend=B), data, epochs=1, batch_size=16, seed=3)
    np.testing.assert_allclose(B.to_numpy(p_cmp["layers"][0]["w"]), B.to_numpy(p["layers"][0]["w"]), rtol=1e-5, atol=1e-7)
    upd = [r for r in records if r["kind"] == "update" and r["rule"] == "bptt" and r["layer"] == "all"]
    assert upd and all(r["cosine"] == 1.0 for r in upd)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_progress_of_the_comparison_goes_to_stderr_only_when_asked(backend, capsys):
    from neuroplastic.progress import progress_enabled

    net = Network(3, [Dense(6), LIF(), Dense(3), LeakyReadout()])
    cmp = GradientComparison(net, ["bptt", "eprop-symmetric"], backend=backend)
    p0 = net.init(0, backend=backend)
    cmp.run(p0, tiny_data(), epochs=1, batch_size=16, max_steps=2)  # default: the session's setting, off
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out == ""
    with progress_enabled(True):
        cmp.run(p0, tiny_data(), epochs=1, batch_size=16, max_steps=2)
    shown = capsys.readouterr()
    assert shown.out == ""
    assert "gradient comparison (bptt, eprop-symmetric)" in shown.err and "2/2" in shown.err
    # one "compiling" line before the first step where the backend compiles, none where it does not
    assert shown.err.count("compiling") == (1 if backend == "jax" else 0)
    cmp.run(p0, tiny_data(), epochs=1, batch_size=16, max_steps=2, progress=False)
    assert capsys.readouterr().err == ""
