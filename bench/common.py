"""Helpers shared by the benchmarks: isolated subprocesses, timing, memory, markdown.

Every benchmark configuration runs in a fresh Python process (:func:`run_isolated`), so
its peak memory is its own and no framework state (JAX's compilation cache, torch's
allocator, thread pools) leaks from one configuration into the next.  The child calls a
``measure(config) -> dict`` function named as ``"module:function"`` and hands its JSON
result back through a file.

Memory is read three ways:

* host: peak resident set size (``VmHWM`` in ``/proc/self/status``, falling back to
  ``getrusage().ru_maxrss``).  :func:`reset_peak_rss` restarts the high-water mark
  (``echo 5 > /proc/self/clear_refs``, Linux), so a phase's peak can be read on its own;
  :class:`RssPhase` reports a phase's peak minus the RSS at its start;
* GPU: :func:`gpu_memory_mark` / :func:`gpu_peak_increase` use
  ``torch.cuda.max_memory_allocated`` (reset per phase) or JAX's
  ``device.memory_stats()["peak_bytes_in_use"]`` (never reset: the increase is the
  process peak minus the bytes in use at the mark);
* XLA's static buffer assignment of a compiled JAX function
  (:func:`xla_memory_analysis`), a deterministic cross-check of the measured peaks.

Frameworks are imported lazily, in the child only: the parent process never loads torch
or JAX.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
MiB = 1024.0 * 1024.0

# ---------------------------------------------------------------------------- host memory


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            m = re.search(rf"^{key}:\s+(\d+)\s+kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def current_rss_bytes() -> int | None:
    """Resident set size of this process now (``VmRSS``), or ``None`` where unknown."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> int:
    """Peak resident set size of this process since start or the last :func:`reset_peak_rss`."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return ru if sys.platform == "darwin" else ru * 1024  # bytes on macOS, KiB on Linux


def reset_peak_rss() -> bool:
    """Restart the peak-RSS high-water mark; ``False`` where the OS cannot (then peaks are cumulative)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclass
class RssPhase:
    """Peak host RSS of a phase, over the RSS at its start.

    ``with RssPhase() as ph: work()`` then ``ph.increase_bytes``.  ``resettable`` is
    ``False`` where the high-water mark could not be restarted; the peak then also
    covers everything before the phase and the increase is an upper bound.
    """

    start_bytes: int = 0
    peak_bytes: int = 0
    resettable: bool = True

    def __enter__(self) -> "RssPhase":
        gc.collect()
        self.resettable = reset_peak_rss()
        self.start_bytes = current_rss_bytes() or peak_rss_bytes()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.peak_bytes = peak_rss_bytes()

    @property
    def increase_bytes(self) -> int:
        return max(0, self.peak_bytes - self.start_bytes)


# ---------------------------------------------------------------------------- GPU memory


def is_gpu(device: str | None) -> bool:
    """Whether ``device`` names a GPU (``"cuda"``, ``"cuda:1"``, ``"gpu"``)."""
    return device is not None and device.split(":")[0] in ("cuda", "gpu")


def _jax_device(device: str | None) -> Any:
    import jax

    kind, _, idx = (device or "cpu").partition(":")
    kind = {"cuda": "gpu"}.get(kind, kind)
    return jax.devices(kind)[int(idx or 0)]


def gpu_memory_mark(backend: str, device: str | None) -> int | None:
    """Start a GPU-memory phase; returns the bytes in use now (``None`` off the GPU).

    torch: resets ``max_memory_allocated``; JAX: reads ``bytes_in_use`` (JAX cannot reset
    its peak counter, see the module docstring).
    """
    if not is_gpu(device):
        return None
    if backend == "torch":
        import torch

        dev = torch.device(device)
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        return int(torch.cuda.memory_allocated(dev))
    if backend == "jax":
        stats = _jax_device(device).memory_stats() or {}
        return int(stats.get("bytes_in_use", 0))
    raise ValueError(f"backend: unknown backend {backend!r}")


def gpu_peak_increase(backend: str, device: str | None, mark: int | None) -> int | None:
    """Peak GPU bytes allocated since :func:`gpu_memory_mark` over the bytes in use at the mark."""
    if not is_gpu(device) or mark is None:
        return None
    if backend == "torch":
        import torch

        dev = torch.device(device)
        torch.cuda.synchronize(dev)
        return max(0, int(torch.cuda.max_memory_allocated(dev)) - mark)
    if backend == "jax":
        stats = _jax_device(device).memory_stats() or {}
        if "peak_bytes_in_use" not in stats:
            return None
        return max(0, int(stats["peak_bytes_in_use"]) - mark)
    raise ValueError(f"backend: unknown backend {backend!r}")


def device_name(backend: str, device: str | None) -> str:
    """What the framework calls the device it runs on (the GPU's model, or ``"cpu"``)."""
    if backend == "torch" and is_gpu(device):
        import torch

        return str(torch.cuda.get_device_name(torch.device(device)))
    if backend == "jax":
        return str(_jax_device(device).device_kind)
    return "cpu"


def xla_memory_analysis(compiled: Any) -> dict | None:
    """Sizes in bytes from XLA's buffer assignment of an AOT-compiled JAX function, or ``None``."""
    try:
        ma = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every JAX version / platform offers it
        return None
    if ma is None:
        return None
    keys = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "alias_size_in_bytes", "generated_code_size_in_bytes")
    return {k.replace("_in_bytes", "_bytes"): int(getattr(ma, k)) for k in keys if hasattr(ma, k)}


# ---------------------------------------------------------------------------- timing


def block(backend: str, device: str | None, out: Any) -> Any:
    """Wait until ``out`` is computed: JAX's ``block_until_ready``; a CUDA sync for torch on GPU."""
    if backend == "jax":
        import jax

        return jax.block_until_ready(out)
    if backend == "torch" and is_gpu(device):
        import torch

        torch.cuda.synchronize(torch.device(device))
    return out


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 0, sync: Callable[[Any], Any] = lambda o: o,
               min_seconds: float = 0.0, max_repeats: int | None = None) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones, and of more calls (up to
    ``max_repeats`` in all) while the timed calls add up to less than ``min_seconds``.

    A fast step's median over five calls spans a fraction of a second, which a burst of another process on a
    shared machine can cover; timing such steps for ``min_seconds`` gives every implementation the same
    protection.  ``sync(out)`` must wait for the call's result (asynchronous frameworks).  The result of each
    call is dropped before the next starts, so calls do not overlap in memory.
    """
    if not (isinstance(repeats, int) and repeats > 0):
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if not (isinstance(warmup, int) and warmup >= 0):
        raise ValueError(f"warmup must be a non-negative integer, got {warmup!r}")
    if not min_seconds >= 0:
        raise ValueError(f"min_seconds must be >= 0, got {min_seconds!r}")
    if max_repeats is not None and not (isinstance(max_repeats, int) and max_repeats > 0):
        raise ValueError(f"max_repeats must be a positive integer or None, got {max_repeats!r}")
    limit = max(repeats, max_repeats) if max_repeats is not None else repeats
    for _ in range(warmup):
        out = sync(fn())
        del out
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_seconds and len(times) < limit):
        t0 = time.perf_counter()
        out = sync(fn())
        times.append(time.perf_counter() - t0)
        del out
    return times


def summarize(times: Sequence[float]) -> dict:
    """Median, quartiles (inclusive method), IQR, min and count of ``times``."""
    xs = sorted(float(t) for t in times)
    if not xs:
        raise ValueError("times: need at least one measurement")
    if len(xs) == 1:
        q1 = q3 = xs[0]
    else:
        q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return {"median": statistics.median(xs), "q1": q1, "q3": q3, "iqr": q3 - q1, "min": xs[0], "n": len(xs)}


# ---------------------------------------------------------------------------- subprocesses


class BenchmarkError(RuntimeError):
    """A benchmark child process failed; the message holds the end of its output."""


def child_env(device: str | None, extra: dict | None = None) -> dict:
    """Environment of a child: repo root and ``src`` on ``PYTHONPATH``; JAX preallocation off on GPU."""
    env = dict(os.environ)
    paths = [str(REPO), str(REPO / "src")] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if is_gpu(device):
        # JAX would otherwise grab 75% of the GPU at start-up; allocate on demand instead
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    else:
        # keep a CPU run off any GPU the machine may have
        env.setdefault("JAX_PLATFORMS", "cpu")
    env.update(huge_pages_env(env))
    env.update(extra or {})
    return env


def huge_pages_env(env: dict | None = None) -> dict:
    """What every child gets so that glibc backs large blocks with transparent huge pages (the same for
    neuroplastic, the references and the peers: a setting of the process, which the ``neuroplastic``
    command applies to itself; :func:`neuroplastic.backend.native.huge_pages_env`); ``{}`` where it does
    not apply or neuroplastic is not importable."""
    try:
        from neuroplastic.backend import native
    except ImportError:
        return {}
    return native.huge_pages_env(os.environ if env is None else env)


def allocator_note() -> str:
    """The allocator settings the children run with, for the tables' machine line."""
    extra = huge_pages_env()
    if extra:
        return f"every process started with `GLIBC_TUNABLES={extra['GLIBC_TUNABLES']}` (transparent huge pages)"
    tunables = os.environ.get("GLIBC_TUNABLES")
    return f"`GLIBC_TUNABLES={tunables}`" if tunables else "default allocator settings (no transparent huge pages asked for)"


def run_isolated(target: str, config: dict, timeout: float | None = None, device: str | None = None, env: dict | None = None,
                 python: str | Path | None = None) -> dict:
    """Run ``target`` on ``config`` in a fresh Python process.

    ``target`` is ``"module:function"`` or ``"path/to/script.py:function"`` (a file,
    relative to the repository root, loaded by path: for scripts that run under another
    interpreter and cannot be imported as part of a package).  ``python`` is that
    interpreter (default: this one); the child needs only the standard library and the
    ``bench`` package (on its ``PYTHONPATH``) besides what ``target`` imports.

    The function gets the ``config`` dict and returns a JSON-serialisable dict, which is
    returned here with ``child_wall_s`` (the whole child, imports included) added.
    Raises :class:`BenchmarkError` when the child fails or outlives ``timeout`` seconds.
    """
    if ":" not in target:
        raise ValueError(f"target: expected 'module:function' or 'script.py:function', got {target!r}")
    with tempfile.TemporaryDirectory(prefix="neuroplastic-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [str(python or sys.executable), "-m", "bench.common", target, json.dumps(config), str(out)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=child_env(device, env), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchmarkError(f"{target} {config}: no result after {timeout:.0f} s (timeout)") from None
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not out.exists():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
            why = f"exit status {proc.returncode}" + (" (killed, out of memory?)" if proc.returncode in (-9, 137) else "")
            raise BenchmarkError(f"{target} {config}: {why}\n" + "\n".join(tail))
        result = json.loads(out.read_text())
    result["child_wall_s"] = wall
    return result


def load_target(target: str) -> Callable[[dict], dict]:
    """The function named by ``"module:function"`` or ``"path/to/script.py:function"``."""
    module, func = target.rsplit(":", 1)
    if module.endswith(".py"):
        path = Path(module) if Path(module).is_absolute() else REPO / module
        spec = importlib.util.spec_from_file_location(f"bench_script_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ValueError(f"target: cannot load the script {str(path)!r}")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    else:
        mod = importlib.import_module(module)
    return getattr(mod, func)


def _child_main(argv: Sequence[str]) -> int:
    target, config, out = argv
    fn = load_target(target)
    result = fn(json.loads(config))
    Path(out).write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------- machine and versions


def package_version(name: str) -> str | None:
    """Installed version of distribution ``name`` without importing it, or ``None``."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """CPU, core count, memory, OS and Python, plus the versions of the frameworks."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.MULTILINE)
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            m = re.search(r"^MemTotal:\s+(\d+)", f.read(), re.MULTILINE)
            mem = round(int(m.group(1)) / 1024 / 1024, 1) if m else None
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {
        "cpu": cpu,
        "cores": cores,
        "memory_gib": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {n: package_version(n) for n in ("neuroplastic", "torch", "jax", "jaxlib", "numpy")},
        "allocator": allocator_note(),
    }


def git_state(paths: Sequence[str] = ("src",)) -> dict | None:
    """The commit the checkout is on and how many files under ``paths`` differ from it
    (a benchmark measures the working tree, committed or not); ``None`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=30)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=REPO, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0 or dirty.returncode != 0:
        return None
    return {"commit": head.stdout.strip(), "changed_files": len([ln for ln in dirty.stdout.splitlines() if ln.strip()])}


def describe_git(state: dict | None) -> str:
    """``neuroplastic at commit abc1234 (+ N uncommitted changed files under src/)`` for a docs line."""
    if not state:
        return "neuroplastic's commit unknown"
    n = state.get("changed_files") or 0
    return f"neuroplastic at commit {state['commit'][:7]}" + (f" plus {n} uncommitted changed files under src/" if n else "")


def load_average() -> tuple[float, float, float] | None:
    """The 1/5/15-minute load averages, or ``None`` where unknown."""
    try:
        return os.getloadavg()
    except (AttributeError, OSError):
        return None


# ---------------------------------------------------------------------------- markdown


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub markdown table; ``align`` is one of ``l``/``r``/``c`` per column (default: right)."""
    align = align or "r" * len(header)
    if len(align) != len(header):
        raise ValueError(f"align: expected {len(header)} letters, got {align!r}")
    sep = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep[a] for a in align) + " |"]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"rows: a row has {len(row)} cells, the header {len(header)}")
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def markers(section: str) -> tuple[str, str]:
    """The start and end markers of a generated section of the docs."""
    return f"<!-- bench:{section}:start -->", f"<!-- bench:{section}:end -->"


def replace_section(text: str, section: str, body: str, heading: str | None = None) -> str:
    """``text`` with the part between ``section``'s markers replaced by ``body``.

    Where the markers are missing, a new section (with ``heading`` when given) is
    appended.  Text outside the markers is kept as it is.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", section):
        raise ValueError(f"section: use letters, digits, '_', '.', '-' only, got {section!r}")
    start, end = markers(section)
    block = f"{start}\n{body.strip()}\n{end}"
    i, j = text.find(start), text.find(end)
    if i >= 0 and j > i:
        return text[:i] + block + text[j + len(end):]
    if (i >= 0) != (j >= 0) or (i >= 0 and j < i):
        raise ValueError(f"section {section!r}: the docs hold only one of its markers, or them in the wrong order")
    parts = [text.rstrip("\n")] if text.strip() else []
    if heading:
        parts.append(heading)
    parts.append(block)
    return "\n\n".join(parts) + "\n"


def update_docs(path: str | Path, section: str, body: str, heading: str | None = None) -> Path:
    """Rewrite ``section`` of the markdown file ``path`` (created when missing)."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_section(text, section, body, heading))
    return path


@dataclass
class Progress:
    """Prints one line per step to stderr, with the elapsed time."""

    quiet: bool = False
    t0: float = field(default_factory=time.perf_counter)

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{time.perf_counter() - self.t0:7.1f} s] {msg}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
