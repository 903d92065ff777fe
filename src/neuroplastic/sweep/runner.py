"""Running a sweep: the manifest, one trial, and the three runners (in process, Ray tasks, Ray Tune).

A sweep folder holds::

    sweep.toml     the sweep file as given
    sweep.json     the manifest: every trial's setting, config, status and message
    trials/NAME/   one ordinary run folder per trial (experiment.train_run)
    report.md, report.html and the PNG figures (neuroplastic.sweep.report)

Only the driver writes the manifest (atomically, after every finished trial); trials
write only their own run folder, so a folder on a filesystem every node shares is all a
cluster needs.  A trial's status is ``pending``, ``finished``, ``failed`` (a ``ValueError``:
invalid settings, divergence, bad data; not retried), ``stopped`` (ended early by the
search scheduler) or ``error`` (the process or node died; rerun by ``--resume``).

``--resume`` reruns no trial whose run folder is complete and continues every other one
from its latest checkpoint (:func:`neuroplastic.experiment.train_run` with ``resume=True``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..backend import native, openmp_wait_env
from ..config import RunConfig
from ..experiment import load_run_data, train_run
from ..train.checkpoint import atomic_write
from .spec import SweepSpec, Trial, expand_trials, load_sweep, setting_label

MANIFEST = "sweep.json"
SWEEP_FILE = "sweep.toml"
TRIALS = "trials"
FORMAT = 1
#: statuses that ``--resume`` leaves alone
DONE = ("finished", "failed", "stopped")
#: retries of a Ray task whose worker process died (the retry continues from the checkpoint)
TASK_RETRIES = 2


def default_sweep_dir(sweep_file: str | Path) -> Path:
    """``runs/sweeps/<file stem>``: where a sweep goes without ``--out``."""
    return Path("runs") / "sweeps" / Path(sweep_file).stem


# ---------------------------------------------------------------------------- one trial
def data_key(cfg: RunConfig) -> str:
    """What decides a trial's dataset: trials with the same key share one loaded copy."""
    return json.dumps([cfg.data, cfg.data_options, cfg.encoder, cfg.encoder_options], sort_keys=True)


def run_trial(config: dict, run_dir: str, data: Any, report: Callable | None = None) -> dict:
    """Train one trial into ``run_dir`` and return its outcome (``status``, ``message``, accuracies).

    A run folder that already has its ``config.toml`` is continued from its latest
    checkpoint.  A ``ValueError`` (bad settings, divergence: the trainer's guard raises one
    on a non-finite loss, gradient or parameter; a data/model mismatch) is the outcome
    ``failed`` with its message; anything else propagates.  ``report`` is an extra
    per-epoch trainer callback (the search runner's report to Ray Tune).
    """
    cfg = RunConfig.from_dict(config)
    d = Path(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    callbacks = [report] if report is not None else []
    with open(d / "log.txt", "a", encoding="utf-8") as log_file, _run_folder_lock(d):
        def log(msg: str) -> None:
            log_file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
            log_file.flush()

        resume = (d / "config.toml").is_file()
        log(f"trial on {platform.node()} pid {os.getpid()}" + (" (continuing)" if resume else ""))
        try:
            summary = train_run(cfg, d, progress=False, log=log, resume=resume, data=data, callbacks=callbacks)
        except ValueError as err:
            log(f"failed: {err}")
            return {"status": "failed", "message": str(err), "host": platform.node()}
    return {**outcome_from_summary(summary), "status": "finished", "message": None, "host": platform.node(), "ray_node": _ray_node()}


@contextlib.contextmanager
def _run_folder_lock(d: Path) -> Iterator[None]:
    """Hold ``d/.lock`` exclusively: a trial retried while the process of a killed driver's
    attempt is still dying waits for it, instead of both writing the same run folder."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(d / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the holder closes it or dies
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _ray_node() -> str | None:
    """The Ray node this process belongs to (``None`` outside Ray)."""
    ray = sys.modules.get("ray")
    try:
        return ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - only a label in the manifest
        return None


def outcome_from_summary(summary: dict) -> dict:
    """The manifest's result fields of a trial from its ``summary.json``."""
    final = summary.get("final") or {}
    return {
        "final_test_acc": final.get("test_acc"), "best_test_acc": summary.get("best_test_acc"),
        "final_test_loss": final.get("test_loss"), "final_train_acc": final.get("train_acc"),
        "epochs_done": final.get("epoch", 0), "wall_time_s": summary.get("wall_time_s"),
        "resumed_after_epoch": summary.get("resumed_after_epoch"),
    }


def completed_outcome(run_dir: Path, cfg: RunConfig) -> dict | None:
    """The outcome of a run folder that holds a complete run of ``cfg`` (``None`` if it does not)."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not (run_dir / "summary.md").is_file():  # written last by train_run
        return None
    if summary.get("config") != json.loads(json.dumps(cfg.to_dict())):
        return None
    if (summary.get("final") or {}).get("epoch", 0) != cfg.epochs:
        return None
    return {**outcome_from_summary(summary), "status": "finished", "message": None}


def read_history(run_dir: Path) -> list[dict]:
    """The per-epoch records of a run folder's ``metrics.jsonl`` (a half-written line is skipped)."""
    out = []
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("epoch"), int):
            out.append(rec)
    return out


# ---------------------------------------------------------------------------- manifest
@dataclass
class Manifest:
    """``sweep.json``: the trials and their status; only the driver writes it."""

    sweep_dir: Path
    data: dict = field(default_factory=dict)

    @property
    def trials(self) -> list[dict]:
        return self.data["trials"]

    def record(self, name: str, outcome: dict) -> dict:
        """Merge ``outcome`` into trial ``name`` and write the manifest."""
        rec = next(t for t in self.trials if t["name"] == name)
        rec.update(outcome)
        rec["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.save()
        return rec

    def save(self) -> None:
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        atomic_write(self.sweep_dir / MANIFEST, (json.dumps(self.data, indent=1, default=float) + "\n").encode())

    @classmethod
    def load(cls, sweep_dir: str | Path) -> "Manifest":
        """The manifest of an existing sweep folder."""
        d = Path(sweep_dir)
        try:
            data = json.loads((d / MANIFEST).read_text())
        except OSError:
            raise ValueError(f"sweep_dir: {d} holds no sweep ({MANIFEST} is missing)") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"sweep_dir: {d / MANIFEST} is corrupted (not valid JSON: {err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("trials"), list):
            raise ValueError(f"sweep_dir: {d / MANIFEST} is not a sweep manifest of format {FORMAT}")
        return cls(d, data)


def _trial_record(t: Trial) -> dict:
    return {
        "index": t.index, "name": t.name, "setting": t.setting, "label": setting_label(t.setting), "seed": t.seed,
        "config": t.config.to_dict() if t.config is not None else None,
        "status": "pending" if t.error is None else "failed", "message": t.error, "attempts": 0,
    }


def open_manifest(sweep_dir: Path, spec: SweepSpec, trials: list[Trial], sweep_text: str, resume: bool) -> Manifest:
    """A new manifest for a new sweep folder, or the existing one when resuming (checked against ``trials``)."""
    exists = (sweep_dir / MANIFEST).exists()
    if resume:
        if not exists:
            raise ValueError(f"--resume: {sweep_dir} holds no sweep ({MANIFEST} is missing); run without --resume to start one")
        m = Manifest.load(sweep_dir)
        _check_same_trials(m, trials, sweep_dir)
        return m
    if exists:
        raise ValueError(f"--out: {sweep_dir} already holds a sweep; add --resume to continue it, or choose another --out")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(sweep_dir / SWEEP_FILE, sweep_text.encode())
    m = Manifest(sweep_dir, {
        "format": FORMAT, "source": spec.source, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "sweep": spec.to_dict(), "axes": [a.key for a in spec.axes], "trials": [_trial_record(t) for t in trials],
    })
    m.save()
    return m


def _check_same_trials(m: Manifest, trials: list[Trial], sweep_dir: Path) -> None:
    old = {t["name"]: t for t in m.trials}
    new_names = [t.name for t in trials]
    if list(old) != new_names:
        gone = [n for n in old if n not in new_names] or [n for n in new_names if n not in old]
        raise ValueError(f"--resume: the sweep file no longer gives the trials of {sweep_dir} (first difference: trial {gone[0]!r}); "
                         f"start a new sweep with another --out")
    for t in trials:
        cfg = t.config.to_dict() if t.config is not None else None
        if json.loads(json.dumps(cfg)) != old[t.name]["config"]:
            raise ValueError(f"--resume: trial {t.name!r} has another configuration in the sweep file than in {sweep_dir / MANIFEST}; "
                             f"start a new sweep with another --out")


# ---------------------------------------------------------------------------- the driver
@dataclass
class SweepResult:
    """What :func:`run_sweep` did: the folder, the engine, and the trials by status."""

    sweep_dir: Path
    engine: str
    counts: dict
    report: tuple | None = None


def thread_env(cpus: int) -> dict[str, str]:
    """Environment of a trial's process: its thread pools sized to its ``cpus`` (no framework call needed)."""
    n = str(cpus)
    xla = os.environ.get("XLA_FLAGS", "").strip()
    env = {
        "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n,
        **openmp_wait_env(),  # see backend.prefer_passive_openmp
        "XLA_FLAGS": (xla + " " if xla else "") + f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={n}",
    }
    for passed in ("NEUROPLASTIC_CACHE", "ATEN_CPU_CAPABILITY"):
        if passed in os.environ:
            env[passed] = os.environ[passed]
    env.update(native.huge_pages_env())  # read by glibc when the trial's process starts
    return env


def limit_threads_here(cpus: int) -> bool:
    """Give this process the thread limits of a trial (:func:`thread_env`) if no framework is loaded yet.

    The in-process runner then computes with the thread counts a Ray worker uses, so both
    give the same results.  ``False`` when torch or JAX is already imported (too late).
    """
    if any(m in sys.modules for m in ("torch", "jax", "jaxlib")):
        return False
    env = thread_env(cpus)
    if os.environ.get("OMP_NUM_THREADS") != env["OMP_NUM_THREADS"] or "xla_cpu_multi_thread_eigen" not in os.environ.get("XLA_FLAGS", ""):
        os.environ.update(env)
    return True


def trial_gpus(spec: SweepSpec, cfg: RunConfig) -> float:
    """GPUs a trial asks for: ``gpus_per_trial`` when set, else 1 for a ``cuda`` device and 0 otherwise."""
    if spec.gpus_per_trial is not None:
        return spec.gpus_per_trial
    return 1.0 if isinstance(cfg.device, str) and cfg.device.startswith("cuda") else 0.0


def run_sweep(sweep_file: str | Path, out: str | Path | None = None, resume: bool = False, address: str | None = None,
              workers: int | None = None, in_process: bool = False, log: Callable[[str], Any] = print,
              notice: Callable[[str], Any] | None = None, limit_threads: bool = False) -> SweepResult:
    """Run (or with ``resume``, continue) the sweep of ``sweep_file``, then write its report.

    ``address``: a Ray cluster (default ``$RAY_ADDRESS``; neither: a local Ray started here
    and stopped at the end).  ``workers``: trials at once (default: the CPUs here divided by
    ``cpus_per_trial``; on a cluster, as many as it schedules).  ``in_process``, or Ray not
    installed: every trial in this process, in order (``notice`` says so, in one line);
    ``limit_threads`` then gives this process a trial's thread limits first, as long as no
    framework is loaded (what ``neuroplastic sweep`` does; it changes ``os.environ``).
    """
    if workers is not None and not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1):
        raise ValueError(f"--workers: expected a positive integer, got {workers!r}")
    if in_process and address:
        raise ValueError("--address: a cluster address cannot be combined with --in-process")
    notice = notice or (lambda msg: print(msg, file=sys.stderr))
    path = Path(sweep_file)
    spec = load_sweep(path)
    trials = expand_trials(spec)
    sweep_dir = Path(out) if out is not None else default_sweep_dir(path)
    manifest = open_manifest(sweep_dir, spec, trials, path.read_text(encoding="utf-8"), resume)
    by_name = {t.name: t for t in trials}
    todo = []
    for rec in manifest.trials:
        if rec["status"] in DONE:
            continue
        t = by_name[rec["name"]]
        done = completed_outcome(sweep_dir / TRIALS / t.name, t.config)
        if done is not None:  # finished while the last driver was dying: keep it
            manifest.record(t.name, done)
        else:
            todo.append(t)
    failed_now = sum(1 for t in trials if t.error is not None)
    log(f"neuroplastic sweep: {len(trials)} trials in {sweep_dir} ({failed_now} with invalid settings, "
        f"{len(trials) - len(todo) - failed_now} already done); {len(todo)} to run")
    for t in trials:
        if t.error is not None and not resume:
            log(f"  {t.name}: failed: {t.error}")

    ray = None
    if not in_process:
        try:
            import ray  # noqa: F811
        except ImportError:
            if address:
                raise ValueError("--address: Ray is not installed; pip install 'neuroplastic[dist]'") from None
            notice(f"neuroplastic sweep: Ray is not installed (pip install 'neuroplastic[dist]'); running the {len(todo)} trials "
                   f"in this process, one after another" + (", each to its last epoch (no early stopping)" if spec.mode == "search" else ""))
    datasets = _load_datasets(todo, manifest, log)
    todo = [t for t in todo if data_key(t.config) in datasets]
    progress = _Progress(manifest, len(todo), log)
    if ray is None:
        engine = "in-process"
        if todo and limit_threads and not limit_threads_here(spec.cpus_per_trial):
            log(f"neuroplastic sweep: a framework is already loaded in this process; its thread pools keep their size "
                f"(not cpus_per_trial = {spec.cpus_per_trial})")
        _run_in_process(todo, datasets, sweep_dir, progress)
    else:
        engine = _run_on_ray(ray, spec, todo, datasets, sweep_dir, progress, address, workers)
    counts: dict[str, int] = {}
    for rec in manifest.trials:
        counts[rec["status"]] = counts.get(rec["status"], 0) + 1
    manifest.data["engine"] = engine
    manifest.save()
    from .report import write_sweep_report

    report = write_sweep_report(sweep_dir)
    log(f"neuroplastic sweep: {', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}; "
        f"report {sweep_dir / 'report.md'}")
    return SweepResult(sweep_dir, engine, counts, report)


class _Progress:
    """Records outcomes in the manifest and prints one line per trial."""

    def __init__(self, manifest: Manifest, total: int, log: Callable[[str], Any]) -> None:
        self.manifest, self.total, self.log, self.done = manifest, total, log, 0

    def started(self, name: str) -> None:
        rec = next(t for t in self.manifest.trials if t["name"] == name)
        self.manifest.record(name, {"attempts": rec.get("attempts", 0) + 1})

    def finished(self, name: str, outcome: dict) -> None:
        self.done += 1
        rec = self.manifest.record(name, outcome)
        status = rec["status"]
        if status == "finished":
            what = (f"test accuracy {100 * rec['final_test_acc']:.1f}% (best {100 * rec['best_test_acc']:.1f}%), "
                    f"{rec['wall_time_s']:.0f} s" + (f", continued after epoch {rec['resumed_after_epoch']}" if rec.get("resumed_after_epoch") else ""))
        elif status == "stopped":
            what = f"stopped by the scheduler after epoch {rec.get('epochs_done')}"
        else:
            what = rec.get("message") or ""
        self.log(f"[{self.done}/{self.total}] {name}: {status}" + (f": {what}" if what else ""))


def _load_datasets(todo: list[Trial], manifest: Manifest, log: Callable[[str], Any]) -> dict[str, Any]:
    """Each distinct dataset of the trials to run, loaded once; trials whose data fails to load are failed."""
    datasets: dict[str, Any] = {}
    for t in todo:
        key = data_key(t.config)
        if key in datasets:
            continue
        try:
            datasets[key] = load_run_data(t.config)
        except ValueError as err:
            for u in todo:
                if data_key(u.config) == key:
                    manifest.record(u.name, {"status": "failed", "message": str(err)})
                    log(f"  {u.name}: failed: {err}")
            datasets[key] = None
    return {k: v for k, v in datasets.items() if v is not None}


def _run_in_process(todo: list[Trial], datasets: dict, sweep_dir: Path, progress: _Progress) -> None:
    for t in todo:
        progress.started(t.name)
        try:
            outcome = run_trial(t.config.to_dict(), str((sweep_dir / TRIALS / t.name).resolve()), datasets[data_key(t.config)])
        except Exception as err:  # noqa: BLE001 - a bug in one trial is recorded and the sweep goes on
            outcome = {"status": "error", "message": f"{type(err).__name__}: {err}"}
        progress.finished(t.name, outcome)


# ---------------------------------------------------------------------------- Ray
def _data_bytes(datasets: dict) -> int:
    return sum(getattr(d, a).nbytes for d in datasets.values() for a in ("x_train", "y_train", "x_test", "y_test"))


def start_ray(ray: Any, address: str | None, cpus: int, object_store_bytes: int, env: dict) -> str:
    """Connect to ``address`` (or ``$RAY_ADDRESS``), or start a local Ray with ``cpus`` CPUs and no dashboard."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    common = dict(runtime_env={"env_vars": env}, log_to_driver=False, configure_logging=True, logging_level=logging.WARNING)
    if address is None or address == "local":
        ray.init(address="local", num_cpus=cpus, object_store_memory=object_store_bytes, include_dashboard=False, **common)
        return f"ray (local, {cpus} CPU{'s' if cpus > 1 else ''})"
    ray.init(address=address, **common)
    return f"ray (cluster {address})"


def _run_on_ray(ray: Any, spec: SweepSpec, todo: list[Trial], datasets: dict, sweep_dir: Path, progress: _Progress,
                address: str | None, workers: int | None) -> str:
    if not todo:
        return "ray (nothing to run)"
    local = not (address or os.environ.get("RAY_ADDRESS")) or address == "local"
    if workers is None and local:
        workers = max(1, (os.cpu_count() or 1) // spec.cpus_per_trial)
    # the object store holds the datasets once, plus room for Ray's own objects
    store = max(96 * 2**20, 2 * _data_bytes(datasets) + 64 * 2**20)
    env = thread_env(spec.cpus_per_trial)
    engine = start_ray(ray, address, (workers or 1) * spec.cpus_per_trial, store, env)
    try:
        if spec.mode == "search":  # tune.with_parameters puts the datasets in the object store once
            _run_tune(spec, todo, datasets, sweep_dir, progress, workers)
            return engine + ", Tune"
        refs = {key: ray.put(data) for key, data in datasets.items()}
        _run_tasks(ray, spec, todo, refs, sweep_dir, progress, workers, env)
        return engine
    finally:
        ray.shutdown()


def _run_tasks(ray: Any, spec: SweepSpec, todo: list[Trial], refs: dict, sweep_dir: Path, progress: _Progress,
               workers: int | None, env: dict) -> None:
    """Grid and random sweeps: one Ray task per trial, at most ``workers`` at once."""
    jobs = [RayJob(t.name, t.config.to_dict(), str((sweep_dir / TRIALS / t.name).resolve()), refs[data_key(t.config)],
                   trial_gpus(spec, t.config)) for t in todo]
    ray_map(ray, jobs, spec.cpus_per_trial, workers, env, progress.started, progress.finished)


@dataclass
class RayJob:
    """One training run for :func:`ray_map`: its name, run config (a dict), run folder, data (an object ref) and GPUs."""

    name: str
    config: dict
    run_dir: str
    data_ref: Any
    gpus: float = 0.0


def ray_map(ray: Any, jobs: Sequence[RayJob], cpus: int, workers: int | None, env: dict,
            started: Callable[[str], Any], finished: Callable[[str, dict], Any]) -> None:
    """Run :func:`run_trial` for each job as a Ray task (``cpus`` each, at most ``workers`` at once),
    calling ``started(name)`` and ``finished(name, outcome)``; a task that dies after its retries is
    the outcome ``error`` with Ray's message."""
    remote = ray.remote(max_retries=TASK_RETRIES, retry_exceptions=False)(run_trial)
    queue = list(jobs)
    running: dict[Any, RayJob] = {}
    while queue or running:
        while queue and (workers is None or len(running) < workers):
            j = queue.pop(0)
            started(j.name)
            ref = remote.options(num_cpus=cpus, num_gpus=j.gpus, name=j.name, runtime_env={"env_vars": env}).remote(
                j.config, j.run_dir, j.data_ref)
            running[ref] = j
        done, _ = ray.wait(list(running), num_returns=1)
        for ref in done:
            j = running.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as err:  # noqa: BLE001 - worker or node died after its retries, or a bug in the trial
                outcome = {"status": "error", "message": _ray_error_message(err)}
            finished(j.name, outcome)


def run_configs(runs: Sequence[tuple[str, RunConfig, str | Path]], data: Any, engine: str = "auto", address: str | None = None,
                workers: int | None = None, cpus_per_run: int = 1, log: Callable[[str], Any] = print) -> dict[str, dict]:
    """Train each ``(name, config, run_dir)`` on ``data`` and return ``{name: outcome}`` (as :func:`run_trial`).

    ``engine``: ``"ray"`` (an embedded local Ray, or the cluster at ``address`` / ``$RAY_ADDRESS``;
    the dataset goes to the object store once), ``"in-process"`` (one after another, here), or
    ``"auto"``: Ray when installed and there is more than one run, else in-process (with a one-line
    notice when Ray is missing).  Results are identical on both engines (each run is seeded by its
    config).  This is how ``neuroplastic run --seeds N`` trains its extra seeds.
    """
    if engine not in ("auto", "ray", "in-process"):
        raise ValueError(f"engine: unknown value {engine!r}; choose one of ['auto', 'ray', 'in-process']")
    if workers is not None and not (isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1):
        raise ValueError(f"workers: expected a positive integer, got {workers!r}")
    outcomes: dict[str, dict] = {}
    if not runs:
        return outcomes
    ray = None
    if engine != "in-process" and (engine == "ray" or len(runs) > 1):
        try:
            import ray  # noqa: F811
        except ImportError:
            if engine == "ray" or address:
                raise ValueError("engine: Ray is not installed; pip install 'neuroplastic[dist]'") from None
            log(f"Ray is not installed (pip install 'neuroplastic[dist]'): training the {len(runs)} runs here, one after another")

    def finished(name: str, outcome: dict) -> None:
        outcomes[name] = outcome
        acc = outcome.get("final_test_acc")
        log(f"  [{len(outcomes)}/{len(runs)}] {name}: {outcome['status']}"
            + (f", test accuracy {100 * acc:.1f}%" if acc is not None else f": {outcome.get('message')}"))

    if ray is None:
        for name, cfg, run_dir in runs:
            finished(name, run_trial(cfg.to_dict(), str(Path(run_dir).resolve()), data))
        return outcomes
    local = not (address or os.environ.get("RAY_ADDRESS")) or address == "local"
    if workers is None and local:
        workers = max(1, min(len(runs), (os.cpu_count() or 1) // cpus_per_run))
    env = thread_env(cpus_per_run)
    store = max(96 * 2**20, 2 * _data_bytes({"data": data}) + 64 * 2**20)
    where = start_ray(ray, address, (workers or 1) * cpus_per_run, store, env)
    log(f"training {len(runs)} runs on {where}")
    try:
        ref = ray.put(data)
        jobs = [RayJob(name, cfg.to_dict(), str(Path(run_dir).resolve()), ref) for name, cfg, run_dir in runs]
        ray_map(ray, jobs, cpus_per_run, workers, env, lambda _name: None, finished)
    finally:
        ray.shutdown()
    return outcomes


def _ray_error_message(err: BaseException) -> str:
    cause = getattr(err, "cause", None)
    if cause is not None and not isinstance(cause, type(err)):
        return f"{type(cause).__name__}: {cause}"
    first = str(err).strip().splitlines()
    return f"{type(err).__name__}: {first[0] if first else ''}"


def _tune_trial(config: dict, trials: dict, datasets: dict) -> None:
    """The Tune trainable of a search sweep: one trial, reporting each epoch's metrics."""
    from ray import tune

    info = trials[config["trial"]]

    def report(trainer: Any, record: dict, params: Any) -> None:
        tune.report({"epoch": record["epoch"], **{k: record[k] for k in ("test_acc", "test_loss", "train_acc", "train_loss")}})

    outcome = run_trial(info["config"], info["run_dir"], datasets[info["data_key"]], report=report)
    if outcome["status"] == "failed":
        raise ValueError(outcome["message"])


def _run_tune(spec: SweepSpec, todo: list[Trial], datasets: dict, sweep_dir: Path, progress: _Progress, workers: int | None) -> None:
    """Search sweeps: the trials under Ray Tune, stopped early by ASHA on the chosen metric."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = spec.search
    info = {t.name: {"config": t.config.to_dict(), "run_dir": str((sweep_dir / TRIALS / t.name).resolve()),
                     "data_key": data_key(t.config), "gpus": trial_gpus(spec, t.config)} for t in todo}
    # max_t one past the last epoch: ASHA stops a trial that reaches max_t at once, before its run folder is complete
    max_t = max(t.config.epochs for t in todo) + 1
    scheduler = (ASHAScheduler(time_attr="epoch", max_t=max_t, grace_period=min(s.grace_period, max_t - 1 or 1),
                               reduction_factor=s.reduction_factor) if s.scheduler == "asha" else FIFOScheduler())

    class Record(tune.Callback):
        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info_: Any) -> None:
            progress.started(trial.config["trial"])

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info_: Any) -> None:
            name = trial.config["trial"]
            t = next(u for u in todo if u.name == name)
            run_dir = sweep_dir / TRIALS / name
            outcome = completed_outcome(run_dir, t.config)
            if outcome is None:
                history = read_history(run_dir)
                last = history[-1] if history else {}
                outcome = {"status": "stopped", "message": f"stopped by {s.scheduler} after epoch {last.get('epoch', 0)}",
                           "epochs_done": last.get("epoch", 0), "final_test_acc": last.get("test_acc"),
                           "best_test_acc": max((h["test_acc"] for h in history if h.get("test_acc") is not None), default=None),
                           "wall_time_s": sum(h.get("epoch_time_s", 0.0) for h in history)}
            progress.finished(name, outcome)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info_: Any) -> None:
            err = trial.get_error() if hasattr(trial, "get_error") else None
            cause = getattr(err, "cause", None) or err
            status = "failed" if isinstance(cause, ValueError) else "error"
            message = str(cause) if status == "failed" else _ray_error_message(err) if err is not None else "the trial's process died"
            progress.finished(trial.config["trial"], {"status": status, "message": message})

    trainable = tune.with_resources(
        tune.with_parameters(_tune_trial, trials=info, datasets=datasets),
        lambda config: {"cpu": spec.cpus_per_trial, "gpu": info[config["trial"]]["gpus"]},
    )
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search([t.name for t in todo])},
        tune_config=tune.TuneConfig(metric=s.metric, mode=s.mode, scheduler=scheduler, max_concurrent_trials=workers),
        run_config=tune.RunConfig(name="tune", storage_path=str((sweep_dir / "tune").resolve()), verbose=0, callbacks=[Record()],
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    tuner.fit()


__all__ = [
    "DONE", "MANIFEST", "Manifest", "SweepResult", "TRIALS", "completed_outcome", "data_key",
    "default_sweep_dir", "limit_threads_here", "open_manifest", "outcome_from_summary", "read_history", "run_sweep", "run_trial", "start_ray",
    "thread_env", "trial_gpus",
]
