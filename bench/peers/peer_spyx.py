"""Spyx 1.0 on the peers problem (``bench/peers.py``); runs in ``.bench-venvs/spyx``.

``spyx.nn.Sequential`` of ``flax.nnx.Linear`` layers (the problem's weights and biases) and
``spyx.nn.LIF((n,), beta=0.9, threshold=1, activation=spyx.axn.superspike(25))``, run over
time by ``spyx.nn.run`` (one ``lax.scan`` with all layers in its body); ``jax.value_and_grad``
with respect to the linear layers' parameters only (Spyx makes ``beta`` a parameter too),
jit-compiled ahead of time (``compile_s``).

Spyx's LIF cannot be configured to neuroplastic's neuron: it emits the spike of step t from
the membrane *before* adding the input, ``z_t = H(V_{t-1} - 1)``, then ``V_t = 0.9 V_{t-1}
+ I_t - z_t`` (an undecayed reset, not detached): each layer's spikes come one step later
(see ``Semantics(model="spyx")``).  Loss: mean cross-entropy of the output spike counts.
"""

from __future__ import annotations

from bench import peers


def measure(config: dict) -> dict:
    """Time and check one H; runs in the child process."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import spyx
    from flax import nnx

    cfg = {**peers.DEFAULTS, **config}
    problem = peers.load_problem(cfg["problem"])
    rngs = nnx.Rngs(cfg["seed"])
    layers = []
    for i in (1, 2, 3):
        w, b = problem[f"w{i}"], problem[f"b{i}"]
        lin = nnx.Linear(w.shape[0], w.shape[1], rngs=rngs)
        lin.kernel.value = jnp.asarray(w)
        lin.bias.value = jnp.asarray(b)
        layers += [lin, spyx.nn.LIF((w.shape[1],), beta=cfg["decay"], threshold=cfg["threshold"],
                                    activation=spyx.axn.superspike(cfg["slope"]), rngs=rngs)]
    model = spyx.nn.Sequential(*layers)
    graphdef, linear, rest = nnx.split(model, lambda path, value: path[-1] in ("kernel", "bias"), ...)
    xs, labels = jnp.asarray(problem["xs"]), jnp.asarray(problem["labels"])

    def loss_fn(linear: nnx.State, rest: nnx.State, xs: jax.Array, labels: jax.Array) -> jax.Array:
        out, _ = spyx.nn.run(nnx.merge(graphdef, linear, rest), xs)
        logp = jax.nn.log_softmax(out.sum(0), axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))

    step = jax.jit(jax.value_and_grad(loss_fn))
    compiled: dict = {}

    def compile_fn() -> None:
        compiled["fn"] = step.lower(linear, rest, xs, labels).compile()

    def read(out: tuple) -> tuple:
        loss, grads = out
        flat = dict(nnx.to_flat_state(grads))
        order = sorted({path[:-1] for path in flat})  # ('layers', 0), ('layers', 2), ('layers', 4)
        return float(loss), [np.asarray(flat[prefix + (leaf,)][...]) for prefix in order for leaf in ("kernel", "bias")]

    result = peers.measure_step(cfg, lambda: compiled["fn"](linear, rest, xs, labels), jax.block_until_ready, read, compile_fn)
    result["version"] = getattr(spyx, "__version__", None)
    return result
