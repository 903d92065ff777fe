"""Conv2d and AvgPool2d: forward against torch.nn.functional, adjoints against autodiff, errors."""

from __future__ import annotations

import numpy as np
import pytest

from neuroplastic.backend import get_backend
from neuroplastic.layers import AvgPool2d, Conv2d


def _torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_conv_forward_matches_torch_conv2d(padding):
    torch = _torch()
    rng = np.random.default_rng(padding)
    conv = Conv2d(3, 3, padding=padding)
    p = conv.init_params(rng, (2, 7, 6))
    p["b"] = rng.normal(size=3)
    x = rng.normal(size=(4, 2, 7, 6))
    ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(p["w"]), torch.tensor(p["b"]), padding=padding).numpy()
    assert conv.output_shape((2, 7, 6)) == ref.shape[1:]
    np.testing.assert_allclose(conv(p, x), ref, rtol=0, atol=1e-12)  # numpy backend
    for name in ("torch", "jax"):
        B = get_backend(name, dtype="float64")
        np.testing.assert_allclose(B.to_numpy(conv(B.tree_asarray(p), B.asarray(x))), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("padding", [1])
def test_conv_adjoints_match_autodiff(backend_name, padding):
    B = get_backend(backend_name, dtype="float64")
    rng = np.random.default_rng(10 + padding)
    conv = Conv2d(4, 3, padding=padding)
    p = B.tree_asarray(conv.init_params(rng, (3, 6, 5)))
    x = B.asarray(rng.normal(size=(2, 3, 6, 5)))
    y, pull = B.vjp(lambda pp, xx: conv(pp, xx), p, x)
    g = B.asarray(rng.normal(size=tuple(y.shape)))
    dp, dx = pull(g)
    np.testing.assert_allclose(B.to_numpy(conv.transpose(p, g, (3, 6, 5))), B.to_numpy(dx), rtol=1e-12, atol=1e-12)
    mine = conv.param_grads(p, g, x)
    for k in ("w", "b"):
        np.testing.assert_allclose(B.to_numpy(mine[k]), B.to_numpy(dp[k]), rtol=1e-12, atol=1e-12)


def test_conv_no_bias_and_uniform_init():
    rng = np.random.default_rng(0)
    conv = Conv2d(2, 2, bias=False, init="uniform", gain=2.0)
    p = conv.init_params(rng, (1, 4, 4))
    assert set(p) == {"w"} and p["w"].shape == (2, 1, 2, 2)
    assert np.abs(p["w"]).max() <= 2.0 * np.sqrt(3.0 / 4)
    x = rng.normal(size=(1, 1, 4, 4))
    assert conv(p, x).shape == (1, 2, 3, 3)
    assert set(conv.param_grads(p, np.ones((1, 2, 3, 3)), x)) == {"w"}


def test_avgpool_forward_and_adjoint(backend_name):
    torch = _torch()
    B = get_backend(backend_name, dtype="float64")
    rng = np.random.default_rng(3)
    pool = AvgPool2d(2)
    x = rng.normal(size=(3, 2, 7, 6))  # odd height: floor mode drops the last row
    ref = torch.nn.functional.avg_pool2d(torch.tensor(x), 2).numpy()
    assert pool.output_shape((2, 7, 6)) == (2, 3, 3)
    np.testing.assert_allclose(pool({}, x), ref, atol=1e-14)
    xb = B.asarray(x)
    y, pull = B.vjp(lambda xx: pool({}, xx), xb)
    np.testing.assert_allclose(B.to_numpy(y), ref, atol=1e-14)
    g = B.asarray(rng.normal(size=tuple(y.shape)))
    (dx,) = pull(g)
    np.testing.assert_allclose(B.to_numpy(pool.transpose({}, g, (2, 7, 6))), B.to_numpy(dx), atol=1e-14)
    assert pool.param_grads({}, g, xb) == {} and pool.init_params(rng, (2, 7, 6)) == {}


def test_conv_pool_jit_on_jax():
    B = get_backend("jax")
    rng = np.random.default_rng(0)
    conv, pool = Conv2d(2, 3, padding=1), AvgPool2d(2)
    p = B.tree_asarray(conv.init_params(rng, (1, 8, 8)))
    x = B.asarray(rng.normal(size=(2, 1, 8, 8)))
    f = B.jit(lambda pp, xx: pool({}, conv(pp, xx)))
    np.testing.assert_allclose(B.to_numpy(f(p, x)), B.to_numpy(pool({}, conv(p, x))), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Conv2d(0, 3), "channels"),
        (lambda: Conv2d(2, 0), "kernel_size"),
        (lambda: Conv2d(2, 3, padding=-1), "padding"),
        (lambda: Conv2d(2, 3, init="orthogonal"), "init"),
        (lambda: Conv2d(2, 3, gain=0.0), "gain"),
        (lambda: AvgPool2d(0), "kernel_size"),
        (lambda: Conv2d(2, 5).output_shape((1, 4, 4)), "kernel_size"),
        (lambda: Conv2d(2, 3).output_shape((4, 4)), "in_shape"),
        (lambda: AvgPool2d(3).output_shape((1, 2, 2)), "kernel_size"),
        (lambda: Conv2d(2, 3)({"w": np.ones((2, 1, 3, 3))}, np.ones((1, 2, 5, 5))), "x"),
        (lambda: Conv2d(2, 3)({"w": np.ones((2, 1, 3, 3))}, np.ones((5, 5))), "x"),
        (lambda: Conv2d(2, 3).transpose({"w": np.ones((2, 1, 3, 3))}, np.ones((1, 3, 3, 3))), "g"),
        (lambda: AvgPool2d(2).transpose({}, np.ones((1, 1, 2, 2)), (1, 6, 6)), "g"),
    ],
)
def test_bad_arguments_raise_named_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
