"""The network is the one home of the wiring: connections, records, hooks, a cell written only here
trained by six rules with no rule changed, conv/pool blocks, the model protocol, and the
architecture rules that keep it so (checked on the source)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuroplastic.backend import get_backend, ops_for
from neuroplastic.cells import LIF, Cell, Identity, LeakyReadout
from neuroplastic.layers import AvgPool2d, Conv2d, Dense, RecurrentDense
from neuroplastic.losses import Objective, make_loss
from neuroplastic.network import Hooks, Link, Network
from neuroplastic.protocols import Model
from neuroplastic.rules import make_rule, run_online
from neuroplastic.tree import tree_flatten_dict

from .conftest import rel_err

SRC = Path(__file__).resolve().parent.parent / "src" / "neuroplastic"
T64 = get_backend("torch", dtype="float64")
J64 = get_backend("jax", dtype="float64")


def flat(B: Any, tree: Any) -> np.ndarray:
    d = tree_flatten_dict(tree)  # by path: JAX returns gradients with sorted keys
    return np.concatenate([np.asarray(B.to_numpy(d[k]), dtype=np.float64).ravel() for k in sorted(d)])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ------------------------------------------------------------------------------ a cell written only here
@dataclass(frozen=True)
class AdaptiveQIF(Cell):
    """A quadratic integrate-and-fire neuron with spike-triggered adaptation (two state fields)::

        u_t = alpha v_{t-1} + q v_{t-1}^2 - w_{t-1} + I_t
        z_t = H(u_t - 1)
        v_t = u_t (1 - stop_gradient(z_t))            (reset to zero: the quadratic term cannot run away)
        w_t = rho w_{t-1} + b z_t
    """

    alpha: float = 0.8
    q: float = 0.15
    rho: float = 0.9
    b: float = 0.3
    surrogate: Any = field(default=None)

    spiking = True
    state_names = ("v", "w")

    def __post_init__(self) -> None:
        from neuroplastic.surrogates import make_surrogate

        object.__setattr__(self, "surrogate", make_surrogate(self.surrogate or "fast_sigmoid"))

    @property
    def psp_decays(self) -> tuple:
        return (self.alpha,)

    def step(self, params: dict, state: dict, current: Any) -> tuple[dict, Any]:
        B = ops_for(current)
        v, w = state["v"], state["w"]
        u = self.alpha * v + self.q * v * v - w + current
        z = B.spike(u - 1.0, self.surrogate)
        return {"v": u * (1.0 - B.stop_gradient(z)), "w": self.rho * w + self.b * z}, z


def qif_batch(B: Any, T: int = 14, batch: int = 5, n_in: int = 4, classes: int = 3, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    return B.asarray(rng.normal(0.9, 1.0, (T, batch, n_in))), B.asarray(rng.integers(0, classes, batch))


def test_a_cell_written_in_a_test_works_with_the_trace_rules_unchanged():
    """RTRL = BPTT on a recurrent network of the new cell; e-prop (and OSTL) = BPTT where exact."""
    B = T64
    rec_net = Network(4, [RecurrentDense(6, bias=True), AdaptiveQIF(), Dense(3), LeakyReadout(tau_out=4.0)])
    p = rec_net.init(3, backend=B)
    batch = qif_batch(B)
    obj = Objective(make_loss("ce_sum"))
    g_bptt = flat(B, make_rule("bptt").gradients(rec_net, p, {}, batch, obj)[0])
    g_rtrl = flat(B, make_rule("rtrl").gradients(rec_net, p, {}, batch, obj)[0])
    assert np.abs(g_bptt).sum() > 0
    assert rel_err(g_rtrl, g_bptt) <= 1e-10
    # e-prop is exact without recurrent weights when only the last hidden block feeds the readout
    ff = Network(4, [Dense(6, bias=True), AdaptiveQIF(), Dense(3), LeakyReadout(tau_out=4.0)])
    p = ff.init(1, backend=B)
    g_bptt = flat(B, make_rule("bptt").gradients(ff, p, {}, batch, obj)[0])
    for rule in ("eprop-symmetric", "ostl"):
        r = make_rule(rule)
        g = flat(B, r.gradients(ff, p, r.init(ff, p, B.key(0)), batch, obj)[0])
        assert rel_err(g, g_bptt) <= 1e-10, rule


@pytest.mark.parametrize("rule,mode", [("bptt", "offline"), ("rtrl", "offline"), ("eprop-symmetric", "online"), ("ostl", "offline"),
                                       ("ottt", "online"), ("otpe", "online")])
def test_a_cell_written_in_a_test_trains_with_six_rules(rule, mode):
    from neuroplastic.data import from_arrays
    from neuroplastic.train import Trainer

    rng = np.random.default_rng(0)
    n, T = 96, 12
    y = rng.integers(0, 2, n)
    x = rng.normal(0.0, 0.3, (T, n, 4)) + np.where(y[None, :, None] == 1, 0.8, -0.2) * np.array([1.0, -1.0, 0.5, 0.0])
    data = from_arrays(x[:, :64].astype(np.float32), y[:64], x[:, 64:].astype(np.float32), y[64:])
    net = Network(4, [RecurrentDense(8) if rule == "rtrl" else Dense(8), AdaptiveQIF(), Dense(2), LeakyReadout(tau_out=4.0)])
    loss = "ce_per_step" if mode != "offline" else "ce_mean"
    lr = 2e-2 if mode == "offline" else 2e-3
    trainer = Trainer(net, rule, loss, "adam", lr=lr, backend="jax", mode=mode, progress=False)
    params = net.init(0, backend="jax")
    before = trainer.evaluate(params, data.x_train, data.y_train)["loss"]
    params, hist = trainer.fit(params, data, epochs=4, batch_size=32, seed=0)
    after = trainer.evaluate(params, data.x_train, data.y_train)["loss"]
    assert np.isfinite(after) and after < before, (rule, before, after)


# ------------------------------------------------------------------------------ conv and pooling blocks
def conv_net(readout: Any) -> Network:
    return Network((1, 6, 6), [Conv2d(3, 3, padding=1), LIF(tau_mem=4.0), AvgPool2d(2), LIF(tau_mem=4.0), Dense(3, bias=True), readout])


def image_batch(B: Any, T: int = 8, batch: int = 4, seed: int = 0) -> tuple:
    rng = np.random.default_rng(seed)
    return B.asarray(rng.uniform(0.0, 1.0, (T, batch, 36)) * 1.6), B.asarray(rng.integers(0, 3, batch))


def test_conv_and_pool_blocks_in_a_network_agree_across_backends_and_with_a_dense_equivalent():
    net = conv_net(LeakyReadout(tau_out=3.0))
    assert [b.shape for b in net.blocks] == [(3, 6, 6), (3, 3, 3), (3,)]
    obj = Objective(make_loss("ce_sum"))

    def loss_grad(B, net, p, batch):
        fn = lambda q: obj(*(lambda r: (r[0], batch[1], r[2], net.spiking))(net.run(q, batch[0])))  # noqa: E731
        return B.value_and_grad(fn)(p)

    grads = {}
    for B in (T64, J64):
        p = net.init(0, backend=B)
        loss, g = loss_grad(B, net, p, image_batch(B))
        grads[B.name] = flat(B, g)
        assert float(B.to_numpy(loss)) > 0
    assert rel_err(grads["torch"], grads["jax"]) <= 1e-10
    # a conv block against the same block written out as a dense matrix: same loss, and the
    # kernel's gradient is the dense gradient pulled back through the (linear) kernel -> matrix map
    B = T64
    tail = [LIF(tau_mem=4.0), Dense(3, bias=True), LeakyReadout(tau_out=3.0)]
    net_c = Network((1, 6, 6), [Conv2d(3, 3, padding=1)] + tail)
    net_d = Network(36, [Dense(108, bias=True)] + tail)
    p = net_c.init(0, backend=B)
    batch = image_batch(B)
    conv, bias = net_c.connections_into(0)[:2]
    w_dense = net_c.dense_weight(p, conv)
    b_dense = bias.synapse.apply(net_c.connection_params(p, bias))
    pd = {"layers": [{"w": w_dense, "b": b_dense, "cell": {}}] + p["layers"][1:], "links": []}
    loss_c, g_c = loss_grad(B, net_c, p, batch)
    loss_d, g_d = loss_grad(B, net_d, pd, batch)
    np.testing.assert_allclose(float(B.to_numpy(loss_d)), float(B.to_numpy(loss_c)), rtol=1e-12)
    _, pull = B.vjp(lambda k: conv.synapse.dense_weight({"w": k}), p["layers"][0]["w"])
    np.testing.assert_allclose(B.to_numpy(pull(g_d["layers"][0]["w"])[0]), B.to_numpy(g_c["layers"][0]["w"]), rtol=1e-10, atol=1e-12)
    db = bias.synapse.param_grads({}, g_d["layers"][0]["b"])["b"]
    np.testing.assert_allclose(B.to_numpy(db), B.to_numpy(g_c["layers"][0]["b"]), rtol=1e-10, atol=1e-12)


def test_ottt_equals_bptt_on_a_conv_layer_under_a_memoryless_readout():
    """One spiking conv layer (detached reset), an Identity readout and a per-step loss: OTTT is exact."""
    B = T64
    net = Network((1, 5, 5), [Conv2d(2, 3, padding=1), LIF(tau_mem=3.0), Dense(3, bias=True), Identity()])
    p = net.init(2, backend=B)
    rng = np.random.default_rng(1)
    batch = (B.asarray(rng.uniform(0.0, 2.0, (9, 3, 25))), B.asarray(rng.integers(0, 3, 3)))
    obj = Objective(make_loss("ce_per_step"))
    g_b = make_rule("bptt").gradients(net, p, {}, batch, obj)[0]
    g_o = make_rule("ottt").gradients(net, p, {}, batch, obj)[0]
    assert np.abs(flat(B, g_b)).sum() > 0
    assert rel_err(flat(B, g_o), flat(B, g_b)) <= 1e-10
    # and online (deferred) equals offline
    r = make_rule("ottt")
    g_d = run_online(r, net, p, {}, batch, obj, "deferred", None, None)[1]
    assert rel_err(flat(B, g_d), flat(B, g_o)) <= 1e-10


@pytest.mark.parametrize("rule,mode", [("bptt", "offline"), ("ottt", "online")])
def test_conv_pool_network_trains_with_bptt_and_ottt(rule, mode):
    from neuroplastic.data import from_arrays
    from neuroplastic.train import Trainer

    rng = np.random.default_rng(0)
    n = 96
    y = rng.integers(0, 2, n)
    img = rng.uniform(0.0, 0.4, (n, 6, 6))
    img[y == 1, :3, :] += 0.9  # class 1: bright top half
    img[y == 0, 3:, :] += 0.9
    x = np.repeat(img.reshape(1, n, 36), 6, axis=0).astype(np.float32)
    data = from_arrays(x[:, :64], y[:64], x[:, 64:], y[64:])
    net = Network((1, 6, 6), [Conv2d(3, 3, padding=1), LIF(tau_mem=4.0), AvgPool2d(2), LIF(tau_mem=4.0), Dense(2), LeakyReadout(tau_out=4.0)])
    trainer = Trainer(net, rule, "ce_per_step" if mode == "online" else "ce_mean", "adam", lr=1e-2 if mode == "offline" else 1e-3,
                      backend="jax", mode=mode, progress=False)
    params = net.init(0, backend="jax")
    before = trainer.evaluate(params, data.x_train, data.y_train)["loss"]
    params, _ = trainer.fit(params, data, epochs=3, batch_size=32, seed=0)
    after = trainer.evaluate(params, data.x_train, data.y_train)
    assert after["loss"] < before, (before, after)


def test_per_synapse_rules_refuse_shared_weights_by_name():
    net = Network((1, 5, 5), [Conv2d(2, 3), LIF(), Dense(3), LeakyReadout()])
    B = T64
    p = net.init(0, backend=B)
    batch = image_batch(B, batch=2)
    batch = (B.asarray(np.random.default_rng(0).uniform(0, 1, (4, 2, 25))), batch[1][:2])
    with pytest.raises(ValueError, match="shares its weights across positions"):
        make_rule("eprop-symmetric").gradients(net, p, {}, batch, Objective(make_loss("ce_sum")))


# ------------------------------------------------------------------------------ records, hooks, gradient trees
def test_step_record_and_run_record_agree_with_the_forward_pass():
    B = T64
    net = Network(3, [RecurrentDense(5, bias=True), LIF(tau_mem=4.0), Dense(2), LeakyReadout()], links=[Link(-1, 1)])
    p = net.init(0, backend=B)
    xs, _ = qif_batch(B, T=6, batch=2, n_in=3)
    ys, _, rec = net.run(p, xs, record=("state", "current"))
    pres = net.presynaptic_sequences(xs, rec["out"])
    state = net.initial_state(B, 2)
    for t in range(6):
        r = net.step_record(p, state, xs[t], jacobians=[0])
        state = r.state
        for l in range(2):
            np.testing.assert_allclose(B.to_numpy(r.currents[l]), B.to_numpy(rec["current"][l][t]), rtol=1e-12, atol=1e-12)
            np.testing.assert_array_equal(B.to_numpy(r.outs[l]), B.to_numpy(rec["out"][l][t]))
        for c in net.connections:
            if not c.is_bias:
                np.testing.assert_array_equal(B.to_numpy(r.pres[c.index]), B.to_numpy(pres[c.index][t]))
        assert r.jacobians[0] is not None and r.jacobians[1] is None
    # the stacked dense view rebuilds each block's current
    for l in range(2):
        pre = net.stacked_presynaptic(l, pres, like=xs)
        np.testing.assert_allclose(B.to_numpy(B.matmul(pre, net.stacked_weight(p, l))), B.to_numpy(rec["current"][l]), rtol=1e-12, atol=1e-12)


def test_current_offsets_give_dl_di_on_both_paths():
    """A zero offset's gradient is dL/dI; the layer-wise and the step-by-step path give the same one."""
    B = T64
    net = Network(3, [RecurrentDense(5), LIF(tau_mem=4.0), Dense(2), LeakyReadout()])
    p = net.init(0, backend=B)
    xs, ys = qif_batch(B, T=6, batch=2, n_in=3, classes=2)
    obj = Objective(make_loss("ce_sum"))
    zeros = [B.zeros((6, 2, 5)), B.zeros((6, 2, 2))]
    fwd = lambda offs, stepwise: obj(net.run(p, xs, hooks=Hooks(offsets=offs))[0] if not stepwise else _stepwise(net, p, xs, offs), ys, None)  # noqa: E731
    g_layer = B.value_and_grad(lambda o: fwd(o, False))(zeros)[1]
    g_step = B.value_and_grad(lambda o: fwd(o, True))(zeros)[1]
    for a, b in zip(g_layer, g_step):
        np.testing.assert_allclose(B.to_numpy(a), B.to_numpy(b), rtol=1e-12, atol=1e-14)
    # the readout error is what the readout's weights see
    g = make_rule("bptt").gradients(net, p, {}, (xs, ys), obj)[0]
    c = net.feed_connection(1)
    dw = c.synapse.param_grads(net.connection_params(p, c), g_layer[1], net.run(p, xs)[2]["out"][0])
    np.testing.assert_allclose(B.to_numpy(dw["w"]), B.to_numpy(g["layers"][1]["w"]), rtol=1e-12)


def _stepwise(net: Network, p: dict, xs: Any, offs: list) -> Any:
    B = ops_for(xs)
    state = net.initial_state(B, xs.shape[1])
    ys = []
    for t in range(xs.shape[0]):
        state, y = net.step(p, state, xs[t], current_offsets=[o[t] for o in offs])
        ys.append(y)
    return B.stack(ys)


def test_gradient_tree_is_built_fresh():
    B = T64
    net = Network(3, [RecurrentDense(4, bias=True), LIF(train_decay=True), Dense(2), LeakyReadout()], links=[Link(-1, 1)])
    p = net.init(0, backend=B)
    before = {k: B.to_numpy(v).copy() for k, v in tree_flatten_dict(p).items()}
    c = net.feed_connection(1)
    g = net.gradient_tree(p, {c.index: {"w": B.ones((4, 2))}}, {0: {"alpha": B.ones((4,))}})
    assert [k for k in tree_flatten_dict(g)] == [k for k in tree_flatten_dict(p)]
    assert float(B.to_numpy(g["layers"][1]["w"]).sum()) == 8.0 and float(B.to_numpy(g["layers"][0]["cell"]["alpha"]).sum()) == 4.0
    assert all(float(np.abs(B.to_numpy(v)).sum()) == 0 for k, v in tree_flatten_dict(g).items() if k not in ("layers.1.w", "layers.0.cell.alpha"))
    assert g["layers"][0] is not p["layers"][0] and g["links"][0] is not p["links"][0]
    for k, v in tree_flatten_dict(p).items():
        np.testing.assert_array_equal(B.to_numpy(v), before[k])


# ------------------------------------------------------------------------------ the model protocol
def test_every_model_container_satisfies_the_protocol():
    from neuroplastic.adapters import adapt
    from neuroplastic.models import SpikeGradNet, SpikeTimeNetwork

    import torch

    models = [
        Network(3, [Dense(2), LIF()]),
        SpikeGradNet(4, [Dense(3), Dense(2)]),
        SpikeTimeNetwork(3, [2]),
        adapt(torch.nn.Linear(3, 2), n_in=3),
    ]
    for m in models:
        assert isinstance(m, Model), type(m).__name__


def test_network_rules_refuse_other_models_by_name():
    from neuroplastic.models import SpikeGradNet

    net = SpikeGradNet(4, [Dense(3), Dense(2)])
    p = net.init(0, backend=T64)
    for rule in ("eprop-symmetric", "ostl", "ottt", "otpe", "fa", "dfa"):
        with pytest.raises(ValueError, match="needs a neuroplastic Network"):
            make_rule(rule).init(net, p, T64.key(0))


# ------------------------------------------------------------------------------ the backend declares its array operations
def test_every_backend_implements_every_declared_array_operation():
    from neuroplastic.backend.base import ARRAY_OPS, Backend

    for name in ("torch", "jax", "numpy"):
        B = get_backend(name)
        missing = [op for op in ARRAY_OPS if getattr(type(B), op) is getattr(Backend, op)]
        assert not missing, (name, missing)


# ------------------------------------------------------------------------------ the architecture, checked on the source
def _py_files(*parts: str) -> list[Path]:
    return sorted((SRC.joinpath(*parts)).rglob("*.py"))


def test_rules_never_index_the_parameter_layout_or_check_cell_classes():
    from neuroplastic import cells

    cell_classes = {n for n in dir(cells) if isinstance(getattr(cells, n), type) and issubclass(getattr(cells, n), Cell)}
    for path in _py_files("rules"):
        text = path.read_text()
        assert '["layers"]' not in text and '["links"]' not in text, path.name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                assert not names & cell_classes, (path.name, ast.unparse(node))


def test_frameworks_are_imported_only_in_the_backend_layer_and_the_adapters():
    pattern = re.compile(r"^\s*(import|from)\s+(torch|jax|jaxlib|optax|equinox)\b", re.M)
    for path in _py_files():
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("backend/") or rel == "adapters.py":
            continue
        assert not pattern.search(path.read_text()), rel
