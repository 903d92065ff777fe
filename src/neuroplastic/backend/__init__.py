"""Backend layer: the only place that imports torch or JAX.

A backend is chosen by name (``"torch"`` or ``"jax"``) with :func:`get_backend`.  It
offers numpy-style array operations (``B.exp``, ``B.sum(x, axis=...)``), function
transforms (``value_and_grad``, ``vjp``, ``jvp``, ``jacobian``), ``scan`` over time,
``jit``, explicit random keys, and the spike function ``B.spike(x, surrogate)``.

Cell, layer and rule code receives arrays and asks :func:`ops_for` for the backend that
owns them, so one code path runs on both frameworks (and, for plain math, on numpy).
Frameworks are imported lazily, on first use of that backend; importing
``neuroplastic`` imports neither.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .base import Backend

BACKENDS = ("torch", "jax")


#: spins an idle OpenMP thread of torch makes before it sleeps (``GOMP_SPINCOUNT``, libgomp's unit,
#: roughly 0.1 ms): long enough to catch the next small operation of an eager step, short enough that
#: a thread waiting on a busy machine soon gives its core back.  Measured on a 2-core AMD EPYC,
#: ``python bench/run.py --suite rules --rules bptt,ottt:online --backends torch`` (seconds per epoch):
#: passive (0 spins) 0.22 / 0.60, 10000 spins 0.11 / 0.33, ACTIVE (no sleep) 0.095 / 0.33; with two
#: busy processes beside it, passive 0.15, 10000 spins 0.27, 100000 spins (libgomp's own default is
#: 300000) up to 3.3 for BPTT.
OPENMP_SPIN_COUNT = 10_000


def openmp_wait_env() -> dict[str, str]:
    """The OpenMP waiting settings of :func:`prefer_passive_openmp` as environment variables, keeping
    the caller's own: ``OMP_WAIT_POLICY=PASSIVE`` and a bounded ``GOMP_SPINCOUNT`` unless either
    is set (a user's ``OMP_WAIT_POLICY`` alone keeps libgomp's spin count for that policy)."""
    import os

    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ}
    return {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": str(OPENMP_SPIN_COUNT)}


def prefer_passive_openmp() -> bool:
    """Ask torch's idle OpenMP threads to spin briefly, then sleep (``OMP_WAIT_POLICY=PASSIVE`` with
    ``GOMP_SPINCOUNT`` = :data:`OPENMP_SPIN_COUNT`), unless the user set either variable; ``False``
    when torch is already loaded (the variables are read then).

    With fewer free cores than threads (other jobs, several trials on one machine) every parallel
    operation otherwise waits for a descheduled spinning thread: on a loaded 2-core machine BPTT on the
    main job's network took 1-1.8 s a batch with 2 threads and libgomp's default spinning instead of
    0.2 s.  Sleeping at once instead costs a thread wake-up per parallel region, which halved the speed
    of the main job's small eager steps on an idle machine; the bounded spin keeps most of both (numbers
    at :data:`OPENMP_SPIN_COUNT`).  Entry points call this (the CLI, sweep trials, the test suite),
    never an import.
    """
    import os
    import sys

    if "torch" in sys.modules:
        return False
    os.environ.update(openmp_wait_env())
    return True


@functools.lru_cache(maxsize=None)
def _make(name: str, device: str | None, dtype: str, compile: bool = False) -> Backend:
    if name == "torch":
        from .torch import TorchBackend

        return TorchBackend(device=device, dtype=dtype, compile=compile)
    if name == "jax":
        from .jax import JaxBackend

        return JaxBackend(device=device, dtype=dtype)
    if name == "numpy":
        from .numpy import NumpyBackend

        return NumpyBackend(device=device, dtype=dtype)
    raise ValueError(f"backend: unknown backend {name!r}; choose one of {list(BACKENDS)}")


def get_backend(name: str | Backend = "jax", device: str | None = None, dtype: str = "float32", compile: bool = False) -> Backend:
    """The backend called ``name`` (``"torch"`` or ``"jax"``) on ``device`` with float ``dtype``.

    ``device`` is ``None`` (the framework's default), ``"cpu"``, ``"cuda"`` or ``"cuda:1"``.
    ``compile=True`` makes torch's ``jit`` trace and compile (:mod:`.compile_torch`: seconds to
    start, then several times faster steps); JAX always compiles, and ignores it.
    """
    if isinstance(name, Backend):
        return name
    if not isinstance(name, str):
        raise ValueError(f"backend: expected a backend name, got {type(name).__name__}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype: expected 'float32' or 'float64', got {dtype!r}")
    if not isinstance(compile, bool):
        raise ValueError(f"compile: expected True or False, got {compile!r}")
    return _make(name, device, dtype, compile and name == "torch")


def is_array(x: Any) -> bool:
    """True for a numpy array or an array of a framework backend (not for Python scalars)."""
    mod = type(x).__module__
    return isinstance(x, np.ndarray) or mod.startswith(("torch", "jax", "jaxlib"))


def ops_for(x: Any) -> Backend:
    """The backend owning array ``x`` (torch tensor, JAX array or tracer, or numpy array)."""
    mod = type(x).__module__
    if mod.startswith("torch"):
        return _make("torch", str(x.device), str(x.dtype).replace("torch.", "") if x.is_floating_point() else "float32")
    if mod.startswith("jax") or mod.startswith("jaxlib"):
        dt = str(x.dtype)
        return _make("jax", None, dt if dt in ("float32", "float64") else "float32")
    if mod.startswith("numpy") or isinstance(x, (float, int)):
        dt = str(getattr(x, "dtype", "float64"))
        return _make("numpy", None, dt if dt in ("float32", "float64") else "float64")
    raise TypeError(f"ops_for: cannot tell the backend of a {type(x).__name__}")


__all__ = ["Backend", "BACKENDS", "get_backend", "is_array", "ops_for"]
