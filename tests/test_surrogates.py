"""Each surrogate's derivative equals its analytic formula, in forward and reverse mode, on both backends."""

import math

import numpy as np
import pytest

from neuroplastic.surrogates import SURROGATES, make_surrogate

# independent numpy formulas: name -> (scale, f(x, scale))
FORMULAS = {
    "fast_sigmoid": (7.0, lambda x, b: 1.0 / (1.0 + b * np.abs(x)) ** 2),
    "triangle": (1.5, lambda x, b: 0.3 * np.maximum(0.0, 1.0 - b * np.abs(x))),
    "exponential": (3.0, lambda x, b: np.exp(-b * np.abs(x))),
    "arctan": (2.5, lambda x, a: (a / 2) / (1 + (math.pi / 2 * a * x) ** 2)),
    "sigmoid": (4.0, lambda x, b: b * np.exp(-b * x) / (1 + np.exp(-b * x)) ** 2),
    "gaussian": (0.4, lambda x, s: np.exp(-x**2 / (2 * s**2)) / (math.sqrt(2 * math.pi) * s)),
    "boxcar": (0.8, lambda x, w: np.where(np.abs(x) <= w / 2, 1.0 / w, 0.0)),
    "straight_through": (None, lambda x, _: np.ones_like(x)),
}

# many points, avoiding the boxcar's discontinuity edges
XS = np.concatenate([np.linspace(-2.0, 2.0, 201) + 1e-3, [0.0, -0.399, 0.399, 1e-6]])


def test_every_surrogate_has_a_formula():
    assert set(FORMULAS) == set(SURROGATES)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_reverse_and_forward_mode(name, B64):
    scale, formula = FORMULAS[name]
    sur = make_surrogate(name, scale)
    expected = formula(XS, scale)
    x = B64.asarray(XS)
    weights = np.random.default_rng(0).normal(size=XS.shape)
    w = B64.asarray(weights)

    # reverse mode: d/dx sum(w * H(x)) = w * sigma'(x)
    _, grads = B64.value_and_grad(lambda p: B64.sum(w * B64.spike(p["x"], sur)))({"x": x})
    np.testing.assert_allclose(B64.to_numpy(grads["x"]), weights * expected, rtol=1e-12, atol=1e-12)

    # forward mode: tangent w maps to w * sigma'(x)
    out, tangent = B64.jvp(lambda v: B64.spike(v, sur), (x,), (w,))
    np.testing.assert_allclose(B64.to_numpy(tangent), weights * expected, rtol=1e-12, atol=1e-12)
    # the forward pass is the Heaviside step
    np.testing.assert_array_equal(B64.to_numpy(out), (XS > 0).astype(float))


def test_unknown_surrogate_name_is_named_in_the_error():
    with pytest.raises(ValueError, match="surrogate: unknown surrogate 'bogus'"):
        make_surrogate("bogus")


def test_bad_scale():
    with pytest.raises(ValueError, match="scale must be a positive"):
        make_surrogate("fast_sigmoid", -1.0)
