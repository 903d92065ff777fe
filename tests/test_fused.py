"""Fused LIF kernels (issue 12): the fast path equals the reference path, and is selected only where it applies."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import rel_err
from neuroplastic.cells import lif as lif_module
from neuroplastic.backend import get_backend
from neuroplastic.backend.base import Backend
from neuroplastic.cells import ALIF, LIF
from neuroplastic.layers import Dense, RecurrentDense
from neuroplastic.losses import Objective, make_loss
from neuroplastic.network import Network
from neuroplastic.rules.bptt import BPTT
from neuroplastic.surrogates import FastSigmoid, Triangle
from neuroplastic.tree import tree_leaves

T, BATCH = 16, 3
RESETS = [("subtract", True), ("subtract", False), ("zero", True), ("zero", False), ("none", True)]


def _kernel_inputs(seed: int = 0, n: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    currents = rng.normal(0.3, 0.8, (T, BATCH, n))
    v0 = rng.normal(0.0, 0.5, (BATCH, n))
    g_spikes = rng.normal(0.0, 1.0, (T, BATCH, n))
    return currents, v0, g_spikes


def _kernel_value_and_grads(B: Backend, fn, currents, v0, g_spikes, g_v):
    """Spikes, last membrane, and the gradient of ``<g_spikes, spikes> + <g_v, v_last>`` w.r.t. currents and v0."""
    def scalar(args: dict):
        spikes, v_last = fn(args["I"], args["v0"])
        return B.sum(spikes * g_spikes) + B.sum(v_last * g_v), (spikes, v_last)

    (_, (spikes, v_last)), grads = B.value_and_grad(scalar, has_aux=True)({"I": currents, "v0": v0})
    return B.to_numpy(spikes), B.to_numpy(v_last), B.to_numpy(grads["I"]), B.to_numpy(grads["v0"])


@pytest.mark.parametrize("reset,detach", RESETS)
@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_kernel_equals_reference(backend_name, reset, detach, dtype, tol):
    B = get_backend(backend_name, dtype=dtype)
    currents, v0, g_spikes = _kernel_inputs()
    g_v = np.linspace(-1.0, 1.0, v0.size).reshape(v0.shape)
    args = [B.asarray(a) for a in (currents, v0, g_spikes, g_v)]
    cfg = (0.9, 1.0, reset, detach, Triangle(beta=1.0, gamma=0.5))
    fast = _kernel_value_and_grads(B, lambda I, v: B.lif_sequence(I, v, *cfg), *args)
    ref = _kernel_value_and_grads(B, lambda I, v: Backend.lif_sequence(B, I, v, *cfg), *args)
    assert fast[0].sum() > 0 and fast[0].sum() < fast[0].size  # some spikes, not all
    np.testing.assert_array_equal(fast[0], ref[0])  # forward bit-identical
    np.testing.assert_array_equal(fast[1], ref[1])
    for got, want in zip(fast[2:], ref[2:]):
        assert rel_err(got, want) <= tol


def _net(fused: bool = True, layers=None, **kw) -> Network:
    cell = dict(decay=0.9, surrogate=FastSigmoid(beta=25.0))
    layers = layers or [Dense(12, bias=True), LIF(**cell), Dense(12), LIF(**cell), Dense(3), LIF(**cell)]
    return Network(5, layers, fused=fused, **kw)


def _batch(B: Backend, seed: int = 1):
    rng = np.random.default_rng(seed)
    xs = (rng.random((T, BATCH, 5)) < 0.3).astype(np.float64)
    return B.asarray(xs), B.asarray(rng.integers(0, 3, BATCH))


def _bptt(net: Network, params: dict, batch) -> tuple:
    grads, _, aux = BPTT().gradients(net, params, {}, batch, Objective(make_loss("ce_sum")))
    return aux["loss"], grads


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
def test_network_fused_equals_reference(backend_name, dtype, tol):
    B = get_backend(backend_name, dtype=dtype)
    fast, ref = _net(True), _net(False)
    params = ref.init(0, backend=B, dtype=dtype)
    params["layers"][0]["w"] = params["layers"][0]["w"] * 3.0  # enough input to make every layer fire
    xs, labels = _batch(B)
    ys_f, final_f, rec_f = fast.run(params, xs, record="current")
    ys_r, final_r, rec_r = ref.run(params, xs, record="current")
    assert 0 < float(B.to_numpy(rec_f["out"][1]).mean()) < 1
    for a, b in zip(tree_leaves((ys_f, final_f, rec_f)), tree_leaves((ys_r, final_r, rec_r))):
        np.testing.assert_array_equal(B.to_numpy(a), B.to_numpy(b))
    run = B.jit(_bptt, static_argnums=(0,)) if B.compiles else _bptt
    loss_f, g_f = run(fast, params, (xs, labels))
    loss_r, g_r = run(ref, params, (xs, labels))
    assert float(B.to_numpy(loss_f)) == float(B.to_numpy(loss_r))
    for a, b in zip(tree_leaves(g_f), tree_leaves(g_r)):
        assert rel_err(B.to_numpy(a), B.to_numpy(b)) <= tol


def test_fused_block_selection():
    lif = LIF(decay=0.9)
    assert all(_net().fused_block(l) for l in range(3))
    assert not any(_net(False).fused_block(l) for l in range(3))
    assert not _net(layers=[RecurrentDense(4), lif, Dense(3), lif]).fused_block(0)
    assert _net(layers=[RecurrentDense(4), lif, Dense(3), lif]).fused_block(1)
    assert not _net(layers=[Dense(4), ALIF(), Dense(3), lif]).fused_block(0)
    assert not _net(layers=[Dense(4), LIF(tau_syn=5.0), Dense(3), lif]).fused_block(0)
    assert not _net(layers=[Dense(4), LIF(train_decay=True), Dense(3), lif]).fused_block(0)
    with pytest.raises(ValueError, match="fused"):
        Network(5, [Dense(3), lif], fused=1)


def test_fused_block_whitelists_fields(monkeypatch):
    """A LIF field outside the kernel's list must hold its default, or the block keeps the reference path."""
    monkeypatch.setattr(lif_module, "FUSED_FIELDS", ("tau_mem", "decay", "dt", "reset", "detach_reset", "surrogate"))
    assert _net(layers=[Dense(4), LIF(threshold=1.0), Dense(3), LIF()]).fused_block(0)
    assert not _net(layers=[Dense(4), LIF(threshold=2.0), Dense(3), LIF()]).fused_block(0)


def test_per_call_conditions_keep_the_reference(backend_name, monkeypatch):
    """truncate, a 'state' record and forward-mode differentiation never reach the kernel."""
    B = get_backend(backend_name, dtype="float64")
    calls = []
    original = type(B).lif_sequence

    def counting(self, *args, **kw):
        calls.append(1)
        return original(self, *args, **kw)

    monkeypatch.setattr(type(B), "lif_sequence", counting)
    two_blocks = [Dense(6), LIF(decay=0.9), Dense(3), LIF(decay=0.9)]
    net, ref = _net(layers=two_blocks), _net(False, layers=two_blocks)
    params = net.init(0, backend=B, dtype="float64")
    xs, _ = _batch(B)
    xs = xs[:6]
    net.run(params, xs)
    assert len(calls) == 2
    calls.clear()
    net.run(params, xs, truncate=5)
    net.run(params, xs, record="state")
    assert not calls
    # forward mode: the tangent of the output spikes' membrane path through the reference
    def last_block_input(x):
        return net.run(params, x)[2]["out"][1]

    _, tangent = B.jvp(last_block_input, (xs,), (B.ones_like(xs),))
    if backend_name == "jax":
        assert not calls
    _, tangent_ref = B.jvp(lambda x: ref.run(params, x)[2]["out"][1], (xs,), (B.ones_like(xs),))
    np.testing.assert_array_equal(B.to_numpy(tangent), B.to_numpy(tangent_ref))


@pytest.mark.parametrize("reset,detach", [("subtract", True), ("zero", False), ("none", True)])
def test_jax_compiled_loops_equal_the_jax_scans(reset, detach, monkeypatch):
    """On the CPU the JAX kernel runs the C loops through XLA FFI; without the library it runs its own
    scans.  Both give the same spikes and membrane bit for bit and the same gradients to round-off, also
    under ``vmap`` (the FFI call then runs once per batch element)."""
    jax = pytest.importorskip("jax")
    from neuroplastic.backend import kernels_jax, native

    if native.lif_library_ffi() is None:
        pytest.skip(f"the LIF loops' XLA FFI build is unavailable: {native.build_error('lif_ffi')}")
    if kernels_jax._xla_without_fma():
        pytest.skip("XLA_FLAGS restricts XLA below FMA: the JAX kernel keeps its scans")
    B = get_backend("jax", dtype="float64")
    currents, v0, g_spikes = _kernel_inputs()
    g_v = np.linspace(-1.0, 1.0, v0.size).reshape(v0.shape)
    args = [B.asarray(a) for a in (currents, v0, g_spikes, g_v)]
    cfg = (0.9, 1.0, reset, detach, FastSigmoid(beta=25.0))
    fn = lambda I, v: kernels_jax.lif_sequence(I, v, *cfg)  # noqa: E731
    assert "neuroplastic_lif_forward" in jax.jit(fn).lower(args[0], args[1]).as_text()
    loops = _kernel_value_and_grads(B, fn, *args)
    batched = jax.vmap(fn, in_axes=(1, 0), out_axes=(1, 0))(args[0], args[1])
    monkeypatch.setattr(native, "lif_library_ffi", lambda: None)
    jax.clear_caches()  # traces of the kernel made with the library
    fn = lambda I, v: kernels_jax.lif_sequence(I, v, *cfg)  # noqa: E731
    assert "neuroplastic_lif_forward" not in jax.jit(fn).lower(args[0], args[1]).as_text()
    scans = _kernel_value_and_grads(B, fn, *args)
    np.testing.assert_array_equal(loops[0], scans[0])
    np.testing.assert_array_equal(loops[1], scans[1])
    for got, want in zip(loops[2:], scans[2:]):
        assert rel_err(got, want) <= 1e-12
    np.testing.assert_array_equal(np.asarray(batched[0]), scans[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_jax_compiled_loops_compute_the_fast_sigmoid_slope_with_the_same_gradients(dtype):
    """For FastSigmoid the JAX kernel's backward loop computes the slope itself (no slope array from XLA):
    the gradients equal those of the slope-array loop (a FastSigmoid subclass takes that path), for every
    reset, detached or not, the spikes and membrane bit for bit and the gradients to round-off (XLA and the
    loop, built with contraction allowed, may round ``1 + beta |x|`` differently: 1.5e-13 in float64 here)."""
    jax = pytest.importorskip("jax")
    from dataclasses import dataclass

    from neuroplastic.backend import kernels_jax, native

    if native.lif_library_ffi() is None:
        pytest.skip(f"the LIF loops' XLA FFI build is unavailable: {native.build_error('lif_ffi')}")
    if kernels_jax._xla_without_fma():
        pytest.skip("XLA_FLAGS restricts XLA below FMA: the JAX kernel keeps its scans")

    @dataclass(frozen=True)
    class SameFormula(FastSigmoid):
        """FastSigmoid's derivative computed by XLA (the slope-array path)."""

    B = get_backend("jax", dtype=dtype)
    currents, v0, g_spikes = _kernel_inputs(seed=3)
    g_v = np.linspace(-1.0, 1.0, v0.size).reshape(v0.shape)
    args = [B.asarray(a) for a in (currents, v0, g_spikes, g_v)]
    for reset, detach in RESETS:
        results = []
        for surrogate in (FastSigmoid(beta=7.3), SameFormula(beta=7.3)):
            fn = lambda I, v, s=surrogate: kernels_jax.lif_sequence(I, v, 0.7, 0.3, reset, detach, s)  # noqa: E731
            text = jax.jit(lambda I, v, f=fn: jax.vjp(f, I, v)[1]((args[2], args[3]))).lower(args[0], args[1]).as_text()
            assert ("neuroplastic_lif_backward_fast_sigmoid" in text) is (type(surrogate) is FastSigmoid)
            results.append(_kernel_value_and_grads(B, fn, *args))
        np.testing.assert_array_equal(results[0][0], results[1][0])
        np.testing.assert_array_equal(results[0][1], results[1][1])
        for got, want in zip(results[0][2:], results[1][2:]):
            assert rel_err(got, want) <= (1e-12 if dtype == "float64" else 1e-5), (reset, detach)
