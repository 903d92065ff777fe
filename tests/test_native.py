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
    assert native.worth_it(32000, 2048, 10) and native.worth_it(32000, 128, 64)  # narrow outputs: narrow column chunks
    assert not native.worth_it(32000, 2048, 4)  # 1-7 columns: a vector's lanes mostly padding
    assert native.max_density(512) == native.MAX_DENSITY and native.max_density(10) == native.NARROW_MAX_DENSITY
    assert native.max_density(128) == native.NARROW_MAX_DENSITY and 0 < native.NARROW_MAX_DENSITY < native.MAX_DENSITY
    assert 0 < native.MAX_DENSITY < 1 and native.usable_threads() >= 1


def test_kernel_errors_are_named():
    native.check_status(5, "event_matmul")
    with pytest.raises(MemoryError, match="event_matmul"):
        native.check_status(-1, "event_matmul")
    with pytest.raises(RuntimeError, match="code -2"):
        native.check_status(-2, "event_matmul_xt")


# ------------------------------------------------------------------ transparent huge pages (glibc tunable)


def test_huge_pages_env_only_where_glibc_and_the_kernel_support_it(monkeypatch):
    ok = dict(libc_version=(2, 35), thp_mode="madvise")
    assert native.huge_pages_env({}, **ok) == {"GLIBC_TUNABLES": native.HUGE_PAGES_TUNABLE}
    assert native.huge_pages_env({}, libc_version=(2, 40), thp_mode="always") == {}  # the kernel does it already
    # the user's other tunables are kept; their own hugetlb choice wins
    assert native.huge_pages_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, **ok) == {
        "GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"}
    assert native.huge_pages_env({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, **ok) == {}
    # an older glibc (no such tunable), no glibc, the kernel's THP off or unknown, the opt-out
    assert native.huge_pages_env({}, libc_version=(2, 34), thp_mode="madvise") == {}
    assert native.huge_pages_env({}, libc_version=(2, 36), thp_mode="never") == {}
    monkeypatch.setattr(native, "_glibc_version", lambda: None)  # musl, or no confstr
    assert native.huge_pages_env({}, thp_mode="madvise") == {}
    monkeypatch.setattr(native, "_thp_mode", lambda: None)  # no /sys/kernel/mm/transparent_hugepage
    assert native.huge_pages_env({}, libc_version=(2, 36)) == {}
    assert native.huge_pages_env({"NEUROPLASTIC_HUGE_PAGES": "0"}, **ok) == {}
    monkeypatch.setattr("sys.platform", "darwin")
    assert native.huge_pages_env({}, **ok) == {}


def _large_array_is_advised(env: dict) -> bool:
    """Whether a 64 MiB block from glibc's ``malloc`` in a fresh Python process started with ``env`` lies in a mapping
    advised for huge pages (``hg`` in its VmFlags in /proc/self/smaps: glibc's madvise(MADV_HUGEPAGE), deterministic, unlike
    whether the kernel found free huge pages)."""
    import subprocess
    import sys

    code = (
        "import ctypes, re\n"
        "libc = ctypes.CDLL('libc.so.6'); libc.malloc.restype = ctypes.c_void_p; libc.malloc.argtypes = [ctypes.c_size_t]\n"
        "addr = libc.malloc(1 << 26); ctypes.memset(addr, 1, 1 << 26)\n"
        "flags = ''\n"
        "for block in open('/proc/self/smaps').read().split('\\n') :\n"
        "    m = re.match(r'^([0-9a-f]+)-([0-9a-f]+) ', block)\n"
        "    if m: inside = int(m.group(1), 16) <= addr < int(m.group(2), 16)\n"
        "    elif block.startswith('VmFlags:') and inside: flags = block\n"
        "print('hg' in flags.split())\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip() == "True"


def test_processes_started_with_huge_pages_env_advise_their_large_blocks():
    import os

    extra = native.huge_pages_env()
    if not extra:
        pytest.skip("no glibc >= 2.35 with transparent huge pages in madvise mode here (or NEUROPLASTIC_HUGE_PAGES=0)")
    plain = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    assert _large_array_is_advised({**plain, **extra})
    assert not _large_array_is_advised(plain)  # the control: glibc's default does not advise


def test_exec_with_huge_pages_restarts_the_program_once_with_the_variables(monkeypatch):
    import os
    import sys

    calls = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "neuroplastic.cli", "train", "--epochs", "1"])
    monkeypatch.setattr(native, "huge_pages_env", lambda environ=None: {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"})
    native.exec_with_huge_pages()
    assert len(calls) == 1
    path, argv, env = calls[0]
    assert path == sys.executable and argv == ["python", "-m", "neuroplastic.cli", "train", "--epochs", "1"]
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1" and env["PATH"] == os.environ["PATH"]
    monkeypatch.setattr(native, "huge_pages_env", lambda environ=None: {})  # already set, or not applicable
    native.exec_with_huge_pages()
    assert len(calls) == 1


def test_the_console_command_is_the_entry_that_asks_for_huge_pages():
    import tomllib
    from pathlib import Path

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["neuroplastic"] == "neuroplastic.cli:entry"
