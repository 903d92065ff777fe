"""Sampling driver: run a MALA/HMC chain (:mod:`neuroplastic.rules.langevin`) on a data set.

:func:`sample` runs the chain in the trainer's loop (:meth:`~neuroplastic.train.Trainer.steps`:
one transition per batch, batches shuffled by ``(seed, epoch)``, the sampler state seeded
from ``key(seed)``), collects the trace of every transition and, after burn-in, the
predictive distribution on an evaluation set.  ``track`` follows chosen coordinates of the
parameters at every transition (for trace plots and effective sample sizes:
:mod:`neuroplastic.analysis.mixing`).  :func:`fisher_scale` gives the per-parameter scales
of a preconditioned chain (``MALA(scale=...)``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..backend import Backend, get_backend, ops_for
from ..tree import tree_leaves
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
    step_size: float | np.ndarray  # the kept chain's step (one per block with ``blocks``)
    trace: list[dict] = field(default_factory=list)
    samples: list[Any] = field(default_factory=list)
    seconds: float = 0.0
    tracked: np.ndarray | None = None  # (transitions, k): the tracked coordinates at every transition
    tracked_index: np.ndarray | None = None  # (k,): their positions in the flattened parameters
    gradient_evals: int = 0  # evaluations of U and its proposal direction, burn-in included
    scale: Any = None  # the proposal scales of the kept chain (numpy tree; None without preconditioning)


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
    track: int = 0,
) -> SampleResult:
    """Run ``rule`` for ``rule.burnin + n_samples * thin`` transitions on ``(x, y)``.

    ``x`` is time-major ``(T, N, F)``.  ``batch_size=None`` uses all of ``(x, y)`` at every
    step (an exact chain); otherwise shuffled mini-batches, with ``rule.n_data`` the
    number of training examples.  The chain runs in :meth:`Trainer.steps` (the trainer's
    loop, shuffling by ``(seed, epoch)`` and seeding the sampler state from ``key(seed)``).  After burn-in, every ``thin``-th state adds its class
    probabilities on ``eval_x`` to ``result.predictive`` (and its params, as numpy, to
    ``result.samples`` with ``keep_params``).  ``progress(step, info)`` is called after each
    transition with floats.  ``track = k > 0`` records ``k`` coordinates of the flattened
    parameters, drawn at random (seeded by ``seed``), at every transition, burn-in included
    (``result.tracked``, ``result.tracked_index``).  Full batches reuse ``U`` and its direction
    at the current state between transitions (:meth:`MALA.with_potential`: one gradient
    evaluation per MALA transition, ``L`` per HMC one); ``result.gradient_evals`` counts them.
    """
    from ..analysis.uncertainty import PredictiveAccumulator

    if not isinstance(rule, MALA):
        raise ValueError(f"rule: expected a MALA or HMC sampler, got {type(rule).__name__}")
    for value, name in ((n_samples, "n_samples"), (thin, "thin")):
        if not (isinstance(value, (int, np.integer)) and value > 0):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(track, bool) or not isinstance(track, (int, np.integer)) or track < 0:
        raise ValueError(f"track must be a non-negative integer (coordinates to follow), got {track!r}")
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
    start_params = params
    state = trainer.init_state(params, seed)[1]
    reused = batch_size is None
    if reused:  # a fixed target: keep U and its direction at the current state in the sampler state
        start = trainer.compile(lambda p, s, xs, ys: rule.with_potential(B, rule.potential(network, (xs, ys), objective), p, s))
        state = start(params, state, B.asarray(x), B.asarray(y))
    n_params = sum(int(np.prod(np.shape(a))) for a in tree_leaves(params))
    index = np.sort(np.random.default_rng(seed).choice(n_params, min(int(track), n_params), replace=False)) if track else None
    tracked: list[np.ndarray] = []
    for r in trainer.steps(params, data, epochs, size, seed, ({}, state), step_fn=trainer.compile(step_fn), max_steps=total):
        params, state, i = r.params, r.rule_state, r.step
        record = {k: float(B.to_numpy(r.summary["info"][k])) for k in ("accept_prob", "accepted", "step_size", "potential", "loss")}
        result.trace.append(record)
        if index is not None:
            flat = np.concatenate([np.ravel(a) for a in tree_leaves(B.tree_to_numpy(params))])
            tracked.append(flat[index])
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
    step = np.exp(B.to_numpy(state["log_step"]))
    result.step_size = float(step) if np.ndim(step) == 0 else step  # one per block with ``blocks``
    result.seconds = time.perf_counter() - t0
    result.gradient_evals = len(result.trace) * rule.potential_evals(reused) + int(reused)
    if "scale" in state:
        from ..rules.langevin import align_to_params  # jax sorts the state's dict keys: back to params' order

        result.scale = align_to_params(B.tree_to_numpy(state["scale"]), B.tree_to_numpy(start_params))
    elif rule.scale is not None:
        result.scale = rule.scale
    if index is not None:
        result.tracked, result.tracked_index = np.stack(tracked), index
    return result


def fisher_scale(
    network: Any,
    params: Any,
    x: np.ndarray,
    y: np.ndarray,
    n_data: int | None = None,
    prior_std: float = 1.0,
    loss: str | Loss | Objective = "ce_mean",
    batch_size: int = 100,
    backend: str | Backend = "jax",
    max_batches: int | None = None,
    floor: float = 0.0,
    max_scale: float | None = None,
) -> Any:
    """Per-parameter proposal scales ``s`` for a preconditioned chain: a diagonal Laplace approximation.

    The posterior's curvature along weight ``i`` is estimated by the empirical Fisher
    information, ``H_ii ~ N m mean_b(g_{b,i}^2) + 1/prior_std^2``: ``g_b`` is the gradient of the
    mean loss of batch ``b`` (``m`` examples; near a mode, ``m g_b^2`` estimates the
    per-example ``g^2``), ``N = n_data`` (default: the examples in ``x``).  Returns
    ``s = 1 / sqrt(H_ii)`` (a numpy tree shaped like ``params``), at most ``max_scale``
    (default ``prior_std``); ``floor`` bounds it from below.  For spiking networks the
    surrogate gradient is zero on weights of neurons far from threshold, whose true
    curvature (a neuron that starts to spike) is not; ``max_scale`` keeps their steps
    bounded.  ``x`` is time-major ``(T, N, F)``.
    """
    from ..rules.base import forward_loss
    from ..tree import tree_map

    if isinstance(prior_std, bool) or not isinstance(prior_std, (int, float)) or not prior_std > 0:
        raise ValueError(f"prior_std must be a positive number, got {prior_std!r}")
    cap = prior_std if max_scale is None else max_scale
    if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0 < cap <= prior_std:
        raise ValueError(f"max_scale must be a number in (0, prior_std], got {max_scale!r}")
    if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 <= floor <= cap:
        raise ValueError(f"floor must be a number in [0, max_scale], got {floor!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    B = get_backend(backend)
    objective = loss if isinstance(loss, Objective) else Objective(make_loss(loss))
    n = int(x.shape[1])
    N = n if n_data is None else int(n_data)

    def grad_fn(p: Any, xs: Any, ys: Any) -> Any:
        return B.value_and_grad(lambda q: forward_loss(network, q, (xs, ys), objective, None)[0])(p)[1]

    grad_fn = B.jit(grad_fn)
    total, count = None, 0
    starts = list(range(0, n - batch_size + 1, batch_size))[: max_batches or None]
    if not starts:
        raise ValueError(f"batch_size: {batch_size} is more than the {n} examples in x")
    for s0 in starts:
        g = B.tree_to_numpy(grad_fn(params, B.asarray(x[:, s0:s0 + batch_size]), B.asarray(y[s0:s0 + batch_size])))
        sq = tree_map(lambda a: np.asarray(a, dtype=np.float64) ** 2, g)
        total = sq if total is None else tree_map(lambda a, b: a + b, total, sq)
        count += 1

    def scale(sum_sq: np.ndarray) -> np.ndarray:
        curvature = N * batch_size * sum_sq / count + 1.0 / prior_std**2
        return np.clip(1.0 / np.sqrt(curvature), floor, cap)

    from ..rules.langevin import align_to_params

    return align_to_params(tree_map(scale, total), B.tree_to_numpy(params))


__all__ = ["SampleResult", "fisher_scale", "predict_probs", "sample"]
