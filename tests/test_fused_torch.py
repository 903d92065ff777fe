"""The torch fused LIF kernel (backend/kernels_torch.py) against the reference: LIF.step run step by step."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neuroplastic.backend import get_backend  # noqa: E402
from neuroplastic.backend import kernels_torch  # noqa: E402
from neuroplastic.backend.kernels_torch import LIFSequence, in_transform, lif_backward, lif_forward, lif_sequence  # noqa: E402
from neuroplastic.cells.lif import LIF  # noqa: E402


@pytest.fixture(params=["compiled", "python"], autouse=True)
def loops(request, monkeypatch):
    """Every test runs with the compiled C loops (where a C compiler exists) and with the Python loops."""
    if request.param == "python":
        monkeypatch.setenv("NEUROPLASTIC_C_KERNELS", "0")
    elif kernels_torch.c_library() is None:
        pytest.skip("no C compiler: the compiled loops are not built")
    return request.param

RESETS = ("subtract", "zero", "none")
# decay and threshold that float32 cannot represent, so a different rounding of the scalars would show
SETTINGS = dict(decay=0.7, threshold=0.3)


def stepwise(cell: LIF, currents, v0):
    """The reference: ``LIF.step`` in a Python loop (autograd records every step)."""
    v, spikes = v0, []
    for t in range(currents.shape[0]):
        state, z = cell.step({}, {"v": v}, currents[t])
        v = state["v"]
        spikes.append(z)
    return torch.stack(spikes), v


def inputs(dtype, T=40, batch=3, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    currents = (0.45 * torch.randn(T, batch, n, generator=g, dtype=dtype)).requires_grad_()
    v0 = (0.2 * torch.randn(batch, n, generator=g, dtype=dtype)).requires_grad_()
    cot_z = torch.randn(T, batch, n, generator=g, dtype=dtype)
    cot_v = torch.randn(batch, n, generator=g, dtype=dtype)
    return currents, v0, cot_z, cot_v


def grads(spikes, v_last, currents, v0, cot_z, cot_v):
    return torch.autograd.grad((spikes * cot_z).sum() + (v_last * cot_v).sum(), (currents, v0))


def rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("reset,detach", list(itertools.product(RESETS, (True, False))))
@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "triangle"])
def test_kernel_equals_stepwise_float64(reset, detach, surrogate):
    cell = LIF(reset=reset, detach_reset=detach, surrogate=surrogate, **SETTINGS)
    currents, v0, cot_z, cot_v = inputs(torch.float64)
    z_ref, v_ref = stepwise(cell, currents, v0)
    z, v = lif_sequence(currents, v0, cell.alpha, cell.threshold, reset, detach, cell.surrogate)
    assert 0.05 < float(z_ref.detach().mean()) < 0.6  # the test exercises spikes and resets
    assert torch.equal(z, z_ref) and torch.equal(v, v_ref)
    for got, want in zip(grads(z, v, currents, v0, cot_z, cot_v), grads(z_ref, v_ref, currents, v0, cot_z, cot_v)):
        assert rel(got, want) < 1e-12


@pytest.mark.parametrize("reset,detach", list(itertools.product(RESETS, (True, False))))
def test_kernel_equals_stepwise_float32(reset, detach):
    cell = LIF(reset=reset, detach_reset=detach, **SETTINGS)
    currents, v0, cot_z, cot_v = inputs(torch.float32, T=120)
    z_ref, v_ref = stepwise(cell, currents, v0)
    z, v = lif_sequence(currents, v0, cell.alpha, cell.threshold, reset, detach, cell.surrogate)
    assert torch.equal(z, z_ref) and torch.equal(v, v_ref)  # bit for bit
    for got, want in zip(grads(z, v, currents, v0, cot_z, cot_v), grads(z_ref, v_ref, currents, v0, cot_z, cot_v)):
        # a different summation order: a few float32 ulps per step at most
        assert float((got - want).abs().max()) <= 4 * 120 * np.finfo(np.float32).eps * float(want.abs().max())


@pytest.mark.parametrize("reset", RESETS)
def test_kernel_gradcheck_last_membrane(reset):
    """Finite differences: with a detached reset the last membrane is piecewise smooth in the inputs,
    and its true derivative is what the kernel returns (no surrogate on that path)."""
    cell = LIF(reset=reset, detach_reset=True, **SETTINGS)
    currents, v0, _, _ = inputs(torch.float64, T=12, batch=2, n=3, seed=1)

    def last(i, v):
        return lif_sequence(i, v, cell.alpha, cell.threshold, reset, True, cell.surrogate)[1]

    assert torch.autograd.gradcheck(last, (currents, v0), eps=1e-7, atol=1e-9)


def test_kernel_one_output_unused_and_inputs_without_grad():
    cell = LIF(**SETTINGS)
    currents, v0, cot_z, _ = inputs(torch.float64)
    z_ref, _ = stepwise(cell, currents, v0)
    (want,) = torch.autograd.grad((z_ref * cot_z).sum(), currents)
    z, _ = lif_sequence(currents, v0.detach(), cell.alpha, cell.threshold, "subtract", True, cell.surrogate)
    (got,) = torch.autograd.grad((z * cot_z).sum(), currents)
    assert rel(got, want) < 1e-12
    with torch.no_grad():
        z2, _ = lif_sequence(currents, v0, cell.alpha, cell.threshold, "subtract", True, cell.surrogate)
    assert torch.equal(z2, z) and z2.grad_fn is None


def test_forward_backward_helpers_keep_inputs():
    currents = torch.randn(30, 2, 4, dtype=torch.float64)
    v0 = torch.randn(2, 4, dtype=torch.float64)
    keep_i, keep_v = currents.clone(), v0.clone()
    spikes, v_last, u = lif_forward(currents, v0, 0.8, 0.5, "zero")
    grad_i, grad_v0 = lif_backward(u, torch.ones_like(u), torch.ones_like(v0), 0.8, 0.5, "zero", False, LIF().surrogate)
    assert torch.equal(currents, keep_i) and torch.equal(v0, keep_v)
    assert grad_i.shape == currents.shape and grad_v0.shape == v0.shape


def test_backend_uses_the_kernel_and_the_reference_under_jvp():
    B = get_backend("torch", dtype="float64")
    cell = LIF(**SETTINGS)
    currents, v0, _, _ = inputs(torch.float64)
    spikes, _ = B.lif_sequence(currents, v0, cell.alpha, cell.threshold, "subtract", True, cell.surrogate)
    assert type(spikes.grad_fn).__name__ == "LIFSequenceBackward"
    assert not B.in_forward_mode(currents)

    # forward mode: the kernel has no jvp rule, so the backend falls back to the reference by itself
    def run(i):
        assert B.in_forward_mode(i)
        return B.lif_sequence(i, v0.detach(), cell.alpha, cell.threshold, "subtract", True, cell.surrogate)[0]

    tangent = torch.randn_like(currents)
    _, jvp = torch.func.jvp(run, (currents.detach(),), (tangent,))
    z_ref, _ = stepwise(cell, currents, v0.detach())
    (vjp,) = torch.autograd.grad(z_ref, currents, torch.ones_like(z_ref))  # <1, J t> = <J^T 1, t>
    assert abs(float(jvp.sum()) - float((vjp * tangent).sum())) < 1e-10 * float(vjp.abs().sum() * tangent.abs().max())

    import torch.autograd.forward_ad as fwAD

    with fwAD.dual_level():
        dual = fwAD.make_dual(currents.detach(), tangent)
        assert in_transform(dual) and B.in_forward_mode(dual)
        z_dual, _ = B.lif_sequence(dual, v0.detach(), cell.alpha, cell.threshold, "subtract", True, cell.surrogate)
        assert torch.allclose(fwAD.unpack_dual(z_dual).tangent, jvp, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reset", RESETS)
def test_network_fused_equals_reference_on_torch(reset):
    """Through the network: BPTT with the kernel (selected by itself) and with ``fused=False``."""
    from neuroplastic.layers import Dense
    from neuroplastic.losses import Objective, make_loss
    from neuroplastic.network import Network
    from neuroplastic.rules.bptt import BPTT
    from neuroplastic.tree import tree_leaves, tree_unflatten_like

    B = get_backend("torch", dtype="float64")
    layers = lambda: [Dense(16, bias=True), LIF(reset=reset, **SETTINGS), Dense(16), LIF(reset=reset, detach_reset=False),  # noqa: E731
                      Dense(4), LIF(reset=reset)]
    fused, plain = Network(5, layers()), Network(5, layers(), fused=False)
    params = B.tree_asarray(fused.init_numpy(3))
    rng = np.random.default_rng(0)
    xs = B.asarray((rng.random((30, 4, 5)) < 0.4).astype(np.float64) * 2.0)
    ys = B.asarray(rng.integers(0, 4, 4))
    live = [p.detach().requires_grad_() for p in tree_leaves(params)]
    out_f, _, rec_f = fused.run(tree_unflatten_like(params, live), xs)
    out_p, _, rec_p = plain.run(params, xs)
    assert type(out_f.grad_fn).__name__ == "LIFSequenceBackward"  # the kernel was selected
    assert all(torch.equal(a, b) for a, b in zip(rec_f["out"], rec_p["out"]))
    assert float(rec_p["out"][0].mean()) > 0.02
    objective = Objective(make_loss("ce_sum"))
    g_f, _, aux_f = BPTT().gradients(fused, params, {}, (xs, ys), objective)
    g_p, _, aux_p = BPTT().gradients(plain, params, {}, (xs, ys), objective)
    assert float(aux_f["loss"]) == float(aux_p["loss"])
    for a, b in zip(tree_leaves(g_f), tree_leaves(g_p)):
        assert float((a - b).norm()) <= 1e-12 * max(float(b.norm()), 1e-30)


def test_bad_arguments_are_named():
    currents, v0 = torch.zeros(3, 2, 4), torch.zeros(2, 4)
    with pytest.raises(ValueError, match="reset"):
        lif_sequence(currents, v0, 0.9, 1.0, "sometimes", True, LIF().surrogate)
    with pytest.raises(ValueError, match="v0"):
        lif_sequence(currents, torch.zeros(2, 5), 0.9, 1.0, "subtract", True, LIF().surrogate)
    with pytest.raises(ValueError, match="currents"):
        lif_sequence(torch.zeros(3, 4), v0, 0.9, 1.0, "subtract", True, LIF().surrogate)
    with pytest.raises(TypeError, match="alpha"):
        lif_sequence(currents, v0, torch.tensor(0.9), 1.0, "subtract", True, LIF().surrogate)
    assert LIFSequence is not None


def test_compiled_and_python_loops_agree(monkeypatch):
    monkeypatch.setenv("NEUROPLASTIC_C_KERNELS", "1")
    if kernels_torch.c_library() is None:
        pytest.skip("no C compiler")
    cell = LIF(reset="zero", detach_reset=False, **SETTINGS)
    for dtype in (torch.float32, torch.float64):
        currents, v0, cot_z, cot_v = inputs(dtype, T=200, batch=5, n=9, seed=4)
        monkeypatch.setenv("NEUROPLASTIC_C_KERNELS", "1")
        z_c, v_c = lif_sequence(currents, v0, cell.alpha, cell.threshold, "zero", False, cell.surrogate)
        g_c = grads(z_c, v_c, currents, v0, cot_z, cot_v)
        monkeypatch.setenv("NEUROPLASTIC_C_KERNELS", "0")
        z_p, v_p = lif_sequence(currents, v0, cell.alpha, cell.threshold, "zero", False, cell.surrogate)
        g_p = grads(z_p, v_p, currents, v0, cot_z, cot_v)
        assert torch.equal(z_c, z_p) and torch.equal(v_c, v_p)
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        assert all(rel(a, b) < tol for a, b in zip(g_c, g_p))


@pytest.mark.parametrize("reset,detach", [("subtract", True), ("zero", False), ("none", True)])
def test_compiled_loops_split_over_threads_give_the_same_bits(monkeypatch, reset, detach):
    """The C loops split the neurons into one range per thread (at least 2048 neurons a range): the
    spikes, membrane and gradients are the same bit for bit with 1, 2 and 4 threads, and the forward
    equals the Python loops'."""
    monkeypatch.setenv("NEUROPLASTIC_C_KERNELS", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # loop_threads() follows torch's thread count
    if kernels_torch.c_library() is None:
        pytest.skip("no C compiler")
    cell = LIF(reset=reset, detach_reset=detach, **SETTINGS)
    currents, v0, cot_z, cot_v = inputs(torch.float32, T=30, batch=8, n=1100, seed=5)  # 8800 neurons: up to 4 ranges
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            z, v = lif_sequence(currents, v0, cell.alpha, cell.threshold, reset, detach, cell.surrogate)
            results.append((z, v, *grads(z, v, currents, v0, cot_z, cot_v)))
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))
    monkeypatch.setenv("NEUROPLASTIC_C_KERNELS", "0")
    z_p, v_p = lif_sequence(currents, v0, cell.alpha, cell.threshold, reset, detach, cell.surrogate)
    assert torch.equal(results[0][0], z_p) and torch.equal(results[0][1], v_p)


def test_loop_threads_follow_torch_only_under_passive_waiting(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert kernels_torch.loop_threads() == torch.get_num_threads()
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert kernels_torch.loop_threads() == 1
    monkeypatch.delenv("OMP_WAIT_POLICY")
    assert kernels_torch.loop_threads() == 1


def test_without_a_compiler_the_python_loops_run(monkeypatch):
    from neuroplastic.backend import native

    monkeypatch.setattr(native, "c_compiler", lambda: None)
    monkeypatch.setattr(native, "_libraries", {})
    monkeypatch.setattr(native, "_errors", {})
    assert kernels_torch.c_library() is None
    cell = LIF(**SETTINGS)
    currents, v0, _, _ = inputs(torch.float64)
    z_ref, v_ref = stepwise(cell, currents, v0)
    z, v = lif_sequence(currents, v0, cell.alpha, cell.threshold, "subtract", True, cell.surrogate)
    assert torch.equal(z, z_ref) and torch.equal(v, v_ref)


def test_passive_openmp_is_set_by_entry_points_not_imports():
    """Importing the torch backend leaves the environment alone; prefer_passive_openmp sets passive waiting
    with a bounded spin only before torch loads, and keeps a user's own policy or spin count."""
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from neuroplastic.backend import prefer_passive_openmp, OPENMP_SPIN_COUNT\n"
        "first = prefer_passive_openmp(); set_to = (os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'))\n"
        "assert set_to == ('PASSIVE', str(OPENMP_SPIN_COUNT)), set_to\n"
        "os.environ.pop('GOMP_SPINCOUNT'); os.environ['OMP_WAIT_POLICY'] = 'ACTIVE'; prefer_passive_openmp()\n"
        "kept = (os.environ['OMP_WAIT_POLICY'], os.environ.get('GOMP_SPINCOUNT'))\n"
        "os.environ.pop('OMP_WAIT_POLICY'); os.environ['GOMP_SPINCOUNT'] = '5'; prefer_passive_openmp()\n"
        "kept_spin = (os.environ.get('OMP_WAIT_POLICY'), os.environ['GOMP_SPINCOUNT'])\n"
        "os.environ.pop('GOMP_SPINCOUNT'); import neuroplastic.backend.torch\n"
        "print(first, *kept, *kept_spin, os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), prefer_passive_openmp())\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "ACTIVE", "None", "None", "5", "None", "None", "False"]


def test_torch_spike_takes_the_eager_function_under_plain_autograd_with_the_same_derivatives():
    """B.spike: _EagerSpike (no per-call signature binding) for plain autograd, _Spike under torch.func and
    forward-AD, no autograd node where no gradient flows; values, first and second derivatives equal."""
    import torch.autograd.forward_ad as fwAD

    from neuroplastic.backend.torch import _EagerSpike, _Spike
    from neuroplastic.surrogates import FastSigmoid

    B = get_backend("torch", dtype="float64")
    s = FastSigmoid(beta=5.0)
    x0 = torch.randn(6, 5, dtype=torch.float64)
    results = {}
    for name, fn in (("eager", lambda x: B.spike(x, s)), ("setup_context", lambda x: _Spike.apply(x, s))):
        x = x0.clone().requires_grad_(True)
        z = fn(x * x)
        assert type(z.grad_fn).__name__ == ("_EagerSpikeBackward" if name == "eager" else "_SpikeBackward")
        (g,) = torch.autograd.grad((z * torch.arange(30.0, dtype=torch.float64).reshape(6, 5)).sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad((g ** 2).sum(), x)
        results[name] = (z.detach(), g.detach(), gg)
    for a, b in zip(results["eager"], results["setup_context"]):
        assert torch.equal(a, b)
    # the ground truth by hand: d/dx sum_i w_i H(x_i^2) = w_i * s'(x_i^2) * 2 x_i
    weights = torch.arange(30.0, dtype=torch.float64).reshape(6, 5)
    torch.testing.assert_close(results["eager"][1], weights * s.derivative(x0 * x0) * 2 * x0, rtol=1e-14, atol=0)
    assert _EagerSpike.backward is _Spike.backward  # one backward for both forms
    assert B.spike(x0, s).grad_fn is None and torch.equal(B.spike(x0, s), (x0 > 0).double())
    # torch.func and forward-mode AD still get the surrogate (through _Spike's jvp rule)
    tangent = torch.ones_like(x0)
    _, jvp = torch.func.jvp(lambda x: B.spike(x, s), (x0,), (tangent,))
    assert torch.equal(jvp, s.derivative(x0))
    with fwAD.dual_level():
        out = B.spike(fwAD.make_dual(x0, tangent), s)
        assert torch.equal(fwAD.unpack_dual(out).tangent, s.derivative(x0))
    grads = torch.func.vmap(torch.func.grad(lambda x: B.spike(x, s).sum()))(x0)
    assert torch.equal(grads, s.derivative(x0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_backward_computes_the_fast_sigmoid_slope_with_the_same_bits(monkeypatch, dtype):
    """For FastSigmoid the C backward computes the slope in its loop instead of reading torch's slope array:
    the gradients are the same bits as the array path (a FastSigmoid subclass takes that path), for every
    reset, detached or not, with and without each cotangent."""
    from dataclasses import dataclass

    from neuroplastic.surrogates import FastSigmoid

    monkeypatch.setenv("NEUROPLASTIC_C_KERNELS", "1")
    if kernels_torch.c_library() is None:
        pytest.skip("no C compiler")

    @dataclass(frozen=True)
    class SameFormula(FastSigmoid):
        """FastSigmoid's derivative through torch's operations (not the loop's own slope)."""

    fast, ref = FastSigmoid(beta=7.3), SameFormula(beta=7.3)  # 7.3: not exact in binary, so its rounding shows
    from neuroplastic.backend import native

    assert native.slope_in_loops(fast) and not native.slope_in_loops(ref)
    currents, v0, cot_z, cot_v = inputs(dtype, T=70, batch=4, n=33, seed=7)
    u = lif_forward(currents.detach(), v0.detach(), 0.7, 0.3, "subtract")[2]
    for reset, detach in itertools.product(RESETS, (True, False)):
        for gz, gv in ((cot_z, cot_v), (cot_z, None), (None, cot_v)):
            got = lif_backward(u, gz, gv, 0.7, 0.3, reset, detach, fast)
            want = lif_backward(u, gz, gv, 0.7, 0.3, reset, detach, ref)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), (reset, detach, gz is None, gv is None)
