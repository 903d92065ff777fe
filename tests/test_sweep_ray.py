"""Sweeps on Ray: a local two-node cluster started by the test, and killing the driver mid-sweep.

The cluster is two ``ray start --block`` processes on 127.0.0.1 (a head and one worker node,
1 CPU and 80 MB of object store each, no dashboard), with a token of the test's own
(``RAY_AUTH_TOKEN``), in a temporary folder; it is stopped by terminating those two
processes (Ray then ends every process it started), also when a test fails.  Trials run
in ``neuroplastic sweep`` subprocesses (the drivers), so this process never joins Ray.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
# one pytest-xdist worker runs every Ray test: two local clusters at once would compete for Ray's default ports
pytestmark = pytest.mark.xdist_group("ray")

from neuroplastic.sweep.runner import TRIALS, Manifest  # noqa: E402

from .test_sweep import TINY_BASE, assert_same_trials, metrics_without_times, write_sweep  # noqa: E402

RAY = Path(sys.executable).parent / "ray"
NEUROPLASTIC = [sys.executable, "-m", "neuroplastic.cli"]
NODE_LIMITS = ["--num-cpus=1", "--object-store-memory=80000000", "--memory=2000000000", "--disable-usage-stats"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_started(proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if "block forever" in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.3)
    raise RuntimeError(f"ray start did not come up in {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """End a ``ray start --block`` process: SIGTERM makes it stop every Ray process it started."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ray_cluster():
    """``(address, env)`` of a two-node Ray cluster on 127.0.0.1, stopped at the end of the module."""
    tmp = Path(tempfile.mkdtemp(prefix="npray-"))  # short: Ray's socket paths must stay under 108 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    try:
        for name, args in (("head", ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={tmp}"]),
                           ("worker", [f"--address={address}"])):
            log = tmp / f"{name}.log"
            with open(log, "w") as out:
                procs.append(subprocess.Popen([str(RAY), "start", "--block", "--node-ip-address=127.0.0.1", *args, *NODE_LIMITS],
                                              stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp))
            _wait_started(procs[-1], log)
        yield address, env
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def _sweep_cmd(sweep: Path, out: Path, address: str, *extra: str) -> list[str]:
    return [*NEUROPLASTIC, "sweep", str(sweep), "--out", str(out), "--address", address, *extra]


@pytest.mark.timeout(300)
def test_two_node_cluster_sweep_equals_the_in_process_runner_bit_for_bit(ray_cluster, tmp_path):
    address, env = ray_cluster
    sweep = write_sweep(tmp_path, 'rule = ["bptt", "eprop-symmetric"]\nseed = [0, 1]\n')
    t0 = time.perf_counter()
    # both drivers are fresh `neuroplastic sweep` processes (the in-process one with a trial's thread limits),
    # so nothing this test process has loaded or configured can tell them apart
    drivers = [subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for cmd in (_sweep_cmd(sweep, tmp_path / "ray", address),
                           [*NEUROPLASTIC, "sweep", str(sweep), "--out", str(tmp_path / "local"), "--in-process"])]
    try:
        outputs = [d.communicate(timeout=240)[0] for d in drivers]
    finally:
        for d in drivers:
            if d.poll() is None:
                d.kill()
    assert [d.returncode for d in drivers] == [0, 0], outputs
    assert [t["status"] for t in Manifest.load(tmp_path / "local").trials] == ["finished"] * 4
    assert Manifest.load(tmp_path / "local").data["engine"] == "in-process"
    m = Manifest.load(tmp_path / "ray")
    assert m.data["engine"] == f"ray (cluster {address})"
    assert [t["status"] for t in m.trials] == ["finished"] * 4
    assert len({t["ray_node"] for t in m.trials}) == 2  # both nodes trained (1 CPU each, two trials at once)
    names = assert_same_trials(tmp_path / "ray", tmp_path / "local")
    assert names == ["000_rule=bptt_seed=0", "001_rule=bptt_seed=1", "002_rule=eprop-symmetric_seed=0", "003_rule=eprop-symmetric_seed=1"]
    assert (tmp_path / "ray" / "report.md").is_file() and (tmp_path / "ray" / "report.html").is_file()
    print(f"4-trial sweep on the two-node cluster (with the in-process reference alongside): {time.perf_counter() - t0:.1f} s")


@pytest.mark.timeout(300)
def test_killed_driver_resumes_without_rerunning_finished_trials(ray_cluster, tmp_path):
    """SIGKILL the driver while trial 1 is past its first checkpoint; --resume keeps trial 0 and continues trial 1."""
    address, env = ray_cluster
    base = TINY_BASE.replace("samples_per_class = 24", "samples_per_class = 64")
    sweep = write_sweep(tmp_path, '"trainer.epochs" = [2, 40, 0.5]\n', base=base)
    out = tmp_path / "s"
    first, second = out / TRIALS / "000_epochs=2", out / TRIALS / "001_epochs=40"
    driver = subprocess.Popen(_sweep_cmd(sweep, out, address, "--workers", "1"), env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + 180
        while time.monotonic() < end and driver.poll() is None:
            lines = (second / "metrics.jsonl").read_text().splitlines() if (second / "metrics.jsonl").exists() else []
            if len(lines) >= 3:
                break
            time.sleep(0.05)
        assert driver.poll() is None, driver.communicate()[0]
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert (first / "summary.json").is_file() and not (second / "summary.json").exists()
    done_at = (first / "summary.json").stat().st_mtime_ns
    params_first = (first / "params.safetensors").read_bytes()

    proc = subprocess.run(_sweep_cmd(sweep, out, address, "--workers", "1", "--resume"), env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = {t["name"]: t for t in Manifest.load(out).trials}
    assert m["000_epochs=2"]["status"] == "finished" and m["001_epochs=40"]["status"] == "finished", (m, proc.stdout + proc.stderr)
    assert m["002_epochs=0.5"]["status"] == "failed"
    assert m["002_epochs=0.5"]["message"] == "trainer.epochs: expected a non-negative integer, got 0.5"
    # trial 0 was not run again: same summary file, same parameters, one start in its log
    assert (first / "summary.json").stat().st_mtime_ns == done_at and (first / "params.safetensors").read_bytes() == params_first
    assert (first / "log.txt").read_text().count("trial on") == 1
    # trial 1 continued from its checkpoint, with every epoch recorded once
    summary = json.loads((second / "summary.json").read_text())
    assert summary["resumed_after_epoch"] >= 2
    assert [r["epoch"] for r in metrics_without_times(second)] == list(range(1, 41))
    assert "continuing" in (second / "log.txt").read_text()
    assert not (out / TRIALS / "002_epochs=0.5").exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_search_mode_runs_under_tune_and_asha_stops_trials_early(tmp_path):
    """mode = "search" on the embedded local Ray: every trial ends finished or stopped by ASHA, with its run folder."""
    sweep = write_sweep(tmp_path, '''mode = "search"
samples = 4
"trainer.lr" = {loguniform = [1e-4, 1e-1]}
[sweep.search]
metric = "test_loss"
mode = "min"
grace_period = 1
reduction_factor = 2
''', base=TINY_BASE.replace("epochs = 2", "epochs = 4"))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([*NEUROPLASTIC, "sweep", str(sweep), "--out", str(tmp_path / "s")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = Manifest.load(tmp_path / "s")
    assert m.data["engine"].startswith("ray (local") and m.data["engine"].endswith(", Tune")
    statuses = [t["status"] for t in m.trials]
    assert set(statuses) <= {"finished", "stopped"} and "finished" in statuses
    for t in m.trials:
        epochs = [r["epoch"] for r in metrics_without_times(tmp_path / "s" / TRIALS / t["name"])]
        assert epochs == list(range(1, len(epochs) + 1))
        if t["status"] == "finished":
            assert len(epochs) == 4 and (tmp_path / "s" / TRIALS / t["name"] / "summary.json").is_file()
        else:  # stopped at a rung: ASHA ends the trial's process, which may have trained on a little before it died
            assert t["message"].startswith("stopped by asha after epoch") and len(epochs) >= 1
