"""Plain-JAX references for the neuron semantics of the peers that differ from neuroplastic's.

Given ``config["semantics"]`` (a list of :class:`bench.peers.Semantics` as dicts), computes
each one's loss and gradient norms on the problem, layer by layer (one matmul per layer,
a ``lax.scan`` per LIF), float32 like the implementations: see ``Semantics`` for the
models.  Untimed: it only checks that a peer computes what it is configured to compute.
"""

from __future__ import annotations

from typing import Any

from bench import peers


def make_loss(sem: "peers.Semantics", decay: float, threshold: float) -> Any:
    """``loss(params, xs, labels)`` with the neuron of ``sem``."""
    import jax
    import jax.numpy as jnp

    scale, slope = sem.surrogate_scale, sem.surrogate_slope

    @jax.custom_jvp
    def spike(x: Any) -> Any:
        return (x > 0).astype(x.dtype)

    @spike.defjvp
    def spike_jvp(primals: tuple, tangents: tuple) -> tuple:
        (x,), (dx,) = primals, tangents
        return spike(x), dx * scale / (1.0 + slope * jnp.abs(x)) ** 2

    def maybe_detach(z: Any) -> Any:
        return jax.lax.stop_gradient(z) if sem.detach_reset else z

    if sem.model == "neuroplastic":
        def lif(v: Any, i: Any) -> tuple:
            u = decay * v + i
            z = spike(u - threshold)
            return u - maybe_detach(z) * threshold, z
    elif sem.model == "snntorch":
        def lif(v: Any, i: Any) -> tuple:
            r = jax.lax.stop_gradient((v - threshold > 0).astype(v.dtype))
            u = decay * v + i - r * threshold
            z = spike(u - threshold)
            return u - (maybe_detach(z) - r) * threshold, z
    elif sem.model == "spyx":
        def lif(v: Any, i: Any) -> tuple:
            z = spike(v - threshold)
            return decay * v + i - maybe_detach(z) * threshold, z
    else:
        raise ValueError(f"semantics: unknown model {sem.model!r}")

    def loss(params: tuple, xs: Any, labels: Any) -> Any:
        h = xs
        for w, b in zip(params[0::2], params[1::2]):
            current = h @ w + b
            _, h = jax.lax.scan(lif, jnp.zeros(current.shape[1:], current.dtype), current)
        logp = jax.nn.log_softmax(h.sum(0), axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))

    return loss


def measure(config: dict) -> dict:
    """``{"references": {semantics key: {"loss", "grad_norms"}}}``; runs in the child process."""
    import jax
    import numpy as np

    cfg = {**peers.DEFAULTS, **config}
    problem = peers.load_problem(cfg["problem"])
    params = tuple(jax.numpy.asarray(problem[k]) for k in peers.GRAD_NAMES)
    xs, labels = jax.numpy.asarray(problem["xs"]), jax.numpy.asarray(problem["labels"])
    out = {}
    for spec in cfg["semantics"]:
        sem = peers.Semantics(**spec)
        loss, grads = jax.jit(jax.value_and_grad(make_loss(sem, cfg["decay"], cfg["threshold"])))(params, xs, labels)
        out[sem.key()] = {"loss": float(loss), "grad_norms": peers.grad_norms([np.asarray(g) for g in grads]),
                          "semantics": spec}
    return {"references": out}
