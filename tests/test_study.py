"""The main job's study is a list of run configurations: any rule in any mode, from one TOML file."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from neuroplastic.cli import main
from neuroplastic.config import load_config
from neuroplastic.study import MAIN_STUDY, StudyConfig, load_study, study_from_dict, study_to_toml

STUDY = """
seed = 0
[data]
name = "mnist1d"
[network]
model = "rsnn"
hidden = 16
tau_mem = 1.0
surrogate = "fast_sigmoid"
[trainer]
loss = "ce_mean"
lr = 0.005
epochs = 2
reg_rate_hz = 10.0
reg_strength = 10.0
[study]
reference = "bptt"
train_examples = 256
compare_steps = 2
landscape_grid = 3
landscape_batches = 1
[[rules]]
name = "bptt"
[[rules]]
name = "tbptt"
label = "tbptt-10"
k = 10
[[rules]]
name = "ottt"
mode = "online"
loss = "ce_per_step"
lr = 0.0001
reg_strength = 0.0
"""


def test_the_main_job_is_the_rule_comparison_network():
    study = StudyConfig.default()
    assert study.labels == ["bptt", "eprop-symmetric", "eprop-random", "eprop-adaptive", "ostl", "dfa"]
    cfg = study.run_config(study.arm("eprop-random"), seed=3)
    assert (cfg.rule, cfg.mode, cfg.seed, cfg.hidden, cfg.tau_mem) == ("eprop-random", "offline", 3, 128, 1.0)


def test_a_study_file_round_trips(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(STUDY)
    study = load_study(f)
    tb = study.arm("tbptt-10")
    assert (tb.rule, tb.options) == ("tbptt", {"k": 10})
    ot = study.arm("ottt")
    assert (ot.mode, ot.overrides) == ("online", {"loss": "ce_per_step", "lr": 0.0001, "reg_strength": 0.0})
    cfg = study.run_config(ot)
    assert (cfg.rule, cfg.mode, cfg.loss, cfg.lr, cfg.hidden) == ("ottt", "online", "ce_per_step", 0.0001, 16)
    (tmp_path / "back.toml").write_text(study_to_toml(study))
    assert load_study(tmp_path / "back.toml") == study
    assert load_study(MAIN_STUDY) == StudyConfig.default()


@pytest.mark.parametrize("patch,message", [
    ({"rules": [{"name": "eprop-symetric"}]}, "rules[0].name: unknown rule 'eprop-symetric'; did you mean 'eprop-symmetric'"),
    ({"rules": [{"name": "bptt"}, {"name": "bptt"}]}, "rules: two arms share the label 'bptt'"),
    ({"rules": [{"name": "tbptt", "kk": 10}]}, "rules[tbptt]: rule.kk: unknown option; did you mean 'k'"),
    ({"rules": [{"name": "ottt", "mode": "online"}]}, None),  # ce_mean does not split over time: refused when trainers are built
    ({"study": {"refrence": "bptt"}, "rules": [{"name": "bptt"}]}, "study.refrence: unknown key; did you mean 'reference'"),
    ({"rules": []}, "rules: a study file needs at least one [[rules]] table"),
])
def test_bad_study_files_are_named(patch, message):
    d = {"data": {"name": "mnist1d"}, **patch}
    if message is None:
        study_from_dict(d)  # valid as a file...
        return
    with pytest.raises(ValueError) as err:
        study_from_dict(d)
    assert message in str(err.value)


def test_misspelled_rules_fail_before_any_training_and_leave_no_folder(tmp_path, capsys):
    assert main(["run", "--quick", "--rules", "bptt", "eprop-symetric", "--out", str(tmp_path), "--name", "x"]) == 2
    assert "did you mean 'eprop-symmetric'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    # a rule that cannot run in its mode is refused by name before anything is written, too
    f = tmp_path / "bad.toml"
    f.write_text(STUDY.replace('loss = "ce_per_step"\n', ""))
    assert main(["run", "--config", str(f), "--out", str(tmp_path), "--name", "y"]) == 2
    assert "does not decompose over time steps" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


@pytest.mark.parametrize("args", [["compare", "--steps", "0"], ["compare", "--steps", "-3"], ["run", "--epochs", "0"],
                                  ["run", "--seeds", "0"], ["landscape", "--grid", "0"]])
def test_counts_below_one_are_refused(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert "must be an integer >= 1" in capsys.readouterr().err


def test_the_main_job_compares_tbptt_and_online_ottt_beside_bptt_from_one_file(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(STUDY)
    assert main(["run", "--config", str(f), "--out", str(tmp_path), "--name", "s"]) == 0
    run = tmp_path / "s"
    results = json.loads((run / "results.json").read_text())
    assert list(results["rules"]) == ["bptt", "tbptt-10", "ottt"]
    # every arm is an ordinary run folder, trained with its own settings
    tb, ot = load_config(run / "rules" / "tbptt-10" / "config.toml"), load_config(run / "rules" / "ottt" / "config.toml")
    assert (tb.rule, tb.rule_options, tb.mode) == ("tbptt", {"k": 10}, "offline")
    assert (ot.rule, ot.mode, ot.loss) == ("ottt", "online", "ce_per_step")
    assert json.loads((run / "rules" / "ottt" / "status.json").read_text())["status"] == "finished"
    md = (run / "report.md").read_text()
    assert "| tbptt-10 | tbptt (k=10) |" in md and "| ottt | ottt online (loss=ce_per_step" in md
    assert "Trained on the first 256 training examples only" in md
    assert set(results["alignment"]["summary"]) == {"bptt", "tbptt-10", "ottt"}
    assert replace(load_study(run / "study.toml"), seeds=1) == replace(load_study(f), seeds=1)


@pytest.mark.parametrize("engine", ["in-process", pytest.param("ray", marks=pytest.mark.slow)])
def test_extra_seeds_train_on_the_sweep_engine(tmp_path, engine):
    """``seeds = 2``: each arm's second seed trains on the sweep engine (run_configs: in this process, or an
    embedded Ray, 40 s of which Ray's start is most) into its own run folder; the table carries the spread and
    the paired test; a rerun of that configuration in this process gives the same accuracy."""
    if engine == "ray":
        pytest.importorskip("ray")
    from neuroplastic.study import run_study
    from neuroplastic.sweep.runner import run_configs

    study = study_from_dict(__import__("tomllib").loads(STUDY))
    study = replace(study, base=replace(study.base, epochs=1), arms=study.arms[:2], seeds=2)
    lines: list[str] = []
    results = run_study(study, tmp_path / "s", log=lines.append, engine=engine)
    if engine == "ray":
        assert any(line.startswith("training 2 runs on ray (local") for line in lines), lines
    for label in ("bptt", "tbptt-10"):
        seeds = results["rules"][label]["seeds"]
        assert [s["seed"] for s in seeds] == [0, 1]
        run = tmp_path / "s" / "rules" / label / "seed-1"
        assert load_config(run / "config.toml").seed == 1
        assert json.loads((run / "status.json").read_text())["status"] == "finished"
        assert results["rules"][label]["test_acc_spread"]["n"] == 2
    assert "tbptt-10" in results["significance"]
    again = run_configs([("bptt", study.run_config(study.arms[0], 1), tmp_path / "again")], study_data_of(study), engine="in-process",
                        log=lambda _m: None)
    assert abs(again["bptt"]["final_test_acc"] - results["rules"]["bptt"]["seeds"][1]["final"]["test_acc"]) <= 0.02


def study_data_of(study):
    from neuroplastic.study import study_data

    return study_data(study)


def test_run_configs_refuses_bad_engine_settings(tmp_path):
    from neuroplastic.sweep.runner import run_configs

    with pytest.raises(ValueError, match=r"engine: unknown value 'dask'; choose one of \['auto', 'ray', 'in-process'\]"):
        run_configs([], None, engine="dask")
    with pytest.raises(ValueError, match="workers: expected a positive integer, got 0"):
        run_configs([], None, workers=0)
