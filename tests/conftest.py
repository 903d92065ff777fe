"""Shared test fixtures: both backends, float64 for gradient checks."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import numpy as np
import pytest

os.environ.setdefault("NEUROPLASTIC_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache"))
from neuroplastic.backend import prefer_passive_openmp  # noqa: E402

prefer_passive_openmp()  # as the CLI does: torch's idle OpenMP threads spin briefly, then sleep

# XLA compilation is most of the suite's time, and many tests (and the run folders, seeds and sweep
# trials they start, in this process or in subprocesses) compile the same programs again: JAX's
# persistent compilation cache in a fresh directory for this session (deleted at exit, so every
# session, a clean clone's included, starts cold) compiles each program once.  Set
# JAX_COMPILATION_CACHE_DIR yourself to keep a cache between sessions.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _jax_cache = tempfile.mkdtemp(prefix="neuroplastic-tests-xla-")
    atexit.register(shutil.rmtree, _jax_cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _jax_cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# the same for TorchInductor (torch's compile of rule steps, tests/test_compile_torch.py): a fresh cache
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    _inductor_cache = tempfile.mkdtemp(prefix="neuroplastic-tests-inductor-")
    atexit.register(shutil.rmtree, _inductor_cache, ignore_errors=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _inductor_cache

BACKENDS = ["torch", "jax"]


_LOST_GROUPS = pytest.StashKey[str]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """On a pytest-xdist worker under ``--dist loadgroup``: notice when the ``xdist_group`` marks were lost.

    pytest-xdist groups by a ``@group`` suffix it writes into each marked test's node ID; with
    pytest 9.2 that write no longer takes (pytest-xdist issue #1386) and the groups are spread
    over the workers without a word (two Ray clusters at once).  constraints.txt pins pytest
    below 9.2; with any other combination the grouped tests fail at setup, saying why.
    """
    if not getattr(config.option, "loadgroup", False):
        return
    lost = [item for item in items if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid]
    if lost:
        import xdist

        config.stash[_LOST_GROUPS] = (
            f"pytest {pytest.__version__} with pytest-xdist {xdist.__version__}: --dist loadgroup lost the xdist_group "
            f"of {len(lost)} tests (pytest-xdist issue #1386), so tests that must share one worker may run on two; "
            f"install the versions of constraints.txt (make install) or run without -n")
        for item in lost:
            item.stash[_LOST_GROUPS] = ""


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if _LOST_GROUPS in item.stash:
        pytest.fail(item.config.stash[_LOST_GROUPS], pytrace=False)


@pytest.fixture(params=BACKENDS)
def backend_name(request) -> str:
    return request.param


@pytest.fixture
def B64(backend_name):
    from neuroplastic.backend import get_backend

    return get_backend(backend_name, dtype="float64")


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))
