"""The main job: compare learning rules on one task, network and seed, and write a report.

:func:`run_study` trains every rule from the same initial parameters with the same
optimizer, epochs and batches, then

* measures accuracy and firing rates on the test set, and NeuroBench's efficiency metrics
  (activation sparsity, effective ACs/MACs, ...) on its first 256 examples;
* runs the gradient comparison (:mod:`neuroplastic.train.compare`): all rules on BPTT's
  training trajectory, gradients compared with BPTT's at every few steps;
* computes a 2-D loss landscape around BPTT's final parameters (PCA directions of its
  trajectory) with every rule's trajectory projected on it;
* draws a spike raster, learning curves and the alignment plots;
* writes ``report.md`` and ``report.html`` (:mod:`neuroplastic.report`).

Everything lands in one run folder; arrays are stored as safetensors, records as JSON.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .backend import get_backend
from .data import load_dataset
from .losses import Objective
from .rules import RULES
from .train import Trainer

DEFAULT_RULES = ("bptt", "eprop-symmetric", "eprop-random", "eprop-adaptive", "ostl", "dfa")
#: test examples the efficiency metrics are computed on (one forward run per rule)
EFFICIENCY_EXAMPLES = 256


@dataclass
class StudyConfig:
    """Settings of the rule comparison (defaults: the ``make demo`` main job)."""

    rules: tuple = DEFAULT_RULES
    reference: str = "bptt"
    data: str = "mnist1d"
    # the network of docs/rules-mnist1d.md, where every rule clears 50% (random-feedback
    # rules stay near 50% on slower membranes): recurrent LIF, tau_mem = 1 step, and a
    # firing-rate regulariser
    model: str = "rsnn"
    hidden: int = 128
    tau_mem: float = 1.0
    tau_out: float = 20.0
    surrogate: str = "fast_sigmoid"
    loss: str = "ce_mean"
    reg_rate_hz: float | None = 10.0
    reg_strength: float = 10.0
    optimizer: str = "adam"
    lr: float = 5e-3
    schedule: str = "cosine"
    epochs: int = 60
    batch_size: int = 64
    train_examples: int | None = None
    backend: str = "jax"
    seed: int = 0
    compare_steps: int = 40
    compare_every: int = 2
    landscape_grid: int = 15
    landscape_batches: int = 2
    landscape_span: float | None = None  # half-width in PCA units; None: fit every trajectory
    data_options: dict = field(default_factory=dict)

    @classmethod
    def quick(cls, **overrides: Any) -> "StudyConfig":
        """A small version that finishes in about a minute (used by the tests)."""
        base = dict(hidden=32, epochs=2, train_examples=768, compare_steps=6, compare_every=2, landscape_grid=7, landscape_batches=1)
        return cls(**{**base, **overrides})

    def validate(self) -> None:
        unknown = [r for r in self.rules if r not in RULES]
        if unknown:
            raise ValueError(f"rules: unknown rule(s) {unknown}; choose from {sorted(RULES)}")
        if self.reference not in self.rules:
            raise ValueError(f"reference: {self.reference!r} must be one of the compared rules {list(self.rules)}")
        for name in ("hidden", "epochs", "batch_size", "compare_steps", "compare_every", "landscape_grid", "landscape_batches"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v > 0):
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        optional = tuple(n for n in ("reg_rate_hz", "landscape_span") if getattr(self, n) is not None)
        for name in ("tau_mem", "tau_out", "lr", "reg_strength") + optional:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name}: expected a positive number, got {v!r}")


def study_data(cfg: StudyConfig) -> Any:
    """The study's dataset, its training set cut to ``cfg.train_examples`` when set."""
    data = load_dataset(cfg.data, **cfg.data_options)
    if cfg.train_examples is not None:
        data = replace(data, x_train=data.x_train[:, : cfg.train_examples], y_train=data.y_train[: cfg.train_examples])
    return data


def run_config(cfg: StudyConfig, rule: str) -> Any:
    """The :class:`~neuroplastic.config.RunConfig` of one rule of the study (offline, no checkpoints)."""
    from .config import RunConfig

    return RunConfig(
        data=cfg.data, data_options=dict(cfg.data_options), model=cfg.model, hidden=cfg.hidden, surrogate=cfg.surrogate,
        tau_mem=cfg.tau_mem, tau_out=cfg.tau_out, rule=rule, loss=cfg.loss, optimizer=cfg.optimizer, lr=cfg.lr,
        schedule=cfg.schedule, epochs=cfg.epochs, batch_size=cfg.batch_size, backend=cfg.backend, seed=cfg.seed,
        reg_rate_hz=cfg.reg_rate_hz, reg_strength=cfg.reg_strength, checkpoint_every=0,
    )


def study_trainer(cfg: StudyConfig, data: Any, rule: str, backend: Any, progress: bool = False) -> tuple[Any, Trainer]:
    """``(network, trainer)`` of ``rule`` in the study: :func:`neuroplastic.experiment.build_trainer`
    on :func:`run_config`, so the study trains exactly what ``neuroplastic train`` would."""
    from .experiment import build_trainer

    return build_trainer(run_config(cfg, rule), data, backend, progress)


def available_rules(rules: tuple) -> tuple:
    """The requested rules that this installation has (others are reported, not run)."""
    return tuple(r for r in rules if r in RULES)


def run_study(cfg: StudyConfig, out_dir: str | Path, log: Callable[[str], Any] = print, progress: bool = False) -> dict:
    """Run the comparison and write the run folder; returns the results dictionary."""
    missing = [r for r in cfg.rules if r not in RULES]
    cfg = replace(cfg, rules=available_rules(cfg.rules))
    cfg.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(asdict(cfg), indent=2))
    B = get_backend(cfg.backend)
    data = study_data(cfg)
    net, reference = study_trainer(cfg, data, cfg.reference, B)
    objective = reference.objective
    log(f"neuroplastic run: comparing {', '.join(cfg.rules)} on {data} with {net}")
    if missing:
        log(f"neuroplastic run: not available in this installation, skipped: {', '.join(missing)}")

    results: dict = {"config": asdict(cfg), "rules": {}, "skipped": missing}
    trajectories: dict[str, list] = {}
    final_params: dict[str, Any] = {}
    for rule in cfg.rules:
        t0 = time.perf_counter()
        _, trainer = study_trainer(cfg, data, rule, B, progress)
        params = net.init(cfg.seed, backend=B)
        traj = [B.tree_to_numpy(params)]
        params, history = trainer.fit(
            params, data, epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
            log_path=out / "rules" / rule / "metrics.jsonl",
            callbacks=[lambda tr, rec, p, traj=traj: traj.append(B.tree_to_numpy(p))],
        )
        wall = time.perf_counter() - t0
        trajectories[rule], final_params[rule] = traj, params
        efficiency = _efficiency(net, params, B.asarray(data.x_test[:, :EFFICIENCY_EXAMPLES]))
        results["rules"][rule] = {"history": history, "final": history[-1], "wall_time_s": wall, "efficiency": efficiency}
        log(f"  {rule:18s} test accuracy {100 * history[-1]['test_acc']:5.1f}%  ({wall:.0f} s)")

    log("neuroplastic run: gradient comparison against " + cfg.reference)
    results["alignment"] = _alignment(cfg, net, data, reference, B, out)
    log("neuroplastic run: loss landscape")
    results["landscape"] = _landscape(cfg, net, data, objective, B, trajectories, final_params, out)
    results["plots"] = _plots(cfg, net, data, B, final_params, results, out)
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=2))
    from .report import write_report

    paths = write_report(out)
    log(f"neuroplastic run: report at {paths[0]} and {paths[1]}")
    return results


# ---------------------------------------------------------------------------------- parts
def _efficiency(net: Any, params: Any, xs: Any) -> dict:
    """NeuroBench metrics (:mod:`neuroplastic.analysis.neurobench`) on a test subset; one forward run."""
    from .analysis.neurobench import efficiency_metrics

    return efficiency_metrics(net, params, xs)


def _alignment(cfg: StudyConfig, net: Any, data: Any, reference: Trainer, B: Any, out: Path) -> dict:
    from .train.compare import GradientComparison

    cmp = GradientComparison(net, list(cfg.rules), primary=cfg.reference, reference=cfg.reference, loss=reference.objective,
                             optimizer=reference.optimizer, backend=B)
    sample_steps = (0, cfg.compare_steps - 1 - (cfg.compare_steps - 1) % cfg.compare_every)
    _, records, extra = cmp.run(
        net.init(cfg.seed, backend=B), data, epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
        every=cfg.compare_every, sample_steps=sample_steps, max_steps=cfg.compare_steps, out_dir=out / "alignment",
    )
    summary = {}
    for rule in cfg.rules:
        rows = [r for r in records if r["rule"] == rule and r["kind"] == "gradient" and r["layer"] == "all"]
        summary[rule] = {
            "mean_cosine": float(np.mean([r["cosine"] for r in rows])),
            "mean_rel_deviation": float(np.mean([r["rel_deviation"] for r in rows])),
            "mean_sign_agreement": float(np.mean([r["sign_agreement"] for r in rows])),
        }
    return {"summary": summary, "sample_steps": list(sample_steps), "records": len(records)}


def _landscape(cfg: StudyConfig, net: Any, data: Any, objective: Objective, B: Any, trajectories: dict, final_params: dict, out: Path) -> dict | None:
    try:
        from .analysis import landscape as L
    except ImportError:
        return None
    ref = cfg.reference
    final_np = trajectories[ref][-1]
    if len(trajectories[ref]) < 3:
        return None
    d1, d2, explained = L.trajectory_directions(trajectories[ref], final_np)
    batches = [
        (B.asarray(data.x_test[:, i * 128:(i + 1) * 128]), B.asarray(data.y_test[i * 128:(i + 1) * 128]))
        for i in range(cfg.landscape_batches)
    ]
    projected = {rule: L.project_trajectory(traj, final_np, d1, d2) for rule, traj in trajectories.items()}
    if cfg.landscape_span is None:  # cover every rule's projected trajectory
        spans = L.auto_span(list(projected.values()), margin=0.1)
    else:
        spans = ((-cfg.landscape_span, cfg.landscape_span),) * 2
    alphas, betas, losses = L.loss_surface(
        net, objective, B.tree_asarray(final_np), B.tree_asarray(d1), B.tree_asarray(d2), batches,
        grid=(cfg.landscape_grid, cfg.landscape_grid), span=spans,
    )
    from safetensors.numpy import save_file

    save_file(
        {"alphas": np.asarray(alphas), "betas": np.asarray(betas), "losses": np.asarray(losses),
         **{f"trajectory/{k}": np.asarray(v) for k, v in projected.items()}},
        str(out / "landscape.safetensors"),
    )
    path = L.plot_landscape(
        alphas, betas, losses, projected, out / "landscape.png",
        title=f"Loss landscape around {ref}'s final parameters (test loss)", explained_variance=explained,
    ) if hasattr(L, "plot_landscape") else None
    return {"explained_variance": [float(v) for v in np.asarray(explained).ravel()[:2]], "plot": Path(path).name if path else None}


def _plots(cfg: StudyConfig, net: Any, data: Any, B: Any, final_params: dict, results: dict, out: Path) -> dict:
    from .analysis import plots as P

    if not P.have_matplotlib():
        return {}
    made: dict[str, str] = {}
    ref = cfg.reference
    xs = B.asarray(data.x_test[:, :32])
    _, _, rec = net.run(final_params[ref], xs, record=True)
    spiking = [l for l, b in enumerate(net.blocks) if b.cell.spiking]
    if spiking:
        made["raster"] = P.plot_raster(
            [B.to_numpy(rec["out"][l])[:, 0] for l in spiking], out / "raster.png",
            [f"block {l} ({type(net.blocks[l].cell).__name__})" for l in spiking],
            title=f"Spike raster after training with {ref}, test example 0",
        ).name
    made["accuracy"] = _plot_rule_curves(P, results, out / "accuracy_curves.png").name
    from .train.compare import read_comparison

    records, samples = read_comparison(out / "alignment")
    if hasattr(P, "plot_alignment_curves"):
        others = [r for r in records if r["rule"] != ref and r["kind"] == "gradient"]
        made["alignment"] = Path(P.plot_alignment_curves(others, out / "alignment_curves.png", reference=ref)).name
    if hasattr(P, "plot_deviation_violins") and samples:
        step = max(int(k.split("/")[0]) for k in samples)
        picked = {
            (k.split("/")[1], k.split("/")[3]): v for k, v in samples.items()
            if k.startswith(f"{step}/") and k.split("/")[2] == "gradient" and k.split("/")[1] != ref
        }
        made["deviations"] = Path(P.plot_deviation_violins(picked, out / "deviation_violins.png", step, reference=ref)).name
    return made


def _plot_rule_curves(P: Any, results: dict, path: Path) -> Path:
    plt = P._pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for rule, r in results["rules"].items():
        h = r["history"]
        ax.plot([e["epoch"] for e in h], [100 * e["test_acc"] for e in h], marker="o", ms=3, label=rule)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy per epoch, same network, seed and optimizer")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return P._save(fig, path)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x

