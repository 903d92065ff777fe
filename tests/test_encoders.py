"""Spike encoders and decoders: hand-computed spikes, reconstruction bounds, three array types."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuroplastic import encoders as E

ARRAY_TYPES = ["numpy", "torch", "jax"]


def to(kind: str, x: np.ndarray):
    if kind == "torch":
        import torch

        return torch.as_tensor(x)
    if kind == "jax":
        import jax.numpy as jnp

        return jnp.asarray(x)
    return x


def np_(a) -> np.ndarray:
    if hasattr(a, "detach"):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def sine(T: int = 300, period: float = 100.0, amp: float = 0.3, offset: float = 0.5, n: int = 2, c: int = 1) -> np.ndarray:
    t = np.arange(T, dtype=np.float64)[:, None, None]
    phase = np.arange(n * c).reshape(1, n, c) * 7.0  # a different phase per channel
    return offset + amp * np.sin(2 * np.pi * (t + phase) / period)


# ----------------------------------------------------------------------------- same numbers everywhere
DETERMINISTIC = {
    "tc": lambda x: E.temporal_contrast(x, 0.02),
    "tbr": lambda x: E.threshold_based(x, 0.5),
    "sf": lambda x: E.step_forward(x, 0.03),
    "mw": lambda x: E.moving_window(x, 0.02, 3),
    "bsa": lambda x: E.bsa(x),
    "hsa": lambda x: E.hsa(x),
    "mhsa": lambda x: E.modified_hsa(x, 0.05),
    "delta": lambda x: E.delta_encode(x, 0.02),
    "latency": lambda x: E.latency_encode(x[0], 12),
    "latency_log": lambda x: E.latency_encode(x[0], 12, kind="log", tau=4.0, threshold=0.3),
    "grf": lambda x: E.grf_encode(x[0], 5, 10),
    "one_hot": lambda x: E.one_hot_place(x, 4),
}


@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_encoders_agree_across_array_types(name):
    x = sine(T=40, period=25.0, n=3, c=2).astype(np.float32)
    ref = np_(DETERMINISTIC[name](x))
    assert set(np.unique(ref)) <= {0.0, 1.0}
    assert ref.sum() > 0, "the test signal should produce spikes"
    for kind in ("torch", "jax"):
        out = DETERMINISTIC[name](to(kind, x))
        assert type(out).__module__.split(".")[0] in (kind, "jaxlib")
        np.testing.assert_array_equal(np_(out), ref, err_msg=f"{name} on {kind}")


# ----------------------------------------------------------------------------- rate
@pytest.mark.parametrize("kind", ARRAY_TYPES)
def test_rate_bernoulli_statistics(kind):
    p = np.array([[0.0, 0.1, 0.5, 0.9, 1.0]], dtype=np.float32)
    T = 4000
    s = np_(E.rate_encode(to(kind, p), n_steps=T, seed=3))
    assert s.shape == (T, 1, 5)
    freq = s.mean(axis=0)[0]
    assert freq[0] == 0.0 and freq[-1] == 1.0
    tol = 4 * np.sqrt(p[0] * (1 - p[0]) / T)
    assert np.all(np.abs(freq - p[0]) <= tol + 1e-12)
    # decoding is the frequency; same key gives the same spikes, another seed others
    np.testing.assert_allclose(np_(E.rate_decode(to(kind, s))), freq[None], atol=1e-6)
    np.testing.assert_array_equal(np_(E.rate_encode(to(kind, p), n_steps=T, seed=3)), s)
    assert not np.array_equal(np_(E.rate_encode(to(kind, p), n_steps=T, seed=4)), s)


def test_rate_poisson_gain_and_decode():
    x = np.array([[0.2, 1.0, 3.0]])
    T = 5000
    s = E.rate_encode(x, n_steps=T, kind="poisson", gain=0.5, seed=0)
    p = 1 - np.exp(-0.5 * x[0])
    freq = s.mean(axis=0)[0]
    assert np.all(np.abs(freq - p) <= 4 * np.sqrt(p * (1 - p) / T))
    xhat = E.rate_decode(s, gain=0.5, kind="poisson")[0]
    # stated error: the delta method gives sd(xhat) = sd(freq) / (gain (1 - p))
    assert np.all(np.abs(xhat - x[0]) <= 4 * np.sqrt(p / (1 - p) / T) / 0.5)


def test_rate_decode_window_tracks_a_slow_signal():
    x = sine(T=3000, period=3000.0, amp=0.3, n=40)
    s = E.rate_encode(x, seed=1)
    w = 100
    est = E.rate_decode(s, window=w)
    # stated error, once the window is full: the causal window's lag (w/2 steps times the
    # largest slope) plus 4 standard deviations of a 40-example, w-step average
    err = np.abs(est.mean(axis=1) - x.mean(axis=1))[w:]
    slope = np.abs(np.diff(x, axis=0)).max()
    assert err.max() < slope * w / 2 + 4 * np.sqrt(0.25 / (w * 40))


# ----------------------------------------------------------------------------- latency
@pytest.mark.parametrize("kind", ARRAY_TYPES)
def test_latency_linear_hand_computed(kind):
    x = np.array([[1.0, 0.7, 0.0, 0.3, 0.005]], dtype=np.float32)
    s = np_(E.latency_encode(to(kind, x), n_steps=11))
    # t = round((1 - x) * 10): 0, 3, silent (x <= 0.01), 7, silent
    expected = np.zeros((11, 1, 5), dtype=np.float32)
    expected[0, 0, 0] = expected[3, 0, 1] = expected[7, 0, 3] = 1
    np.testing.assert_array_equal(s, expected)
    dec = np_(E.latency_decode(to(kind, s)))
    np.testing.assert_allclose(dec, [[1.0, 0.7, 0.0, 0.3, 0.0]], atol=1e-6)


def test_latency_log_hand_computed():
    tau, thr = 5.0, 0.2
    x = np.array([[1.0, 0.25, 0.15, 0.21]])
    s = E.latency_encode(x, n_steps=10, kind="log", tau=tau, threshold=thr)
    # t = floor(5 ln(x / (x - 0.2))): 1, 8, silent (x < threshold), floor(15.22) >= 10: silent
    assert math.floor(tau * math.log(1.0 / 0.8)) == 1 and math.floor(tau * math.log(0.25 / 0.05)) == 8
    expected = np.zeros((10, 1, 4))
    expected[1, 0, 0] = expected[8, 0, 1] = 1
    np.testing.assert_array_equal(s, expected)


@pytest.mark.parametrize("kind", ["linear", "log"])
def test_latency_decode_reconstructs_within_one_step(kind):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.3, 1.0, (50, 3))
    opts = dict(kind=kind, tau=10.0, threshold=0.25) if kind == "log" else dict(kind=kind)
    T = 64
    s = E.latency_encode(x, T, **opts)
    assert np.all(s.sum(axis=0) == 1)  # one spike per feature
    dec = E.latency_decode(s, **opts)
    # decoding lands in the same step: re-encoding gives the same spikes
    np.testing.assert_array_equal(E.latency_encode(dec, T, **opts), s)
    if kind == "linear":
        assert np.abs(dec - x).max() <= 0.5 / (T - 1) + 1e-12  # stated error: half a step
    else:
        # stated error: the width of the value range that spikes in the same step t
        t = s.argmax(axis=0).astype(float)
        assert np.all(t > 0)
        width = 0.25 / (1 - np.exp(-t / 10.0)) - 0.25 / (1 - np.exp(-(t + 1) / 10.0))
        assert np.all(np.abs(dec - x) <= width + 1e-12)


# ----------------------------------------------------------------------------- delta and TC
@pytest.mark.parametrize("kind", ARRAY_TYPES)
def test_delta_hand_computed(kind):
    x = np.array([0.4, 0.5, 0.5, 0.1, 0.3, 0.6], dtype=np.float32)[:, None, None]
    s = np_(E.delta_encode(to(kind, x), 0.3))
    # d (x_{-1}=0) = .4, .1, 0, -.4, .2, .3 -> on at 0 and 5, off at 3
    np.testing.assert_array_equal(s[:, 0, 0], [1, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(s[:, 0, 1], [0, 0, 0, 1, 0, 0])
    first = np_(E.delta_encode(to(kind, x), 0.3, initial="first", off=False))
    np.testing.assert_array_equal(first[:, 0, 0], [0, 0, 0, 0, 0, 1])


def test_temporal_contrast_staircase_is_exact():
    thr = 0.25
    rng = np.random.default_rng(1)
    steps = rng.choice([-1, 0, 0, 1], size=(80, 4, 3))
    steps[0] = 0
    x = 2.0 + thr * np.cumsum(steps, axis=0)
    s = E.temporal_contrast(x, thr)
    assert s.shape == (80, 4, 6)
    np.testing.assert_array_equal(s[..., :3] - s[..., 3:], steps)
    np.testing.assert_allclose(E.tc_decode(s, thr, start=x[0]), x, atol=1e-12)


def test_temporal_contrast_error_is_the_accumulated_quantisation():
    x = sine(T=200, amp=0.3, n=3)
    thr = 0.01
    s = E.temporal_contrast(x, thr)
    rec = E.tc_decode(s, thr, start=x[0])
    d = np.diff(x, axis=0, prepend=x[:1])
    q = np.where(d >= thr, 1, np.where(d <= -thr, -1, 0))
    bound = np.cumsum(np.abs(d - thr * q), axis=0)  # triangle inequality, step by step
    assert np.all(np.abs(rec - x) <= bound + 1e-9)
    assert np.abs(rec - x).max() < 0.25  # stated error for this signal (TC is lossy on slow changes)


def test_threshold_based_representation():
    x = sine(T=120, amp=0.3, n=2, c=2)
    factor = 0.5
    d = np.diff(x, axis=0)
    thr = d.mean(axis=0) + factor * d.std(axis=0, ddof=1)
    np.testing.assert_allclose(E.tbr_threshold(x, factor), thr, rtol=1e-12)
    s = E.threshold_based(x, factor)
    np.testing.assert_array_equal(s[1:, :, :2], d > thr)
    np.testing.assert_array_equal(s[1:, :, 2:], d < -thr)
    assert s[0].sum() == 0


# ----------------------------------------------------------------------------- SF and MW
def test_step_forward_error_stays_below_threshold():
    x = sine(T=300, amp=0.3, n=4)
    thr = 0.03
    assert np.abs(np.diff(x, axis=0)).max() < thr
    s = E.step_forward(x, thr)
    rec = E.sf_decode(s, thr, start=x[0])
    assert np.abs(rec - x).max() <= thr + 1e-12  # the proven bound


def test_step_forward_hand_computed():
    x = np.array([0.0, 0.3, 0.5, 0.45, 0.1, 0.1])[:, None, None]
    s = E.step_forward(x, 0.2)
    # base 0 -> 0.3 > 0.2: on, base .2 -> .5 > .4: on, base .4 -> .45: none -> .1 < .2: off, base .2 -> .1: none
    np.testing.assert_array_equal(s[:, 0, 0], [0, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(s[:, 0, 1], [0, 0, 0, 0, 1, 0])


def test_moving_window_hand_computed_and_reconstruction():
    x = np.array([0.0, 0.1, 0.2, 0.9, 0.2, 0.0])[:, None, None]
    s = E.moving_window(x, 0.3, window=2)
    # base: mean(x0, x1) = .05 for t < 2, then mean of the previous two samples
    base = np.array([0.05, 0.05, 0.05, 0.15, 0.55, 0.55])
    np.testing.assert_array_equal(s[:, 0, 0], x[:, 0, 0] > base + 0.3)
    np.testing.assert_array_equal(s[:, 0, 1], x[:, 0, 0] < base - 0.3)
    y = sine(T=300, amp=0.3, n=3)
    rec = E.mw_decode(E.moving_window(y, 0.02, window=2), 0.02, start=y[0])
    assert np.abs(rec - y).max() < 0.1  # stated error for this signal (measured 0.06)


# ----------------------------------------------------------------------------- BSA / HSA
def test_bsa_first_and_last_samples():
    h = E.make_filter(5, "hann")
    T = 12
    x = np.zeros((T, 1, 2))
    x[:5, 0, 0] = h  # the filter itself at t = 0
    x[T - 1, 0, 1] = h[0]  # only the filter's first tap fits before the end
    s = E.bsa(x, threshold=0.0, fir=h)
    expected = np.zeros((T, 1, 2))
    expected[0, 0, 0] = 1
    expected[T - 1, 0, 1] = 1
    np.testing.assert_array_equal(s, expected)
    np.testing.assert_allclose(E.bsa_decode(s, h), x, atol=1e-12)


def test_hsa_exact_on_sums_of_filters():
    h = E.make_filter(6, "triangle")
    T = 40
    spikes = np.zeros((T, 1, 1))
    spikes[[0, 9, 20, 39], 0, 0] = 1
    x = E.filter_decode(spikes, h)
    np.testing.assert_array_equal(E.hsa(x, fir=h), spikes)
    np.testing.assert_array_equal(E.modified_hsa(x, 0.0, fir=h), spikes)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_bsa_reconstructs_a_smooth_signal(kind):
    x = sine(T=300, amp=0.3, n=3)
    F = 8
    s = np_(E.bsa(to(kind, x)))
    err = (E.bsa_decode(s) - x)[F:-F]  # interior: the filter window is complete
    assert np.sqrt((err**2).mean()) < 0.04  # stated error (measured 0.021)
    assert np.abs(err).max() < 0.2


def test_hsa_never_overshoots_and_tracks():
    x = sine(T=300, amp=0.3, n=3)
    h = E.make_filter(16, "hann")
    rec = E.hsa_decode(E.hsa(x, h), h)
    assert np.all(rec <= x + 1e-12)  # the residual never goes negative
    err = (rec - x)[16:-16]
    assert np.sqrt((err**2).mean()) < 0.06  # stated error (measured 0.036)
    mh = E.modified_hsa(x, 0.05, h)
    err = (E.filter_decode(mh, h) - x)[16:-16]
    assert np.sqrt((err**2).mean()) < 0.05
    np.testing.assert_array_equal(E.modified_hsa(x, 0.0, h), E.hsa(x, h))


# ----------------------------------------------------------------------------- population
def test_grf_centres_and_responses():
    mu, sigma = E.grf_centers(5, 0.0, 1.0, beta=1.5)
    np.testing.assert_allclose(mu, [-1 / 6, 1 / 6, 1 / 2, 5 / 6, 7 / 6])
    assert sigma == pytest.approx(1 / 4.5)
    x = np.array([[0.5, 1 / 6]])
    a = E.gaussian_receptive_fields(x, 5)
    assert a.shape == (1, 10)
    np.testing.assert_allclose(a[0, :5], np.exp(-((0.5 - mu) ** 2) / (2 * sigma**2)))
    assert a[0, 2] == pytest.approx(1.0) and a[0, 6] == pytest.approx(1.0)
    s = E.grf_encode(x, 5, n_steps=11)
    assert s.shape == (11, 1, 10)
    assert s[0, 0, 2] == 1 and s[0, 0, 6] == 1  # the best-tuned neuron fires first
    # neurons whose response is below the cutoff stay silent
    np.testing.assert_array_equal(s.sum(axis=0)[0] > 0, a[0] > 0.1)


def test_grf_decode_population_vector():
    x = np.linspace(0.1, 0.9, 17)[:, None]
    dec = E.grf_decode(E.gaussian_receptive_fields(x, 12), 12)
    assert np.abs(dec - x).max() < 0.02  # stated error with 12 neurons


@pytest.mark.parametrize("kind", ARRAY_TYPES)
def test_one_hot_place(kind):
    x = np.array([[0.0, 0.24, 0.26, 0.99, 1.0, -3.0]], dtype=np.float32)
    s = np_(E.one_hot_place(to(kind, x), 4, n_steps=2))
    assert s.shape == (2, 1, 24)
    bins = s[0, 0].reshape(6, 4).argmax(axis=1)
    np.testing.assert_array_equal(bins, [0, 0, 1, 3, 3, 0])
    assert np.all(s.reshape(2, 1, 6, 4).sum(axis=-1) == 1)
    dec = np_(E.one_hot_decode(to(kind, s), 4))
    inside = x[0] < 1.0
    assert np.all(np.abs(dec[0, 0] - x[0])[inside & (x[0] >= 0)] <= 0.125 + 1e-6)  # half a bin


# ----------------------------------------------------------------------------- argument checks
@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: E.temporal_contrast(np.zeros((5, 1, 1)), -1.0), "temporal_contrast: threshold must be positive"),
        (lambda: E.step_forward(np.zeros((5, 1, 1)), 0.0), "step_forward: threshold must be positive"),
        (lambda: E.step_forward(np.zeros((5, 1)), 0.1), "step_forward: expected a signal"),
        (lambda: E.rate_encode(np.zeros((2, 3)), n_steps=0), "rate_encode: n_steps must be a positive integer"),
        (lambda: E.rate_encode(np.zeros((2, 3)), kind="gauss"), "rate_encode: unknown kind"),
        (lambda: E.latency_encode(np.zeros((4, 2, 3)), 5), "latency_encode: expected static features"),
        (lambda: E.moving_window(np.zeros((3, 1, 1)), 0.1, window=5), "moving_window: window=5 is longer"),
        (lambda: E.bsa(np.zeros((5, 1, 1)), fir=[0.5, -0.1]), "bsa: filter must have finite, non-negative taps"),
        (lambda: E.delta_encode(np.full((3, 1, 1), np.nan), 0.1), "delta_encode: input contains NaN"),
        (lambda: E.grf_encode(np.zeros((2, 1)), 2, 5), "gaussian_receptive_fields: n_neurons must be an integer >= 3"),
        (lambda: E.one_hot_place(np.zeros((2, 1)), 4, lo=1.0, hi=0.0), "one_hot_place: need finite lo < hi"),
        (lambda: E.contrast_decode(np.zeros((3, 1, 3)), 0.1), "contrast_decode: expected on/off spikes"),
    ],
)
def test_bad_arguments_raise_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()
