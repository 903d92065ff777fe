"""Property-based tests of the data door (hypothesis): random label and shape garbage into
``from_arrays`` gives a Dataset that keeps the documented invariants, or a ValueError/TypeError
whose message starts with the offending argument's name; never another exception.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neuroplastic.data import Dataset, check_labels, from_arrays

ARGUMENTS = ("x_train", "y_train", "x_test", "y_test", "n_classes", "dt", "time_major", "name")


def examples(n: int) -> settings:
    """``n`` cases, the same ones on every run and machine (no example database, no deadline)."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


NUMBER_DTYPES = st.sampled_from([np.float32, np.float64, np.int64, np.int8, np.uint8, np.bool_, np.complex64])


def any_array(max_dims: int = 4):
    """Arrays of any rank (0..max_dims), sizes 0..4, numeric dtypes with NaN/inf/huge values included."""
    return NUMBER_DTYPES.flatmap(lambda dtype: hnp.arrays(dtype, hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=4)))


garbage = st.one_of(
    st.none(), st.text(max_size=3), st.integers(), st.floats(), st.booleans(),
    st.lists(st.one_of(st.integers(-3, 3), st.floats(), st.text(max_size=1)), max_size=3),
    st.just([[1.0, 2.0], [3.0]]), st.just({"a": 1}), st.just(np.array(["a", "b"])), st.just(np.array([object(), 1], dtype=object)),
)


@st.composite
def labels(draw, n: int):
    """``n`` labels: mostly integers (some out of range or negative), sometimes floats or booleans."""
    kind = draw(st.sampled_from(["int", "int", "wide", "float", "bool", "uint"]))
    if kind == "int":
        return draw(hnp.arrays(np.int64, n, elements=st.integers(0, 4)))
    if kind == "wide":
        return draw(hnp.arrays(np.int64, n, elements=st.integers(-(2 ** 62), 2 ** 62)))
    if kind == "uint":
        return draw(hnp.arrays(np.uint64, n, elements=st.integers(0, 2 ** 64 - 1)))
    if kind == "bool":
        return draw(hnp.arrays(np.bool_, n))
    return draw(hnp.arrays(np.float64, n))


@st.composite
def near_valid(draw) -> dict:
    """Valid-looking arguments (time-major or batch-major, labels or targets) with random mistakes."""
    T, n_train, n_test, C = (draw(st.integers(0, 4)) for _ in range(4))
    time_major = draw(st.booleans())
    finite = st.floats(-1e3, 1e3, width=32)
    x_elements = st.one_of(finite, st.sampled_from([np.nan, np.inf]))
    shape = (lambda n: (T, n, C)) if time_major else (lambda n: (n, T, C))
    args = {
        "x_train": draw(hnp.arrays(np.float32, shape(n_train), elements=draw(st.sampled_from([finite, x_elements])))),
        "x_test": draw(hnp.arrays(np.float32, shape(n_test), elements=finite)),
        "time_major": time_major,
    }
    if draw(st.booleans()):
        args["y_train"], args["y_test"] = draw(labels(n_train)), draw(labels(n_test))
    else:
        K = draw(st.integers(0, 2))
        args["y_train"] = draw(hnp.arrays(np.float32, (T, n_train, K), elements=x_elements))
        args["y_test"] = draw(hnp.arrays(np.float32, (T, n_test, K), elements=finite))
    args["n_classes"] = draw(st.one_of(st.none(), st.integers(-2, 6), st.sampled_from([2.0, True, "3"])))
    args["dt"] = draw(st.one_of(st.just(1.0), st.floats(), st.integers(-1, 3), st.just("1")))
    # a few mistakes: an argument swapped for garbage, an axis dropped or added, one transposed
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(["x_train", "y_train", "x_test", "y_test"]))
        mistake = draw(st.sampled_from(["garbage", "squeeze", "extra_axis", "transpose", "array"]))
        a = args[key]
        if mistake == "garbage":
            args[key] = draw(garbage)
        elif mistake == "array":
            args[key] = draw(any_array())
        elif mistake == "squeeze" and isinstance(a, np.ndarray) and a.ndim:
            args[key] = a[0] if a.shape[0] else np.zeros(a.shape[1:], a.dtype)
        elif mistake == "extra_axis" and isinstance(a, np.ndarray):
            args[key] = a[None]
        elif mistake == "transpose" and isinstance(a, np.ndarray) and a.ndim >= 2:
            args[key] = np.swapaxes(a, 0, 1)
    return args


def check_outcome(args: dict) -> None:
    """``from_arrays(**args)``: a Dataset keeping the invariants, or an error naming an argument."""
    try:
        d = from_arrays(**args)
    except (ValueError, TypeError) as err:
        msg = str(err)
        assert msg.startswith(tuple(f"{a}:" for a in ARGUMENTS)), f"error does not name the argument: {msg!r}"
        return
    assert isinstance(d, Dataset)
    for x, y in ((d.x_train, d.y_train), (d.x_test, d.y_test)):
        assert x.dtype == np.float32 and x.ndim == 3 and x.size > 0 and np.isfinite(x).all()
        if d.n_classes is None:  # regression targets
            assert y.ndim == 3 and y.shape[:2] == x.shape[:2] and np.isfinite(y).all()
        else:  # class labels, never floats
            assert y.dtype == np.int64 and y.shape == (x.shape[1],)
            assert ((0 <= y) & (y < d.n_classes)).all()
    assert d.x_train.shape[2] == d.x_test.shape[2]
    if args.get("n_classes") is not None:
        assert d.n_classes == args["n_classes"]


@examples(200)
@given(args=near_valid())
def test_near_valid_arguments_give_a_dataset_or_a_named_error(args):
    check_outcome(args)


@examples(100)
@given(x_train=st.one_of(any_array(), garbage), y_train=st.one_of(any_array(2), garbage),
       x_test=st.one_of(any_array(), garbage), y_test=st.one_of(any_array(2), garbage),
       time_major=st.one_of(st.booleans(), garbage), n_classes=st.one_of(st.none(), garbage))
def test_garbage_gives_a_named_error(x_train, y_train, x_test, y_test, time_major, n_classes):
    check_outcome(dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, time_major=time_major,
                       n_classes=n_classes))


@examples(100)
@given(y=st.one_of(any_array(2), garbage), n=st.one_of(st.integers(-2, 10), garbage))
def test_check_labels_returns_labels_in_range_or_a_named_error(y, n):
    try:
        out = check_labels(y, n, "y_batch")
    except ValueError as err:
        assert str(err).startswith(("y_batch:", "n_outputs:")), str(err)
        return
    assert out.dtype == np.int64 and out.ndim == 1 and ((0 <= out) & (out < n)).all()


@pytest.mark.parametrize("bad, needle", [(np.array([0, 1, 2 ** 63 + 5], dtype=np.uint64), "label 9223372036854775813 at index 2"),
                                         (np.array([0, -(2 ** 62)]), "label -4611686018427387904 at index 1")])
def test_extreme_integer_labels_are_named_exactly(bad, needle):
    with pytest.raises(ValueError, match=f"^y: {needle} is outside \\[0, 3\\)$"):
        check_labels(bad, 3)
