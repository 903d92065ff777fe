"""The event-driven products (issue 12): ``backend/event_matmul.cc`` through torch and JAX.

Ground truth is the dense product: in float64 the event kernel must agree to round-off
(1e-12), forward and both gradients, on binary spikes and on general sparse values, at
widths that are and are not multiples of the kernel's 256-byte column chunks.  The kernel's
sums run in a fixed order per output element, so the result must not depend on the number
of threads (bit for bit).  The selection must fall back to the dense product where the kernel
cannot run (forward mode, vmap, dense inputs, small products, switched off) and give the
same numbers there.
"""

from __future__ import annotations

import numpy as np
import pytest

from neuroplastic.backend import native

lib = native.event_library()
pytestmark = pytest.mark.skipif(lib is None, reason=f"event kernels unavailable: {native.build_error()}")


def _spikes(rng: np.random.Generator, shape: tuple, density: float, binary: bool = True) -> np.ndarray:
    mask = rng.random(shape) < density
    values = np.ones(shape) if binary else rng.standard_normal(shape)
    return np.where(mask, values, 0.0)


SHAPES = [(300, 256, 256), (257, 300, 70), (64, 512, 10), (5, 1, 1), (1000, 256, 520), (300, 40, 3), (300, 40, 8),
          (300, 40, 17), (300, 40, 33)]  # outputs 1-16 columns wide take narrower column chunks


def _masks(x: np.ndarray, threads: int = 2) -> tuple:
    """``np_spike_masks`` on a C-contiguous numpy ``x``: (masks, counts, total, binary flag)."""
    import ctypes

    n, k = x.shape
    masks, counts, binary = np.empty((n, (k + 63) // 64), np.uint64), np.empty(n, np.int32), np.full(1, -1, np.int32)
    fn = getattr(lib, f"np_spike_masks_{'f32' if x.dtype == np.float32 else 'f64'}")
    p = ctypes.c_void_p
    total = fn(p(x.ctypes.data), p(masks.ctypes.data), p(counts.ctypes.data), p(binary.ctypes.data), n, k, threads)
    return masks, counts, total, int(binary[0])


def _product(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, threads: int = 2, binary: int | None = None) -> np.ndarray:
    """``x @ w (+ bias)`` through the ctypes entry points: the masks, then the product from them (``binary``: the
    flag passed, by default the one the masks gave)."""
    import ctypes

    p = ctypes.c_void_p
    masks, counts, _, flag = _masks(x, threads)
    (n, k), m = x.shape, w.shape[1]
    out = np.empty((n, m), x.dtype)
    fn = getattr(lib, f"np_masked_matmul_{'f32' if x.dtype == np.float32 else 'f64'}")
    assert fn(p(x.ctypes.data), p(w.ctypes.data), p(bias.ctypes.data) if bias is not None else None, p(masks.ctypes.data),
              flag if binary is None else binary, p(out.ctypes.data), n, k, m, threads) == 0
    return out


def _weight_grad(x: np.ndarray, g: np.ndarray, threads: int = 2, sums: bool = False, binary: int | None = None):
    """``x^T g`` through the ctypes entry points; with ``sums`` also the kernel's column sums of ``g``."""
    import ctypes

    p = ctypes.c_void_p
    masks, counts, _, flag = _masks(x, threads)
    (n, k), m = x.shape, g.shape[1]
    out, gsum = np.empty((k, m), x.dtype), np.full(m, np.nan, x.dtype)
    fn = getattr(lib, f"np_masked_matmul_xt_{'f32' if x.dtype == np.float32 else 'f64'}")
    assert fn(p(x.ctypes.data), p(g.ctypes.data), p(masks.ctypes.data), p(counts.ctypes.data), flag if binary is None else binary,
              p(out.ctypes.data), p(gsum.ctypes.data) if sums else None, n, k, m, threads) == 0
    if not sums:
        assert np.isnan(gsum).all()  # not written
    return (out, gsum) if sums else out


def _blocked_column_sums(g: np.ndarray, block: int = 256) -> np.ndarray:
    """``g.sum(0)`` in the kernel's order: rows added one by one within blocks of ``block`` rows, then the blocks' sums
    one by one (elementwise additions in ``g``'s dtype, so the same roundings)."""
    total = np.zeros(g.shape[1], g.dtype)
    for b0 in range(0, g.shape[0], block):
        part = np.zeros(g.shape[1], g.dtype)
        for row in g[b0:b0 + block]:
            part = part + row
        total = total + part
    return total


@pytest.mark.parametrize("n,k,m", SHAPES)
@pytest.mark.parametrize("binary", [True, False])
def test_ctypes_kernels_equal_dense_products_float64(n: int, k: int, m: int, binary: bool) -> None:
    rng = np.random.default_rng(n + k + m)
    x = _spikes(rng, (n, k), 0.08, binary)
    x[0] = 0.0  # an empty row
    w, g = rng.standard_normal((k, m)), rng.standard_normal((n, m))
    assert _masks(x)[2] == np.count_nonzero(x)
    np.testing.assert_allclose(_product(x, w), x @ w, rtol=0, atol=1e-12)
    np.testing.assert_allclose(_weight_grad(x, g), x.T @ g, rtol=0, atol=1e-12)
    gw, gsum = _weight_grad(x, g, sums=True)
    np.testing.assert_array_equal(gw, _weight_grad(x, g))  # the sums change nothing in the weight gradient
    np.testing.assert_allclose(gsum, g.sum(0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ctypes_binary_flag_and_the_products_that_skip_reading_x(dtype: type) -> None:
    """The masks say "binary" exactly when every non-zero is 1 (an all-zero x too); products told so never read x's
    values, and give the same bits as the products that read them (1 * r is r), at widths taking 1, 2, 4 and 8
    vectors a chunk and several chunks; a 2, a NaN or a -1 among the ones clears the flag."""
    rng = np.random.default_rng(11)
    n, k = 600, 150
    x = _spikes(rng, (n, k), 0.1).astype(dtype)
    assert _masks(x)[3] == 1 and _masks(np.zeros((n, k), dtype))[3] == 1
    for value in (2.0, np.nan, -1.0, 1.0 + np.finfo(dtype).eps):
        other = x.copy()
        other[n - 1, k - 1] = value
        assert _masks(other)[3] == 0, value
    for m in (3, 10, 20, 40, 70, 130):
        w, g = rng.standard_normal((k, m)).astype(dtype), rng.standard_normal((n, m)).astype(dtype)
        b = rng.standard_normal(m).astype(dtype)
        np.testing.assert_array_equal(_product(x, w, b, binary=1), _product(x, w, b, binary=0))
        fast, slow = _weight_grad(x, g, sums=True, binary=1), _weight_grad(x, g, sums=True, binary=0)
        np.testing.assert_array_equal(fast[0], slow[0])
        np.testing.assert_array_equal(fast[1], slow[1])
        np.testing.assert_allclose(_product(x, w, b), x.astype(np.float64) @ w + b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("m", [1, 10, 70, 130])
def test_ctypes_column_sums_are_the_blocked_order_bit_for_bit(m: int) -> None:
    """The bias gradient that comes with the weight gradient sums every row of g, empty rows of x included, in the
    documented order (blocks of 256 rows in order, then the blocks): bit-equal to that order in float32, and close to
    numpy's own sum."""
    rng = np.random.default_rng(m)
    n, k = 700, 50
    x = _spikes(rng, (n, k), 0.02).astype(np.float32)
    x[:300] = 0.0  # rows with no non-zero still count in the sums
    g = rng.standard_normal((n, m)).astype(np.float32)
    _, gsum = _weight_grad(x, g, sums=True)
    np.testing.assert_array_equal(gsum, _blocked_column_sums(g))
    np.testing.assert_allclose(gsum, g.astype(np.float64).sum(0), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 63, 64, 65, 100, 129])
def test_ctypes_masks_are_the_nonzeros_bit_by_bit(dtype: type, k: int) -> None:
    """The masks (vectorised compares where the CPU allows) for widths around the 64-column words and the vector
    widths, NaN and -0.0 included (C's ``!= 0``): bit j of word w of row n is ``x[n, 64 w + j] != 0``, padding
    bits clear, the counts and the total exact; the product from them reaches the NaN's row."""
    rng = np.random.default_rng(k)
    n, m = 50, 130
    x = _spikes(rng, (n, k), 0.3, binary=False).astype(dtype)
    x[1, 0], x[2, k - 1], x[3, k // 2] = np.nan, -0.0, 1e-30  # NaN != 0, -0.0 == 0, a tiny value != 0
    masks, counts, total, binary = _masks(x)
    assert binary == 0  # NaN and other values than 1
    bits = np.unpackbits(masks.view(np.uint8), axis=1, bitorder="little")
    np.testing.assert_array_equal(bits[:, :k].astype(bool), x != 0)
    assert not bits[:, k:].any()
    np.testing.assert_array_equal(counts, (x != 0).sum(axis=1))
    assert total == int(np.sum(x != 0))
    w = rng.standard_normal((k, m)).astype(dtype)
    out = _product(x, w)
    finite = ~np.isnan(x).any(axis=1)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(out[finite], (x @ w)[finite], rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)
    assert np.all(np.isnan(out[1]))  # the NaN was listed as a non-zero and reached its row


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m", [10, 64, 130])
def test_ctypes_forward_adds_the_bias_as_a_separate_addition_would(dtype: type, m: int) -> None:
    """With a bias the forward equals its own bias-free output plus the bias bit for bit (the bias is added to each
    finished sum: one rounding, as ``out + b`` would do), for widths that fill, cut and exceed a 64-float panel."""
    rng = np.random.default_rng(m)
    n, k = 300, 70
    x = _spikes(rng, (n, k), 0.1, binary=False).astype(dtype)
    w, b = rng.standard_normal((k, m)).astype(dtype), rng.standard_normal(m).astype(dtype)
    np.testing.assert_array_equal(_product(x, w, b), _product(x, w) + b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ctypes_kernels_do_not_depend_on_the_thread_count(dtype: type) -> None:
    rng = np.random.default_rng(3)
    n, k, m = 700, 300, 200
    x = _spikes(rng, (n, k), 0.1).astype(dtype)
    w, g = rng.standard_normal((k, m)).astype(dtype), rng.standard_normal((n, m)).astype(dtype)
    results = [(_masks(x, threads), _product(x, w, threads=threads), *_weight_grad(x, g, threads, sums=True)) for threads in (1, 2, 3)]
    assert results[0][0][3] == 1
    for masks, out, out_t, gsum in results[1:]:
        np.testing.assert_array_equal(masks[0], results[0][0][0])
        np.testing.assert_array_equal(out, results[0][1])
        np.testing.assert_array_equal(out_t, results[0][2])
        np.testing.assert_array_equal(gsum, results[0][3])


# ---------------------------------------------------------------------------------------- torch


def _ran_kernel(y, node_name: str = "EventMatmul") -> bool:
    """Whether the autograd graph of ``y`` (a few nodes deep: the reshape of the result) has the EventMatmul node
    that ran the event kernel (or another node named ``node_name``)."""
    nodes, seen = [y.grad_fn], 0
    while nodes and seen < 8:
        node = nodes.pop()
        seen += 1
        if node is None:
            continue
        if node_name in type(node).__name__:
            return getattr(node, "events", True)
        nodes.extend(n for n, _ in node.next_functions)
    return False


def _torch_case(dtype: str = "float64", density: float = 0.08, shape: tuple = (40, 16, 256), m: int = 300, binary: bool = True):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = torch.tensor(_spikes(rng, shape, density, binary), dtype=getattr(torch, dtype))
    w = torch.tensor(rng.standard_normal((shape[-1], m)), dtype=getattr(torch, dtype))
    return torch, x, w


def test_torch_event_matmul_runs_the_kernel_and_matches_dense_forward_and_gradients() -> None:
    from neuroplastic.backend import events_torch

    torch, x, w = _torch_case()
    assert events_torch.applicable(x, w)
    xs, ws = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    y = events_torch.event_matmul(xs, ws)
    assert _ran_kernel(y)
    g = torch.randn(y.shape, dtype=y.dtype)
    gx, gw = torch.autograd.grad(y, (xs, ws), g)
    xd, wd = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
    yd = xd @ wd
    gxd, gwd = torch.autograd.grad(yd, (xd, wd), g)
    torch.testing.assert_close(y, yd, rtol=0, atol=1e-12)
    torch.testing.assert_close(gx, gxd, rtol=0, atol=1e-12)
    torch.testing.assert_close(gw, gwd, rtol=0, atol=1e-12)


def test_torch_event_matmul_second_derivatives_equal_dense() -> None:
    """Under ``create_graph`` the weight gradient is recorded (dense), so a gradient of a gradient is right."""
    from neuroplastic.backend import events_torch

    torch, x, w = _torch_case()
    results = []
    for mm in (events_torch.event_matmul, torch.matmul):
        ws = w.clone().requires_grad_(True)
        (gw,) = torch.autograd.grad((mm(x, ws) ** 2).sum(), ws, create_graph=True)
        (ggw,) = torch.autograd.grad((gw ** 2).sum(), ws)
        results.append((gw.detach(), ggw))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=1e-9)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-10, atol=1e-6)


def test_torch_event_matmul_float32_close_to_dense() -> None:
    from neuroplastic.backend import events_torch

    torch, x, w = _torch_case("float32")
    ws = w.clone().requires_grad_(True)
    y = events_torch.event_matmul(x, ws)
    (gw,) = torch.autograd.grad(y.sum(), ws)
    torch.testing.assert_close(y, x @ w, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, x.reshape(-1, x.shape[-1]).t() @ torch.ones(x.shape[0] * x.shape[1], w.shape[1]),
                               rtol=1e-5, atol=1e-4)


def test_torch_event_matmul_falls_back_where_the_kernel_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from neuroplastic.backend import events_torch

    torch, x, w = _torch_case()
    dense = x @ w
    # too dense: the kernel's count sends it to torch's dense product, gradients included
    xd = torch.ones_like(x)
    ws = w.clone().requires_grad_(True)
    y = events_torch.event_matmul(xd, ws)
    assert not _ran_kernel(y)
    (gw,) = torch.autograd.grad(y.sum(), ws)
    torch.testing.assert_close(y, xd @ w, rtol=0, atol=1e-12)
    torch.testing.assert_close(gw, xd.reshape(-1, xd.shape[-1]).t() @ torch.ones(y.reshape(-1, y.shape[-1]).shape, dtype=y.dtype),
                               rtol=0, atol=1e-9)
    # small products and integer inputs are not the kernel's
    assert not events_torch.applicable(x[:2, :2], w)
    assert not events_torch.applicable(x.to(torch.int64), w.to(torch.int64))
    # switched off: the reference path
    monkeypatch.setenv("NEUROPLASTIC_EVENT_KERNELS", "0")
    assert not events_torch.applicable(x, w)
    monkeypatch.delenv("NEUROPLASTIC_EVENT_KERNELS")
    # forward-mode AD and torch.func transforms take the dense product, with the same values
    tangent = torch.randn_like(w)
    out, jvp = torch.func.jvp(lambda w_: events_torch.event_matmul(x, w_), (w,), (tangent,))
    torch.testing.assert_close(out, dense, rtol=0, atol=1e-12)
    torch.testing.assert_close(jvp, x @ tangent, rtol=0, atol=1e-12)
    vm = torch.func.vmap(lambda xi: events_torch.event_matmul(xi, w))(x)
    torch.testing.assert_close(vm, dense, rtol=0, atol=1e-12)


@pytest.mark.parametrize("density,binary", [(0.08, True), (0.08, False), (0.6, True)])
def test_torch_event_matmul_with_bias_equals_dense_with_gradients(density: float, binary: bool) -> None:
    """``event_matmul(x, w, b)``: the kernel adds the bias (sparse x) or torch's dense product does (dense x); values
    and the gradients of x, w and b equal ``x @ w + b``'s (float64), for spikes and for other values (which the
    kernels read: the masks' binary flag is 0)."""
    from neuroplastic.backend import events_torch

    torch, x, w = _torch_case(density=density, binary=binary)
    assert int(events_torch.spike_masks(x.reshape(-1, x.shape[-1]))[2]) == int(binary)
    b = torch.randn(w.shape[1], dtype=w.dtype)
    args = [t.clone().requires_grad_(True) for t in (x, w, b)]
    y = events_torch.event_matmul(*args)
    assert _ran_kernel(y) is (density < native.MAX_DENSITY)
    g = torch.randn(y.shape, dtype=y.dtype)
    grads = torch.autograd.grad(y, args, g)
    ref_args = [t.clone().requires_grad_(True) for t in (x, w, b)]
    ref = ref_args[0] @ ref_args[1] + ref_args[2]
    ref_grads = torch.autograd.grad(ref, ref_args, g)
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-9)
    # a bias the kernel cannot take (another dtype) is added after the product, with the same values
    y32 = events_torch.event_matmul(x, w, b.float())
    torch.testing.assert_close(y32, x @ w + b.float(), rtol=1e-6, atol=1e-6)


def test_torch_backend_event_matmul_is_the_kernel_and_numpy_backend_is_dense() -> None:
    from neuroplastic.backend import get_backend

    torch, x, w = _torch_case()
    T = get_backend("torch", dtype="float64")
    torch.testing.assert_close(T.event_matmul(x, w), x @ w, rtol=0, atol=1e-12)
    N = get_backend("numpy")
    np.testing.assert_array_equal(N.event_matmul(x.numpy(), w.numpy()), x.numpy() @ w.numpy())


# ------------------------------------------------------------------------------------------ JAX


def _jax_case(dtype: str = "float64", density: float = 0.08, shape: tuple = (40, 16, 256), m: int = 300, binary: bool = True):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from neuroplastic.backend import get_backend

    get_backend("jax", dtype="float64")  # enables x64
    rng = np.random.default_rng(1)
    x = jnp.asarray(_spikes(rng, shape, density, binary), dtype=dtype)
    w = jnp.asarray(rng.standard_normal((shape[-1], m)), dtype=dtype)
    return jax, jnp, x, w


def test_jax_event_matmul_matches_dense_forward_and_gradients_under_jit() -> None:
    from neuroplastic.backend import events_jax

    jax, jnp, x, w = _jax_case()
    if native.event_library_ffi() is None:
        pytest.skip(f"XLA FFI kernels unavailable: {native.build_error('event_matmul_ffi')}")
    assert events_jax.applicable(x, w)
    g = jnp.asarray(np.random.default_rng(2).standard_normal((*x.shape[:-1], w.shape[1])))

    def pullback(mm):
        y, f = jax.vjp(mm, x, w)
        return (y, *f(g))

    fast = jax.jit(lambda: pullback(events_jax.event_matmul))()
    ref = jax.jit(lambda: pullback(jnp.matmul))()
    assert "neuroplastic_event_matmul" in jax.jit(lambda a, b: events_jax.event_matmul(a, b)).lower(x, w).as_text()
    for a, b in zip(fast, ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=1e-12)
    # dense input: the cond takes XLA's dot, same numbers
    xd = jnp.ones_like(x)
    np.testing.assert_allclose(np.asarray(jax.jit(events_jax.event_matmul)(xd, w)), np.asarray(xd @ w), rtol=1e-12)


@pytest.mark.parametrize("density,binary", [(0.08, True), (0.08, False), (0.6, True)])
def test_jax_event_matmul_with_bias_equals_dense_with_gradients_under_jit(density: float, binary: bool) -> None:
    """As the torch test: the kernel adds the bias, or the dense branch of the in-program choice does; values and
    the gradients of x, w and b equal ``x @ w + b``'s (float64, jit), for spikes (the kernels never read x's values)
    and for other values (they do: the masks' flag says so)."""
    jax, jnp, x, w = _jax_case(density=density, binary=binary)
    from neuroplastic.backend import events_jax

    b = jnp.asarray(np.random.default_rng(4).standard_normal(w.shape[1]))
    x2 = x.reshape(-1, x.shape[-1])
    assert bool(events_jax._event_fwd(x2, w, b, 2)[1][2]) is (density < native.MAX_DENSITY)
    assert (int(events_jax.spike_masks(x2, 2, x2.size)[2]) & 2 == 2) is binary
    g = jnp.asarray(np.random.default_rng(5).standard_normal(x.shape[:-1] + (w.shape[1],)))

    def loss(mm):
        return jax.jit(jax.value_and_grad(lambda x_, w_, b_: (mm(x_, w_, b_) * g).sum(), argnums=(0, 1, 2)))

    (v, grads), (v_ref, grads_ref) = loss(events_jax.event_matmul)(x, w, b), loss(lambda x_, w_, b_: x_ @ w_ + b_)(x, w, b)
    np.testing.assert_allclose(float(v), float(v_ref), rtol=1e-12)
    for got, want in zip(grads, grads_ref):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-9)


def test_jax_event_matmul_under_jvp_and_vmap_equals_dense() -> None:
    from neuroplastic.backend import events_jax

    jax, jnp, x, w = _jax_case()
    tangent = jnp.ones_like(w)
    out, jvp = jax.jvp(lambda w_: events_jax.event_matmul(x, w_), (w,), (tangent,))
    np.testing.assert_allclose(np.asarray(out), np.asarray(x @ w), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(jvp), np.asarray(x @ tangent), rtol=0, atol=1e-12)
    vm = jax.jit(jax.vmap(lambda xi: events_jax.event_matmul(xi, w)))(x)
    np.testing.assert_allclose(np.asarray(vm), np.asarray(x @ w), rtol=0, atol=1e-12)
    gw = jax.grad(lambda w_: jnp.sum(jax.vmap(lambda xi: events_jax.event_matmul(xi, w_))(x) ** 2))(w)
    np.testing.assert_allclose(np.asarray(gw), np.asarray(jax.grad(lambda w_: jnp.sum((x @ w_) ** 2))(w)), rtol=1e-12, atol=1e-9)


# ---------------------------------------------------------------------------- through a network


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_network_bptt_gradients_equal_with_and_without_event_kernels(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A feed-forward spiking network large enough for the kernel (hidden 256, T=40, batch 16): BPTT's
    loss and gradients with the event product (hidden to hidden) equal the reference path's (dense) in float64."""
    pytest.importorskip(backend)
    from neuroplastic.backend import get_backend
    from neuroplastic.cells import LIF
    from neuroplastic.layers import Dense
    from neuroplastic.losses import Objective, make_loss
    from neuroplastic.network import Network
    from neuroplastic.rules.bptt import BPTT
    from neuroplastic.surrogates import FastSigmoid
    from neuroplastic.tree import tree_flatten_dict

    B = get_backend(backend, dtype="float64")
    net = Network(64, [Dense(256, bias=True), LIF(decay=0.9, surrogate=FastSigmoid(25)), Dense(256, bias=True),
                       LIF(decay=0.9, surrogate=FastSigmoid(25)), Dense(10), LIF(decay=0.9)])
    params = net.init(0, backend=B)
    rng = np.random.default_rng(0)
    xs = B.asarray((rng.random((40, 16, 64)) < 0.3).astype(np.float64))
    ys = B.asarray(rng.integers(0, 10, 16))
    _, _, rec = net.run(params, xs)
    rate = float(B.to_numpy(B.mean(rec["out"][0])))
    assert 0.01 < rate <= native.MAX_DENSITY, rate  # the 256 x 256 product takes the kernel
    rule, objective = BPTT(), Objective(make_loss("ce_sum"))
    from neuroplastic.backend import events_jax, events_torch

    module = events_torch if backend == "torch" else events_jax
    if backend == "jax" and native.event_library_ffi() is None:
        pytest.skip(f"XLA FFI kernels unavailable: {native.build_error('event_matmul_ffi')}")
    calls: list[str] = []
    for name in ("masked_product", "masked_gradients"):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _o=original, _n=name, **kw: calls.append(_n) or _o(*a, **kw))

    def grads() -> dict:
        g, _, aux = rule.gradients(net, params, {}, (xs, ys), objective)
        return {"loss": B.to_numpy(aux["loss"]), **{k: B.to_numpy(v) for k, v in tree_flatten_dict(g).items()}}

    fast = grads()
    assert len(calls) >= 2, calls  # the forward product and the weight gradient ran in the kernel
    monkeypatch.setenv("NEUROPLASTIC_EVENT_KERNELS", "0")
    ref = grads()
    assert fast.keys() == ref.keys()
    for key in ref:
        np.testing.assert_allclose(fast[key], ref[key], rtol=1e-10, atol=1e-10, err_msg=key)


def test_torch_narrow_output_product_equals_matmul_with_gradients_and_second_derivatives() -> None:
    """A readout-like product (ten output columns, many rows) takes NarrowOutputMatmul, whose weight gradient
    is (g^T x)^T: float64 values, both gradients and a gradient of a gradient equal torch.matmul's."""
    import torch

    from neuroplastic.backend import events_torch

    rng = np.random.default_rng(3)
    x = torch.tensor(_spikes(rng, (60, 32, 200), 0.1), dtype=torch.float64)
    w = torch.tensor(rng.standard_normal((200, 10)), dtype=torch.float64)
    results = []
    for mm in (events_torch.event_matmul, torch.matmul):
        xs, ws = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        y = mm(xs, ws)
        assert _ran_kernel(y, "NarrowOutputMatmul") is (mm is events_torch.event_matmul)
        g = torch.tensor(rng.standard_normal(tuple(y.shape)) if not results else results[0][3], dtype=torch.float64)
        gx, gw = torch.autograd.grad(y, (xs, ws), g, create_graph=True)
        (ggw,) = torch.autograd.grad((gw ** 2).sum() + (gx ** 2).sum(), ws)
        results.append((y.detach(), gx.detach(), gw.detach(), g.numpy(), ggw))
    for a, b in zip(results[0][:3] + (results[0][4],), results[1][:3] + (results[1][4],)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_torch_narrow_output_product_only_where_it_helps() -> None:
    """Wide outputs, a single step's product, no gradient, integer arrays and torch.func transforms keep torch.matmul."""
    import torch

    from neuroplastic.backend import events_torch

    x = torch.rand(60, 32, 200)
    w = torch.randn(200, 10, requires_grad=True)
    assert events_torch.narrow_output(x, w)
    assert not events_torch.narrow_output(x, torch.randn(200, 16, requires_grad=True))  # wide enough for torch's GEMM
    assert not events_torch.narrow_output(x[0], w)  # 32 x 200 x 10: one step's product
    assert not events_torch.narrow_output(x, w.detach())  # no gradient wanted
    with torch.no_grad():
        assert not events_torch.narrow_output(x, w)
    assert not events_torch.narrow_output(x.to(torch.int64), w.detach().to(torch.int64))
    seen = []
    torch.func.vmap(lambda x_: seen.append(events_torch.narrow_output(x_, w)) or x_.sum())(x)
    assert seen == [False]
    out, tangent = torch.func.jvp(lambda w_: events_torch.event_matmul(x, w_), (w.detach(),), (torch.ones(200, 10),))
    torch.testing.assert_close(tangent, x @ torch.ones(200, 10), rtol=0, atol=0)


def test_torch_takes_128_wide_products_up_to_the_narrow_density_limit() -> None:
    """128 to 255 output columns take the kernel up to native.NARROW_MAX_DENSITY, wider ones up to MAX_DENSITY
    (the kernel checks the density itself); above, torch's dense product, with the same values."""
    import torch

    from neuroplastic.backend import events_torch

    rng = np.random.default_rng(5)
    narrow = torch.tensor(rng.standard_normal((128, 128)), requires_grad=True)
    wide = torch.tensor(rng.standard_normal((128, 256)), requires_grad=True)
    for density, on_narrow, on_wide in ((0.12, True, True), (0.23, False, True), (0.35, False, False)):
        x = torch.tensor(_spikes(rng, (200, 16, 128), density))
        assert native.NARROW_MAX_DENSITY < 0.23 < native.MAX_DENSITY < 0.35
        for w, expected in ((narrow, on_narrow), (wide, on_wide)):
            assert events_torch.applicable(x, w)
            y = events_torch.event_matmul(x, w)
            assert _ran_kernel(y) is expected, (density, w.shape)
            torch.testing.assert_close(y.detach(), x @ w.detach(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [1, 63, 64, 65, 129])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_spike_masks_are_the_nonzeros_bit_by_bit(k: int, dtype: str) -> None:
    """spike_masks: bit j of row n's word w is ``x[n, 64 w + j] != 0`` (C's ``!=``: NaN set, -0.0 clear), the counts
    are the rows' non-zeros, and the flag says whether the total is within the limit (both sides of it)."""
    jax, jnp, _, _ = _jax_case()
    from neuroplastic.backend import events_jax

    if native.event_library_ffi() is None:
        pytest.skip(f"XLA FFI kernels unavailable: {native.build_error('event_matmul_ffi')}")
    rng = np.random.default_rng(k)
    x = _spikes(rng, (40, k), 0.3, binary=False).astype(dtype)
    x[1, 0], x[2, k - 1], x[3, k // 2] = np.nan, -0.0, 1e-30
    nonzero = x != 0
    bits, counts, flags, sparse = events_jax.spike_masks(jnp.asarray(x), 2, int(nonzero.sum()))
    assert int(flags) & 2 == 0  # not binary (NaN, other values)
    assert int(events_jax.spike_masks(jnp.asarray((x != 0).astype(dtype)), 2, 0)[2]) == 2  # binary, not sparse enough
    words = np.asarray(bits).view(np.uint64)  # two 32-bit halves, low first: little-endian 64-bit words
    assert words.shape == (40, (k + 63) // 64)
    unpacked = np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")[:, :k].astype(bool)
    np.testing.assert_array_equal(unpacked, nonzero)
    assert not np.unpackbits(words.view(np.uint8), axis=1, bitorder="little")[:, k:].any()  # padding bits clear
    np.testing.assert_array_equal(np.asarray(counts), nonzero.sum(axis=1))
    assert bool(sparse)
    assert not bool(events_jax.spike_masks(jnp.asarray(x), 2, int(nonzero.sum()) - 1)[3])


def test_jax_density_limit_depends_on_the_output_width() -> None:
    """The JAX product's in-program density check uses the width-dependent limit, and a 128-wide product
    gives the dense values whichever path it takes."""
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from neuroplastic.backend import events_jax

    if native.event_library_ffi() is None:
        pytest.skip(f"XLA FFI kernels unavailable: {native.build_error('event_matmul_ffi')}")
    rng = np.random.default_rng(7)
    w = jnp.asarray(rng.standard_normal((128, 128)))
    for density in (0.05, 0.3):
        xs = jnp.asarray(_spikes(rng, (200, 16, 128), density))
        assert events_jax.applicable(xs, w)
        y, vjp = jax.vjp(events_jax.event_matmul, xs, w)
        gx, gw = vjp(jnp.ones_like(y))
        np.testing.assert_allclose(np.asarray(y), np.asarray(xs @ w), rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(gw), np.asarray(jnp.einsum("tbk,tbm->km", xs, jnp.ones_like(y))), rtol=0, atol=1e-9)

    def took_events(x, w) -> bool:  # the kernel's own density check, as the forward's flag reports it
        return bool(events_jax._event_fwd(x, w, None, 2)[1][2])

    x = jnp.asarray((np.random.default_rng(6).random((3200, 128)) < 0.23).astype(np.float32))
    w128, w256 = jnp.ones((128, 128), jnp.float32), jnp.ones((128, 256), jnp.float32)
    assert not took_events(x, w128) and took_events(x, w256)
    assert took_events(x * (jnp.arange(128) < 40), w128)  # 23% x 40/128: about 7.2%


@pytest.mark.parametrize("backend", ["torch", "jax", "numpy"])
def test_outer_sum_equals_the_sum_of_outer_products(backend) -> None:
    """Backend.outer_sum (the weight gradient x^T g over all leading axes) against numpy's einsum, for narrow
    outputs (torch computes those as (g^T x)^T) and wide ones, one step (2-D) and whole sequences (3-D);
    second derivatives through torch's narrow order; mismatched leading axes are refused by name, even where
    the flattened sizes would agree."""
    from neuroplastic.backend import get_backend

    B = get_backend(backend, dtype="float64")
    rng = np.random.default_rng(8)
    for lead in ((64,), (30, 16)):
        for n in (10, 16, 40):
            x, g = rng.standard_normal(lead + (129,)), rng.standard_normal(lead + (n,))
            got = B.to_numpy(B.outer_sum(B.asarray(x), B.asarray(g)))
            want = sum(np.outer(xi, gi) for xi, gi in zip(x.reshape(-1, 129), g.reshape(-1, n)))  # outer products, summed
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    if backend == "torch":
        import torch

        xs = torch.tensor(rng.standard_normal((50, 7)), requires_grad=True)
        gs = torch.tensor(rng.standard_normal((50, 3)))
        (hx,) = torch.autograd.grad((B.outer_sum(xs, gs) ** 2).sum(), xs)
        torch.testing.assert_close(hx, 2 * gs @ (xs.t() @ gs).t(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="outer_sum: x .* and g .* must share their leading axes"):
        B.outer_sum(B.zeros((4, 5, 3)), B.zeros((5, 4, 2)))


@pytest.mark.parametrize("arch,cpu_flag", [("-march=x86-64", None), ("-march=haswell", "avx2"), ("-march=skylake-avx512", "avx512f")])
def test_masks_and_products_agree_across_instruction_sets(tmp_path, arch, cpu_flag):
    """A build only ever compiles one of the masks' code paths (AVX-512, AVX or plain C, by ``-march=native``), so a
    CI machine of another kind runs a path this one does not: each path is built here and checked against numpy
    (bits, counts, products with a bias), NaN and -0.0 included, at widths around the vector and word sizes."""
    import ctypes
    import platform
    import subprocess
    from pathlib import Path

    compiler = native.cxx_compiler()
    if compiler is None or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("needs a C++ compiler on x86-64")
    if cpu_flag is not None and cpu_flag not in Path("/proc/cpuinfo").read_text().split():
        pytest.skip(f"this CPU has no {cpu_flag}")
    so = tmp_path / "event_matmul.so"
    done = subprocess.run([compiler, *native.CXX_FLAGS, arch, str(native.SOURCE), "-o", str(so)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    built = ctypes.CDLL(str(so))
    p = ctypes.c_void_p
    for dtype, suffix in ((np.float32, "f32"), (np.float64, "f64")):
        masks_fn, product_fn = getattr(built, f"np_spike_masks_{suffix}"), getattr(built, f"np_masked_matmul_{suffix}")
        masks_fn.restype = product_fn.restype = ctypes.c_int64
        masks_fn.argtypes = [p, p, p, p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
        product_fn.argtypes = [p] * 4 + [ctypes.c_int32, p] + [ctypes.c_int64] * 3 + [ctypes.c_int]
        for k in (1, 3, 4, 7, 8, 9, 15, 16, 17, 33, 63, 64, 65, 129):
            rng = np.random.default_rng(k)
            w, b = rng.standard_normal((k, 70)).astype(dtype), rng.standard_normal(70).astype(dtype)
            spikes = _spikes(rng, (37, k), 0.3).astype(dtype)
            x = _spikes(rng, (37, k), 0.3, binary=False).astype(dtype)
            x[1, 0], x[2, k - 1] = np.nan, -0.0
            for data, binary in ((x, 0), (spikes, 1)):
                masks, counts, flag = np.empty((37, (k + 63) // 64), np.uint64), np.empty(37, np.int32), np.full(1, -1, np.int32)
                assert masks_fn(data.ctypes.data, masks.ctypes.data, counts.ctypes.data, flag.ctypes.data, 37, k, 2) == int(np.sum(data != 0))
                assert flag[0] == binary, f"{arch} {suffix} K={k}: binary flag {flag[0]}"
                bits = np.unpackbits(masks.view(np.uint8), axis=1, bitorder="little")
                np.testing.assert_array_equal(bits[:, :k].astype(bool), data != 0, err_msg=f"{arch} {suffix} K={k}")
                assert not bits[:, k:].any()
                np.testing.assert_array_equal(counts, (data != 0).sum(axis=1))
                out = np.empty((37, 70), dtype)
                product_fn(data.ctypes.data, w.ctypes.data, b.ctypes.data, masks.ctypes.data, int(flag[0]), out.ctypes.data, 37, k, 70, 2)
                finite = ~np.isnan(data).any(axis=1)
                np.testing.assert_allclose(out[finite], (data @ w + b)[finite], rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)
