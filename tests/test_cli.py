"""The command line: a short run writes the run folder with metrics, summary and plots."""

import json

import pytest

from neuroplastic.cli import main
from neuroplastic.experiment import RunConfig


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_train_writes_run_folder(tmp_path, backend):
    rc = main(["train", "--epochs", "2", "--hidden", "12", "--backend", backend, "--out", str(tmp_path), "--name", "r", "--no-progress"])
    assert rc == 0
    run = tmp_path / "r"
    for name in ("config.json", "metrics.jsonl", "summary.md", "summary.json", "params.safetensors", "learning_curves.png", "raster.png"):
        assert (run / name).is_file(), name
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["epoch"] for l in lines] == [1, 2]
    assert 0.0 <= lines[-1]["test_acc"] <= 1.0
    summary = (run / "summary.md").read_text()
    assert "final test accuracy" in summary and "![raster.png](raster.png)" in summary
    # NeuroBench efficiency metrics on the first 256 test examples, in both summaries
    assert "## Efficiency (NeuroBench definitions, first 256 test examples)" in summary
    assert "| effective ACs / sample (spike input) |" in summary and "| neuron updates / sample | 880 |" in summary
    eff = json.loads((run / "summary.json").read_text())["efficiency"]
    assert eff["samples"] == 256 and eff["effective_acs"] > 0 and eff["effective_macs"] > 0
    assert [l["cell"] for l in eff["layers"]] == ["ALIF", "LeakyReadout"]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["backend"] == backend and cfg["rule"] == "bptt"
    # parameters load back without pickle
    from safetensors.numpy import load_file

    assert "layers.0.w_rec" in load_file(str(run / "params.safetensors"))


def test_run_and_train_share_defaults():
    from neuroplastic.cli import _add_train_options
    import argparse

    p = argparse.ArgumentParser()
    _add_train_options(p)
    args = p.parse_args([])
    d = RunConfig()
    assert (args.rule, args.model, args.epochs, args.lr, args.backend) == (d.rule, d.model, d.epochs, d.lr, d.backend)


@pytest.mark.slow
def test_default_bptt_reaches_70_percent_on_mnist1d(tmp_path):
    """The issue's acceptance run: `neuroplastic train --data mnist1d --rule bptt` with defaults."""
    assert main(["train", "--data", "mnist1d", "--rule", "bptt", "--out", str(tmp_path), "--name", "acc", "--no-progress"]) == 0
    last = json.loads((tmp_path / "acc" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["test_acc"] >= 0.70


def test_compare_subcommand_uses_the_study_network_and_objective(tmp_path, monkeypatch, capsys):
    """`neuroplastic compare` builds the same network, loss and regulariser as the main job; on a terminal it
    shows the comparison's progress on stderr (stdout keeps only the result line)."""
    import neuroplastic.progress as progress
    import neuroplastic.train.compare as C

    monkeypatch.setattr(progress, "wants_progress", lambda quiet=False, stream=None: not quiet)  # as on a terminal

    seen = {}
    original = C.GradientComparison.__init__

    def spy(self, net, rules, **kw):
        seen["net"], seen["loss"] = net, kw["loss"]
        original(self, net, rules, **kw)

    monkeypatch.setattr(C.GradientComparison, "__init__", spy)
    args = ["compare", "--quick", "--rules", "bptt", "eprop-symmetric", "--steps", "2", "--out", str(tmp_path), "--name", "c"]
    assert main(args) == 0
    out = capsys.readouterr()
    assert "gradient comparison (bptt, eprop-symmetric)" in out.err and "2/2" in out.err
    assert "compiling the gradients of 2 rules" in out.err  # the study's backend is JAX
    assert "gradient comparison (" not in out.out
    records = [json.loads(l) for l in (tmp_path / "c" / "alignment.jsonl").read_text().splitlines()]
    assert {r["rule"] for r in records} == {"bptt", "eprop-symmetric"}
    assert seen["net"].blocks[0].cell.tau_mem == 1.0  # StudyConfig's tau_mem, not build_model's default
    assert seen["loss"].regularizer is not None and seen["loss"].regularizer.target_hz == 10.0


def _help(argv: list) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as e:
        main(argv + ["--help"])
    assert e.value.code == 0
    return " ".join(buf.getvalue().split())  # argparse wraps lines


def test_every_help_lists_the_choices_of_its_closed_options():
    from neuroplastic.backend import BACKENDS
    from neuroplastic.data import LOADERS
    from neuroplastic.losses import LOSSES
    from neuroplastic.models import MODELS
    from neuroplastic.rules import MODES, RULES
    from neuroplastic.surrogates import SURROGATES
    from neuroplastic.train.optimizers import OPTIMIZERS, SCHEDULES

    train = _help(["train"])
    for option, names in (("--loss", LOSSES), ("--surrogate", SURROGATES), ("--mode", MODES), ("--optimizer", OPTIMIZERS),
                          ("--schedule", SCHEDULES), ("--backend", BACKENDS), ("--rule", RULES), ("--data", LOADERS), ("--model", MODELS)):
        text = train[train.rindex(option + " ") + len(option):]  # the last mention is the option's help, after the usage
        listed = text[: text.index(" --")]  # up to the next option
        missing = [n for n in names if n not in listed.replace("- ", "-")]
        assert not missing, (option, missing)
    for command in ("run", "compare", "landscape"):
        text = _help([command]).replace("- ", "-")
        for names in (RULES, BACKENDS, MODELS, LOADERS):
            assert all(n in text for n in names), (command, names)
        assert "--quiet" in text
    quick = _help(["run"])
    quick = quick[quick.rindex("--quick "):]
    assert "768 training examples" in quick and "2 epochs" in quick  # --quick states its subset


def test_a_bad_choice_is_still_the_library_error_naming_the_option(tmp_path, capsys):
    assert main(["train", "--loss", "hinge", "--out", str(tmp_path)]) == 2
    assert "loss" in capsys.readouterr().err


def test_the_printed_table_states_a_quick_runs_subset():
    from neuroplastic.cli import results_table

    hist = [{"epoch": 1, "test_acc": 0.2}, {"epoch": 2, "test_acc": 0.25}]
    results = {"config": {"train_examples": 768, "epochs": 2},
               "rules": {"bptt": {"final": {"test_acc": 0.25}, "history": hist}}}
    table = results_table(results)
    assert "bptt" in table and "25.0%" in table and "768 examples (a subset), 2 epochs" in table
    assert "first 768 training examples" in table
    full = results_table({"config": {"train_examples": None, "epochs": 60}, "rules": {"bptt": {"final": {"test_acc": 0.8}, "history": hist * 30}}})
    assert "all examples, 60 epochs" in full and "subset" not in full
