"""Gradient comparison: several rules on the same parameters and batches.

At every step of :meth:`GradientComparison.run`:

1. every rule computes its gradient at the *same* parameters on the *same* batch;
2. every gradient is turned into the update the optimizer would make from the *shared*
   optimizer state (``optimizer.preview``), so optimizer states cannot drift apart;
3. only the primary rule's update is applied;
4. each rule's raw gradient and would-be update are compared with the reference rule's
   (:mod:`neuroplastic.analysis.alignment`), per parameter and over all parameters.

Records are plain dicts (one per step, rule, kind and parameter), written as JSONL;
element-wise deviation samples at chosen steps go to a safetensors file.  Nothing is
pickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..analysis.alignment import deviation_sample, tree_alignment
from ..backend import Backend, get_backend
from ..data.arrays import Dataset
from ..losses import Loss, Objective, make_loss
from ..network import Network
from ..progress import compiling_note, progress_bar
from ..rules import Rule, make_rule
from ..tree import tree_flatten_dict
from .optimizers import Optimizer, make_optimizer
from .trainer import Trainer


class GradientComparison:
    """Compare ``rules`` (name -> rule or rule name) against ``reference`` while ``primary`` trains."""

    def __init__(
        self,
        network: Network,
        rules: dict[str, str | Rule] | Sequence[str],
        primary: str = "bptt",
        reference: str = "bptt",
        loss: str | Loss | Objective = "ce_mean",
        optimizer: str | Optimizer = "adam",
        lr: float = 1e-3,
        backend: str | Backend = "jax",
        jit: bool = True,
    ) -> None:
        if not isinstance(rules, dict):
            rules = {name: name for name in rules}
        if primary not in rules:
            raise ValueError(f"primary: {primary!r} is not one of the compared rules {list(rules)}")
        if reference not in rules:
            raise ValueError(f"reference: {reference!r} is not one of the compared rules {list(rules)}")
        self.network = network
        self.B = get_backend(backend)
        self.rules = {name: make_rule(r) for name, r in rules.items()}
        self.primary, self.reference = primary, reference
        self.objective = loss if isinstance(loss, Objective) else Objective(make_loss(loss))
        self.optimizer = optimizer if isinstance(optimizer, Optimizer) else make_optimizer(optimizer, lr, self.B)
        # the primary rule's trainer: its loop, its guard and its seeding drive the comparison
        self.trainer = Trainer(network, self.rules[primary], self.objective, self.optimizer, backend=self.B, progress=False, jit=jit)
        self._grad_fns = {name: self.trainer.compile(self._grad_fn(rule)) for name, rule in self.rules.items()}

    def _grad_fn(self, rule: Rule):
        def fn(params: Any, rule_state: Any, xs: Any, ys: Any):
            grads, rule_state, aux = rule.gradients(self.network, params, rule_state, (xs, ys), self.objective)
            return grads, rule_state, aux["loss"]

        return fn

    def step(self, params: Any, opt_state: Any, rule_states: dict, xs: Any, ys: Any) -> tuple[Any, Any, dict, dict, dict]:
        """One comparison step: ``(params, opt_state, rule_states, grads, updates)``."""
        grads, losses = {}, {}
        for name, fn in self._grad_fns.items():
            grads[name], rule_states[name], losses[name] = fn(params, rule_states[name], xs, ys)
        updates = {name: self.optimizer.preview(g, opt_state, params) for name, g in grads.items()}
        params, opt_state = self.optimizer.update(grads[self.primary], opt_state, params)
        return params, opt_state, rule_states, grads, updates

    def run(
        self,
        params: Any,
        data: Dataset,
        epochs: int = 1,
        batch_size: int = 64,
        seed: int = 0,
        every: int = 1,
        sample_steps: Sequence[int] = (),
        max_steps: int | None = None,
        out_dir: str | Path | None = None,
        keep_trajectory: bool = False,
        progress: bool | None = None,
    ) -> tuple[Any, list[dict], dict]:
        """Train the primary rule and compare every ``every`` steps.

        The loop is the trainer's (:meth:`Trainer.steps`: the same shuffling, the same
        divergence guard) driven by :meth:`step`; every rule's state is seeded from
        ``key(seed)``, as :class:`Trainer` seeds it, so a rule is compared with exactly the
        state (random feedback matrices included) it is trained with.

        Returns ``(params, records, extra)``; ``extra`` has ``samples`` (deviation samples at
        ``sample_steps``, keyed ``"step/rule/kind/param"``), ``trajectory`` (numpy params per
        epoch when ``keep_trajectory``) and ``losses``.  With ``out_dir``, writes
        ``alignment.jsonl`` and ``deviations.safetensors`` there.  ``progress`` (default: the
        session's setting, :mod:`neuroplastic.progress`) shows a bar over the steps on stderr,
        after a "compiling" line on JAX.
        """
        if not (isinstance(every, int) and not isinstance(every, bool) and every > 0):
            raise ValueError(f"every must be a positive integer, got {every!r}")
        B = self.B
        trainer = self.trainer
        trainer.check_data(data)
        opt_state = self.optimizer.init(params)
        rule_states = {name: rule.init(self.network, params, B.key(seed)) for name, rule in self.rules.items()}
        records: list[dict] = []
        samples: dict[str, np.ndarray] = {}
        trajectory = [B.tree_to_numpy(params)] if keep_trajectory else []
        last = {}

        def step_fn(p: Any, o: Any, states: dict, xs: Any, ys: Any) -> tuple:
            p, o, states, grads, updates = self.step(p, o, states, xs, ys)
            last["grads"], last["updates"] = grads, updates
            return p, o, states, {"finite": trainer.finite_flags(None, grads[self.primary], p)}

        n_batches = -(-data.x_train.shape[1] // batch_size)
        total = epochs * n_batches if max_steps is None else min(max_steps, epochs * n_batches)
        compiling_note(B, f"the gradients of {len(self.rules)} rules", progress)
        bar = progress_bar(total, f"gradient comparison ({', '.join(self.rules)})", progress)
        r = None
        for r in trainer.steps(params, data, epochs, batch_size, seed, (opt_state, rule_states), step_fn=step_fn, max_steps=max_steps):
            params, opt_state, rule_states = r.params, r.opt_state, r.rule_state
            if r.step % every == 0:
                records.extend(self._records(r.step, r.epoch, last["grads"], last["updates"]))
            if r.step in sample_steps:
                samples.update(self._samples(r.step, last["grads"], last["updates"]))
            if keep_trajectory and r.index + 1 == n_batches:
                trajectory.append(B.tree_to_numpy(params))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        if keep_trajectory and r is not None and r.index + 1 != n_batches:
            trajectory.append(B.tree_to_numpy(params))  # a comparison cut short inside an epoch
        if out_dir is not None:
            write_comparison(out_dir, records, samples)
        return params, records, {"samples": samples, "trajectory": trajectory}

    def _records(self, step: int, epoch: int, grads: dict, updates: dict) -> list[dict]:
        out = []
        for kind, trees in (("gradient", grads), ("update", updates)):
            ref = trees[self.reference]
            for name, tree in trees.items():
                for layer, metrics in tree_alignment(tree, ref, self.B.to_numpy).items():
                    out.append({"step": step, "epoch": epoch, "rule": name, "kind": kind, "layer": layer, **metrics})
        return out

    def _samples(self, step: int, grads: dict, updates: dict) -> dict[str, np.ndarray]:
        out = {}
        to = self.B.to_numpy
        for kind, trees in (("gradient", grads), ("update", updates)):
            ref = tree_flatten_dict(trees[self.reference])
            for name, tree in trees.items():
                for layer, g in tree_flatten_dict(tree).items():
                    out[f"{step}/{name}/{kind}/{layer}"] = deviation_sample(to(g), to(ref[layer]), seed=step)
        return out


def write_comparison(out_dir: str | Path, records: list[dict], samples: dict[str, np.ndarray]) -> None:
    """``alignment.jsonl`` (one record a line) and ``deviations.safetensors``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "alignment.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    if samples:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in samples.items()}, str(out / "deviations.safetensors"))


def read_comparison(out_dir: str | Path) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The records and deviation samples written by :func:`write_comparison`."""
    out = Path(out_dir)
    records = [json.loads(line) for line in (out / "alignment.jsonl").read_text().splitlines() if line.strip()]
    samples: dict[str, np.ndarray] = {}
    if (out / "deviations.safetensors").exists():
        from safetensors.numpy import load_file

        samples = load_file(str(out / "deviations.safetensors"))
    return records, samples
