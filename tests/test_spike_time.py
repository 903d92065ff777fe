"""Exact spike-time gradients (Mostafa 2018): forward against a simulation, gradients against
finite differences and autodiff, temporal XOR and Yin-Yang through the trainer."""

from __future__ import annotations

import numpy as np
import pytest

from neuroplastic.backend import get_backend
from neuroplastic.data import from_arrays
from neuroplastic.losses import Objective
from neuroplastic.rules import make_rule
from neuroplastic.rules.spike_time import (
    FirstToSpike,
    SpikeTime,
    SpikeTimeNetwork,
    causal_mask,
    closed_form_time,
    encode_times,
    layer_forward,
    layer_vjp,
)
from neuroplastic.train import Trainer, make_optimizer

from .conftest import rel_err

THETA, TAU = 1.0, 1.0


def _layer_case(seed: int, n: int = 6, m: int = 5, batch: int = 4, p_silent: float = 0.2):
    rng = np.random.default_rng(seed)
    w = rng.normal(0.5, 0.6, (n, m))
    t = rng.uniform(0.0, 2.0, (batch, n))
    fired = rng.uniform(size=(batch, n)) > p_silent
    return w, t, fired


def _membrane(w, t, fired, grid, tau=TAU):
    """``V(t)`` ``(len(grid), m)`` of one example, straight from the kernel sum."""
    on = fired[:, None] & (grid[None, :] >= t[:, None])                    # (n, G)
    k = np.where(on, 1.0 - np.exp(-(grid[None, :] - t[:, None]) / tau), 0.0)
    return k.T @ w


# ---------------------------------------------------------------------------- forward
def test_forward_matches_simulated_membrane(B64):
    w, t, fired = _layer_case(0)
    t_max = 8.0
    t_out, f_out, _ = layer_forward(B64.asarray(w), B64.asarray(t), B64.asarray(fired), THETA, TAU, t_max)
    t_out, f_out = B64.to_numpy(t_out), B64.to_numpy(f_out)
    dt = 1e-4
    grid = np.arange(0.0, t_max, dt)
    for b in range(t.shape[0]):
        V = _membrane(w, t[b], fired[b], grid)
        for j in range(w.shape[1]):
            above = np.nonzero(V[:, j] >= THETA)[0]
            if len(above) == 0:
                assert not f_out[b, j] and t_out[b, j] == t_max
                continue
            assert f_out[b, j]
            # first grid point at or above threshold is within one step after the exact time
            assert t_out[b, j] <= grid[above[0]] + 1e-12 and grid[above[0]] - t_out[b, j] < dt
            # and the membrane is exactly at threshold there
            v_exact = _membrane(w, t[b], fired[b], np.array([t_out[b, j]]))[0, j]
            assert abs(v_exact - THETA) < 1e-9
    assert f_out.any() and not f_out.all()  # the case exercises both outcomes


def test_ties_and_silent_inputs(B64):
    # three inputs at the same time fire the neuron only together; silent inputs are ignored
    w = B64.asarray(np.array([[0.5], [0.5], [0.5], [5.0]]))
    t = B64.asarray(np.array([[1.0, 1.0, 1.0, 0.0]]))
    fired = B64.asarray(np.array([[True, True, True, False]]))
    t_out, f_out, t_last = layer_forward(w, t, fired, THETA, TAU, 10.0)
    expected = 1.0 + TAU * np.log(1.5 / 0.5)
    assert bool(B64.to_numpy(f_out)[0, 0])
    np.testing.assert_allclose(B64.to_numpy(t_out)[0, 0], expected, rtol=1e-12)
    assert B64.to_numpy(t_last)[0, 0] == 1.0
    # a neuron whose weights sum below theta never fires; t_max cuts late spikes
    t_out, f_out, _ = layer_forward(w * 0.5, t, fired, THETA, TAU, 10.0)
    assert not bool(B64.to_numpy(f_out)[0, 0]) and B64.to_numpy(t_out)[0, 0] == 10.0
    t_out, f_out, _ = layer_forward(w, t, fired, THETA, TAU, 2.0)
    assert not bool(B64.to_numpy(f_out)[0, 0]) and B64.to_numpy(t_out)[0, 0] == 2.0


def test_time_shift_equivariance(B64):
    net = SpikeTimeNetwork(5, [7, 3], t_max=50.0)
    p = net.init(1, backend=B64, dtype="float64")
    x = np.random.default_rng(2).uniform(0, 2, (1, 8, 5))
    times = B64.jit(lambda xs: net.spike_times(p, xs)[-1])
    t1 = B64.to_numpy(times(B64.asarray(x)))
    t2 = B64.to_numpy(times(B64.asarray(x + 3.0)))
    fired = t1 < 50.0
    assert fired.any()
    np.testing.assert_allclose(t2[fired], t1[fired] + 3.0, rtol=0, atol=1e-10)


# ---------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_layer_gradient_matches_finite_differences(B64, seed):
    """J^T g from the analytic formulas against central differences of the spike times."""
    w, t, fired = _layer_case(seed)
    t_max = 20.0
    rng = np.random.default_rng(100 + seed)
    g = rng.normal(size=(t.shape[0], w.shape[1]))

    def times(w_, t_):
        return B64.to_numpy(layer_forward(B64.asarray(w_), B64.asarray(t_), B64.asarray(fired), THETA, TAU, t_max)[0])

    t_out, f_out, t_last = layer_forward(B64.asarray(w), B64.asarray(t), B64.asarray(fired), THETA, TAU, t_max)
    gw, gt = layer_vjp(B64.asarray(w), B64.asarray(t), B64.asarray(fired), t_out, f_out, t_last, B64.asarray(g), THETA, TAU)
    gw, gt = B64.to_numpy(gw), B64.to_numpy(gt)
    eps = 1e-6
    num_w = np.zeros_like(w)
    for idx in np.ndindex(w.shape):
        d = np.zeros_like(w)
        d[idx] = eps
        num_w[idx] = np.sum(g * (times(w + d, t) - times(w - d, t))) / (2 * eps)
    num_t = np.zeros_like(t)
    for idx in np.ndindex(t.shape):
        d = np.zeros_like(t)
        d[idx] = eps
        num_t[idx] = np.sum(g * (times(w, t + d) - times(w, t - d))) / (2 * eps)
    assert np.abs(num_w).max() > 0.1 and np.abs(num_t).max() > 0.1
    np.testing.assert_allclose(gw, num_w, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gt, num_t * fired, rtol=1e-5, atol=1e-7)


def test_layer_gradient_matches_autodiff_of_closed_form(B64):
    """Autodiff of ``t = tau ln(sum_C w z / (sum_C w - theta))`` with the causal set held fixed."""
    rng = np.random.default_rng(3)
    w = np.abs(rng.normal(0.4, 0.6, (8, 6)))
    w[0] = -0.3                                   # one inhibitory input
    t = rng.uniform(0.0, 2.0, (5, 8))
    W, T, F = B64.asarray(w), B64.asarray(t), B64.asarray(np.ones((5, 8), dtype=bool))
    g = B64.asarray(np.random.default_rng(4).normal(size=(5, 6)))

    def compute(W, T, F, g):
        t_out, f_out, t_last = layer_forward(W, T, F, THETA, TAU, 30.0)
        mask = B64.astype(causal_mask(T, F, f_out, t_last), W.dtype)
        cf, pull = B64.vjp(lambda w_, t_: closed_form_time(w_, t_, mask, THETA, TAU), W, T)
        aw, at = pull(g)
        gw, gt = layer_vjp(W, T, F, t_out, f_out, t_last, g, THETA, TAU)
        _, gt1 = layer_vjp(W, T, F, t_out, f_out, t_last, B64.ones_like(t_out), THETA, TAU)
        return t_out, f_out, mask, cf, aw, at, gw, gt, gt1

    t_out, f_out, mask, cf, aw, at, gw, gt, gt1 = (B64.to_numpy(v) for v in B64.jit(compute)(W, T, F, g))
    sizes = mask.sum(axis=1)
    assert f_out.all() and sizes.min() < 8 and sizes.max() == 8   # partial and full causal sets
    # the closed form reproduces the forward times, and its autodiff the analytic gradient
    np.testing.assert_allclose(cf, t_out, rtol=1e-12)
    assert rel_err(gw, aw) < 1e-10
    assert rel_err(gt, at) < 1e-10
    # shifting every input shifts the output by as much: sum_i dt_out/dt_i = 1
    np.testing.assert_allclose(gt1.sum(axis=1), f_out.sum(axis=1), rtol=1e-10)


@pytest.mark.parametrize("penalty_inputs", ["fired", "all"])
def test_rule_gradient_matches_finite_differences_and_autodiff(B64, penalty_inputs):
    """The whole rule (two layers, loss and penalty) against central differences and against
    BPTT, i.e. autodiff through the same forward, plus the penalty."""
    net = SpikeTimeNetwork(5, [8, 3], t_max=20.0)
    p = net.init(3, backend=B64, dtype="float64")
    rng = np.random.default_rng(1)
    x = B64.asarray(rng.uniform(0, 2, (1, 6, 5)))
    y = B64.asarray(rng.integers(0, 3, 6))
    obj = Objective(FirstToSpike(temperature=0.7, alpha=0.05, beta=2.0))
    rule = SpikeTime(weight_penalty=0.5, penalty_inputs=penalty_inputs)
    grads, _, aux = B64.jit(lambda q: rule.gradients(net, q, {}, (x, y), obj))(p)
    fired = [B64.to_numpy(x[0]) < net.t_max] + [B64.to_numpy(s[0]) > 0 for s in aux["spikes"][:-1]]
    fired = [B64.asarray(f) for f in fired]  # held fixed: the penalty's inputs at these params

    def loss_array(q):
        out, _, rec = net.run(q, x)
        return obj(out, y, rec) + rule.penalty(net, q, fired)[0]

    loss_jit = B64.jit(loss_array)  # eager JAX compiles every op once per shape: slow

    def loss(q):
        return float(B64.to_numpy(loss_jit(q)))

    assert abs(loss(p) - float(B64.to_numpy(aux["loss"]))) < 1e-12
    pn = B64.tree_to_numpy(p)
    eps = 1e-6
    for l in range(2):
        w = pn["layers"][l]["w"]
        num = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            for s in (1, -1):
                q = {"layers": [{"w": d["w"].copy()} for d in pn["layers"]]}
                q["layers"][l]["w"][idx] += s * eps
                num[idx] += s * loss(B64.tree_asarray(q)) / (2 * eps)
        np.testing.assert_allclose(B64.to_numpy(grads["layers"][l]["w"]), num, rtol=1e-5, atol=1e-7)
    # autodiff through SpikeTimeNetwork.run (the "bptt" rule) plus the penalty's gradient
    auto, _, _ = B64.jit(lambda q: make_rule("bptt").gradients(net, q, {}, (x, y), obj))(p)
    _, pen_grads = rule.penalty(net, p, fired if penalty_inputs == "fired" else None)
    for l in range(2):
        ref = B64.to_numpy(auto["layers"][l]["w"]) + B64.to_numpy(pen_grads[l])
        assert rel_err(B64.to_numpy(grads["layers"][l]["w"]), ref) < 1e-10


def test_backends_agree():
    net = SpikeTimeNetwork(5, [10, 3])
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 2, (1, 16, 5)), rng.integers(0, 3, 16)
    out = {}
    for name in ("torch", "jax"):
        B = get_backend(name, dtype="float64")
        p = net.init(0, backend=B, dtype="float64")
        fn = B.jit(lambda q, xb, yb: SpikeTime().gradients(net, q, {}, (xb, yb), Objective(FirstToSpike(0.5))))
        g, _, aux = fn(p, B.asarray(x), B.asarray(y))
        out[name] = (B.to_numpy(aux["outputs"]), [B.to_numpy(d["w"]) for d in g["layers"]])
    np.testing.assert_allclose(out["torch"][0], out["jax"][0], rtol=1e-12)
    for a, b in zip(out["torch"][1], out["jax"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_max_norm_bounds_each_layer(B64):
    net = SpikeTimeNetwork(5, [8, 3])
    p = net.init(0, backend=B64, dtype="float64")
    rng = np.random.default_rng(0)
    batch = (B64.asarray(rng.uniform(0, 2, (1, 8, 5))), B64.asarray(rng.integers(0, 3, 8)))
    g, _, _ = B64.jit(lambda q: SpikeTime(max_norm=0.1).gradients(net, q, {}, batch, Objective(FirstToSpike(0.1))))(p)
    for d in g["layers"]:
        assert np.linalg.norm(B64.to_numpy(d["w"])) <= 0.1 + 1e-12


# ---------------------------------------------------------------------------- interface
def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="n_in"):
        SpikeTimeNetwork(0, [3])
    with pytest.raises(ValueError, match="sizes"):
        SpikeTimeNetwork(2, [])
    with pytest.raises(ValueError, match="threshold"):
        SpikeTimeNetwork(2, [3], threshold=0.0)
    with pytest.raises(ValueError, match="tau_syn"):
        SpikeTimeNetwork(2, [3], tau_syn=-1.0)
    with pytest.raises(ValueError, match="t_max"):
        SpikeTimeNetwork(2, [3], t_max=float("inf"))
    with pytest.raises(ValueError, match="init_std"):
        SpikeTimeNetwork(2, [3], init_std=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        FirstToSpike(temperature=0.0)
    with pytest.raises(ValueError, match="alpha"):
        FirstToSpike(alpha=-1.0)
    with pytest.raises(ValueError, match="weight_penalty"):
        SpikeTime(weight_penalty=-1.0)
    with pytest.raises(ValueError, match="penalty_inputs"):
        SpikeTime(penalty_inputs="some")
    with pytest.raises(ValueError, match="max_norm"):
        SpikeTime(max_norm=0.0)
    with pytest.raises(ValueError, match="features"):
        encode_times(np.zeros(3))
    B = get_backend("jax")
    net = SpikeTimeNetwork(2, [3, 2])
    p = net.init(0)
    with pytest.raises(ValueError, match="xs"):
        net.run(p, B.zeros((5, 4, 2)))
    with pytest.raises(ValueError, match="params"):
        net.run({"layers": p["layers"][:1]}, B.zeros((1, 4, 2)))
    from neuroplastic.layers import Dense
    from neuroplastic.network import Network

    with pytest.raises(ValueError, match="network"):
        SpikeTime().gradients(Network(2, [Dense(2)]), p, {}, (B.zeros((1, 4, 2)), B.zeros((4,))), Objective(FirstToSpike()))


def test_make_rule_and_encoding():
    assert isinstance(make_rule("spike_time", max_norm=1.0), SpikeTime)
    x = encode_times(np.array([[0.0, 1.0], [0.5, 0.25]]), t_early=0.0, t_late=2.0, bias_time=0.5)
    assert x.shape == (1, 2, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], [[0.0, 2.0, 0.5], [1.0, 0.5, 0.5]])


# ---------------------------------------------------------------------------- tasks
XOR_PATTERNS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)  # 0 = early, 1 = late
XOR_LABELS = np.array([0, 1, 1, 0])


def train_xor(backend: str, seed: int, epochs: int = 1500) -> tuple[float, SpikeTimeNetwork, dict]:
    """The tutorial's Fig. 7 task: 2 inputs (early at 0, late at tau) -> 4 hidden -> 2 outputs."""
    x = encode_times(XOR_PATTERNS, t_early=0.0, t_late=1.0)
    data = from_arrays(x, XOR_LABELS, x, XOR_LABELS, name="temporal-xor")
    net = SpikeTimeNetwork(2, [4, 2], t_max=10.0, init_std=2.0)
    opt = make_optimizer("adam", 1e-2, backend, schedule="cosine", total_steps=epochs)
    trainer = Trainer(net, SpikeTime(weight_penalty=1.0, max_norm=1.0), Objective(FirstToSpike(0.3)), opt,
                      backend=backend, progress=False)
    params, hist = trainer.fit(net.init(seed, backend=backend), data, epochs=epochs, batch_size=4, seed=seed)
    return hist[-1]["test_acc"], net, params


def xor_solved(backend: str, net: SpikeTimeNetwork, params: dict) -> bool:
    """All 4 patterns solved strictly: the labelled output fires (before t_max) and strictly first."""
    B = get_backend(backend)
    t_out = B.to_numpy(net.spike_times(params, B.asarray(encode_times(XOR_PATTERNS, 0.0, 1.0)))[-1])
    t_label, t_other = t_out[np.arange(4), XOR_LABELS], t_out[np.arange(4), 1 - XOR_LABELS]
    return bool(((t_label < net.t_max) & (t_label < t_other)).all())


def xor_seeds_solved(backend: str, seeds: range) -> list[int]:
    solved = []
    for seed in seeds:
        acc, net, params = train_xor(backend, seed)
        if xor_solved(backend, net, params):
            assert acc == 1.0  # strictly solved implies the trainer's argmax accuracy
            solved.append(seed)
    return solved


# Which seeds solve the XOR depends on the machine (the runs are chaotic: one seed's trajectory
# splits between CPUs after a few hundred steps), how many does not much.  Measured with
# examples/spike_time_xor.py --seeds 30 (docs/rules/spike_time.md): JAX 25/30 on two machines
# (failing seeds 7, 10, 27, 28, 29 on one; 0, 2, 11, 14, 29 on a 2-core AMD EPYC, the same with
# XLA_FLAGS=--xla_cpu_max_isa=AVX2), torch 21/30 (AMD EPYC).  For a success rate p per seed,
# "at least 3 of 6" fails by chance with probability 0.9% (p = 0.83, JAX) and "at least 6 of 12"
# with 0.1% (JAX) or 3.9% (p = 0.7, torch).  The AMD machine solves 4 of seeds 0-5 on JAX, and
# 9 (JAX) and 8 (torch) of seeds 0-11.
def test_temporal_xor_solved_by_most_seeds():
    solved = xor_seeds_solved("jax", range(6))
    assert len(solved) >= 3, f"only seeds {solved} of 0-5 solve the temporal XOR (measured: 25 of 30 seeds)"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_temporal_xor_seeds(backend):
    solved = xor_seeds_solved(backend, range(12))
    assert len(solved) >= 6, f"only seeds {solved} of 0-11 solve the temporal XOR on {backend}"


def yinyang_times(t_late: float = 2.0, bias_time: float = 0.0):
    """Yin-Yang as input spike times ``(1, N, 5)``: 4 features in ``[0, t_late]`` and a bias spike."""
    from neuroplastic.data import load_dataset

    data = load_dataset("yinyang")  # 5000 train / 1000 test, the reference seeds
    xtr, ytr, xte, yte = data.x_train[0], data.y_train, data.x_test[0], data.y_test
    return from_arrays(encode_times(xtr, 0.0, t_late, bias_time), ytr, encode_times(xte, 0.0, t_late, bias_time), yte,
                       name="yinyang-times")


def train_yinyang(backend: str, seed: int, epochs: int, lr: float = 2e-3) -> list[dict]:
    """examples/spike_time_yinyang.py's default setting (gradients clipped to norm 1: without it
    seed 0 ends with its outputs silent at lr 1e-3, docs/rules/spike_time.md), any epochs and lr."""
    data = yinyang_times()
    net = SpikeTimeNetwork(5, [120, 3], t_max=10.0)
    steps = epochs * -(-data.x_train.shape[1] // 32)
    opt = make_optimizer("adam", lr, backend, schedule="cosine", total_steps=steps)
    trainer = Trainer(net, SpikeTime(weight_penalty=1.0, max_norm=1.0), Objective(FirstToSpike(0.1)), opt,
                      backend=backend, progress=False)
    return trainer.fit(net.init(seed, backend=backend), data, epochs=epochs, batch_size=32, seed=seed)[1]


def test_yinyang_above_90_percent():
    hist = train_yinyang("jax", seed=0, epochs=8)
    assert hist[-1]["test_acc"] > 0.90


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_yinyang_reproduction(backend):
    hist = train_yinyang(backend, seed=1, epochs=30, lr=1e-3)
    assert hist[-1]["test_acc"] > 0.93
