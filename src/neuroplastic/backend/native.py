"""Native kernels shipped as C/C++ source and built on first use: the one home for compiling them.

:func:`build` compiles a source with the system's compiler into a cached shared library; the
torch LIF loops (:mod:`.kernels_torch`) and the event-driven products use it.

:func:`event_library` compiles ``event_matmul.cc`` (next to this file) with the system's C++
compiler into ``$NEUROPLASTIC_CACHE/kernels`` (default ``~/.cache/neuroplastic/kernels``) and
loads it with ``ctypes``; :func:`event_library_ffi` builds the same source with XLA's FFI
handlers for ``jax.ffi``.  Builds are keyed by the source, the flags, the compiler's version
and this CPU (they use ``-march=native``), written atomically, and reused by later processes.
Without a compiler, when a build fails, or with ``NEUROPLASTIC_C_KERNELS=0``, the libraries
are ``None`` (:func:`build_error` says why) and the backends keep their dense products;
``NEUROPLASTIC_EVENT_KERNELS=0`` keeps the dense products too (the reference path).

Which product runs is decided per call (:func:`event_product_fits`, then the backends' density
check): the event kernel when the work is large enough to pay for listing the non-zeros
(:func:`worth_it`: ``rows * K * M >= MIN_WORK``, ``M >= MIN_SIDE``) and the spike matrix is sparse
enough (density at most :func:`max_density` of the output width: ``MAX_DENSITY``, lower for outputs
under 256 columns; measured crossovers on a 2-core AMD EPYC in ``docs/benchmarks.md``, "Event-driven
products").
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping

SOURCE = Path(__file__).with_name("event_matmul.cc")
CXX_FLAGS = ("-std=c++17", "-O3", "-fPIC", "-shared", "-pthread", "-w")
#: the event kernel runs when x's density (non-zeros / entries) is at most this (CPU time against the
#: dense product at 25%, 32000 rows: 0.8-0.9 for 2048 x 2048, 0.9-1.0 forward and 0.65 weight
#: gradient for a 100-wide input into 2048; at 8.3%, 0.23-0.38; ``python -m bench.sparsity``)
MAX_DENSITY = 0.25
#: and the dense product would take at least this many multiply-adds (rows * K * M)
MIN_WORK = 1 << 24
#: and the output at least this wide (M).  Narrow outputs (a readout's 10 classes) take narrow column chunks (one
#: or two vectors a non-zero): (32000, K) spikes times (K, 10), forward + weight and bias gradients, 2-core AMD
#: EPYC, medians of 21, ms: torch K=128 at 6% 2.4 against its dense 7.3, K=512 at 5% 7.2 / 26, K=2048 at 3%
#: 22 / 127; JAX K=128 at 6% 3.6 / 5.1, K=512 at 5% 9.4 / 38
MIN_SIDE = 8
#: outputs narrower than this (8 to 255 columns) have less work per non-zero to save, so their crossover
#: density is lower: :data:`NARROW_MAX_DENSITY`.  Measured with the kernels that list the non-zeros from bit
#: masks (32000 rows, M = 128, float32, 2-core AMD EPYC, one process, medians of 15; forward + weight gradient,
#: ms): K=100 at 20%: event 10.6 against JAX's dense 11.9 and torch's 15.8; at 30%: 11.0 / 11.5 / 13.4; K=128 at
#: 20%: 13.2 / 17.0 / 17.5; K=512 at 15%: 41 / 67 / 59, at 20%: 61 / 71 / 62.  The same limits on both backends
#: (torch's dense product at 128 columns was the slower of the two).
WIDE_SIDE = 256
NARROW_MAX_DENSITY = 0.2

#: the LIF loops' reset argument (``lif_loops.c``)
LIF_RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}

_lock = threading.Lock()
_libraries: dict[str, Any] = {}
_errors: dict[str, str] = {}


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
#: ``keep_freed_memory`` settings for whole-sequence arrays: blocks up to 1 GiB from the heap, 2 GiB kept free, one arena
LARGE_BUFFERS = {"mmap_threshold": 1 << 30, "trim_threshold": (1 << 31) - 1, "arenas": 1}


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20, arenas: int | None = None) -> bool:
    """Ask glibc's allocator to keep freed blocks for reuse instead of handing them back to the system;
    ``True`` when it took the settings, ``False`` where there is no glibc (nothing changes then).

    torch allocates every intermediate tensor on the CPU with ``malloc``, and so does XLA's CPU backend
    for its buffers.  glibc serves a block above
    its *mmap threshold* with a fresh ``mmap`` and returns it with ``munmap`` when freed, and gives the
    top of its heap back once more than the *trim threshold* is free there; both thresholds adapt to
    the block sizes it sees, but with several multi-megabyte temporaries alive at once (the online trace
    rules' ``(B, P, n)`` eligibility traces: 4 MB for ``(64, 129, 128)``) freed memory keeps going back
    to the system, and every new temporary page-faults its pages in again: a product of a (64, 129, 128)
    trace took 1.7 ms instead of 0.1 ms with three of them alive, and online OTPE ran about 30% slower.
    Blocks up to ``mmap_threshold`` bytes then come from the heap, and up to ``trim_threshold`` free bytes
    stay in it (the process's resident memory may stay that much above its live data).

    A process-wide setting, like ``OMP_WAIT_POLICY``: entry points call it (the CLI, a benchmark's
    child process, a training script), never an import.  :data:`LARGE_BUFFERS` extends it to the
    (T, B, N) arrays of long sequences (tens to hundreds of MB): XLA's elementwise pass over a
    (500, 64, 512) array took 27 ms with each output page-faulted in, 7 ms from the heap, with no
    change in the JAX process's peak RSS; torch ran the peers network faster with it too (0.44
    against 0.81 s at H=512, 3.3 against 4.3 s at H=2048) but its peak RSS grew from 1.6 to 3.0 GB
    at H=2048 (heap fragmentation), so the CLI keeps the defaults and the peers benchmark uses it on
    JAX only.  Where ``mallopt`` refuses a value it returns ``False`` (an older glibc caps the
    mmap threshold at 32 MiB on 64-bit systems; the trim setting may already have applied).

    ``arenas`` caps glibc's arenas (``M_ARENA_MAX``; :data:`LARGE_BUFFERS`: 1).  XLA runs a program on its
    worker threads, and glibc gives such a thread an arena of its own whose heaps hold at most 64 MiB: a larger
    block (XLA's buffers for a whole (T, B, H) program) is then a fresh ``mmap`` at every call whatever the
    thresholds, and every call page-faults it in again (16% of the CPU samples of JAX's peers step at H=128 were
    the kernel clearing those pages; 4.7% with one arena).  With one arena every thread allocates from the main
    heap, under one lock: set it before the threads start, in a process whose threads allocate rarely (a
    compiled program's), not one whose many threads each allocate small blocks all the time.
    """
    for name, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive number of bytes, got {value!r}")
    if arenas is not None and (isinstance(arenas, bool) or not isinstance(arenas, int) or arenas <= 0):
        raise ValueError(f"arenas must be a positive number of arenas or None, got {arenas!r}")
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_TRIM_THRESHOLD, min(trim_threshold, 2**31 - 1)) == 1
    if arenas is not None:
        ok = mallopt(_M_ARENA_MAX, arenas) == 1 and ok
    return mallopt(_M_MMAP_THRESHOLD, min(mmap_threshold, 2**31 - 1)) == 1 and ok


#: glibc's malloc tunable (glibc 2.35 and later) that makes it advise the kernel to back its large blocks with
#: transparent huge pages (2 MiB): a fresh block page-faults once per 2 MiB instead of once per 4 KiB
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def huge_pages_env(environ: Mapping[str, str] | None = None, libc_version: tuple[int, int] | None = None,
                   thp_mode: str | None = None) -> dict[str, str]:
    """The environment a new process needs for glibc's malloc to use transparent huge pages
    (``GLIBC_TUNABLES`` with :data:`HUGE_PAGES_TUNABLE` added), or ``{}`` where that does not apply: not
    Linux with glibc 2.35 or later, the kernel's transparent huge pages not in ``madvise`` mode (``always``
    backs large blocks with huge pages already, and glibc's tunable then does nothing; ``never`` has none),
    a ``hugetlb`` tunable already chosen, or ``NEUROPLASTIC_HUGE_PAGES=0``.

    Why: torch allocates every intermediate tensor with ``malloc`` and glibc serves large blocks with fresh
    ``mmap`` pages, so each (T, B, H) array of a whole-sequence step is page-faulted in 4 KiB at a time
    (a (500, 64, 512) float32 array: 16,000 faults).  With huge pages the peers benchmark's step took
    0.32-0.40 s instead of 0.59-0.72 s on torch at H=512 (2-core AMD EPYC, the same process alternating
    the two settings), with the same peak RSS.  glibc reads tunables only when a process starts: entry
    points pass this to the processes they start (:func:`exec_with_huge_pages` for the CLI, the sweep's
    trials, the benchmarks' children), never an import.  ``environ``, ``libc_version`` and ``thp_mode``
    default to this process's and machine's (arguments for tests).
    """
    import sys

    env = os.environ if environ is None else environ
    if env.get("NEUROPLASTIC_HUGE_PAGES", "1") == "0" or not sys.platform.startswith("linux"):
        return {}
    tunables = env.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return {}
    version = _glibc_version() if libc_version is None else libc_version
    mode = _thp_mode() if thp_mode is None else thp_mode
    if version is None or version < (2, 35) or mode != "madvise":
        return {}
    return {"GLIBC_TUNABLES": f"{tunables}:{HUGE_PAGES_TUNABLE}" if tunables else HUGE_PAGES_TUNABLE}


def _glibc_version() -> tuple[int, int] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # "glibc 2.36"
        major, minor = version.split(".")[:2]
        return (int(major), int(minor)) if name == "glibc" else None
    except (AttributeError, ValueError, OSError):
        return None


def _thp_mode() -> str | None:
    """The kernel's transparent huge page mode (``always``, ``madvise`` or ``never``), or ``None`` if unknown."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else None


def exec_with_huge_pages() -> None:
    """Start this program again, in place (``os.execve``, same arguments), with :func:`huge_pages_env`'s
    variables, where they apply and are not set yet; returns where nothing is to be done.  For the
    console entry point only: the new process sees the variables and returns here at once."""
    import sys

    extra = huge_pages_env()
    argv = getattr(sys, "orig_argv", None)
    if extra and argv and sys.executable:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, list(argv), {**os.environ, **extra})


def enabled() -> bool:
    """False when ``NEUROPLASTIC_C_KERNELS=0`` turns every native kernel off."""
    return os.environ.get("NEUROPLASTIC_C_KERNELS", "1") != "0"


def events_enabled() -> bool:
    """False when ``NEUROPLASTIC_EVENT_KERNELS=0`` (or ``NEUROPLASTIC_C_KERNELS=0``) keeps every product dense:
    the reference path, for checking and for benchmarks of it.  Read on every call."""
    return enabled() and os.environ.get("NEUROPLASTIC_EVENT_KERNELS", "1") != "0"


def cxx_compiler() -> str | None:
    """``$CXX``, ``c++``, ``g++`` or ``clang++``, the first found on ``PATH``."""
    for name in (os.environ.get("CXX") or "", "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def cpu_signature() -> str:
    """This CPU's model and instruction-set flags (part of a ``-march=native`` build's cache key)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        return "\n".join(sorted(set(lines)))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def kernel_dir() -> Path:
    """Where built libraries are kept: ``$NEUROPLASTIC_CACHE/kernels``."""
    from ..data._common import cache_dir

    return cache_dir() / "kernels"


def c_compiler() -> str | None:
    """``$CC``, ``cc``, ``gcc`` or ``clang``, the first found on ``PATH``."""
    for name in (os.environ.get("CC") or "", "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def build(name: str, source: Path | str, flags: tuple[str, ...], language: str = "c++") -> Path:
    """Compile ``source`` (a file, or the source text itself) into ``kernel_dir()/name-<key>.so`` unless it
    is there; return its path.

    ``language`` is ``"c++"`` (:func:`cxx_compiler`) or ``"c"`` (:func:`c_compiler`).  Tries
    ``-march=native`` first (the key then includes :func:`cpu_signature`) and the plain flags if
    the compiler refuses it.  Raises ``RuntimeError`` with the compiler's message when both fail.
    """
    if language not in ("c", "c++"):
        raise ValueError(f"language: expected 'c' or 'c++', got {language!r}")
    compiler = cxx_compiler() if language == "c++" else c_compiler()
    if compiler is None:
        raise RuntimeError(f"no {language} compiler found (set {'CXX' if language == 'c++' else 'CC'}, or install gcc or clang)")
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    text = source.read_text() if isinstance(source, Path) else source
    folder = kernel_dir()
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for arch in (("-march=native",), ()):
        all_flags = (*flags, *arch)
        key = "\0".join((text, " ".join(all_flags), version, cpu_signature() if arch else ""))
        path = folder / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"
        if path.exists():
            return path
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            src, out = Path(tmp) / f"{name}.{'cc' if language == 'c++' else 'c'}", Path(tmp) / f"{name}.so"
            src.write_text(text)
            done = subprocess.run([compiler, *all_flags, str(src), "-o", str(out)], capture_output=True, text=True, timeout=300)
            if done.returncode == 0:
                os.replace(out, path)  # atomic: a concurrent process sees the whole library or none
                return path
            errors.append(done.stderr.strip()[-2000:])
    raise RuntimeError(f"building {name} failed: {errors[-1]}")


def _load(name: str, make: Any) -> Any:
    """Library ``name``, built by ``make()`` once per process (``None``, with the reason in
    :func:`build_error`, when that fails); the lock only guards the first build."""
    if not enabled():
        return None
    if name in _libraries:  # called per kernel call: no lock once built
        return _libraries[name]
    with _lock:
        if name not in _libraries:
            try:
                _libraries[name] = make()
            except (OSError, RuntimeError, subprocess.SubprocessError, ImportError) as e:
                _libraries[name] = None
                _errors[name] = f"{type(e).__name__}: {e}"
        return _libraries[name]


def _event_ctypes() -> Any:
    lib = ctypes.CDLL(str(build("event_matmul", SOURCE, CXX_FLAGS)))
    p, i64, c_int = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    i32 = ctypes.c_int32
    signatures = {"np_spike_masks": [p, p, p, p, i64, i64, c_int],                   # x, masks, counts, binary|NULL, N, K
                  "np_masked_matmul": [p, p, p, p, i32, p, i64, i64, i64, c_int],    # x, w, bias|NULL, masks, binary, out, N, K, M
                  "np_masked_matmul_xt": [p, p, p, p, i32, p, p, i64, i64, i64, c_int]}  # x, g, masks, counts, binary, out, gsum|NULL
    for name, argtypes in signatures.items():
        for suffix in ("f32", "f64"):
            f = getattr(lib, f"{name}_{suffix}")
            f.argtypes, f.restype = argtypes, i64
    return lib


def event_library() -> Any:
    """The event kernels as a ``ctypes`` library, or ``None``.  Three steps (``_f32`` / ``_f64``):

    * ``np_spike_masks(x, masks, counts, binary, N, K, threads)``: one read of ``x`` (``N x K``) into bit masks of
      its non-zeros (``N x ceil(K / 64)`` 64-bit words), per-row counts (int32) and, unless ``binary`` is NULL,
      an int32 flag: 1 when every non-zero is exactly 1 (spikes); returns the total, from which the caller
      chooses between the event kernel and a dense product;
    * ``np_masked_matmul(x, w, bias, masks, binary, out, N, K, M, threads)``: ``out = x @ w (+ bias, unless
      NULL)`` from the masks, reading ``x``'s values only where ``binary`` is 0 (0 is always correct);
    * ``np_masked_matmul_xt(x, g, masks, counts, binary, out, gsum, N, K, M, threads)``: ``out = x^T @ g`` from
      the same masks and, unless ``gsum`` is NULL, ``gsum = g.sum(0)`` (a bias's gradient) from the same read of
      ``g``.

    The products return 0.  Negative returns: :func:`check_status`."""
    return _load("event_matmul", _event_ctypes)


def _event_ffi() -> Any:
    import jax.ffi

    flags = (*CXX_FLAGS, "-DNEUROPLASTIC_XLA_FFI", f"-I{jax.ffi.include_dir()}")
    lib = ctypes.CDLL(str(build("event_matmul_ffi", SOURCE, flags)))
    for symbol, target in FFI_TARGETS.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    return lib


#: XLA FFI handler symbol -> the custom-call target name it is registered under (CPU)
FFI_TARGETS = {
    "NpSpikeMasksF32": "neuroplastic_spike_masks_f32",
    "NpSpikeMasksF64": "neuroplastic_spike_masks_f64",
    "NpEventMatmulF32": "neuroplastic_event_matmul_f32",
    "NpEventMatmulF64": "neuroplastic_event_matmul_f64",
    "NpEventMatmulXtF32": "neuroplastic_event_matmul_xt_f32",
    "NpEventMatmulXtF64": "neuroplastic_event_matmul_xt_f64",
}


def event_library_ffi() -> Any:
    """The event kernels registered as XLA FFI targets (:data:`FFI_TARGETS`) for JAX on the CPU, or ``None``."""
    return _load("event_matmul_ffi", _event_ffi)


#: the LIF loops' XLA FFI handlers -> their custom-call target names (CPU)
LIF_FFI_TARGETS = {
    "NpLifForwardF32": "neuroplastic_lif_forward_f32",
    "NpLifForwardF64": "neuroplastic_lif_forward_f64",
    "NpLifBackwardF32": "neuroplastic_lif_backward_f32",
    "NpLifBackwardF64": "neuroplastic_lif_backward_f64",
    "NpLifBackwardFastSigmoidF32": "neuroplastic_lif_backward_fast_sigmoid_f32",
    "NpLifBackwardFastSigmoidF64": "neuroplastic_lif_backward_fast_sigmoid_f64",
}
#: the LIF loops for JAX: multiply-adds contracted as XLA's CPU backend contracts ``alpha * v + I`` (an FMA
#: where the CPU has one), so the forward stays bit-identical to the reference scan (tests/test_fused.py);
#: the torch build keeps them apart, as torch's own operations do
LIF_FLAGS = ("-std=c++17", "-O3", "-ffp-contract=fast", "-fno-fast-math", "-fPIC", "-shared", "-pthread", "-w")


def slope_in_loops(surrogate: Any) -> bool:
    """Whether the LIF loops compute ``surrogate``'s slope themselves (``lif_backward_*`` with no slope array):
    exactly :class:`~neuroplastic.surrogates.FastSigmoid` (not a subclass, which may change ``derivative``)
    with a Python number ``beta``.  The loops use its operations in its order, so the same bits as the
    slope array a framework computes (tested on both backends)."""
    from ..surrogates import FastSigmoid

    beta = getattr(surrogate, "beta", None)
    return type(surrogate) is FastSigmoid and isinstance(beta, (int, float)) and not isinstance(beta, bool)


def _lif_ffi() -> Any:
    import jax.ffi

    here = Path(__file__).parent
    text = (here / "lif_loops.c").read_text() + "\n" + (here / "lif_ffi.cc").read_text()
    lib = ctypes.CDLL(str(build("lif_ffi", text, (*LIF_FLAGS, f"-I{jax.ffi.include_dir()}"))))
    for symbol, target in LIF_FFI_TARGETS.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    return lib


def lif_library_ffi() -> Any:
    """The LIF loops (``lif_loops.c``) as XLA FFI targets (:data:`LIF_FFI_TARGETS`) for JAX on the CPU, or ``None``."""
    return _load("lif_ffi", _lif_ffi)


def build_error(name: str = "event_matmul") -> str | None:
    """Why library ``name`` (``event_matmul``, ``event_matmul_ffi`` or ``lif_ffi``) is unavailable, if it is."""
    if not enabled():
        return "NEUROPLASTIC_C_KERNELS=0"
    return _errors.get(name)


def max_nonzeros(size: int, m: int) -> int:
    """The most non-zeros an ``x`` of ``size`` entries may have for ``x @ w`` with ``m`` output columns to take the
    event kernel (:func:`max_density`), compared with the count that comes with the masks of ``x``'s non-zeros."""
    return int(max_density(m) * size)


def max_density(m: int) -> float:
    """The highest density of ``x`` at which ``x @ w`` with ``m`` output columns takes the event kernel:
    :data:`MAX_DENSITY` from :data:`WIDE_SIDE` columns up, :data:`NARROW_MAX_DENSITY` below."""
    return MAX_DENSITY if m >= WIDE_SIDE else NARROW_MAX_DENSITY


def worth_it(rows: int, k: int, m: int, min_side: int | None = None) -> bool:
    """Whether a product of this size is large enough for the event kernel
    (``rows * k * m >= MIN_WORK`` and ``m >= min_side``, by default :data:`MIN_SIDE`)."""
    return rows * k * m >= MIN_WORK and m >= (MIN_SIDE if min_side is None else min_side)


def event_product_fits(x_shape: tuple, w_shape: tuple, min_side: int | None = None) -> bool:
    """The framework-free part of whether ``x @ w`` may take the event kernel: ``x`` is ``(..., K)``
    and ``w`` ``(K, M)``, the product is :func:`worth_it` (with the backend's ``min_side``), and
    :func:`events_enabled`."""
    if len(x_shape) < 2 or len(w_shape) != 2 or x_shape[-1] != w_shape[0]:
        return False
    rows = 1
    for d in x_shape[:-1]:
        rows *= int(d)
    return events_enabled() and worth_it(rows, int(w_shape[0]), int(w_shape[1]), min_side)


def usable_threads() -> int:
    """CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_status(code: int, what: str) -> None:
    """Raise for a kernel's failure code (-1: out of memory, other negatives: failure)."""
    if code == -1:
        raise MemoryError(f"{what}: out of memory in the event kernel")
    if code < 0:
        raise RuntimeError(f"{what}: the event kernel failed (code {code})")


__all__ = ["FFI_TARGETS", "HUGE_PAGES_TUNABLE", "exec_with_huge_pages", "huge_pages_env", "LARGE_BUFFERS", "LIF_RESET_CODES", "event_product_fits", "keep_freed_memory", "LIF_FFI_TARGETS", "lif_library_ffi", "MAX_DENSITY", "MIN_SIDE", "MIN_WORK", "build", "build_error", "c_compiler", "check_status", "cpu_signature", "cxx_compiler",
           "enabled", "events_enabled", "event_library", "event_library_ffi", "kernel_dir", "max_density", "max_nonzeros", "NARROW_MAX_DENSITY", "slope_in_loops", "usable_threads", "WIDE_SIDE",
           "worth_it"]
