"""RTRL equals BPTT on a deep recurrent ALIF network; OSTL equals BPTT on one recurrence-free layer."""

import numpy as np
import pytest

from neuroplastic.cells import ALIF, LIF, LeakyReadout
from neuroplastic.layers import Dense, RecurrentDense
from neuroplastic.losses import Objective, RateRegularizer, make_loss
from neuroplastic.network import Network
from neuroplastic.rules import make_rule
from neuroplastic.rules.base import OnlineRule
from neuroplastic.tree import tree_flatten_dict

from .conftest import rel_err


def flat(B, g):
    return np.concatenate([B.to_numpy(v).ravel() for v in tree_flatten_dict(g).values()])


def cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_rtrl_equals_bptt_on_two_recurrent_alif_layers(B64):
    net = Network(3, [RecurrentDense(8), ALIF(tau_adapt=50.0), RecurrentDense(6), ALIF(tau_adapt=30.0), Dense(3), LeakyReadout(tau_out=5.0)])
    rng = np.random.default_rng(0)
    batch = (B64.asarray(rng.normal(0.5, 1.0, (50, 3, 3))), B64.asarray(rng.integers(0, 3, 3)))
    p = net.init(0, backend=B64)
    obj = Objective(make_loss("ce_sum"), RateRegularizer(10.0, 1.0))
    g_b, _, aux_b = make_rule("bptt").gradients(net, p, {}, batch, obj)
    g_r, _, aux_r = make_rule("rtrl").gradients(net, p, {}, batch, obj)
    a, b = flat(B64, g_b), flat(B64, g_r)
    assert np.abs(a).sum() > 0
    assert cosine(a, b) >= 0.99999
    assert rel_err(b, a) <= 1e-4
    assert sum(float(B64.to_numpy(z).sum()) for z in aux_r["spikes"][:2]) > 0  # the check involves spikes


def test_online_rtrl_equals_bptt_for_a_per_step_loss(B64):
    net = Network(2, [RecurrentDense(5), LIF(), Dense(2), LeakyReadout(tau_out=4.0)])
    rng = np.random.default_rng(1)
    batch = (B64.asarray(rng.normal(0.8, 1.0, (15, 2, 2))), B64.asarray(rng.integers(0, 2, 2)))
    p = net.init(2, backend=B64)
    obj = Objective(make_loss("ce_per_step"))
    g_b, _, _ = make_rule("bptt").gradients(net, p, {}, batch, obj)
    rule = make_rule("rtrl")
    g_o, _, _ = OnlineRule.gradients(rule, net, p, {}, batch, obj)
    assert rel_err(flat(B64, g_o), flat(B64, g_b)) <= 1e-10


def test_ostl_equals_bptt_on_one_layer(B64):
    net = Network(3, [Dense(9), ALIF(), Dense(3), LeakyReadout(tau_out=5.0)])
    rng = np.random.default_rng(2)
    batch = (B64.asarray(rng.normal(0.6, 1.0, (30, 4, 3))), B64.asarray(rng.integers(0, 3, 4)))
    p = net.init(1, backend=B64)
    obj = Objective(make_loss("ce_sum"))
    a = flat(B64, make_rule("bptt").gradients(net, p, {}, batch, obj)[0])
    b = flat(B64, make_rule("ostl").gradients(net, p, {}, batch, obj)[0])
    assert cosine(a, b) >= 0.99999 and rel_err(b, a) <= 1e-9


def test_ostl_deep_spatial_signal_beats_random_feedback(B64):
    """Defining property: on deep feed-forward nets, OSTL's same-step backprop aligns with BPTT
    better than broadcast random feedback, and exactly matches BPTT for the top hidden layer."""
    net = Network(3, [Dense(16), LIF(tau_mem=5.0), Dense(12), LIF(tau_mem=5.0), Dense(3), LeakyReadout(tau_out=5.0)], links=[])
    rng = np.random.default_rng(3)
    batch = (B64.asarray(rng.normal(0.8, 1.0, (20, 8, 3))), B64.asarray(rng.integers(0, 3, 8)))
    p = net.init(4, backend=B64)
    obj = Objective(make_loss("ce_sum"))
    g_b = make_rule("bptt").gradients(net, p, {}, batch, obj)[0]
    g_o = make_rule("ostl").gradients(net, p, {}, batch, obj)[0]
    rule = make_rule("eprop-random")
    g_r = rule.gradients(net, p, rule.init(net, p, B64.key(0)), batch, obj)[0]
    top = lambda g: B64.to_numpy(g["layers"][1]["w"]).ravel()  # noqa: E731
    assert rel_err(top(g_o), top(g_b)) <= 1e-9
    low = lambda g: B64.to_numpy(g["layers"][0]["w"]).ravel()  # noqa: E731
    assert cosine(low(g_o), low(g_b)) > max(0.5, cosine(low(g_r), low(g_b)))


@pytest.mark.slow
def test_ostl_beats_50_percent_on_mnist1d():
    """The rule comparison's row (``docs/rules-mnist1d.md``)."""
    from .test_rule_ottt import mnist1d_accuracy

    res = mnist1d_accuracy("ostl")
    print(res)
    assert res["test_acc"] > 0.5
