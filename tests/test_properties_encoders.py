"""Property-based tests of the spike encoders (hypothesis): random finite inputs of valid shapes
give 0/1 spikes of the documented shape, decoders invert within their documented bounds, and
invalid inputs raise a ValueError that names the encoder.

Cases per default run: see the ``settings`` of each test (docs/reliability.md lists them).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neuroplastic import encoders as E


def examples(n: int) -> settings:
    """``n`` cases, the same ones on every run and machine (no example database, no deadline)."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def to(kind: str, x: np.ndarray):
    if kind == "torch":
        import torch

        return torch.as_tensor(x)
    if kind == "jax":
        import jax.numpy as jnp

        return jnp.asarray(x)
    return x


def np_(a) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


# any finite float32, from denormals to +-3.4e38, and a tamer range where values matter
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=32)
MODERATE = st.floats(-10.0, 10.0, width=32)


# JAX compiles each new shape, so JAX cases use one shape each (random values); numpy and torch random shapes
JAX_SIGNAL, JAX_FEATURES = (6, 2, 2), (3, 2)


def signals(min_t: int = 1, elements=None, kind: str = "numpy"):
    shape = st.just(JAX_SIGNAL) if kind == "jax" else st.tuples(st.integers(min_t, 10), st.integers(1, 3), st.integers(1, 3))
    return hnp.arrays(np.float32, shape, elements=st.one_of(FINITE, MODERATE) if elements is None else elements)


def features(elements=None, kind: str = "numpy"):
    shape = st.just(JAX_FEATURES) if kind == "jax" else st.tuples(st.integers(1, 4), st.integers(1, 3))
    return hnp.arrays(np.float32, shape, elements=st.one_of(FINITE, MODERATE) if elements is None else elements)


THRESHOLDS = st.floats(1e-3, 5.0)
ARRAY_TYPES = st.sampled_from(["numpy", "torch", "jax"])


def binary(s) -> np.ndarray:
    s = np_(s)
    assert s.dtype.kind == "f"
    assert np.isin(s, (0.0, 1.0)).all(), f"not 0/1 spikes: {np.unique(s)}"
    return s


# ----------------------------------------------------------------------------- spikes of the documented shape
SIGNAL_ENCODERS = {
    # name -> (call, output channels per input channel, minimum T)
    "temporal_contrast": (lambda x, thr: E.temporal_contrast(x, thr), 2, 1),
    "threshold_based": (lambda x, thr: E.threshold_based(x, thr), 2, 3),
    "step_forward": (lambda x, thr: E.step_forward(x, thr), 2, 1),
    "moving_window": (lambda x, thr: E.moving_window(x, thr, 2), 2, 2),
    "delta_encode": (lambda x, thr: E.delta_encode(x, thr), 2, 1),
    "delta_encode(off=False)": (lambda x, thr: E.delta_encode(x, thr, initial="first", off=False), 1, 1),
    "bsa": (lambda x, thr: E.bsa(x, thr), 1, 1),
    "hsa": (lambda x, thr: E.hsa(x, fir=E.make_filter(3, "triangle")), 1, 1),
    "modified_hsa": (lambda x, thr: E.modified_hsa(x, thr), 1, 1),
    "rate_encode": (lambda x, thr: E.rate_encode(x, gain=thr, kind="poisson"), 1, 1),
    "one_hot_place": (lambda x, thr: E.one_hot_place(x, 3, lo=-thr, hi=thr), 3, 1),
}


# JAX compiles a scan anew for every call (a new closure), and test_encoders.py already checks
# these on JAX against numpy: here they run on numpy and torch only, to keep the file fast
SCAN_BASED = {"step_forward", "bsa", "hsa", "modified_hsa"}


@pytest.mark.parametrize("name", sorted(SIGNAL_ENCODERS))
@examples(10)
@given(data=st.data(), thr=THRESHOLDS)
def test_signal_encoders_give_binary_spikes_of_the_documented_shape(name, data, thr):
    call, per_channel, min_t = SIGNAL_ENCODERS[name]
    kind = data.draw(st.sampled_from(["numpy", "torch"]) if name in SCAN_BASED else ARRAY_TYPES)
    x = data.draw(signals(min_t, kind=kind))
    s = binary(call(to(kind, x), thr))
    T, N, C = x.shape
    assert s.shape == (T, N, per_channel * C)
    if per_channel == 2 and name != "one_hot_place":  # on and off never at once
        assert not (s[..., :C] * s[..., C:]).any()
    if name == "one_hot_place":  # exactly one active bin per channel and step
        assert (s.reshape(T, N, C, 3).sum(axis=-1) == 1).all()


STATIC_ENCODERS = {
    "rate_encode": (lambda x, T: E.rate_encode(x, n_steps=T, kind="bernoulli", seed=3), 1),
    "latency_encode": (lambda x, T: E.latency_encode(x, T), 1),
    "latency_encode(log)": (lambda x, T: E.latency_encode(x, T, kind="log", tau=3.0, threshold=0.2), 1),
    "grf_encode": (lambda x, T: E.grf_encode(x, 4, T, lo=-1.0, hi=1.0), 4),
    "one_hot_place": (lambda x, T: E.one_hot_place(x, 5, n_steps=T), 5),
}


@pytest.mark.parametrize("name", sorted(STATIC_ENCODERS))
@examples(10)
@given(data=st.data(), kind=ARRAY_TYPES)
def test_static_encoders_give_binary_spikes_of_the_documented_shape(name, data, kind):
    call, per_channel = STATIC_ENCODERS[name]
    x = data.draw(features(kind=kind))
    n_steps = 8 if kind == "jax" else data.draw(st.integers(1, 12))
    s = binary(call(to(kind, x), n_steps))
    N, C = x.shape
    assert s.shape == (n_steps, N, per_channel * C)
    if name.startswith(("latency", "grf")):  # time to first spike: at most one spike per neuron
        assert (s.sum(axis=0) <= 1).all()


# ----------------------------------------------------------------------------- decoders invert where documented
@examples(30)
@given(steps=hnp.arrays(np.int8, st.tuples(st.integers(1, 30), st.integers(1, 3), st.integers(1, 2)), elements=st.integers(-1, 1)),
       thr=st.floats(1e-2, 10.0), start=st.floats(-100.0, 100.0))
def test_temporal_contrast_decodes_a_staircase_exactly(steps, thr, start):
    steps[0] = 0
    x = start + thr * np.cumsum(steps, axis=0, dtype=np.float64)
    s = E.temporal_contrast(x, thr * (1 - 1e-9))  # a hair below the step: rounding in the cumsum never hides one
    np.testing.assert_array_equal(s[..., : x.shape[2]] - s[..., x.shape[2]:], steps)
    np.testing.assert_allclose(E.tc_decode(s, thr, start=x[0]), x, rtol=0, atol=1e-9 * (abs(start) + thr * len(x)))


@examples(30)
@given(data=st.data(), thr=st.floats(1e-2, 10.0), kind=st.sampled_from(["numpy", "torch"]))
def test_step_forward_error_never_exceeds_the_threshold(data, thr, kind):
    # documented: while |x_t - x_{t-1}| < threshold, the reconstruction error is at most threshold
    # (hypothesis found the equality case: steps of thr/2 from b reach b + thr, which does not spike)
    shape = data.draw(st.tuples(st.integers(1, 40), st.integers(1, 3), st.integers(1, 2)))
    incr = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(-0.99, 0.99)))
    x = data.draw(st.floats(-100.0, 100.0)) + thr * np.cumsum(incr, axis=0)
    s = E.step_forward(to(kind, x), thr)
    rec = np_(E.sf_decode(s, thr, start=to(kind, x[0])))
    assert np.abs(rec - x).max() <= thr * (1 + 1e-9) + 1e-12 * np.abs(x).max()


def test_step_forward_error_reaches_the_threshold_exactly():
    x = np.array([0.5, 1.0, 1.5])[:, None, None]  # steps of thr/2: x_2 = b + thr does not spike
    s = E.step_forward(x, 1.0)
    assert s.sum() == 0 and np.abs(E.sf_decode(s, 1.0, start=x[0]) - x).max() == 1.0


@examples(25)
@given(data=st.data(), kind=ARRAY_TYPES)
def test_latency_decode_is_within_half_a_step(data, kind):
    # documented: linear latency decodes to 1 - t/(T-1), within half a step of x in (threshold, 1]
    x = data.draw(features(st.floats(0.03125, 1.0, width=32), kind=kind))
    n_steps = 16 if kind == "jax" else data.draw(st.integers(2, 64))
    s = E.latency_encode(to(kind, x), n_steps)
    assert (np_(s).sum(axis=0) == 1).all()
    dec = np_(E.latency_decode(s))
    assert np.abs(dec - x).max() <= 0.5 / (n_steps - 1) + 1e-6


@examples(25)
@given(x=signals(elements=st.floats(-3.0, 3.0, width=32)), n_bins=st.integers(1, 9))
def test_one_hot_decodes_to_the_bin_centre(x, n_bins):
    lo, hi = -3.0, 3.000001
    dec = E.one_hot_decode(E.one_hot_place(x, n_bins, lo=lo, hi=hi), n_bins, lo=lo, hi=hi)
    assert dec.shape == x.shape
    assert np.abs(dec - x).max() <= 0.5 * (hi - lo) / n_bins + 1e-5


@examples(20)
@given(x=signals(elements=st.floats(0.0, 1.0, width=32)), taps=st.integers(1, 6), kind=st.sampled_from(["numpy", "torch"]))
def test_hsa_reconstruction_never_exceeds_the_signal(x, taps, kind):
    fir = E.make_filter(taps, "hann")
    rec = np_(E.filter_decode(E.hsa(to(kind, x), fir=fir), fir=fir))
    assert (rec <= x + 1e-5).all()


@examples(20)
@given(data=st.data(), kind=ARRAY_TYPES)
def test_rate_code_of_zeros_and_ones_decodes_exactly(data, kind):
    x = data.draw(features(st.sampled_from([0.0, 1.0]), kind=kind))
    n_steps = 8 if kind == "jax" else data.draw(st.integers(1, 20))
    s = E.rate_encode(to(kind, x), n_steps=n_steps)
    np.testing.assert_array_equal(np_(E.rate_decode(s)), x)


# ----------------------------------------------------------------------------- invalid input: ValueError naming the encoder
ENCODER_CALLS = {
    "temporal_contrast": lambda x: E.temporal_contrast(x, 0.1),
    "threshold_based": lambda x: E.threshold_based(x),
    "step_forward": lambda x: E.step_forward(x, 0.1),
    "moving_window": lambda x: E.moving_window(x, 0.1, 1),
    "delta_encode": lambda x: E.delta_encode(x, 0.1),
    "bsa": lambda x: E.bsa(x),
    "hsa": lambda x: E.hsa(x),
    "modified_hsa": lambda x: E.modified_hsa(x),
    "rate_encode": lambda x: E.rate_encode(x),
    "latency_encode": lambda x: E.latency_encode(x, 5),
    "grf_encode": lambda x: E.grf_encode(x, 4, 5),
    "one_hot_place": lambda x: E.one_hot_place(x, 4),
    "gaussian_receptive_fields": lambda x: E.gaussian_receptive_fields(x, 4),
}
SIGNAL_ONLY = {"temporal_contrast", "threshold_based", "step_forward", "moving_window", "delta_encode", "bsa", "hsa", "modified_hsa"}


def _non_finite(draw_shape):
    return hnp.arrays(np.float32, draw_shape, elements=st.one_of(MODERATE, st.sampled_from([np.nan, np.inf, -np.inf])))


@st.composite
def invalid_inputs(draw, name: str):
    """Inputs that encoder ``name`` must refuse: wrong rank, empty, non-finite, not numbers."""
    valid_ndim = 3 if name in SIGNAL_ONLY else (2 if name in ("latency_encode", "grf_encode") else None)
    choice = draw(st.sampled_from(["rank", "empty", "non_finite", "garbage"]))
    if choice == "rank":
        bad = [n for n in (0, 1, 2, 3, 4) if n != valid_ndim and n not in ((2, 3) if valid_ndim is None else ())]
        nd = draw(st.sampled_from(bad))
        return draw(hnp.arrays(np.float32, st.tuples(*[st.integers(1, 3)] * nd), elements=MODERATE))
    if choice == "empty":
        nd = valid_ndim or draw(st.sampled_from([2, 3]))
        shape = draw(st.tuples(*[st.integers(0, 3)] * nd).filter(lambda s: 0 in s))
        return np.zeros(shape, np.float32)
    if choice == "non_finite":
        nd = valid_ndim or draw(st.sampled_from([2, 3]))
        shape = st.tuples(st.integers(3, 5), *[st.integers(1, 3)] * (nd - 1))
        x = draw(_non_finite(shape))
        if np.isfinite(x).all():
            x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        return x
    return draw(st.sampled_from([None, "spikes", {"x": 1}, [["a", "b"]], [[1.0, 2.0], [3.0]], object(),
                                 np.array([[1 + 2j, 3j]]), np.array([["x"]])]))


@pytest.mark.parametrize("name", sorted(ENCODER_CALLS))
@examples(10)
@given(data=st.data())
def test_invalid_inputs_raise_value_errors_naming_the_encoder(name, data):
    x = data.draw(invalid_inputs(name))
    with pytest.raises(ValueError) as err:
        ENCODER_CALLS[name](x)
    allowed = (name, "gaussian_receptive_fields") if name == "grf_encode" else (name,)
    assert str(err.value).startswith(tuple(f"{a}:" for a in allowed)), str(err.value)


@pytest.mark.parametrize("name", ["temporal_contrast", "step_forward", "delta_encode", "moving_window", "modified_hsa"])
@examples(10)
@given(thr=st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf")), st.just("0.1"), st.none(), st.just(True)))
def test_bad_thresholds_are_named(name, thr):
    call = {"temporal_contrast": E.temporal_contrast, "step_forward": E.step_forward, "delta_encode": E.delta_encode,
            "moving_window": E.moving_window, "modified_hsa": E.modified_hsa}[name]
    if name == "modified_hsa" and thr == 0.0:
        return  # modified HSA takes threshold 0 (plain HSA)
    with pytest.raises(ValueError, match=f"^{name}: threshold must be"):
        call(np.zeros((4, 1, 1), np.float32), thr)
