"""Functional random keys: splitting is pure, children differ, and long chains stay cheap."""

from __future__ import annotations

import numpy as np
import pytest

from neuroplastic.backend import get_backend

ALL = ["numpy", "torch", "jax"]


@pytest.mark.parametrize("name", ALL)
def test_split_is_pure_and_deterministic(name):
    B = get_backend(name)
    key = B.key(3)
    a1, b1 = B.split(key)
    a2, b2 = B.split(key)  # splitting again gives the same children: the parent is not mutated
    draw = lambda k: np.asarray(B.to_numpy(B.normal(k, (5,))))
    np.testing.assert_array_equal(draw(a1), draw(a2))
    np.testing.assert_array_equal(draw(b1), draw(b2))
    assert not np.allclose(draw(a1), draw(b1))
    assert not np.allclose(draw(a1), draw(key))


@pytest.mark.parametrize("name", ALL)
def test_long_chain_of_splits_gives_distinct_keys_of_constant_size(name):
    B = get_backend(name)
    key, seen = B.key(0), set()
    n = 2000 if name != "jax" else 200  # jax dispatches one op per split
    size = None
    for _ in range(n):
        key, sub = B.split(key)
        seen.add(B.seed_from_key(sub))
        if isinstance(key, np.random.SeedSequence):
            # a key that grew by one spawn_key entry per split made 5,000 splits take 25 s
            size = size or (len(key.spawn_key), np.size(key.entropy))
            assert (len(key.spawn_key), np.size(key.entropy)) == size
    assert len(seen) == n
