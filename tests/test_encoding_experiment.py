"""The MNIST-1D encoding experiment (examples/encoding_mnist1d.py): statistics, thresholds and a 1-epoch run on a slice."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from neuroplastic.data import Dataset, load_dataset

PATH = Path(__file__).resolve().parents[1] / "examples" / "encoding_mnist1d.py"


@pytest.fixture(scope="module")
def ex():
    spec = importlib.util.spec_from_file_location("encoding_mnist1d", PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sparsity_and_events_match_a_hand_count(ex):
    # 3 steps, 2 examples, 2 channels: 6 of the 12 entries are zero (3 + 1 + 2 by step)
    x = np.array([[[0, 1], [0, 0]], [[2, 0], [-1, 3]], [[0, 0], [1, 1]]], dtype=np.float32)
    assert ex.input_sparsity(x) == pytest.approx(6 / 12)
    assert ex.events_per_sample(x) == pytest.approx(6 / 2)
    # TC of a known ramp: d = [0, .5, .5, -1, 0.1]; threshold .4 gives on at t=1,2, off at t=3
    sig = np.array([0.0, 0.5, 1.0, 0.0, 0.1], dtype=np.float32).reshape(5, 1, 1)
    s = ex.encode("tc", sig, threshold=0.4)
    assert s.shape == (5, 1, 2)
    np.testing.assert_array_equal(s[:, 0, 0], [0, 1, 1, 0, 0])
    np.testing.assert_array_equal(s[:, 0, 1], [0, 0, 0, 1, 0])
    assert ex.input_sparsity(s) == pytest.approx(7 / 10)
    assert ex.events_per_sample(s) == 3.0


def test_threshold_is_fitted_on_the_training_set_only(ex):
    x_train = np.array([0.0, 1.0, 3.0, 2.0], dtype=np.float32).reshape(4, 1, 1)  # |d| = 1, 2, 1
    assert ex.mean_abs_step(x_train) == pytest.approx(4 / 3)
    assert ex.fit_threshold(x_train, factor=1.5) == pytest.approx(2.0)
    rng = np.random.default_rng(0)
    data = Dataset("toy", np.repeat(x_train, 3, axis=1), np.zeros(3, dtype=np.int64),
                   100 * rng.normal(size=(4, 2, 1)).astype(np.float32), np.zeros(2, dtype=np.int64), n_classes=2)
    _, info = ex.encode_dataset(data, "sf", factor=1.5)
    assert info["threshold"] == pytest.approx(2.0)  # the wild test split does not move it


def test_reconstruction_error_of_sf_stays_below_the_threshold(ex):
    t = np.linspace(0, 2 * np.pi, 40)
    x = np.sin(t).astype(np.float32).reshape(40, 1, 1)
    thr = 0.2  # larger than every step change (at most 2 pi / 39 = 0.16)
    s = ex.encode("sf", x, threshold=thr)
    rec = ex.reconstruction_error("sf", x, s, thr)
    assert rec["rmse"] < thr
    assert rec["nrmse"] == pytest.approx(rec["rmse"] / np.std(x))
    assert ex.reconstruction_error("none", x, x, None) is None


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda ex: ex.fit_threshold(np.zeros((5, 2, 1)), 1.0), "x_train"),
        (lambda ex: ex.fit_threshold(np.ones((5, 2, 1)), -1.0), "factor"),
        (lambda ex: ex.mean_abs_step(np.ones((5, 2))), "x: expected"),
        (lambda ex: ex.input_sparsity(np.zeros((0, 1, 1))), "x: empty"),
        (lambda ex: ex.encode("nope", np.ones((5, 1, 1)), 0.1), "encoding"),
        (lambda ex: ex.encode("tc", np.ones((5, 1, 1))), "threshold"),
    ],
)
def test_bad_arguments_name_the_argument(ex, call, message):
    with pytest.raises(ValueError, match=message):
        call(ex)


def test_one_epoch_on_a_slice_gives_every_row(ex, tmp_path):
    full = load_dataset("mnist1d", as_sequence=True)
    x_train = full.x_train[:, :48].copy()
    x_train[:4] = 0.0  # 4 of the 40 steps zeroed: the raw input's sparsity is 0.1
    x_test = full.x_test[:, :32].copy()
    x_test[:4] = 0.0
    data = Dataset("mnist1d-slice", x_train, full.y_train[:48], x_test, full.y_test[:32], n_classes=10, dt=full.dt)
    res = ex.run_experiment(data, epochs=1, backend="torch", settings={"hidden": 8, "batch_size": 16, "seed": 1}, log=lambda *_: None)

    assert res["settings"]["seed"] == 1
    assert [e["encoding"] for e in res["encodings"]] == ["none", "tc", "sf", "mw"]
    assert [(r["encoding"], r["rule"]) for r in res["runs"]] == [
        (e, r) for e in ("none", "tc", "sf", "mw") for r in ("bptt", "eprop-symmetric")
    ]
    info = {e["encoding"]: e for e in res["encodings"]}
    assert info["none"]["sparsity"] == pytest.approx(0.1)
    assert info["none"]["events_per_sample"] == pytest.approx(36.0)
    # TC's sparsity by hand: a test entry spikes where the step change reaches the train-fitted threshold
    thr = float(np.mean(np.abs(np.diff(x_train.astype(np.float64), axis=0))))
    assert info["tc"]["threshold"] == pytest.approx(thr)
    d = np.diff(x_test, axis=0)
    n_spikes = np.count_nonzero(d >= thr) + np.count_nonzero(d <= -thr)
    assert info["tc"]["sparsity"] == pytest.approx(1 - n_spikes / (40 * 32 * 2))
    assert info["tc"]["events_per_sample"] == pytest.approx(n_spikes / 32)
    for name in ("tc", "sf", "mw"):
        assert info[name]["channels"] == 2
        assert 0.0 < info[name]["sparsity"] < 1.0
        assert info[name]["reconstruction"]["nrmse"] > 0
    for r in res["runs"]:
        assert 0.0 <= r["test_acc"] <= 1.0 and len(r["curve"]) == 1

    # the table has one row per encoding with both rules' accuracies, and re-rendering keeps the notes
    (tmp_path / "r.json").write_text(json.dumps({**res, "command": "python examples/encoding_mnist1d.py --epochs 1"}))
    doc = tmp_path / "t.md"
    ex.main(["--from-json", str(tmp_path / "r.json"), "--doc", str(doc)])
    text = doc.read_text()
    assert "| bptt test acc | eprop-symmetric test acc |" in text
    for name in ("none", "tc", "sf", "mw"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        assert f"{info[name]['sparsity']:.3f}" in row and row.count("%") == 4
    doc.write_text(text.replace("(to be written after looking at the numbers)", "TC is sparsest."))
    ex.main(["--from-json", str(tmp_path / "r.json"), "--doc", str(doc)])
    assert doc.read_text().rstrip().endswith("TC is sparsest.")


def test_comparison_network_is_the_rule_comparison_config(ex):
    # --network comparison reads examples/configs/rules-mnist1d.toml: LIF, tau_mem 1, tau_out 20, regulariser 10 Hz x 10
    from neuroplastic.cells.lif import LIF
    from neuroplastic.config import load_config

    s = ex.network_settings("comparison")
    cfg = load_config(ex.COMPARISON_CONFIG)
    assert (s["model"], s["hidden"], s["tau_mem"], s["tau_out"], s["surrogate"]) == ("rsnn", 128, 1.0, 20.0, "fast_sigmoid")
    assert (s["reg_rate_hz"], s["reg_strength"], s["lr"], s["batch_size"]) == (10.0, 10.0, cfg.lr, cfg.batch_size)
    assert ex.DEFAULT_EPOCHS["comparison"] == cfg.epochs == 60
    # the first table's network stays as it was run: ALIF, 256, tau_mem 20, no regulariser
    d = ex.network_settings("train-default")
    assert (d["model"], d["hidden"], d["tau_mem"], d["reg_rate_hz"]) == ("rsnn-alif", 256, 20.0, None)
    with pytest.raises(ValueError, match="network"):
        ex.network_settings("nope")

    # the built network: 2 input channels for an encoding, LIF with tau_mem 1, the regulariser in the objective
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8, 1)).astype(np.float32)
    raw = Dataset("toy", x, np.arange(8) % 10, x[:, :4], np.arange(4) % 10, n_classes=10)
    data, _ = ex.encode_dataset(raw, "tc")
    net, trainer, used = ex.build_trainer(data, "eprop-symmetric", epochs=1, backend="torch", network="comparison")
    assert net.n_in == 2 and net.blocks[0].size == 128
    assert isinstance(net.blocks[0].cell, LIF) and net.blocks[0].cell.tau_mem == 1.0
    reg = trainer.objective.regularizer
    assert reg is not None and (reg.target_hz, reg.strength) == (10.0, 10.0)
    _, trainer_default, _ = ex.build_trainer(data, "bptt", epochs=1, backend="torch")
    assert trainer_default.objective.regularizer is None
    # the results record the network, and the page names it
    res = ex.run_experiment(raw, encodings=["tc"], rules=["bptt"], epochs=1, backend="torch", network="comparison",
                            settings={"hidden": 4, "batch_size": 8}, log=lambda *_: None)
    assert res["settings"]["network"] == "comparison" and res["settings"]["tau_mem"] == 1.0
    page = ex.render_table(res, "python examples/encoding_mnist1d.py --network comparison")
    assert "rule-comparison network" in page and "`tau_mem = 1` step," in page and "firing-rate regulariser" in page


def test_from_json_renders_one_table_per_network(ex, tmp_path):
    # two saved result sets (an old one without "network", a comparison one) give two tables on one page, in network order
    run = {"rule": "bptt", "test_acc": 0.5, "best_test_acc": 0.6, "best_epoch": 1, "train_acc": 0.7, "rate_hz": [10.0], "time_s": 1.0}
    info = {"encoding": "none", "threshold": None, "channels": 1, "sparsity": 0.0, "events_per_sample": 40.0, "reconstruction": None}
    base = {"data": "mnist1d", "n_train": 4000, "n_test": 1000, "steps": 40, "factor": 1.0, "window": 3, "mean_abs_step_train": 0.43,
            "machine": "x", "backend": "jax", "epochs": 1}
    old = {"settings": {**ex.SHARED, **base}, "encodings": [info], "runs": [{"encoding": "none", **run}], "command": "cmd-old"}
    for k in ("tau_mem", "tau_out", "reg_rate_hz", "reg_strength"):
        del old["settings"][k]
    new = {"settings": {**ex.network_settings("comparison"), **base, "network": "comparison"}, "encodings": [info],
           "runs": [{"encoding": "none", **run, "test_acc": 0.9}], "command": "cmd-new"}
    (tmp_path / "a.json").write_text(json.dumps(old))
    (tmp_path / "b.json").write_text(json.dumps(new))
    doc = tmp_path / "p.md"
    ex.main(["--from-json", str(tmp_path / "b.json"), str(tmp_path / "a.json"), "--doc", str(doc)])
    text = doc.read_text()
    assert text.index("## Table 1: `neuroplastic train`") < text.index("`cmd-old`") < text.index("## Table 2: the rule-comparison")
    assert text.index("## Table 2:") < text.index("`cmd-new`")
    rows = [line for line in text.splitlines() if line.startswith("| none |")]
    assert "50.0%" in rows[0] and "90.0%" in rows[2]  # main table and every-training rows of each section


def _result_set(ex, network: str, seed: int, accs: dict, **settings) -> dict:
    """A saved result set without training: ``accs[(encoding, rule)] = (final, best)`` test accuracy."""
    infos = {
        "none": {"encoding": "none", "threshold": None, "channels": 1, "sparsity": 0.0, "events_per_sample": 40.0, "reconstruction": None},
        "tc": {"encoding": "tc", "threshold": 0.43, "channels": 2, "sparsity": 0.817, "events_per_sample": 14.6,
               "reconstruction": {"rmse": 1.05, "nrmse": 1.04}},
    }
    base = {"data": "mnist1d", "n_train": 4000, "n_test": 1000, "steps": 40, "factor": 1.0, "window": 3, "mean_abs_step_train": 0.43,
            "machine": f"machine-{seed}", "backend": "jax", "epochs": 30}
    runs = [{"encoding": e, "rule": r, "test_acc": final, "best_test_acc": best, "best_epoch": 7 + seed, "train_acc": 0.9,
             "rate_hz": [10.0], "time_s": 60.0} for (e, r), (final, best) in accs.items()]
    encodings = [infos[e] for e in dict.fromkeys(e for e, _ in accs)]
    return {"settings": {**ex.network_settings(network), **base, "network": network, "seed": seed, **settings},
            "encodings": encodings, "runs": runs, "command": f"cmd-{network}-seed{seed}"}


def test_seeds_of_a_network_are_aggregated_into_mean_and_std(ex, tmp_path):
    # three seeds of the first network: none/bptt final 70, 74, 75% -> 73.0 +- 2.6 (std with n - 1 = sqrt(7e-4)),
    # best 71, 75, 78% -> 74.7 +- 3.5; tc/bptt final 50, 50, 50% -> 50.0 +- 0.0
    finals = {0: (0.70, 0.71), 1: (0.74, 0.75), 2: (0.75, 0.78)}
    default = [_result_set(ex, "train-default", seed, {("none", "bptt"): finals[seed], ("tc", "bptt"): (0.5, 0.55)}) for seed in (2, 0, 1)]
    # one seed of the comparison network, with numbers no aggregate of the first network gives
    comparison = _result_set(ex, "comparison", 0, {("none", "bptt"): (0.91, 0.92), ("tc", "bptt"): (0.66, 0.67)}, epochs=60)
    paths = []
    for i, res in enumerate([*default, comparison]):
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(res))
    doc = tmp_path / "p.md"
    ex.main(["--from-json", *map(str, paths), "--doc", str(doc)])
    text = doc.read_text()
    t1, t2 = text.split("## Table 1:", 1)[1].split("## Table 2:", 1)
    t2 = t2.split("## What we noticed")[0]

    # Table 1: mean +- std over its 3 seeds, the seeds and every seed's command named, one row per (encoding, rule, seed)
    assert "(3 seeds: 0, 1, 2; 6 trainings" in t1 and "seeds 0, 1, 2," in t1
    assert all(f"`cmd-train-default-seed{s}`" in t1 for s in (0, 1, 2))
    assert "on machine-0 (seed 0) and machine-1 (seed 1) and machine-2 (seed 2))." in t1  # which seed ran where
    row = next(line for line in t1.splitlines() if line.startswith("| none | — |"))
    assert "| 73.0 ± 2.6% (74.7 ± 3.5%) |" in row
    assert "| 50.0 ± 0.0% (55.0 ± 0.0%) |" in next(line for line in t1.splitlines() if line.startswith("| tc | 0.4300 |"))
    per_seed = [line for line in t1.splitlines() if line.startswith("| none | bptt |")]
    assert per_seed == [f"| none | bptt | {s} | {100 * finals[s][0]:.1f}% | {100 * finals[s][1]:.1f}% ({7 + s}) | 90.0% | 10.0 | 60 |"
                        for s in (0, 1, 2)]
    assert "91.0%" not in t1 and "66.0%" not in t1  # the comparison network's numbers stay in their own table

    # Table 2: one seed renders its own numbers and says so
    assert "(1 seed: 0; 2 trainings, 2 min of training on machine-0)." in t2 and "Test accuracy of 1 seed (seed 0)" in t2 and "seed 0," in t2
    assert "| 91.0% (92.0%) |" in next(line for line in t2.splitlines() if line.startswith("| none | — |"))
    assert "±" not in t2 and "73.0" not in t2
    assert [line.split("|")[3].strip() for line in t2.splitlines() if line.startswith("| none | bptt |")] == ["0"]
    # the page says the figures move by machine
    assert "Figures move by machine" in text and "AVX-512" in text


def test_aggregation_refuses_sets_that_are_not_seeds_of_one_run(ex):
    a = _result_set(ex, "comparison", 0, {("none", "bptt"): (0.9, 0.9)})
    with pytest.raises(ValueError, match="seed 0"):
        ex.render_page([a, _result_set(ex, "comparison", 0, {("none", "bptt"): (0.8, 0.8)})])
    with pytest.raises(ValueError, match="'epochs': 30 against 60"):
        ex.render_page([a, _result_set(ex, "comparison", 1, {("none", "bptt"): (0.8, 0.8)}, epochs=60)])
    other_inputs = _result_set(ex, "comparison", 1, {("none", "bptt"): (0.8, 0.8)})
    other_inputs["encodings"][0] = {**other_inputs["encodings"][0], "sparsity": 0.5}
    with pytest.raises(ValueError, match="encoding 'none'"):
        ex.render_page([a, other_inputs])
    # a seed that ran only some cells says which seeds each such cell has
    b = _result_set(ex, "comparison", 1, {("none", "bptt"): (0.8, 0.8), ("tc", "bptt"): (0.6, 0.6)})
    page = ex.render_page([a, b])
    assert "| 85.0 ± 7.1% (85.0 ± 7.1%) |" in page and "| 60.0% (60.0%), seed 1 only |" in page


def test_seed_option_names_the_result_file_and_reaches_the_training(ex, tmp_path, monkeypatch):
    assert ex.default_json("train-default", 0) == "docs/img/encoding_mnist1d.json"
    assert ex.default_json("train-default", 1) == "docs/img/encoding_mnist1d_seed1.json"
    assert ex.default_json("comparison", 2) == "docs/img/encoding_mnist1d_comparison_seed2.json"
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="seed"):
            ex.default_json("comparison", bad)

    # main passes --seed to the experiment and keeps the saved seeds of the same run on the page (no training: a stand-in experiment)
    seen = {}

    def fake_experiment(data, *args, settings=None, done=None, network="train-default", **kwargs):
        seen.update(settings=settings, network=network)
        return _result_set(ex, network, settings["seed"], {("none", "bptt"): (0.80, 0.81)})

    monkeypatch.setattr(ex, "run_experiment", fake_experiment)
    monkeypatch.setattr(ex, "load_dataset", lambda *a, **k: None)
    saved = {0: (0.70, 0.71), 1: (0.75, 0.76)}
    for seed, acc in saved.items():
        (tmp_path / f"s{seed}.json").write_text(json.dumps(_result_set(ex, "train-default", seed, {("none", "bptt"): acc})))
    (tmp_path / "other.json").write_text(json.dumps(_result_set(ex, "train-default", 3, {("none", "bptt"): (0.1, 0.1)}, epochs=2)))
    doc = tmp_path / "p.md"
    ex.main(["--seed", "2", "--json", str(tmp_path / "s2.json"), "--doc", str(doc),
             "--with-json", str(tmp_path / "s0.json"), str(tmp_path / "s1.json"), str(tmp_path / "other.json")])
    assert seen == {"settings": {"seed": 2}, "network": "train-default"}
    assert json.loads((tmp_path / "s2.json").read_text())["settings"]["seed"] == 2
    text = doc.read_text()
    assert "| 75.0 ± 5.0% (76.0 ± 5.0%) |" in text  # seeds 0, 1, 2: 70, 75, 80%; the 2-epoch run is left off
    assert "(3 seeds: 0, 1, 2;" in text and "10.0%" not in text
