"""Streaming input: training and evaluation from iterables of batches (neuroplastic.data.stream).

The guarantees checked: a stream that yields the arrays path's batches trains to the same
parameters bit for bit (a torch DataLoader included, and on MNIST-1D with the example's network
and training: the same test accuracy); ``npz_batches`` reads files one at a
time with the arrays path's seeded shuffling (the same seed gives the same batches, a
different one another order, every example once per epoch); one-shot generators serve one
epoch and then fail by name; bad batches are refused naming the batch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from neuroplastic.cells import LIF, LeakyReadout
from neuroplastic.data import BatchStream, StreamingData, from_arrays, npz_batches
from neuroplastic.layers import Dense
from neuroplastic.network import Network
from neuroplastic.train import Trainer
from neuroplastic.train.trainer import epoch_batches

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _data(n_train=96, n_test=40, T=12, C=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n_train + n_test)
    x = (rng.random((T, n_train + n_test, C)) < 0.1 + 0.15 * (y[None, :, None] == np.arange(C) % 3)).astype(np.float32)
    return from_arrays(x[:, :n_train], y[:n_train], x[:, n_train:], y[n_train:])


def _net():
    return Network(4, [Dense(16), LIF(tau_mem=5.0), Dense(3), LeakyReadout(tau_out=5.0)])


def _leaves(p):
    out = []
    for layer in p["layers"]:
        for k in sorted(layer):
            if k != "cell":
                out.append(np.asarray(layer[k]))
    return out


@pytest.mark.parametrize("backend_name", ["torch", "jax"])
def test_stream_of_the_arrays_batches_trains_bit_identically(backend_name):
    data, net = _data(), _net()
    tr = Trainer(net, "bptt", "ce_sum", "adam", lr=5e-3, backend=backend_name, progress=False)
    p_arr, h_arr = tr.fit(net.init(0, backend=backend_name), data, epochs=2, batch_size=32, seed=3)
    stream = StreamingData(lambda seed, epoch: epoch_batches(data, 32, seed, epoch),
                           test=[(data.x_test, data.y_test)], n_classes=3)
    tr = Trainer(net, "bptt", "ce_sum", "adam", lr=5e-3, backend=backend_name, progress=False)
    p_str, h_str = tr.fit(net.init(0, backend=backend_name), stream, epochs=2, seed=3)
    for a, b in zip(_leaves(p_arr), _leaves(p_str)):
        np.testing.assert_array_equal(a, b)
    assert [h["train_loss"] for h in h_arr] == [h["train_loss"] for h in h_str]
    assert [h["test_acc"] for h in h_arr] == [h["test_acc"] for h in h_str]


def _arrays_order(torch, n: int, batch_size: int, seed: int):
    """A torch batch sampler giving the arrays path's batches: epoch ``e`` (counted by its iterations)
    permutes the ``n`` examples with ``numpy.random.default_rng([seed, e])`` and cuts them in order."""

    class ArraysOrder(torch.utils.data.Sampler):
        def __init__(self):
            self.epoch = -1

        def __iter__(self):
            self.epoch += 1
            order = np.random.default_rng([seed, self.epoch]).permutation(n)
            return iter([order[i:i + batch_size].tolist() for i in range(0, n, batch_size)])

        def __len__(self):
            return -(-n // batch_size)

    return ArraysOrder()


def test_torch_dataloader_in_the_arrays_order_trains_identically():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    data, net = _data(), _net()
    n, bs, seed = data.x_train.shape[1], 32, 5
    ds = TensorDataset(torch.from_numpy(data.x_train.transpose(1, 0, 2).copy()), torch.from_numpy(data.y_train))
    loader = DataLoader(ds, batch_sampler=_arrays_order(torch, n, bs, seed))  # yields batch-major (B, T, C)
    test = DataLoader(TensorDataset(torch.from_numpy(data.x_test.transpose(1, 0, 2).copy()), torch.from_numpy(data.y_test)), batch_size=256)
    stream = StreamingData(loader, test=test, n_classes=3, time_major=False)
    tr = Trainer(net, "bptt", "ce_sum", "adam", lr=5e-3, backend="torch", progress=False)
    p_str, h_str = tr.fit(net.init(0, backend="torch"), stream, epochs=2, seed=seed)
    tr = Trainer(net, "bptt", "ce_sum", "adam", lr=5e-3, backend="torch", progress=False)
    p_arr, h_arr = tr.fit(net.init(0, backend="torch"), data, epochs=2, batch_size=bs, seed=seed)
    for a, b in zip(_leaves(p_arr), _leaves(p_str)):
        np.testing.assert_array_equal(a, b)
    assert [h["test_acc"] for h in h_arr] == [h["test_acc"] for h in h_str]


def test_dataloader_trains_the_mnist1d_example_like_the_arrays_path():
    """The issue's "done when": a DataLoader trains the MNIST-1D example to the same accuracy as the arrays path.

    The example's network and training (examples/configs/rules-mnist1d.toml: recurrent LIF layer, leaky
    readout, Adam with a cosine schedule, the rate regulariser), downsized to run in seconds: 32 hidden
    units, the first 512 training and 256 test examples, 2 epochs, torch backend.  A map-style torch
    Dataset yields one example at a time, ``(T, C)``; the DataLoader batches them batch-major in the
    arrays path's order.  Same parameters bit for bit, same losses and test accuracy every epoch.
    """
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from neuroplastic.config import load_config
    from neuroplastic.data import load_dataset
    from neuroplastic.experiment import build_trainer

    full = load_dataset("mnist1d")
    data = dataclasses.replace(full, x_train=full.x_train[:, :512], y_train=full.y_train[:512],
                               x_test=full.x_test[:, :256], y_test=full.y_test[:256])
    cfg = dataclasses.replace(load_config(EXAMPLES / "configs" / "rules-mnist1d.toml"), hidden=32, epochs=2, backend="torch")
    n, bs, seed = data.x_train.shape[1], cfg.batch_size, cfg.seed

    class Examples(torch.utils.data.Dataset):  # what a user's own torch Dataset over MNIST-1D looks like
        def __init__(self, x, y):
            self.x, self.y = x, y  # time-major (T, N, C) arrays

        def __len__(self):
            return self.x.shape[1]

        def __getitem__(self, i):
            return torch.from_numpy(self.x[:, i]), int(self.y[i])

    loader = DataLoader(Examples(data.x_train, data.y_train), batch_sampler=_arrays_order(torch, n, bs, seed))
    test = DataLoader(Examples(data.x_test, data.y_test), batch_size=256)  # fit's eval_batch_size
    stream = StreamingData(loader, test=test, n_classes=data.n_classes, dt=data.dt, time_major=False)

    net, tr = build_trainer(cfg, data)
    p0 = net.init(seed, backend=tr.B)
    w0 = _leaves(p0)[0].copy()
    p_arr, h_arr = tr.fit(p0, data, epochs=cfg.epochs, batch_size=bs, seed=seed)
    net, tr = build_trainer(cfg, data)
    p_str, h_str = tr.fit(net.init(seed, backend=tr.B), stream, epochs=cfg.epochs, seed=seed)
    assert not np.array_equal(w0, _leaves(p_arr)[0])  # it trained
    for a, b in zip(_leaves(p_arr), _leaves(p_str)):
        np.testing.assert_array_equal(a, b)
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert [h[key] for h in h_arr] == [h[key] for h in h_str], key
    assert len(h_str) == cfg.epochs and all(h["test_acc"] is not None for h in h_str)


def _write_files(tmp_path, data, per_file=25):
    paths = []
    n = data.x_train.shape[1]
    for k, start in enumerate(range(0, n, per_file)):
        p = tmp_path / f"part{k}.npz"
        np.savez(p, x=data.x_train[:, start:start + per_file], y=data.y_train[start:start + per_file])
        paths.append(p)
    return paths


def test_npz_files_stream_seeded_and_complete(tmp_path):
    data = _data()
    paths = _write_files(tmp_path, data)
    stream = npz_batches(paths, batch_size=16)
    first = list(stream.epoch(seed=1, epoch=0))
    again = list(stream.epoch(seed=1, epoch=0))
    other = list(stream.epoch(seed=2, epoch=0))
    assert [b[0].shape[1] for b in first] == [16] * 6  # 96 examples over files of 25: full batches across files
    for (xa, ya), (xb, yb) in zip(first, again):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other))
    # every example exactly once per epoch: compare the multisets of (label, input) rows
    got = np.concatenate([x for x, _ in first], axis=1)
    key = lambda x: sorted(map(bytes, np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(x.shape[1], -1)))  # noqa: E731
    assert key(got) == key(data.x_train)
    assert sorted(np.concatenate([y for _, y in first]).tolist()) == sorted(data.y_train.tolist())


@pytest.mark.parametrize("backend_name", ["torch", "jax"])
def test_npz_stream_trains_like_the_arrays_path(tmp_path, backend_name):
    """A dataset read from files trains: over 3 seeds the loss falls and the accuracy clears chance (1/3) by a margin."""
    data = _data(n_train=192, n_test=96)
    paths = _write_files(tmp_path, data, per_file=50)
    accs = []
    for seed in (0, 1, 2):
        net = _net()
        tr = Trainer(net, "bptt", "ce_sum", "adam", lr=1e-2, backend=backend_name, progress=False)
        stream = StreamingData(npz_batches(paths, 32), test=[(data.x_test, data.y_test)], n_classes=3)
        _, hist = tr.fit(net.init(seed, backend=backend_name), stream, epochs=4, seed=seed)
        assert hist[-1]["train_loss"] < hist[0]["train_loss"], seed
        accs.append(hist[-1]["test_acc"])
    assert np.mean(accs) > 0.5, accs


def test_generator_serves_one_epoch_then_fails_by_name():
    data, net = _data(), _net()
    tr = Trainer(net, "bptt", "ce_sum", backend="torch", progress=False)
    gen = (b for b in epoch_batches(data, 32, 0, 0))
    _, hist = tr.fit(net.init(0, backend="torch"), StreamingData(gen, n_classes=3), epochs=1)
    assert len(hist) == 1 and hist[0]["test_acc"] is None and np.isfinite(hist[0]["train_loss"])
    gen = (b for b in epoch_batches(data, 32, 0, 0))
    with pytest.raises(ValueError, match="generator .* yields its batches once"):
        tr.fit(net.init(0, backend="torch"), StreamingData(gen, n_classes=3), epochs=2)


def test_bad_batches_are_named():
    data, net = _data(), _net()
    tr = Trainer(net, "bptt", "ce_sum", backend="torch", progress=False)
    p = net.init(0, backend="torch")
    x, y = data.x_train[:, :8], data.y_train[:8]
    bad_label = y.copy()
    bad_label[2] = 7
    with pytest.raises(ValueError, match=r"train batch 1 of epoch 1: y: label 7 at index 2 is outside \[0, 3\)"):
        tr.fit(p, StreamingData([(x, y), (x, bad_label)], n_classes=3), epochs=1)
    with pytest.raises(ValueError, match="train batch 0: x: .*NaN"):
        tr.fit(p, StreamingData([(np.full_like(x, np.nan), y)]), epochs=1)
    with pytest.raises(ValueError, match="train batch 0: expected a pair"):
        tr.fit(p, StreamingData([x]), epochs=1)
    with pytest.raises(ValueError, match=r"train batch 0 of epoch 1: x: expected 4 input features \(last axis\), got 2"):
        tr.fit(p, StreamingData([(x[:, :, :2], y)]), epochs=1)
    with pytest.raises(ValueError, match="epoch 1 has no training batches"):
        tr.fit(p, StreamingData([]), epochs=1)
    with pytest.raises(ValueError, match="train: expected a function"):
        StreamingData(np.zeros(3))
    with pytest.raises(ValueError, match="n_classes: expected a positive integer"):
        StreamingData([], n_classes=0)
    with pytest.raises(ValueError, match="network: its output has 3 units but stream has 5 classes"):
        tr.fit(p, StreamingData([(x, y)], n_classes=5), epochs=1)


def test_npz_errors(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        npz_batches([tmp_path / "missing.npz"], 4)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        npz_batches([tmp_path], 0)
    np.savez(tmp_path / "a.npz", inputs=np.zeros((2, 3, 4)), y=np.zeros(3, int))
    with pytest.raises(ValueError, match="no array 'x' in the file"):
        list(npz_batches([tmp_path / "a.npz"], 2).epoch())
    (tmp_path / "b.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="cannot be read as an .npz file"):
        list(npz_batches([tmp_path / "b.npz"], 2).epoch())
    obj = tmp_path / "c.npz"
    np.savez(obj, x=np.array([{"a": 1}], dtype=object), y=np.zeros(1, int))
    with pytest.raises(ValueError, match="cannot be read|pickle"):
        list(npz_batches([obj], 2).epoch())


def test_evaluate_batches_equals_evaluate():
    data, net = _data(), _net()
    tr = Trainer(net, "bptt", "ce_sum", backend="jax", progress=False)
    p = net.init(0, backend="jax")
    full = tr.evaluate(p, data.x_test, data.y_test, batch_size=16)
    streamed = tr.evaluate_batches(p, BatchStream(lambda s, e: [(data.x_test[:, i:i + 16], data.y_test[i:i + 16]) for i in range(0, 40, 16)]))
    assert streamed["acc"] == full["acc"]
    np.testing.assert_allclose(streamed["loss"], full["loss"], rtol=1e-6)
