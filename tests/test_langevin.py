"""MALA and HMC: exact targets, the acceptance test, the posterior scaling, the rule interface."""

import math

import numpy as np
import pytest

from neuroplastic.analysis.uncertainty import PredictiveAccumulator, compare_uncertainty, entropy, predictive_uncertainty
from neuroplastic.backend import get_backend
from neuroplastic.cells import LIF, LeakyReadout
from neuroplastic.layers import Dense
from neuroplastic.losses import Objective, make_loss
from neuroplastic.network import Network
from neuroplastic.rules import make_rule
from neuroplastic.rules.langevin import HMC, MALA, make_potential, run_chain, sample
from neuroplastic.train import Trainer
from neuroplastic.train.sampling import fisher_scale

MU = np.array([1.0, -2.0])
COV = np.array([[1.0, 0.8], [0.8, 1.5]])


def _gaussian(B):
    """Energy of N(MU, COV) on params {"w": (2,)}."""
    prec, mu = B.asarray(np.linalg.inv(COV)), B.asarray(MU)

    def energy(p):
        d = p["w"] - mu
        return 0.5 * B.sum(d * B.matmul(prec, d))

    return energy


def _moments(B, samples, burnin):
    w = B.to_numpy(samples["w"])[burnin:]
    return w.mean(axis=0), np.cov(w.T)


@pytest.mark.parametrize("rule", [MALA(step_size=0.5, burnin=1000), HMC(step_size=0.3, n_leapfrog=5, burnin=1000)], ids=["mala", "hmc"])
def test_chain_recovers_a_2d_gaussian(rule):
    B = get_backend("jax", dtype="float64")
    samples, state, infos = run_chain(rule, make_potential(_gaussian(B)), {"w": B.zeros((2,))}, 21000, B.key(1))
    mean, cov = _moments(B, samples, 1000)
    assert np.abs(mean - MU).max() < 0.1, mean
    assert np.abs(cov - COV).max() < 0.15, cov
    rate = float(B.to_numpy(state["accept_sum"])) / 20000
    assert abs(rate - rule.target_accept) < 0.15, rate  # the adapted step reaches about the target


def test_chain_recovers_a_2d_gaussian_on_torch():
    B = get_backend("torch", dtype="float64")
    samples, _, _ = run_chain(MALA(step_size=0.5, burnin=300), make_potential(_gaussian(B)), {"w": B.zeros((2,))}, 2300, B.key(1))
    mean, cov = _moments(B, samples, 300)
    assert np.abs(mean - MU).max() < 0.3, mean
    assert np.abs(cov - COV).max() < 0.45, cov


class _NoProposalCorrection(MALA):
    """MALA without the proposal-density ratio (Neko's sampler): only ``U(w) - U(w')``."""

    @staticmethod
    def log_accept_ratio(B, w, u0, g0, w1, u1, g1, eps, scale=None, mask=None):
        return u0 - u1


def test_a_bad_proposal_still_targets_the_right_distribution():
    """The drift points at the wrong Gaussian; Metropolis-Hastings corrects it, and only with q's ratio."""
    B = get_backend("jax", dtype="float64")
    wrong_mu, wrong_prec = B.asarray(MU + 1.0), B.asarray(2.0 * np.eye(2))
    potential = make_potential(_gaussian(B), proposal_grad=lambda p: {"w": B.matmul(wrong_prec, p["w"] - wrong_mu)})

    def error(rule):
        samples, _, _ = run_chain(rule, potential, {"w": B.zeros((2,))}, 31000, B.key(2))
        mean, cov = _moments(B, samples, 1000)
        return max(np.abs(mean - MU).max(), np.abs(cov - COV).max())

    assert error(MALA(step_size=0.5, burnin=1000)) < 0.2
    # the same check fails for the chains that are known to be wrong: it can tell
    assert error(_NoProposalCorrection(step_size=0.5, burnin=1000)) > 0.4
    assert error(MALA(step_size=0.5, burnin=1000, metropolis=False)) > 0.4


def test_acceptance_ratio_by_hand(backend_name):
    B = get_backend(backend_name, dtype="float64")
    w, w1 = {"a": B.asarray(np.array([0.3, -1.0]))}, {"a": B.asarray(np.array([0.5, -0.7]))}
    g0, g1 = {"a": B.asarray(np.array([0.2, 0.4]))}, {"a": B.asarray(np.array([-1.0, 0.1]))}
    eps, u0, u1 = 0.4, 2.0, 2.3
    h = eps**2 / 2
    log_q_fwd = -np.sum((np.array([0.5, -0.7]) - np.array([0.3, -1.0]) + h * np.array([0.2, 0.4])) ** 2) / (2 * eps**2)
    log_q_bwd = -np.sum((np.array([0.3, -1.0]) - np.array([0.5, -0.7]) + h * np.array([-1.0, 0.1])) ** 2) / (2 * eps**2)
    expected = u0 - u1 + log_q_bwd - log_q_fwd
    got = MALA.log_accept_ratio(B, w, B.asarray(u0), g0, w1, B.asarray(u1), g1, B.asarray(eps))
    assert float(B.to_numpy(got)) == pytest.approx(expected, rel=1e-12)


def test_hmc_with_one_leapfrog_step_is_mala():
    B = get_backend("torch", dtype="float64")
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 3))
    prec = B.asarray(a @ a.T + np.eye(3))
    potential = make_potential(lambda p: 0.5 * B.sum(p["x"] * B.matmul(prec, p["x"])) + B.sum(B.exp(0.1 * p["y"])))
    params = {"x": B.asarray(rng.normal(size=3)), "y": B.asarray(rng.normal(size=(2, 2)))}
    mala, hmc = MALA(step_size=0.3), HMC(step_size=0.3, n_leapfrog=1, target_accept=MALA.default_target)
    sm, sh = mala.init_state(B, B.key(5)), hmc.init_state(B, B.key(5))
    step_m = B.jit(lambda p, s: mala.transition(B, potential, p, s))
    step_h = B.jit(lambda p, s: hmc.transition(B, potential, p, s))
    for _ in range(4):
        pm, sm, im = step_m(params, sm)
        ph, sh, ih = step_h(params, sh)
        assert float(B.to_numpy(im["accept_prob"])) == pytest.approx(float(B.to_numpy(ih["accept_prob"])), rel=1e-9, abs=1e-12)
        for k in params:
            np.testing.assert_allclose(B.to_numpy(pm[k]), B.to_numpy(ph[k]), rtol=1e-12, atol=1e-12)
        params = pm


def _snn():
    return Network(3, [Dense(5), LIF(tau_mem=5.0, threshold=0.5), Dense(3, bias=True), LeakyReadout(tau_out=5.0)])


def test_potential_is_the_full_data_log_posterior_from_a_minibatch():
    B = get_backend("torch", dtype="float64")
    net = _snn()
    params = net.init(0, backend=B)
    rng = np.random.default_rng(0)
    xs, ys = rng.uniform(0, 1.5, (6, 10, 3)), rng.integers(0, 3, 10)
    batch = (B.asarray(xs), B.asarray(ys))
    objective = Objective(make_loss("ce_sum"))
    rule = MALA(n_data=250, prior_std=0.7, temperature=2.0)
    u, grad, aux = rule.potential(net, batch, objective)(params)
    # by hand: -log p(y|x,w) per example from the summed readout, scaled by N/|b|
    out = B.to_numpy(net.run(params, batch[0])[0]).sum(axis=0)
    logp = out - np.log(np.exp(out).sum(axis=1, keepdims=True))
    nll = -logp[np.arange(10), ys].sum()
    sq = sum(np.sum(B.to_numpy(v) ** 2) for v in [params["layers"][0]["w"], params["layers"][1]["w"], params["layers"][1]["b"]])
    assert float(B.to_numpy(u)) == pytest.approx((250 / 10 * nll + sq / (2 * 0.49)) / 2.0, rel=1e-10)
    # the proposal direction is the (surrogate) BPTT gradient of the same energy
    g, _, _ = make_rule("bptt").gradients(net, params, {}, batch, objective)
    for path in (("layers", 0, "w"), ("layers", 1, "b")):
        a = grad[path[0]][path[1]][path[2]]
        b = g[path[0]][path[1]][path[2]]
        w = params[path[0]][path[1]][path[2]]
        np.testing.assert_allclose(B.to_numpy(a), B.to_numpy((250 * b + w / 0.49) / 2.0), rtol=1e-10, atol=1e-12)
    assert float(B.to_numpy(aux["loss"])) == pytest.approx(nll / 10, rel=1e-10)


def test_step_size_adapts_during_burnin_only():
    B = get_backend("jax", dtype="float64")
    _, _, infos = run_chain(MALA(step_size=0.01, burnin=200), make_potential(_gaussian(B)), {"w": B.zeros((2,))}, 400, B.key(0))
    eps = B.to_numpy(infos["step_size"])
    assert eps[199] > 10 * eps[0]  # a far too small start grows towards the target acceptance
    assert np.all(eps[201:] == eps[200])  # frozen afterwards: a fixed kernel


def _task(n: int = 40, seed: int = 1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.uniform(0, 0.5, (6, n, 3)).astype(np.float32)
    x[:, np.arange(n), y] += 1.0
    return x, y


def test_rule_interface_with_the_trainer_and_the_naive_optimizer(backend_name):
    from neuroplastic.data import from_arrays

    B = get_backend(backend_name)
    net = _snn()
    x, y = _task()
    rule = make_rule("mala", step_size=1e-3, n_data=40, burnin=5)
    trainer = Trainer(net, rule, loss="ce_sum", optimizer="naive", lr=1.0, backend=B, progress=False)
    p0 = net.init(0, backend=B)
    params, hist = trainer.fit(p0, from_arrays(x, y, x, y), epochs=3, batch_size=40)
    _, rule_state = trainer.last_state
    assert float(B.to_numpy(rule_state["step"])) == 3.0 and len(hist) == 3
    if float(B.to_numpy(rule_state["accepted"])) == 1.0:  # the last proposal was taken: params moved
        assert np.any(B.to_numpy(params["layers"][0]["w"]) != B.to_numpy(p0["layers"][0]["w"]))


def test_gradients_are_the_move_of_the_chain():
    B = get_backend("torch", dtype="float64")
    net = _snn()
    x, y = _task()
    rule = MALA(step_size=1e-4, n_data=40)  # small enough to be accepted
    objective = Objective(make_loss("ce_sum"))
    p0 = net.init(0, backend=B)
    state = rule.init(net, p0, B.key(3))
    batch = (B.asarray(x), B.asarray(y))
    new, state1, info = rule.step(net, p0, state, batch, objective)
    grads, state2, aux = rule.gradients(net, p0, state, batch, objective)
    assert float(info["accepted"]) == float(aux["accepted"]) == 1.0
    for a, g, b in zip(*(list(_leaves(t)) for t in (p0, grads, new))):
        np.testing.assert_allclose(B.to_numpy(a - g), B.to_numpy(b), atol=1e-12)
    assert {"loss", "outputs", "spikes", "accept_prob", "step_size", "potential"} <= set(aux)


def _leaves(tree):
    from neuroplastic.tree import tree_leaves

    return tree_leaves(tree)


def test_sample_keeps_predictions_not_weights():
    B = get_backend("torch")
    net = _snn()
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0, 1.5, (6, 30, 3)).astype(np.float32), rng.integers(0, 3, 30)
    rule = MALA(step_size=1e-3, n_data=30, burnin=4)
    res = sample(rule, net, net.init(0, backend=B), x, y, n_samples=3, thin=2, eval_x=x[:, :7], backend=B)
    assert res.predictive.n == 3 and res.samples == [] and len(res.trace) == 4 + 6
    s = res.predictive.summary()
    assert s["mean"].shape == (7, 3) and np.allclose(s["mean"].sum(1), 1.0, atol=1e-5)
    assert np.all(s["mutual_information"] >= 0)
    assert 0.0 <= res.accept_rate <= 1.0 and res.step_size > 0
    res2 = sample(rule, net, net.init(0, backend=B), x, y, n_samples=2, batch_size=10, keep_params=True, backend=B)
    assert res2.predictive is None and len(res2.samples) == 2


def test_preconditioned_ratio_is_the_plain_ratio_in_scaled_coordinates(backend_name):
    """With scales s, MALA's test is the isotropic one on z = w / s (gradient s * grad U)."""
    B = get_backend(backend_name, dtype="float64")
    rng = np.random.default_rng(3)
    w, w1, g0, g1 = (rng.normal(size=4) for _ in range(4))
    s = np.array([0.1, 1.0, 3.0, 0.5])
    arr = lambda a: {"a": B.asarray(a)}  # noqa: E731
    scaled = MALA.log_accept_ratio(B, arr(w), 1.0, arr(g0), arr(w1), 1.4, arr(g1), 0.3, arr(s))
    plain = MALA.log_accept_ratio(B, arr(w / s), 1.0, arr(s * g0), arr(w1 / s), 1.4, arr(s * g1), 0.3)
    assert float(B.to_numpy(scaled)) == pytest.approx(float(B.to_numpy(plain)), rel=1e-12)


@pytest.mark.parametrize("rule_cls", [MALA, HMC], ids=["mala", "hmc"])
def test_preconditioned_chain_recovers_a_badly_scaled_gaussian(rule_cls):
    """Standard deviations 20 and 0.05: with the matching scales the chain gets both right."""
    B = get_backend("jax", dtype="float64")
    std = np.array([20.0, 0.05])
    mu = np.array([5.0, -0.1])

    def energy(p):
        return 0.5 * B.sum(((p["w"] - B.asarray(mu)) / B.asarray(std)) ** 2)

    opts = {"n_leapfrog": 3} if rule_cls is HMC else {}
    rule = rule_cls(step_size=0.5, burnin=500, scale={"w": std}, **opts)
    samples, state, _ = run_chain(rule, make_potential(energy), {"w": B.asarray(mu)}, 8500, B.key(4))
    w = B.to_numpy(samples["w"])[500:]
    assert np.all(np.abs(w.mean(0) - mu) < 0.15 * std), w.mean(0)
    assert np.all(np.abs(w.std(0) / std - 1) < 0.15), w.std(0)
    assert 0.3 < float(B.to_numpy(state["accept_sum"])) / 8000 < 0.95


def test_sample_tracks_coordinates_and_fisher_scale():
    B = get_backend("jax")
    net = _snn()
    rng = np.random.default_rng(5)
    x, y = rng.uniform(0, 1.5, (6, 40, 3)).astype(np.float32), rng.integers(0, 3, 40)
    params = net.init(0, backend=B)
    scale = fisher_scale(net, params, x, y, prior_std=0.5, batch_size=10, backend=B)
    leaves = _leaves(scale)
    assert [a.shape for a in leaves] == [tuple(a.shape) for a in _leaves(params)]
    assert all(np.all((a > 0) & (a <= 0.5)) for a in leaves)
    res = sample(MALA(step_size=0.5, n_data=40, burnin=3, scale=scale), net, params, x, y, n_samples=4, backend=B, track=5)
    assert res.tracked.shape == (7, 5) and res.tracked_index.shape == (5,)
    flat0 = np.concatenate([np.ravel(a) for a in _leaves(B.tree_to_numpy(params))])
    assert np.all(np.isfinite(res.tracked)) and flat0.size > res.tracked_index.max()
    with pytest.raises(ValueError, match="scale: every entry"):
        MALA(scale={"w": np.array([1.0, 0.0])})
    with pytest.raises(ValueError, match="track must be"):
        sample(MALA(n_data=40), net, params, x, y, n_samples=1, backend=B, track=-1)
    with pytest.raises(ValueError, match="batch_size: 99"):
        fisher_scale(net, params, x, y, batch_size=99, backend=B)


def test_uncertainty_measures_by_hand():
    p = np.array([[[0.9, 0.1], [0.5, 0.5]], [[0.1, 0.9], [0.5, 0.5]]])  # 2 samples, 2 examples
    u = predictive_uncertainty(p)
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    np.testing.assert_allclose(u["entropy_of_mean"], [math.log(2), math.log(2)])
    np.testing.assert_allclose(u["expected_entropy"], [h, math.log(2)])
    np.testing.assert_allclose(u["mutual_information"], [math.log(2) - h, 0.0], atol=1e-15)
    assert entropy(np.array([1.0, 0.0])) == 0.0
    acc = PredictiveAccumulator(keep=True)
    for s in p:
        acc.add(s)
    for k, v in acc.summary().items():
        np.testing.assert_allclose(v, u[k])
    np.testing.assert_array_equal(acc.samples, p)
    with pytest.raises(ValueError, match="probs: expected probabilities"):
        acc.add(np.array([[0.5, 0.6], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="probs: expected shape"):
        acc.add(np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="no samples"):
        PredictiveAccumulator().mean


def test_compare_uncertainty_is_one_sided():
    rng = np.random.default_rng(0)
    correct = rng.random(400) < 0.7
    u = rng.random(400) + 0.5 * ~correct
    assert compare_uncertainty(u, correct)["p_value"] < 1e-6
    assert compare_uncertainty(-u, correct)["p_value"] > 0.99
    with pytest.raises(ValueError, match="correct: need both"):
        compare_uncertainty(u, np.ones(400, bool))


def test_errors_name_the_argument():
    for kwargs, msg in [
        ({"step_size": 0}, "step_size must be"), ({"n_data": 0}, "n_data must be a positive integer"),
        ({"prior_std": -1}, "prior_std must be"), ({"temperature": 0}, "temperature must be"),
        ({"target_accept": 1.5}, "target_accept must be"), ({"burnin": -1}, "burnin must be"),
        ({"adapt_decay": 0.3}, "adapt_decay must be"), ({"truncate": 0}, "truncate must be"),
    ]:
        with pytest.raises(ValueError, match=msg):
            MALA(**kwargs)
    with pytest.raises(ValueError, match="n_leapfrog must be a positive integer"):
        HMC(n_leapfrog=0)
    with pytest.raises(ValueError, match="rule: expected a MALA or HMC"):
        sample(make_rule("bptt"), _snn(), {}, np.zeros((2, 3, 3)), np.zeros(3, int))
    with pytest.raises(ValueError, match="n_data: the rule scales to 99"):
        sample(MALA(n_data=99), _snn(), {}, np.zeros((2, 3, 3)), np.zeros(3, int))
    with pytest.raises(ValueError, match="n_steps must be"):
        run_chain(MALA(), make_potential(lambda p: p["w"].sum()), {"w": np.zeros(2)}, 0)


@pytest.mark.slow
def test_mnist1d_uncertainty_is_higher_on_errors_reduced_run():
    """The example's reduced run: the entropy of the posterior mean is larger on errors (p < 0.01)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "hmc_uncertainty_mnist1d.py"
    spec = importlib.util.spec_from_file_location("hmc_uncertainty_mnist1d", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    args = example.configure(["--quick", "--no-doc", "--plot", "", "--trace-plot", "", "--track", "20"])
    out = example.run(args)
    assert out["tests"]["entropy_of_mean"]["p_value"] < 0.01
    assert 0.0 < out["accept_rate"] <= 1.0
    assert out["posterior_mean_test_acc"] > 0.3


# ---------------------------------------------------------------------- adapted scales, reused energy
def test_scale_adaptation_windows_are_stans():
    from neuroplastic.rules.langevin import scale_adaptation_windows

    # Stan's warm-up of 1000: fast 75, slow windows 25, 50, 100, 200, 500, fast 50
    assert scale_adaptation_windows(1000) == [(75, 100), (100, 150), (150, 250), (250, 450), (450, 950)]
    assert scale_adaptation_windows(400) == [(75, 100), (100, 150), (150, 350)]
    assert scale_adaptation_windows(100) == [(15, 90)]  # short: 15% / 75% / 10%
    with pytest.raises(ValueError, match="burnin: adapting the scales needs at least 20"):
        scale_adaptation_windows(10)
    with pytest.raises(ValueError, match="base_window must be a positive"):
        scale_adaptation_windows(1000, 75, 0, 50)
    with pytest.raises(ValueError, match="adapt_scale must be True or False"):
        MALA(adapt_scale="yes")
    with pytest.raises(ValueError, match="params: adapt_scale=True needs"):
        MALA(burnin=100, adapt_scale=True).init_state(get_backend("jax"))


STD6 = np.geomspace(0.05, 20.0, 6)  # standard deviations 400-fold apart
MU6 = np.linspace(-1.0, 1.0, 6)


def _scaled_gaussian(B):
    return lambda p: 0.5 * B.sum(((p["w"] - B.asarray(MU6)) / B.asarray(STD6)) ** 2)


@pytest.mark.parametrize("rule_cls", [MALA, HMC], ids=["mala", "hmc"])
def test_adapted_scales_learn_an_unknown_diagonal_covariance(rule_cls):
    """Started with unit scales, the burn-in's windows find the standard deviations; the same
    budget without adaptation gets the widest coordinate wrong (the check can fail)."""
    B = get_backend("jax", dtype="float64")
    opts = {"n_leapfrog": 3} if rule_cls is HMC else {}

    def run(adapt):
        rule = rule_cls(step_size=0.1, burnin=3000, adapt_scale=adapt, **opts)
        samples, state, _ = run_chain(rule, make_potential(_scaled_gaussian(B)), {"w": B.asarray(MU6)}, 11000, B.key(4))
        return B.to_numpy(samples["w"])[3000:], state

    w, state = run(True)
    np.testing.assert_allclose(B.to_numpy(state["scale"]["w"]) / STD6, 1.0, atol=0.2)
    np.testing.assert_allclose(w.std(0) / STD6, 1.0, atol=0.12)
    assert np.all(np.abs(w.mean(0) - MU6) < 0.15 * STD6), w.mean(0)
    assert 0.2 < float(B.to_numpy(state["accept_sum"])) / 8000 < 0.95
    w_plain, _ = run(False)
    assert w_plain.std(0)[-1] / STD6[-1] < 0.6  # unit scales: the step fits the narrowest coordinate


def test_adapted_scales_and_step_are_frozen_after_burnin():
    B = get_backend("jax", dtype="float64")
    rule = MALA(step_size=0.1, burnin=200, adapt_scale=True)
    potential = make_potential(_scaled_gaussian(B))
    _, at_end_of_burnin, _ = run_chain(rule, potential, {"w": B.asarray(MU6)}, 200, B.key(7))
    _, later, infos = run_chain(rule, potential, {"w": B.asarray(MU6)}, 500, B.key(7))
    np.testing.assert_array_equal(B.to_numpy(later["scale"]["w"]), B.to_numpy(at_end_of_burnin["scale"]["w"]))
    assert not np.allclose(B.to_numpy(later["scale"]["w"]), 1.0)  # it did adapt during burn-in
    eps = B.to_numpy(infos["step_size"])
    assert np.all(eps[201:] == eps[200])


@pytest.mark.parametrize("rule", [MALA(step_size=0.4, burnin=20), HMC(step_size=0.3, n_leapfrog=3, burnin=20)], ids=["mala", "hmc"])
def test_reused_energy_gives_the_same_chain_with_fewer_evaluations(rule):
    B = get_backend("torch", dtype="float64")
    calls = []

    def energy(p):
        calls.append(1)
        return _gaussian(B)(p)

    chains = {}
    for reuse in (True, False):
        calls.clear()
        samples, _, infos = run_chain(rule, make_potential(energy), {"w": B.zeros((2,))}, 30, B.key(3), jit=False, reuse_potential=reuse)
        chains[reuse] = (B.to_numpy(samples["w"]), B.to_numpy(infos["accepted"]), len(calls))
    np.testing.assert_allclose(chains[True][0], chains[False][0], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(chains[True][1], chains[False][1])
    assert 0 < chains[True][1].sum() < 30  # both accepted and rejected proposals were replayed
    assert chains[True][2] == 30 * rule.potential_evals(True) + 1
    assert chains[False][2] == 30 * rule.potential_evals(False)


def test_full_batch_sample_reuses_the_energy_and_adapts_scales(backend_name):
    B = get_backend(backend_name)
    net = _snn()
    x, y = _task()
    params = net.init(0, backend=B)
    rule = MALA(step_size=0.05, n_data=40, burnin=40, adapt_scale=True)
    res = sample(rule, net, params, x, y, n_samples=5, backend=B, track=3)
    assert res.gradient_evals == 45 + 1  # one per transition, plus the start
    assert len(res.trace) == 45 and all(np.isfinite(t["loss"]) for t in res.trace)
    scales = _leaves(res.scale)
    assert [s.shape for s in scales] == [tuple(a.shape) for a in _leaves(params)]
    assert all(np.all(s > 0) for s in scales) and not all(np.allclose(s, 1.0) for s in scales)
    res_mb = sample(MALA(step_size=0.05, n_data=40, burnin=2), net, params, x, y, n_samples=3, batch_size=20, backend=B)
    assert res_mb.gradient_evals == 5 * 2 and res_mb.scale is None  # mini-batches recompute U


def _blocked_gaussian(B):
    """N(MU, COV) on params {"a": (1,), "b": (1,)}: two blocks of one coordinate each."""
    energy = _gaussian(B)
    return lambda p: energy({"w": B.concatenate([p["a"], p["b"]])})


class _UnmaskedRatio(MALA):
    """A blocked MALA whose proposal ratio wrongly sums over the parameters that did not move."""

    @staticmethod
    def log_accept_ratio(B, w, u0, g0, w1, u1, g1, eps, scale=None, mask=None):
        return MALA.log_accept_ratio(B, w, u0, g0, w1, u1, g1, eps, scale, None)


def _blocked_chain_error(rule, seed=1):
    """Largest error of mean and covariance of a blocked chain whose drift points at another,
    differently correlated Gaussian (each block's drift depends on the other block)."""
    B = get_backend("jax", dtype="float64")
    wrong_mu, wrong_prec = B.asarray(MU + 0.5), B.asarray(np.array([[1.0, -0.8], [-0.8, 1.0]]))

    def drift(p):
        g = B.matmul(wrong_prec, B.concatenate([p["a"], p["b"]]) - wrong_mu)
        return {"a": g[:1], "b": g[1:]}

    samples, state, _ = run_chain(
        rule, make_potential(_blocked_gaussian(B), proposal_grad=drift), {"a": B.zeros((1,)), "b": B.zeros((1,))}, 61000, B.key(seed)
    )
    w = np.concatenate([B.to_numpy(samples["a"]), B.to_numpy(samples["b"])], axis=1)[1000:]
    moved = np.diff(w, axis=0) != 0
    assert not np.any(moved[:, 0] & moved[:, 1])  # one block at a time
    assert B.to_numpy(state["log_step"]).shape == (2,)  # a step size per block
    return max(np.abs(w.mean(0) - MU).max(), np.abs(np.cov(w.T) - COV).max())


@pytest.mark.parametrize("rule_cls", [MALA, HMC], ids=["mala", "hmc"])
def test_blocks_target_the_joint_distribution_even_with_a_bad_drift(rule_cls):
    """Metropolis-within-Gibbs: each block's move is corrected on its own, so a drift towards
    the wrong Gaussian still gives the right correlated distribution; with the proposal ratio
    summed over the parameters that did not move, the same check fails."""
    opts = {"n_leapfrog": 3} if rule_cls is HMC else {}
    assert _blocked_chain_error(rule_cls(step_size=0.5, burnin=1000, blocks=[["a"], ["b"]], **opts)) < 0.12
    if rule_cls is MALA:
        assert _blocked_chain_error(_UnmaskedRatio(step_size=0.5, burnin=1000, blocks=[["a"], ["b"]])) > 0.18


def test_blocks_adapt_their_own_step_sizes():
    B = get_backend("jax", dtype="float64")
    std = np.array([20.0, 0.05])
    energy = lambda p: 0.5 * (B.sum((p["a"] / std[0]) ** 2) + B.sum((p["b"] / std[1]) ** 2))
    rule = MALA(step_size=0.1, burnin=2000, blocks=[["a"], ["b"]])
    samples, state, _ = run_chain(rule, make_potential(energy), {"a": B.zeros((3,)), "b": B.zeros((3,))}, 12000, B.key(9))
    eps = np.exp(B.to_numpy(state["log_step"]))
    assert 100 < eps[0] / eps[1] < 1600, eps  # about the 400-fold ratio of the scales
    w = np.concatenate([B.to_numpy(samples["a"]), B.to_numpy(samples["b"])], axis=1)[2000:]
    np.testing.assert_allclose(w.std(0) / np.repeat(std, 3), 1.0, atol=0.2)
    with pytest.raises(ValueError, match="blocks: parameter 'b' is in no block"):
        run_chain(MALA(blocks=[["a"]]), make_potential(energy), {"a": B.zeros((3,)), "b": B.zeros((3,))}, 2)
    with pytest.raises(ValueError, match="blocks must be"):
        MALA(blocks=[[]])


def test_blocks_on_a_network_by_layer(backend_name):
    B = get_backend(backend_name)
    net = _snn()
    x, y = _task()
    params = net.init(0, backend=B)
    rule = MALA(step_size=0.05, n_data=40, burnin=30, blocks=[["layers.1"], ["layers.0"]], adapt_scale=True)
    res = sample(rule, net, params, x, y, n_samples=6, backend=B, track=40)
    assert np.shape(res.step_size) == (2,) and np.all(np.asarray(res.step_size) > 0)
    first = np.concatenate([np.ravel(a) for a in _leaves(B.tree_to_numpy(params))])[res.tracked_index]
    in_layer0 = res.tracked_index < int(np.prod(params["layers"][0]["w"].shape))
    changed = np.abs(np.diff(np.vstack([first, res.tracked]), axis=0)) > 0  # (36, 40): which coordinates moved
    odd, even = changed[1::2], changed[0::2]
    assert not np.any(even[:, in_layer0]) and not np.any(odd[:, ~in_layer0])  # block 0 = layers.1 first, then layers.0
