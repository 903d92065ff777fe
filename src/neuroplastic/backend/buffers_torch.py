"""Reused memory for the large CPU outputs of the torch kernels (the (T, B, N) arrays of a long sequence).

torch's CPU allocator hands every freed tensor back to ``malloc``, and glibc hands a block above its mmap
threshold (at most 32 MiB unless raised) back to the kernel at once: the next tensor of that size is a fresh
mapping whose pages the kernel clears again as they are first touched.  A BPTT step of the peers benchmark's
network at H=512 (T=500, batch 64) allocates ten (500, 64, 512) float32 arrays of 64 MiB (currents,
membranes, spikes and their gradients), and a fifth of its CPU time was the kernel clearing pages (``perf``).
Raising glibc's thresholds keeps the memory but fragments the heap (peak RSS +300 MiB at H=512, 1.6 -> 3.0 GB
at H=2048: :func:`.native.keep_freed_memory`).  torch's CUDA allocator caches blocks; its CPU allocator does not.

:class:`LargeBufferPool` keeps the blocks of the tensors it served when they die and serves the next request
of exactly that size from them, and never holds more (kept and in use together) than its tensors once used at
the same time: a training loop asks for the same sizes step after step, so it keeps the step's own peak, which
the process reaches anyway, and a change of sizes gives old blocks back before new ones are mapped.  The same
peak RSS, no page clearing after the first step (H=512: 0.33-0.35 -> 0.27-0.28 s a step, system time 108-141 -> 3
ms; H=2048: 3.6-3.7 -> 3.0-3.4 s).  A block goes back to the pool only when nothing refers to its memory any
more (no tensor, view or numpy array), so a served tensor never shares memory with a live one.

It serves CPU tensors of at least ``min_bytes`` (:data:`MIN_BYTES`; smaller ones stay with ``malloc``; torch's
CUDA allocator caches blocks already), and keeps at most ``max_free_bytes`` free: past that the
least recently freed blocks go back to the system.  The tensors it serves are ordinary CPU tensors whose storage
cannot be resized (like ``torch.from_numpy``'s).

The kernels (:mod:`.kernels_torch`, :mod:`.events_torch`) take their outputs from :func:`empty`, which uses
the process's pool (:func:`buffer_pool`): one made on first use, ``None`` with ``NEUROPLASTIC_BUFFER_POOL=0``
or after :func:`use_buffer_pool` (``None``: plain ``torch.empty``).  ``buffer_pool().release()`` gives the kept
blocks back to the system.
"""

from __future__ import annotations

import math
import mmap
import os
import threading
import weakref
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np
import torch

_NUMPY = {torch.float32: np.float32, torch.float64: np.float64, torch.int32: np.int32, torch.int64: np.int64}
#: blocks below this many bytes stay with malloc.  4 MiB, not glibc's largest automatic mmap threshold (32 MiB):
#: the (500, 64, 128) float32 arrays (16 MiB) of the peers network at H=128 fragmented glibc's heap, and the
#: ffwd benchmark's torch step peaked at +210-230 MiB RSS with 32 MiB against +128-132 MiB with 4 MiB (the
#: same time; JAX +127 MiB)
MIN_BYTES = 4 << 20
#: freed bytes a pool keeps at most by default
MAX_FREE_BYTES = 4 << 30


class LargeBufferPool:
    """Exact-size reuse of large CPU blocks (module docstring).

    ``min_bytes``: smaller requests go to ``torch.empty``; ``max_free_bytes``: the most freed memory kept.
    ``served`` / ``reused`` count the requests it served and those served from a kept block.

    The pool never holds more than its tensors once used at the same time (``peak_bytes``), unless they use more
    now: a request that no kept block fits gives back the least recently freed blocks first, as many as keep
    the kept and the used bytes together within that peak.  A training loop asks for the same sizes at every
    step and loses nothing; a loop whose sizes change (another sequence length, a last smaller batch) does not
    pile up blocks of the old sizes beside the new ones."""

    def __init__(self, min_bytes: int = MIN_BYTES, max_free_bytes: int = MAX_FREE_BYTES) -> None:
        for name, value in (("min_bytes", min_bytes), ("max_free_bytes", max_free_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected a non-negative number of bytes, got {value!r}")
        self.min_bytes, self.max_free_bytes = max(1, min_bytes), max_free_bytes
        self._free: OrderedDict[int, list[mmap.mmap]] = OrderedDict()  # size -> blocks; least recently freed first
        self._free_bytes = 0
        self._used_bytes = 0  # served blocks whose memory something still refers to
        self.peak_bytes = 0  # the most bytes of served blocks in use at once
        # re-entrant: a tensor may die (and its block come back) in a garbage collection inside a locked section
        self._lock = threading.RLock()
        self.served = self.reused = 0

    @property
    def free_bytes(self) -> int:
        """Bytes kept for reuse now."""
        return self._free_bytes

    @property
    def used_bytes(self) -> int:
        """Bytes of the served blocks in use now."""
        return self._used_bytes

    def empty(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised contiguous CPU tensor of ``shape`` and ``dtype``: from a kept block of its size where
        there is one, from a new block if it is large enough, else ``torch.empty``."""
        shape = tuple(int(s) for s in shape)
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        if nbytes < self.min_bytes or dtype not in _NUMPY:
            return torch.empty(shape, dtype=dtype)
        block = None
        dropped: list[mmap.mmap] = []
        with self._lock:
            blocks = self._free.get(nbytes)
            if blocks:
                block = blocks.pop()
                self._free_bytes -= nbytes
                if not blocks:
                    del self._free[nbytes]
                self.reused += 1
            else:  # a new block: kept ones of other sizes go first if the pool would pass its peak
                while self._free_bytes and self._free_bytes + self._used_bytes + nbytes > self.peak_bytes:
                    dropped.append(self._drop_oldest())
            self.served += 1
            self._used_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self._used_bytes)
        del dropped  # unmapped here, outside the lock
        if block is None:
            block = mmap.mmap(-1, nbytes)
            if hasattr(mmap, "MADV_HUGEPAGE"):  # 2 MiB pages where the kernel's THP mode is madvise
                try:
                    block.madvise(mmap.MADV_HUGEPAGE)
                except OSError:
                    pass
        array = np.frombuffer(block, dtype=_NUMPY[dtype], count=count)
        # the flat array is the base of every view of this memory (numpy's and torch's): it dies last
        weakref.finalize(array, self._give_back, block).atexit = False
        return torch.from_numpy(array.reshape(shape))

    def _drop_oldest(self) -> mmap.mmap:
        """Take the least recently freed block out of the pool (the caller holds the lock)."""
        size, blocks = next(iter(self._free.items()))
        block = blocks.pop(0)
        self._free_bytes -= size
        if not blocks:
            del self._free[size]
        return block

    def _give_back(self, block: mmap.mmap) -> None:
        nbytes = len(block)
        dropped: list[mmap.mmap] = []
        with self._lock:
            self._used_bytes -= nbytes
            if nbytes > self.max_free_bytes:
                return
            self._free.setdefault(nbytes, []).append(block)
            self._free.move_to_end(nbytes)
            self._free_bytes += nbytes
            while self._free_bytes > self.max_free_bytes:
                dropped.append(self._drop_oldest())
        del dropped  # unmapped here, outside the lock

    def release(self) -> int:
        """Give every kept block back to the system; returns the bytes released."""
        with self._lock:
            released, blocks = self._free_bytes, self._free
            self._free, self._free_bytes = OrderedDict(), 0
        del blocks
        return released

    def __repr__(self) -> str:
        return (f"LargeBufferPool(min_bytes={self.min_bytes}, max_free_bytes={self.max_free_bytes}, "
                f"free_bytes={self._free_bytes}, used_bytes={self._used_bytes}, peak_bytes={self.peak_bytes}, "
                f"served={self.served}, reused={self.reused})")


_DEFAULT: Any = object()  # the process's pool is made on first use
_pool: Any = _DEFAULT
_pool_lock = threading.Lock()


def buffer_pool() -> LargeBufferPool | None:
    """The pool the kernels use in this process: the one set by :func:`use_buffer_pool`, else one made on first
    use with the defaults; ``None`` (no pool) when :func:`use_buffer_pool` set none or
    ``NEUROPLASTIC_BUFFER_POOL=0``."""
    global _pool
    pool = _pool
    if pool is _DEFAULT:
        if os.environ.get("NEUROPLASTIC_BUFFER_POOL", "1") == "0":
            return None
        with _pool_lock:
            if _pool is _DEFAULT:
                _pool = LargeBufferPool()
            pool = _pool
    return pool


def use_buffer_pool(pool: LargeBufferPool | None) -> LargeBufferPool | None:
    """Make the kernels take their large outputs from ``pool`` (``None``: plain ``torch.empty``); returns the
    pool used before (``None`` if none was)."""
    global _pool
    if pool is not None and not isinstance(pool, LargeBufferPool):
        raise TypeError(f"pool: expected a LargeBufferPool or None, got {type(pool).__name__}")
    previous = buffer_pool()
    _pool = pool
    return previous


def empty(shape: Sequence[int], dtype: torch.dtype, device: torch.device | str | None = None) -> torch.Tensor:
    """``torch.empty(shape, dtype=dtype, device=device)``; a large CPU tensor comes from :func:`buffer_pool`."""
    if device is not None and torch.device(device).type != "cpu":
        return torch.empty(tuple(shape), dtype=dtype, device=device)
    pool = buffer_pool()
    if pool is None:
        return torch.empty(tuple(shape), dtype=dtype)
    return pool.empty(shape, dtype)


__all__ = ["LargeBufferPool", "MAX_FREE_BYTES", "MIN_BYTES", "buffer_pool", "empty", "use_buffer_pool"]
