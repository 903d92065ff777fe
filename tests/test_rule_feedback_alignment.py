"""FA and DFA: FA with F = W is BPTT; DFA with F = W_out is BPTT on one hidden layer; DFA is
autodiff of its surrogate objective; learning; MNIST-1D."""

from __future__ import annotations

import numpy as np
import pytest

from neuroplastic.cells import ALIF, LIF, LeakyReadout
from neuroplastic.layers import Dense, RecurrentDense
from neuroplastic.losses import Objective, RateRegularizer, make_loss
from neuroplastic.network import Link, Network
from neuroplastic.rules import make_rule

from .conftest import rel_err
from .test_rule_ottt import T64, cosine, flat, loss_goes_down, mnist1d_accuracy, same_on_both_backends


def symmetric_feedback(rule_state: dict, params: dict) -> dict:
    """FA's feedback with every ``F`` replaced by the forward weight it stands in for."""
    fb = rule_state["feedback"]
    return {
        "feedback": {
            kind: [{name: params[kind][i][name] for name in entry} for i, entry in enumerate(fb[kind])]
            for kind in ("layers", "links")
        }
    }


@pytest.mark.parametrize("links", [[], [Link(0, 2), Link(1, 0)]], ids=["chain", "skip+feedback-links"])
def test_fa_with_the_forward_weights_is_bptt(links):
    B64 = T64
    net = Network(
        3,
        [RecurrentDense(6, self_connections=False), LIF(tau_mem=5.0), RecurrentDense(5, bias=True), ALIF(tau_mem=5.0), Dense(3), LeakyReadout(tau_out=5.0)],
        links=links,
    )
    rng = np.random.default_rng(0)
    batch = (B64.asarray(rng.normal(0.8, 1.0, (12, 3, 3))), B64.asarray(rng.integers(0, 3, 3)))
    p = net.init(0, backend=B64)
    obj = Objective(make_loss("ce_sum"), RateRegularizer(20.0, 0.5))
    rule = make_rule("fa")
    st = rule.init(net, p, B64.key(1))
    g_b, _, aux_b = make_rule("bptt").gradients(net, p, {}, batch, obj)
    g_s, _, aux_s = rule.gradients(net, p, symmetric_feedback(st, p), batch, obj)
    a = flat(B64, g_b)
    assert np.abs(a).sum() > 0
    assert rel_err(flat(B64, g_s), a) <= 1e-12
    # random feedback: the same forward pass (bit for bit), the readout's gradient exact, the rest not
    g_r, _, aux_r = rule.gradients(net, p, st, batch, obj)
    np.testing.assert_array_equal(B64.to_numpy(aux_r["outputs"]), B64.to_numpy(aux_b["outputs"]))
    assert float(B64.to_numpy(aux_r["loss"])) == float(B64.to_numpy(aux_b["loss"]))
    top = lambda g: B64.to_numpy(g["layers"][2]["w"])  # noqa: E731
    assert rel_err(top(g_r), top(g_b)) <= 1e-12
    assert cosine(flat(B64, g_r), a) < 0.999


def test_dfa_with_the_readout_weights_is_bptt_on_one_hidden_layer():
    B64 = T64
    net = Network(3, [RecurrentDense(7), ALIF(tau_mem=5.0, tau_adapt=20.0), Dense(3), LeakyReadout(tau_out=5.0)])
    rng = np.random.default_rng(1)
    batch = (B64.asarray(rng.normal(0.8, 1.0, (15, 4, 3))), B64.asarray(rng.integers(0, 3, 4)))
    p = net.init(1, backend=B64)
    obj = Objective(make_loss("ce_mean"), RateRegularizer(20.0, 0.5))
    a = flat(B64, make_rule("bptt").gradients(net, p, {}, batch, obj)[0])
    b = flat(B64, make_rule("dfa").gradients(net, p, {"feedback": [p["layers"][1]["w"]]}, batch, obj)[0])
    assert np.abs(a).sum() > 0 and rel_err(b, a) <= 1e-12


def test_fa_differs_from_dfa_only_by_its_recurrent_feedback():
    """One recurrent hidden layer: FA sends the readout error through ``F_out``, as DFA does
    through its ``F``; FA with the same ``F`` and ``F_rec = W_rec`` is DFA exactly.  So what
    separates the two on MNIST-1D is FA's random credit assignment through time."""
    B64 = T64
    net = Network(3, [RecurrentDense(7), LIF(tau_mem=5.0), Dense(3), LeakyReadout(tau_out=5.0)])
    rng = np.random.default_rng(3)
    batch = (B64.asarray(rng.normal(0.8, 1.0, (15, 4, 3))), B64.asarray(rng.integers(0, 3, 4)))
    p = net.init(3, backend=B64)
    obj = Objective(make_loss("ce_mean"), RateRegularizer(20.0, 0.5))
    fa = make_rule("fa")
    st = fa.init(net, p, B64.key(0))
    F = st["feedback"]["layers"][1]["w"]
    g_dfa = flat(B64, make_rule("dfa").gradients(net, p, {"feedback": [F]}, batch, obj)[0])
    exact_rec = {"feedback": {"layers": [{"w_rec": p["layers"][0]["w_rec"]}, {"w": F}], "links": []}}
    assert np.abs(g_dfa).sum() > 0
    assert rel_err(flat(B64, fa.gradients(net, p, exact_rec, batch, obj)[0]), g_dfa) <= 1e-12
    hidden = lambda g: np.concatenate([B64.to_numpy(g["layers"][0][k]).ravel() for k in ("w", "w_rec")])  # noqa: E731
    g_fa = fa.gradients(net, p, st, batch, obj)[0]  # random F_rec
    assert rel_err(hidden(g_fa), hidden(make_rule("dfa").gradients(net, p, {"feedback": [F]}, batch, obj)[0])) > 1e-2


def test_dfa_is_autodiff_of_its_surrogate_objective():
    """Two hidden blocks, random F: the rule's gradient equals autodiff of
    ``L(y) + sum_l <stop_gradient(e_t F^{lT}), z^l_t>`` with inputs between blocks cut,
    ``e_t = dL/dI^out_t``, all written out here by hand."""
    B64 = T64
    net = Network(3, [Dense(6), LIF(tau_mem=5.0), RecurrentDense(5), LIF(tau_mem=8.0), Dense(3), LeakyReadout(tau_out=5.0)])
    rng = np.random.default_rng(2)
    xs, ys = B64.asarray(rng.normal(0.8, 1.0, (12, 4, 3))), B64.asarray(rng.integers(0, 3, 4))
    p = net.init(2, backend=B64)
    loss = make_loss("ce_sum")
    rule = make_rule("dfa")
    st = rule.init(net, p, B64.key(0))
    cells = [b.cell for b in net.blocks]

    def cell_seq(cell, cp, current, rec=None):
        def body(c, i):
            s, z_prev = c
            i = i + (B64.matmul(z_prev, rec) if rec is not None else 0.0)
            s, z = cell.step(cp, s, i)
            return (s, z), z

        init = (cell.initial_state(B64, 4, current.shape[-1]), B64.zeros((4, current.shape[-1])))
        return B64.scan(body, init, current)[1]

    def hidden(q):
        z0 = cell_seq(cells[0], {}, B64.matmul(xs, q["layers"][0]["w"]))
        z1 = cell_seq(cells[1], {}, B64.matmul(B64.stop_gradient(z0), q["layers"][1]["w"]), q["layers"][1]["w_rec"])
        return z0, z1

    z0, z1 = hidden(p)
    i_out = B64.matmul(z1, p["layers"][2]["w"])
    _, e = B64.value_and_grad(lambda i: loss(cell_seq(cells[2], {}, i), ys))(i_out)

    def surrogate(q):
        z0, z1 = hidden(q)
        y = cell_seq(cells[2], {}, B64.matmul(B64.stop_gradient(z1), q["layers"][2]["w"]))
        value = loss(y, ys)
        for z, F in zip((z0, z1), st["feedback"]):
            value = value + B64.sum(B64.stop_gradient(B64.matmul(e, B64.transpose(F, (1, 0)))) * z)
        return value

    _, ref = B64.value_and_grad(surrogate)(p)
    g = rule.gradients(net, p, st, (xs, ys), Objective(loss))[0]
    assert float(np.abs(B64.to_numpy(ref["layers"][0]["w"])).sum()) > 0
    assert rel_err(flat(B64, g), flat(B64, ref)) <= 1e-12


@pytest.mark.parametrize("rule", ["fa", "dfa"])
def test_fa_dfa_same_on_torch_and_jax(rule):
    """Same feedback matrices on both backends (drawn once, converted): same gradients."""
    net = Network(3, [RecurrentDense(6), LIF(tau_mem=5.0), Dense(5), ALIF(tau_mem=8.0), Dense(3), LeakyReadout(tau_out=5.0)], links=[Link(0, 2)])
    rng = np.random.default_rng(6)
    batch = (rng.normal(0.8, 1.0, (10, 3, 3)), rng.integers(0, 3, 3))
    same_on_both_backends(net, rule, batch, Objective(make_loss("ce_mean"), RateRegularizer(20.0, 0.5)))


@pytest.mark.parametrize("backend_name,rule,hidden", [("torch", "fa", (16, 12)), ("torch", "dfa", (16,)), ("jax", "dfa", (16,))])
def test_fa_dfa_move_the_loss_down(backend_name, rule, hidden):
    layers = [RecurrentDense(hidden[0]), LIF(tau_mem=10.0)]
    for h in hidden[1:]:
        layers += [Dense(h), LIF(tau_mem=10.0)]
    net = Network(4, layers + [Dense(2), LeakyReadout(tau_out=10.0)])
    losses = loss_goes_down(backend_name, rule, "offline", network=net, loss="ce_mean", epochs=4, batch_size=16)
    assert losses[-1] < 0.3 * losses[0]


def test_fa_dfa_errors():
    from neuroplastic.train import Trainer

    net = Network(3, [Dense(4), LIF(), Dense(2), LeakyReadout()])
    for rule in ("fa", "dfa"):
        with pytest.raises(ValueError, match="cannot train in mode 'online'"):
            Trainer(net, rule, "ce_per_step", backend="torch", mode="online")
        with pytest.raises(ValueError, match="feedback_scale"):
            make_rule(rule, feedback_scale=-1.0)
    with pytest.raises(ValueError, match="at least one hidden block"):
        single = Network(3, [Dense(2), LeakyReadout()])
        make_rule("dfa").init(single, single.init(0, backend="torch"))


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["fa", "dfa"])
def test_fa_dfa_beat_50_percent_on_mnist1d(rule):
    res = mnist1d_accuracy(rule)
    print(res)
    assert res["test_acc"] > 0.5
