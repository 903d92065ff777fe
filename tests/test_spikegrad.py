"""SpikeGrad: the event simulation equals the integer ANN exactly; gradients; training on digits."""

from __future__ import annotations

import numpy as np
import pytest

from neuroplastic.backend import get_backend
from neuroplastic.layers import AvgPool2d, Conv2d, Dense, RecurrentDense
from neuroplastic.losses import Objective, make_loss
from neuroplastic.rules import make_rule
from neuroplastic.rules.spikegrad import SpikeGrad, SpikeGradNet, relative_synops, round_half_away
from neuroplastic.rules.spikegrad_events import integer_ann_mismatches, simulate_batch, simulate_example

from .conftest import rel_err

CE = Objective(make_loss("ce_sum"))


def conv_net(threshold: float = 1.0, integer: bool = True) -> SpikeGradNet:
    """The paper's topology pattern, small: conv-pool-conv-pool-dense-dense."""
    return SpikeGradNet(
        (2, 6, 6),
        [Conv2d(3, 3, padding=1), AvgPool2d(2), Conv2d(4, 2), AvgPool2d(2), Dense(6, bias=True), Dense(5, bias=True)],
        threshold=threshold,
        integer=integer,
    )


def dense_net(threshold: float = 1.0) -> SpikeGradNet:
    return SpikeGradNet(12, [Dense(10, bias=True), Dense(8, bias=True), Dense(4, bias=True)], threshold=threshold)


def dyadic_params(net: SpikeGradNet, rng: np.random.Generator, denom: int = 8) -> dict:
    """Weights in ``[-Θ, Θ]``, multiples of ``Θ/denom``: every sum is exact in float64, in any order."""
    p = net.init_numpy(0)
    for lp in p["layers"]:
        for k in lp:
            lp[k] = rng.integers(-denom, denom + 1, lp[k].shape) / denom * net.threshold
    return p


def dyadic_inputs(net: SpikeGradNet, rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 9, (n,) + net.input_shape) / 4.0  # 0 .. 2 in steps of 1/4


# --------------------------------------------------------------------------- exact equivalence
@pytest.mark.parametrize(
    "make, thresholds, seed",
    [
        (conv_net, (1.0, 1.0), 0),
        (conv_net, (2.0, 1.0), 1),
        (dense_net, (1.0, 1.0), 2),
        (dense_net, (0.5, 2.0), 3),
    ],
)
def test_event_simulation_equals_integer_ann_layer_by_layer(make, thresholds, seed):
    theta, theta_bp = thresholds
    net = make(threshold=theta)
    rng = np.random.default_rng(seed)
    params = dyadic_params(net, rng)
    x = dyadic_inputs(net, rng, 5)
    y = rng.integers(0, net.n_out, 5)
    rule = SpikeGrad(alpha=20.0, error_threshold=theta_bp)
    B = get_backend("numpy", dtype="float64")
    ann = rule.integer_pass(net, B.tree_asarray(params), B.asarray(x), B.asarray(y))
    n_events = {}
    for order in ("fifo", "lifo", "random"):
        results, increments = simulate_batch(net, params, x, y, rule, order=order, seed=seed)
        for l in range(net.n_layers):
            ann_out = ann["outputs"][l].reshape(5, -1)
            sim_out = np.stack([r.outputs[l] for r in results])
            np.testing.assert_array_equal(sim_out, ann_out, err_msg=f"{order}: outputs of layer {l}")
            np.testing.assert_array_equal(np.stack([r.error_counts[l] for r in results]), ann["error_counts"][l].reshape(5, -1), err_msg=f"{order}: error counts of layer {l}")
            np.testing.assert_array_equal(np.stack([r.errors[l] for r in results]), ann["errors"][l].reshape(5, -1), err_msg=f"{order}: errors of layer {l}")
            for k in increments[l]:
                np.testing.assert_array_equal(increments[l][k], ann["increments"][l][k], err_msg=f"{order}: increments {k} of layer {l}")
            if l < net.n_layers - 1:
                # the network really spikes and really sends errors (the test is not vacuous)
                assert np.abs(sim_out).sum() > 0 and np.abs(ann["errors"][l]).sum() > 0
        # events can only exceed the ANN's minimal counts (redundant spikes), never fall short
        syn = {k: np.asarray(v) for k, v in ann["synops"].items()}
        fwd = sum(r.synops_fwd for r in results)
        bwd = sum(r.synops_bwd for r in results)
        assert np.all(fwd >= syn["fwd"]) and np.all(bwd >= syn["bwd"]) and fwd[0] == syn["fwd"][0]
        spikes = sum(r.spikes for r in results)
        assert np.all(spikes[:-1] >= [np.abs(o).sum() for o in ann["outputs"][:-1]])
        n_events[order] = (spikes.sum(), sum(r.error_spikes for r in results).sum())
    assert len(n_events) == 3


def wide_dense_net(threshold: float = 1.0) -> SpikeGradNet:
    return SpikeGradNet(64, [Dense(100, bias=True), Dense(10, bias=True)], threshold=threshold)


@pytest.mark.parametrize("make, dtype", [(conv_net, "float64"), (conv_net, "float32"), (wide_dense_net, "float32")])
def test_integer_ann_is_the_same_on_every_backend(backend_name, make, dtype):
    """Exact on dyadic values in float32 too; on JAX under jit, which also guards the synapse
    counts against XLA's CPU dot fusion (it miscomputes ``sum(x @ ones)`` under jit at these sizes)."""
    net = make()
    rng = np.random.default_rng(7)
    params = dyadic_params(net, rng)
    n = 64 if make is wide_dense_net else 4  # the XLA fusion bug shows from batch ~64 on
    x, y = dyadic_inputs(net, rng, n), rng.integers(0, net.n_out, n)
    rule = SpikeGrad(alpha=20.0)
    ref = rule.integer_pass(net, params, x, y)
    B = get_backend(backend_name, dtype=dtype)
    run = B.jit(lambda p, xx, yy: rule.integer_pass(net, p, xx, yy))  # one compilation on JAX
    got = run(B.tree_asarray(params), B.asarray(x), B.asarray(y))
    for key in ("outputs", "errors"):
        for a, b in zip(got[key], ref[key]):
            np.testing.assert_array_equal(B.to_numpy(a), b)
    for a, b in zip(got["increments"], ref["increments"]):
        for k in a:
            np.testing.assert_array_equal(B.to_numpy(a[k]), b[k])
    for k in ref["synops"]:
        np.testing.assert_array_equal(B.to_numpy(got["synops"][k]), ref["synops"][k])
    assert ref["synops"]["bwd"].sum() > 0


def test_without_residual_spikes_counts_carry_the_discretisation_error():
    net = dense_net()
    rng = np.random.default_rng(4)
    params = dyadic_params(net, rng)
    x, y = dyadic_inputs(net, rng, 6), rng.integers(0, net.n_out, 6)
    rule = SpikeGrad(alpha=20.0)
    ann = rule.integer_pass(net, params, x, y)
    results, _ = simulate_batch(net, params, x, y, rule, residual=False)
    s1 = np.stack([r.outputs[0] for r in results])
    a1 = np.maximum((x.reshape(6, -1) @ params["layers"][0]["w"] + params["layers"][0]["b"]) / net.threshold, 0.0)
    assert np.all(np.abs(s1 - a1) < 1.0)  # eq. 10: |SDE| < 1 for the first layer
    differs = any(not np.array_equal(np.stack([r.outputs[l] for r in results]), ann["outputs"][l]) for l in range(2))
    assert differs  # ...and the residual phase is what closes the gap


def test_integer_ann_mismatches_counts_zero_and_sees_a_difference():
    """The examples' equivalence check: 0 on exact (dyadic) weights, and every value counted when the ANN's
    first-layer outputs are off by one (so the check can fail)."""
    net, rng = dense_net(), np.random.default_rng(5)
    params = dyadic_params(net, rng)
    x, y = dyadic_inputs(net, rng, 4), rng.integers(0, net.n_out, 4)
    sims, ann, mismatched = integer_ann_mismatches(net, params, x, y, SpikeGrad(alpha=20.0))
    assert mismatched == 0 and len(sims) == 4 and np.abs(ann["outputs"][0]).sum() > 0

    class OffByOne(SpikeGrad):
        def integer_pass(self, *args, **kwargs):
            out = super().integer_pass(*args, **kwargs)
            out["outputs"] = [np.asarray(out["outputs"][0]) + 1.0, *out["outputs"][1:]]
            return out

    _, _, off = integer_ann_mismatches(net, params, x, y, OffByOne(alpha=20.0))
    assert off == 4 * net.sizes[0]


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("make", [conv_net, lambda threshold, integer: SpikeGradNet(5, [Dense(7, bias=True), Dense(3)], threshold, integer)])
def test_without_rounding_the_rule_is_exact_backprop(backend_name, make):
    B = get_backend(backend_name, dtype="float64")
    net = make(threshold=2.0, integer=False)
    rng = np.random.default_rng(0)
    params = net.init(1, backend=B, dtype="float64")
    xs = B.asarray(rng.uniform(0, 1, (1, 6, net.n_in)))
    y = B.asarray(rng.integers(0, net.n_out, 6))
    rule = SpikeGrad(alpha=3.0, error_threshold=0.5, round_errors=False)
    grads, _, aux = B.jit(lambda p, s, b: rule.gradients(net, p, s, b, CE))(params, rule.init(net, params), (xs, y))
    ref, _, ref_aux = B.jit(lambda p, b: make_rule("bptt").gradients(net, p, {}, b, CE))(params, (xs, y))
    assert abs(float(B.to_numpy(aux["loss"])) - float(B.to_numpy(ref_aux["loss"]))) < 1e-12
    for gl, rl in zip(grads["layers"], ref["layers"]):
        assert set(gl) == set(rl)
        for k in gl:
            np.testing.assert_allclose(B.to_numpy(gl[k]), B.to_numpy(rl[k]), rtol=1e-10, atol=1e-14)


def test_error_discretisation_converges_to_the_unrounded_gradient():
    net = conv_net()
    rng = np.random.default_rng(5)
    params = net.init(2, backend="numpy", dtype="float64")
    params["layers"][0]["w"] = params["layers"][0]["w"] * 4  # a few spikes per neuron
    xs, y = rng.uniform(0, 2, (1, 8, net.n_in)), rng.integers(0, net.n_out, 8)
    exact = SpikeGrad(round_errors=False).gradients(net, params, SpikeGrad().init(net, params), (xs, y), CE)[0]
    errs = []
    for alpha in (10.0, 100.0, 10000.0):
        g = SpikeGrad(alpha=alpha).gradients(net, params, SpikeGrad().init(net, params), (xs, y), CE)[0]
        errs.append(rel_err(np.concatenate([v.ravel() for lp in g["layers"] for v in lp.values()]),
                            np.concatenate([v.ravel() for lp in exact["layers"] for v in lp.values()])))
    assert errs[2] < errs[0] and errs[2] < 0.01


def test_round_half_away_and_synapse_counts():
    x = np.array([0.5, -0.5, 1.5, -2.5, 0.49999999999999994, 2.4999999999999996, 0.0, -0.7])
    np.testing.assert_array_equal(round_half_away(x), [1, -1, 2, -3, 0, 2, 0, -1])
    net = SpikeGradNet((1, 4, 4), [Conv2d(2, 3, padding=1), AvgPool2d(2), Dense(10)])
    # conv: 2 maps x sum over output pixels of valid taps (4 corners*4 + 8 edges*6 + 4 inner*9 = 100)
    assert net.count_connections() == [200, 32, 80]
    assert net.shapes == ((1, 4, 4), (2, 4, 4), (2, 2, 2), (10,)) and net.spiking == [True, True, False]


# --------------------------------------------------------------------------- training on digits
def _digits():
    """sklearn's 8x8 digits in [0, 1], 75/25 stratified split (test-local until data has a loader)."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from neuroplastic.data import from_arrays

    d = load_digits()
    x = d.data.astype(np.float32) / 16.0
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.25, random_state=0, stratify=d.target)
    return from_arrays(xtr[None], ytr, xte[None], yte, name="digits")


@pytest.fixture(scope="module")
def digits_runs():
    from neuroplastic.train import Trainer

    data = _digits()
    out = {}
    for mode in ("float", "spikegrad"):
        net = SpikeGradNet(64, [Dense(100, bias=True, gain=10.0), Dense(10, bias=True, gain=0.3)], integer=mode == "spikegrad")
        rule = SpikeGrad(alpha=100.0) if mode == "spikegrad" else "bptt"
        trainer = Trainer(net, rule, loss="ce_sum", optimizer="adam", lr=5e-3, backend="jax", progress=False)
        params, state, accs, bwd = net.init(0, backend="jax"), None, [], []
        prev = None
        for epoch in range(4):
            params, hist = trainer.fit(params, data, epochs=1, batch_size=64, seed=0, state=state, start_epoch=epoch)
            state = trainer.last_state
            accs.append(hist[-1]["test_acc"])
            if mode == "spikegrad":
                now = {k: np.array(v, dtype=np.float64) for k, v in state[1]["synops"].items()}
                epoch_counts = now if prev is None else {k: now[k] - prev[k] for k in now}
                bwd.append(relative_synops(epoch_counts, net)["bwd_total"])
                prev = now
        out[mode] = {"acc": accs, "bwd": bwd}
    return out


@pytest.mark.xdist_group("spikegrad-digits")  # one worker trains the module fixture once
def test_integer_ann_trains_within_two_points_of_float_backprop(digits_runs):
    spike, flt = digits_runs["spikegrad"]["acc"][-1], digits_runs["float"]["acc"][-1]
    assert flt > 0.93, digits_runs
    assert spike >= flt - 0.02, digits_runs


@pytest.mark.xdist_group("spikegrad-digits")  # one worker trains the module fixture once
def test_backward_synops_decrease_as_training_proceeds(digits_runs):
    bwd = digits_runs["spikegrad"]["bwd"]
    assert all(b > 0 for b in bwd)
    assert all(later < earlier for earlier, later in zip(bwd, bwd[1:])), bwd
    assert bwd[-1] < 0.6 * bwd[0], bwd


def test_trainer_on_torch_logs_synops_in_the_rule_state():
    from neuroplastic.data import from_arrays
    from neuroplastic.train import Trainer

    rng = np.random.default_rng(0)
    net = conv_net()
    x = rng.uniform(0, 2, (1, 40, net.n_in)).astype(np.float32)
    y = rng.integers(0, net.n_out, 40)
    data = from_arrays(x, y, x[:, :10], y[:10])
    trainer = Trainer(net, "spikegrad", optimizer="sgd", lr=0.1, backend="torch", progress=False)
    params = net.init(0, backend="torch")
    params, hist = trainer.fit(params, data, epochs=1, batch_size=16)
    synops = trainer.last_state[1]["synops"]
    assert float(trainer.last_state[1]["examples"]) == 40
    assert tuple(synops["macs"].shape) == (net.n_layers,)
    np.testing.assert_allclose(synops["macs"].numpy(), 40 * np.array(net.count_connections()), rtol=1e-6)
    rel = relative_synops(synops, net)
    assert rel["bwd"][0] is None and rel["bwd_total"] > 0 and rel["fwd_total"] > 0
    assert np.isfinite(hist[-1]["train_loss"]) and hist[-1]["spikes_per_step"][-1] is None


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SpikeGrad(alpha=0.0), "alpha"),
        (lambda: SpikeGrad(error_threshold=-1.0), "error_threshold"),
        (lambda: SpikeGradNet(0, [Dense(3)]), "input_shape"),
        (lambda: SpikeGradNet((8, 8), [Dense(3)]), "input_shape"),
        (lambda: SpikeGradNet(4, []), "layers"),
        (lambda: SpikeGradNet(4, [RecurrentDense(3)]), r"layers\[0\]"),
        (lambda: SpikeGradNet(16, [Dense(16), Conv2d(2, 3)]), r"layers\[1\]"),
        (lambda: SpikeGradNet(4, [Dense(3)], threshold=0.0), "threshold"),
        (lambda: SpikeGrad().init(object(), {}), "network"),
        (lambda: dense_net().image(np.zeros((1, 3, 5))), "xs"),
        (lambda: dense_net().image(np.zeros((3, 12))), "xs"),
        (lambda: dense_net().image(np.full((1, 2, 12), np.nan)), "xs"),
        (lambda: SpikeGrad().gradients(dense_net(), dense_net().init_numpy(0), {}, (np.zeros((1, 2, 12)), np.zeros(2, int)), Objective(make_loss("mse_count"))), "objective"),
        (lambda: simulate_example(dense_net(), dense_net().init_numpy(0), np.zeros(12), 0, SpikeGrad(), order="sorted"), "order"),
        (lambda: simulate_example(dense_net(), dense_net().init_numpy(0), np.zeros(5), 0, SpikeGrad()), "image"),
        (lambda: simulate_example(dense_net(), dense_net().init_numpy(0), np.zeros(12), 0, SpikeGrad(round_errors=False)), "rule"),
    ],
)
def test_bad_arguments_raise_named_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
