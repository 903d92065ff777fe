"""Loss landscapes: closed forms, known PCA directions, filter norms, JAX == torch."""

from __future__ import annotations

import numpy as np
import pytest

from neuroplastic.analysis import landscape as L
from neuroplastic.backend import get_backend
from neuroplastic.cells import LIF, LeakyReadout
from neuroplastic.layers import Dense, RecurrentDense
from neuroplastic.losses import Objective, RateRegularizer, make_loss
from neuroplastic.network import Network
from neuroplastic.tree import tree_leaves, tree_map


def small_snn() -> Network:
    return Network(3, [RecurrentDense(5), LIF(surrogate="triangle"), Dense(2), LeakyReadout()])


def data(rng: np.random.Generator, n_batches: int = 2, T: int = 8, batch: int = 4, n_in: int = 3):
    return [(rng.normal(size=(T, batch, n_in)), rng.integers(0, 2, batch)) for _ in range(n_batches)]


# ------------------------------------------------------------------------------ surfaces
def test_centre_is_the_objective_at_params(B64):
    net = small_snn()
    obj = Objective(make_loss("ce_mean"), RateRegularizer(target_hz=20.0, strength=0.5))
    params = net.init(0, backend=B64, dtype="float64")
    batches = [(B64.asarray(x), B64.asarray(y)) for x, y in data(np.random.default_rng(1))]
    d1, d2 = L.random_directions(params, seed=2)
    alphas, betas, losses = L.loss_surface(net, obj, params, d1, d2, batches, grid=3, span=0.5)
    assert losses.shape == (3, 3) and alphas[1] == 0.0 and betas[1] == 0.0
    expected = []
    for xs, ys in batches:
        out, _, rec = net.run(params, xs)
        expected.append(float(B64.to_numpy(obj(out, ys, rec, net.spiking))))
    np.testing.assert_allclose(losses[1, 1], np.mean(expected), rtol=1e-12)
    assert np.all(np.isfinite(losses))


def test_centre_with_rate_regularizer_uses_rec(B64):
    # the objective sees the network's spikes: the regulariser term must be included
    net = small_snn()
    loss, reg = make_loss("ce_mean"), RateRegularizer(target_hz=200.0, strength=10.0)
    params = net.init(0, backend=B64, dtype="float64")
    xs, ys = (B64.asarray(a) for a in data(np.random.default_rng(3), 1)[0])
    d1, d2 = L.random_directions(params, seed=0)
    _, _, with_reg = L.loss_surface(net, Objective(loss, reg), params, d1, d2, [(xs, ys)], grid=1, span=0.1)
    _, _, without = L.loss_surface(net, Objective(loss), params, d1, d2, [(xs, ys)], grid=1, span=0.1)
    out, _, rec = net.run(params, xs)
    np.testing.assert_allclose(with_reg[0, 0] - without[0, 0], float(B64.to_numpy(reg(rec["out"], net.spiking))), rtol=1e-12)


def linear_case(B):
    """``y = x @ w`` with 2 weights and MSE: the surface is a quadratic in closed form."""
    net = Network(2, [Dense(1)])
    params = B.tree_asarray({"layers": [{"w": np.array([[0.7], [-0.4]]), "cell": {}}], "links": []})
    d1 = {"layers": [{"w": np.array([[1.0], [0.0]]), "cell": {}}], "links": []}
    d2 = {"layers": [{"w": np.array([[0.5], [2.0]]), "cell": {}}], "links": []}  # not orthogonal to d1
    rng = np.random.default_rng(0)
    batches = [(rng.normal(size=(6, 5, 2)), rng.normal(size=(6, 5, 1))) for _ in range(3)]

    def closed_form(a, b):
        w = np.array([0.7 + a + 0.5 * b, -0.4 + 2.0 * b])
        return np.mean([0.5 * np.mean((x @ w - y[..., 0]) ** 2) for x, y in batches])

    return net, params, d1, d2, [(B.asarray(x), B.asarray(y)) for x, y in batches], closed_form


@pytest.mark.parametrize("vectorize", [False, True])
def test_linear_mse_closed_form(B64, vectorize):
    net, params, d1, d2, batches, closed_form = linear_case(B64)
    obj = Objective(make_loss("mse_membrane"))
    alphas, betas, losses = L.loss_surface(
        net, obj, params, d1, d2, batches, grid=(5, 4), span=((-1.0, 2.0), (-0.5, 0.5)), chunk=3, vectorize=vectorize
    )
    np.testing.assert_allclose(alphas, np.linspace(-1, 2, 5))
    np.testing.assert_allclose(betas, np.linspace(-0.5, 0.5, 4))
    expected = np.array([[closed_form(a, b) for b in betas] for a in alphas])
    np.testing.assert_allclose(losses, expected, rtol=1e-12)


def test_numpy_params_run_on_the_data_backend():
    B = get_backend("jax", dtype="float64")
    net, params, d1, d2, batches, closed_form = linear_case(B)
    params_np = B.tree_to_numpy(params)
    _, _, losses = L.loss_surface(net, Objective(make_loss("mse_membrane")), params_np, d1, d2, batches, grid=2, span=1.0)
    np.testing.assert_allclose(losses[0, 1], closed_form(-1.0, 1.0), rtol=1e-12)


def test_jax_and_torch_give_the_same_surface():
    net = small_snn()
    obj = Objective(make_loss("ce_mean"), RateRegularizer())
    params_np = net.init_numpy(4)
    d1, d2 = L.random_directions(params_np, seed=5)
    raw = data(np.random.default_rng(6), 2)
    out = {}
    for name in ("jax", "torch"):
        B = get_backend(name, dtype="float64")
        batches = [(B.asarray(x), B.asarray(y)) for x, y in raw]
        out[name] = L.loss_surface(net, obj, B.tree_asarray(params_np), d1, d2, batches, grid=(5, 5), span=0.8)[2]
    assert np.ptp(out["jax"]) > 1e-3  # the surface is not flat
    np.testing.assert_allclose(out["jax"], out["torch"], rtol=1e-10, atol=1e-12)


def test_loss_surface_errors():
    B = get_backend("jax", dtype="float64")
    net, params, d1, d2, batches, _ = linear_case(B)
    obj = Objective(make_loss("mse_membrane"))
    with pytest.raises(ValueError, match="grid"):
        L.loss_surface(net, obj, params, d1, d2, batches, grid=0)
    with pytest.raises(ValueError, match="span"):
        L.loss_surface(net, obj, params, d1, d2, batches, span=(1.0, -1.0))
    with pytest.raises(ValueError, match="span"):
        L.loss_surface(net, obj, params, d1, d2, batches, span=-2.0)
    with pytest.raises(ValueError, match="batches"):
        L.loss_surface(net, obj, params, d1, d2, [])
    with pytest.raises(ValueError, match="chunk"):
        L.loss_surface(net, obj, params, d1, d2, batches, chunk=0)
    bad = {"layers": [{"w": np.zeros((3, 1)), "cell": {}}], "links": []}
    with pytest.raises(ValueError, match="d2"):
        L.loss_surface(net, obj, params, d1, bad, batches)
    with pytest.raises(ValueError, match=r"batches\[0\]\[0\]"):
        L.loss_surface(net, obj, params, d1, d2, [(B.asarray(np.zeros((4, 2, 3))), batches[0][1])])


# ------------------------------------------------------------------------------ directions
def template():
    return {"layers": [{"w": np.zeros((3, 4)), "b": np.zeros(4), "cell": {}}], "links": []}


def vec_to_tree(v):
    return {"layers": [{"w": v[:12].reshape(3, 4), "b": v[12:], "cell": {}}], "links": []}


def flat(tree):
    return np.concatenate([np.ravel(x) for x in tree_leaves(tree)])


def test_pca_recovers_known_directions():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(16, 2)))
    u, v = Q[:, 0], Q[:, 1]
    final = vec_to_tree(rng.normal(size=16))
    K = 9
    c1 = np.linspace(-3.0, 0.0, K)
    c2 = rng.normal(size=K)
    c2 -= (c2 @ c1) / (c1 @ c1) * c1  # c1 and c2 orthogonal: the SVD is exactly (c1 u^T + c2 v^T)
    c2 *= 0.8 / np.linalg.norm(c2) * np.sign(-c2[0])  # smaller, first point negative
    traj = [tree_map(lambda f, du, dv: f + a * du + b * dv, final, vec_to_tree(u), vec_to_tree(v)) for a, b in zip(c1, c2)]
    d1, d2, explained = L.trajectory_directions(traj, final)
    np.testing.assert_allclose(flat(d1), u, atol=1e-12)
    np.testing.assert_allclose(flat(d2), v, atol=1e-12)
    s = np.array([c1 @ c1, c2 @ c2])
    np.testing.assert_allclose(explained, s / s.sum(), rtol=1e-12)
    coords = L.project_trajectory(traj, final, d1, d2)
    np.testing.assert_allclose(coords, np.stack([c1, c2], 1), atol=1e-12)


def test_pca_with_a_third_direction_explains_less_than_all():
    rng = np.random.default_rng(1)
    final = vec_to_tree(np.zeros(16))
    traj = [vec_to_tree(rng.normal(size=16)) for _ in range(6)]
    d1, d2, explained = L.trajectory_directions(traj, final)
    assert explained[0] >= explained[1] > 0 and explained.sum() < 1.0
    assert abs(flat(d1) @ flat(d2)) < 1e-12 and abs(np.linalg.norm(flat(d1)) - 1) < 1e-12
    assert (flat(traj[0]) @ flat(d1)) < 0 and (flat(traj[0]) @ flat(d2)) < 0  # sign convention


def test_pca_errors():
    final = vec_to_tree(np.zeros(16))
    line = [vec_to_tree(np.full(16, float(k))) for k in range(4)]
    with pytest.raises(ValueError, match="trajectory"):
        L.trajectory_directions(line, final)
    with pytest.raises(ValueError, match="trajectory"):
        L.trajectory_directions([final], final)
    bad = {"layers": [{"w": np.zeros((4, 3)), "b": np.zeros(4), "cell": {}}], "links": []}
    with pytest.raises(ValueError, match=r"trajectory\[1\]"):
        L.trajectory_directions([final, bad], final)


def column_norms(w, axis_out):
    other = tuple(i for i in range(w.ndim) if i != axis_out % w.ndim)
    return np.sqrt(np.sum(np.asarray(w) ** 2, axis=other))


def test_filter_normalisation_matches_param_filter_norms():
    net = small_snn()
    params = net.init_numpy(0)
    params["layers"][0]["cell"] = {"alpha": np.full(5, 0.9)}
    params["links"] = [{"w": np.random.default_rng(0).normal(size=(2, 3, 3, 3))}]  # conv-shaped: (C_out, C_in, k, k)
    d1, d2 = L.random_directions(params, seed=7)
    for d in (d1, d2):
        for l in range(2):
            for name in ("w", "w_rec") if l == 0 else ("w",):
                np.testing.assert_allclose(column_norms(d["layers"][l][name], -1), column_norms(params["layers"][l][name], -1), rtol=1e-12)
        np.testing.assert_allclose(column_norms(d["links"][0]["w"], 0), column_norms(params["links"][0]["w"], 0), rtol=1e-12)
        assert np.all(d["layers"][0]["cell"]["alpha"] == 0)  # vectors="zero"
    assert not np.allclose(d1["layers"][0]["w"], d2["layers"][0]["w"])
    again, _ = L.random_directions(params, seed=7)
    np.testing.assert_array_equal(again["layers"][0]["w"], d1["layers"][0]["w"])
    other, _ = L.random_directions(params, seed=8)
    assert not np.allclose(other["layers"][0]["w"], d1["layers"][0]["w"])
    # vectors="normalize": 1-D leaves rescaled as a whole; filter_axis=0: rows of 2-D weights
    dn, _ = L.random_directions(params, seed=7, vectors="normalize", filter_axis=0)
    np.testing.assert_allclose(np.linalg.norm(dn["layers"][0]["cell"]["alpha"]), np.linalg.norm(params["layers"][0]["cell"]["alpha"]))
    np.testing.assert_allclose(column_norms(dn["layers"][0]["w"], 0), column_norms(params["layers"][0]["w"], 0), rtol=1e-12)
    # without filter normalisation: unit length over all parameters
    du, _ = L.random_directions(params, seed=7, filter_normalize=False)
    np.testing.assert_allclose(np.linalg.norm(flat(du)), 1.0)
    with pytest.raises(ValueError, match="vectors"):
        L.random_directions(params, seed=0, vectors="drop")


def test_zero_filters_stay_zero_and_backend_arrays_come_back():
    B = get_backend("torch", dtype="float64")
    params = {"w": np.array([[1.0, 0.0], [2.0, 0.0]])}  # second filter (column) all zero
    d1, _ = L.random_directions(B.tree_asarray(params), seed=0)
    assert type(d1["w"]).__module__.startswith("torch")
    w = B.to_numpy(d1["w"])
    np.testing.assert_allclose(np.linalg.norm(w[:, 0]), np.sqrt(5.0))
    np.testing.assert_array_equal(w[:, 1], 0.0)


def test_project_trajectory_with_non_orthogonal_directions():
    rng = np.random.default_rng(2)
    final = vec_to_tree(rng.normal(size=16))
    d1, d2 = vec_to_tree(rng.normal(size=16)), vec_to_tree(rng.normal(size=16))
    pts = np.array([[0.3, -1.2], [2.0, 0.5], [0.0, 0.0]])
    traj = [tree_map(lambda f, x, y: f + a * x + b * y, final, d1, d2) for a, b in pts]
    np.testing.assert_allclose(L.project_trajectory(traj, final, d1, d2), pts, atol=1e-12)
    with pytest.raises(ValueError, match="d1, d2"):
        L.project_trajectory(traj, final, d1, d1)


def test_auto_span_covers_the_trajectories():
    (alo, ahi), (blo, bhi) = L.auto_span([np.array([[-2.0, 1.0], [0.5, 3.0]])], margin=0.1)
    assert alo < -2.0 and ahi > 0.5 and blo < 0.0 and bhi > 3.0
    with pytest.raises(ValueError, match="coords"):
        L.auto_span(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="margin"):
        L.auto_span(np.ones((1, 2)), margin=-0.1)


def test_landscape_grid_progress_on_stderr(backend_name, capsys):
    from neuroplastic.progress import progress_enabled

    net = small_snn()
    B = get_backend(backend_name)
    params = net.init(0, backend=B)
    batches = [(B.asarray(x), B.asarray(y)) for x, y in data(np.random.default_rng(1), n_batches=1)]
    d1, d2 = L.random_directions(params, seed=2)
    L.loss_surface(net, Objective(make_loss("ce_mean")), params, d1, d2, batches, grid=3, span=0.5)
    assert capsys.readouterr().err == ""  # silent by default (tests, logs)
    with progress_enabled(True):
        L.loss_surface(net, Objective(make_loss("ce_mean")), params, d1, d2, batches, grid=3, span=0.5, chunk=4)
    err = capsys.readouterr().err
    assert "loss landscape (3 x 3 points)" in err and "9/9" in err
    assert err.count("compiling") == (1 if B.compiles else 0)
