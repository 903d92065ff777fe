"""Mixing diagnostics against closed forms: AR(1) chains, i.i.d. draws, constant chains."""

import numpy as np
import pytest

from neuroplastic.analysis.mixing import (
    acceptance_rate, ar1_chain, ar1_ess, autocorrelation, ess_batch_means, ess_geyer, mixing_summary, plot_traces,
)


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_ess_of_ar1_chains_matches_the_closed_form(phi):
    n = 40000
    exact = ar1_ess(phi, n)
    geyer = np.mean([ess_geyer(ar1_chain(phi, n, seed=s)) for s in range(3)])
    batch = np.mean([ess_batch_means(ar1_chain(phi, n, seed=s)) for s in range(3)])
    assert abs(geyer / exact - 1) < 0.15, (geyer, exact)
    assert abs(batch / exact - 1) < 0.3, (batch, exact)


def test_autocorrelation_of_ar1_is_phi_to_the_lag():
    rho = autocorrelation(ar1_chain(0.8, 50000, seed=1), max_lag=5)
    np.testing.assert_allclose(rho, 0.8 ** np.arange(6), atol=0.03)
    assert rho[0] == pytest.approx(1.0)


def test_ess_per_column_and_summary():
    x = np.stack([ar1_chain(0.0, 4000, seed=0), ar1_chain(0.9, 4000, seed=1)], axis=1)
    e = ess_geyer(x)
    assert e.shape == (2,) and e[0] > 5 * e[1]
    s = mixing_summary({"w": x, "const": np.ones(100)}, accepted=[1, 0, 1, 1])
    assert s["accept_rate"] == 0.75
    assert s["const"]["ess_geyer"]["max"] == 1.0 and s["const"]["moved"] == 0.0
    assert s["w"]["moved"] == 1.0 and s["w"]["n"] == 4000


def test_a_chain_that_never_moves_has_one_effective_sample():
    assert ess_geyer(np.full(500, 3.0)) == 1.0
    assert ess_batch_means(np.full(500, 3.0)) == 1.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ess_geyer([1.0, 2.0]), "x: need at least 4"),
        (lambda: ess_geyer(np.zeros((3, 3, 3))), "x: expected a chain"),
        (lambda: ess_geyer([1.0, np.nan, 2.0, 3.0, 4.0]), "non-finite"),
        (lambda: ess_batch_means(np.arange(10.0), batch_size=6), "batch_size"),
        (lambda: ar1_ess(1.0, 10), "phi"),
        (lambda: acceptance_rate([0.5]), "accepted"),
        (lambda: acceptance_rate([]), "accepted"),
        (lambda: autocorrelation(np.arange(10.0), max_lag=10), "max_lag"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_trace_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    p = plot_traces({"U": np.arange(50.0), "w": np.random.default_rng(0).normal(size=(50, 3))}, tmp_path / "t.png", burnin=10)
    assert p.exists() and p.stat().st_size > 1000
