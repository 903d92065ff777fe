"""e-prop against an independent numpy per-synapse reference, against BPTT where it is exact,
and its online form against its offline form."""

import math

import numpy as np
import pytest

from neuroplastic.cells import ALIF, LIF, LeakyReadout, TanhRNN
from neuroplastic.layers import Dense, RecurrentDense
from neuroplastic.losses import Objective, make_loss
from neuroplastic.network import Network
from neuroplastic.rules import make_rule
from neuroplastic.rules.base import OnlineRule
from neuroplastic.tree import tree_flatten_dict

from .conftest import rel_err

T, BATCH, N_IN, N, N_OUT = 25, 3, 4, 7, 3
KAPPA_TAU = 5.0


def psi(x):  # fast sigmoid surrogate, beta = 10
    return 1.0 / (1.0 + 10.0 * np.abs(x)) ** 2


def reference_eprop(cell_name, p, xs, labels, F):
    """Plain numpy e-prop for RecurrentDense(N) -> cell -> Dense(N_OUT) -> LeakyReadout, loss ce_sum."""
    w_in, w_rec, w_out = p["layers"][0]["w"], p["layers"][0]["w_rec"], p["layers"][1]["w"]
    alpha, rho, beta_a = math.exp(-1 / 20), math.exp(-1 / 40), 0.6
    kappa = math.exp(-1 / KAPPA_TAU)
    v, a, z = np.zeros((BATCH, N)), np.zeros((BATCH, N)), np.zeros((BATCH, N))
    eps_v = np.zeros((BATCH, N_IN + N, N))
    eps_a = np.zeros_like(eps_v)
    e_seq, z_seq = [], []
    for t in range(T):
        pre = np.concatenate([xs[t], z], axis=1)  # p_t = [x_t, z_{t-1}]: no lag on the input
        I = pre @ np.concatenate([w_in, w_rec])
        if cell_name == "lif":
            u = alpha * v + I
            s = psi(u - 1.0)
            eps_v = alpha * eps_v + pre[:, :, None]
            e = s[:, None, :] * eps_v
            z = (u > 1.0).astype(float)
            v = u - z
        elif cell_name == "alif":
            thr = 1.0 + beta_a * a
            u = alpha * v + I
            s = psi(u - thr)
            new_eps_v = alpha * eps_v + pre[:, :, None]
            e = s[:, None, :] * (new_eps_v - beta_a * eps_a)
            eps_a = s[:, None, :] * new_eps_v + (rho - s[:, None, :] * beta_a) * eps_a
            eps_v = new_eps_v
            z = (u > thr).astype(float)
            v, a = u - z, rho * a + z
        else:  # tanh cell with leak 0.5
            d = 1.0 - np.tanh(I) ** 2
            eps_v = 0.5 * eps_v + d[:, None, :] * pre[:, :, None]
            e = eps_v
            z = 0.5 * z + np.tanh(I)
        e_seq.append(e)
        z_seq.append(z)
    z_seq = np.array(z_seq)
    # readout and ce_sum: dE/dy_t is the same at every step; filter it backwards with kappa
    y, ys = np.zeros((BATCH, N_OUT)), []
    for t in range(T):
        y = kappa * y + z_seq[t] @ w_out
        ys.append(y)
    logits = np.sum(ys, axis=0)
    prob = np.exp(logits - logits.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    dy = (prob - np.eye(N_OUT)[labels]) / BATCH
    delta, acc = np.zeros((T, BATCH, N_OUT)), np.zeros((BATCH, N_OUT))
    for t in reversed(range(T)):
        acc = kappa * acc + dy
        delta[t] = acc
    g = sum(np.einsum("bpn,bn->pn", e_seq[t], delta[t] @ F.T) for t in range(T))
    g_out = np.einsum("tbn,tbo->no", z_seq, delta)
    return {"layers.0.w": g[:N_IN], "layers.0.w_rec": g[N_IN:], "layers.1.w": g_out}


CELLS = {
    "lif": lambda: LIF(tau_mem=20.0),
    "alif": lambda: ALIF(tau_mem=20.0, tau_adapt=40.0, beta_adapt=0.6),
    "tanh": lambda: TanhRNN(leak=0.5),
}


def network(cell_name):
    return Network(N_IN, [RecurrentDense(N, rec_gain=0.8), CELLS[cell_name](), Dense(N_OUT), LeakyReadout(tau_out=KAPPA_TAU)])


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0.6, 1.0, size=(T, BATCH, N_IN)), rng.integers(0, N_OUT, BATCH)


@pytest.mark.parametrize("feedback", ["symmetric", "random", "adaptive"])
@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_matches_numpy_reference(B64, cell_name, feedback):
    net = network(cell_name)
    xs, labels = data()
    p_np = net.init_numpy(4)
    p = B64.tree_asarray(p_np)
    rule = make_rule("eprop", feedback=feedback, weight_decay=0.0)
    state = rule.init(net, p, B64.key(1))
    F = p_np["layers"][1]["w"] if feedback == "symmetric" else B64.to_numpy(state["feedback"][0])
    grads, new_state, _ = rule.gradients(net, p, state, (B64.asarray(xs), B64.asarray(labels)), Objective(make_loss("ce_sum")))
    ref = reference_eprop(cell_name, p_np, xs, labels, F)
    got = {k: B64.to_numpy(v) for k, v in tree_flatten_dict(grads).items()}
    for k, v in ref.items():
        assert np.abs(v).sum() > 0, k
        assert rel_err(got[k], v) <= 1e-6, (k, rel_err(got[k], v))
    if feedback == "adaptive":  # Kolen-Pollack: the feedback moves with the readout's gradient
        np.testing.assert_allclose(B64.to_numpy(new_state["feedback"][0]), F - 1e-3 * ref["layers.1.w"], rtol=1e-10)


def test_adaptive_weight_decay_pulls_feedback_towards_readout(B64):
    net = network("lif")
    xs, labels = data(1)
    p = net.init(0, backend=B64)
    rule = make_rule("eprop", feedback="adaptive", weight_decay=0.1, feedback_lr=0.5)
    state = rule.init(net, p, B64.key(0))
    w = B64.to_numpy(p["layers"][1]["w"])
    gap0 = np.linalg.norm(B64.to_numpy(state["feedback"][0]) - w)
    obj = Objective(make_loss("ce_sum"))
    step = B64.jit(lambda p, s, x, y: rule.gradients(net, p, s, (x, y), obj))
    for _ in range(20):  # apply the same step to W_out as to F: the difference shrinks by (1 - lr*wd)
        grads, state, _ = step(p, state, B64.asarray(xs), B64.asarray(labels))
        p["layers"][1]["w"] = p["layers"][1]["w"] - 0.5 * grads["layers"][1]["w"]
    gap = np.linalg.norm(B64.to_numpy(state["feedback"][0]) - B64.to_numpy(p["layers"][1]["w"]))
    np.testing.assert_allclose(gap, gap0 * (1 - 0.5 * 0.1) ** 20, rtol=1e-8)


@pytest.mark.parametrize("cell_name", sorted(CELLS))
def test_equals_bptt_where_exact(B64, cell_name):
    """No recurrent weights, readout only through the last layer: e-prop is exact."""
    net = Network(N_IN, [Dense(N), CELLS[cell_name](), Dense(N_OUT), LeakyReadout(tau_out=KAPPA_TAU)])
    xs, labels = data(2)
    p = net.init(3, backend=B64)
    batch = (B64.asarray(xs), B64.asarray(labels))
    for loss in ("ce_sum", "ce_last", "ce_per_step"):
        obj = Objective(make_loss(loss))
        g_b, _, aux_b = make_rule("bptt").gradients(net, p, {}, batch, obj)
        g_e, _, aux_e = make_rule("eprop").gradients(net, p, {}, batch, obj)
        assert float(B64.to_numpy(aux_b["loss"])) == pytest.approx(float(B64.to_numpy(aux_e["loss"])), rel=1e-12)
        for (k, a), b in zip(tree_flatten_dict(g_b).items(), tree_flatten_dict(g_e).values()):
            assert rel_err(B64.to_numpy(b), B64.to_numpy(a)) <= 1e-9, (loss, k)


def test_single_time_step_gives_input_gradients(B64):
    net = network("lif")
    rng = np.random.default_rng(5)
    xs = B64.asarray(rng.normal(1.5, 0.5, size=(1, BATCH, N_IN)))
    grads, _, _ = make_rule("eprop").gradients(net, net.init(0, backend=B64), {}, (xs, B64.asarray(rng.integers(0, N_OUT, BATCH))), Objective(make_loss("ce_sum")))
    assert np.abs(B64.to_numpy(grads["layers"][0]["w"])).sum() > 0


@pytest.mark.parametrize("feedback", ["symmetric", "random"])
@pytest.mark.parametrize("loss", ["ce_per_step", "ce_last"])
def test_online_form_equals_offline_form(B64, feedback, loss):
    """Learning signal per step (ce_per_step) or only at the end (ce_last): filtered traces == offline."""
    net = network("alif")
    xs, labels = data(3)
    p = net.init(1, backend=B64)
    rule = make_rule("eprop", feedback=feedback)
    state = rule.init(net, p, B64.key(0))
    batch = (B64.asarray(xs), B64.asarray(labels))
    obj = Objective(make_loss(loss))
    g_off, _, _ = rule.gradients(net, p, state, batch, obj)
    g_on, _, _ = OnlineRule.gradients(rule, net, p, state, batch, obj)
    for k, a in tree_flatten_dict(g_off).items():
        assert rel_err(B64.to_numpy(tree_flatten_dict(g_on)[k]), B64.to_numpy(a)) <= 1e-10, k


def test_rate_regulariser_enters_the_learning_signal(B64):
    from neuroplastic.losses import RateRegularizer

    net = network("lif")
    xs, labels = data(4)
    p = net.init(0, backend=B64)
    batch = (B64.asarray(xs), B64.asarray(labels))
    plain, _, a0 = make_rule("eprop").gradients(net, p, {}, batch, Objective(make_loss("ce_sum")))
    reg, _, a1 = make_rule("eprop").gradients(net, p, {}, batch, Objective(make_loss("ce_sum"), RateRegularizer(5.0, 10.0)))
    assert float(B64.to_numpy(a1["loss"])) > float(B64.to_numpy(a0["loss"]))
    assert rel_err(B64.to_numpy(reg["layers"][0]["w"]), B64.to_numpy(plain["layers"][0]["w"])) > 1e-3


def test_symmetric_needs_a_readout_connection():
    net = Network(2, [Dense(4), LIF(), Dense(4), LIF(), Dense(2), LeakyReadout()])
    p = net.init(0, backend="jax")
    with pytest.raises(ValueError, match="feedback: symmetric e-prop needs every hidden block to feed the readout"):
        make_rule("eprop").init(net, p)
    make_rule("eprop-random").init(net, p)  # random feedback reaches any block
    with pytest.raises(ValueError, match="feedback: unknown e-prop variant"):
        make_rule("eprop", feedback="mirror")


def test_online_training_reduces_loss(backend_name):
    from neuroplastic.data import from_arrays
    from neuroplastic.train import Trainer

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 192)
    x = rng.normal(0, 0.3, size=(10, 192, 2))
    x[:, :, 0] += y
    x[:, :, 1] += 1 - y
    d = from_arrays(x[:, :128], y[:128], x[:, 128:], y[128:])
    net = Network(2, [RecurrentDense(12), LIF(), Dense(2), LeakyReadout(tau_out=5.0)])
    for mode in ("online", "deferred"):
        accs = []
        for seed in (0, 1, 2):  # one seed's accuracy moves by machine: a margin over three
            tr = Trainer(net, "eprop", "ce_per_step", "adam", lr=5e-3, backend=backend_name, mode=mode, progress=False)
            _, hist = tr.fit(net.init(seed, backend=backend_name), d, epochs=3, batch_size=32, seed=seed)
            assert hist[-1]["train_loss"] < hist[0]["train_loss"], (mode, seed)
            accs.append(hist[-1]["test_acc"])
        assert np.mean(accs) > 0.7 and sum(a > 0.8 for a in accs) >= 2, (mode, accs)


@pytest.mark.slow
def test_eprop_on_mnist1d_beats_50_percent_and_symmetric_is_within_10_points_of_bptt():
    """The rule comparison's rows (``docs/rules-mnist1d.md``): same network and settings."""
    from .test_rule_ottt import mnist1d_accuracy

    ref = mnist1d_accuracy("bptt")
    res = {v: mnist1d_accuracy(f"eprop-{v}") for v in ("symmetric", "random", "adaptive")}
    print(ref, res)
    assert all(r["test_acc"] > 0.5 for r in res.values())
    assert res["symmetric"]["test_acc"] >= ref["test_acc"] - 0.10
