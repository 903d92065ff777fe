"""Binning event streams (time, channel) into time-major frames, shared by the neuromorphic loaders."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ._common import check_bool, check_choice, check_float, check_int, check_optional_int
from .arrays import Dataset

ALIGNS = ("zero", "first")


def bin_events(
    t_us: np.ndarray, channels: np.ndarray, n_steps: int, dt_us: float, n_channels: int, start_us: float = 0.0
) -> np.ndarray:
    """Event counts ``(n_steps, n_channels)`` float32: bin ``k`` counts the events with
    ``start + k dt <= t < start + (k+1) dt``; events before ``start`` or after the last bin are dropped."""
    t = np.asarray(t_us, dtype=np.float64)
    ch = np.asarray(channels, dtype=np.int64)
    b = np.floor((t - start_us) / dt_us)
    keep = (b >= 0) & (b < n_steps)
    flat = b[keep].astype(np.int64) * n_channels + ch[keep]
    return np.bincount(flat, minlength=n_steps * n_channels).reshape(n_steps, n_channels).astype(np.float32)


def sensor_channels(x: np.ndarray, y: np.ndarray, p: np.ndarray, sensor: tuple[int, int, int], factor: int) -> tuple[np.ndarray, int]:
    """Flat channel of each event and the channel count for a ``(W, H, P)`` sensor downsampled by ``factor``.

    The channel of ``(x, y, p)`` is ``p * H' * W' + (y // factor) * W' + x // factor`` with
    ``W' = ceil(W / factor)``, ``H' = ceil(H / factor)``: frames reshape to tonic's
    ``(T, P, H', W')`` layout.
    """
    w, h, npol = sensor
    w2, h2 = -(-w // factor), -(-h // factor)
    return (p.astype(np.int64) * h2 + y.astype(np.int64) // factor) * w2 + x.astype(np.int64) // factor, npol * h2 * w2


def check_sensor_events(dataset: str, source: str, x: np.ndarray, y: np.ndarray, p: np.ndarray, sensor: tuple[int, int, int]) -> None:
    """``ValueError`` naming ``source`` if an event lies outside the ``(W, H, P)`` sensor."""
    w, h, npol = sensor
    for name, v, n in (("x", x, w), ("y", y, h), ("polarity", p, npol)):
        if v.size and (v.min() < 0 or v.max() >= n):
            bad = v[(v < 0) | (v >= n)][0]
            raise ValueError(f"{dataset}: {source} has an event with {name}={bad}, outside the {w}x{h}x{npol} sensor")


def subset(n: int, limit: int | None, seed: int) -> np.ndarray:
    """All ``n`` indices, or ``limit`` of them drawn without replacement by ``default_rng(seed)``, sorted."""
    if limit is None or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def check_binning(dataset: str, n_steps: int, duration_ms: float, downsample: int, binary: bool, align: str,
                  max_train: int | None, max_test: int | None, seed: int) -> None:
    """Validate the binning options every neuromorphic loader shares."""
    check_int(dataset, "n_steps", n_steps, 1)
    check_float(dataset, "duration_ms", duration_ms, low=0.0, low_open=True)
    check_int(dataset, "downsample", downsample, 1)
    check_bool(dataset, "binary", binary)
    check_choice(dataset, "align", align, ALIGNS)
    check_optional_int(dataset, "max_train", max_train, 1)
    check_optional_int(dataset, "max_test", max_test, 1)
    check_int(dataset, "seed", seed, 0)


def frames(
    read: Callable[[int], tuple[np.ndarray, np.ndarray]], count: int, n_steps: int, duration_ms: float, n_channels: int,
    align: str, binary: bool,
) -> np.ndarray:
    """``(n_steps, count, n_channels)`` float32 frames; ``read(i)`` gives sample ``i``'s times (µs) and channels."""
    dt_us = duration_ms * 1000.0 / n_steps
    out = np.zeros((n_steps, count, n_channels), dtype=np.float32)
    for i in range(count):
        t, ch = read(i)
        start = float(t.min()) if (align == "first" and t.size) else 0.0
        out[:, i] = bin_events(t, ch, n_steps, dt_us, n_channels, start)
    if binary:
        np.minimum(out, 1.0, out=out)
    return out


def event_dataset(
    name: str, splits: Sequence[tuple[Callable[[int], tuple[np.ndarray, np.ndarray]], np.ndarray]], n_classes: int,
    n_steps: int, duration_ms: float, n_channels: int, align: str, binary: bool, meta: dict,
) -> Dataset:
    """A :class:`Dataset` from a train and a test ``(read, labels)`` pair."""
    arrays = []
    for read, labels in splits:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(f"{name}: labels must lie in 0..{n_classes - 1}, found {labels.min()}..{labels.max()}")
        arrays += [frames(read, len(labels), n_steps, duration_ms, n_channels, align, binary), labels]
    return Dataset(name, *arrays, n_classes=n_classes, dt=duration_ms / n_steps, meta=meta)


def camera_dataset(
    name: str, find: Callable[[], Sequence[tuple[list, np.ndarray]]], read_file: Callable[[Any], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    sensor: tuple[int, int, int], n_classes: int, n_steps: int, duration_ms: float, downsample: int, binary: bool,
    align: str, max_train: int | None, max_test: int | None, seed: int,
) -> Dataset:
    """An event-camera dataset (N-MNIST, DVS Gesture); ``find()`` gives the train and test ``(files, labels)``.

    ``read_file(path) -> (x, y, p, t)`` reads one recording; events are checked against
    ``sensor = (W, H, P)``, mapped to ``(p, y // downsample, x // downsample)`` channels and
    binned by :func:`event_dataset`.  ``max_train``/``max_test`` keep a random subset.
    """
    check_binning(name, n_steps, duration_ms, downsample, binary, align, max_train, max_test, seed)
    found = find()  # after the argument checks: a bad option is reported before missing files
    n_channels = sensor_channels(np.zeros(0), np.zeros(0), np.zeros(0), sensor, downsample)[1]
    splits = []
    for (files, labels), limit in zip(found, (max_train, max_test)):
        keep = subset(len(files), limit, seed)
        chosen = [files[i] for i in keep]

        def read(i: int, chosen=chosen) -> tuple[np.ndarray, np.ndarray]:
            x, y, p, t = read_file(chosen[i])
            check_sensor_events(name, str(chosen[i]), x, y, p, sensor)
            return t, sensor_channels(x, y, p, sensor, downsample)[0]

        splits.append((read, np.asarray(labels)[keep]))
    return event_dataset(
        name, splits, n_classes, n_steps, duration_ms, n_channels, align, binary,
        meta={"root": str(found[0][0][0].parents[1]), "downsample": downsample, "align": align, "binary": binary,
              "frame_shape": (sensor[2], -(-sensor[1] // downsample), -(-sensor[0] // downsample))},
    )
