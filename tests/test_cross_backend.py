"""One network initialised from numpy, run on torch and on JAX: same loss, same gradients."""

import numpy as np
import pytest

from neuroplastic.backend import get_backend
from neuroplastic.cells import ALIF, LIF, LeakyReadout
from neuroplastic.layers import Dense, RecurrentDense
from neuroplastic.losses import Objective, RateRegularizer, make_loss
from neuroplastic.network import Network
from neuroplastic.rules import make_rule
from neuroplastic.tree import tree_flatten_dict

from .conftest import rel_err

NETWORKS = {
    "lif": lambda: Network(6, [Dense(16), LIF(tau_mem=10.0), Dense(12), LIF(tau_mem=15.0), Dense(4), LeakyReadout()]),
    "alif": lambda: Network(6, [Dense(16), ALIF(tau_adapt=40.0), Dense(4), LeakyReadout()]),
    "recurrent_alif": lambda: Network(6, [RecurrentDense(16), ALIF(tau_adapt=40.0), RecurrentDense(12), ALIF(), Dense(4), LeakyReadout()]),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
@pytest.mark.parametrize("loss", ["ce_sum", "ce_max"])
def test_torch_and_jax_agree(name, loss):
    net = NETWORKS[name]()
    rng = np.random.default_rng(11)
    xs = rng.normal(0.6, 1.2, size=(40, 5, 6))
    ys = rng.integers(0, 4, size=5)
    p0 = net.init_numpy(3)
    objective = Objective(make_loss(loss), RateRegularizer(target_hz=20.0, strength=0.5))
    results = {}
    for backend in ("torch", "jax"):
        B = get_backend(backend, dtype="float64")
        grads, _, aux = make_rule("bptt").gradients(net, B.tree_asarray(p0), {}, (B.asarray(xs), B.asarray(ys)), objective)
        results[backend] = (float(B.to_numpy(aux["loss"])), {k: B.to_numpy(v) for k, v in tree_flatten_dict(grads).items()})
    (lt, gt), (lj, gj) = results["torch"], results["jax"]
    assert abs(lt - lj) <= 1e-5 * abs(lj)
    assert gt.keys() == gj.keys()
    for k in gt:
        assert np.abs(gj[k]).sum() > 0, f"{k}: zero gradient, the check would be vacuous"
        assert rel_err(gt[k], gj[k]) <= 1e-5, k
