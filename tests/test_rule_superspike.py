"""SuperSpike: a numpy recursion of its formula, BPTT on one layer (where it is exact), learning spike trains."""

from __future__ import annotations

import numpy as np
import pytest

from neuroplastic.cells import LIF, LeakyReadout
from neuroplastic.data import from_arrays
from neuroplastic.layers import Dense
from neuroplastic.losses import Objective, make_loss
from neuroplastic.network import Network
from neuroplastic.rules import make_rule

from .conftest import rel_err
from .test_rule_ottt import LEARNING, T64, fast_sigmoid, flat, jit_gradients, lif_numpy


def superspike_numpy(x, s, W1, W2, F, a1, a2, tau):
    """SuperSpike on input -> LIF(a1) -> LIF(a2) with random feedback F, van Rossum kernel tau."""
    T, n_b, _ = x.shape
    k = np.exp(-1.0 / tau)
    u1, z1 = lif_numpy(x, W1, a1)
    u2, z2 = lif_numpy(z1, W2, a2)
    eps1, eps2 = np.zeros((n_b, W1.shape[0])), np.zeros((n_b, W2.shape[0]))
    lam1, lam2 = np.zeros((n_b,) + W1.shape), np.zeros((n_b,) + W2.shape)
    f = np.zeros((n_b, W2.shape[1]))
    G1, G2 = np.zeros_like(W1), np.zeros_like(W2)
    for t in range(T):
        eps1 = a1 * eps1 + x[t]  # PSP traces
        eps2 = a2 * eps2 + z1[t]
        lam1 = k * lam1 + eps1[:, :, None] * fast_sigmoid(u1[t] - 1.0)[:, None, :]
        lam2 = k * lam2 + eps2[:, :, None] * fast_sigmoid(u2[t] - 1.0)[:, None, :]
        f = k * f + (z2[t] - s[t])  # van Rossum-filtered error
        e2 = f / (tau * n_b)
        e1 = e2 @ F.T
        G2 += np.einsum("bpn,bn->pn", lam2, e2)
        G1 += np.einsum("bpn,bn->pn", lam1, e1)
    return G1, G2, z1, z2


def test_superspike_matches_numpy_recursion(B64):
    rng = np.random.default_rng(0)
    T, n_b = 12, 3
    x = rng.normal(0.7, 1.0, (T, n_b, 4))
    s = (rng.random((T, n_b, 2)) < 0.25).astype(float)
    net = Network(4, [Dense(6, gain=2.0), LIF(tau_mem=5.0), Dense(2, gain=3.0), LIF(tau_mem=8.0)])
    p = net.init(1, backend=B64)
    rule = make_rule("superspike")
    st = rule.init(net, p, B64.key(3))
    obj = Objective(make_loss("van_rossum", tau=6.0))
    g, aux = jit_gradients(B64, rule, net, p, st, (B64.asarray(x), B64.asarray(s)), obj)
    W1, W2, F = (B64.to_numpy(a) for a in (p["layers"][0]["w"], p["layers"][1]["w"], st["feedback"][0]))
    G1, G2, z1, z2 = superspike_numpy(x, s, W1, W2, F, net.blocks[0].cell.alpha, net.blocks[1].cell.alpha, 6.0)
    assert z1.sum() > 0 and z2.sum() > 0
    assert rel_err(B64.to_numpy(g["layers"][1]["w"]), G2) <= 1e-10
    assert rel_err(B64.to_numpy(g["layers"][0]["w"]), G1) <= 1e-10
    assert abs(float(B64.to_numpy(aux["loss"])) - float(B64.to_numpy(obj(B64.asarray(z2), B64.asarray(s), None)))) <= 1e-10


def test_superspike_equals_bptt_on_one_layer():
    """With a detached reset the filtered eligibility is the exact derivative of the filtered
    output, so one layer of SuperSpike is the gradient of the van Rossum distance."""
    B64 = T64
    rng = np.random.default_rng(1)
    net = Network(3, [Dense(2), LIF(tau_mem=5.0, tau_syn=3.0)])
    batch = (B64.asarray(rng.normal(0.5, 1.0, (15, 4, 3))), B64.asarray((rng.random((15, 4, 2)) < 0.2).astype(float)))
    p = net.init(0, backend=B64)
    obj = Objective(make_loss("van_rossum", tau=5.0))
    a = flat(B64, make_rule("bptt").gradients(net, p, {}, batch, obj)[0])
    rule = make_rule("superspike")
    b = flat(B64, rule.gradients(net, p, rule.init(net, p, B64.key(0)), batch, obj)[0])
    assert np.abs(a).sum() > 0 and rel_err(b, a) <= 1e-10


def teacher_targets(seed: int = 0, n: int = 48, T: int = 20):
    """Analog inputs; targets are the spike trains of a random single-layer teacher network."""
    from neuroplastic.backend import get_backend

    rng = np.random.default_rng(seed)
    x = rng.normal(0.3, 1.0, (T, n, 4)).astype(np.float32)
    teacher = Network(4, [Dense(2, gain=2.0), LIF(tau_mem=10.0)])
    y, _, _ = teacher.run(get_backend("numpy").tree_asarray(teacher.init_numpy(seed + 100)), x)
    y = np.asarray(y, np.float32)
    assert 0.05 < y.mean() < 0.95
    return from_arrays(x[:, :32], y[:, :32], x[:, 32:], y[:, 32:])


@pytest.mark.parametrize("backend_name,mode", LEARNING)
def test_superspike_moves_the_loss_down(backend_name, mode):
    """A hidden layer trained through random feedback learns a teacher's spike trains."""
    from neuroplastic.train import Trainer

    net = Network(4, [Dense(12), LIF(tau_mem=10.0), Dense(2), LIF(tau_mem=10.0)])
    lr, factor = {"offline": (3e-2, 0.8), "online": (1e-2, 0.5)}[mode]
    tr = Trainer(net, "superspike", make_loss("van_rossum", tau=5.0), "adam", lr=lr, backend=backend_name, mode=mode, progress=False)
    _, hist = tr.fit(net.init(0, backend=backend_name), teacher_targets(), epochs=3, batch_size=8)
    losses = [h["train_loss"] for h in hist]
    assert losses[-1] < factor * losses[0]


def test_superspike_errors():
    rule = make_rule("superspike")
    net = Network(3, [Dense(4), LIF(), Dense(2), LeakyReadout()])
    with pytest.raises(ValueError, match="must spike"):
        rule.init(net, net.init(0, backend="torch"))
    net = Network(3, [Dense(4), LIF(), Dense(2), LIF()])
    p = net.init(0, backend="torch")
    import torch

    batch = (torch.ones(3, 2, 3, dtype=torch.float32), torch.zeros(3, 2, 2, dtype=torch.float32))
    with pytest.raises(ValueError, match="van_rossum"):
        rule.gradients(net, p, rule.init(net, p), batch, Objective(make_loss("ce_sum")))
    with pytest.raises(ValueError, match="target spike trains"):
        rule.gradients(net, p, rule.init(net, p), (batch[0], torch.zeros(2, dtype=torch.int64)), Objective(make_loss("van_rossum")))
    with pytest.raises(ValueError, match="feedback"):
        make_rule("superspike", feedback="direct")
    deep = Network(3, [Dense(4), LIF(), Dense(4), LIF(), Dense(2), LIF()])
    with pytest.raises(ValueError, match="symmetric"):
        make_rule("superspike", feedback="symmetric").init(deep, deep.init(0, backend="torch"))
