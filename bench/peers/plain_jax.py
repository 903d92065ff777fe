"""Plain JAX on the peers problem (``bench/peers.py``): the hand-written reference for JAX.

Two variants (``config["variant"]``):

* ``scan``: one ``lax.scan`` over time with all three layers in its body (one matmul per
  layer and step);
* ``layer``: layer by layer, one ``(T*B, n) @ (n, m)`` matmul per layer over all steps,
  then a ``lax.scan`` over time for that layer's LIF.

Neuron: neuroplastic's semantics, ``u = decay v + I``, ``z = H(u - threshold)`` with the
fast-sigmoid surrogate ``1/(1+slope|x|)^2`` (``jax.custom_jvp``), ``v = u -
stop_gradient(z) threshold``.  Loss: mean cross-entropy of the output spike counts.
``jax.value_and_grad`` of it, jit-compiled ahead of time (``compile_s``).
"""

from __future__ import annotations

from typing import Any

from bench import peers


def make_loss(variant: str, decay: float, threshold: float, slope: float) -> Any:
    """``loss(params, xs, labels)`` of the network in the given variant."""
    import jax
    import jax.numpy as jnp

    @jax.custom_jvp
    def spike(x: Any) -> Any:
        return (x > 0).astype(x.dtype)

    @spike.defjvp
    def spike_jvp(primals: tuple, tangents: tuple) -> tuple:
        (x,), (dx,) = primals, tangents
        return spike(x), dx / (1.0 + slope * jnp.abs(x)) ** 2

    def lif(v: Any, i: Any) -> tuple:
        u = decay * v + i
        z = spike(u - threshold)
        return u - jax.lax.stop_gradient(z) * threshold, z

    def ce(counts: Any, labels: Any) -> Any:
        logp = jax.nn.log_softmax(counts, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))

    if variant == "layer":
        def loss(params: tuple, xs: Any, labels: Any) -> Any:
            h = xs
            for w, b in zip(params[0::2], params[1::2]):
                current = h @ w + b
                _, h = jax.lax.scan(lif, jnp.zeros(current.shape[1:], current.dtype), current)
            return ce(h.sum(0), labels)
    elif variant == "scan":
        def loss(params: tuple, xs: Any, labels: Any) -> Any:
            w1, b1, w2, b2, w3, b3 = params
            batch = xs.shape[1]

            def body(vs: tuple, x: Any) -> tuple:
                v1, z1 = lif(vs[0], x @ w1 + b1)
                v2, z2 = lif(vs[1], z1 @ w2 + b2)
                v3, z3 = lif(vs[2], z2 @ w3 + b3)
                return (v1, v2, v3), z3

            init = tuple(jnp.zeros((batch, w.shape[1]), xs.dtype) for w in (w1, w2, w3))
            _, z = jax.lax.scan(body, init, xs)
            return ce(z.sum(0), labels)
    else:
        raise ValueError(f"variant: expected 'scan' or 'layer', got {variant!r}")
    return loss


def measure(config: dict) -> dict:
    """Time and check one (variant, H) configuration; runs in the child process."""
    import jax
    import numpy as np

    cfg = {**peers.DEFAULTS, **config}
    problem = peers.load_problem(cfg["problem"])
    params = tuple(jax.numpy.asarray(problem[k]) for k in peers.GRAD_NAMES)
    xs, labels = jax.numpy.asarray(problem["xs"]), jax.numpy.asarray(problem["labels"])
    step = jax.jit(jax.value_and_grad(make_loss(cfg["variant"], cfg["decay"], cfg["threshold"], cfg["slope"])))
    compiled: dict = {}

    def compile_fn() -> None:
        compiled["fn"] = step.lower(params, xs, labels).compile()

    def read(out: tuple) -> tuple:
        loss, grads = out
        return float(loss), [np.asarray(g) for g in grads]

    return peers.measure_step(cfg, lambda: compiled["fn"](params, xs, labels), jax.block_until_ready, read, compile_fn)
