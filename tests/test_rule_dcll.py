"""DCLL: its gradients equal autodiff of the local losses with stop-gradient between blocks; learning."""

from __future__ import annotations

import numpy as np
import pytest

from neuroplastic.cells import LIF, LeakyReadout
from neuroplastic.layers import Dense, RecurrentDense
from neuroplastic.losses import Objective, make_loss
from neuroplastic.network import Network
from neuroplastic.rules import make_rule
from neuroplastic.rules.base import OnlineRule

from .conftest import rel_err
from .test_rule_ottt import T64, flat, loss_goes_down, same_on_both_backends


def local_objective(B, net, readouts, xs, targets, loss):
    """``L(y) + sum_l L(z^l G^l)`` with every block's input from another block stop-gradiented,
    written out block by block (a reference independent of the rule's code)."""

    def fn(params):
        seq, total = xs, 0.0
        for l, blk in enumerate(net.blocks):
            inp = seq if l == 0 else B.stop_gradient(seq)
            current = B.matmul(inp, params["layers"][l]["w"])
            cp = params["layers"][l]["cell"]
            _, z = B.scan(lambda s, i, cell=blk.cell, cp=cp: cell.step(cp, s, i), blk.cell.initial_state(B, xs.shape[1], blk.size), current)
            total = total + (loss(B.matmul(z, readouts[l]), targets) if l < len(readouts) else loss(z, targets))
            seq = z
        return total

    return fn


def test_dcll_equals_autodiff_of_local_losses():
    B64 = T64
    net = Network(3, [Dense(8), LIF(tau_mem=5.0), Dense(7), LIF(tau_mem=8.0), Dense(3), LeakyReadout(tau_out=5.0)])
    rng = np.random.default_rng(0)
    xs, ys = B64.asarray(rng.normal(0.8, 1.0, (10, 4, 3))), B64.asarray(rng.integers(0, 3, 4))
    p = net.init(0, backend=B64)
    rule = make_rule("dcll")
    st = rule.init(net, p, B64.key(0))
    # offline, a loss that does not decompose over time
    obj = Objective(make_loss("ce_sum"))
    ref_value, ref = B64.value_and_grad(local_objective(B64, net, st["readouts"], xs, ys, obj.loss))(p)
    g, _, aux = rule.gradients(net, p, st, (xs, ys), obj)
    assert np.abs(flat(B64, ref)).sum() > 0
    assert rel_err(flat(B64, g), flat(B64, ref)) <= 1e-10
    total = float(B64.to_numpy(aux["loss"])) + sum(float(B64.to_numpy(v)) for v in aux["local_losses"])
    assert abs(total - float(B64.to_numpy(ref_value))) <= 1e-10
    # the online step sums per-step local losses: deferred == autodiff of the per-step form
    obj = Objective(make_loss("ce_per_step"))
    _, ref = B64.value_and_grad(local_objective(B64, net, st["readouts"], xs, ys, obj.loss))(p)
    g = OnlineRule.gradients(rule, net, p, st, (xs, ys), obj)[0]
    assert rel_err(flat(B64, g), flat(B64, ref)) <= 1e-10


def test_dcll_same_on_torch_and_jax():
    from neuroplastic.losses import RateRegularizer

    net = Network(3, [RecurrentDense(6), LIF(tau_mem=5.0), Dense(5), LIF(tau_mem=8.0), Dense(3), LeakyReadout(tau_out=5.0)])
    rng = np.random.default_rng(5)
    batch = (rng.normal(0.8, 1.0, (10, 3, 3)), rng.integers(0, 3, 3))
    same_on_both_backends(net, "dcll", batch, Objective(make_loss("ce_mean"), RateRegularizer(20.0, 0.5)))


@pytest.mark.parametrize("backend_name", ["torch", "jax"])
def test_dcll_moves_the_loss_down_online_two_hidden_blocks(backend_name):
    net = Network(4, [Dense(12), LIF(tau_mem=10.0), Dense(10), LIF(tau_mem=10.0), Dense(2), LeakyReadout(tau_out=10.0)])
    losses = loss_goes_down(backend_name, "dcll", "online", network=net)
    assert losses[-1] < 0.6 * losses[0]


def test_dcll_moves_the_loss_down_offline():
    net = Network(4, [RecurrentDense(16), LIF(tau_mem=10.0), Dense(2), LeakyReadout(tau_out=10.0)])
    losses = loss_goes_down("torch", "dcll", "offline", network=net, loss="ce_mean", epochs=4, batch_size=16)
    assert losses[-1] < 0.3 * losses[0]


def test_dcll_errors():
    net = Network(3, [Dense(4), LIF(), Dense(2), LeakyReadout()])
    p = net.init(0, backend="torch")
    with pytest.raises(ValueError, match="readout_scale"):
        make_rule("dcll", readout_scale=0.0)
    import torch

    batch = (torch.ones(3, 2, 3, dtype=torch.float32), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="DCLL.init"):
        make_rule("dcll").gradients(net, p, {}, batch, Objective(make_loss("ce_sum")))
