"""Slax 0.0.1 on the peers problem (``bench/peers.py``); runs in ``.bench-venvs/slax``.

A ``flax.linen`` module of ``nn.Dense`` layers (the problem's weights and biases) and
``slax.LIF(init_tau=logit(0.9), spike_fn=slax.fast_sigmoid(25), v_threshold=1,
subtraction_reset=True)`` (Slax's leak is ``sigmoid(init_tau)`` = 0.9 up to rounding),
wrapped in ``slax.RNN`` (a Flax ``nn.scan`` over time with all layers in its body, the
membranes in the ``carry`` collection, set to zero at the start of every pass: the carry
that ``init`` returns holds the membranes after one step);
``jax.value_and_grad`` with respect to the parameters, jit-compiled ahead of time.

``config["slax_unroll"]`` is passed to ``slax.RNN``: 1 (a plain scan) by default.  Slax's
own default unrolls the whole sequence (``unroll=2**32-1``), which makes XLA compile 500
copies of the step: at T=500 (H=16, batch 64) the compilation had not finished after 15
minutes and 8 GB of memory here.
Slax's reset is not detached (the surrogate gradient flows through it); otherwise its
neuron is neuroplastic's.  Loss: mean cross-entropy of the output spike counts.
"""

from __future__ import annotations

import math

from bench import peers


def measure(config: dict) -> dict:
    """Time and check one H; runs in the child process."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np
    import slax

    cfg = {**peers.DEFAULTS, "slax_unroll": 1, **config}
    problem = peers.load_problem(cfg["problem"])
    sizes = [problem[f"w{i}"].shape[1] for i in (1, 2, 3)]
    init_tau = math.log(cfg["decay"] / (1.0 - cfg["decay"]))  # sigmoid(init_tau) = decay

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            for n in sizes:
                x = nn.Dense(n)(x)
                x = slax.LIF(init_tau=init_tau, spike_fn=slax.fast_sigmoid(cfg["slope"]), v_threshold=cfg["threshold"],
                             subtraction_reset=True)(x)
            return x

    model = slax.RNN(Net(), unroll=int(cfg["slax_unroll"]))
    xs, labels = jnp.asarray(problem["xs"]), jnp.asarray(problem["labels"])
    variables = model.init(jax.random.PRNGKey(cfg["seed"]), xs)
    # zero membranes: the carry that init returns holds the state after one step of xs[0]
    carry = jax.tree_util.tree_map(jnp.zeros_like, variables["carry"])
    dense = variables["params"]["rec_0"]["RNN_"]["mdl"]
    params = {"rec_0": {"RNN_": {"mdl": {f"Dense_{i}": {"kernel": jnp.asarray(problem[f"w{i + 1}"]), "bias": jnp.asarray(problem[f"b{i + 1}"])}
                                        for i in range(3)}}}}
    if jax.tree_util.tree_map(jnp.shape, params) != jax.tree_util.tree_map(jnp.shape, {"rec_0": {"RNN_": {"mdl": dense}}}):
        raise ValueError("slax: the model's parameter tree does not have the expected layout")

    def loss_fn(params: dict, carry: dict, xs: jax.Array, labels: jax.Array) -> jax.Array:
        out, _ = model.apply({"params": params, "carry": carry}, xs, mutable=["carry"])
        logp = jax.nn.log_softmax(out.sum(0), axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))

    step = jax.jit(jax.value_and_grad(loss_fn))
    compiled: dict = {}

    def compile_fn() -> None:
        compiled["fn"] = step.lower(params, carry, xs, labels).compile()

    def read(out: tuple) -> tuple:
        loss, grads = out
        g = grads["rec_0"]["RNN_"]["mdl"]
        return float(loss), [np.asarray(g[f"Dense_{i}"][leaf]) for i in range(3) for leaf in ("kernel", "bias")]

    result = peers.measure_step(cfg, lambda: compiled["fn"](params, carry, xs, labels), jax.block_until_ready, read, compile_fn)
    result["unroll"] = int(cfg["slax_unroll"])
    return result
