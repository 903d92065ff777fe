"""OTTT: its closed form (numpy), BPTT where it is exact, offline == deferred, learning, MNIST-1D."""

from __future__ import annotations

import numpy as np
import pytest

from neuroplastic.backend import get_backend
from neuroplastic.cells import LIF, Identity, LeakyReadout
from neuroplastic.data import from_arrays
from neuroplastic.layers import Dense, RecurrentDense
from neuroplastic.losses import Objective, RateRegularizer, make_loss
from neuroplastic.network import Link, Network
from neuroplastic.rules import make_rule
from neuroplastic.rules.base import OnlineRule
from neuroplastic.tree import tree_flatten_dict

from .conftest import rel_err


def flat(B, g) -> np.ndarray:
    return np.concatenate([B.to_numpy(v).ravel() for v in tree_flatten_dict(g).values()])


def cosine(a, b) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


#: float64 torch: ground-truth comparisons run here (fast, eager); each rule's file also
#: checks that JAX gives the same numbers (:func:`same_on_both_backends`) and learns on JAX.
T64 = get_backend("torch", dtype="float64")

#: (backend, mode) of the learning tests: both modes on torch, the online scan jitted on JAX
LEARNING = [("torch", "offline"), ("torch", "online"), ("jax", "online")]


def same_on_both_backends(net: Network, rule: str, batch: tuple, objective: Objective, seed: int = 0, deferred: bool = False, **options) -> dict:
    """The rule's gradients from the same numpy parameters, batch and rule state on torch and
    on JAX (float64), checked equal; returns the torch gradients."""
    p0 = net.init_numpy(seed)
    state = None
    out = {}
    for name in ("torch", "jax"):
        B = get_backend(name, dtype="float64")
        r = make_rule(rule, **options)
        p = B.tree_asarray(p0)
        if state is None:
            state = T64.tree_to_numpy(r.init(net, p, B.key(0)))
        st = B.tree_asarray(state)
        xb = (B.asarray(batch[0]), B.asarray(batch[1]))
        fn = OnlineRule.gradients if deferred else type(r).gradients
        g = B.jit(lambda p_, st_, x_, y_: fn(r, net, p_, st_, (x_, y_), objective)[0])(p, st, *xb)
        out[name] = {k: B.to_numpy(v) for k, v in tree_flatten_dict(g).items()}
    a = np.concatenate([v.ravel() for v in out["torch"].values()])
    b = np.concatenate([v.ravel() for v in out["jax"].values()])
    assert np.abs(a).sum() > 0 and rel_err(b, a) <= 1e-9
    return out["torch"]


def jit_gradients(B, rule, net: Network, params: dict, rule_state, batch: tuple, objective: Objective):
    """``rule.gradients(...)`` compiled once on JAX (eager JAX dispatch is slow); ``(grads, aux)``."""
    fn = B.jit(lambda p_, st_, x_, y_: rule.gradients(net, p_, st_, (x_, y_), objective))
    g, _, aux = fn(params, rule_state, *batch)
    return g, aux


def separable(seed: int = 0, n: int = 192, T: int = 8, noise: float = 0.3):
    """Two classes told apart by which of the first two channels is raised."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0.0, noise, size=(T, n, 4))
    x[:, :, 0] += 1.5 * (y == 0)
    x[:, :, 1] += 1.5 * (y == 1)
    k = n * 3 // 4
    return from_arrays(x[:, :k], y[:k], x[:, k:], y[k:])


def loss_goes_down(backend_name: str, rule: str, mode: str, network: Network | None = None, loss: str = "ce_per_step", epochs: int = 3, batch_size: int = 48, **rule_options) -> list:
    """Train on :func:`separable` and return the per-epoch training losses (the test asserts they fall)."""
    from neuroplastic.train import Trainer

    net = network or Network(4, [RecurrentDense(12), LIF(tau_mem=10.0), Dense(2), LeakyReadout(tau_out=10.0)])
    tr = Trainer(net, make_rule(rule, **rule_options), loss, "adam", lr=1e-2, backend=backend_name, mode=mode, progress=False)
    _, hist = tr.fit(net.init(0, backend=backend_name), separable(), epochs=epochs, batch_size=batch_size)
    return [h["train_loss"] for h in hist]


def lif_numpy(x, W, alpha, thr=1.0):
    """A voltage-based LIF layer with subtractive reset: membranes ``u_t`` and spikes ``z_t``."""
    v = np.zeros((x.shape[1], W.shape[1]))
    us, zs = [], []
    for x_t in x:
        u = alpha * v + x_t @ W
        z = (u > thr).astype(float)
        v = u - z * thr
        us.append(u)
        zs.append(z)
    return np.array(us), np.array(zs)


def fast_sigmoid(u, beta=10.0):
    return 1.0 / (1.0 + beta * np.abs(u)) ** 2


@pytest.mark.parametrize("backend_name", ["torch", "jax"])
def test_ottt_single_layer_closed_form_and_bptt(backend_name):
    """One LIF layer, detached reset, per-step loss on its spikes: OTTT's sum of
    ``a_t^T (dl_t/dz_t * sigma'_t)`` (numpy) equals the rule and equals BPTT."""
    B64 = get_backend(backend_name, dtype="float64")
    rng = np.random.default_rng(0)
    T, n_b, n_in, n = 10, 3, 4, 5
    x = rng.normal(0.6, 1.0, (T, n_b, n_in))
    s = (rng.random((T, n_b, n)) < 0.3).astype(float)
    net = Network(n_in, [Dense(n), LIF(tau_mem=5.0)])
    p = net.init(1, backend=B64)
    W, alpha = B64.to_numpy(p["layers"][0]["w"]), net.blocks[0].cell.alpha
    u, z = lif_numpy(x, W, alpha)
    assert z.sum() > 0
    a, G = np.zeros((n_b, n_in)), np.zeros_like(W)
    for t in range(T):
        a = alpha * a + x[t]
        G += a.T @ ((z[t] - s[t]) / (n_b * T) * fast_sigmoid(u[t] - 1.0))
    obj = Objective(make_loss("mse_membrane"))
    batch = (B64.asarray(x), B64.asarray(s))
    g = jit_gradients(B64, make_rule("ottt"), net, p, {}, batch, obj)[0]
    if backend_name == "jax":  # the rest is checked on torch
        assert rel_err(B64.to_numpy(g["layers"][0]["w"]), G) <= 1e-10
        return
    assert rel_err(B64.to_numpy(g["layers"][0]["w"]), G) <= 1e-10
    g_bptt = make_rule("bptt").gradients(net, p, {}, batch, obj)[0]
    assert rel_err(flat(B64, g), flat(B64, g_bptt)) <= 1e-10


def test_ottt_equals_bptt_under_a_memoryless_readout_only():
    """One hidden LIF layer: exact with an Identity readout; with a leaky readout OTTT drops
    the readout's memory of earlier spikes, so it is close to but not equal to BPTT."""
    B64 = T64
    rng = np.random.default_rng(1)
    batch = (B64.asarray(rng.normal(0.8, 1.0, (12, 4, 3))), B64.asarray(rng.integers(0, 3, 4)))
    obj = Objective(make_loss("ce_per_step"))
    exact = Network(3, [Dense(7), LIF(tau_mem=5.0), Dense(3), Identity()])
    p = exact.init(0, backend=B64)
    a = flat(B64, make_rule("bptt").gradients(exact, p, {}, batch, obj)[0])
    b = flat(B64, make_rule("ottt").gradients(exact, p, {}, batch, obj)[0])
    assert np.abs(a).sum() > 0 and rel_err(b, a) <= 1e-10
    leaky = Network(3, [Dense(7), LIF(tau_mem=5.0), Dense(3), LeakyReadout(tau_out=5.0)])
    a = flat(B64, make_rule("bptt").gradients(leaky, p, {}, batch, obj)[0])
    b = flat(B64, make_rule("ottt").gradients(leaky, p, {}, batch, obj)[0])
    assert 0.5 < cosine(a, b) < 0.999


def test_ottt_offline_equals_deferred_with_links_and_bias():
    """The two-pass offline form equals the summed online steps for a per-step loss
    (recurrent block, bias, a skip link, a current-based LIF)."""
    B64 = T64
    net = Network(
        3,
        [RecurrentDense(6, bias=True), LIF(tau_mem=5.0, tau_syn=3.0), Dense(5), LIF(tau_mem=8.0), Dense(3), LeakyReadout(tau_out=5.0)],
        links=[Link(0, 2)],
    )
    rng = np.random.default_rng(2)
    batch = (B64.asarray(rng.normal(0.8, 1.0, (9, 3, 3))), B64.asarray(rng.integers(0, 3, 3)))
    p = net.init(3, backend=B64)
    obj = Objective(make_loss("ce_per_step"))
    rule = make_rule("ottt")
    g_off, _, aux = rule.gradients(net, p, {}, batch, obj)
    g_def, _, aux_def = OnlineRule.gradients(rule, net, p, {}, batch, obj)
    a, b = flat(B64, g_off), flat(B64, g_def)
    assert np.abs(a).sum() > 0 and rel_err(a, b) <= 1e-10
    assert abs(float(B64.to_numpy(aux["loss"])) - float(B64.to_numpy(aux_def["loss"]))) <= 1e-10
    assert float(np.abs(B64.to_numpy(g_off["links"][0]["w"])).sum()) > 0


def test_ottt_offline_takes_any_loss_and_the_regulariser():
    B64 = T64
    net = Network(3, [Dense(6), LIF(tau_mem=5.0), Dense(3), LeakyReadout(tau_out=5.0)])
    rng = np.random.default_rng(3)
    batch = (B64.asarray(rng.normal(0.8, 1.0, (10, 4, 3))), B64.asarray(rng.integers(0, 3, 4)))
    p = net.init(0, backend=B64)
    obj = Objective(make_loss("ce_mean"), RateRegularizer(10.0, 1.0))
    g, _, aux = make_rule("ottt").gradients(net, p, {}, batch, obj)
    g_b, _, aux_b = make_rule("bptt").gradients(net, p, {}, batch, obj)
    assert abs(float(B64.to_numpy(aux["loss"])) - float(B64.to_numpy(aux_b["loss"]))) <= 1e-12
    assert cosine(flat(B64, g), flat(B64, g_b)) > 0.8


@pytest.mark.parametrize("backend_name,mode", LEARNING)
def test_ottt_moves_the_loss_down(backend_name, mode):
    losses = loss_goes_down(backend_name, "ottt", mode)
    assert losses[-1] < 0.6 * losses[0]


def test_ottt_errors():
    from neuroplastic.train import Trainer

    net = Network(3, [Dense(4), LIF(train_decay=True), Dense(2), LeakyReadout()])
    with pytest.raises(ValueError, match="train_decay"):
        make_rule("ottt").init(net, net.init(0, backend="torch"), None)
    net = Network(3, [Dense(4), LIF(), Dense(2), LeakyReadout()])
    with pytest.raises(ValueError, match="regulariser in offline mode only"):  # refused when the trainer is made
        Trainer(net, "ottt", Objective(make_loss("ce_per_step"), RateRegularizer()), backend="torch", mode="online", progress=False)


# --------------------------------------------------------------------------- MNIST-1D
def mnist1d_accuracy(row: str, epochs: int = 60, **overrides) -> dict:
    """Train ``row`` of the rule comparison (``examples/compare_rules_mnist1d.py``, the table in
    ``docs/rules-mnist1d.md``) with its shared network and settings: 128 recurrent LIF units
    (``tau_mem = 1``), leaky readout, ``ce_mean`` plus a 10 Hz rate regulariser, Adam 5e-3
    with cosine decay, batch 64, JAX.  Returns the table's row (``test_acc``, ``best_test_acc``, ...)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "compare_rules_mnist1d.py"
    spec = importlib.util.spec_from_file_location("compare_rules_mnist1d", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example.train_rule(row, epochs, **overrides)


@pytest.mark.slow
@pytest.mark.parametrize("row", ["ottt", "ottt-online"])
def test_ottt_beats_50_percent_on_mnist1d(row):
    """Offline (two-pass) and online (an update per time step) OTTT, as in the table."""
    res = mnist1d_accuracy(row)
    print(res)
    assert res["test_acc"] > 0.5
