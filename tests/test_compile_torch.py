"""torch's trace-and-compile (``get_backend("torch", compile=True)``, :mod:`neuroplastic.backend.compile_torch`).

Ground truths: the eager function itself.  A replayed graph (``compiler="graph"``) runs the same
ATen operations in the same order, so every rule's offline gradients and online steps must equal
the eager ones bit for bit; TorchInductor fuses and reorders, so its results are compared in float64
to 1e-12 (float32 to 1e-5).  The fallbacks (gradients wanted, torch.func transforms, random-key
objects, too many signatures) must give the eager numbers, and impure functions must be refused.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from neuroplastic.backend import get_backend
from neuroplastic.backend.compile_torch import MAX_SIGNATURES, CompileError, TracedFunction
from neuroplastic.cells import LIF, LeakyReadout
from neuroplastic.data import from_arrays
from neuroplastic.layers import Dense, RecurrentDense
from neuroplastic.losses import Objective, make_loss
from neuroplastic.network import Network
from neuroplastic.rules import RULES, OnlineRule, make_rule, online_advance
from neuroplastic.tree import tree_leaves
from neuroplastic.train import Trainer

B64 = get_backend("torch", dtype="float64")
T, BATCH = 5, 4


def recurrent_net() -> Network:
    return Network(4, [RecurrentDense(6), LIF(), Dense(3), LeakyReadout()])


def feedforward_net(surrogate=None) -> Network:
    """Feed-forward LIF layers: eager torch runs the fused native LIF kernel, a traced graph the same C loops
    as the custom operators ``neuroplastic::lif_forward`` / ``lif_backward``."""
    cell = {} if surrogate is None else {"surrogate": surrogate}
    return Network(4, [Dense(6, gain=2.0), LIF(**cell), Dense(3), LIF(**cell)])


def inputs(seed: int = 0, B=B64) -> tuple:
    rng = np.random.default_rng(seed)
    return B.asarray(rng.normal(0.5, 1.0, (T, BATCH, 4))), B.asarray(rng.integers(0, 3, BATCH))


def special_case(name: str):
    """``(network, xs, loss)`` for the rules that need their own network or loss."""
    rng = np.random.default_rng(3)
    if name == "spikegrad":
        from neuroplastic.rules.spikegrad import SpikeGradNet

        return SpikeGradNet(12, [Dense(10, bias=True), Dense(4, bias=True)]), rng.uniform(0, 1, (1, BATCH, 12)), "ce_mean"
    if name == "spike_time":
        from neuroplastic.rules.spike_time import SpikeTimeNetwork

        return SpikeTimeNetwork(5, [7, 3], t_max=50.0), rng.uniform(0, 2, (1, BATCH, 5)), "ce_mean"
    if name == "superspike":
        net = Network(4, [Dense(6, gain=2.0), LIF(tau_mem=5.0), Dense(3, gain=3.0), LIF(tau_mem=8.0)])
        return net, rng.normal(0.5, 1.0, (T, BATCH, 4)), None
    return None


def leaves_equal(a, b) -> None:
    la, lb = tree_leaves(a), tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        if isinstance(x, torch.Tensor):
            np.testing.assert_array_equal(x.numpy(), y.numpy())
        else:
            assert x == y


def max_rel_err(a, b) -> float:
    errs = [float((x - y).abs().max() / (y.abs().max() + 1e-300)) for x, y in zip(tree_leaves(a), tree_leaves(b))
            if isinstance(x, torch.Tensor) and x.is_floating_point()]
    return max(errs)


# ---------------------------------------------------------------------------- every rule
# eventprop simulates events eagerly (refuses any trace, as under jax.jit); FPTT trains online only
OFFLINE = [r for r in RULES if r not in ("eventprop", "fptt")]


def offline_case(name: str):
    rule = make_rule(name)
    special = special_case(name)
    if special is not None:
        net, x, loss = special
        xs, ys = B64.asarray(x), B64.asarray(np.random.default_rng(1).integers(0, 3, BATCH))
        loss = loss or "van_rossum"
        if loss == "van_rossum":
            ys = B64.asarray((np.random.default_rng(2).uniform(size=(T, BATCH, 3)) < 0.3).astype(float))
    else:
        net, (xs, ys), loss = recurrent_net(), inputs(), "ce_mean"
    if name == "trace-feedback":  # its offline form is the deferred sum of its online steps
        loss = "ce_per_step"
    params = net.init(0, backend=B64)
    return rule, net, params, rule.init(net, params, B64.key(1)), xs, ys, Objective(make_loss(loss))


@pytest.mark.parametrize("name", OFFLINE)
def test_every_rule_offline_replays_bit_for_bit(name):
    rule, net, params, state, xs, ys, objective = offline_case(name)

    def grads(p, s, x, y):
        return rule.gradients(net, p, s, (x, y), objective)

    traced = TracedFunction(grads, compiler="graph")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Langevin samplers' keys are objects: they run eagerly (checked below)
        got = traced(params, state, xs, ys)
    want = grads(params, state, xs, ys)
    leaves_equal(got[0], want[0])
    leaves_equal(got[2]["loss"], want[2]["loss"])
    if name in ("mala", "hmc"):
        assert traced.signatures == 0 and sum(traced.eager_calls.values()) == 1
    else:
        assert traced.signatures == 1 and not traced.eager_calls


ONLINE = [r for r in RULES if "online" in make_rule(r).modes and isinstance(make_rule(r), OnlineRule)]


@pytest.mark.parametrize("name", ONLINE)
def test_every_online_rule_step_replays_bit_for_bit(name):
    rule = make_rule(name)
    special = special_case(name)
    net, loss = (special[0], "van_rossum") if special is not None else (recurrent_net(), "ce_per_step")
    xs, ys = inputs()
    if loss == "van_rossum":
        ys = B64.asarray((np.random.default_rng(2).uniform(size=(T, BATCH, 3)) < 0.3).astype(float))
    params = net.init(0, backend=B64)
    state = rule.init(net, params, B64.key(1))
    objective = Objective(make_loss(loss))

    def advance(p, s, carry, sums, x_t, y_t, t, n_steps):
        return online_advance(rule, net, objective, p, s, carry, sums, x_t, y_t, t, n_steps)

    traced = TracedFunction(advance, compiler="graph")
    carry = rule.online_init(net, params, state, BATCH)
    sums = (B64.tree_zeros_like(params), [B64.zeros((BATCH, blk.size)) for blk in net.blocks], B64.zeros(()))
    got, want = (carry, sums), (carry, sums)
    for t in range(T):
        y_t = ys[t] if loss == "van_rossum" else ys
        g1, *got_rest = traced(params, state, *got, xs[t], y_t, B64.asarray(t), T)
        g2, *want_rest = advance(params, state, *want, xs[t], y_t, B64.asarray(t), T)
        leaves_equal((g1, got_rest), (g2, want_rest))
        got, want = tuple(got_rest[:2]), tuple(want_rest[:2])
    assert not traced.eager_calls and 1 <= traced.signatures <= 2  # the first carry may be laid out differently


# ---------------------------------------------------------------------------- TorchInductor
@pytest.mark.parametrize("name,net", [("bptt", feedforward_net), ("eprop-random", recurrent_net)])
def test_inductor_offline_gradients_match_eager(name, net):
    net = net()
    rule = make_rule(name)
    params = net.init(0, backend=B64)
    state = rule.init(net, params, B64.key(1))
    xs, ys = inputs()
    objective = Objective(make_loss("ce_mean"))

    def grads(p, s, x, y):
        return rule.gradients(net, p, s, (x, y), objective)

    traced = TracedFunction(grads)
    got, want = traced(params, state, xs, ys), grads(params, state, xs, ys)
    assert max_rel_err(got[0], want[0]) < 1e-12
    assert max_rel_err(got[2]["outputs"], want[2]["outputs"]) < 1e-12
    # a second batch through the compiled graph (new values, same signature)
    xs2, ys2 = inputs(5)
    assert max_rel_err(traced(params, state, xs2, ys2)[0], grads(params, state, xs2, ys2)[0]) < 1e-12
    assert traced.signatures == 1 and not traced.eager_calls


def test_inductor_float32_bptt_matches_eager():
    B = get_backend("torch")
    net = feedforward_net()
    params = net.init(0, backend=B)
    rule = make_rule("bptt")
    xs, ys = inputs(B=B)
    objective = Objective(make_loss("ce_mean"))

    def grads(p, x, y):
        return rule.gradients(net, p, {}, (x, y), objective)[0]

    assert max_rel_err(TracedFunction(grads)(params, xs, ys), grads(params, xs, ys)) < 1e-5


def fit(compile: bool, rule: str, mode: str):
    B = get_backend("torch", dtype="float64", compile=compile)
    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 1.0, (T, 24, 4))
    y = rng.integers(0, 3, 24)
    data = from_arrays(x[:, :16], y[:16], x[:, 16:], y[16:])
    net = recurrent_net()
    loss = "ce_per_step" if mode == "online" else "ce_mean"
    trainer = Trainer(net, rule, loss, "adam", lr=1e-2, backend=B, mode=mode, progress=False)
    params, history = trainer.fit(net.init(0, backend=B), data, epochs=2, batch_size=8, seed=0)
    return trainer, params, history


@pytest.mark.parametrize("rule,mode", [("bptt", "offline"), ("ottt", "online")])
def test_trainer_compiled_trains_like_eager(rule, mode):
    trainer, params, history = fit(True, rule, mode)
    _, eager_params, eager_history = fit(False, rule, mode)
    assert max_rel_err(params, eager_params) < 1e-10
    for h, e in zip(history, eager_history):  # rounding-level differences: the same training, no exact accuracy asked
        assert abs(h["train_loss"] - e["train_loss"]) < 1e-10 * max(1.0, abs(e["train_loss"]))
    compiled = trainer._gradients if mode == "offline" else trainer._online_advance_step
    assert isinstance(compiled, TracedFunction) and compiled.signatures >= 1 and not compiled.eager_calls
    assert isinstance(trainer._eval_step, TracedFunction) and trainer._eval_step.signatures == 1


def test_backend_option_and_config():
    from neuroplastic.backend.torch import TorchBackend
    from neuroplastic.config import RunConfig
    from neuroplastic.experiment import run_backend

    B = get_backend("torch", compile=True)
    assert isinstance(B, TorchBackend) and B.compile_steps and "compile=True" in repr(B)
    assert get_backend("torch") is not B and not get_backend("torch").compile_steps
    plain = lambda x: x  # noqa: E731
    assert get_backend("torch").jit(plain) is plain and isinstance(B.jit(plain), TracedFunction)
    assert get_backend("jax", compile=True) is get_backend("jax")  # JAX always compiles
    with pytest.raises(ValueError, match="compile"):
        get_backend("torch", compile="yes")
    assert run_backend(RunConfig(backend="torch", compile=True)) is B
    with pytest.raises(ValueError, match="trainer.compile"):
        RunConfig(backend="torch", compile="yes").validate()


def test_cli_compile_flag():
    import argparse

    from neuroplastic.cli import _add_train_options, _config

    p = argparse.ArgumentParser()
    _add_train_options(p)
    args = p.parse_args(["--backend", "torch", "--compile"])
    assert _config(args).compile is True
    assert _config(p.parse_args(["--backend", "torch"])).compile is False
    # the study commands (run, compare, landscape) take it too
    from neuroplastic.cli import _add_study_options, _study_config

    q = argparse.ArgumentParser()
    _add_study_options(q)
    assert _study_config(q.parse_args(["--backend", "torch", "--compile"])).base.compile is True
    assert _study_config(q.parse_args(["--backend", "torch"])).base.compile is False


# ---------------------------------------------------------------------------- fallbacks and refusals
def affine(w, x):
    return {"y": x @ w + 1.0, "n": 3}


def test_static_leaves_and_layouts_make_signatures():
    traced = TracedFunction(lambda w, x, k: x @ w * k, compiler="graph")
    w, x = torch.randn(3, 2), torch.randn(4, 3)
    for k in (1, 2, 2, 1):
        torch.testing.assert_close(traced(w, x, k), x @ w * k, rtol=0, atol=0)
    assert traced.signatures == 2
    traced(w, x.t().contiguous().t(), 1)  # same shape, other strides: its own graph
    traced(w, torch.randn(5, 3), 1)  # another shape
    assert traced.signatures == 4
    out = TracedFunction(affine, compiler="graph")(w, x)
    assert out["n"] == 3 and torch.equal(out["y"], x @ w + 1.0)


def test_calls_a_graph_cannot_serve_run_eagerly():
    traced = TracedFunction(affine, compiler="graph")
    w, x = torch.randn(3, 2), torch.randn(4, 3)
    # gradients wanted: the graph's outputs would not carry them
    wg = w.clone().requires_grad_(True)
    with pytest.warns(UserWarning, match="requires gradients"):
        y = traced(wg, x)["y"]
    y.sum().backward()
    torch.testing.assert_close(wg.grad, x.sum(0)[:, None].expand(3, 2))
    # inside torch.func transforms
    with pytest.warns(UserWarning, match="torch.func transform"):
        g = torch.func.grad(lambda w: traced(w, x)["y"].sum())(w)
    torch.testing.assert_close(g, x.sum(0)[:, None].expand(3, 2))
    # a random key object
    key = np.random.SeedSequence(0)
    with pytest.warns(UserWarning, match="non-tensor"):
        TracedFunction(lambda w, k: w * 2, compiler="graph")(w, key)
    assert traced.signatures == 0 and sum(traced.eager_calls.values()) >= 2


def test_signature_limit_then_eager():
    traced = TracedFunction(lambda x: x + 1, compiler="graph")
    for n in range(1, MAX_SIGNATURES + 1):
        traced(torch.zeros(n))
    with pytest.warns(UserWarning, match="signatures compiled already"):
        out = traced(torch.zeros(MAX_SIGNATURES + 1))
    assert torch.equal(out, torch.ones(MAX_SIGNATURES + 1)) and traced.signatures == MAX_SIGNATURES


def test_impure_functions_are_refused_or_run_eagerly():
    def reads_a_value(x):
        return x * float(x.sum())

    with pytest.raises(CompileError, match="reads_a_value.*pure"):
        TracedFunction(reads_a_value, compiler="graph")(torch.ones(3))
    lenient = TracedFunction(reads_a_value, compiler="graph", on_failure="eager")
    with pytest.warns(UserWarning, match="uncompiled"):
        assert torch.equal(lenient(torch.ones(3)), torch.full((3,), 3.0))
    assert torch.equal(lenient(torch.ones(2)), torch.full((2,), 2.0))  # stays eager, no second trace

    def writes_its_input(x):
        x.add_(1.0)
        return x * 2

    with pytest.raises(CompileError, match="in place"):
        TracedFunction(writes_its_input, compiler="graph")(torch.ones(3))

    with pytest.raises(CompileError, match="returns a object"):  # a graph can only give back tensors and constants
        TracedFunction(lambda x: (x * 2, object()), compiler="graph")(torch.ones(3))

    def bad_input(x):
        raise ValueError("x: must be positive, got -1")

    with pytest.raises(ValueError, match="must be positive"):  # the library's own errors pass unchanged
        TracedFunction(bad_input, compiler="graph", on_failure="eager")(torch.ones(3))
    with pytest.raises(ValueError, match="compiler"):
        TracedFunction(bad_input, compiler="tvm")
    with pytest.raises(ValueError, match="on_failure"):
        TracedFunction(bad_input, on_failure="ignore")


@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "triangle"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fused_lif_layers_run_as_custom_operators_in_graphs(surrogate, dtype):
    """The fused LIF kernel is a ctypes call on raw data, which a trace cannot record: on traced tensors it
    runs as the custom operators ``neuroplastic::lif_forward`` / ``lif_backward`` (one graph node each, the
    fast sigmoid's slope in the C loop, another surrogate's slope as graph operations).  The replayed graph
    gives the eager fused kernel's gradients bit for bit, and its size does not grow with T."""
    from neuroplastic.surrogates import make_surrogate

    B = get_backend("torch", dtype=dtype)
    rule, objective = make_rule("bptt"), Objective(make_loss("ce_sum"))
    sizes = []
    for steps in (T, 3 * T):
        net = feedforward_net(make_surrogate(surrogate))
        params = net.init(0, backend=B)
        rng = np.random.default_rng(steps)
        xs, ys = B.asarray(rng.normal(0.5, 1.0, (steps, BATCH, 4))), B.asarray(rng.integers(0, 3, BATCH))

        def grads(p, x, y):
            return rule.gradients(net, p, {}, (x, y), objective)[0]

        traced = TracedFunction(grads, compiler="graph")
        leaves_equal(traced(params, xs, ys), grads(params, xs, ys))
        (graph, _, _), = traced._graphs.values()
        ops = [str(n.target) for n in graph.graph.nodes if "neuroplastic" in str(n.target)]
        assert sorted(ops) == ["neuroplastic.lif_backward.default"] * 2 + ["neuroplastic.lif_forward.default"] * 2
        sizes.append(len(graph.graph.nodes))
    assert sizes[0] == sizes[1]


def test_native_kernels_see_traced_tensors():
    from neuroplastic.backend import kernels_torch
    from torch.fx.experimental.proxy_tensor import make_fx

    seen = []

    def f(c, v):
        seen.append((kernels_torch.traced(c), kernels_torch.in_transform(c), kernels_torch.in_torch_func(c),
                     kernels_torch.fusable(c, v)))
        return c.sum() + v.sum()

    make_fx(f, tracing_mode="fake")(torch.ones(3, 2, 4), torch.zeros(2, 4))
    # traced: no event kernels or other ctypes calls (in_transform), but the LIF layer runs as custom operators
    assert seen == [(True, True, False, True)]
    plain = torch.ones(3, 2, 4)
    assert not kernels_torch.traced(plain) and kernels_torch.fusable(plain, torch.zeros(2, 4))
    with pytest.warns(UserWarning, match="torch.func"):
        torch.func.grad(lambda c: TracedFunction(lambda c: (c * 2).sum(), compiler="graph")(c))(plain)
    assert torch.func.grad(lambda c: (c * float(kernels_torch.in_torch_func(c))).sum())(plain).sum() == plain.numel()


def test_broadcast_batched_products_become_one_product():
    """``vmap`` of ``z @ dW`` over tangents of ``dW`` alone records ``bmm(expand(z), dW)``; compiled graphs
    run it as one product (same sums, to rounding), and leave other batched products alone."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from neuroplastic.backend.compile_torch import _broadcast_bmm_as_mm

    rng = np.random.default_rng(0)
    z, dW, X = (torch.as_tensor(rng.normal(size=s)) for s in ((5, 4), (7, 4, 3), (7, 5, 4)))

    def f(z, dW, X):
        return torch.func.vmap(lambda d: z @ d)(dW), torch.bmm(X, dW)

    gm = make_fx(f)(z, dW, X)
    assert sum(str(n.target) == "aten.bmm.default" for n in gm.graph.nodes) == 2
    assert _broadcast_bmm_as_mm(gm) == 1
    assert sum(str(n.target) == "aten.bmm.default" for n in gm.graph.nodes) == 1  # X differs per batch: kept
    got, want = gm(z, dW, X), f(z, dW, X)
    assert got[0].shape == want[0].shape and got[0].is_contiguous()
    torch.testing.assert_close(got[0], want[0], rtol=1e-13, atol=0)
    assert torch.equal(got[1], want[1])


def test_inductor_rtrl_online_step_matches_eager():
    """RTRL's online step (vmap of jvp over parameter tangents: the rewritten products) compiled, in float64."""
    rule, net = make_rule("rtrl"), recurrent_net()
    params = net.init(0, backend=B64)
    xs, ys = inputs()
    objective = Objective(make_loss("ce_per_step"))

    def advance(p, carry, sums, x_t, t):
        return online_advance(rule, net, objective, p, {}, carry, sums, x_t, ys, t, T)

    traced = TracedFunction(advance)
    state = ((rule.online_init(net, params, {}, BATCH),
              (B64.tree_zeros_like(params), [B64.zeros((BATCH, blk.size)) for blk in net.blocks], B64.zeros(()))))
    got, want = state, state
    for t in range(3):
        g1, *got = traced(params, *got, xs[t], B64.asarray(t))
        g2, *want = advance(params, *want, xs[t], B64.asarray(t))
        assert max_rel_err((g1, got), (g2, want)) < 1e-12
        got, want = got[:2], want[:2]
    assert traced.signatures >= 1 and not traced.eager_calls


@pytest.mark.parametrize("density", [0.03, 0.5])
def test_event_products_run_as_custom_operators_in_graphs(density):
    """Spike products wide enough for the event kernel run in graphs as ``neuroplastic::spike_matmul`` (and
    ``spike_matmul_wgrad``), which check the density when the graph runs (a trace cannot read it): sparse
    input takes the event kernel, dense input the dense product, as eagerly; the replayed graph's
    gradients equal the eager ones bit for bit either way."""
    from neuroplastic.backend import native

    if native.event_library() is None:
        pytest.skip("no C++ compiler for the event kernels")
    B = get_backend("torch", dtype="float64")
    net = Network(256, [Dense(256), LIF(), Dense(3), LeakyReadout()])
    params = net.init(0, backend=B)
    rng = np.random.default_rng(1)
    xs = B.asarray((rng.uniform(size=(20, 16, 256)) < density).astype(float))
    ys = B.asarray(rng.integers(0, 3, 16))
    rule, objective = make_rule("bptt"), Objective(make_loss("ce_mean"))

    def grads(p, x, y):
        return rule.gradients(net, p, {}, (x, y), objective)[0]

    traced = TracedFunction(grads, compiler="graph")
    leaves_equal(traced(params, xs, ys), grads(params, xs, ys))
    (graph, _, _), = traced._graphs.values()
    ops = sorted(str(n.target) for n in graph.graph.nodes if "spike_matmul" in str(n.target))
    assert ops == ["neuroplastic.spike_matmul.default", "neuroplastic.spike_matmul_wgrad.default"]
    # the same graph serves the other density too (the choice is made when it runs)
    xs2 = B.asarray((rng.uniform(size=(20, 16, 256)) < 0.5 - density + 0.03).astype(float))
    leaves_equal(traced(params, xs2, ys), grads(params, xs2, ys))
    assert traced.signatures == 1
