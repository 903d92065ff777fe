"""Sweeps without a Ray cluster: the sweep file, trials, the in-process runner, statistics and the report.

The Ray runners (a local two-node cluster, killing the driver) are in tests/test_sweep_ray.py.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from neuroplastic.cli import main
from neuroplastic.sweep import compare_paired, compare_welch, describe, expand_trials, holm, loads_sweep, run_sweep
from neuroplastic.sweep.report import comparison_rows, setting_rows, write_sweep_report
from neuroplastic.sweep.runner import MANIFEST, TRIALS, Manifest, thread_env
from neuroplastic.sweep.stats import min_wilcoxon_p

#: a run config whose trials take a few seconds (mostly JAX compilation): 64 examples, hidden 8
TINY_BASE = """
seed = 0
[data]
name = "randman"
n_classes = 2
n_units = 8
n_steps = 10
samples_per_class = 24
test_per_class = 8
[network]
model = "rsnn"
hidden = 8
[trainer]
epochs = 2
batch_size = 8
backend = "jax"
"""

TIME_KEYS = ("train_time_s", "epoch_time_s")


def write_sweep(tmp_path: Path, sweep: str, base: str = TINY_BASE, name: str = "sweep.toml") -> Path:
    p = tmp_path / name
    p.write_text(base + "\n[sweep]\n" + sweep)
    return p


def metrics_without_times(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIME_KEYS} for line in lines]


def assert_same_trials(a: Path, b: Path) -> list[str]:
    """Two sweep folders hold the same trials with bit-identical parameters and metrics; returns the names."""
    names = sorted(p.name for p in (a / TRIALS).iterdir())
    assert names == sorted(p.name for p in (b / TRIALS).iterdir())
    for n in names:
        assert (a / TRIALS / n / "params.safetensors").read_bytes() == (b / TRIALS / n / "params.safetensors").read_bytes(), n
        assert metrics_without_times(a / TRIALS / n) == metrics_without_times(b / TRIALS / n), n
    return names


# ---------------------------------------------------------------------------- the sweep file
def spec_of(sweep: str, base: str = TINY_BASE):
    return loads_sweep(base + "\n[sweep]\n" + sweep)


def test_grid_trials_cross_every_list_in_file_order():
    spec = spec_of('''rule = ["bptt", {name = "eprop-random", mode = "online"}, {name = "tbptt", options = {k = 3}}]
"trainer.lr" = [0.001, 0.005]
seed = [0, 1]
''')
    trials = expand_trials(spec)
    assert len(trials) == 12 and all(t.error is None for t in trials)
    assert trials[0].name == "000_rule=bptt_lr=0.001_seed=0"
    assert trials[3].name == "003_rule=bptt_lr=0.005_seed=1"
    assert trials[5].name == "005_rule=eprop-random-online_lr=0.001_seed=1"
    assert trials[11].name == "011_rule=tbptt-k3_lr=0.005_seed=1"
    online, tbptt = trials[5].config, trials[11].config
    assert (online.rule, online.mode, online.lr, online.seed) == ("eprop-random", "online", 0.001, 1)
    assert (tbptt.rule, tbptt.rule_options, tbptt.mode) == ("tbptt", {"k": 3}, "offline")
    assert len({t.name for t in trials}) == 12
    # the base's other settings are kept
    assert all(t.config.hidden == 8 and t.config.data_options["n_units"] == 8 for t in trials)


def test_rule_entry_replaces_the_base_rule_options_and_dotted_keys_set_one():
    base = TINY_BASE + '\n[rule]\nname = "tbptt"\nk = 5\n'
    trials = expand_trials(spec_of('rule = ["bptt", "tbptt"]\n', base))
    assert trials[0].config.rule_options == {} and trials[1].config.rule_options == {}
    trials = expand_trials(spec_of('"rule.k" = [2, 4]\n', base))
    assert [t.config.rule_options for t in trials] == [{"k": 2}, {"k": 4}]
    assert [t.name for t in trials] == ["000_k=2", "001_k=4"]
    trials = expand_trials(spec_of('"data.seed" = [1, 2]\nseed = [0]\n'))
    assert [t.name for t in trials] == ["000_data.seed=1_seed=0", "001_data.seed=2_seed=0"]  # two "seed" keys: full names
    assert trials[1].config.data_options["seed"] == 2 and trials[1].config.seed == 0


def test_random_samples_are_seeded_within_bounds_and_crossed_with_lists():
    text = '''mode = "random"
samples = 5
sample_seed = 3
"trainer.lr" = {loguniform = [1e-4, 1e-2]}
"network.hidden" = {randint = [4, 6]}
"network.surrogate" = {choice = ["triangle", "fast_sigmoid"]}
seed = [0, 1]
'''
    a, b = expand_trials(spec_of(text)), expand_trials(spec_of(text))
    assert len(a) == 10 and [t.config.to_dict() for t in a] == [t.config.to_dict() for t in b]
    assert all(1e-4 <= t.config.lr <= 1e-2 and 4 <= t.config.hidden <= 6 for t in a)
    assert [t.seed for t in a] == [0, 1] * 5
    assert a[0].config.lr == a[1].config.lr and a[0].config.lr != a[2].config.lr  # one sample, two seeds
    other = expand_trials(spec_of(text.replace("sample_seed = 3", "sample_seed = 4")))
    assert [t.config.lr for t in other] != [t.config.lr for t in a]


@pytest.mark.parametrize("sweep, message", [
    ('"trainer.lrr" = [1]', "sweep.trainer.lrr: unknown run-config key; did you mean 'trainer.lr'?"),
    ('mdoe = "grid"', "sweep.mdoe: unknown run-config key; did you mean 'mode'?"),
    ('"network.hiden" = [4]', "sweep.network.hiden: unknown run-config key; did you mean 'network.hidden'?"),
    ('mode = "grdi"', "sweep.mode: expected one of ['grid', 'random', 'search'], got 'grdi'"),
    ('seed = 3', "sweep.seed: expected a list of values or a distribution table"),
    ('seed = []', "sweep.seed: the list of values is empty"),
    ('seed = [1, 1]', "sweep.seed: value 1 is listed twice"),
    ('"trainer.lr" = {loguniform = [1e-4, 1e-2]}', "sweep.trainer.lr: a distribution needs mode = 'random' or 'search'"),
    ('mode = "random"\n"trainer.lr" = {loguniform = [0, 1]}', "sweep.trainer.lr.loguniform: expected [low, high] with 0 < low"),
    ('mode = "random"\n"trainer.lr" = {logunifrom = [1, 2]}', "did you mean 'loguniform'?"),
    ('rule = [{name = "bptt", optoins = {}}]', "sweep.rule[0].optoins: unknown key; did you mean 'options'?"),
    ('mode = "search"\n[sweep.search]\nmetirc = "test_acc"', "sweep.search.metirc: unknown key; did you mean 'metric'?"),
    ('mode = "search"\n[sweep.search]\nmetric = "test_accuracy"', "sweep.search.metric: expected one of"),
    ('samples = 3', "sweep.samples: grid mode takes every value"),
])
def test_bad_sweep_tables_are_named(sweep, message):
    with pytest.raises(ValueError) as err:
        spec_of(sweep)
    assert message in str(err.value)


def test_bad_base_keys_are_named_as_in_run_configs():
    with pytest.raises(ValueError, match=r"^trainer\.lrr: unknown key; did you mean 'lr'\?"):
        loads_sweep(TINY_BASE.replace("epochs = 2", "lrr = 2") + "\n[sweep]\nseed = [0]\n")
    with pytest.raises(ValueError, match="has no \\[sweep\\] table"):
        loads_sweep(TINY_BASE)


def test_invalid_settings_fail_their_trial_only():
    trials = expand_trials(spec_of('"trainer.lr" = [0.005, -1]\n"network.hidden" = [8]\n'))
    assert trials[0].error is None and trials[0].config is not None
    assert trials[1].config is None and trials[1].error == "trainer.lr: expected a positive number, got -1"


def test_thread_env_limits_every_pool_and_keeps_the_callers_xla_flags(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX2")
    env = thread_env(2)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"
    assert env["XLA_FLAGS"] == "--xla_cpu_max_isa=AVX2 --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=2"
    # the OpenMP waiting of backend.prefer_passive_openmp: the caller's own settings, else passive with a bounded spin
    from neuroplastic.backend import OPENMP_SPIN_COUNT

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    env = thread_env(1)
    assert (env["OMP_WAIT_POLICY"], env["GOMP_SPINCOUNT"]) == ("PASSIVE", str(OPENMP_SPIN_COUNT))
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    env = thread_env(1)
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and "GOMP_SPINCOUNT" not in env
    # the trial's process starts with glibc's huge-page tunable where the machine has it (native.huge_pages_env;
    # here a machine that has it, whatever this one is), the caller's other tunables kept
    from neuroplastic.backend import native

    monkeypatch.setattr(native, "_glibc_version", lambda: (2, 36))
    monkeypatch.setattr(native, "_thp_mode", lambda: "madvise")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    assert thread_env(1)["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    monkeypatch.setenv("NEUROPLASTIC_HUGE_PAGES", "0")
    assert "GLIBC_TUNABLES" not in thread_env(1)


def test_limit_threads_here_only_before_a_framework_is_loaded():
    import subprocess

    code = ("import os, sys; from neuroplastic.sweep.runner import limit_threads_here as f; a = f(1); "
            "print(a, os.environ['OMP_NUM_THREADS'], os.environ['XLA_FLAGS']); import jax; print(f(1))")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("OMP_NUM_THREADS", "XLA_FLAGS")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first == "True 1 --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" and second == "False"


# ---------------------------------------------------------------------------- statistics
def test_describe_against_hand_computed_t_interval():
    s = describe([0.80, 0.85, 0.90])
    # t quantile with 2 degrees of freedom in closed form: F(t) = 1/2 + t / (2 sqrt(2 + t^2)) = 0.975
    t975 = math.sqrt(2 * 0.95**2 / (1 - 0.95**2))
    assert s.n == 3 and s.mean == pytest.approx(0.85) and s.std == pytest.approx(0.05)
    assert s.half_width == pytest.approx(t975 * 0.05 / math.sqrt(3), rel=1e-9)
    assert s.low == pytest.approx(0.85 - t975 * 0.05 / math.sqrt(3), rel=1e-9)
    one = describe([0.7])
    assert one.n == 1 and one.mean == 0.7 and math.isnan(one.std) and math.isnan(one.low)


def test_paired_tests_against_hand_computed_values():
    a, b = [0.90, 0.80, 0.86], [0.80, 0.85, 0.83]
    d = np.array(a) - np.array(b)  # 0.10, -0.05, 0.03
    t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
    p_t = 1 - abs(t) / math.sqrt(2 + t * t)  # two-sided, 2 degrees of freedom, closed form
    c = compare_paired(a, b)
    assert c.test == "paired" and c.n_a == 3
    assert c.mean_diff == pytest.approx(d.mean()) and c.statistic == pytest.approx(t) and c.p == pytest.approx(p_t, rel=1e-9)
    # Wilcoxon exact: ranks of |d| are 3, 1 (positive) and 2 (negative): W+ = 4; P(W+ >= 4) = 3/8 of the 8 sign patterns
    assert c.p_wilcoxon == pytest.approx(2 * 3 / 8)
    assert compare_paired([0.9, 0.8, 0.7], [0.8, 0.75, 0.6]).p_wilcoxon == pytest.approx(0.25)  # = min_wilcoxon_p(3)
    assert min_wilcoxon_p(3) == 0.25
    same = compare_paired([0.5, 0.6], [0.5, 0.6])
    assert same.p == 1.0 and same.p_wilcoxon == 1.0


def test_welch_against_hand_computed_statistic():
    from scipy import stats

    a, b = [0.80, 0.85, 0.90], [0.70, 0.78, 0.74, 0.72]
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 4
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)  # Welch-Satterthwaite
    c = compare_welch(a, b)
    assert c.test == "welch" and (c.n_a, c.n_b) == (3, 4)
    assert c.statistic == pytest.approx(t) and c.p == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)


def test_holm_adjustment_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.2, float("nan"), 0.01])
    assert out[0] == pytest.approx(0.2) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_stats_reject_bad_input():
    with pytest.raises(ValueError, match="a, b: a paired test needs"):
        compare_paired([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="values: expected finite numbers"):
        describe([0.1, float("nan")])


# ---------------------------------------------------------------------------- report from a manifest
def _fake_sweep(tmp_path: Path, accs: dict[tuple[str, int], float | None]) -> Path:
    """A sweep folder with a hand-written manifest (no training): rule x seed -> final accuracy."""
    trials = []
    for i, ((rule, seed), acc) in enumerate(accs.items()):
        trials.append({
            "index": i, "name": f"{i:03d}_rule={rule}_seed={seed}", "setting": {"rule": rule, "seed": seed}, "label": f"rule={rule}",
            "seed": seed, "config": None, "status": "finished" if acc is not None else "failed",
            "message": None if acc is not None else "train_loss: nan after epoch 1; training diverged",
            "final_test_acc": acc, "best_test_acc": acc, "wall_time_s": 10.0 + seed, "epochs_done": 2,
        })
    m = Manifest(tmp_path, {"format": 1, "source": "fake.toml", "sweep": {"mode": "grid"}, "axes": ["rule", "seed"], "trials": trials})
    m.save()
    return tmp_path


def test_report_numbers_match_hand_computed_statistics(tmp_path):
    accs = {("a", 0): 0.80, ("a", 1): 0.85, ("a", 2): 0.90, ("b", 0): 0.70, ("b", 1): 0.80, ("b", 2): 0.75,
            ("c", 0): 0.60, ("c", 1): 0.65, ("c", 2): None}
    d = _fake_sweep(tmp_path, accs)
    m = Manifest.load(d).data
    rows = {r["label"]: r for r in setting_rows(m["trials"])}
    assert rows["rule=a"]["seeds"] == [0, 1, 2] and rows["rule=c"]["seeds"] == [0, 1]
    assert rows["rule=b"]["final"].mean == pytest.approx(0.75) and rows["rule=b"]["final"].std == pytest.approx(0.05)
    cmp = {(r["a"], r["b"]): r for r in comparison_rows(m["trials"], m["axes"])}
    assert cmp[("rule=a", "rule=b")]["cmp"].test == "paired" and cmp[("rule=a", "rule=b")]["n"] == "3 shared"
    assert cmp[("rule=a", "rule=c")]["cmp"].test == "welch"  # c lost seed 2: seeds differ
    assert cmp[("rule=a", "rule=b")]["cmp"].mean_diff == pytest.approx(0.10)
    md, page = write_sweep_report(d)
    text = md.read_text()
    half = math.sqrt(2 * 0.95**2 / (1 - 0.95**2)) * 5.0 / math.sqrt(3)
    assert f"| rule=a | 3 (0, 1, 2) | 85.0 ± 5.0 | [{85 - half:.1f}, {85 + half:.1f}] |" in text
    assert "| rule=c | 2 (0, 1) of 3 | 62.5 ± 3.5 |" in text
    assert "| — | rule=a | rule=b | 3 shared | paired t + Wilcoxon | +10.0 |" in text
    assert "Welch t (seeds differ)" in text and "cannot give a p-value below 0.25" in text
    assert "Figures move by machine" in text and "training diverged" in text
    assert "Figures move by machine" in page.read_text() and "<table>" in page.read_text()
    pytest.importorskip("matplotlib")
    assert (d / "accuracy.png").stat().st_size > 0 and "![Accuracy per setting](accuracy.png)" in text


# ---------------------------------------------------------------------------- running in process
@pytest.mark.timeout(240)
def test_in_process_sweep_without_ray_gives_run_folders_and_fails_invalid_trials(tmp_path, monkeypatch, capsys):
    """Ray missing: a one-line notice, every trial an ordinary run folder, the invalid one failed by name."""
    sweep = write_sweep(tmp_path, '"trainer.lr" = [0.005, -1]\nseed = [0, 1]\n')
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    notices = []
    result = run_sweep(sweep, out=tmp_path / "s", notice=notices.append, log=lambda msg: None)
    assert len(notices) == 1 and "\n" not in notices[0]
    assert notices[0].startswith("neuroplastic sweep: Ray is not installed") and "in this process, one after another" in notices[0]
    assert result.engine == "in-process" and result.counts == {"finished": 2, "failed": 2}
    m = Manifest.load(tmp_path / "s")
    by = {t["name"]: t for t in m.trials}
    assert by["002_lr=-1_seed=0"]["status"] == "failed"
    assert by["002_lr=-1_seed=0"]["message"] == "trainer.lr: expected a positive number, got -1"
    assert sorted(p.name for p in (tmp_path / "s" / TRIALS).iterdir()) == ["000_lr=0.005_seed=0", "001_lr=0.005_seed=1"]
    run = tmp_path / "s" / TRIALS / "001_lr=0.005_seed=1"
    for f in ("config.toml", "config.json", "metrics.jsonl", "summary.json", "summary.md", "params.safetensors"):
        assert (run / f).is_file(), f
    assert list((run / "checkpoints").glob("epoch-000002-*.safetensors"))
    assert by["001_lr=0.005_seed=1"]["final_test_acc"] == json.loads((run / "summary.json").read_text())["final"]["test_acc"]
    report = (tmp_path / "s" / "report.md").read_text()
    assert "| lr=-1 | 0 of 2 | n/a |" in report and "trainer.lr: expected a positive number, got -1" in report

    # a trial folder reruns alone with `neuroplastic train --config`, to the same parameters
    monkeypatch.undo()
    assert main(["train", "--config", str(run / "config.toml"), "--out", str(tmp_path), "--name", "again", "--no-progress"]) == 0
    assert (tmp_path / "again" / "params.safetensors").read_bytes() == (run / "params.safetensors").read_bytes()
    capsys.readouterr()

    # the sweep folder is not overwritten; --resume with a changed file is refused
    with pytest.raises(ValueError, match="already holds a sweep; add --resume"):
        run_sweep(sweep, out=tmp_path / "s", in_process=True, log=lambda msg: None)
    changed = write_sweep(tmp_path, '"trainer.lr" = [0.005, -1]\nseed = [0, 2]\n', name="changed.toml")
    with pytest.raises(ValueError, match="--resume: the sweep file no longer gives the trials"):
        run_sweep(changed, out=tmp_path / "s", resume=True, in_process=True, log=lambda msg: None)
    # resuming a complete sweep trains nothing
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "s" / TRIALS).glob("*/summary.json")}
    result = run_sweep(sweep, out=tmp_path / "s", resume=True, in_process=True, log=lambda msg: None)
    assert result.counts == {"finished": 2, "failed": 2}
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "s" / TRIALS).glob("*/summary.json")} == before


@pytest.mark.timeout(240)
def test_in_process_resume_continues_an_interrupted_trial_from_its_checkpoint(tmp_path):
    """A trial left after epoch 1 of 2 (as a killed driver leaves it) continues to the parameters of an uninterrupted run."""
    from neuroplastic.experiment import train_run
    from neuroplastic.sweep.runner import open_manifest

    sweep = write_sweep(tmp_path, "seed = [0]\n")
    assert run_sweep(sweep, out=tmp_path / "full", in_process=True, log=lambda msg: None).counts == {"finished": 1}
    spec = loads_sweep(sweep.read_text())
    trials = expand_trials(spec)
    cut = tmp_path / "cut"
    open_manifest(cut, spec, trials, sweep.read_text(), resume=False)
    run = cut / TRIALS / trials[0].name
    # stop after the first epoch: its checkpoint is saved; then drop what only a finished run has
    train_run(trials[0].config, run, progress=False, log=lambda *a: None, callbacks=[lambda trainer, record, params: record["epoch"] == 1])
    for f in ("summary.json", "summary.md", "params.safetensors"):
        (run / f).unlink()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1

    result = run_sweep(sweep, out=cut, resume=True, in_process=True, log=lambda msg: None)
    assert result.counts == {"finished": 1}
    assert json.loads((run / "summary.json").read_text())["resumed_after_epoch"] == 1
    assert (run / "params.safetensors").read_bytes() == (tmp_path / "full" / TRIALS / trials[0].name / "params.safetensors").read_bytes()
    assert metrics_without_times(run) == metrics_without_times(tmp_path / "full" / TRIALS / trials[0].name)
    assert Manifest.load(cut).trials[0]["attempts"] == 1


@pytest.mark.timeout(120)
def test_a_diverging_trial_is_recorded_failed_with_the_trainers_message(tmp_path):
    sweep = write_sweep(tmp_path, '"trainer.lr" = [1e38]\n', base=TINY_BASE + 'optimizer = "sgd"\n')
    result = run_sweep(sweep, out=tmp_path / "s", in_process=True, log=lambda msg: None)
    assert result.counts == {"failed": 1}
    rec = Manifest.load(tmp_path / "s").trials[0]
    assert rec["message"].startswith("training diverged: non-finite")
    assert not (tmp_path / "s" / TRIALS / rec["name"] / "summary.json").exists()


def test_cli_sweep_errors_exit_2_with_the_named_key(tmp_path, capsys):
    sweep = write_sweep(tmp_path, '"trainer.lrr" = [1]\n')
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "s"), "--in-process"]) == 2
    assert "neuroplastic: error: sweep.trainer.lrr: unknown run-config key; did you mean 'trainer.lr'?" in capsys.readouterr().err
    sweep = write_sweep(tmp_path, "seed = [0]\n", name="ok.toml")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "s"), "--in-process", "--address", "127.0.0.1:1"]) == 2
    assert "--address: a cluster address cannot be combined with --in-process" in capsys.readouterr().err
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "none"), "--resume", "--in-process"]) == 2
    assert "--resume:" in capsys.readouterr().err and not (tmp_path / "none" / MANIFEST).exists()


# ---------------------------------------------------------------------------- examples and benchmark
REPO = Path(__file__).resolve().parent.parent


def test_example_sweeps_are_valid_and_rules_seeds_matches_the_rule_comparison_config():
    from neuroplastic.config import load_config
    from neuroplastic.sweep import load_sweep

    files = sorted((REPO / "examples" / "sweeps").glob("*.toml"))
    assert {f.name for f in files} >= {"rules-seeds.toml", "quick.toml", "search-asha.toml"}
    for f in files:
        trials = expand_trials(load_sweep(f))
        assert trials and all(t.error is None for t in trials), f
    trials = expand_trials(load_sweep(REPO / "examples" / "sweeps" / "rules-seeds.toml"))
    rules = ["bptt", "eprop-symmetric", "eprop-random", "eprop-adaptive", "ostl", "dfa"]
    assert [(t.config.rule, t.config.seed) for t in trials] == [(r, s) for r in rules for s in (0, 1, 2)]
    reference = load_config(REPO / "examples" / "configs" / "rules-mnist1d.toml").to_dict()
    for t in trials:
        assert {**t.config.to_dict(), "rule": "bptt", "seed": 0} == reference


def test_bench_sweep_renders_its_docs_section(tmp_path):
    sys.path.insert(0, str(REPO))
    from bench import common
    from bench import sweep as bench_sweep

    results = [{"label": lab, "runner": r, "workers": w, "ray_start_s": s, "trial_phase_s": p, "total_s": p + s + 3,
                "trials_per_hour": 3600 * 8 / p, "trials_per_hour_end_to_end": 3600 * 8 / (p + s + 3), "mean_trial_train_s": 2.5}
               for lab, r, w, s, p in [("in-process", "in-process", 1, 0.0, 40.0), ("ray, 1 worker", "ray", 1, 12.0, 44.0),
                                       ("ray, 2 workers", "ray", 2, 12.0, 25.0)]]
    results[1]["overhead_per_trial_s"] = 0.5
    report = {"machine": {"cpu": "CPU", "cores": 2}, "ray": "2.60.0", "date": "today", "load_average": (1.0, 1.0, 1.0),
              "git": None, "config": {"trials": 8}, "results": results}
    docs = tmp_path / "benchmarks.md"
    start, end = common.markers("sweep")
    docs.write_text(f"# B\n\nkeep\n\n{start}\nold\n{end}\n")
    common.update_docs(docs, "sweep", bench_sweep.render(report))
    text = docs.read_text()
    assert "keep" in text and "old" not in text
    assert "| in-process | 0.0 | 40.0 | 720 | 43.0 | 670 |  |" in text
    assert "| ray, 1 worker | 12.0 | 44.0 | 655 | 59.0 | 488 | +0.50 |" in text
