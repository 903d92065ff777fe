"""neuroplastic.backend.native: building kernels on first use, caching them, and failing over to the
dense products (with a reason) where no compiler or no build is available."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from neuroplastic.backend import native

ADD = 'extern "C" int np_add(int a, int b) { return a + b; }\n'


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROPLASTIC_CACHE", str(tmp_path))
    return tmp_path


def test_build_compiles_once_and_reuses_the_library(cache):
    if native.cxx_compiler() is None:
        pytest.skip("no C++ compiler")
    path = native.build("np_add", ADD, ("-O1", "-fPIC", "-shared"))
    assert path.parent == cache / "kernels" and path.exists()
    assert ctypes.CDLL(str(path)).np_add(2, 3) == 5
    stamp = path.stat().st_mtime_ns
    assert native.build("np_add", ADD, ("-O1", "-fPIC", "-shared")) == path  # the cached build
    assert path.stat().st_mtime_ns == stamp
    assert native.build("np_add", ADD.replace("a + b", "a - b"), ("-O1", "-fPIC", "-shared")) != path  # keyed by source


def test_build_failures_say_why(cache, monkeypatch):
    with pytest.raises(ValueError, match="language"):
        native.build("x", ADD, (), language="fortran")
    if native.cxx_compiler() is not None:
        with pytest.raises(RuntimeError, match="building broken failed"):
            native.build("broken", "this is not C++", ("-fPIC", "-shared"))
    monkeypatch.setattr(native, "cxx_compiler", lambda: None)
    with pytest.raises(RuntimeError, match="no c\\+\\+ compiler"):
        native.build("np_add", ADD, ())


def test_without_a_compiler_the_products_stay_dense_and_say_why(cache, monkeypatch):
    torch = pytest.importorskip("torch")
    from neuroplastic.backend import events_torch

    monkeypatch.setattr(native, "_libraries", {})
    monkeypatch.setattr(native, "_errors", {})
    monkeypatch.setattr(native, "cxx_compiler", lambda: None)
    assert native.event_library() is None
    assert "no c++ compiler" in native.build_error("event_matmul")
    rng = np.random.default_rng(0)
    x = torch.tensor((rng.random((64, 8, 256)) < 0.05).astype(np.float32))
    w = torch.tensor(rng.standard_normal((256, 300)).astype(np.float32))
    assert not events_torch.applicable(x, w)
    assert torch.equal(events_torch.event_matmul(x, w), x @ w)


def test_switches_turn_the_kernels_off(monkeypatch):
    monkeypatch.setenv("NEUROPLASTIC_EVENT_KERNELS", "0")
    assert not native.events_enabled() and native.enabled()
    monkeypatch.setenv("NEUROPLASTIC_EVENT_KERNELS", "1")
    monkeypatch.setenv("NEUROPLASTIC_C_KERNELS", "0")
    assert not native.events_enabled()
    assert native.event_library() is None and native.build_error() == "NEUROPLASTIC_C_KERNELS=0"


def test_selection_thresholds():
    assert native.worth_it(32000, 512, 512)
    assert not native.worth_it(16, 512, 512)  # one step of a small batch: too little work
    assert native.worth_it(32000, 128, 128)  # 128 wide: only at low densities (native.max_density)
    assert not native.worth_it(32000, 128, 64)  # narrower: listing the non-zeros costs what it saves
    assert native.max_density(512) == native.MAX_DENSITY and native.max_density(128) == native.NARROW_MAX_DENSITY
    assert 0 < native.NARROW_MAX_DENSITY < native.MAX_DENSITY
    assert not native.worth_it(32000, 2048, 10)
    assert 0 < native.MAX_DENSITY < 1 and native.usable_threads() >= 1


def test_kernel_errors_are_named():
    native.check_status(5, "event_matmul")
    with pytest.raises(MemoryError, match="event_matmul"):
        native.check_status(-1, "event_matmul")
    with pytest.raises(RuntimeError, match="code -2"):
        native.check_status(-2, "event_matmul_xt")
