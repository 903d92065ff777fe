"""Yin-Yang (Kriener, Göltz & Petrovici 2021, "The Yin-Yang dataset", arXiv:2102.08211).

Points in the unit square inside a yin-yang sign of outer radius ``r_big`` with two dots of
radius ``r_small``; 3 classes numbered as in the reference generator
``YinYangDataset(r_small=0.1, r_big=0.5)`` (its ``class_names``: 0 yin, 1 yang, 2 dot);
4 features ``(x, y, 1-x, 1-y)``.

The generator follows the reference: a ``numpy.random.RandomState(seed)``; per sample it
draws the goal class with ``randint(3)``, then draws ``rand(2) * 2 r_big`` until the point
lies in the big circle and belongs to the goal class (rejection sampling, so the classes are
balanced in expectation).  The same seeds give the same numbers as the reference.
"""

from __future__ import annotations

import numpy as np

from ._common import check_choice, check_float, check_int
from .arrays import Dataset

def _dist(x: float, y: float, cx: float, cy: float) -> float:
    # written as the reference computes it (not np.hypot), so that boundary cases round alike
    return float(np.sqrt((x - cx) ** 2 + (y - cy) ** 2))


def yinyang_class(x: float, y: float, r_small: float = 0.1, r_big: float = 0.5) -> int:
    """The reference's class of the point ``(x, y)`` inside the big circle: 2 in a dot, else 0 or 1 by half."""
    d_right = _dist(x, y, 1.5 * r_big, r_big)
    d_left = _dist(x, y, 0.5 * r_big, r_big)
    if d_right < r_small or d_left < r_small:
        return 2
    yin = d_right <= r_small or (r_small < d_left <= 0.5 * r_big) or (y > r_big and d_right > 0.5 * r_big)
    return int(yin)


def generate_yinyang(size: int, seed: int, r_small: float = 0.1, r_big: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """``size`` samples: features ``(size, 4)`` float64 ``(x, y, 1-x, 1-y)`` and labels ``(size,)`` int64."""
    rng = np.random.RandomState(seed)
    feats = np.empty((size, 4))
    labels = np.empty(size, dtype=np.int64)
    for i in range(size):
        goal = rng.randint(3)
        while True:
            x, y = rng.rand(2) * 2.0 * r_big
            if _dist(x, y, r_big, r_big) > r_big:
                continue
            if yinyang_class(x, y, r_small, r_big) == goal:
                break
        feats[i] = (x, y, 1.0 - x, 1.0 - y)
        labels[i] = goal
    return feats, labels


def load_yinyang(
    n_train: int = 5000,
    n_validation: int = 1000,
    n_test: int = 1000,
    seed_train: int = 42,
    seed_validation: int = 41,
    seed_test: int = 40,
    r_small: float = 0.1,
    r_big: float = 0.5,
    eval_split: str = "test",
) -> Dataset:
    """Yin-Yang as one static step ``(1, N, 4)``: 5000 train / 1000 validation / 1000 test.

    The sizes and seeds default to the reference repository's (train 42, validation 41,
    test 40).  ``x_test``/``y_test`` hold the test set; the validation set is in
    ``meta["x_validation"]`` ``(1, 1000, 4)`` and ``meta["y_validation"]``.
    ``eval_split="validation"`` swaps them (``x_test`` is then the validation set and
    ``meta`` holds the test set), for tuning on the validation set through the CLI.
    """
    name = "yinyang"
    n_train = check_int(name, "n_train", n_train, 1)
    n_validation = check_int(name, "n_validation", n_validation, 1)
    n_test = check_int(name, "n_test", n_test, 1)
    seeds = {k: check_int(name, k, v, 0) for k, v in (("seed_train", seed_train), ("seed_validation", seed_validation), ("seed_test", seed_test))}
    r_big = check_float(name, "r_big", r_big, low=0.0, low_open=True)
    r_small = check_float(name, "r_small", r_small, low=0.0, high=0.5 * r_big, low_open=True, high_open=True)
    check_choice(name, "eval_split", eval_split, ("test", "validation"))
    xtr, ytr = generate_yinyang(n_train, seeds["seed_train"], r_small, r_big)
    xva, yva = generate_yinyang(n_validation, seeds["seed_validation"], r_small, r_big)
    xte, yte = generate_yinyang(n_test, seeds["seed_test"], r_small, r_big)
    other = "validation"
    if eval_split == "validation":
        (xva, yva), (xte, yte), other = (xte, yte), (xva, yva), "test"

    def step(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.astype(np.float32)[None])

    return Dataset(
        name if eval_split == "test" else f"{name}-validation",
        step(xtr), ytr, step(xte), yte, n_classes=3, dt=1.0,
        meta={f"x_{other}": step(xva), f"y_{other}": yva, "eval_split": eval_split, **seeds, "r_small": r_small, "r_big": r_big},
    )
