"""BPTT against finite differences on a smooth cell, and truncated BPTT's limits."""

import numpy as np
import pytest

from neuroplastic.cells import ALIF, LeakyReadout, TanhRNN
from neuroplastic.layers import Dense, RecurrentDense
from neuroplastic.losses import Objective, make_loss
from neuroplastic.network import Network
from neuroplastic.rules import make_rule
from neuroplastic.tree import tree_flatten_dict, tree_map

from .conftest import rel_err


def _loss_fn(B, net, batch, objective):
    def value(params):
        ys, _, rec = net.run(params, batch[0])
        return objective(ys, batch[1], rec, net.spiking)

    return B.jit(value)


@pytest.mark.parametrize("loss", ["ce_sum", "ce_last", "mse_membrane"])
def test_bptt_matches_finite_differences_on_tanh_rnn(B64, loss):
    net = Network(3, [RecurrentDense(6, rec_gain=0.9, bias=True), TanhRNN(leak=0.3), Dense(4), LeakyReadout(tau_out=5.0)])
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(12, 2, 3))
    targets = rng.normal(size=(12, 2, 4)) if loss == "mse_membrane" else rng.integers(0, 4, size=2)
    params = net.init(1, backend=B64)
    params["layers"][0]["b"] = B64.asarray(rng.normal(0, 0.1, 6))
    batch = (B64.asarray(xs), B64.asarray(targets))
    objective = Objective(make_loss(loss))
    grads, _, _ = make_rule("bptt").gradients(net, params, {}, batch, objective)

    flat_p = {k: B64.to_numpy(v) for k, v in tree_flatten_dict(params).items()}
    eps = 1e-6
    loss_value = _loss_fn(B64, net, batch, objective)
    for path, g in tree_flatten_dict(grads).items():
        g = B64.to_numpy(g)
        fd = np.zeros_like(g)
        for idx in np.ndindex(g.shape):
            for sign in (+1, -1):
                shifted = {k: v.copy() for k, v in flat_p.items()}
                shifted[path][idx] += sign * eps
                it = iter(shifted[k] for k in tree_flatten_dict(params))
                p = tree_map(lambda _: B64.asarray(next(it)), params)
                fd[idx] += sign * float(B64.to_numpy(loss_value(p))) / (2 * eps)
        assert rel_err(g, fd) <= 1e-5, (path, rel_err(g, fd))


def test_truncated_bptt_with_window_at_least_T_is_full_bptt(B64):
    net = Network(2, [RecurrentDense(8), ALIF(), Dense(3), LeakyReadout()])
    rng = np.random.default_rng(2)
    batch = (B64.asarray(rng.normal(0.5, 1, size=(20, 4, 2))), B64.asarray(rng.integers(0, 3, size=4)))
    params = net.init(0, backend=B64)
    objective = Objective(make_loss("ce_sum"))
    full, _, aux = make_rule("bptt").gradients(net, params, {}, batch, objective)
    for k in (20, 21, 500):
        trunc, _, aux_k = make_rule("tbptt", k=k).gradients(net, params, {}, batch, objective)
        for a, b in zip(tree_flatten_dict(full).values(), tree_flatten_dict(trunc).values()):
            np.testing.assert_array_equal(B64.to_numpy(a), B64.to_numpy(b))
    # a short window does change the recurrent gradient, and leaves the loss unchanged
    short, _, aux_s = make_rule("tbptt", k=3).gradients(net, params, {}, batch, objective)
    assert float(B64.to_numpy(aux_s["loss"])) == float(B64.to_numpy(aux["loss"]))
    assert rel_err(B64.to_numpy(short["layers"][0]["w_rec"]), B64.to_numpy(full["layers"][0]["w_rec"])) > 1e-3


def test_truncation_window_must_be_positive():
    with pytest.raises(ValueError, match="truncate must be a positive integer"):
        make_rule("bptt", truncate=0)
