"""The torch kernels' pool of large CPU blocks (backend/buffers_torch.py): exact-size reuse, never a block
that something still refers to, the cap on kept memory, and kernels that give the same bits from reused
(dirty) blocks as from fresh ones."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from neuroplastic.backend import buffers_torch
from neuroplastic.backend.buffers_torch import LargeBufferPool

KiB = 1 << 10


class NaNPool(LargeBufferPool):
    """Every block it serves is filled with NaN first: a kernel that leaves an element unwritten shows."""

    def empty(self, shape, dtype):
        t = super().empty(shape, dtype)
        if t.is_floating_point():
            t.fill_(float("nan"))
        return t


def test_a_freed_block_serves_the_next_request_of_its_size():
    p = LargeBufferPool(min_bytes=4 * KiB)
    t = p.empty((32, 64), torch.float32)  # 8 KiB
    assert t.shape == (32, 64) and t.dtype == torch.float32 and t.is_contiguous() and t.device.type == "cpu"
    ptr = t.data_ptr()
    assert (p.served, p.reused, p.free_bytes) == (1, 0, 0)
    del t
    gc.collect()
    assert p.free_bytes == 8 * KiB
    u = p.empty((64, 32), torch.float32)  # the same size, another shape
    assert u.data_ptr() == ptr and u.shape == (64, 32)
    assert (p.served, p.reused, p.free_bytes) == (2, 1, 0)
    v = p.empty((16, 64), torch.float64)  # the same bytes in another dtype: the same block would fit, none is free
    assert v.data_ptr() != ptr and v.dtype == torch.float64
    w = p.empty((8, 64), torch.float32)  # another size: a new block
    assert w.data_ptr() not in (ptr, v.data_ptr()) and p.reused == 1


def test_small_requests_go_to_torch_empty():
    p = LargeBufferPool(min_bytes=4 * KiB)
    t = p.empty((10,), torch.float32)
    del t
    gc.collect()
    assert (p.served, p.free_bytes) == (0, 0)


def test_a_block_comes_back_only_when_nothing_refers_to_its_memory():
    p = LargeBufferPool(min_bytes=4 * KiB)
    t = p.empty((4, 1024), torch.float32)
    ptr = t.data_ptr()
    view, arr = t[1:], t[2].numpy()
    del t
    gc.collect()
    assert p.free_bytes == 0  # a torch view and a numpy array still use it
    other = p.empty((4, 1024), torch.float32)
    assert other.data_ptr() != ptr
    other.fill_(7.0)
    view.fill_(1.0)
    assert float(other.sum()) == 7.0 * 4096 and float(arr.sum()) == 1024.0
    del view
    gc.collect()
    assert p.free_bytes == 0
    del arr
    gc.collect()
    assert p.free_bytes == 16 * KiB
    assert p.empty((4, 1024), torch.float32).data_ptr() == ptr


def test_kept_memory_is_capped_least_recently_freed_first_and_released():
    p = LargeBufferPool(min_bytes=4 * KiB, max_free_bytes=20 * KiB)
    a, b, c = (p.empty((n * 256,), torch.float32) for n in (4, 8, 12))  # 4, 8 and 12 KiB
    c_ptr = c.data_ptr()
    del a, b
    gc.collect()
    assert p.free_bytes == 12 * KiB
    del c  # 24 KiB > 20: the 4 KiB block (freed first) goes back to the system
    gc.collect()
    assert p.free_bytes == 20 * KiB
    small = p.empty((4 * 256,), torch.float32)
    assert p.reused == 0 and p.free_bytes == 20 * KiB
    again = p.empty((12 * 256,), torch.float32)
    assert again.data_ptr() == c_ptr and p.reused == 1 and p.free_bytes == 8 * KiB
    assert p.release() == 8 * KiB and p.free_bytes == 0
    del small, again
    gc.collect()
    assert p.free_bytes == 16 * KiB
    capped = LargeBufferPool(min_bytes=4 * KiB, max_free_bytes=4 * KiB)
    big = capped.empty((2048,), torch.float32)  # 8 KiB: more than it may keep
    del big
    gc.collect()
    assert capped.free_bytes == 0 and capped.served == 1


def test_new_sizes_give_old_blocks_back_so_the_pool_stays_within_its_peak():
    p = LargeBufferPool(min_bytes=4 * KiB)
    first = [p.empty((2048,), torch.float32) for _ in range(3)]  # three 8 KiB blocks at once: the peak
    assert (p.used_bytes, p.peak_bytes) == (24 * KiB, 24 * KiB)
    del first
    gc.collect()
    assert (p.free_bytes, p.used_bytes) == (24 * KiB, 0)
    bigger = p.empty((4096,), torch.float32)  # 16 KiB: no kept block fits, two 8 KiB ones go
    assert (p.free_bytes, p.used_bytes, p.peak_bytes, p.reused) == (8 * KiB, 16 * KiB, 24 * KiB, 0)
    again = p.empty((2048,), torch.float32)  # the one kept 8 KiB block
    assert (p.free_bytes, p.used_bytes, p.reused) == (0, 24 * KiB, 1)
    more = p.empty((2048,), torch.float32)  # nothing kept: a new block and a new peak
    assert (p.free_bytes, p.used_bytes, p.peak_bytes) == (0, 32 * KiB, 32 * KiB)
    del bigger, again, more


def test_kept_and_used_bytes_never_pass_the_peak_of_use():
    p = LargeBufferPool(min_bytes=4 * KiB)
    rng = np.random.default_rng(0)
    alive: list = []
    for _ in range(300):
        if alive and rng.random() < 0.5:
            alive.pop(int(rng.integers(len(alive))))
        else:
            alive.append(p.empty((1024 * int(rng.integers(1, 6)),), torch.float32))
        # a tensor's block comes back when its last reference goes (no cycles here: no collection needed)
        assert p.used_bytes == sum(t.numel() * 4 for t in alive)
        assert p.free_bytes + p.used_bytes <= p.peak_bytes
    assert p.reused > 0


def test_blocks_go_and_come_from_several_threads():
    p = LargeBufferPool(min_bytes=4 * KiB)
    errors = []

    def work(seed: int) -> None:
        try:
            for i in range(200):
                n = 1024 * (1 + (seed + i) % 3)
                t = p.empty((n,), torch.float32)
                t.fill_(float(seed))
                if float(t.sum()) != float(seed) * n:
                    errors.append((seed, i))
                del t
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    gc.collect()
    assert not errors
    assert p.served == 800 and p.reused > 0
    assert p.free_bytes % (4 * KiB) == 0 and p.free_bytes <= 4 * (4 + 8 + 12) * KiB


def test_bad_settings_name_the_argument():
    with pytest.raises(ValueError, match="min_bytes"):
        LargeBufferPool(min_bytes=-1)
    with pytest.raises(ValueError, match="max_free_bytes"):
        LargeBufferPool(max_free_bytes=1.5)
    with pytest.raises(TypeError, match="pool"):
        buffers_torch.use_buffer_pool("yes")


def test_the_process_pool_is_on_by_default_and_off_with_the_environment_variable():
    code = ("import torch; from neuroplastic.backend import buffers_torch as b; p = b.buffer_pool(); "
            "t = b.empty((9 << 20,), torch.float32); u = b.empty((9 << 20,), torch.float32, 'cpu'); "
            "print(type(p).__name__, p.served if p else '-')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    on = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    off = subprocess.run([sys.executable, "-c", code], env={**env, "NEUROPLASTIC_BUFFER_POOL": "0"},
                         capture_output=True, text=True, timeout=120)
    assert on.returncode == 0 and off.returncode == 0, on.stderr + off.stderr
    assert on.stdout.split() == ["LargeBufferPool", "2"]  # two 36 MiB tensors
    assert off.stdout.split() == ["NoneType", "-"]


# ---- the kernels from reused, dirty blocks give the same bits as from fresh ones


def _peers_network(n_in: int, H: int):
    from neuroplastic.cells import LIF
    from neuroplastic.layers import Dense
    from neuroplastic.network import Network
    from neuroplastic.surrogates import FastSigmoid

    cell = dict(decay=0.9, threshold=1.0, surrogate=FastSigmoid(beta=25.0))
    return Network(n_in, [Dense(H, bias=True), LIF(**cell), Dense(H, bias=True), LIF(**cell), Dense(10, bias=True), LIF(**cell)])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bptt_gradients_are_the_same_bits_from_reused_nan_filled_blocks(dtype, monkeypatch):
    """A BPTT step whose pooled outputs are every kind the kernels take from the pool (every block NaN-filled
    before it is served, and reused from the step before) equals the same step without a pool, bit for bit:
    the fused LIF loops, the event product of the sparse hidden spikes, the dense product of the dense input (the
    density check's fallback, with its bias added in place), the input gradient, and the weight and bias gradients
    from the event kernel."""
    from neuroplastic.backend import events_torch, get_backend
    from neuroplastic.losses import Objective, make_loss
    from neuroplastic.rules.bptt import BPTT
    from neuroplastic.tree import tree_leaves

    # sizes past the event kernel's minimum work (2000 rows x 100 x 96 multiply-adds)
    B = get_backend("torch", dtype=dtype)
    net = _peers_network(100, 96)
    params = net.init(0, backend=B)
    first_layer = {**params["layers"][0], "w": params["layers"][0]["w"] * 0.5}  # hidden spikes at about 10%
    params = {**params, "layers": [first_layer, *params["layers"][1:]]}
    rng = np.random.default_rng(1)
    x = B.asarray((rng.random((100, 20, 100)) < 0.6).astype(np.float64))  # denser than the event kernel takes
    y = B.asarray(rng.integers(0, 10, 20), dtype=torch.int64)
    rule, objective = BPTT(), Objective(make_loss("ce_sum"))
    paths: list[str] = []
    product, input_grad, gradients = events_torch._product, events_torch._input_grad, events_torch.masked_gradients

    def spy_product(x2, w, bias=None):
        out, masks = product(x2, w, bias)
        paths.append("event product" if masks is not None else "dense product")
        return out, masks

    monkeypatch.setattr(events_torch, "_product", spy_product)
    monkeypatch.setattr(events_torch, "_input_grad", lambda g, w: paths.append("input gradient") or input_grad(g, w))
    monkeypatch.setattr(events_torch, "masked_gradients",
                        lambda *a, **k: paths.append("event gradients") or gradients(*a, **k))

    def step():
        grads, _, aux = rule.gradients(net, params, {}, (x, y), objective)
        return [float(aux["loss"])] + [np.asarray(B.to_numpy(g)) for g in tree_leaves(grads)]

    previous = buffers_torch.use_buffer_pool(None)
    try:
        reference = step()
        pooled = NaNPool(min_bytes=1)
        buffers_torch.use_buffer_pool(pooled)
        first, second = step(), step()
    finally:
        buffers_torch.use_buffer_pool(previous)
    assert {"event product", "dense product", "input gradient", "event gradients"} <= set(paths), paths
    assert pooled.served > 0 and pooled.reused > 0  # the second step ran on the first one's blocks
    for got in (first, second):
        assert got[0] == reference[0]
        for a, b in zip(got[1:], reference[1:]):
            assert np.array_equal(a, b)
            assert np.isfinite(a).all()


def test_lif_loops_and_event_products_write_every_element_of_a_pooled_block():
    """The fused LIF loops and the event products into NaN-filled blocks: the same bits as into fresh tensors."""
    from neuroplastic.backend import events_torch, kernels_torch
    from neuroplastic.surrogates import FastSigmoid

    rng = np.random.default_rng(2)
    currents = torch.tensor(rng.normal(0.5, 1.0, (30, 4, 16)), dtype=torch.float32)
    g_spikes = torch.tensor(rng.normal(size=(30, 4, 16)), dtype=torch.float32)
    w = torch.tensor(rng.normal(size=(16, 12)), dtype=torch.float32)
    bias = torch.tensor(rng.normal(size=12), dtype=torch.float32)

    def kernels():
        spikes, v_last, u_all = kernels_torch.lif_forward(currents, torch.zeros(4, 16), 0.9, 1.0, "subtract")
        grad_I, grad_v0 = kernels_torch.lif_backward(u_all, g_spikes, None, 0.9, 1.0, "subtract", False,
                                                     FastSigmoid(beta=25.0))
        x2 = spikes.reshape(-1, 16)
        return spikes, v_last, u_all, grad_I, grad_v0, events_torch.kernel_product(x2, w, bias)

    previous = buffers_torch.use_buffer_pool(None)
    try:
        fresh = kernels()
        nan_pool = NaNPool(min_bytes=1)
        buffers_torch.use_buffer_pool(nan_pool)
        pooled = kernels()
    finally:
        buffers_torch.use_buffer_pool(previous)
    assert nan_pool.served >= 4
    for a, b in zip(pooled, fresh):
        assert torch.equal(a, b)
