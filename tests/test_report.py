"""The main job's quick mode writes a complete report, and the HTML renders in headless Chromium."""

import json
import shutil
import subprocess

import pytest

from neuroplastic.report import write_report

# one pytest-xdist worker for the module: its quick run (the module fixture, ~10 s) is then trained once
pytestmark = pytest.mark.xdist_group("report")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """`neuroplastic run --quick`, the command `make demo` runs, in its small form."""
    from neuroplastic.cli import main

    root = tmp_path_factory.mktemp("study")
    assert main(["run", "--quick", "--rules", "bptt", "eprop-symmetric", "ostl", "--out", str(root), "--name", "q"]) == 0
    return root / "q"


def test_quick_run_writes_report(quick_run):
    results = json.loads((quick_run / "results.json").read_text())
    assert set(results["rules"]) == {"bptt", "eprop-symmetric", "ostl"}
    md = (quick_run / "report.md").read_text()
    assert "| bptt |" in md and "| eprop-symmetric |" in md
    # --quick trains on a subset: every row and a note say which
    assert md.count("| 768 examples (a subset), 2 epochs |") == 3 and "first 768 training examples" in md
    assert "cosine, hidden blocks" in md and "| 1.000 |" in md.split("| bptt |")[1].split("\n")[0]
    # NeuroBench metrics per rule, from analysis.neurobench on 256 test examples
    assert "## Efficiency" in md and "effective ACs / sample" in md
    for rule, r in results["rules"].items():
        eff = r["efficiency"]
        assert eff["samples"] == 256 and eff["synops_per_sample"] == eff["effective_acs"] + eff["effective_macs"] > 0
        assert f"{eff['synops_per_sample']:,.0f}" in md.split(f"| {rule} |")[1].split("\n")[0]
    assert (quick_run / "raster.png").exists() and (quick_run / "accuracy_curves.png").exists()
    # every image the page references exists
    page = (quick_run / "report.html").read_text()
    assert "<h2>Efficiency</h2>" in page
    import re

    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (quick_run / src).is_file(), src
    # alignment: bptt against itself is exact
    rows = [json.loads(l) for l in (quick_run / "alignment" / "alignment.jsonl").read_text().splitlines()]
    assert all(r["cosine"] == 1.0 for r in rows if r["rule"] == "bptt")


def test_report_rerenders_from_the_folder(quick_run):
    (quick_run / "report.md").unlink()
    md, html = write_report(quick_run)
    assert md.exists() and html.exists()
    with pytest.raises(ValueError, match="run_dir: .* has no results.json"):
        write_report(quick_run / "rules")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_renders_in_headless_chromium(quick_run, tmp_path):
    exe = _chromium()
    if exe is None:
        pytest.skip("Chromium is not installed (Debian package `chromium`); .ci/run installs it")
    # a probe page records whether every image decoded (naturalWidth > 0)
    probe = quick_run / "probe.html"
    page = (quick_run / "report.html").read_text()
    script = (
        "<script>window.addEventListener('load', () => {"
        "const imgs=[...document.images]; const bad=imgs.filter(i=>!(i.complete && i.naturalWidth>0)).map(i=>i.src);"
        "document.title = 'IMAGES:' + imgs.length + ':BAD:' + bad.length;});</script>"
    )
    probe.write_text(page.replace("</body>", script + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files"]
    dom = subprocess.run([exe, *flags, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    import re

    m = re.search(r"<title>IMAGES:(\d+):BAD:(\d+)</title>", dom.stdout)
    assert m, dom.stderr[-2000:]
    n_images, n_bad = int(m.group(1)), int(m.group(2))
    assert n_images >= 2 and n_bad == 0
    shot = quick_run / "report_screenshot.png"
    subprocess.run([exe, *flags, "--window-size=1200,2400", f"--screenshot={shot}", (quick_run / "report.html").as_uri()],
                   capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
    print(f"screenshot saved to {shot}")


def test_hidden_block_cosine_leaves_out_the_readout(tmp_path):
    """The table's 'cosine, hidden blocks' averages every block but the readout (whose exact gradient makes the
    all-parameter cosine of every rule sit near 1)."""
    from neuroplastic.report import hidden_cosines

    rows = []
    for step in (0, 2):
        for layer, c in (("layers.0.w", 0.2), ("layers.0.w_rec", 0.4), ("layers.1.w", 1.0), ("all", 0.99)):
            rows.append({"step": step, "rule": "eprop-random", "kind": "gradient", "layer": layer, "cosine": c})
            rows.append({"step": step, "rule": "eprop-random", "kind": "update", "layer": layer, "cosine": -1.0})
    (tmp_path / "alignment").mkdir()
    (tmp_path / "alignment" / "alignment.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert hidden_cosines(tmp_path) == {"eprop-random": pytest.approx(0.3)}
    assert hidden_cosines(tmp_path / "nothing") == {}
