"""The main job: learning rules compared on one task and network, and a report.

A study is a list of run configurations: one *base* :class:`~neuroplastic.config.RunConfig`
(data, network, loss, optimizer, epochs...) and one *arm* per compared rule, which sets the
rule, its options, its training mode and any other run setting it needs (``tbptt`` with
``k = 10``; ``ottt`` online with a per-step loss).  Every arm trains as
``neuroplastic train`` would train that configuration, into an ordinary run folder
(:func:`neuroplastic.experiment.train_run`, the one run-folder writer), from the same
initial parameters, batches and seed.  Then :func:`run_study`

* tabulates accuracy, firing rates and NeuroBench's efficiency metrics per arm (mean and
  spread over seeds when ``seeds > 1``);
* runs the gradient comparison (:mod:`neuroplastic.train.compare`): every arm's gradient
  estimate on the reference arm's training trajectory, compared with the reference's;
* computes a 2-D loss landscape around the reference's final parameters with every arm's
  trajectory projected on it;
* draws a spike raster, learning curves and the alignment plots, and writes
  ``report.md`` and ``report.html`` (:mod:`neuroplastic.report`).

The study file is a run-config TOML (the base) plus a ``[study]`` table and one
``[[rules]]`` table per arm::

    seed = 0
    [data]
    name = "mnist1d"
    [network]
    model = "rsnn"
    hidden = 128
    [trainer]
    loss = "ce_mean"
    epochs = 60

    [study]
    reference = "bptt"
    seeds = 3

    [[rules]]
    name = "bptt"
    [[rules]]
    name = "tbptt"
    label = "tbptt-10"
    k = 10                  # a rule option
    [[rules]]
    name = "ottt"
    mode = "online"
    loss = "ce_per_step"    # a [trainer] setting of this arm
    lr = 0.0001

In a ``[[rules]]`` table, ``name``, ``label`` and ``mode`` are the arm's own, keys of the
run config's ``[trainer]`` and ``[network]`` sections override the base, and every other
key is an option of the rule.  The main job's own study file is
``neuroplastic/studies/main.toml`` (what ``make demo`` runs).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .config import SECTIONS, RunConfig, _show, did_you_mean, config_from_dict, config_to_toml, read_toml
from .losses import Objective

#: the main job's study file, shipped with the package
MAIN_STUDY = Path(__file__).resolve().parent / "studies" / "main.toml"
#: test examples the efficiency metrics are computed on (one forward run per rule)
EFFICIENCY_EXAMPLES = 256
#: keys of a ``[[rules]]`` table that belong to the arm itself
ARM_KEYS = ("name", "label", "mode")
#: run-config fields an arm may override (the [trainer] and [network] keys)
ARM_OVERRIDES = {k: f for sec in ("trainer", "network") for k, f in SECTIONS[sec].items()}
#: the [study] table's settings
STUDY_KEYS = ("reference", "seeds", "train_examples", "compare_steps", "compare_every", "landscape_grid", "landscape_batches",
              "landscape_span")


@dataclass(frozen=True)
class Arm:
    """One compared configuration: ``rule`` with ``options`` in ``mode``, plus run-config ``overrides``."""

    rule: str
    label: str = ""
    options: dict = field(default_factory=dict)
    mode: str = "offline"
    overrides: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.label or self.rule

    def describe(self) -> str:
        """``tbptt (k=10)``, ``ottt online (loss=ce_per_step)``: what distinguishes the arm."""
        parts = [f"{k}={v}" for k, v in {**self.options, **self.overrides}.items()]
        return self.rule + (f" {self.mode}" if self.mode != "offline" else "") + (f" ({', '.join(parts)})" if parts else "")


@dataclass
class StudyConfig:
    """A base run configuration, the compared arms and the study's own settings (see the module docstring)."""

    base: RunConfig = field(default_factory=RunConfig)
    arms: tuple = (Arm("bptt"),)
    reference: str = "bptt"
    seeds: int = 1
    train_examples: int | None = None
    compare_steps: int = 40
    compare_every: int = 2
    landscape_grid: int = 15
    landscape_batches: int = 2
    landscape_span: float | None = None  # half-width in PCA units; None: fit every trajectory

    # ------------------------------------------------------------------ constructors
    @classmethod
    def default(cls) -> "StudyConfig":
        """The main job: ``neuroplastic/studies/main.toml``."""
        return load_study(MAIN_STUDY)

    def quick(self) -> "StudyConfig":
        """A small version of this study that finishes in about a minute (used by the tests)."""
        base = replace(self.base, hidden=min(self.base.hidden, 32), epochs=min(self.base.epochs, 2))
        return replace(self, base=base, seeds=1, train_examples=768, compare_steps=6, compare_every=2, landscape_grid=7,
                       landscape_batches=1)

    def with_rules(self, names: list[str]) -> "StudyConfig":
        """The study with its arms replaced by the rules ``names`` (their registry defaults, offline)."""
        return replace(self, arms=tuple(Arm(check_rule_name(n, "rules")) for n in names))

    # ------------------------------------------------------------------ derived
    @property
    def labels(self) -> list[str]:
        return [a.name for a in self.arms]

    def arm(self, label: str) -> Arm:
        return next(a for a in self.arms if a.name == label)

    def run_config(self, arm: Arm, seed: int | None = None) -> RunConfig:
        """The run configuration of ``arm`` (at ``seed``; default the base's): what ``neuroplastic train`` would get."""
        cfg = replace(self.base, rule=arm.rule, rule_options=dict(arm.options), mode=arm.mode, checkpoint_every=0,
                      seed=self.base.seed if seed is None else seed, **arm.overrides)
        cfg.validate()
        return cfg

    @property
    def seed_list(self) -> list[int]:
        return [self.base.seed + k for k in range(self.seeds)]

    def validate(self) -> None:
        """Raise a ``ValueError`` naming the first bad setting; every arm's run config is validated too."""
        if not self.arms:
            raise ValueError("rules: a study compares at least one rule")
        labels = self.labels
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"rules: two arms share the label {dup[0]!r}; give one a label")
        if self.reference not in labels:
            raise ValueError(f"reference: {self.reference!r} must be one of the compared rules {labels}{did_you_mean(self.reference, labels)}")
        for name in ("seeds", "compare_steps", "compare_every", "landscape_grid", "landscape_batches"):
            v = getattr(self, name)
            if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
                raise ValueError(f"study.{name}: expected a positive integer, got {_show(v)}")
        if self.train_examples is not None and not (isinstance(self.train_examples, int) and self.train_examples > 0):
            raise ValueError(f"study.train_examples: expected a positive integer or none, got {_show(self.train_examples)}")
        if self.landscape_span is not None and not (isinstance(self.landscape_span, (int, float)) and self.landscape_span > 0):
            raise ValueError(f"study.landscape_span: expected a positive number, got {_show(self.landscape_span)}")
        self.base.validate()
        for a in self.arms:
            try:
                self.run_config(a)
            except ValueError as err:
                raise ValueError(f"rules[{a.name}]: {err}") from None

    def to_dict(self) -> dict:
        """The flat record of the study kept in ``results.json`` (the base's fields and the study's)."""
        return {**self.base.to_dict(), "reference": self.reference, "seeds": self.seeds, "train_examples": self.train_examples,
                "compare_steps": self.compare_steps, "compare_every": self.compare_every, "landscape_grid": self.landscape_grid,
                "landscape_batches": self.landscape_batches, "landscape_span": self.landscape_span,
                "rules": self.labels, "arms": [dataclasses.asdict(a) | {"describe": a.describe()} for a in self.arms]}


# ---------------------------------------------------------------------------------- the study file
def check_rule_name(name: Any, where: str) -> str:
    """``name`` if it is a registered rule, else a ``ValueError`` with a "did you mean"."""
    from .rules import RULES

    if not isinstance(name, str) or name not in RULES:
        raise ValueError(f"{where}: unknown rule {name!r}{did_you_mean(str(name), RULES)}")
    return name


def study_from_dict(d: dict, source: str = "study") -> StudyConfig:
    """A validated :class:`StudyConfig` from the dictionary of a study TOML file."""
    if not isinstance(d, dict):
        raise ValueError(f"{source}: expected a table, got {type(d).__name__}")
    d = dict(d)
    study = d.pop("study", {})
    rules = d.pop("rules", None)
    if not isinstance(study, dict):
        raise ValueError(f"study: expected a [study] table, got {_show(study)}")
    if rules is None or not isinstance(rules, list) or not rules:
        raise ValueError("rules: a study file needs at least one [[rules]] table (name = \"bptt\", ...)")
    base = config_from_dict(d, source)
    arms = []
    for i, t in enumerate(rules):
        if not isinstance(t, dict) or "name" not in t:
            raise ValueError(f"rules[{i}]: expected a table with a rule name (name = \"bptt\"), got {_show(t)}")
        name = check_rule_name(t["name"], f"rules[{i}].name")
        label = t.get("label", "")
        if not isinstance(label, str):
            raise ValueError(f"rules[{i}].label: expected a string, got {_show(label)}")
        mode = t.get("mode", "offline")
        overrides = {ARM_OVERRIDES[k]: v for k, v in t.items() if k in ARM_OVERRIDES and k != "mode"}
        options = {k: v for k, v in t.items() if k not in ARM_KEYS and k not in ARM_OVERRIDES}
        arms.append(Arm(name, label, options, mode, overrides))
    for k in study:
        if k not in STUDY_KEYS:
            raise ValueError(f"study.{k}: unknown key{did_you_mean(k, STUDY_KEYS)}")
    reference = study.get("reference", arms[0].name)
    cfg = StudyConfig(base=base, arms=tuple(arms), **{k: v for k, v in study.items() if k != "reference"}, reference=reference)
    cfg.validate()
    return cfg


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study TOML file (see the module docstring)."""
    return study_from_dict(read_toml(path), str(path))


def study_to_toml(cfg: StudyConfig) -> str:
    """``cfg`` as a study TOML file that :func:`load_study` reads back to the same study."""
    from .config import _toml_key, _toml_value

    base = config_to_toml(replace(cfg.base, rule="bptt", rule_options={}, mode="offline"))
    base = "\n".join(line for line in base.splitlines() if not line.startswith("[rule]") and not line.startswith('name = "bptt"'))
    lines = [base.rstrip(), "", "[study]", f"reference = {_toml_value(cfg.reference, 'reference')}"]
    for k in STUDY_KEYS[1:]:
        v = getattr(cfg, k)
        if v is not None:
            lines.append(f"{k} = {_toml_value(v, k)}")
    inverse = {f: k for k, f in ARM_OVERRIDES.items()}
    for a in cfg.arms:
        lines += ["", "[[rules]]", f"name = {_toml_value(a.rule, 'name')}"]
        if a.label:
            lines.append(f"label = {_toml_value(a.label, 'label')}")
        if a.mode != "offline":
            lines.append(f"mode = {_toml_value(a.mode, 'mode')}")
        lines += [f"{_toml_key(inverse[k])} = {_toml_value(v, k)}" for k, v in a.overrides.items()]
        lines += [f"{_toml_key(k)} = {_toml_value(v, k)}" for k, v in a.options.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- running
def study_data(cfg: StudyConfig) -> Any:
    """The study's dataset (encoded as the base says), its training set cut to ``train_examples`` when set."""
    from .experiment import load_run_data

    data = load_run_data(cfg.base)
    if cfg.train_examples is not None:
        data = replace(data, x_train=data.x_train[:, : cfg.train_examples], y_train=data.y_train[: cfg.train_examples],
                       meta={**data.meta, "train_subset": cfg.train_examples})
    return data


def study_trainer(cfg: StudyConfig, data: Any, label: str, backend: Any, progress: bool = False) -> tuple[Any, Any]:
    """``(network, trainer)`` of arm ``label``: :func:`neuroplastic.experiment.build_trainer` on its run config."""
    from .experiment import build_trainer

    return build_trainer(cfg.run_config(cfg.arm(label)), data, backend, progress)


def run_study(cfg: StudyConfig, out_dir: str | Path, log: Callable[[str], Any] = print, progress: bool = False,
              engine: str = "auto", address: str | None = None) -> dict:
    """Run the comparison and write the run folder; returns the results dictionary.

    Each arm's first seed trains here (its per-epoch parameters feed the landscape); with
    ``seeds > 1`` the other seeds train on the sweep engine
    (:func:`neuroplastic.sweep.runner.run_configs`): ``engine="auto"`` uses an embedded
    local Ray when it is installed, ``"ray"`` with ``address`` a cluster, ``"in-process"``
    this process; the numbers are the same on every engine.

    Everything is checked before anything is trained or written: every arm's configuration
    and trainer (rule, mode, loss) is built first, so a bad arm fails with its name and no
    run folder is left behind.
    """
    cfg.validate()
    from .experiment import run_backend

    B = run_backend(cfg.base)
    data = study_data(cfg)
    trainers = {a.name: study_trainer(cfg, data, a.name, B, progress) for a in cfg.arms}  # fails early, by name
    net, reference = trainers[cfg.reference]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.toml").write_text(study_to_toml(cfg))
    (out / "study.json").write_text(json.dumps(_jsonable(cfg.to_dict()), indent=2))
    subset = f" (training on the first {cfg.train_examples} examples)" if cfg.train_examples else ""
    log(f"neuroplastic run: comparing {', '.join(a.describe() for a in cfg.arms)} on {data}{subset} with {net}, "
        f"{cfg.seeds} seed{'s' if cfg.seeds > 1 else ''}")

    results: dict = {"config": cfg.to_dict(), "rules": {}, "skipped": []}
    trajectories: dict[str, list] = {}
    final_params: dict[str, Any] = {}
    from .experiment import train_run

    runs_of: dict[str, list] = {}
    seed0 = cfg.seed_list[0]

    def run_dir_of(arm: Arm, seed: int) -> Path:
        return out / "rules" / arm.name / (f"seed-{seed}" if cfg.seeds > 1 else "")

    for arm in cfg.arms:  # the first seed here: its trajectory feeds the landscape
        run_dir = run_dir_of(arm, seed0)
        traj: list = [B.tree_to_numpy(net.init(seed0, backend=B))]
        t0 = time.perf_counter()
        summary = train_run(cfg.run_config(arm, seed0), run_dir, progress=progress, log=lambda _m: None, data=data,
                            callbacks=[lambda tr, rec, p, traj=traj: traj.append(B.tree_to_numpy(p))])
        runs_of[arm.name] = [_seed_run(seed0, run_dir, out, summary, time.perf_counter() - t0)]
        trajectories[arm.name] = traj
        final_params[arm.name] = B.tree_asarray(traj[-1])
        log(f"  {arm.name:18s} seed {seed0}: test accuracy {100 * (summary['final'].get('test_acc') or 0):5.1f}%  "
            f"({runs_of[arm.name][0]['wall_time_s']:.0f} s)")
    extra = [(f"{arm.name}/seed-{seed}", arm, seed) for arm in cfg.arms for seed in cfg.seed_list[1:]]
    if extra:
        from .sweep.runner import run_configs

        log(f"neuroplastic run: {len(extra)} more runs (seeds {', '.join(map(str, cfg.seed_list[1:]))})")
        outcomes = run_configs([(name, cfg.run_config(arm, seed), run_dir_of(arm, seed)) for name, arm, seed in extra], data,
                               engine=engine, address=address, log=log)
        for name, arm, seed in extra:
            outcome = outcomes[name]
            if outcome.get("status") != "finished":
                raise ValueError(f"rules[{arm.name}]: seed {seed} {outcome.get('status')}: {outcome.get('message')}")
            run_dir = run_dir_of(arm, seed)
            summary = json.loads((run_dir / "summary.json").read_text())
            runs_of[arm.name].append(_seed_run(seed, run_dir, out, summary, summary.get("wall_time_s")))
    for arm in cfg.arms:
        results["rules"][arm.name] = _arm_result(arm, runs_of[arm.name])
    if cfg.seeds > 1:
        results["significance"] = _significance(cfg, results)

    log("neuroplastic run: gradient comparison against " + cfg.reference)
    results["alignment"] = _alignment(cfg, net, data, reference, B, out)
    log("neuroplastic run: loss landscape")
    results["landscape"] = _landscape(cfg, net, data, reference.objective, B, trajectories, final_params, out)
    results["plots"] = _plots(cfg, net, data, B, final_params, results, out)
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=2))
    from .report import write_report

    paths = write_report(out)
    log(f"neuroplastic run: report at {paths[0]} and {paths[1]}")
    return results


def _seed_run(seed: int, run_dir: Path, out: Path, summary: dict, wall_time_s: float | None) -> dict:
    return {"seed": seed, "history": _read_history(run_dir), "final": summary["final"], "wall_time_s": wall_time_s,
            "efficiency": summary.get("efficiency"), "run_dir": str(run_dir.relative_to(out))}


def _read_history(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _arm_result(arm: Arm, runs: list[dict]) -> dict:
    """One arm's results: the first seed's run (history, final, efficiency) and the spread over seeds."""
    first = runs[0]
    accs = [r["final"].get("test_acc") for r in runs if r["final"].get("test_acc") is not None]
    out = {"describe": arm.describe(), "history": first["history"], "final": first["final"], "wall_time_s": first["wall_time_s"],
           "efficiency": first["efficiency"], "run_dir": first["run_dir"], "seeds": runs}
    if len(accs) > 1:
        from .sweep.stats import describe

        out["test_acc_spread"] = dataclasses.asdict(describe(accs))
    return out


def _significance(cfg: StudyConfig, results: dict) -> dict:
    """Each arm against the reference: a paired t-test (and Wilcoxon) over the shared seeds' test accuracy."""
    from .sweep.stats import compare_paired

    ref = [s["final"]["test_acc"] for s in results["rules"][cfg.reference]["seeds"]]
    out = {}
    for label, r in results["rules"].items():
        accs = [s["final"]["test_acc"] for s in r["seeds"]]
        if label == cfg.reference or len(accs) < 2 or any(a is None for a in accs + ref):
            continue
        out[label] = dataclasses.asdict(compare_paired(accs, ref))
    return out


# ---------------------------------------------------------------------------------- parts
def _alignment(cfg: StudyConfig, net: Any, data: Any, reference: Any, B: Any, out: Path) -> dict:
    from .rules import make_rule
    from .train.compare import GradientComparison

    rules, skipped = {}, []
    for a in cfg.arms:
        rule = make_rule(a.rule, **a.options)
        if "offline" in rule.modes:  # the comparison asks each rule for its gradient at the reference's parameters
            rules[a.name] = rule
        else:
            skipped.append(a.name)
    cmp = GradientComparison(net, rules, primary=cfg.reference, reference=cfg.reference, loss=reference.objective,
                             optimizer=reference.optimizer, backend=B)
    sample_steps = (0, cfg.compare_steps - 1 - (cfg.compare_steps - 1) % cfg.compare_every)
    _, records, extra = cmp.run(
        net.init(cfg.base.seed, backend=B), data, epochs=cfg.base.epochs, batch_size=cfg.base.batch_size, seed=cfg.base.seed,
        every=cfg.compare_every, sample_steps=sample_steps, max_steps=cfg.compare_steps, out_dir=out / "alignment",
    )
    summary = {}
    for label in rules:
        rows = [r for r in records if r["rule"] == label and r["kind"] == "gradient" and r["layer"] == "all"]
        summary[label] = {
            "mean_cosine": float(np.mean([r["cosine"] for r in rows])),
            "mean_rel_deviation": float(np.mean([r["rel_deviation"] for r in rows])),
            "mean_sign_agreement": float(np.mean([r["sign_agreement"] for r in rows])),
        }
    return {"summary": summary, "sample_steps": list(sample_steps), "records": len(records),
            "not_compared": skipped}


def _landscape(cfg: StudyConfig, net: Any, data: Any, objective: Objective, B: Any, trajectories: dict, final_params: dict, out: Path) -> dict | None:
    from .analysis import landscape as L

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
    )
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
    others = [r for r in records if r["rule"] != ref and r["kind"] == "gradient"]
    made["alignment"] = Path(P.plot_alignment_curves(others, out / "alignment_curves.png", reference=ref)).name
    if samples:
        step = max(int(k.split("/")[0]) for k in samples)
        picked = {
            (k.split("/")[1], k.split("/")[3]): v for k, v in samples.items()
            if k.startswith(f"{step}/") and k.split("/")[2] == "gradient" and k.split("/")[1] != ref
        }
        made["deviations"] = Path(P.plot_deviation_violins(picked, out / "deviation_violins.png", step, reference=ref)).name
    return made


def _plot_rule_curves(P: Any, results: dict, path: Path) -> Path:
    """Test accuracy per epoch for every arm: the mean over seeds with a band of one standard deviation
    (each rule in its colour of every other plot)."""
    return Path(P.plot_accuracy_curves({rule: [s["history"] for s in r["seeds"]] for rule, r in results["rules"].items()}, path))


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


__all__ = ["ARM_OVERRIDES", "Arm", "MAIN_STUDY", "StudyConfig", "check_rule_name", "load_study", "run_study", "study_data",
           "study_from_dict", "study_to_toml", "study_trainer"]
