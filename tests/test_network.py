"""Network composition: fast layer-wise path, step-wise path, links, recurrent masks."""

import numpy as np
import pytest

from neuroplastic.cells import ALIF, LIF, LeakyReadout
from neuroplastic.layers import Dense, RecurrentDense
from neuroplastic.network import Link, Network

XS = np.random.default_rng(3).normal(0.5, 1.0, size=(25, 4, 3))


def test_layerwise_equals_stepwise(B64):
    net = Network(3, [RecurrentDense(7), ALIF(), Dense(6), LIF(), Dense(2), LeakyReadout()], links=[Link(-1, 2), Link(0, 2)])
    assert net.layerwise
    p = net.init(0, backend=B64)
    ys, final, rec = net.run(p, B64.asarray(XS), record=True)
    # scan the generic step by hand
    state = net.initial_state(B64, 4)
    for t in range(XS.shape[0]):
        state, y = net.step(p, state, B64.asarray(XS[t]))
        np.testing.assert_allclose(B64.to_numpy(ys[t]), B64.to_numpy(y), atol=1e-12)
    np.testing.assert_allclose(B64.to_numpy(final["layers"][0]["cell"]["a"]), B64.to_numpy(state["layers"][0]["cell"]["a"]), atol=1e-12)
    assert rec["state"][0]["v"].shape == (25, 4, 7)
    assert sum(float(B64.to_numpy(z).sum()) for z in rec["out"][:2]) > 0


def test_backward_link_uses_previous_step(B64):
    net = Network(3, [Dense(5), LIF(), Dense(4), LIF(), Dense(2), LeakyReadout()], links=[Link(1, 0)])
    assert not net.layerwise
    p = net.init(1, backend=B64)
    ys, _, rec = net.run(p, B64.asarray(XS))
    # manual recursion of block 0 with the feedback from block 1 at t-1
    w0, wl = B64.to_numpy(p["layers"][0]["w"]), B64.to_numpy(p["links"][0]["w"])
    z1 = B64.to_numpy(rec["out"][1])
    v = np.zeros((4, 5))
    prev = np.zeros((4, 4))
    for t in range(XS.shape[0]):
        u = np.exp(-1 / 20) * v + XS[t] @ w0 + prev @ wl
        s = (u > 1).astype(float)
        v = u - s
        np.testing.assert_array_equal(B64.to_numpy(rec["out"][0][t]), s)
        prev = z1[t]


def test_no_self_connections_stay_masked(B64):
    net = Network(3, [RecurrentDense(5, self_connections=False), LIF(), Dense(2), LeakyReadout()])
    p = net.init(0, backend=B64)
    assert np.all(np.diag(B64.to_numpy(p["layers"][0]["w_rec"])) == 0)
    # even if the diagonal is written, it has no effect
    p2 = B64.tree_asarray(net.init_numpy(0))
    w = B64.to_numpy(p2["layers"][0]["w_rec"]).copy()
    np.fill_diagonal(w, 10.0)
    p2["layers"][0]["w_rec"] = B64.asarray(w)
    a = B64.to_numpy(net.run(p, B64.asarray(XS))[0])
    b = B64.to_numpy(net.run(p2, B64.asarray(XS))[0])
    np.testing.assert_allclose(a, b)


def test_init_is_identical_across_backends():
    from neuroplastic.backend import get_backend

    net = Network(3, [RecurrentDense(5), LIF(), Dense(2), LeakyReadout()])
    a = net.init(7, backend=get_backend("torch", dtype="float64"))
    b = net.init(7, backend=get_backend("jax", dtype="float64"))
    np.testing.assert_array_equal(a["layers"][0]["w_rec"].numpy(), np.asarray(b["layers"][0]["w_rec"]))


def test_bad_inputs_are_named(B64):
    net = Network(3, [Dense(5), LIF(), Dense(2), LeakyReadout()])
    p = net.init(0, backend=B64)
    with pytest.raises(ValueError, match="xs: expected a time-major array"):
        net.run(p, B64.asarray(XS[0]))
    with pytest.raises(ValueError, match="xs: expected 3 input features"):
        net.run(p, B64.asarray(XS[:, :, :2]))
    bad = XS.copy()
    bad[3, 1, 0] = np.nan
    with pytest.raises(ValueError, match="xs: contains NaN"):
        net.run(p, B64.asarray(bad))
    with pytest.raises(ValueError, match="batch size must be a positive integer"):
        net.initial_state(B64, 0)
    with pytest.raises(ValueError, match="layers\\[0\\]: expected a projection"):
        Network(3, [LIF(), Dense(2)])
    with pytest.raises(ValueError, match="links\\[0\\]"):
        Network(3, [Dense(5), LIF(), Dense(2), LeakyReadout()], links=[Link(0, 7)])


def test_jax_matmuls_use_full_float32_precision():
    """On GPUs XLA's default float32 matmul uses TF32, which moves spike thresholds; the backend asks for full precision."""
    from neuroplastic.backend import get_backend

    assert get_backend("jax").matmul_precision == "highest"


def test_unavailable_device_is_a_clear_error():
    import torch

    from neuroplastic.backend import get_backend

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ValueError, match="device: 'cuda' was asked for but torch sees no CUDA device"):
        get_backend("torch", device="cuda")
