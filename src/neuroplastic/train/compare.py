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
from ..data.arrays import Dataset, batches
from ..losses import Loss, Objective, make_loss
from ..network import Network
from ..rules import Rule, make_rule
from ..tree import tree_flatten_dict
from .optimizers import Optimizer, make_optimizer


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
        wrap = self.B.jit if jit else (lambda f: f)
        self._grad_fns = {name: wrap(self._grad_fn(rule)) for name, rule in self.rules.items()}

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
    ) -> tuple[Any, list[dict], dict]:
        """Train the primary rule and compare every ``every`` steps.

        Returns ``(params, records, extra)``; ``extra`` has ``samples`` (deviation samples at
        ``sample_steps``, keyed ``"step/rule/kind/param"``), ``trajectory`` (numpy params per
        epoch when ``keep_trajectory``) and ``losses``.  With ``out_dir``, writes
        ``alignment.jsonl`` and ``deviations.safetensors`` there.
        """
        if not (isinstance(every, int) and every > 0):
            raise ValueError(f"every must be a positive integer, got {every!r}")
        B = self.B
        opt_state = self.optimizer.init(params)
        keys = B.split(B.key(seed), len(self.rules))
        rule_states = {name: rule.init(self.network, params, k) for (name, rule), k in zip(self.rules.items(), keys)}
        records: list[dict] = []
        samples: dict[str, np.ndarray] = {}
        trajectory = [B.tree_to_numpy(params)] if keep_trajectory else []
        step = 0
        for epoch in range(epochs):
            rng = np.random.default_rng([seed, epoch])
            for xb, yb in batches(data.x_train, data.y_train, batch_size, rng):
                xs, ys = B.asarray(xb), B.asarray(yb)
                params, opt_state, rule_states, grads, updates = self.step(params, opt_state, rule_states, xs, ys)
                if step % every == 0:
                    records.extend(self._records(step, epoch, grads, updates))
                if step in sample_steps:
                    samples.update(self._samples(step, grads, updates))
                step += 1
                if max_steps is not None and step >= max_steps:
                    break
            if keep_trajectory:
                trajectory.append(B.tree_to_numpy(params))
            if max_steps is not None and step >= max_steps:
                break
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
