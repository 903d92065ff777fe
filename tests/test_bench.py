"""Smoke tests of the benchmark harness in bench/ (tiny sizes; no timing assertions)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import common, ffwd  # noqa: E402
from bench import memory as bench_memory  # noqa: E402
from bench import run as bench_run  # noqa: E402


def test_run_py_end_to_end(tmp_path):
    """The one command at tiny sizes: JSON results, and the docs table between its markers."""
    docs = tmp_path / "benchmarks.md"
    start, end = common.markers("ffwd")
    docs.write_text(f"# Benchmarks\n\nintro stays\n\n{start}\nold table\n{end}\n\n<!-- bench:other:start -->\nkeep\n<!-- bench:other:end -->\n")
    out = tmp_path / "ffwd.json"
    cmd = [sys.executable, str(REPO / "bench" / "run.py"), "--hidden", "8",
           "--T", "10", "--batch", "4", "--repeats", "1", "--warmup", "0", "--min-time", "0", "--json", str(out), "--docs", str(docs)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    report = json.loads(out.read_text())
    assert report["benchmark"] == "ffwd"
    assert report["config"]["T"] == 10 and report["config"]["hidden"] == [8]
    assert {"cpu", "cores", "versions"} <= set(report["machine"])
    by_backend = {r["backend"]: r for r in report["results"]}
    assert set(by_backend) == {"torch", "jax"}
    for r in by_backend.values():
        assert "error" not in r
        assert r["hidden"] == 8 and r["T"] == 10 and r["batch"] == 4
        assert r["n_params"] == 100 * 8 + 8 * 8 + 8 * 10
        assert len(r["times_s"]) == 1 and r["time"]["n"] == 1 and r["time"]["median"] > 0
        assert r["rss_increase_mib"] >= 0 and r["first_rss_increase_mib"] >= 0
        assert r["gpu_increase_mib"] is None  # CPU run
        assert r["grad_finite"] and np.isfinite(r["loss"])
        assert len(r["spike_rates"]) == 3
    assert by_backend["torch"]["compile_s"] is None and by_backend["torch"]["threads"] >= 1
    assert by_backend["jax"]["compile_s"] > 0 and by_backend["jax"]["xla_memory"] is not None
    # same data and parameters on both frameworks: same loss
    assert by_backend["torch"]["loss"] == pytest.approx(by_backend["jax"]["loss"], rel=1e-5)

    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nintro stays") and "old table" not in text
    assert "<!-- bench:other:start -->\nkeep\n<!-- bench:other:end -->" in text
    body = text[text.index(start):text.index(end)]
    assert "| backend | H | params | median (s)" in body
    assert "| torch | 8 |" in body and "| jax | 8 |" in body
    assert "torch / jax" in body
    assert "| torch | 8 |" in proc.stdout  # the table is printed too


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--hidden", "0"], "--hidden must be positive integers"),
        (["--hidden", "a,b"], "--hidden must be positive integers"),
        (["--backends", "tensorflow"], "--backends must be a list of"),
        (["--T", "0"], "--T must be an integer >= 1"),
        (["--repeats", "-2"], "--repeats must be an integer >= 1"),
        (["--device", "tpu"], "--device must be 'cpu', 'cuda' or 'cuda:N'"),
        (["--budget", "0"], "--budget must be positive"),
    ],
)
def test_cli_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        bench_run.main(argv)
    assert err.value.code == 2
    assert message in capsys.readouterr().err


def test_check_config_names_the_argument():
    with pytest.raises(ValueError, match="--hidden must be positive integers"):
        ffwd.check_config(["torch"], [8, -1], 10, 4, 1, 0, "cpu")
    with pytest.raises(ValueError, match="--batch"):
        ffwd.check_config(["torch"], [8], 10, 0, 1, 0, "cpu")


def test_replace_section_keeps_other_text():
    text = "# Title\n\nprose\n"
    once = common.replace_section(text, "ffwd", "table 1", heading="## Section")
    assert once.startswith("# Title\n\nprose\n\n## Section\n\n<!-- bench:ffwd:start -->\ntable 1\n<!-- bench:ffwd:end -->")
    twice = common.replace_section(once + "\nafter\n", "ffwd", "table 2", heading="## Section")
    assert "table 1" not in twice and "table 2" in twice and twice.count("## Section") == 1 and twice.endswith("after\n")
    with pytest.raises(ValueError, match="section 'ffwd'"):
        common.replace_section("<!-- bench:ffwd:start -->\nno end\n", "ffwd", "x")
    with pytest.raises(ValueError, match="section"):
        common.replace_section("", "bad name", "x")


def test_markdown_table_and_summary():
    table = common.markdown_table(["a", "b"], [[1, 2.5]], align="lr")
    assert table.splitlines() == ["| a | b |", "| :--- | ---: |", "| 1 | 2.5 |"]
    with pytest.raises(ValueError, match="rows"):
        common.markdown_table(["a", "b"], [[1]])
    s = common.summarize([3.0, 1.0, 2.0, 4.0, 5.0])
    assert s["median"] == 3.0 and s["q1"] == 2.0 and s["q3"] == 4.0 and s["iqr"] == 2.0 and s["n"] == 5
    assert common.summarize([0.5])["iqr"] == 0.0
    with pytest.raises(ValueError, match="times"):
        common.summarize([])


def test_time_calls_counts_and_validates():
    calls = []
    times = common.time_calls(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(times) == 3 and len(calls) == 5 and all(t >= 0 for t in times)
    with pytest.raises(ValueError, match="repeats"):
        common.time_calls(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="min_seconds"):
        common.time_calls(lambda: None, repeats=1, min_seconds=-1.0)
    with pytest.raises(ValueError, match="max_repeats"):
        common.time_calls(lambda: None, repeats=1, max_repeats=0)


def test_time_calls_times_fast_steps_for_min_seconds_up_to_max_repeats(monkeypatch):
    clock = iter(range(1000))  # each timed call reads the clock twice: one "second" a call
    monkeypatch.setattr(common.time, "perf_counter", lambda: float(next(clock)))
    assert len(common.time_calls(lambda: None, repeats=3, min_seconds=7.5, max_repeats=20)) == 8
    assert len(common.time_calls(lambda: None, repeats=3, min_seconds=100.0, max_repeats=10)) == 10  # capped
    assert len(common.time_calls(lambda: None, repeats=5, min_seconds=2.0, max_repeats=10)) == 5  # enough already
    assert len(common.time_calls(lambda: None, repeats=4, min_seconds=100.0, max_repeats=2)) == 4  # never fewer
    assert len(common.time_calls(lambda: None, repeats=3, min_seconds=100.0)) == 3  # no cap given: as asked


def test_plan_calls_respects_budget():
    assert ffwd.plan_calls(1.0, 2, 5, 3, 100.0) == (2, 5)  # fits: unchanged
    assert ffwd.plan_calls(100.0, 2, 5, 3, 500.0) == (0, 5)  # warm-ups go first
    assert ffwd.plan_calls(300.0, 2, 5, 3, 900.0) == (0, 3)  # then repeats, down to the floor
    assert ffwd.plan_calls(1000.0, 2, 2, 3, 10.0) == (0, 2)  # never below what was asked if that is < floor


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM / clear_refs are Linux-only")
def test_rss_phase_sees_a_transient_allocation():
    with common.RssPhase() as ph:
        a = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched
        del a
    assert ph.resettable
    assert ph.increase_bytes >= 48 * common.MiB


@pytest.mark.slow  # a whole suite at tiny sizes (9-18 s); its parts have fast tests
def test_memory_suite_end_to_end(tmp_path):
    """``python -m bench.memory`` at tiny sizes, with OTTT online: JSON, its docs section,
    the log-log PNG, and XLA's buffers growing with T for BPTT only."""
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nintro stays\n")
    out = tmp_path / "memory.json"
    assert bench_memory.main(["--rules", "bptt,ottt", "--T", "10,100", "--hidden", "8", "--batch", "2", "--json", str(out), "--docs", str(docs)]) == 0
    report = json.loads(out.read_text())
    assert report["skipped"] == []
    cell = {(r["rule"], r["T"]): r for r in report["results"]}
    assert set(cell) == {("bptt", 10), ("bptt", 100), ("ottt", 10), ("ottt", 100)}
    assert all("error" not in r and np.isfinite(r["loss"]) and r["xla_temp_mib"] is not None for r in cell.values())
    growth = bench_memory.growth(report, "xla_temp_mib")  # bytes per extra step
    assert growth["bptt"] > 4 * bench_memory.FLAT_BYTES_PER_STEP and 0 <= growth["ottt"] <= bench_memory.FLAT_BYTES_PER_STEP
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nintro stays") and "## Memory against sequence length" in text
    assert "| ottt |" in text and "bytes per extra step" in text and "Flat in T" in text and "Not flat" not in text
    if importlib.util.find_spec("matplotlib") is not None:  # the plot is optional (the `plot` extra)
        assert "![peak memory against T, log-log](img/memory_vs_T.png)" in text
        assert (tmp_path / "img" / "memory_vs_T.png").stat().st_size > 0


# ---------------------------------------------------------------------------- peers suite (issue 12)

from bench import peers as bench_peers  # noqa: E402
from bench import rules as bench_rules  # noqa: E402


@pytest.mark.slow  # a whole suite at tiny sizes (9-18 s); its parts have fast tests
def test_peers_suite_end_to_end(tmp_path):
    """``bench/run.py --suite peers`` at a tiny size with the main-environment implementations:
    every loss and gradient agrees with neuroplastic's, a peer without its environment is
    reported unavailable (the suite still succeeds), and the docs table is written."""
    docs = tmp_path / "benchmarks.md"
    start, end = common.markers("peers")
    docs.write_text(f"# Benchmarks\n\nintro stays\n\n{start}\nold table\n{end}\n")
    out = tmp_path / "peers.json"
    impls = list(bench_peers.MAIN_VENV) + ["snntorch"]
    cmd = [sys.executable, str(REPO / "bench" / "run.py"), "--suite", "peers", "--peers", ",".join(impls), "--hidden", "8",
           "--T", "20", "--batch", "4", "--repeats", "1", "--warmup", "0", "--min-time", "0", "--env-root", str(tmp_path / "no-envs"), "--no-setup",
           "--json", str(out), "--docs", str(docs)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    report = json.loads(out.read_text())
    assert report["benchmark"] == "peers" and report["config"]["T"] == 20 and report["config"]["hidden"] == [8]
    by = {r["implementation"]: r for r in report["results"]}
    assert set(by) == set(impls)
    assert "no virtual environment" in by["snntorch"]["unavailable"] and "time" not in by["snntorch"]
    assert report["unavailable"] == {"snntorch": by["snntorch"]["unavailable"]}
    ours = by["neuroplastic-jax"]
    assert np.isfinite(ours["loss"]) and len(ours["grad_norms"]) == 6 and all(g > 0 for g in ours["grad_norms"])
    for name in bench_peers.MAIN_VENV:
        r = by[name]
        assert "error" not in r, r.get("error")
        assert r["time"]["n"] == 1 and r["time"]["median"] > 0
        assert r["loss"] == pytest.approx(ours["loss"], rel=1e-5)
        np.testing.assert_allclose(r["grad_norms"], ours["grad_norms"], rtol=1e-3)
        assert r["agreement"]["ok"] is True, r["agreement"]
    assert by["neuroplastic-jax"]["agreement"]["against"] == "neuroplastic-torch"
    assert by["jax-scan"]["agreement"]["against"] == "neuroplastic-jax"
    assert by["neuroplastic-jax"]["compile_s"] > 0 and by["neuroplastic-torch"]["compile_s"] is None

    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nintro stays") and "old table" not in text
    body = text[text.index(start):text.index(end)]
    assert "| **neuroplastic, JAX** | ours |" in body and "| plain JAX, scan over time, all layers in the body | reference |" in body
    assert "| snnTorch 1.0 `Leaky` | peer | unavailable |" in body and "unavailable: no virtual environment" in body
    assert "neuroplastic torch / JAX" in body and "Load average" in body


def test_peer_env_status_names_the_reason(tmp_path):
    assert "no virtual environment" in bench_peers.env_status("spyx", tmp_path)
    env = tmp_path / "spyx"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("")
    assert "is not set up" in bench_peers.env_status("spyx", tmp_path)
    stamp = env / bench_peers.STAMP
    stamp.write_text(json.dumps({"digest": bench_peers.PEER_ENVS["spyx"].digest(), "error": "No matching distribution found for spyx"}))
    assert bench_peers.env_status("spyx", tmp_path) == "install failed: No matching distribution found for spyx"
    # a failed install is not retried unless asked (the suite reports it and goes on)
    assert bench_peers.ensure_env("spyx", tmp_path).startswith("install failed")
    stamp.write_text(json.dumps({"digest": "something else", "error": None}))
    assert "another package list" in bench_peers.env_status("spyx", tmp_path)
    stamp.write_text(json.dumps({"digest": bench_peers.PEER_ENVS["spyx"].digest(), "error": None}))
    assert bench_peers.env_status("spyx", tmp_path) is None
    with pytest.raises(ValueError, match="env: unknown peer environment"):
        bench_peers.env_status("tensorflow", tmp_path)


def _fake(name, H, loss, norms, median=1.0):
    return {"implementation": name, "hidden": H, "loss": loss, "grad_norms": norms, "time": common.summarize([median])}


def test_check_agreement_flags_a_disagreeing_peer():
    cfg = bench_peers.DEFAULTS
    norms = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    results = [
        _fake("neuroplastic-jax", 8, 2.0, norms, 1.0),
        _fake("neuroplastic-torch", 8, 2.0 * (1 + 1e-7), norms, 3.0),
        _fake("spikingjelly", 8, 2.1, norms, 0.5),  # same semantics as ours, other loss: flagged
        _fake("slax", 8, 2.5, [n * 2 for n in norms], 0.4),  # other semantics: checked against its reference
        {"implementation": "norse", "hidden": 8, "unavailable": "install failed: no wheel"},
    ]
    refs = {bench_peers.BY_NAME["slax"].semantics.key(): {"loss": 2.5, "grad_norms": [n * 2 for n in norms]}}
    bench_peers.check_agreement(results, refs, cfg)
    by = {r["implementation"]: r for r in results}
    assert by["neuroplastic-jax"]["agreement"]["ok"] and by["neuroplastic-torch"]["agreement"]["against"] == "neuroplastic-jax"
    assert by["spikingjelly"]["agreement"]["ok"] is False and by["spikingjelly"]["agreement"]["loss_rel"] == pytest.approx(0.05)
    assert by["slax"]["agreement"]["ok"] and by["slax"]["agreement"]["against"].startswith("reference neuroplastic/attached-reset")
    assert "agreement" not in by["norse"]
    report = {"config": {**cfg, "hidden": [8]}, "machine": common.machine_info(), "started": "now", "wall_s": 1.0,
              "results": results, "references": {"8": refs}}
    text = bench_peers.render_markdown(report)
    assert "**differs** (loss 5.0e-02" in text
    assert "| Norse 1.1 `LIFBoxCell` | peer | unavailable |" in text and "unavailable: install failed: no wheel" in text
    assert "yes, with the reference of its semantics" in text and "differs: reset not detached" in text
    # ratios: neuroplastic's best (JAX, 1.0 s) over the fastest peer (Slax 0.4 s; SpikingJelly disagrees but is listed)
    row = bench_peers.ratio_rows(report)[0]
    assert row[0] == "8" and row[2].startswith("2.50 (Slax") and row[4] == "3.00" and row[5] == "–"  # no compiled torch


def test_semantics_keys_and_descriptions():
    assert bench_peers.OURS.key() == "neuroplastic" and bench_peers.OURS.describe() == ""
    norse = bench_peers.BY_NAME["norse"].semantics
    assert norse.key() == "neuroplastic/attached-reset/slope=1" and "1/(1+1|x|)^2" in norse.describe()
    assert bench_peers.BY_NAME["spyx"].semantics.key() == "spyx/attached-reset"
    # every peer environment named by an implementation has an install spec with the torch pin where torch is used
    for impl in bench_peers.IMPLEMENTATIONS:
        if impl.env:
            reqs = bench_peers.PEER_ENVS[impl.env].requirements
            assert (impl.framework != "torch") or "torch==2.13.0" in reqs


def test_make_problem_is_fixed_and_shaped(tmp_path):
    a = bench_peers.make_problem(16, {"T": 7, "batch": 3})
    path = bench_peers.write_problem(tmp_path / "p.npz", 16, {"T": 7, "batch": 3})
    b = bench_peers.load_problem(path)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["w1"].shape == (100, 16) and a["w2"].shape == (16, 16) and a["w3"].shape == (16, 10) and a["b3"].shape == (10,)
    assert a["xs"].shape == (7, 3, 100) and a["xs"].dtype == np.float32 and set(np.unique(a["xs"])) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="hidden"):
        bench_peers.make_problem(0)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--suite", "peers", "--peers", "tensorflow"], "--peers must be a list of"),
        (["--suite", "rules", "--rules", "bptt:sometimes"], "mode must be 'offline' or 'online'"),
        (["--suite", "rules", "--rules", "rtrl:online:x"], "hidden must be a positive integer"),
        (["--suite", "rules", "--epochs", "1"], "--epochs must be an integer >= 2"),
        (["--suite", "all", "--json", "x.json"], "--json and --from-json name one suite's results"),
    ],
)
def test_cli_rejects_bad_suite_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        bench_run.main(argv)
    assert err.value.code == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------------- rules suite (issue 12)


@pytest.mark.slow  # a whole suite at tiny sizes (9-18 s); its parts have fast tests
def test_rules_suite_end_to_end(tmp_path):
    """``bench/run.py --suite rules`` on a tiny config: an offline and an online rule on both
    backends, JSON with per-epoch times, and the docs table with the column it filled."""
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n")
    out = tmp_path / "rules-after.json"
    cmd = [sys.executable, str(REPO / "bench" / "run.py"), "--suite", "rules", "--rules", "bptt,ottt:online", "--backends", "torch,jax",
           "--epochs", "2", "--train-examples", "64", "--test-examples", "32", "--column", "after", "--json", str(out), "--docs", str(docs)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["benchmark"] == "rules" and report["column"] == "after"
    cell = {(r["case"], r["backend"]): r for r in report["results"]}
    assert set(cell) == {("bptt", "torch"), ("bptt", "jax"), ("ottt (online)", "torch"), ("ottt (online)", "jax")}
    for r in cell.values():
        assert "error" not in r, r.get("error")
        assert r["epochs"] == 2 and len(r["train_s"]) == 2 and r["train_examples"] == 64 and r["test_examples"] == 32
        assert r["train_s_per_epoch"] == r["train_s"][1] and r["epochs_per_s"] == pytest.approx(1 / r["train_s"][1])
        assert r["hidden"] == 128 and r["T"] == 40 and np.isfinite(r["final_train_loss"])
    assert cell[("ottt (online)", "jax")]["mode"] == "online" and cell[("bptt", "jax")]["mode"] == "offline"
    text = docs.read_text()
    assert "## Rule comparison: seconds per training epoch" in text
    assert "*before*: not measured yet" in text and "*after*: measured" in text
    assert "| bptt | 128 |" in text and "| ottt (online) | 128 |" in text


def test_rules_columns_and_table(tmp_path):
    assert bench_rules.default_column(tmp_path) == "before"
    base = {"config": {"epochs": 3, "train_examples": 512, "test_examples": 256}, "machine": common.machine_info(),
            "started": "then", "wall_s": 60.0}

    def result(case, backend, t):
        return {"case": case, "backend": backend, "hidden": 128, "train_s_per_epoch": t}

    before = {**base, "results": [result("bptt", "torch", 4.0), result("bptt", "jax", 1.0), {"case": "ostl", "backend": "torch", "error": "boom"}]}
    bench_rules.results_path("before", tmp_path).write_text(json.dumps(before))
    assert bench_rules.default_column(tmp_path) == "after"
    after = {**base, "results": [result("bptt", "torch", 1.0),
                                 {**result("bptt", "torch-compiled", 0.25), "first_epoch_train_s": 12.0},
                                 {**result("bptt", "jax", 0.5), "first_epoch_train_s": 3.0}]}
    text = bench_rules.render_markdown({**bench_rules.load_reports(tmp_path), "after": after})
    # before: torch, compiled (not measured), JAX, ratios; after: the same; first epochs; speed-ups
    assert "| bptt | 128 | 4.000 | – | 1.000 | 4.0 | – | 1.000 | 0.250 | 0.500 | 2.0 | 0.5 | 12.0 / 3.0 | 4.00x, 2.00x |" in text
    assert "| ostl | – | failed | – | – | – | – |" in text
    assert bench_rules.parse_case("rtrl:online:16") == bench_rules.RuleCase("rtrl", "online", 16)
    assert bench_rules.parse_case("dfa") == bench_rules.RuleCase("dfa")
    with pytest.raises(ValueError, match="column"):
        bench_rules.results_path("during")


def test_sparsity_bench_forms_agree_with_dense(tmp_path):
    """``bench/sparsity.py`` at a tiny size: every sparse form, the event kernels among them where they
    are built, gives the dense products to float32 round-off."""
    from bench import sparsity
    from neuroplastic.backend import native

    for framework in ("torch", "jax"):
        r = sparsity.measure({"framework": framework, "density": 0.1, "rows": 32, "hidden": 16, "repeats": 1, "seed": 0})
        built = native.event_library() if framework == "torch" else native.event_library_ffi()
        event = {"event"} if built is not None else set()
        assert set(r["cpu_s"]) == ({"dense", "csr", "coo"} if framework == "torch" else {"dense", "bcoo", "segment_sum"}) | event
        assert all(t["forward"] >= 0 and t["weight_grad"] >= 0 for t in r["cpu_s"].values())
        assert max(r["max_abs_diff"].values()) <= 1e-5
    report = {"config": {"rows": 32, "hidden": 16, "repeats": 1}, "date": "d", "machine": "m", "load_before": None,
              "load_after": (1.0, 2.0, 3.0), "results": [r]}
    text = sparsity.render_markdown(report)
    assert "| jax | 0.1 | bcoo |" in text and "unknown / 1.0, 2.0, 3.0" in text
