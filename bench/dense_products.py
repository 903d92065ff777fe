"""The dense products alone of the peers problem at one H: the floor a dense implementation cannot go below.

``python -m bench.dense_products [--hidden 2048]`` (issue 12: "at H >= 2048, below the time of the
dense matmuls alone").  The eight products one BPTT pass of the peers network needs (N = T x batch
= 32000 rows): the three forward products ``x @ W``, the three weight gradients ``x^T @ g`` and the
two input gradients ``g @ W^T`` of the hidden and output layers, on inputs of the problem's
densities (input 20%, hidden layers 8.3% and 5%), dense, float32, HIGHEST precision on JAX (one
jit-compiled program) and torch (eager); median wall-clock seconds of 3 calls after one warm-up.
Compare with the whole forward + backward pass of the peers table.
"""
import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

def prods(m, t, x, s1, s2, W1, W2, W3, g1, g2, g3):
    """The eight products with product ``m`` and transpose ``t``."""
    return [m(x, W1), m(t(x), g1), m(s1, W2), m(t(s1), g2), m(g2, t(W2)), m(s2, W3), m(t(s2), g3), m(g3, t(W3))]


def main() -> int:
    """Time the products on JAX and torch and print the medians."""
    p = argparse.ArgumentParser(description="dense products alone of the peers problem")
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--rows", type=int, default=32000, help="T x batch (default 500 x 64)")
    a_ = p.parse_args()
    if a_.hidden <= 0 or a_.rows <= 0:
        p.error(f"--hidden and --rows must be positive, got {a_.hidden}, {a_.rows}")
    N, H = a_.rows, a_.hidden
    rng = np.random.default_rng(0)
    x = (rng.random((N, 100)) < 0.2).astype(np.float32); s1 = (rng.random((N, H)) < 0.083).astype(np.float32); s2 = (rng.random((N, H)) < 0.05).astype(np.float32)
    W1 = rng.standard_normal((100, H)).astype(np.float32); W2 = rng.standard_normal((H, H)).astype(np.float32); W3 = rng.standard_normal((H, 10)).astype(np.float32)
    g1 = rng.standard_normal((N, H)).astype(np.float32); g2 = rng.standard_normal((N, H)).astype(np.float32); g3 = rng.standard_normal((N, 10)).astype(np.float32)
    args = [x, s1, s2, W1, W2, W3, g1, g2, g3]
    hi = jax.lax.Precision.HIGHEST
    f = jax.jit(lambda *a: prods(lambda p, q: jnp.matmul(p, q, precision=hi), lambda p: p.T, *a))
    ja = [jnp.asarray(a) for a in args]
    jax.block_until_ready(f(*ja)); ts = []
    for _ in range(3):
        t0 = time.perf_counter(); jax.block_until_ready(f(*ja)); ts.append(time.perf_counter() - t0)
    print("JAX dense products alone (8 products, H=%d, %d rows): median %.3f s" % (H, N, statistics.median(ts)))
    ta = [torch.from_numpy(a) for a in args]
    prods(torch.matmul, lambda p: p.t(), *ta); ts = []
    for _ in range(3):
        t0 = time.perf_counter(); prods(torch.matmul, lambda p: p.t(), *ta); ts.append(time.perf_counter() - t0)
    print("torch dense products alone: median %.3f s" % statistics.median(ts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
