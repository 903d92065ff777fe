"""One training run from a plain configuration, written to a run folder.

:func:`train_run` builds the data, model, rule and trainer from a :class:`RunConfig`,
trains, evaluates, and writes ``RUN_DIR`` with:

* ``config.json``      the configuration;
* ``metrics.jsonl``    one line of metrics per epoch;
* ``summary.md``       final accuracy, firing rates, timing (and efficiency metrics);
* ``params.safetensors`` the trained parameters (no pickle);
* ``learning_curves.png`` and ``raster.png`` when matplotlib is installed.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backend import get_backend
from .data import load_dataset
from .losses import RateRegularizer
from .models import build_model
from .train import Trainer
from .tree import tree_flatten_dict


@dataclass
class RunConfig:
    """Everything that defines a training run (defaults: the MNIST-1D BPTT main job)."""

    data: str = "mnist1d"
    model: str = "rsnn-alif"
    hidden: int = 256
    surrogate: str = "triangle"
    rule: str = "bptt"
    mode: str = "offline"
    loss: str = "ce_mean"
    optimizer: str = "adam"
    lr: float = 5e-3
    schedule: str = "cosine"
    epochs: int = 60
    batch_size: int = 64
    backend: str = "jax"
    device: str | None = None
    dtype: str = "float32"
    seed: int = 0
    reg_rate_hz: float | None = None
    reg_strength: float = 1.0
    data_options: dict = field(default_factory=dict)
    rule_options: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        for name in ("hidden", "epochs", "batch_size"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v > (0 if name != "epochs" else -1)):
                raise ValueError(f"{name}: expected a positive integer, got {v!r}")
        if not (self.lr > 0):
            raise ValueError(f"lr: expected a positive learning rate, got {self.lr!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def train_run(cfg: RunConfig, out_dir: str | Path, progress: bool = True, log: Any = print) -> dict:
    """Train as ``cfg`` says and write the run folder ``out_dir``; returns the summary dict."""
    cfg.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    B = get_backend(cfg.backend, device=cfg.device, dtype=cfg.dtype)
    data = load_dataset(cfg.data, **cfg.data_options)
    if data.n_classes is None:
        raise ValueError(f"data: {cfg.data} is not a classification set; the train command needs labels")
    net = build_model(cfg.model, data.n_features, data.n_classes, hidden=cfg.hidden, dt=data.dt, surrogate=cfg.surrogate)
    params = net.init(cfg.seed, backend=B)
    from .rules import make_rule

    rule = make_rule(cfg.rule, **cfg.rule_options)
    reg = RateRegularizer(cfg.reg_rate_hz, cfg.reg_strength, data.dt) if cfg.reg_rate_hz is not None else None
    from .train import make_optimizer

    steps = cfg.epochs * -(-data.x_train.shape[1] // cfg.batch_size)
    optimizer = make_optimizer(cfg.optimizer, cfg.lr, B, schedule=cfg.schedule if cfg.optimizer != "naive" else "constant", total_steps=max(steps, 1))
    trainer = Trainer(net, rule, cfg.loss, optimizer, backend=B, mode=cfg.mode, regularizer=reg, dt=data.dt, progress=progress)
    log(f"neuroplastic: {data} | {net} | rule={rule!r} mode={cfg.mode} backend={B.name} ({B.device or 'default device'})")
    metrics_path = out / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)
    t0 = time.perf_counter()
    params, history = trainer.fit(params, data, epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, log_path=metrics_path)
    wall = time.perf_counter() - t0
    save_params(params, B, out / "params.safetensors")

    # one test batch with the full record, for the raster and the efficiency metrics
    xs = B.asarray(data.x_test[:, :64])
    _, _, rec = net.run(params, xs, record=True)
    spikes = [B.to_numpy(z) for z in rec["out"]]
    summary = {
        "config": cfg.to_dict(),
        "final": history[-1] if history else {},
        "best_test_acc": max((h["test_acc"] for h in history), default=None),
        "wall_time_s": wall,
        "machine": f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}",
        "efficiency": _efficiency(net, params, xs, rec),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plots = _plots(history, spikes, net, data.dt, out)
    (out / "summary.md").write_text(render_summary(summary, history, plots))
    log(f"neuroplastic: test accuracy {100 * (history[-1]['test_acc'] or 0):.1f}% after {len(history)} epochs in {wall:.0f} s; run folder {out}")
    return summary


def save_params(params: Any, B: Any, path: Path) -> None:
    """Parameters as a safetensors file keyed by dotted path."""
    from safetensors.numpy import save_file

    flat = {k: np.ascontiguousarray(B.to_numpy(v)) for k, v in tree_flatten_dict(params).items()}
    tmp = path.with_suffix(".tmp")
    save_file(flat, str(tmp))
    tmp.replace(path)


def _efficiency(net: Any, params: Any, xs: Any, rec: dict) -> dict | None:
    try:
        from .analysis.neurobench import efficiency_metrics
    except ImportError:
        return None
    return efficiency_metrics(net, params, xs, rec)


def _plots(history: list, spikes: list, net: Any, dt: float, out: Path) -> list[str]:
    from .analysis.plots import have_matplotlib, plot_learning_curves, plot_raster

    if not have_matplotlib():
        return []
    files = []
    if history:
        files.append(plot_learning_curves(history, out / "learning_curves.png").name)
    names = [f"block {l}: {type(b.cell).__name__}" for l, b in enumerate(net.blocks)]
    idx = [l for l, b in enumerate(net.blocks) if b.cell.spiking]
    if idx:
        files.append(plot_raster([spikes[l][:, 0] for l in idx], out / "raster.png", [names[l] for l in idx], title="Spike raster, test example 0").name)
    return files


def render_summary(summary: dict, history: list, plots: list[str]) -> str:
    cfg, final = summary["config"], summary["final"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    lines = [
        f"# Run summary: {cfg['rule']} on {cfg['data']}",
        "",
        f"Model `{cfg['model']}` (hidden {cfg['hidden']}), loss `{cfg['loss']}`, optimizer `{cfg['optimizer']}` "
        f"(lr {cfg['lr']}, {cfg['schedule']} schedule), {cfg['epochs']} epochs, batch {cfg['batch_size']}, backend `{cfg['backend']}`, seed {cfg['seed']}.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| final test accuracy | {pct(final.get('test_acc'))} |",
        f"| best test accuracy | {pct(summary['best_test_acc'])} |",
        f"| final train accuracy | {pct(final.get('train_acc'))} |",
        f"| final test loss | {final.get('test_loss', float('nan')):.4f} |",
        f"| firing rate per spiking block (Hz) | {', '.join(f'{r:.1f}' for r in final.get('rate_hz', []) if r is not None)} |",
        f"| training wall time | {summary['wall_time_s']:.1f} s |",
        f"| machine | {summary['machine']} |",
    ]
    eff = summary.get("efficiency")
    if eff:
        lines += ["", "## Efficiency (NeuroBench definitions, one test batch)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in eff.items() if not isinstance(v, (dict, list))]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    lines += ["", "## Per-epoch metrics", "", "| epoch | train loss | train acc | test loss | test acc | s |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {h['epoch']} | {h['train_loss']:.4f} | {pct(h['train_acc'])} | {h['test_loss']:.4f} | {pct(h['test_acc'])} | {h['epoch_time_s']:.1f} |"
        for h in history
    ]
    return "\n".join(lines) + "\n"
