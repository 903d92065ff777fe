"""FPTT: the online run equals Algorithm 1 written out by hand; learning; combined with OTTT."""

from __future__ import annotations

import numpy as np
import pytest

from neuroplastic.cells import LIF, LeakyReadout
from neuroplastic.layers import Dense, RecurrentDense
from neuroplastic.losses import Objective, make_loss
from neuroplastic.network import Network
from neuroplastic.rules import make_rule, run_online
from neuroplastic.train.optimizers import NaiveOptimizer
from neuroplastic.tree import tree_map

from .conftest import rel_err
from .test_rule_ottt import T64, flat, loss_goes_down


def test_fptt_online_run_is_algorithm_1():
    """Per step: d_t = grad l_t(W_t) + alpha (W_t - Wbar_t) - lambda_t / 2 with grad l_t through
    the current step only; W <- W - lr d_t; lambda <- grad l_t; Wbar <- (Wbar + W)/2 - lambda/(2 alpha)."""
    B64 = T64
    net = Network(3, [RecurrentDense(6), LIF(tau_mem=5.0), Dense(3), LeakyReadout(tau_out=5.0)])
    rng = np.random.default_rng(0)
    xs, ys = B64.asarray(rng.normal(0.8, 1.0, (8, 4, 3))), B64.asarray(rng.integers(0, 3, 4))
    p0 = net.init(0, backend=B64)
    obj = Objective(make_loss("ce_per_step"))
    alpha, lr, T = 0.3, 0.5, xs.shape[0]

    # by hand
    W = p0
    wbar = tree_map(lambda w: w + 0.0, W)
    lam = B64.tree_zeros_like(W)
    state = net.initial_state(B64, 4)
    for t in range(T):
        def step_loss(q, state=state, t=t):
            new_state, y = net.step(q, B64.tree_stop_gradient(state), xs[t])
            return obj.loss.per_step(y, ys, t, T), new_state

        (_, state), g = B64.value_and_grad(step_loss, has_aux=True)(W)
        d = tree_map(lambda g_, w, wb, l_: g_ + alpha * (w - wb) - 0.5 * l_, g, W, wbar, lam)
        W = tree_map(lambda w, d_: w - lr * d_, W, d)
        lam = g
        wbar = tree_map(lambda wb, w, l_: 0.5 * (wb + w) - l_ / (2 * alpha), wbar, W, lam)

    rule = make_rule("fptt", alpha=alpha)
    params, gsum, _, aux, _ = run_online(rule, net, p0, rule.init(net, p0, B64.key(0)), (xs, ys), obj, "online", NaiveOptimizer(lr), {})
    assert rel_err(flat(B64, params), flat(B64, W)) <= 1e-12
    assert rel_err(flat(B64, params), flat(B64, p0)) > 1e-3  # it did move


@pytest.mark.parametrize("backend_name", ["torch", "jax"])
def test_fptt_moves_the_loss_down(backend_name):
    losses = loss_goes_down(backend_name, "fptt", "online")
    assert losses[-1] < 0.6 * losses[0]


def test_fptt_combines_with_an_online_rule():
    """On the first step Wbar = W and lambda = 0, so FPTT's update is the base rule's."""
    B64 = T64
    net = Network(3, [Dense(6), LIF(tau_mem=5.0), Dense(3), LeakyReadout(tau_out=5.0)])
    rng = np.random.default_rng(1)
    xs, ys = B64.asarray(rng.normal(0.8, 1.0, (1, 4, 3))), B64.asarray(rng.integers(0, 3, 4))
    p = net.init(0, backend=B64)
    obj = Objective(make_loss("ce_per_step"))
    fptt, ottt = make_rule("fptt", base="ottt"), make_rule("ottt")
    g_f = run_online(fptt, net, p, fptt.init(net, p), (xs, ys), obj, "online", NaiveOptimizer(0.1), {})[1]
    g_o = run_online(ottt, net, p, ottt.init(net, p), (xs, ys), obj, "deferred", None, None)[1]
    assert rel_err(flat(B64, g_f), flat(B64, g_o)) <= 1e-12


def test_fptt_with_ottt_moves_the_loss_down():
    losses = loss_goes_down("torch", "fptt", "online", base="ottt", alpha=0.1)
    assert losses[-1] < 0.6 * losses[0]


def test_fptt_errors():
    from neuroplastic.train import Trainer

    net = Network(3, [Dense(4), LIF(), Dense(2), LeakyReadout()])
    with pytest.raises(ValueError, match="cannot train in mode 'offline'"):
        Trainer(net, "fptt", "ce_per_step", backend="torch", mode="offline")
    with pytest.raises(ValueError, match="alpha"):
        make_rule("fptt", alpha=0.0)
    with pytest.raises(ValueError, match="online rule"):
        make_rule("fptt", base="bptt")
    with pytest.raises(ValueError, match="mode='online'"):
        make_rule("fptt").gradients(net, net.init(0, backend="torch"), {}, (None, None), Objective(make_loss("ce_sum")))
