"""The trainer: epochs, batches, optimizer steps, metrics, history, and the divergence guard.

The trainer knows the network, a rule, an objective and an optimizer, and nothing about
how the rule computes its gradients.  One training step is::

    grads, rule_state, aux = rule.gradients(network, params, rule_state, (xs, ys), objective)
    params, opt_state = optimizer.update(grads, opt_state, params)

On JAX the whole step is ``jit``-compiled once per batch shape.

**One loop.**  :meth:`Trainer.steps` is the only training loop of the library: it shuffles
with a numpy generator seeded from ``(seed, epoch)`` (:func:`epoch_batches`, so the order
does not depend on the backend), moves each batch to the backend, runs a step function and
applies the divergence guard.  :meth:`Trainer.fit` drives it with the training step and adds
evaluation, history and checkpoints; the gradient comparison
(:class:`~neuroplastic.train.compare.GradientComparison`) and the samplers
(:func:`~neuroplastic.train.sampling.sample`) drive it with their own step functions.  Rule
states are seeded from ``key(seed)`` everywhere (:meth:`Trainer.init_state`).

**Divergence guard.**  Every step reports whether its loss, its gradient and the updated
parameters are finite.  ``on_nonfinite="raise"`` (the default) stops with a
:class:`NonFiniteError` that names the quantity, the epoch and step and the last finite
loss; ``"skip"`` drops that step's update (parameters, optimizer and rule state stay as
they were) and goes on; ``"warn"`` warns and goes on.  Training never starts from
non-finite parameters, and checkpoints and parameter files refuse non-finite values, so a
diverged run never overwrites good files.

With ``checkpoint_dir`` the trainer saves params, optimizer and rule state and the epoch
after every ``checkpoint_every`` epochs (and after the last one) with
:func:`~neuroplastic.train.checkpoint.save_checkpoint`; ``fit(..., state=..., start_epoch=k)``
with the loaded state continues exactly where epoch ``k`` ended.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..backend import Backend, get_backend
from ..data.arrays import Dataset, batches, check_labels
from ..data.stream import StreamingData, training_batches
from ..losses import Loss, Objective, RateRegularizer, make_loss
from ..metrics import correct_array, spikes_per_step_array
from ..progress import progress_bar
from ..protocols import Model
from ..rules import Rule, make_rule, online_advance, run_online
from .guard import NonFiniteError, check_finite, nonfinite_leaves
from .optimizers import Optimizer, make_optimizer

Callback = Callable[["Trainer", dict, Any], Any]
#: what a step function returns: ``(params, opt_state, rule_state, summary)``
StepFn = Callable[[Any, Any, Any, Any, Any], tuple]
#: the choices of ``on_nonfinite``
GUARDS = ("raise", "skip", "warn")
#: the quantities the guard checks, in the order it names them
GUARDED = ("loss", "gradient", "parameters")


def epoch_batches(data: Dataset | StreamingData, batch_size: int, seed: int, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The training batches of ``epoch``: in-memory data shuffled by ``numpy.random.default_rng([seed, epoch])``;
    a stream's batches as its source gives them (see :mod:`neuroplastic.data.stream`)."""
    return training_batches(data, batch_size, seed, epoch)


def _with_last(items: Iterator[Any]) -> Iterator[tuple[Any, bool]]:
    """``(item, is_last)`` for each item: one item of look-ahead, so a stream of unknown length ends epochs."""
    it = iter(items)
    try:
        current = next(it)
    except StopIteration:
        return
    for nxt in it:
        yield current, False
        current = nxt
    yield current, True


@dataclass
class StepResult:
    """One step of :meth:`Trainer.steps`: where it was and what it produced (backend arrays)."""

    epoch: int
    index: int  # batch index within the epoch
    step: int  # steps since the loop started
    params: Any
    opt_state: Any
    rule_state: Any
    summary: dict
    skipped: bool = False
    size: int = 0  # examples in the batch
    last: bool = False  # the epoch's last batch


def _unchanged(fn: Callable) -> Callable:
    return fn


class Trainer:
    """Fit and evaluate a network with a learning rule.

    ``rule``, ``loss`` and ``optimizer`` accept names (``"bptt"``, ``"ce_sum"``,
    ``"adam"``) or instances.  ``mode`` is ``"offline"`` (one update per batch),
    ``"online"`` or ``"deferred"`` for rules that support them.  ``on_nonfinite``
    (``"raise"``, ``"skip"``, ``"warn"``) chooses what the divergence guard does.
    """

    def __init__(
        self,
        network: Model,
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
        on_nonfinite: str = "raise",
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
        if on_nonfinite not in GUARDS:
            raise ValueError(f"on_nonfinite: unknown value {on_nonfinite!r}; choose one of {list(GUARDS)}")
        self.on_nonfinite = on_nonfinite
        self.optimizer = optimizer if isinstance(optimizer, Optimizer) else make_optimizer(optimizer, lr, self.B)
        self.dt = dt
        self.progress = progress
        self._jit = jit
        # JAX compiles a whole step, the optimizer's update included.  torch's optimizer is a stateful
        # object, so there the rule's part of a step (a pure function of tensors) is what ``B.jit``
        # compiles (with ``get_backend("torch", compile=True)``), and the update runs eagerly.
        whole, part = (self.compile, _unchanged) if self.B.compiles else (_unchanged, self.compile)
        self._gradients = part(self._rule_gradients)
        self._online_advance_step = part(self._online_advance)
        step = self._step if mode == "offline" else self._online_batch
        self._train_step = whole(step)
        self._eval_step = self.compile(self._evaluate_batch)

    def compile(self, fn: Callable) -> Callable:
        """``fn`` jit-compiled where the backend compiles (and the trainer was asked to)."""
        return self.B.jit(fn) if self._jit else fn

    # ------------------------------------------------------------------ steps
    def _summaries(self, aux: dict, ys: Any) -> dict:
        out = {"loss": aux["loss"], "spikes": [spikes_per_step_array(z) for z in aux["spikes"]]}
        if self.objective.loss.classification:
            out["correct"] = correct_array(self.objective.loss, aux["outputs"], ys)
        return out

    def finite_flags(self, loss: Any, grads: Any, params: Any) -> dict:
        """``{"loss", "gradient", "parameters"}``: whether each is finite (backend booleans, jit-safe)."""
        B = self.B
        return {"loss": B.all_finite_tree(loss), "gradient": B.all_finite_tree(grads), "parameters": B.all_finite_tree(params)}

    def guarded_update(self, grads: Any, opt_state: Any, params: Any, rule_state: Any, new_rule_state: Any, loss: Any) -> tuple:
        """The optimizer's update of ``params`` with the guard's flags; with ``on_nonfinite="skip"`` a
        non-finite step keeps the old values (selected functionally, so it works under ``jit``)."""
        new_params, new_opt = self.optimizer.update(grads, opt_state, params)
        flags = self.finite_flags(loss, grads, new_params)
        if self.on_nonfinite == "skip" and self.B.compiles:
            ok = flags["loss"] & flags["gradient"] & flags["parameters"]
            new_params, new_opt, new_rule_state = self.B.tree_select(ok, (new_params, new_opt, new_rule_state), (params, opt_state, rule_state))
        return new_params, new_opt, new_rule_state, flags

    def _rule_gradients(self, params: Any, rule_state: Any, xs: Any, ys: Any) -> tuple:
        """The rule's offline gradients of one batch (compiled on its own where the whole step is not)."""
        return self.rule.gradients(self.network, params, rule_state, (xs, ys), self.objective)

    def _online_advance(self, params: Any, rule_state: Any, carry: Any, sums: tuple, x_t: Any, target_t: Any, t: Any, T: int) -> tuple:
        """The rule's online step at time ``t`` of ``T`` with the batch's running sums (:func:`online_advance`;
        compiled on its own where the whole batch is not)."""
        return online_advance(self.rule, self.network, self.objective, params, rule_state, carry, sums, x_t, target_t, t, T)

    def _step(self, params: Any, opt_state: Any, rule_state: Any, xs: Any, ys: Any):
        grads, new_rule_state, aux = self._gradients(params, rule_state, xs, ys)
        params, opt_state, rule_state, flags = self.guarded_update(grads, opt_state, params, rule_state, new_rule_state, aux["loss"])
        return params, opt_state, rule_state, {**self._summaries(aux, ys), "finite": flags}

    def _online_batch(self, params: Any, opt_state: Any, rule_state: Any, xs: Any, ys: Any):
        """One batch in ``online`` (update every step) or ``deferred`` (sum, then update) mode."""
        new_params, gsum, new_rule_state, aux, new_opt = run_online(
            self.rule, self.network, params, rule_state, (xs, ys), self.objective, self.mode, self.optimizer, opt_state,
            advance=self._online_advance_step,
        )
        flags = self.finite_flags(aux["loss"], gsum, new_params)
        if self.on_nonfinite == "skip" and self.B.compiles:
            ok = flags["loss"] & flags["gradient"] & flags["parameters"]
            new_params, new_opt, new_rule_state = self.B.tree_select(ok, (new_params, new_opt, new_rule_state), (params, opt_state, rule_state))
        return new_params, new_opt, new_rule_state, {**self._summaries(aux, ys), "finite": flags}

    def _evaluate_batch(self, params: Any, xs: Any, ys: Any) -> dict:
        out, _, rec = self.network.run(params, xs)
        loss = self.objective(out, ys, rec, self.network.spiking)
        return self._summaries({"loss": loss, "outputs": out, "spikes": rec["out"]}, ys)

    # ------------------------------------------------------------------ checks at the door
    @property
    def n_outputs(self) -> int | None:
        return getattr(self.network, "n_out", None)

    def check_targets(self, y: np.ndarray, name: str) -> None:
        """Raise a ``ValueError`` naming ``name`` unless ``y`` fits the loss and the network's outputs."""
        loss = self.objective.loss
        y = np.asarray(y)
        if loss.classification:
            if y.ndim != 1:
                raise ValueError(
                    f"{name}: the loss {loss.name!r} needs integer class labels (N,), got targets of shape {y.shape};"
                    " use a regression loss (mse_membrane, van_rossum) for targets (T, N, K)"
                )
            check_labels(y, self.n_outputs or int(y.max(initial=0)) + 1, name)
        elif y.ndim != 3:
            raise ValueError(f"{name}: the loss {loss.name!r} needs targets (T, N, K), got shape {y.shape} (class labels?)")

    def check_data(self, data: Dataset | StreamingData) -> None:
        """Raise a ``ValueError`` naming the problem unless ``data`` fits the network and the loss (a stream's
        batches are checked as they arrive, by :meth:`check_batch`)."""
        if not isinstance(data, (Dataset, StreamingData)):
            raise ValueError(f"data: expected a neuroplastic Dataset (see neuroplastic.data.from_arrays) or StreamingData "
                             f"(neuroplastic.data.stream), got {type(data).__name__}")
        if isinstance(data, StreamingData):
            n_out = self.n_outputs
            if self.objective.loss.classification and data.n_classes is not None and n_out is not None and data.n_classes > n_out:
                raise ValueError(f"network: its output has {n_out} units but {data.name} has {data.n_classes} classes; "
                                 f"build the network with n_out >= {data.n_classes}")
            return
        if data.n_features != self.network.n_in:
            raise ValueError(f"data: {data.name} has {data.n_features} features but the network expects n_in={self.network.n_in}")
        n_out = self.n_outputs
        if self.objective.loss.classification and data.n_classes is not None and n_out is not None and data.n_classes > n_out:
            raise ValueError(
                f"network: its output has {n_out} units but {data.name} has {data.n_classes} classes; build the network with n_out >= {data.n_classes}"
            )
        self.check_targets(data.y_train, "y_train")
        self.check_targets(data.y_test, "y_test")

    def check_batch(self, data: StreamingData, x: np.ndarray, y: np.ndarray, where: str) -> None:
        """One streamed batch against the network's input, the loss and the stream's classes; errors name ``where``."""
        try:
            self.network.check_input(x, "x")
            self.check_targets(y, "y")
            data.check_labels(y, self.n_outputs, "y")
        except ValueError as err:
            raise ValueError(f"{data.name} {where}: {err}") from None

    def check_params(self, params: Any, what: str = "params") -> None:
        """Refuse (by name) parameters with NaN or infinite values: training never starts from them."""
        check_finite(params, f"{what}: cannot train from non-finite parameters; {what}", self.B.to_numpy)

    # ------------------------------------------------------------------ public
    def init_state(self, params: Any, seed: int = 0) -> tuple[Any, Any]:
        """``(opt_state, rule_state)`` for fresh training; the rule is seeded from ``key(seed)``."""
        return self.optimizer.init(params), self.rule.init(self.network, params, self.B.key(seed))

    def evaluate(self, params: Any, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> dict:
        """Loss, accuracy and firing rates over ``(x, y)`` (time-major numpy arrays)."""
        if not (isinstance(batch_size, (int, np.integer)) and batch_size > 0):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        x = np.asarray(x)
        self.network.check_input(x, "x")
        self.check_targets(y, "y")
        if np.asarray(y).shape[0 if np.asarray(y).ndim == 1 else 1] != x.shape[1]:
            raise ValueError(f"y: expected {x.shape[1]} labels or targets for x of shape {x.shape}, got shape {np.asarray(y).shape}")
        return self._reduce([self._eval_step(params, *self._put(xb, yb)) for xb, yb in batches(x, y, batch_size)], x.shape[1])

    def evaluate_batches(self, params: Any, batches_: Any) -> dict:
        """Loss, accuracy and firing rates over batches: a :class:`~neuroplastic.data.stream.BatchStream`,
        :class:`~neuroplastic.data.stream.StreamingData` (its test split), or any iterable of ``(x, y)``."""
        from ..data.stream import BatchStream

        if isinstance(batches_, StreamingData):
            if batches_.test is None:
                raise ValueError(f"data: {batches_.name} has no test split to evaluate")
            stream = batches_.test
        else:
            stream = batches_ if isinstance(batches_, BatchStream) else BatchStream(batches_, name="batches")
        summaries, n = [], 0
        for i, (xb, yb) in enumerate(stream.epoch(0, 0)):
            try:
                self.network.check_input(xb, "x")
                self.check_targets(yb, "y")
            except ValueError as err:
                raise ValueError(f"{stream.name} batch {i}: {err}") from None
            summaries.append(self._eval_step(params, *self._put(xb, yb)))
            n += xb.shape[1]
        if not summaries:
            raise ValueError(f"{stream.name}: no batches to evaluate")
        return self._reduce(summaries, n)

    def steps(
        self,
        params: Any,
        data: Dataset,
        epochs: int,
        batch_size: int,
        seed: int = 0,
        state: tuple[Any, Any] | None = None,
        start_epoch: int = 0,
        step_fn: StepFn | None = None,
        max_steps: int | None = None,
    ) -> Iterator[StepResult]:
        """The training loop, one :class:`StepResult` per batch (see the module docstring).

        ``step_fn(params, opt_state, rule_state, xs, ys) -> (params, opt_state, rule_state,
        summary)`` defaults to this trainer's step; a ``summary["finite"]`` dict feeds the guard.
        Stops after ``epochs`` epochs or ``max_steps`` steps.
        """
        for value, name in ((epochs, "epochs"), (start_epoch, "start_epoch")):
            if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0):
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not (isinstance(batch_size, (int, np.integer)) and batch_size > 0):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if max_steps is not None and not (isinstance(max_steps, (int, np.integer)) and max_steps > 0):
            raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
        self.check_params(params)
        step_fn = step_fn or self._train_step
        opt_state, rule_state = state if state is not None else self.init_state(params, seed)
        count, last_loss = 0, None
        snapshot = self.on_nonfinite == "skip" and not self.B.compiles
        stream = isinstance(data, StreamingData)
        for epoch in range(start_epoch, start_epoch + epochs):
            n_seen = 0
            for index, ((xb, yb), last) in enumerate(_with_last(epoch_batches(data, batch_size, seed, epoch))):
                if stream:
                    self.check_batch(data, xb, yb, f"train batch {index} of epoch {epoch + 1}")
                n_seen += 1
                xs, ys = self._put(xb, yb)
                saved = (self.B.tree_copy(params), self.optimizer.snapshot(opt_state), rule_state) if snapshot else None
                new_params, new_opt, new_rule, summary = step_fn(params, opt_state, rule_state, xs, ys)
                bad = self._nonfinite(summary)
                skipped = False
                if bad is not None:
                    msg = (f"training diverged: non-finite {bad} at epoch {epoch + 1}, step {index + 1}"
                           f" (last finite loss: {'none yet' if last_loss is None else f'{last_loss:.6g}'})")
                    if self.on_nonfinite == "raise":
                        raise NonFiniteError(
                            f"{msg}; nothing non-finite was saved. Lower the learning rate, clip the gradients, or choose"
                            " on_nonfinite='skip'"
                        )
                    if self.on_nonfinite == "warn":
                        warnings.warn(msg, RuntimeWarning, stacklevel=2)
                    else:
                        skipped = True
                        if saved is not None:  # torch updates in place: put the old values back
                            new_params = self.B.tree_assign(params, saved[0])
                            new_opt = self.optimizer.restore(opt_state, saved[1])
                            new_rule = saved[2]
                elif "loss" in summary:
                    last_loss = float(self.B.to_numpy(summary["loss"]))
                params, opt_state, rule_state = new_params, new_opt, new_rule
                yield StepResult(epoch, index, count, params, opt_state, rule_state, summary, skipped, int(xb.shape[1]), last)
                count += 1
                if max_steps is not None and count >= max_steps:
                    return
            if n_seen == 0:
                raise ValueError(f"data: epoch {epoch + 1} has no training batches (an empty stream, or a generator already used)")

    def _nonfinite(self, summary: dict) -> str | None:
        flags = summary.get("finite")
        if not flags:
            return None
        for name in GUARDED:
            if name in flags and not bool(self.B.to_numpy(flags[name])):
                return name
        return None

    def fit(
        self,
        params: Any,
        data: Dataset | StreamingData,
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
        the last epoch.  ``callbacks(trainer, record, params)`` run after each epoch; one
        returning true stops training.  ``data`` is an in-memory :class:`Dataset` or a
        :class:`~neuroplastic.data.stream.StreamingData` (any iterable of batches; ``batch_size``
        then comes from the stream).
        """
        if not (isinstance(epochs, (int, np.integer)) and not isinstance(epochs, bool) and epochs >= 0):
            raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
        if not (isinstance(batch_size, (int, np.integer)) and not isinstance(batch_size, bool) and batch_size > 0):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not (isinstance(checkpoint_every, (int, np.integer)) and checkpoint_every > 0):
            raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
        self.check_data(data)
        opt_state, rule_state = state if state is not None else self.init_state(params, seed)
        history: list[dict] = []
        log = Path(log_path) if log_path is not None else None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
        n_batches = -(-data.x_train.shape[1] // batch_size) if isinstance(data, Dataset) else data.train.length()
        last = start_epoch + epochs
        summaries: list = []
        seen = skipped = 0
        bar, t0 = None, time.perf_counter()
        for r in self.steps(params, data, epochs, batch_size, seed, (opt_state, rule_state), start_epoch):
            if r.index == 0:  # (the clock t0 started before this batch was computed)
                summaries, seen, skipped = [], 0, 0
                bar = progress_bar(n_batches, f"epoch {r.epoch + 1}/{last}", self.progress)
            params, opt_state, rule_state = r.params, r.opt_state, r.rule_state
            if r.skipped:
                skipped += 1
            else:
                summaries.append(r.summary)
                seen += r.size
            if bar is not None:
                bar.update(1)
                if len(summaries) % 10 == 0 and summaries:
                    bar.set_postfix(loss=f"{float(self.B.to_numpy(r.summary['loss'])):.4f}")
            if not r.last:
                continue
            # end of an epoch
            record = self._epoch_record(r.epoch, params, data, summaries, seen, skipped, t0, eval_batch_size)
            if bar is not None:
                bar.set_postfix(loss=f"{record['train_loss']:.4f}", test_acc=f"{record['test_acc'] if record['test_acc'] is not None else float('nan'):.3f}")
                bar.close()
            history.append(record)
            if log is not None:
                with open(log, "a") as f:
                    f.write(json.dumps(record) + "\n")
            stop = False
            for cb in callbacks:
                stop = bool(cb(self, record, params)) or stop
            if checkpoint_dir is not None and ((r.epoch + 1) % checkpoint_every == 0 or r.epoch + 1 == last or stop):
                from .checkpoint import Checkpoint, save_checkpoint

                save_checkpoint(checkpoint_dir, Checkpoint(params, opt_state, rule_state, r.epoch + 1, seed, dict(checkpoint_meta or {})))
            if stop:
                break
            t0 = time.perf_counter()  # the next epoch's clock: from its first batch on
        self.last_state = (opt_state, rule_state)
        return params, history

    def _epoch_record(self, epoch: int, params: Any, data: Dataset, summaries: list, seen: int, skipped: int, t0: float,
                      eval_batch_size: int) -> dict:
        train = self._reduce(summaries, seen) if summaries else {"loss": math.nan, "acc": None, "spikes_per_step": []}
        train_time = time.perf_counter() - t0
        if isinstance(data, Dataset):
            test = self.evaluate(params, data.x_test, data.y_test, eval_batch_size)
        elif data.test is not None:
            test = self.evaluate_batches(params, data.test)
        else:
            test = {"loss": None, "acc": None, "spikes_per_step": [None] * len(self.network.spiking)}
        spiking = self.network.spiking
        return {
            "epoch": epoch + 1,
            "train_loss": train["loss"], "train_acc": train.get("acc"),
            "test_loss": test["loss"], "test_acc": test.get("acc"),
            # per block; None for blocks whose cell does not spike
            "spikes_per_step": [r if s else None for r, s in zip(test["spikes_per_step"], spiking)],
            "rate_hz": [r * 1000.0 / self.dt if s and r is not None else None for r, s in zip(test["spikes_per_step"], spiking)],
            "train_time_s": train_time,
            "epoch_time_s": time.perf_counter() - t0,
            "skipped_steps": skipped,
        }

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


__all__ = ["GUARDS", "NonFiniteError", "StepResult", "Trainer", "check_finite", "epoch_batches", "nonfinite_leaves"]
