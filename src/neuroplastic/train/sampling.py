"""Sampling driver: run a MALA/HMC chain (:mod:`neuroplastic.rules.langevin`) on a data set.

:func:`sample` runs the chain in the trainer's loop (:meth:`~neuroplastic.train.Trainer.steps`:
one transition per batch, batches shuffled by ``(seed, epoch)``, the sampler state seeded
from ``key(seed)``), collects the trace of every transition and, after burn-in, the
predictive distribution on an evaluation set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..backend import Backend, get_backend, ops_for
from ..data.arrays import from_arrays
from ..losses import Loss, Objective, make_loss
from ..rules.langevin import MALA
from .optimizers import NaiveOptimizer
from .trainer import Trainer


@dataclass
class SampleResult:
    """What :func:`sample` returns (numpy arrays and floats)."""

    params: Any
    state: dict
    predictive: Any  # a PredictiveAccumulator over the evaluation set (None without one)
    accept_rate: float
    step_size: float
    trace: list[dict] = field(default_factory=list)
    samples: list[Any] = field(default_factory=list)
    seconds: float = 0.0


def predict_probs(network: Any, params: Any, xs: Any, loss: Loss) -> Any:
    """Class probabilities ``softmax(loss.scores(outputs))`` of ``network`` on ``xs`` ``(T, N, F)``."""
    ys, _, _ = network.run(params, xs)
    return ops_for(ys).softmax(loss.scores(ys), axis=-1)


def sample(
    rule: MALA,
    network: Any,
    params: Any,
    x: np.ndarray,
    y: np.ndarray,
    n_samples: int = 100,
    thin: int = 1,
    loss: str | Loss | Objective = "ce_sum",
    batch_size: int | None = None,
    eval_x: np.ndarray | None = None,
    eval_batch_size: int = 1000,
    backend: str | Backend = "jax",
    seed: int = 0,
    jit: bool = True,
    keep_params: bool = False,
    keep_predictions: bool = False,
    progress: Callable[[int, dict], Any] | None = None,
) -> SampleResult:
    """Run ``rule`` for ``rule.burnin + n_samples * thin`` transitions on ``(x, y)``.

    ``x`` is time-major ``(T, N, F)``.  ``batch_size=None`` uses all of ``(x, y)`` at every
    step (an exact chain); otherwise shuffled mini-batches, with ``rule.n_data`` the
    number of training examples.  The chain runs in :meth:`Trainer.steps` (the trainer's
    loop, shuffling by ``(seed, epoch)`` and seeding the sampler state from ``key(seed)``).  After burn-in, every ``thin``-th state adds its class
    probabilities on ``eval_x`` to ``result.predictive`` (and its params, as numpy, to
    ``result.samples`` with ``keep_params``).  ``progress(step, info)`` is called after each
    transition with floats.
    """
    from ..analysis.uncertainty import PredictiveAccumulator

    if not isinstance(rule, MALA):
        raise ValueError(f"rule: expected a MALA or HMC sampler, got {type(rule).__name__}")
    for value, name in ((n_samples, "n_samples"), (thin, "thin")):
        if not (isinstance(value, (int, np.integer)) and value > 0):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if batch_size is not None and not (isinstance(batch_size, (int, np.integer)) and batch_size > 0):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    n = x.shape[1]
    if rule.n_data is not None and batch_size is None and rule.n_data != n:
        raise ValueError(f"n_data: the rule scales to {rule.n_data} examples but full batches have {n}")
    B = get_backend(backend)
    objective = loss if isinstance(loss, Objective) else Objective(make_loss(loss))
    # the chain runs in the trainer's loop (its shuffling and seeding): one transition per batch
    trainer = Trainer(network, rule, objective, NaiveOptimizer(1.0), backend=B, progress=False, jit=jit)
    probs_fn = trainer.compile(lambda p, xs: predict_probs(network, p, xs, objective.loss))

    def step_fn(p: Any, o: Any, s: dict, xs: Any, ys: Any) -> tuple:
        new, s, info = rule.step(network, p, s, (xs, ys), objective)
        return new, o, s, {"info": info, "finite": trainer.finite_flags(info["loss"], None, new)}

    data = from_arrays(x, y, x[:, :1], y[:1] if np.ndim(y) == 1 else y[:, :1], name="chain")
    size = n if batch_size is None else int(batch_size)
    total = rule.burnin + n_samples * thin
    epochs = -(-total // -(-n // size))
    acc = PredictiveAccumulator(keep=keep_predictions) if eval_x is not None else None
    result = SampleResult(params=None, state={}, predictive=acc, accept_rate=float("nan"), step_size=float("nan"))
    t0 = time.perf_counter()
    state = trainer.init_state(params, seed)[1]
    for r in trainer.steps(params, data, epochs, size, seed, ({}, state), step_fn=trainer.compile(step_fn), max_steps=total):
        params, state, i = r.params, r.rule_state, r.step
        record = {k: float(B.to_numpy(r.summary["info"][k])) for k in ("accept_prob", "accepted", "step_size", "potential", "loss")}
        result.trace.append(record)
        if progress is not None:
            progress(i, record)
        if i >= rule.burnin and (i - rule.burnin + 1) % thin == 0:
            if acc is not None:
                chunks = [B.to_numpy(probs_fn(params, B.asarray(eval_x[:, s:s + eval_batch_size])))
                          for s in range(0, eval_x.shape[1], eval_batch_size)]
                acc.add(np.concatenate(chunks, axis=0))
            if keep_params:
                result.samples.append(B.tree_to_numpy(params))
    result.params, result.state = params, state
    kept = max(total - rule.burnin, 1)
    result.accept_rate = float(B.to_numpy(state["accept_sum"])) / kept
    result.step_size = float(np.exp(B.to_numpy(state["log_step"])))
    result.seconds = time.perf_counter() - t0
    return result


__all__ = ["SampleResult", "predict_probs", "sample"]
