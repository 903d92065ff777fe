"""Cells against hand-written numpy recursions of their equations."""

import math

import numpy as np
import pytest

from neuroplastic.cells import ALIF, LIF, LeakyReadout, SignedIF, TanhRNN


def run_cell(B, cell, currents, params=None):
    state = cell.initial_state(B, currents.shape[1], currents.shape[2])
    outs, states = [], []
    for I in currents:
        state, z = cell.step(params or {}, state, B.asarray(I))
        outs.append(B.to_numpy(z))
        states.append({k: B.to_numpy(v) for k, v in state.items()})
    return np.array(outs), states


CURRENTS = np.random.default_rng(0).normal(0.4, 0.6, size=(30, 3, 5))


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_lif_matches_recursion(B64, reset):
    cell = LIF(tau_mem=10.0, threshold=0.8, reset=reset)
    z, _ = run_cell(B64, cell, CURRENTS)
    alpha, v = math.exp(-0.1), np.zeros((3, 5))
    for t, I in enumerate(CURRENTS):
        u = alpha * v + I
        s = (u > 0.8).astype(float)
        v = {"subtract": u - 0.8 * s, "zero": u * (1 - s), "none": u}[reset]
        np.testing.assert_array_equal(z[t], s)


def test_current_based_lif(B64):
    cell = LIF(tau_mem=10.0, tau_syn=5.0)
    z, states = run_cell(B64, cell, CURRENTS)
    a, b = math.exp(-0.1), math.exp(-0.2)
    v, i = np.zeros((3, 5)), np.zeros((3, 5))
    for t, I in enumerate(CURRENTS):
        i = b * i + I
        u = a * v + i
        s = (u > 1.0).astype(float)
        v = u - s
        np.testing.assert_array_equal(z[t], s)
        np.testing.assert_allclose(states[t]["v"], v, atol=1e-12)


def test_alif_matches_recursion(B64):
    cell = ALIF(tau_mem=10.0, tau_adapt=50.0, beta_adapt=0.7)
    z, states = run_cell(B64, cell, CURRENTS)
    al, rho = math.exp(-0.1), math.exp(-1 / 50)
    v, a = np.zeros((3, 5)), np.zeros((3, 5))
    for t, I in enumerate(CURRENTS):
        u = al * v + I
        s = (u > 1.0 + 0.7 * a).astype(float)
        v, a = u - s, rho * a + s
        np.testing.assert_array_equal(z[t], s)
        np.testing.assert_allclose(states[t]["a"], a, atol=1e-12)
    assert z.sum() > 0


def test_signed_if_is_ternary_with_nonnegative_count(B64):
    cur = np.random.default_rng(1).normal(0, 1.5, size=(40, 2, 6))
    z, states = run_cell(B64, SignedIF(threshold=1.0), cur)
    assert set(np.unique(z)) <= {-1.0, 0.0, 1.0}
    assert (z == -1).any() and (z == 1).any()
    assert all((s["c"] >= 0).all() for s in states)
    # subtractive reset conserves charge: v_T + theta * count = sum of inputs
    np.testing.assert_allclose(states[-1]["v"] + states[-1]["c"], cur.sum(0), atol=1e-10)


def test_readout_and_tanh(B64):
    y, _ = run_cell(B64, LeakyReadout(tau_out=5.0), CURRENTS)
    k, ref = math.exp(-0.2), np.zeros((3, 5))
    for t, I in enumerate(CURRENTS):
        ref = k * ref + I
        np.testing.assert_allclose(y[t], ref, atol=1e-12)
    h, _ = run_cell(B64, TanhRNN(leak=0.5), CURRENTS)
    ref = np.zeros((3, 5))
    for t, I in enumerate(CURRENTS):
        ref = 0.5 * ref + np.tanh(I)
        np.testing.assert_allclose(h[t], ref, atol=1e-12)


def test_trainable_decay_gets_a_gradient(B64):
    cell = LIF(tau_mem=10.0, train_decay=True)
    p = B64.tree_asarray(cell.init_params(np.random.default_rng(0), 5))
    I = B64.asarray(CURRENTS)

    def loss(params):
        s = cell.initial_state(B64, 3, 5)
        total = 0.0
        for t in range(I.shape[0]):
            s, z = cell.step(params, s, I[t])
            total = total + B64.sum(s["v"])
        return total

    _, g = B64.value_and_grad(loss)(p)
    assert np.abs(B64.to_numpy(g["alpha"])).sum() > 0


def test_detached_reset_changes_gradient_only(B64):
    I = B64.asarray(CURRENTS)

    def loss(params, cell):
        s = cell.initial_state(B64, 3, 5)
        total = 0.0
        for t in range(I.shape[0]):
            s, z = cell.step({}, s, I[t] * params["g"])
            total = total + B64.sum(z) + B64.sum(s["v"])
        return total

    p = {"g": B64.asarray(np.array(1.0))}
    v1, g1 = B64.value_and_grad(lambda q: loss(q, LIF(detach_reset=True)))(p)
    v2, g2 = B64.value_and_grad(lambda q: loss(q, LIF(detach_reset=False)))(p)
    assert float(B64.to_numpy(v1)) == float(B64.to_numpy(v2))
    assert float(B64.to_numpy(g1["g"])) != float(B64.to_numpy(g2["g"]))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: LIF(tau_mem=-5.0), "tau_mem must be a positive"),
        (lambda: LIF(decay=1.5), "decay must lie in"),
        (lambda: LIF(reset="bounce"), "reset: unknown value"),
        (lambda: LIF(surrogate="nope"), "surrogate: unknown"),
        (lambda: ALIF(tau_adapt=0.0), "tau_adapt must be a positive"),
        (lambda: LIF(dt=0.0), "dt must be a positive"),
        (lambda: LeakyReadout(tau_out=-1.0), "tau_out must be a positive"),
    ],
)
def test_bad_hyperparameters_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()
