"""Trace feedback (the rule of docs/adding-a-rule.md): BPTT where it is exact, e-prop where they coincide, learning."""

from __future__ import annotations

import numpy as np
import pytest

from neuroplastic.backend import get_backend
from neuroplastic.cells import ALIF, LIF, Identity, LeakyReadout
from neuroplastic.layers import Dense
from neuroplastic.losses import Objective, make_loss
from neuroplastic.network import Network
from neuroplastic.rules import make_rule, run_online
from neuroplastic.tree import tree_flatten_dict

from .conftest import rel_err

T64 = get_backend("torch", dtype="float64")
J64 = get_backend("jax", dtype="float64")


def flat(B, tree) -> np.ndarray:
    d = tree_flatten_dict(tree)  # by path: JAX returns gradients with sorted keys
    return np.concatenate([np.asarray(B.to_numpy(d[k]), dtype=np.float64).ravel() for k in sorted(d)])


def batch(B, T=15, n=4, n_in=3, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return B.asarray(rng.normal(0.8, 1.0, (T, n, n_in))), B.asarray(rng.integers(0, classes, n))


def deferred(rule, net, p, st, data, obj):
    return run_online(rule, net, p, st, data, obj, "deferred", None, None)[1]


@pytest.mark.parametrize("B", [T64, J64], ids=["torch", "jax"])
def test_with_the_readout_weights_as_feedback_it_is_bptt_on_one_hidden_lif_layer(B):
    net = Network(3, [Dense(6, bias=True), LIF(tau_mem=4.0), Dense(3, bias=True), Identity()])
    p = net.init(0, backend=B)
    data, obj = batch(B), Objective(make_loss("ce_per_step"))
    rule = make_rule("trace-feedback")
    st = {"feedback": [p["layers"][1]["w"]]}
    g = flat(B, deferred(rule, net, p, st, data, obj))
    g_bptt = flat(B, make_rule("bptt").gradients(net, p, {}, data, obj)[0])
    assert np.abs(g_bptt).sum() > 0
    assert rel_err(g, g_bptt) <= 1e-10


def test_it_is_random_eprop_with_presynaptic_traces_for_lif_and_not_for_alif():
    B = T64
    obj = Objective(make_loss("ce_per_step"))
    data = batch(B)
    for cell, exact in ((LIF(tau_mem=4.0), True), (ALIF(tau_mem=4.0, tau_adapt=10.0), False)):
        net = Network(3, [Dense(6), cell, Dense(3), Identity()])
        p = net.init(1, backend=B)
        tf, ep = make_rule("trace-feedback"), make_rule("eprop-random")
        st = tf.init(net, p, B.key(2))
        g_tf = flat(B, deferred(tf, net, p, st, data, obj))
        g_ep = flat(B, deferred(ep, net, p, st, data, obj))
        err = rel_err(g_tf, g_ep)
        assert (err <= 1e-10) if exact else (err > 1e-3), (type(cell).__name__, err)


def test_it_learns_online_on_both_backends():
    from neuroplastic.data import from_arrays
    from neuroplastic.train import Trainer

    rng = np.random.default_rng(0)
    n, T = 128, 10
    y = rng.integers(0, 2, n)
    x = (rng.normal(0.0, 0.3, (T, n, 3)) + np.where(y[None, :, None] == 1, 1.0, 0.0) * np.array([1.0, -1.0, 0.5])).astype(np.float32)
    data = from_arrays(x[:, :96], y[:96], x[:, 96:], y[96:])
    losses = {}
    for backend in ("torch", "jax"):
        net = Network(3, [Dense(16), LIF(tau_mem=3.0), Dense(2), LeakyReadout(tau_out=3.0)])
        tr = Trainer(net, "trace-feedback", "ce_per_step", "adam", lr=3e-3, backend=backend, mode="online", progress=False)
        p = net.init(0, backend=backend)
        before = tr.evaluate(p, data.x_train, data.y_train)["loss"]
        p, _ = tr.fit(p, data, epochs=3, batch_size=32, seed=0)
        losses[backend] = (before, tr.evaluate(p, data.x_train, data.y_train)["loss"])
        assert losses[backend][1] < 0.9 * before, (backend, losses[backend])


def test_the_class_is_at_most_25_lines():
    import inspect

    from neuroplastic.rules.trace_feedback import TraceFeedback

    assert len(inspect.getsource(TraceFeedback).rstrip().splitlines()) <= 25
