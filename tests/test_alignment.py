"""tree_alignment matches parameters by path, whatever order each tree lists its dict keys in."""

import math

import numpy as np
import pytest

from neuroplastic.analysis.alignment import alignment, tree_alignment


def test_same_values_in_another_key_order_align_perfectly():
    # the old code concatenated each tree in its own key order: [w, b] against [b, w]
    ref = {"layers": [{"w": np.arange(6.0).reshape(2, 3) - 2.5, "b": np.array([3.0, -1.0, 2.0])}], "out": {"v": np.array([1.0, 4.0])}}
    grads = {"out": {"v": np.array([1.0, 4.0])}, "layers": [{"b": np.array([3.0, -1.0, 2.0]), "w": np.arange(6.0).reshape(2, 3) - 2.5}]}
    res = tree_alignment(grads, ref)
    assert set(res) == {"layers.0.w", "layers.0.b", "out.v", "all"}
    for metrics in res.values():
        assert metrics["cosine"] == 1.0 and metrics["rel_deviation"] == 0.0 and metrics["bias"] == 0.0
        assert metrics["sign_agreement"] == 1.0 and metrics["norm_ratio"] == 1.0
    assert list(res)[:3] == ["layers.0.w", "layers.0.b", "out.v"]  # rows in the reference's order


def test_all_by_hand():
    grads = {"w": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])}
    ref = {"b": np.array([1.0, 1.0]), "w": np.array([1.0, 0.0])}
    res = tree_alignment(grads, ref)
    # by path: g = (b, w) = (0, 1, 1, 0), r = (1, 1, 1, 0); g.r = 2, |g|^2 = 2, |r|^2 = 3, g - r = (-1, 0, 0, 0)
    a = res["all"]
    assert a["cosine"] == pytest.approx(2 / math.sqrt(6), abs=1e-15)
    assert a["rel_deviation"] == pytest.approx(1 / math.sqrt(3), abs=1e-15)
    assert a["bias"] == pytest.approx(-1 / 3, abs=1e-15)
    assert a["norm_ratio"] == pytest.approx(math.sqrt(2 / 3), abs=1e-15)
    assert a["sign_agreement"] == 0.75
    assert res["w"]["cosine"] == 1.0 and res["b"]["cosine"] == pytest.approx(1 / math.sqrt(2), abs=1e-15)


def test_jax_gradients_without_jit_come_back_sorted_and_still_align():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    params = {"w": jnp.array([[0.5, -1.0], [2.0, 0.25]]), "b": jnp.array([0.1, -0.3, 0.7])}  # not in sorted order

    def loss(p):
        return jnp.sum(p["w"] ** 3) + jnp.sum(jnp.sin(p["b"]))

    grads = jax.grad(loss)(params)
    assert list(grads) == ["b", "w"]  # the situation of the bug: the reference keeps the parameters' order
    ref = {"w": 3 * np.asarray(params["w"]) ** 2, "b": np.cos(np.asarray(params["b"]))}
    res = tree_alignment(grads, ref)
    assert res["all"]["cosine"] == pytest.approx(1.0, abs=1e-7)
    assert res["all"]["rel_deviation"] == pytest.approx(0.0, abs=1e-6)


def test_mismatched_trees_are_named():
    with pytest.raises(ValueError, match=r"grads: parameters \['a'\] differ from the reference's \['b'\]"):
        tree_alignment({"a": np.zeros(2)}, {"b": np.zeros(2)})
    with pytest.raises(ValueError, match=r"grads: w has shape \(3, 2\) but the reference's has \(2, 3\)"):
        tree_alignment({"w": np.zeros((3, 2))}, {"w": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="g: shape"):
        alignment(np.zeros(3), np.zeros(4))
