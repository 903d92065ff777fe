"""The trainer: epochs, batches, optimizer steps, metrics, history.

The trainer knows the network, a rule, an objective and an optimizer, and nothing about
how the rule computes its gradients.  One training step is::

    grads, rule_state, aux = rule.gradients(network, params, rule_state, (xs, ys), objective)
    params, opt_state = optimizer.update(grads, opt_state, params)

On JAX the whole step is ``jit``-compiled once per batch shape.  Shuffling uses a numpy
generator seeded from ``(seed, epoch)``, so a run is reproducible and the order does not
depend on the backend.  Every epoch appends one record to the history, and to a JSONL
file when ``log_path`` is set.

With ``checkpoint_dir`` the trainer saves params, optimizer and rule state and the epoch
after every ``checkpoint_every`` epochs (and after the last one) with
:func:`~neuroplastic.train.checkpoint.save_checkpoint`; ``fit(..., state=..., start_epoch=k)``
with the loaded state continues exactly where epoch ``k`` ended.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..backend import Backend, get_backend
from ..data.arrays import Dataset, batches
from ..losses import Loss, Objective, RateRegularizer, make_loss
from ..metrics import correct_array, spikes_per_step_array
from ..network import Network
from ..rules import Rule, make_rule, run_online
from .optimizers import Optimizer, make_optimizer

Callback = Callable[["Trainer", dict, Any], Any]


class Trainer:
    """Fit and evaluate a network with a learning rule.

    ``rule``, ``loss`` and ``optimizer`` accept names (``"bptt"``, ``"ce_sum"``,
    ``"adam"``) or instances.  ``mode`` is ``"offline"`` (one update per batch),
    ``"online"`` or ``"deferred"`` for rules that support them.
    """

    def __init__(
        self,
        network: Network,
        rule: str | Rule = "bptt",
        loss: str | Loss | Objective = "ce_sum",
        optimizer: str | Optimizer = "adam",
        lr: float = 1e-3,
        backend: str | Backend = "jax",
        mode: str = "offline",
        regularizer: RateRegularizer | None = None,
        dt: float = 1.0,
        progress: bool = True,
        jit: bool = True,
    ) -> None:
        self.network = network
        self.B = get_backend(backend) if isinstance(backend, str) else backend
        self.rule = make_rule(rule)
        self.rule.check_mode(mode)
        self.mode = mode
        if isinstance(loss, Objective):
            self.objective = loss
        else:
            self.objective = Objective(make_loss(loss), regularizer)
        if mode != "offline":
            self.rule.check_online_objective(self.objective, mode)
        self.optimizer = optimizer if isinstance(optimizer, Optimizer) else make_optimizer(optimizer, lr, self.B)
        self.dt = dt
        self.progress = progress
        step = self._step if mode == "offline" else self._online_batch
        self._train_step = self.B.jit(step) if jit else step
        self._eval_step = self.B.jit(self._evaluate_batch) if jit else self._evaluate_batch

    # ------------------------------------------------------------------ steps
    def _summaries(self, aux: dict, ys: Any) -> dict:
        out = {"loss": aux["loss"], "spikes": [spikes_per_step_array(z) for z in aux["spikes"]]}
        if self.objective.loss.classification:
            out["correct"] = correct_array(self.objective.loss, aux["outputs"], ys)
        return out

    def _step(self, params: Any, opt_state: Any, rule_state: Any, xs: Any, ys: Any):
        grads, rule_state, aux = self.rule.gradients(self.network, params, rule_state, (xs, ys), self.objective)
        params, opt_state = self.optimizer.update(grads, opt_state, params)
        return params, opt_state, rule_state, self._summaries(aux, ys)

    def _online_batch(self, params: Any, opt_state: Any, rule_state: Any, xs: Any, ys: Any):
        """One batch in ``online`` (update every step) or ``deferred`` (sum, then update) mode."""
        params, _, rule_state, aux, opt_state = run_online(
            self.rule, self.network, params, rule_state, (xs, ys), self.objective, self.mode, self.optimizer, opt_state
        )
        return params, opt_state, rule_state, self._summaries(aux, ys)

    def _evaluate_batch(self, params: Any, xs: Any, ys: Any) -> dict:
        out, _, rec = self.network.run(params, xs)
        loss = self.objective(out, ys, rec, self.network.spiking)
        return self._summaries({"loss": loss, "outputs": out, "spikes": rec["out"]}, ys)

    # ------------------------------------------------------------------ public
    def init_state(self, params: Any, seed: int = 0) -> tuple[Any, Any]:
        """``(opt_state, rule_state)`` for fresh training."""
        return self.optimizer.init(params), self.rule.init(self.network, params, self.B.key(seed))

    def evaluate(self, params: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> dict:
        """Loss, accuracy and firing rates over ``(x, y)`` (time-major numpy arrays)."""
        return self._reduce([self._eval_step(params, *self._put(xb, yb)) for xb, yb in batches(x, y, batch_size)], x.shape[1])

    def fit(
        self,
        params: Any,
        data: Dataset,
        epochs: int = 1,
        batch_size: int = 64,
        seed: int = 0,
        eval_batch_size: int = 256,
        log_path: str | Path | None = None,
        callbacks: Sequence[Callback] = (),
        state: tuple[Any, Any] | None = None,
        start_epoch: int = 0,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 1,
        checkpoint_meta: dict | None = None,
    ) -> tuple[Any, list[dict]]:
        """Train for ``epochs`` epochs; returns the final params and the per-epoch history.

        ``state=(opt_state, rule_state)`` and ``start_epoch`` resume from a checkpoint (epochs
        are then numbered ``start_epoch + 1 ...``).  ``checkpoint_dir`` saves a checkpoint
        (with ``checkpoint_meta`` in its sidecar) every ``checkpoint_every`` epochs and after
        the last epoch.
        """
        if not (isinstance(epochs, (int, np.integer)) and epochs >= 0):
            raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
        if not (isinstance(batch_size, (int, np.integer)) and batch_size > 0):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if data.n_features != self.network.n_in:
            raise ValueError(f"data: {data.name} has {data.n_features} features but the network expects n_in={self.network.n_in}")
        if not (isinstance(checkpoint_every, (int, np.integer)) and checkpoint_every > 0):
            raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
        opt_state, rule_state = state if state is not None else self.init_state(params, seed)
        history: list[dict] = []
        log = Path(log_path) if log_path is not None else None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
        for epoch in range(start_epoch, start_epoch + epochs):
            t0 = time.perf_counter()
            rng = np.random.default_rng([seed, epoch])
            n_batches = -(-data.x_train.shape[1] // batch_size)
            summaries = []
            bar = _progress(self.progress, n_batches, f"epoch {epoch + 1}/{start_epoch + epochs}")
            for xb, yb in batches(data.x_train, data.y_train, batch_size, rng):
                params, opt_state, rule_state, summary = self._train_step(params, opt_state, rule_state, *self._put(xb, yb))
                summaries.append(summary)
                if bar is not None:
                    bar.update(1)
                    if len(summaries) % 10 == 0:
                        bar.set_postfix(loss=f"{float(self.B.to_numpy(summary['loss'])):.4f}")
            train = self._reduce(summaries, data.x_train.shape[1])
            train_time = time.perf_counter() - t0
            test = self.evaluate(params, data.x_test, data.y_test, eval_batch_size)
            record = {
                "epoch": epoch + 1,
                "train_loss": train["loss"], "train_acc": train.get("acc"),
                "test_loss": test["loss"], "test_acc": test.get("acc"),
                # per block; None for blocks whose cell does not spike
                "spikes_per_step": [r if s else None for r, s in zip(test["spikes_per_step"], self.network.spiking)],
                "rate_hz": [r * 1000.0 / self.dt if s else None for r, s in zip(test["spikes_per_step"], self.network.spiking)],
                "train_time_s": train_time,
                "epoch_time_s": time.perf_counter() - t0,
            }
            if bar is not None:
                bar.set_postfix(loss=f"{train['loss']:.4f}", test_acc=f"{test.get('acc', float('nan')):.3f}")
                bar.close()
            history.append(record)
            if log is not None:
                with open(log, "a") as f:
                    f.write(json.dumps(record) + "\n")
            stop = False
            for cb in callbacks:
                stop = bool(cb(self, record, params)) or stop
            if checkpoint_dir is not None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == start_epoch + epochs or stop):
                from .checkpoint import Checkpoint, save_checkpoint

                save_checkpoint(checkpoint_dir, Checkpoint(params, opt_state, rule_state, epoch + 1, seed, dict(checkpoint_meta or {})))
            if stop:
                break
        self.last_state = (opt_state, rule_state)
        return params, history

    # ------------------------------------------------------------------ helpers
    def _put(self, xb: np.ndarray, yb: np.ndarray) -> tuple[Any, Any]:
        return self.B.asarray(xb), self.B.asarray(yb)

    def _reduce(self, summaries: list[dict], n: int) -> dict:
        to = self.B.to_numpy
        losses = [float(to(s["loss"])) for s in summaries]
        out = {"loss": float(np.mean(losses))}
        if summaries and "correct" in summaries[0]:
            out["acc"] = float(sum(float(to(s["correct"])) for s in summaries) / n)
        spikes = np.array([[float(to(z)) for z in s["spikes"]] for s in summaries])
        out["spikes_per_step"] = [float(v) for v in spikes.mean(axis=0)] if len(spikes) else []
        return out


def _progress(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=True, file=sys.stderr, dynamic_ncols=True)
