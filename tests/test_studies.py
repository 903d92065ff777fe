"""The study examples run end to end at a tiny size and write their results, figures and pages.

Each runs its ``--tiny`` settings in a temporary folder (results, figures and the doc page
there, never in docs/), then the outputs are read back: the numbers the page reports are
the ones in the results, and what a study guarantees holds (identical rules agree exactly,
the event simulation equals the integer ANN, the finite differences match autodiff).
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, args: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), *args])
    monkeypatch.syspath_prepend(str(EXAMPLES))
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")


def test_surrogate_path_tiny(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    run_example("surrogate_path.py", ["--tiny", "--out", str(tmp_path), "--img", str(tmp_path / "p.png"),
                                      "--doc", str(tmp_path / "p.md")], monkeypatch)
    res = json.loads((tmp_path / "results.json").read_text())
    s = res[0]["summary"]
    assert s["fd_vs_autodiff_rel_err"] < 1e-3  # the smoothed network's finite differences are its gradient
    assert set(s["surrogates"]) == {"fast_sigmoid", "triangle"}
    assert all(-1 <= v["mean_cosine"] <= 1 for v in s["surrogates"].values())
    assert (tmp_path / "p.png").stat().st_size > 1000 and "| triangle |" in (tmp_path / "p.md").read_text()


@pytest.mark.slow  # 13-28 s each; the guarantees it checks have fast unit tests
def test_eprop_alignment_tiny(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    run_example("eprop_alignment.py", ["--tiny", "--seeds", "0", "1", "--out", str(tmp_path), "--img", str(tmp_path / "a.png"),
                                       "--doc", str(tmp_path / "a.md")], monkeypatch)
    res = json.loads((tmp_path / "results.json").read_text())
    assert [r["seed"] for r in res] == [0, 1]
    for r in res:
        out = [x for x in r["records"] if x["layer"] == "layers.1.w" and x["kind"] == "gradient"]
        assert out and all(abs(x["cosine"] - 1) < 1e-5 for x in out)  # every e-prop variant's readout gradient is exact
    doc = (tmp_path / "a.md").read_text()
    assert "eprop-random | recurrent" in doc and "+-" in doc and (tmp_path / "a.png").exists()


@pytest.mark.slow  # 13-28 s each; the guarantees it checks have fast unit tests
def test_locality_randman_tiny(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    run_example("locality_randman.py", ["--tiny", "--out", str(tmp_path), "--img-dir", str(tmp_path), "--doc", str(tmp_path / "l.md")],
                monkeypatch)
    res = json.loads((tmp_path / "results.json").read_text())[0]
    bptt = [x["cosine"] for x in res["records"] if x["rule"] == "bptt" and x["layer"] == "all" and x["kind"] == "gradient"]
    assert bptt and min(bptt) > 0.9999  # BPTT and RTRL are both the exact gradient
    assert set(res["acc"]) == {"rtrl", "bptt", "ottt", "otpe", "ostl", "eprop", "fptt"}
    assert res["memory_bytes"]["rtrl"] > res["memory_bytes"]["ottt"] > 0
    assert (tmp_path / "locality_rate_landscape.png").exists() and "Slax's finding" in (tmp_path / "l.md").read_text()


@pytest.mark.slow  # 13-28 s each; the guarantees it checks have fast unit tests
def test_spikegrad_sweeps_tiny(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    pytest.importorskip("mlxtend")
    run_example("spikegrad_sweeps.py", ["--tiny", "--out", str(tmp_path), "--img", str(tmp_path / "s.png"),
                                        "--doc", str(tmp_path / "s.md")], monkeypatch)
    res = json.loads((tmp_path / "results.json").read_text())
    sg = [r for r in res if r["integer"]]
    assert [r["alpha"] for r in sg] == [1.0, 100.0]
    assert all(r["equivalence"]["mismatched"] == 0 and r["equivalence"]["values_compared"] > 0 for r in sg)
    assert sg[0]["bwd_total"] < sg[1]["bwd_total"]  # a larger error scale sends more error spikes
    assert "| 100 |" in (tmp_path / "s.md").read_text()


@pytest.mark.slow  # 13-28 s each; the guarantees it checks have fast unit tests
def test_hmc_uncertainty_tiny(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    pytest.importorskip("scipy")
    doc = tmp_path / "sampling.md"
    doc.write_text("# page\n")
    run_example("hmc_uncertainty_mnist1d.py", ["--tiny", "--doc", str(doc), "--plot", str(tmp_path / "u.png"),
                                               "--trace-plot", str(tmp_path / "t.png"), "--json", str(tmp_path / "r.json")],
                monkeypatch)
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["precondition"] and 0.0 <= out["accept_rate"] <= 1.0
    assert out["mixing"]["weights"]["n"] == out["samples"] and out["mixing"]["weights"]["ess_geyer"]["min"] >= 1.0
    text = doc.read_text()
    assert "effective sample size" in text and "results:end" in text and (tmp_path / "t.png").exists()
