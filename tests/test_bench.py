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
           "--T", "10", "--batch", "4", "--repeats", "1", "--warmup", "0", "--json", str(out), "--docs", str(docs)]
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
