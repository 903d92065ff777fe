"""OSTL online for any number of hidden blocks.

* exact where Bohnstingl et al.'s residual term vanishes (the first hidden block has memory,
  the blocks above it are memoryless and not recurrent): online (deferred) == offline == BPTT;
* where it is not exact (memory in every block, recurrence): the online per-output filtered
  traces give the offline adjoint recursion's gradient to round-off, and both differ from BPTT.
"""

import numpy as np
import pytest

from neuroplastic.cells import ALIF, LIF, Identity, LeakyReadout
from neuroplastic.layers import Dense, RecurrentDense
from neuroplastic.losses import Objective, make_loss
from neuroplastic.network import Network
from neuroplastic.rules import make_rule
from neuroplastic.rules.base import OnlineRule
from neuroplastic.tree import tree_flatten_dict

from .conftest import rel_err


def flat(B, g):
    return np.concatenate([B.to_numpy(v).ravel() for v in tree_flatten_dict(g).values()])


def batch_for(B, n_in, n_out, T=12, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    return B.asarray(rng.normal(0.7, 1.0, (T, batch, n_in))), B.asarray(rng.integers(0, n_out, batch))


def exact_net(readout):
    # block 0 has memory (ALIF); blocks 1 and 2 are memoryless (decay 0) and not recurrent
    return Network(3, [Dense(9), ALIF(tau_mem=5.0), Dense(7), LIF(decay=0.0), Dense(6), LIF(decay=0.0, threshold=0.5), Dense(3), readout])


@pytest.mark.parametrize("readout", [LeakyReadout(tau_out=4.0), Identity()], ids=["leaky", "identity"])
def test_deep_online_ostl_equals_bptt_when_only_the_first_block_has_memory(B64, readout):
    net = exact_net(readout)
    batch = batch_for(B64, 3, 3)
    p = net.init(3, backend=B64)
    obj = Objective(make_loss("ce_per_step"))
    rule = make_rule("ostl")
    g_bptt = flat(B64, make_rule("bptt").gradients(net, p, {}, batch, obj)[0])
    g_off, _, aux = rule.gradients(net, p, {}, batch, obj)
    g_on_tree = OnlineRule.gradients(rule, net, p, {}, batch, obj)[0]
    g_on = flat(B64, g_on_tree)
    assert np.abs(g_bptt).sum() > 0
    for z in aux["spikes"][:3]:  # every hidden block spikes, so the check covers the surrogate path
        assert float(B64.to_numpy(z).sum()) > 0
    assert rel_err(flat(B64, g_off), g_bptt) <= 1e-9
    assert rel_err(g_on, g_bptt) <= 1e-9
    for l in range(3):  # every block's weights get a gradient, not only the top one's
        assert np.abs(B64.to_numpy(tree_flatten_dict(g_on_tree)[f"layers.{l}.w"])).sum() > 0


def test_deep_online_ostl_follows_the_offline_recursion_where_it_is_not_exact(B64):
    """Memory in every hidden block and a recurrent one: OSTL drops the cross-layer temporal terms.
    The online form (forward traces, per-output filtering) must still equal the offline form
    (a backward adjoint recursion over recorded Jacobians) to round-off, for both losses that
    decompose over steps (per step; only at the end); both must differ from BPTT, and stay aligned with it."""
    net = Network(3, [Dense(8), LIF(tau_mem=5.0), RecurrentDense(7), ALIF(tau_mem=4.0), Dense(6), LIF(tau_mem=3.0), Dense(3), LeakyReadout(tau_out=5.0)])
    batch = batch_for(B64, 3, 3, T=12, batch=5, seed=1)
    p = net.init(5, backend=B64)
    rule = make_rule("ostl")
    # JAX compiles each of the three gradients per loss: the signal-at-the-end loss runs on torch only (same code)
    for loss in ("ce_per_step", "ce_last") if not B64.compiles else ("ce_per_step",):
        obj = Objective(make_loss(loss))
        g_off = flat(B64, rule.gradients(net, p, {}, batch, obj)[0])
        g_on = flat(B64, OnlineRule.gradients(rule, net, p, {}, batch, obj)[0])
        g_bptt = flat(B64, make_rule("bptt").gradients(net, p, {}, batch, obj)[0])
        assert rel_err(g_on, g_off) <= 1e-10, loss
        assert rel_err(g_off, g_bptt) > 1e-3, loss  # a real approximation here, so the agreement above is not BPTT's
        assert float(g_off @ g_bptt / (np.linalg.norm(g_off) * np.linalg.norm(g_bptt))) > 0.5, loss


def test_deep_online_ostl_trains_in_online_mode(backend_name):
    from neuroplastic.data import from_arrays
    from neuroplastic.train import Trainer

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 96)
    x = rng.normal(0, 0.3, size=(6, 96, 2))
    x[:, :, 0] += y
    x[:, :, 1] += 1 - y
    d = from_arrays(x[:, :64], y[:64], x[:, 64:], y[64:])
    net = Network(2, [Dense(8), LIF(tau_mem=4.0), Dense(6), LIF(tau_mem=4.0), Dense(2), LeakyReadout(tau_out=4.0)])
    tr = Trainer(net, "ostl", "ce_per_step", "adam", lr=1e-2, backend=backend_name, mode="online", progress=False)
    drops = []
    for seed in (0, 1, 2):  # a margin over seeds, not one machine-dependent outcome; one trainer (one compilation)
        _, hist = tr.fit(net.init(seed, backend=backend_name), d, epochs=2, batch_size=32, seed=seed)
        assert all(np.isfinite(h["train_loss"]) for h in hist)
        drops.append(hist[-1]["train_loss"] < hist[0]["train_loss"])
    assert sum(drops) >= 2, drops


def test_online_ostl_names_a_nonlinear_readout():
    from neuroplastic.cells import LIF as SpikingReadout

    net = Network(3, [Dense(4), LIF(), Dense(4), LIF(), Dense(2), SpikingReadout()])
    with pytest.raises(ValueError, match="online OSTL needs a linear readout cell"):
        make_rule("ostl").online_init(net, net.init(0, backend="jax"), {}, 2)


def test_one_hidden_block_online_ostl_is_symmetric_eprop(B64):
    net = Network(3, [RecurrentDense(6), ALIF(), Dense(3), LeakyReadout(tau_out=4.0)])
    batch = batch_for(B64, 3, 3, T=10, seed=2)
    p = net.init(6, backend=B64)
    obj = Objective(make_loss("ce_per_step"))
    g_ostl = flat(B64, OnlineRule.gradients(make_rule("ostl"), net, p, {}, batch, obj)[0])
    g_eprop = flat(B64, OnlineRule.gradients(make_rule("eprop-symmetric"), net, p, {}, batch, obj)[0])
    assert np.abs(g_eprop).sum() > 0 and rel_err(g_ostl, g_eprop) <= 1e-12
