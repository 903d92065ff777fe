"""The fast paths of the online rules give the reference paths' numbers (float64, both backends).

* cell Jacobians by one reverse-mode pass over stacked input copies against one forward-mode
  ``jvp`` per input field (:func:`neuroplastic.cells.jacobians.step_with_jacobians`);
* ``synapse_sum`` (product and sum) against ``einsum("bpn,bn->pn")``;
* whole online steps of the trace rules with the reverse-mode Jacobians against the forward-mode ones.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from neuroplastic.cells import ALIF, LIF, Identity, LeakyReadout, SignedIF, TanhRNN
from neuroplastic.cells.jacobians import jacobian_method, step_with_jacobians
from neuroplastic.tree import tree_leaves, tree_paths

CELLS = {
    "lif": LIF(tau_mem=5.0),
    "lif-current-attached-reset": LIF(tau_mem=5.0, tau_syn=3.0, detach_reset=False),
    "lif-zero-reset": LIF(tau_mem=5.0, reset="zero", detach_reset=False),
    "lif-snntorch": LIF.snntorch(0.9),
    "lif-trained-decay": LIF(tau_mem=5.0, train_decay=True),
    "alif": ALIF(),
    "readout": LeakyReadout(),
    "identity": Identity(),
    "tanh": TanhRNN(leak=0.3),
    "signed-if": SignedIF(),
}


def _inputs(B, cell, seed=0, batch=5, n=7):
    rng = np.random.default_rng(seed)
    state = {k: B.asarray(rng.normal(0.5, 1.0, (batch, n))) for k in cell.state_names}
    if "z" in state:
        state["z"] = B.asarray((rng.random((batch, n)) < 0.5).astype(np.float64))
    params = {k: B.asarray(v * rng.uniform(0.8, 1.0, n)) for k, v in cell.init_params(rng, n).items()}
    return params, state, B.asarray(rng.normal(0.3, 1.0, (batch, n)))


def _by_path(tree):
    return dict(zip(tree_paths(tree), tree_leaves(tree)))


@pytest.mark.parametrize("name", sorted(CELLS))
def test_reverse_jacobians_equal_forward(B64, name):
    cell = CELLS[name]
    params, state, current = _inputs(B64, cell)
    fwd = _by_path(step_with_jacobians(cell, params, state, current, method="forward"))
    rev = _by_path(step_with_jacobians(cell, params, state, current, method="reverse"))
    assert sorted(fwd) == sorted(rev)  # the same state fields and Jacobian entries (JAX sorts dict keys)
    for path, a in fwd.items():
        np.testing.assert_allclose(B64.to_numpy(rev[path]), B64.to_numpy(a), rtol=1e-13, atol=1e-14, err_msg=path)
    # and the step's values are the cell's own
    new_state, out = cell.step(params, state, current)
    np.testing.assert_array_equal(B64.to_numpy(step_with_jacobians(cell, params, state, current)[1]), B64.to_numpy(out))


def test_reverse_jacobians_keep_the_callers_graph(B64):
    """The values come from the cell's own step, so a gradient through them is the plain step's."""
    cell = CELLS["alif"]
    params, state, current = _inputs(B64, cell)

    def through(method):
        def f(i):
            new, out, _ = step_with_jacobians(cell, params, state, i, method=method)
            return B64.sum(out * 1.5) + B64.sum(new["v"] ** 2)

        return B64.to_numpy(B64.value_and_grad(f)(current)[1])

    np.testing.assert_allclose(through("reverse"), through("forward"), rtol=1e-13, atol=1e-14)


def test_auto_method(B64):
    cell = CELLS["lif"]
    _, state, current = _inputs(B64, cell)
    expected = "forward" if B64.compiles else "reverse"
    assert jacobian_method(B64, state, current) == expected
    assert jacobian_method(B64, state, current, "forward") == "forward"
    with pytest.raises(ValueError, match="method: unknown Jacobian method 'sideways'"):
        step_with_jacobians(cell, {}, state, current, method="sideways")


def test_auto_method_under_a_transform_is_forward(B64):
    """Inside an outer transform (vmap) the inputs are traced: ``auto`` keeps the forward-mode reference."""
    cell = CELLS["lif"]
    _, state, current = _inputs(B64, cell)
    seen = []

    def f(i):
        seen.append(jacobian_method(B64, state, i))
        return step_with_jacobians(cell, {}, state, i)[2].z_I

    stacked = B64.stack([current, current * 0.5])
    out = B64.vmap(f)(stacked)
    assert seen and set(seen) == {"forward"}
    np.testing.assert_allclose(B64.to_numpy(out[1]), B64.to_numpy(step_with_jacobians(cell, {}, state, current * 0.5)[2].z_I),
                               rtol=1e-13)


def test_synapse_sum_equals_einsum(B64):
    from neuroplastic.rules.traces import synapse_sum

    rng = np.random.default_rng(1)
    trace, signal = B64.asarray(rng.normal(size=(6, 9, 4))), B64.asarray(rng.normal(size=(6, 4)))
    np.testing.assert_allclose(B64.to_numpy(synapse_sum(trace, signal)), B64.to_numpy(B64.einsum("bpn,bn->pn", trace, signal)),
                               rtol=1e-13, atol=1e-14)


# ------------------------------------------------------------------ whole online steps
def _online_case(B, rule_name, rng_seed=0):
    from neuroplastic.layers import Dense, RecurrentDense
    from neuroplastic.network import Network

    layers = [RecurrentDense(6), ALIF(), Dense(3), LeakyReadout()]
    if rule_name == "otpe":
        layers = [RecurrentDense(6), LIF(tau_mem=4.0), Dense(5), LIF(tau_mem=3.0), Dense(3), LeakyReadout()]
    net = Network(4, layers)
    params = net.init(rng_seed, backend=B)
    rng = np.random.default_rng(rng_seed)
    xs = B.asarray((rng.random((7, 3, 4)) < 0.5).astype(np.float64) * 2.0)
    ys = B.asarray(rng.integers(0, 3, 3))
    return net, params, xs, ys


@pytest.mark.parametrize("rule_name", ["eprop-symmetric", "ostl", "otpe", "otpe-approximate"])
def test_online_rules_equal_with_either_jacobians(B64, rule_name, monkeypatch):
    """Deferred (summed per-step) gradients of the trace rules: reverse-mode cell Jacobians (torch's
    default) against forward-mode ones, and OTPE's direct terms (readout only) against the recursion."""
    import neuroplastic.network as network_module
    from neuroplastic.losses import Objective, make_loss
    from neuroplastic.rules import make_rule
    from neuroplastic.rules.base import run_online

    rule = make_rule("otpe") if rule_name.startswith("otpe") else make_rule(rule_name)
    if rule_name == "otpe-approximate":
        from neuroplastic.rules.otpe import OTPE

        rule = OTPE(approximate=True)
    net, params, xs, ys = _online_case(B64, rule_name.split("-")[0])
    objective = Objective(make_loss("ce_per_step"))
    state = rule.init(net, params, B64.key(0))

    def grads(method):
        monkeypatch.setattr(network_module, "step_with_jacobians", functools.partial(step_with_jacobians, method=method))
        _, g, _, aux, _ = run_online(rule, net, params, state, (xs, ys), objective, "deferred", None, None)
        return [B64.to_numpy(x) for x in tree_leaves(g)], float(B64.to_numpy(aux["loss"]))

    (g_rev, loss_rev), (g_fwd, loss_fwd) = grads("reverse"), grads("forward")
    assert loss_rev == loss_fwd
    assert any(np.abs(g).max() > 0 for g in g_fwd)
    for a, b in zip(g_rev, g_fwd):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_trace_step_product_order_keeps_the_numbers(B64):
    """``trace_step`` forms ``pre (x) dz/dI`` with the presynaptic operand first (fast on torch): the same numbers."""
    from neuroplastic.rules.traces import trace_step

    cell = CELLS["alif"]
    params, state, current = _inputs(B64, cell)
    J = step_with_jacobians(cell, params, state, current)[2]
    rng = np.random.default_rng(3)
    pre = B64.asarray(rng.normal(size=(5, 4)))
    eps = {a: B64.asarray(rng.normal(size=(5, 4, 7))) for a in cell.state_names}
    new, e = trace_step(J, eps, pre)
    np_ = B64.to_numpy
    p3 = np_(pre)[:, :, None]
    e_ref = np_(J.z_I)[:, None, :] * p3
    for b in cell.state_names:
        e_ref = e_ref + np_(J.z_h[b])[:, None, :] * np_(eps[b])
    np.testing.assert_array_equal(np_(e), e_ref)
    for a in cell.state_names:
        ref = np_(J.h_I[a])[:, None, :] * p3
        for b in cell.state_names:
            ref = ref + np_(J.h_h[a][b])[:, None, :] * np_(eps[b])
        np.testing.assert_array_equal(np_(new[a]), ref)


def test_rtrl_basis_is_built_once_per_layout(B64):
    from neuroplastic.rules.rtrl import RTRL, parameter_basis

    rule = RTRL()
    nets = [_online_case(B64, "eprop")[:2], _online_case(B64, "otpe")[:2]]
    for net, params in nets + nets:
        basis = rule._basis(params)
        ref = parameter_basis(params)[0]
        assert tree_paths(basis) == tree_paths(ref)
        for a, b in zip(tree_leaves(basis), tree_leaves(ref)):
            np.testing.assert_array_equal(B64.to_numpy(a), B64.to_numpy(b))
    net, params = nets[0]
    if not B64.compiles:
        assert rule._basis(params) is rule._basis(params)


def test_rtrl_contraction_equals_einsum(B64):
    from neuroplastic.rules.rtrl import RTRL

    net, params, xs, _ = _online_case(B64, "eprop")
    rng = np.random.default_rng(4)
    M = {"layers": [{"out": B64.asarray(rng.normal(size=(11, 3, blk.size)))} for blk in net.blocks]}
    dz = [B64.asarray(rng.normal(size=(3, blk.size))) for blk in net.blocks]
    ref = sum(B64.to_numpy(B64.einsum("pbn,bn->p", M["layers"][l]["out"], dz[l])) for l in range(len(dz)))
    np.testing.assert_allclose(B64.to_numpy(RTRL._contract(net, M, dz)), ref, rtol=1e-13)
    only_last = B64.to_numpy(RTRL._contract(net, M, [None] * (len(dz) - 1) + [dz[-1]]))
    np.testing.assert_allclose(only_last, B64.to_numpy(B64.einsum("pbn,bn->p", M["layers"][-1]["out"], dz[-1])), rtol=1e-13)


def test_keep_freed_memory_in_a_fresh_process():
    """The allocator setting is process-wide, so it is tried in a child process (glibc: applied)."""
    import subprocess
    import sys

    code = "from neuroplastic.backend.native import keep_freed_memory as k; print(k(), k(4 << 20, 64 << 20), k(arenas=1))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    applied = out.stdout.split()
    if sys.platform.startswith("linux") and __import__("platform").libc_ver()[0] == "glibc":
        assert applied == ["True", "True", "True"]
    else:
        assert set(applied) <= {"True", "False"}


_THREAD_BLOCK = """
import ctypes, sys, threading
from neuroplastic.backend.native import keep_freed_memory
keep_freed_memory(mmap_threshold=1 << 30, trim_threshold=(1 << 31) - 1, arenas=int(sys.argv[1]) or None)
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
where = []
def work():
    p = libc.malloc(100 << 20)
    for line in open("/proc/self/maps"):
        fields = line.split()
        lo, hi = (int(v, 16) for v in fields[0].split("-"))
        if lo <= p < hi:
            where.append(fields[5] if len(fields) > 5 else "anonymous")
t = threading.Thread(target=work)
t.start()
t.join()
print(where[0])
"""


def test_one_arena_serves_a_threads_large_block_from_the_main_heap():
    """Why :data:`LARGE_BUFFERS` sets one arena: a 100 MiB block that a worker thread (XLA's) allocates comes from a
    fresh ``mmap`` in the thread's own arena whatever the mmap threshold, and from the main heap (kept and reused
    between calls) with one arena.  In child processes (a process-wide setting, taken before threads start)."""
    import platform
    import subprocess
    import sys

    if not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"):
        pytest.skip("glibc's arenas")
    where = {}
    for arenas in (0, 1):
        out = subprocess.run([sys.executable, "-c", _THREAD_BLOCK, str(arenas)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        where[arenas] = out.stdout.strip()
    assert where == {0: "anonymous", 1: "[heap]"}


@pytest.mark.parametrize("kwargs", [{"mmap_threshold": 0}, {"trim_threshold": -5}, {"mmap_threshold": 1.5}, {"trim_threshold": True},
                                    {"arenas": 0}, {"arenas": True}, {"arenas": 2.0}])
def test_keep_freed_memory_refuses_bad_sizes(kwargs):
    from neuroplastic.backend.native import keep_freed_memory

    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=f"{name} must be a positive number"):
        keep_freed_memory(**kwargs)
