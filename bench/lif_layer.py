"""One LIF layer's fused kernel alone: forward + backward seconds on torch and JAX.

``python -m bench.lif_layer [--neurons 128,512,2048] [--threads 1,2]`` (issue 12): the
recurrence of the peers problem's layers (T=500, batch 64, decay 0.9, threshold 1,
subtractive detached reset, fast-sigmoid surrogate of slope 25) through
``Backend.lif_sequence``: on torch the C loops of ``kernels_torch`` (split over
``torch.get_num_threads()`` ranges of neurons), on JAX the ``custom_vjp`` of ``kernels_jax``
(the same C loops through XLA FFI on the CPU, its scans elsewhere).  Prints the median of 5
wall-clock calls after one warm-up; both frameworks in this one process, one after the other.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median_time(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(neurons: int, threads: int, T: int = 500, batch: int = 64) -> dict:
    """Seconds of one fused forward + backward of a layer of ``neurons`` on torch (``threads``) and JAX."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch

    from neuroplastic.backend import kernels_jax, kernels_torch
    from neuroplastic.surrogates import FastSigmoid

    surrogate = FastSigmoid(beta=25)
    rng = np.random.default_rng(0)
    cur = (0.5 * rng.standard_normal((T, batch, neurons))).astype(np.float32)
    cot = rng.standard_normal((T, batch, neurons)).astype(np.float32)
    cj, gj, v0j = jnp.asarray(cur), jnp.asarray(cot), jnp.zeros((batch, neurons), jnp.float32)
    step = jax.jit(lambda c: jax.vjp(lambda c_: kernels_jax.lif_sequence(c_, v0j, 0.9, 1.0, "subtract", True, surrogate)[0], c)[1](gj)[0])
    t_jax = _median_time(lambda: jax.block_until_ready(step(cj)))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ct, gt, v0t = torch.from_numpy(cur).requires_grad_(True), torch.from_numpy(cot), torch.zeros(batch, neurons)

        def torch_step() -> None:
            z, _ = kernels_torch.lif_sequence(ct, v0t, 0.9, 1.0, "subtract", True, surrogate)
            torch.autograd.grad(z, ct, gt)

        t_torch = _median_time(torch_step)
    finally:
        torch.set_num_threads(before)
    return {"neurons": neurons, "threads": threads, "torch_s": t_torch, "jax_s": t_jax,
            "compiled_loops": kernels_torch.c_library() is not None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--neurons", default="128,512,2048")
    p.add_argument("--threads", default="1,2", help="torch threads (the C loops' ranges), comma-separated")
    args = p.parse_args(argv)
    try:
        sizes = [int(n) for n in args.neurons.split(",")]
        threads = [int(t) for t in args.threads.split(",")]
    except ValueError:
        p.error(f"--neurons and --threads take comma-separated integers, got {args.neurons!r}, {args.threads!r}")
    if any(n <= 0 for n in sizes) or any(t <= 0 for t in threads):
        p.error("--neurons and --threads must be positive")
    print("| neurons | torch threads | torch kernel (s) | JAX kernel (s) |")
    print("| ---: | ---: | ---: | ---: |")
    for n in sizes:
        for t in threads:
            r = measure(n, t)
            print(f"| {n} | {t} | {r['torch_s']:.4f} | {r['jax_s']:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
