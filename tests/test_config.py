"""Run configs: TOML round trip, errors that name the dotted key, CLI file vs options."""

import json
from pathlib import Path

import pytest
from dataclasses import replace

from neuroplastic.cli import main
from neuroplastic.config import RunConfig, config_to_toml, load_config, loads_config, parse_option

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "configs"


def test_defaults_round_trip_and_flat_fields():
    cfg = RunConfig()
    text = config_to_toml(cfg)
    assert "[trainer]" in text and "[encoder]" not in text and "device" not in text  # None left out
    assert loads_config(text) == cfg
    from neuroplastic.experiment import RunConfig as Reexported

    assert Reexported is RunConfig


def test_round_trip_with_options_encoder_and_odd_values():
    cfg = RunConfig(
        data="mnist1d", data_options={"seed": 7, "shuffle_seq": True}, encoder="tc", encoder_options={"threshold": 0.05},
        model="rsnn", hidden=24, surrogate="fast_sigmoid", rule="tbptt", rule_options={"k": 10}, mode="offline",
        loss="ce_sum", optimizer="sgd", lr=1e-8, schedule="constant", epochs=0, batch_size=7, backend="torch",
        device="cpu", dtype="float64", seed=123, reg_rate_hz=10.0, reg_strength=0.5, checkpoint_every=3,
    )
    cfg.validate()
    back = loads_config(config_to_toml(cfg))
    assert back == cfg
    assert back.to_dict() == cfg.to_dict()


def test_example_config_loads():
    files = sorted(EXAMPLES.glob("*.toml"))
    assert files
    for f in files:
        cfg = load_config(f)
        assert loads_config(config_to_toml(cfg)) == cfg


def test_numbers_are_normalised():
    cfg = loads_config("[trainer]\nlr = 1\nreg_strength = 2\nreg_rate_hz = 5\n")
    assert isinstance(cfg.lr, float) and cfg.lr == 1.0
    assert isinstance(cfg.reg_strength, float) and isinstance(cfg.reg_rate_hz, float)


@pytest.mark.parametrize(
    "text, match",
    [
        ("[trainer]\nlr = -1\n", r"^trainer\.lr: expected a positive number, got -1$"),
        ("[trainer]\nlr = nan\n", r"^trainer\.lr: expected a positive number"),
        ("[trainer]\nlrr = 0.1\n", r"^trainer\.lrr: unknown key; did you mean 'lr'\?"),
        ("[trainer]\nepochs = true\n", r"^trainer\.epochs: expected a non-negative integer, got True \(bool\)"),
        ("[trainer]\nbatch_size = 0\n", r"^trainer\.batch_size: expected a positive integer, got 0"),
        ("[trainer]\nbackend = \"mxnet\"\n", r"^trainer\.backend: unknown backend 'mxnet'"),
        ("[trainer]\noptimizer = \"adagrad\"\n", r"^trainer\.optimizer: unknown optimizer 'adagrad'"),
        ("[trainer]\nmode = \"sideways\"\n", r"^trainer\.mode: unknown training mode 'sideways'"),
        ("[trainer]\ndtype = \"float16\"\n", r"^trainer\.dtype: unknown dtype 'float16'"),
        ("[trainer]\ncheckpoint_every = -1\n", r"^trainer\.checkpoint_every: expected a non-negative integer"),
        ("[network]\nhidden = 1.5\n", r"^network\.hidden: expected a positive integer, got 1\.5"),
        ("[network]\ntau_mem = 0\n", r"^network\.tau_mem: expected a positive time constant"),
        ("[network]\ntau_out = \"slow\"\n", r"^network\.tau_out: expected a positive time constant"),
        ("[network]\nmodel = \"transformer\"\n", r"^network\.model: unknown model 'transformer'"),
        ("[network]\nsurrogate = \"softplus\"\n", r"^network\.surrogate: unknown surrogate 'softplus'"),
        ("[network]\nlayers = 2\n", r"^network\.layers: unknown key"),
        ("[rule]\nname = \"nope\"\n", r"^rule: unknown rule 'nope'"),
        ("[rule]\nname = \"tbptt\"\nkk = 10\n", r"^rule\.kk: unknown option; did you mean 'k'\?"),
        ("[data]\nname = \"mnist1d\"\nsize = 3\n", r"^data\.size: unknown option"),
        ("[data]\nname = \"imagenet\"\n", r"^data: unknown dataset 'imagenet'"),
        ("[encoder]\nname = \"zz\"\n", r"^encoder: unknown encoder 'zz'"),
        ("[encoder]\nthreshold = 0.1\n", r"^encoder\.name: the \[encoder\] section has options but no name"),
        ("[encoder]\nname = \"tc\"\ntreshold = 0.1\n", r"^encoder\.treshold: unknown option; did you mean 'threshold'\?"),
        ("seed = -1\n", r"^seed: expected a non-negative integer, got -1"),
        ("epochs = 3\n", r"^epochs: unknown key"),
        ("trainer = 3\n", r"^trainer: expected a \[trainer\] section"),
        ("[trainer\nlr = 1\n", r"^config: not valid TOML"),
    ],
)
def test_errors_name_the_key(text, match):
    with pytest.raises(ValueError, match=match):
        loads_config(text)


def test_load_config_file_errors(tmp_path):
    with pytest.raises(ValueError, match="config: cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 1\n")
    with pytest.raises(ValueError, match=f"config: {bad} is not valid TOML"):
        load_config(bad)


def test_flat_dict_rejects_unknown_keys():
    d = RunConfig().to_dict()
    assert RunConfig.from_dict(d) == RunConfig()
    with pytest.raises(ValueError, match="^hiddne: unknown key; did you mean 'hidden'"):
        RunConfig.from_dict({**d, "hiddne": 3})


def test_parse_option():
    assert parse_option("k=10", "--rule-option") == ("k", 10)
    assert parse_option("feedback=random", "--rule-option") == ("feedback", "random")
    assert parse_option("x = [1, 2.5]", "--rule-option") == ("x", [1, 2.5])
    assert parse_option("flag=true", "--rule-option") == ("flag", True)
    with pytest.raises(ValueError, match="--rule-option: expected KEY=VALUE"):
        parse_option("k", "--rule-option")


SETTINGS_TOML = """
seed = 3

[data]
name = "mnist1d"

[network]
model = "snn"
hidden = 8
surrogate = "fast_sigmoid"

[rule]
name = "tbptt"
k = 10

[trainer]
optimizer = "sgd"
lr = 0.05
schedule = "constant"
epochs = 0
batch_size = 500
backend = "jax"
reg_rate_hz = 10
"""

SETTINGS_ARGS = [
    "--seed", "3", "--data", "mnist1d", "--model", "snn", "--hidden", "8", "--surrogate", "fast_sigmoid",
    "--rule", "tbptt", "--rule-option", "k=10", "--optimizer", "sgd", "--lr", "0.05", "--schedule", "constant",
    "--epochs", "0", "--batch-size", "500", "--backend", "jax", "--reg-rate", "10",
]


def test_cli_file_and_options_give_the_same_config(tmp_path):
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text(SETTINGS_TOML)
    common = ["--out", str(tmp_path), "--no-progress"]
    assert main(["train", "--config", str(cfg_file), "--name", "file", *common]) == 0
    assert main(["train", *SETTINGS_ARGS, "--name", "opts", *common]) == 0
    a, b = (tmp_path / n / "config.json" for n in ("file", "opts"))
    assert a.read_text() == b.read_text()
    assert (tmp_path / "file" / "config.toml").read_text() == (tmp_path / "opts" / "config.toml").read_text()
    cfg = json.loads(a.read_text())
    assert (cfg["model"], cfg["rule_options"], cfg["lr"], cfg["reg_rate_hz"], cfg["seed"]) == ("snn", {"k": 10}, 0.05, 10.0, 3)
    # the run folder's config.toml is itself a valid config for the same run
    assert load_config(tmp_path / "file" / "config.toml") == load_config(cfg_file)


def test_cli_options_override_the_file(tmp_path, monkeypatch):
    import neuroplastic.cli as cli

    seen = []
    monkeypatch.setattr(cli, "train_run", lambda cfg, out, progress=True: seen.append((cfg, out)))
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text(SETTINGS_TOML)
    assert main(["train", "--config", str(cfg_file), "--hidden", "12", "--rule-option", "k=5", "--out", str(tmp_path), "--name", "x"]) == 0
    cfg, out = seen[-1]
    assert (cfg.hidden, cfg.rule_options, cfg.model, cfg.lr) == (12, {"k": 5}, "snn", 0.05)
    assert out == tmp_path / "x"


def test_cli_config_errors(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[trainer]\nlr = -1\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path)]) == 2
    assert "trainer.lr: expected a positive number, got -1" in capsys.readouterr().err
    assert main(["train", "--rule-option", "k", "--out", str(tmp_path)]) == 2
    assert "--rule-option: expected KEY=VALUE" in capsys.readouterr().err
    assert main(["train", "--rule", "tbptt", "--rule-option", "kk=3", "--out", str(tmp_path)]) == 2
    assert "rule.kk: unknown option" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path), "--hidden", "3"]) == 2
    assert "--resume: the run continues with its own config.toml; leave out --hidden" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "resume:" in capsys.readouterr().err
    assert not list(tmp_path.glob("*/"))  # no run folder was made


@pytest.mark.parametrize("mode, per_batch", [("offline", 1), ("online", 40), ("deferred", 1)])
def test_schedule_counts_every_update(monkeypatch, tmp_path, mode, per_batch):
    """Online training updates at every time step, so the cosine schedule must span
    epochs x batches x T updates (it used to reach zero after 1/T of training)."""
    import neuroplastic.train as train_pkg
    from neuroplastic.experiment import train_run

    seen = {}

    class Stop(Exception):
        pass

    def capture(name, lr, backend, schedule="constant", total_steps=None, **kw):
        seen["total_steps"] = total_steps
        raise Stop

    monkeypatch.setattr(train_pkg, "make_optimizer", capture)
    cfg = RunConfig(rule="eprop-symmetric", mode=mode, loss="ce_per_step", epochs=3, batch_size=1000, backend="torch")
    with pytest.raises(Stop):
        train_run(cfg, tmp_path / "run", progress=False)
    assert seen["total_steps"] == 3 * 4 * per_batch  # MNIST-1D: 4000 examples, T = 40


def test_time_constants_reach_the_network(monkeypatch, tmp_path):
    """``--tau-mem`` / ``[network] tau_mem`` set the hidden cells' and readout's time constants."""
    import neuroplastic.experiment as E

    seen = {}

    class Stop(Exception):
        pass

    def spy(*args, **kw):
        seen.update(kw)
        raise Stop

    monkeypatch.setattr(E, "build_model", spy)
    cfg = loads_config('[network]\nmodel = "rsnn"\ntau_mem = 1\ntau_out = 5.0\n')
    assert (cfg.tau_mem, cfg.tau_out) == (1.0, 5.0)
    with pytest.raises(Stop):
        E.train_run(cfg, tmp_path / "run", progress=False)
    assert (seen["tau_mem"], seen["tau_out"]) == (1.0, 5.0)
    assert "tau_mem = 1.0" in config_to_toml(cfg)


def test_main_job_trains_the_rule_comparison_config():
    """`make demo` (StudyConfig's defaults) and examples/configs/rules-mnist1d.toml, which
    docs/rules-mnist1d.md was produced with, describe the same network and training."""
    from neuroplastic.study import StudyConfig

    study, cfg = StudyConfig.default(), load_config(EXAMPLES / "rules-mnist1d.toml")
    assert study.run_config(study.arm("bptt")) == replace(cfg, checkpoint_every=0)
