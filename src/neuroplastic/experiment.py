"""One training run from a plain configuration, written to a run folder.

:func:`train_run` builds the data, encoder, model, rule and trainer from a
:class:`~neuroplastic.config.RunConfig`, trains, evaluates, and writes ``RUN_DIR`` with:

* ``config.toml`` and ``config.json``  the configuration (TOML sections; flat JSON);
* ``metrics.jsonl``    one line of metrics per epoch;
* ``checkpoints/``     the latest checkpoint (safetensors + JSON sidecar), for ``--resume``;
* ``summary.md``       final accuracy, firing rates, timing (and efficiency metrics);
* ``params.safetensors`` the trained parameters (no pickle; never written with NaN or infinite values);
* ``status.json``      ``running``, ``finished`` or ``failed`` with the error (a diverged run says so);
* ``learning_curves.png`` and ``raster.png`` when matplotlib is installed.

:func:`resume_run` continues a run folder whose process was killed: it reads the run's
config, loads the latest checkpoint and trains the remaining epochs.  The final
parameters are bit for bit those of an uninterrupted run on the same backend and machine.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .backend import get_backend
from .config import RunConfig, config_to_toml, load_config
from .data import Dataset, load_dataset
from .losses import RateRegularizer
from .models import build_model
from .progress import compiling_note, note
from .train import Trainer
from .train.trainer import Callback
from .train.checkpoint import Checkpoint, atomic_write, clear_checkpoints, load_checkpoint, read_sidecar
from .tree import tree_flatten_dict

#: the checkpoint folder inside a run folder
CHECKPOINTS = "checkpoints"
#: test examples the efficiency metrics (and the raster) are computed on
EFFICIENCY_EXAMPLES = 256


def machine_description() -> str:
    """Architecture, CPU model with its widest AVX extension, usable cores, OS and Python: the line that
    says where a result was measured (results move by machine; ``/proc/cpuinfo`` where there is one)."""
    import os
    import re

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
    cpu = model.group(1).strip() if model else platform.processor()
    if flags:
        words = set(flags.group(1).split())
        isa = "AVX-512" if "avx512f" in words else "AVX2" if "avx2" in words else "no AVX2"
        cpu = f"{cpu} ({isa})" if cpu else isa
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    parts = (platform.machine(), cpu, f"{cores} cores" if cores else "", platform.system(), f"Python {platform.python_version()}")
    return ", ".join(part for part in parts if part)


def load_run_data(cfg: RunConfig) -> Dataset:
    """The dataset of ``cfg``, passed through its encoder when ``cfg.encoder`` is set."""
    data = load_dataset(cfg.data, **cfg.data_options)
    if cfg.encoder is None:
        return data
    from .encoders import ENCODERS

    encode = ENCODERS[cfg.encoder]

    def enc(x: np.ndarray) -> np.ndarray:
        return np.asarray(encode(x, **cfg.encoder_options), dtype=np.float32)

    return dataclasses.replace(data, name=f"{data.name}+{cfg.encoder}", x_train=enc(data.x_train), x_test=enc(data.x_test))


def read_run_config(run_dir: str | Path) -> RunConfig:
    """The config of a run folder: ``config.toml``, or ``config.json`` where there is no TOML."""
    d = Path(run_dir)
    if (d / "config.toml").is_file():
        return load_config(d / "config.toml")
    if (d / "config.json").is_file():
        try:
            flat = json.loads((d / "config.json").read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"resume: {d / 'config.json'} is not valid JSON ({err})") from None
        return RunConfig.from_dict(flat)
    raise ValueError(f"resume: {d} has no config.toml or config.json; is it a run folder?")


def resume_run(run_dir: str | Path, progress: bool = True, log: Any = print, data: Dataset | None = None,
               callbacks: Sequence[Callback] = ()) -> dict:
    """Continue the run in ``run_dir`` from its latest checkpoint; returns the summary dict.

    ``data`` and ``callbacks`` are passed on to :func:`train_run`.
    """
    d = Path(run_dir)
    if not d.is_dir():
        raise ValueError(f"resume: {d} is not a folder")
    return train_run(read_run_config(d), d, progress=progress, log=log, resume=True, data=data, callbacks=callbacks)


def _read_metrics(path: Path, upto: int) -> list[dict]:
    """Records of epochs ``1..upto`` from a metrics file (a half-written last line is dropped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("epoch"), int) and rec["epoch"] <= upto:
            out.append(rec)
    return out


def _config_difference(saved: dict, cfg: dict) -> str | None:
    current = json.loads(json.dumps(cfg))
    for k in sorted(set(saved) | set(current)):
        if saved.get(k) != current.get(k):
            return f"{k}: {saved.get(k)!r} in the checkpoint, {current.get(k)!r} in the run config"
    return None


def run_backend(cfg: RunConfig) -> Any:
    """The backend ``cfg`` names, on its device, with its float type and its ``compile`` choice."""
    return get_backend(cfg.backend, device=cfg.device, dtype=cfg.dtype, compile=cfg.compile)


def build_trainer(cfg: RunConfig, data: Dataset, backend: Any = None, progress: bool = False) -> tuple[Any, Trainer]:
    """``(network, trainer)`` as ``cfg`` describes them, the network sized for ``data``.

    ``backend`` defaults to ``cfg``'s.  The optimizer's schedule counts updates: one per
    batch offline, one per time step online.  What :func:`train_run` trains; examples that
    prepare their own data (an encoder fitted on the training set) use it directly.
    """
    from .rules import make_rule
    from .train import make_optimizer

    B = backend if backend is not None else run_backend(cfg)
    net = build_model(cfg.model, data.n_features, data.n_classes, hidden=cfg.hidden, tau_mem=cfg.tau_mem, tau_out=cfg.tau_out,
                      dt=data.dt, surrogate=cfg.surrogate)
    # strength 0 switches the regulariser off (what a TOML file, which has no null, can say)
    reg = RateRegularizer(cfg.reg_rate_hz, cfg.reg_strength, data.dt) if cfg.reg_rate_hz is not None and cfg.reg_strength > 0 else None
    updates_per_batch = data.n_steps if cfg.mode == "online" else 1
    steps = cfg.epochs * -(-data.x_train.shape[1] // cfg.batch_size) * updates_per_batch
    schedule = cfg.schedule if cfg.optimizer != "naive" else "constant"
    optimizer = make_optimizer(cfg.optimizer, cfg.lr, B, schedule=schedule, total_steps=max(steps, 1))
    trainer = Trainer(net, make_rule(cfg.rule, **cfg.rule_options), cfg.loss, optimizer, backend=B, mode=cfg.mode,
                      regularizer=reg, dt=data.dt, progress=progress)
    return net, trainer


def train_run(cfg: RunConfig, out_dir: str | Path, progress: bool = True, log: Any = print, resume: bool = False,
              data: Dataset | None = None, callbacks: Sequence[Callback] = ()) -> dict:
    """Train as ``cfg`` says and write the run folder ``out_dir``; returns the summary dict.

    ``resume=True`` continues from the checkpoint in ``out_dir/checkpoints`` (see
    :func:`resume_run`); a folder without a checkpoint starts again from epoch 0.
    ``data``: the dataset :func:`load_run_data` would return for ``cfg``, already loaded
    (a sweep passes one copy to many runs); ``callbacks`` go to :meth:`Trainer.fit`
    (called after every epoch; a true return stops training).
    """
    cfg.validate()
    out = Path(out_dir)
    ckpt_dir = out / CHECKPOINTS
    info = read_sidecar(ckpt_dir) if resume else None  # a corrupted sidecar fails here, before any write
    if resume and info is not None:
        diff = _config_difference(info["meta"].get("config", {}), cfg.to_dict())
        if diff is not None:
            raise ValueError(f"checkpoint: written by a run with another configuration ({diff})")
        if info["epoch"] > cfg.epochs:
            raise ValueError(f"checkpoint: at epoch {info['epoch']}, past the run's {cfg.epochs} epochs")
    B = run_backend(cfg)
    data = load_run_data(cfg) if data is None else data
    if data.n_classes is None:
        raise ValueError(f"data: {cfg.data} is not a classification set; the train command needs labels")
    net, trainer = build_trainer(cfg, data, B, progress)
    rule = trainer.rule
    params = net.init(cfg.seed, backend=B)
    state = trainer.init_state(params, cfg.seed)
    start = 0
    if info is not None:
        ckpt = load_checkpoint(ckpt_dir, Checkpoint(params, *state))
        params, state, start = ckpt.params, (ckpt.opt_state, ckpt.rule_state), ckpt.epoch
    metrics_path = out / "metrics.jsonl"
    previous = _read_metrics(metrics_path, start) if resume else []
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        clear_checkpoints(ckpt_dir)
        atomic_write(out / "config.json", json.dumps(cfg.to_dict(), indent=2).encode())
        atomic_write(out / "config.toml", config_to_toml(cfg).encode())
    # epochs after the checkpoint are trained again: drop their lines (and a half-written one)
    atomic_write(metrics_path, "".join(json.dumps(r) + "\n" for r in previous).encode())
    log(f"neuroplastic: {data} | {net} | rule={rule!r} mode={cfg.mode} backend={B.name}{', compiled' if B.compile_steps else ''} ({B.device or 'default device'})")
    if resume:
        log(f"neuroplastic: resuming {out} after epoch {start} of {cfg.epochs}" if info else f"neuroplastic: no checkpoint in {out}; starting from epoch 0")
    write_status(out, "running", epoch=start)
    if progress and cfg.epochs > start:  # the bars below are the trainer's, one per epoch; say whose they are
        note(f"training {cfg.rule} ({cfg.mode}, {cfg.epochs - start} epochs, {data.x_train.shape[1]} training examples)", progress)
        compiling_note(B, f"the {cfg.rule} training step", progress)
    t0 = time.perf_counter()
    try:
        params, history = trainer.fit(
            params, data, epochs=cfg.epochs - start, batch_size=cfg.batch_size, seed=cfg.seed, log_path=metrics_path,
            state=state, start_epoch=start, checkpoint_dir=ckpt_dir if cfg.checkpoint_every else None,
            checkpoint_every=cfg.checkpoint_every or 1, checkpoint_meta={"config": cfg.to_dict()}, callbacks=callbacks,
        )
        wall = time.perf_counter() - t0 + sum(h.get("epoch_time_s", 0.0) for h in previous)
        history = previous + history
        save_params(params, B, out / "params.safetensors")
    except BaseException as err:  # the folder says why it has no result; good files stay as they were
        write_status(out, "failed", error=f"{type(err).__name__}: {err}")
        raise

    # one test batch with the full record, for the raster and the efficiency metrics
    xs = B.asarray(data.x_test[:, :EFFICIENCY_EXAMPLES])
    _, _, rec = net.run(params, xs, record=True)
    spikes = [B.to_numpy(z) for z in rec["out"]]
    summary = {
        "config": cfg.to_dict(),
        "final": history[-1] if history else {},
        "best_test_acc": max((h["test_acc"] for h in history), default=None),
        "wall_time_s": wall,
        "machine": machine_description(),
        "efficiency": _efficiency(net, params, xs, rec),
    }
    if resume:
        summary["resumed_after_epoch"] = start
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plots = _plots(history, spikes, net, data.dt, out)
    (out / "summary.md").write_text(render_summary(summary, history, plots))
    write_status(out, "finished", epoch=len(history))
    trained = len(history) - len(previous)
    if trained == 0:
        why = "epochs = 0" if cfg.epochs == 0 else f"the run had already completed its {cfg.epochs} epochs"
        log(f"neuroplastic: nothing was trained ({why}); run folder {out}")
    else:
        acc = history[-1]["test_acc"] if history else None
        shown = "n/a" if acc is None else f"{100 * acc:.1f}%"
        log(f"neuroplastic: test accuracy {shown} after {len(history)} epochs in {wall:.0f} s; run folder {out}")
    return summary


#: the file in a run folder that says whether the run is running, finished or failed (and why)
STATUS = "status.json"


def write_status(out: Path, status: str, **details: Any) -> None:
    """Record the run's state in ``out/status.json`` (atomically): running, finished or failed."""
    atomic_write(Path(out) / STATUS, json.dumps({"status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **details}, indent=2).encode())


def read_status(run_dir: str | Path) -> dict | None:
    """The run folder's status record, or ``None`` when it has none (or it is unreadable)."""
    try:
        return json.loads((Path(run_dir) / STATUS).read_text())
    except (OSError, ValueError):
        return None


def save_params(params: Any, B: Any, path: Path) -> None:
    """Parameters as a safetensors file keyed by dotted path, written atomically; non-finite values are refused."""
    from safetensors.numpy import save

    from .train.guard import check_finite

    check_finite(params, f"params: not writing {path}; the parameters", B.to_numpy)
    flat = {k: np.array(B.to_numpy(v), order="C") for k, v in tree_flatten_dict(params).items()}
    atomic_write(path, save(flat))


def _efficiency(net: Any, params: Any, xs: Any, rec: dict) -> dict:
    """NeuroBench metrics (:mod:`neuroplastic.analysis.neurobench`) of the test batch ``xs`` recorded in ``rec``."""
    from .analysis.neurobench import efficiency_metrics

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
        from .analysis.neurobench import summary_rows

        lines += [
            "", f"## Efficiency (NeuroBench definitions, first {eff.get('samples')} test examples)", "",
            "Effective ACs count spike input, effective MACs dense input (nonzero activations times nonzero fan-out, "
            "recurrent connections included); per-layer values are in `summary.json`. See docs/analysis.md.", "",
            "| metric | value |", "|---|---|",
        ]
        lines += [f"| {label} | {value} |" for label, value in summary_rows(eff)]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    lines += ["", "## Per-epoch metrics", "", "| epoch | train loss | train acc | test loss | test acc | s |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {h['epoch']} | {h['train_loss']:.4f} | {pct(h['train_acc'])} | {h['test_loss']:.4f} | {pct(h['test_acc'])} | {h['epoch_time_s']:.1f} |"
        for h in history
    ]
    return "\n".join(lines) + "\n"


__all__ = ["CHECKPOINTS", "STATUS", "RunConfig", "build_trainer", "load_run_data", "read_run_config", "read_status", "render_summary",
           "resume_run", "save_params", "train_run", "write_status"]
