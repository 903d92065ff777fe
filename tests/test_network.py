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


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_dense_bias_goes_into_the_event_product_with_the_same_numbers(name, monkeypatch):
    """A Dense block's projection and bias are one ``event_matmul(x, w, b)`` (the kernel adds the bias), and the
    network's outputs and BPTT gradients equal those of the separate sum bit for bit (float64): a ``hooks.apply``
    that only calls the synapse turns the fusion off, as any rule's replacement of synapse products does."""
    from neuroplastic.backend import get_backend
    from neuroplastic.losses import Objective, make_loss
    from neuroplastic.network import Hooks
    from neuroplastic.rules.bptt import BPTT

    B = get_backend(name, dtype="float64")
    net = Network(64, [Dense(256, bias=True), LIF(), Dense(256, bias=True), LIF(), Dense(5, bias=True), LIF()])
    p = net.init(1, backend=B)
    rng = np.random.default_rng(4)
    xs = B.asarray((rng.random((60, 8, 64)) < 0.15).astype(np.float64))
    ys = B.asarray(rng.integers(0, 5, 8))
    module = __import__(f"neuroplastic.backend.events_{name}", fromlist=["event_matmul"])
    seen: list = []
    original = module.event_matmul
    monkeypatch.setattr(module, "event_matmul", lambda x, w, bias=None: seen.append(bias is not None) or original(x, w, bias))
    separate = Hooks(apply=lambda c, p_, x: c.synapse.apply(p_, x))

    def outputs(hooks):
        out, _, _ = net.run(p, xs, hooks=hooks)
        return B.to_numpy(out)

    fused, plain = outputs(Hooks()), outputs(separate)
    assert seen[:3] == [True, True, True] and not any(seen[3:6])  # three Dense blocks, fused once, then separate
    np.testing.assert_array_equal(fused, plain)

    # BPTT's gradients through the kernel's bias against the kernel's product plus a separate bias
    rule, objective = BPTT(), Objective(make_loss("ce_sum"))
    g_fused, _, aux = rule.gradients(net, p, {}, (xs, ys), objective)
    monkeypatch.setattr(module, "event_matmul", lambda x, w, bias=None: original(x, w) + bias if bias is not None else original(x, w))
    g_plain, _, aux_plain = rule.gradients(net, p, {}, (xs, ys), objective)
    assert float(B.to_numpy(aux["loss"])) == float(B.to_numpy(aux_plain["loss"]))
    from neuroplastic.tree import tree_flatten_dict

    flat, flat_plain = tree_flatten_dict(g_fused), tree_flatten_dict(g_plain)
    for key in flat:
        np.testing.assert_allclose(B.to_numpy(flat[key]), B.to_numpy(flat_plain[key]), rtol=1e-12, atol=1e-12, err_msg=key)
