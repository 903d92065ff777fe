"""Every plot function writes a non-blank PNG; bad arguments raise ValueErrors naming them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from neuroplastic.analysis import plots as P  # noqa: E402
from neuroplastic.analysis.landscape import plot_landscape  # noqa: E402


def assert_png(path) -> None:
    """A PNG exists, is non-empty and has visible structure (not a blank canvas)."""
    import matplotlib.image as mpimg

    assert path.exists() and path.stat().st_size > 1000
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(str(path))[..., :3]
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert float(img.std()) > 0.05  # mostly-white canvas with drawn content
    assert float(np.mean(img < 0.5)) > 0.002  # some dark pixels (text, lines)


RNG = np.random.default_rng(0)


def test_learning_curves_and_raster(tmp_path):
    hist = [{"epoch": e, "train_loss": 1 / (e + 1), "test_loss": 1.2 / (e + 1), "train_acc": 0.5 + 0.1 * e, "test_acc": 0.45 + 0.1 * e} for e in range(4)]
    assert_png(P.plot_learning_curves(hist, tmp_path / "lc.png"))
    z = (RNG.random((50, 20)) < 0.1).astype(float)
    assert_png(P.plot_raster([z, z[:, :5]], tmp_path / "raster.png", ["hidden", "out"]))


def test_membrane_traces(tmp_path):
    T, n = 60, 8
    v = np.cumsum(RNG.normal(0, 0.1, (T, n)), axis=0)
    z = (v > 0.5).astype(float)
    assert_png(P.plot_membrane_traces(v, tmp_path / "v.png", neurons=3, threshold=0.5, spikes=z, dt=1.0))
    out = P.plot_membrane_traces({"v": v, "a": np.abs(v)}, tmp_path / "sub" / "va.png", neurons=[0, 7], threshold={"v": 0.5}, dt=0.5)
    assert out == tmp_path / "sub" / "va.png"
    assert_png(out)


def test_membrane_traces_errors(tmp_path):
    v = np.zeros((10, 4))
    with pytest.raises(ValueError, match="states"):
        P.plot_membrane_traces(np.zeros((10, 2, 4)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="neurons"):
        P.plot_membrane_traces(v, tmp_path / "x.png", neurons=[4])
    with pytest.raises(ValueError, match="spikes"):
        P.plot_membrane_traces(v, tmp_path / "x.png", spikes=np.zeros((10, 3)))
    with pytest.raises(ValueError, match="states"):
        P.plot_membrane_traces({"v": v, "a": np.zeros((9, 4))}, tmp_path / "x.png")


def test_rate_histograms(tmp_path):
    z1 = (RNG.random((100, 4, 30)) < 0.05).astype(float)
    z2 = (RNG.random((100, 4, 10)) < 0.2).astype(float)
    assert_png(P.plot_rate_histograms([z1, z2], 1.0, tmp_path / "r.png", names=["hidden", "output"]))
    assert_png(P.plot_rate_histograms({"only": z1[:, 0]}, 2.0, tmp_path / "r2.png"))
    # 0.05 spikes per 1 ms step = 50 Hz; per 2 ms step = 25 Hz
    np.testing.assert_allclose(P.firing_rates_hz(np.full((10, 3), 0.05), 1.0), 50.0)
    np.testing.assert_allclose(P.firing_rates_hz(np.full((10, 2, 3), 0.05), 2.0), 25.0)
    with pytest.raises(ValueError, match="dt"):
        P.plot_rate_histograms([z1], 0.0, tmp_path / "x.png")
    with pytest.raises(ValueError, match="names"):
        P.plot_rate_histograms([z1], 1.0, tmp_path / "x.png", names=["a", "b"])


def _records():
    out = []
    for step in range(0, 20, 2):
        for rule, q in (("eprop", 0.8), ("dfa", 0.3)):
            for layer in ("layers.0.w", "layers.1.w", "all"):
                out.append({"step": step, "epoch": 0, "rule": rule, "kind": "gradient", "layer": layer,
                            "cosine": q + 0.01 * step, "rel_deviation": 1 - q, "sign_agreement": 0.5 + q / 2,
                            "bias": -0.1 * q, "norm_ratio": q})
    return out


def test_alignment_curves(tmp_path):
    recs = _records()
    assert_png(P.plot_alignment_curves(recs, tmp_path / "a.png", reference="BPTT"))
    assert_png(P.plot_alignment_curves(recs, tmp_path / "b.png", metrics=("cosine",), layers=["all"]))
    mixed = recs + [dict(r, kind="update") for r in recs]
    with pytest.raises(ValueError, match="kind"):
        P.plot_alignment_curves(mixed, tmp_path / "x.png")
    assert_png(P.plot_alignment_curves(mixed, tmp_path / "c.png", kind="update", metrics=("bias",), layers=["all", "layers.1.w"]))
    with pytest.raises(ValueError, match="metrics"):
        P.plot_alignment_curves(recs, tmp_path / "x.png", metrics=("nope",))
    with pytest.raises(ValueError, match="layers"):
        P.plot_alignment_curves(recs, tmp_path / "x.png", layers=["layers.9.w"])
    with pytest.raises(ValueError, match="records"):
        P.plot_alignment_curves([], tmp_path / "x.png")


def test_deviation_violins(tmp_path):
    samples = {
        ("eprop", "layers.0.w"): RNG.normal(0, 0.3, 500),
        ("dfa", "layers.0.w"): RNG.normal(0.2, 1.0, 500),
        ("eprop", "layers.1.w"): RNG.normal(0, 0.1, 200),
        ("dfa", "layers.1.w"): np.full(5, 0.4),  # constant: drawn as a bar, not a violin
        ("eprop", "all"): np.array([np.nan, 1.0, 2.0]),
    }
    assert_png(P.plot_deviation_violins(samples, tmp_path / "v.png", step=10, reference="BPTT"))
    with pytest.raises(ValueError, match="samples"):
        P.plot_deviation_violins({}, tmp_path / "x.png", 0)
    with pytest.raises(ValueError, match="samples"):
        P.plot_deviation_violins({"eprop": np.zeros(3)}, tmp_path / "x.png", 0)


def test_uncertainty_boxplot(tmp_path):
    assert_png(P.plot_uncertainty_boxplot(RNG.gamma(1.0, 0.2, 300), RNG.gamma(3.0, 0.2, 40), tmp_path / "u.png",
                                          p_value=1.2e-5, test="Mann-Whitney U"))
    assert_png(P.plot_uncertainty_boxplot(RNG.random(50), [], tmp_path / "u2.png", label="posterior std of the winning logit"))
    with pytest.raises(ValueError, match="both are empty"):
        P.plot_uncertainty_boxplot([], [], tmp_path / "x.png")
    with pytest.raises(ValueError, match="p_value"):
        P.plot_uncertainty_boxplot([0.1], [0.2], tmp_path / "x.png", p_value=2.0)
    with pytest.raises(ValueError, match="wrong_values"):
        P.plot_uncertainty_boxplot([0.1], [np.nan], tmp_path / "x.png")


def test_landscape_plot(tmp_path):
    a, b = np.linspace(-1, 1, 11), np.linspace(-2, 2, 9)
    Z = 0.1 + a[:, None] ** 2 + 0.5 * b[None, :] ** 2
    traj = {"bptt": np.stack([np.linspace(-0.9, 0, 6), np.linspace(1.5, 0, 6)], 1), "eprop": np.array([[0.5, -1.0], [0.1, -0.2]])}
    assert_png(plot_landscape(a, b, Z, traj, tmp_path / "l.png", title="Quadratic", explained_variance=[0.7, 0.2]))
    assert_png(plot_landscape(a, b, Z - 0.5, None, tmp_path / "l2.png"))  # negative values: linear levels
    with pytest.raises(ValueError, match="losses"):
        plot_landscape(a, b, Z.T, None, tmp_path / "x.png")
    with pytest.raises(ValueError, match="trajectories"):
        plot_landscape(a, b, Z, {"x": np.zeros(3)}, tmp_path / "x.png")


def test_one_colour_per_rule_in_every_plot(tmp_path, monkeypatch):
    """A rule has the same colour in the alignment curves, the deviation violins, the landscape and the accuracy
    curves, whichever other rules a figure shows (the reference is absent from the alignment plots)."""
    from matplotlib.colors import to_hex

    drawn: dict[str, dict] = {}
    original = P._save

    def spy(fig, path):
        seen = {}
        for ax in fig.axes:
            for line in ax.get_lines():
                if not line.get_label().startswith("_"):
                    seen.setdefault(line.get_label(), set()).add(to_hex(line.get_color()))
            for coll in ax.collections:
                gid = coll.get_gid() or ""
                if gid.startswith("rule:"):
                    seen.setdefault(gid[5:], set()).add(to_hex(coll.get_facecolor()[0]))
        drawn[Path(path).stem] = seen
        return original(fig, path)

    monkeypatch.setattr(P, "_save", spy)
    recs = [dict(r, rule=name) for name in ("eprop-random", "dfa") for r in _records() if r["rule"] == _records()[0]["rule"]]
    P.plot_alignment_curves(recs, tmp_path / "align.png")
    P.plot_deviation_violins({(r, "all"): RNG.normal(0, 1, 50) for r in ("eprop-random", "dfa")}, tmp_path / "viol.png", step=2)
    a, b = np.linspace(-1, 1, 5), np.linspace(-1, 1, 5)
    traj = {name: np.array([[0.1 * i, 0.0], [0.0, 0.1 * i]]) for i, name in enumerate(("bptt", "dfa", "eprop-random"))}
    plot_landscape(a, b, a[:, None] ** 2 + b[None, :] ** 2 + 0.1, traj, tmp_path / "land.png")
    hist = [{"epoch": 1, "test_acc": 0.2}, {"epoch": 2, "test_acc": 0.4}]
    P.plot_accuracy_curves({"dfa": [hist], "bptt": [hist, hist], "eprop-random": [hist]}, tmp_path / "acc.png")
    for plot in ("align", "viol", "land", "acc"):
        for rule in ("dfa", "eprop-random"):
            assert drawn[plot][rule] == {P.rule_color(rule)}, (plot, rule, drawn[plot])
    assert drawn["land"]["bptt"] == drawn["acc"]["bptt"] == {P.rule_color("bptt")}
    # the main job's six rules get six different colours; any label gets one, always the same
    six = ["bptt", "eprop-symmetric", "eprop-random", "eprop-adaptive", "ostl", "dfa"]
    assert len({P.rule_color(r) for r in six}) == 6
    assert P.rule_color("tbptt-10") == P.rule_color("tbptt-10") in P.RULE_PALETTE
    with pytest.raises(TypeError, match="label"):
        P.rule_color(3)


def test_epoch_axes_have_whole_number_ticks(tmp_path, monkeypatch):
    ticks = {}
    original = P._save

    def spy(fig, path):
        ticks[Path(path).stem] = [t for ax in fig.axes for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        return original(fig, path)

    monkeypatch.setattr(P, "_save", spy)
    hist = [{"epoch": e, "train_loss": 1.0 / e, "test_loss": 1.1 / e, "train_acc": 0.1 * e, "test_acc": 0.1 * e} for e in (1, 2, 3)]
    P.plot_learning_curves(hist, tmp_path / "lc.png")
    P.plot_accuracy_curves({"bptt": [hist]}, tmp_path / "acc.png")
    for name in ("lc", "acc"):
        assert ticks[name] and all(float(t).is_integer() for t in ticks[name]), (name, ticks[name])
