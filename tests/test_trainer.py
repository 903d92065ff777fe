"""Trainer: learning happens, history and JSONL, seeded shuffling, optimizers, MNIST-1D data."""

import json

import numpy as np
import pytest

from neuroplastic.backend import get_backend
from neuroplastic.cells import LIF, LeakyReadout
from neuroplastic.data import batches, from_arrays, load_dataset
from neuroplastic.layers import Dense, RecurrentDense
from neuroplastic.network import Network
from neuroplastic.train import Trainer, make_optimizer


def separable(seed=0, n=256, T=8):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0.0, 0.3, size=(T, n, 4))
    x[:, :, 0] += 1.5 * (y == 0)
    x[:, :, 1] += 1.5 * (y == 1)
    return from_arrays(x[:, : n * 3 // 4], y[: n * 3 // 4], x[:, n * 3 // 4 :], y[n * 3 // 4 :])


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "naive"])
def test_fit_learns_and_logs(backend_name, optimizer, tmp_path):
    data = separable()
    net = Network(4, [RecurrentDense(16), LIF(), Dense(2), LeakyReadout()])
    lr = {"adam": 1e-2, "sgd": 0.05, "naive": 0.05}[optimizer]
    tr = Trainer(net, "bptt", "ce_mean", optimizer, lr=lr, backend=backend_name, progress=False)
    params = net.init(0, backend=backend_name)
    params, hist = tr.fit(params, data, epochs=4, batch_size=32, log_path=tmp_path / "m.jsonl")
    assert len(hist) == 4
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert hist[-1]["test_acc"] >= 0.9
    lines = [json.loads(l) for l in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2, 3, 4]
    assert lines[-1]["rate_hz"][1] is None and lines[-1]["rate_hz"][0] >= 0


def test_same_seed_same_run_and_shuffling_is_seeded(backend_name):
    data = separable(1)
    net = Network(4, [Dense(8), LIF(), Dense(2), LeakyReadout()])
    runs = []
    for _ in range(2):
        tr = Trainer(net, "bptt", "ce_sum", "adam", lr=1e-2, backend=backend_name, progress=False)
        p, hist = tr.fit(net.init(3, backend=backend_name), data, epochs=2, batch_size=16, seed=5)
        runs.append((get_backend(backend_name).to_numpy(p["layers"][0]["w"]), hist[-1]["train_loss"]))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    order = [yb for _, yb in batches(data.x_train, data.y_train, 16, np.random.default_rng([5, 0]))]
    again = [yb for _, yb in batches(data.x_train, data.y_train, 16, np.random.default_rng([5, 0]))]
    assert all((a == b).all() for a, b in zip(order, again))


def test_naive_optimizer_adds_the_update_as_given(backend_name):
    B = get_backend(backend_name)
    opt = make_optimizer("naive", 0.5, B)
    p = {"w": B.asarray(np.array([1.0, 2.0]))}
    g = {"w": B.asarray(np.array([2.0, -4.0]))}
    new, _ = opt.update(g, opt.init(p), p)
    np.testing.assert_allclose(B.to_numpy(new["w"]), [0.0, 4.0])


def test_mnist1d_standard_split():
    d = load_dataset("mnist1d")
    assert d.x_train.shape == (40, 4000, 1) and d.x_test.shape == (40, 1000, 1)
    assert np.bincount(d.y_train).min() > 350 and np.bincount(d.y_test).min() > 70
    static = load_dataset("mnist1d", as_sequence=False)
    assert static.x_train.shape == (1, 4000, 40)
    np.testing.assert_array_equal(static.x_train[0, :, :], d.x_train[:, :, 0].T)


def test_cosine_schedule_matches_on_both_backends():
    from neuroplastic.train.optimizers import cosine_lr

    at = cosine_lr(1.0, 10)
    assert at(0) == 1.0 and abs(at(5) - 0.5) < 1e-12 and at(10) == 0.0 and at(20) == 0.0
    finals = {}
    for name in ("torch", "jax"):
        B = get_backend(name, dtype="float64")
        opt = make_optimizer("sgd", 0.1, B, schedule="cosine", total_steps=4)
        p = {"w": B.asarray(np.zeros(1))}
        s = opt.init(p)
        for _ in range(4):
            p, s = opt.update({"w": B.asarray(np.ones(1))}, s, p)
        finals[name] = float(B.to_numpy(p["w"])[0])
    expected = -0.1 * sum(at4 for at4 in (cosine_lr(1.0, 4)(k) for k in range(4)))
    assert finals["torch"] == pytest.approx(expected, rel=1e-9)
    assert finals["jax"] == pytest.approx(expected, rel=1e-9)


#: the optimizers with a fused torch kernel (neuroplastic.backend.optim_torch.FUSED)
FUSED = ("adam", "adamw", "sgd", "momentum")


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "momentum", "rmsprop"])
def test_torch_multi_tensor_optimizer_steps_equal_per_tensor_steps(name):
    """The torch optimizers run torch's multi-tensor (foreach) kernels on the CPU too; they must
    give the per-tensor loop's numbers bit for bit."""
    import torch

    B = get_backend("torch", dtype="float32")
    shapes = [(7, 5), (5,), (3, 7)]
    finals = {}
    for foreach in (True, False):
        opt = make_optimizer(name, 0.01, B, foreach=foreach)
        assert opt.init({"w": B.asarray(np.zeros(2, np.float32))}).defaults["foreach"] is foreach
        rng = np.random.default_rng(0)  # same start for both
        p = {f"w{i}": B.asarray(rng.standard_normal(s).astype(np.float32)) for i, s in enumerate(shapes)}
        s = opt.init(p)
        for k in range(5):
            g = {key: B.asarray(np.random.default_rng(k).standard_normal(v.shape).astype(np.float32)) for key, v in p.items()}
            p, s = opt.update(g, s, p)
        finals[foreach] = {k: v.detach().clone() for k, v in p.items()}
    for k in finals[True]:
        assert torch.equal(finals[True][k], finals[False][k]), k
    defaults = make_optimizer(name, 0.01, B).init({"w": B.asarray(np.zeros(2, np.float32))}).defaults
    assert (defaults.get("fused"), defaults["foreach"]) == ((True, None) if name in FUSED else (None, True))


@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_fused_optimizer_steps_equal_multi_tensor_steps_to_rounding(name, dtype):
    """By default Adam, AdamW and SGD take torch's fused kernel (one per step for all tensors); it
    computes the multi-tensor path's update in another order: equal to float rounding after 20 steps,
    with a cosine schedule, and the preview of a step equals the step."""
    import torch

    B = get_backend("torch", dtype=dtype)
    np_dtype = np.float32 if dtype == "float32" else np.float64
    shapes = [(7, 5), (5,), (3, 7)]
    finals = {}
    for options in ({}, {"foreach": True}):
        opt = make_optimizer(name, 0.01, B, schedule="cosine", total_steps=20, **options)
        rng = np.random.default_rng(0)
        p = {f"w{i}": B.asarray(rng.standard_normal(s).astype(np_dtype)) for i, s in enumerate(shapes)}
        s = opt.init(p)
        assert s.defaults["fused"] is (True if not options else None)
        for k in range(20):
            g = {key: B.asarray(np.random.default_rng(k).standard_normal(v.shape).astype(np_dtype)) for key, v in p.items()}
            if k == 19:
                before = {key: v.detach().clone() for key, v in p.items()}
                delta = opt.preview(g, s, p)
            p, s = opt.update(g, s, p)
        for key in p:
            assert torch.equal(p[key] - before[key], delta[key]), key
        finals[bool(options)] = {k: v.detach().clone() for k, v in p.items()}
    tol = 1e-6 if dtype == "float32" else 1e-14
    for k in finals[True]:
        assert finals[False][k].dtype == getattr(torch, dtype)
        assert torch.allclose(finals[False][k], finals[True][k], rtol=tol, atol=tol), k
    # an independent ground truth: the update rules written out in numpy, float64
    if dtype == "float64":
        from neuroplastic.train.optimizers import cosine_lr

        rng = np.random.default_rng(0)
        ref = {f"w{i}": rng.standard_normal(s) for i, s in enumerate(shapes)}
        state = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in ref.items()}
        for k in range(20):
            lr = cosine_lr(0.01, 20)(k)
            for key in ref:
                g = np.random.default_rng(k).standard_normal(ref[key].shape)
                m, v = state[key]
                if name in ("adam", "adamw"):
                    if name == "adamw":
                        ref[key] = ref[key] * (1 - lr * 0.01)  # torch's AdamW default weight decay
                    m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
                    m_hat, v_hat = m / (1 - 0.9 ** (k + 1)), v / (1 - 0.999 ** (k + 1))
                    ref[key] = ref[key] - lr * m_hat / (np.sqrt(v_hat) + 1e-8)
                elif name == "momentum":
                    m = g if k == 0 else 0.9 * m + g
                    ref[key] = ref[key] - lr * m
                else:
                    ref[key] = ref[key] - lr * g
                state[key] = (m, v)
        for key in ref:
            np.testing.assert_allclose(finals[False][key].numpy(), ref[key], rtol=1e-12, atol=1e-14)


def test_metrics_by_hand(backend_name):
    from neuroplastic.losses import make_loss
    from neuroplastic.metrics import accuracy, rate_hz, spikes_per_step

    B = get_backend(backend_name)
    out = np.zeros((3, 4, 2), dtype=np.float32)
    out[:, 0, 1] = 1.0  # example 0 -> class 1, others -> class 0 (argmax of ties is the first)
    labels = np.array([1, 0, 1, 0])
    assert accuracy(make_loss("ce_sum"), B.asarray(out), B.asarray(labels)) == 0.75
    z = np.zeros((10, 2, 5), dtype=np.float32)
    z[::2, :, 0] = 1.0  # one neuron in five fires every other step
    assert spikes_per_step(B.asarray(z)) == pytest.approx(0.1)
    assert rate_hz(B.asarray(z), dt_ms=0.5) == pytest.approx(200.0)


def test_epoch_train_time_counts_every_batch():
    """An epoch's ``train_time_s`` runs from its first batch on (it once started after the first batch
    had been computed, leaving out one batch a epoch, and with it the first epoch's compilation)."""
    import time

    data = separable(n=64)  # 48 training examples: 3 batches of 16
    net = Network(4, [Dense(4), LIF(), Dense(2), LeakyReadout()])
    tr = Trainer(net, "bptt", "ce_sum", "adam", lr=1e-2, backend="torch", progress=False)
    step = tr._train_step

    def slow_step(*args):
        time.sleep(0.05)
        return step(*args)

    tr._train_step = slow_step
    _, hist = tr.fit(net.init(0, backend="torch"), data, epochs=2, batch_size=16)
    for h in hist:
        assert h["train_time_s"] >= 3 * 0.05 and h["epoch_time_s"] >= h["train_time_s"]


def test_to_numpy_is_a_snapshot_that_in_place_updates_leave_alone(backend_name):
    """torch's optimizers update parameters in place and a CPU tensor's ``.numpy()`` shares its memory: the
    main job's per-epoch parameter trajectory on torch was the final parameters every time, and its loss
    landscape refused the trajectory.  Every epoch's snapshot must keep that epoch's values."""
    B = get_backend(backend_name)
    data = separable(2)
    net = Network(4, [Dense(4), LIF(), Dense(2), LeakyReadout()])
    tr = Trainer(net, "bptt", "ce_sum", "adam", lr=1e-2, backend=backend_name, progress=False)
    snapshots = []
    tr.fit(net.init(0, backend=backend_name), data, epochs=3, batch_size=32,
           callbacks=[lambda trainer, record, params: snapshots.append(B.tree_to_numpy(params))])
    first = [s["layers"][0]["w"] for s in snapshots]
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])


@pytest.mark.parametrize("name,options", [("adam", {}), ("adamw", {"weight_decay": 0.05}), ("adam", {"amsgrad": True, "weight_decay": 0.01})])
def test_torch_fused_adam_fast_step_equals_optimizer_step_bit_for_bit(name, options):
    """After the first step TorchOptimizer calls torch's fused Adam kernel itself (no Optimizer.step bookkeeping);
    against an optimizer whose step hook keeps it on Optimizer.step: parameters and every state tensor equal bit
    for bit over 12 steps with a cosine schedule, a snapshot restored in the middle included."""
    import torch

    B = get_backend("torch", dtype="float32")
    shapes = [(7, 5), (5,), (3, 7)]
    runs = {}
    for hooked in (False, True):
        opt = make_optimizer(name, 0.01, B, schedule="cosine", total_steps=12, **options)
        rng = np.random.default_rng(0)
        p = {f"w{i}": B.asarray(rng.standard_normal(s).astype(np.float32)) for i, s in enumerate(shapes)}
        s = opt.init(p)
        if hooked:
            s.register_step_pre_hook(lambda *_: None)  # any hook: Optimizer.step runs
        for k in range(12):
            g = {key: B.asarray(np.random.default_rng(k).standard_normal(v.shape).astype(np.float32)) for key, v in p.items()}
            if k == 6:
                snap = opt.snapshot(s)
            p, s = opt.update(g, s, p)
            if k == 8:  # back to the snapshot of step 6 (its state tensors are new objects)
                s = opt.restore(s, snap)
        assert (getattr(s, "neuroplastic_fused_lists", None) is not None) is (not hooked)
        runs[hooked] = (p, s)
    (p_fast, s_fast), (p_ref, s_ref) = runs[False], runs[True]
    for key in p_fast:
        assert torch.equal(p_fast[key], p_ref[key]), key
    for a, b in zip(s_fast.param_groups[0]["params"], s_ref.param_groups[0]["params"]):
        for field in s_ref.state[b]:
            assert torch.equal(s_fast.state[a][field], s_ref.state[b][field]), field
    assert s_fast.param_groups[0]["lr"] == s_ref.param_groups[0]["lr"]
    # tensors the optimizer does not own are left to Optimizer.step (which skips them), not stepped in their place
    foreign = {k: v.detach().clone() for k, v in p_fast.items()}
    own = {k: v.detach().clone() for k, v in p_fast.items()}
    opt = make_optimizer(name, 0.01, B, **options)
    opt.update({k: torch.ones_like(v) for k, v in foreign.items()}, s_fast, foreign)
    for key in own:
        assert torch.equal(p_fast[key], own[key]) and torch.equal(foreign[key], own[key]), key
