"""Shared test fixtures: both backends, float64 for gradient checks."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("NEUROPLASTIC_CACHE", os.path.join(os.path.dirname(__file__), "..", ".cache"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does (neuroplastic.backend.prefer_passive_openmp)

BACKENDS = ["torch", "jax"]


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
