"""Matplotlib figures saved as PNG.

* :func:`plot_learning_curves`: loss and accuracy per epoch, train and test;
* :func:`plot_raster`: spike raster, one panel per layer, one example;
* :func:`plot_membrane_traces`: membrane potential (or any state) of a few neurons over time;
* :func:`plot_rate_histograms`: histogram of per-neuron firing rates (Hz), one panel per layer;
* :func:`plot_alignment_curves`: gradient-agreement metrics over training, metric x layer grid;
* :func:`plot_deviation_violins`: element-wise gradient deviations at one step, per layer;
* :func:`plot_uncertainty_boxplot`: an uncertainty measure for correct vs wrong predictions;
* :func:`plot_accuracy_curves`: test accuracy per epoch of several rules, mean and spread over seeds.

Every plot that shows rules draws each in :func:`rule_color` (one mapping for all of them, the
landscape's trajectories included); epoch and step axes have whole-number ticks.

The loss-landscape contour plot is :func:`neuroplastic.analysis.landscape.plot_landscape`.
Every function takes numpy arrays (use ``B.to_numpy``), saves one PNG at ``path``
(creating folders) and returns the path.

matplotlib is an optional extra (``neuroplastic[plot]``); :func:`have_matplotlib` tells
whether it is there.  Figures use the non-interactive Agg backend and are closed after
saving.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(history: Sequence[dict], path: str | Path, title: str = "Learning curves") -> Path:
    """Loss and accuracy per epoch, train and test, in two panels."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax_loss.plot(epochs, [h["test_loss"] for h in history], label="test")
    ax_loss.set_xlabel("epoch")
    integer_ticks(ax_loss)
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("Loss")
    ax_loss.legend()
    if history and history[0].get("test_acc") is not None:
        ax_acc.plot(epochs, [100 * h["train_acc"] for h in history], label="train")
        ax_acc.plot(epochs, [100 * h["test_acc"] for h in history], label="test")
        ax_acc.set_ylabel("accuracy (%)")
        ax_acc.legend()
    ax_acc.set_xlabel("epoch")
    integer_ticks(ax_acc)
    ax_acc.set_title("Accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_raster(spikes: Sequence[np.ndarray], path: str | Path, names: Sequence[str] | None = None, dt: float = 1.0, title: str = "Spike raster") -> Path:
    """One raster panel per layer for one example: ``spikes[l]`` is ``(T, n_l)``."""
    plt = _pyplot()
    n = len(spikes)
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.2 + 1.8 * n), sharex=True, squeeze=False)
    for l, (ax, z) in enumerate(zip(axes[:, 0], spikes)):
        z = np.asarray(z)
        t_idx, n_idx = np.nonzero(z > 0)
        ax.scatter(t_idx * dt, n_idx, s=2, marker="|", color="k")
        neg_t, neg_n = np.nonzero(z < 0)
        if len(neg_t):
            ax.scatter(neg_t * dt, neg_n, s=2, marker="|", color="tab:red")
        ax.set_ylabel("neuron")
        ax.set_ylim(-0.5, z.shape[1] - 0.5)
        rate = float(np.mean(np.abs(z)))
        ax.set_title(f"{names[l] if names else f'layer {l}'}: {z.shape[1]} neurons, {rate:.3f} spikes/step", fontsize=9)
    axes[-1, 0].set_xlabel("time (ms)" if dt != 1.0 else "time step")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _time_label(dt: float) -> str:
    return "time (ms)" if dt != 1.0 else "time step"


def _named_arrays(data: Any, what: str, default_name: str) -> list[tuple[str, np.ndarray]]:
    """``[(name, array)]`` from one array, a sequence of arrays or a ``{name: array}`` dict."""
    if isinstance(data, Mapping):
        items = [(str(k), np.asarray(v)) for k, v in data.items()]
    elif isinstance(data, (list, tuple)):
        items = [(default_name.format(i), np.asarray(v)) for i, v in enumerate(data)]
    else:
        items = [(default_name.format(0) if "{}" in default_name else default_name, np.asarray(data))]
    if not items:
        raise ValueError(f"{what}: nothing to plot")
    return items


def plot_membrane_traces(
    states: np.ndarray | Mapping[str, np.ndarray],
    path: str | Path,
    neurons: int | Sequence[int] = 5,
    threshold: float | Mapping[str, float] | None = None,
    spikes: np.ndarray | None = None,
    dt: float = 1.0,
    title: str = "Membrane potential",
) -> Path:
    """Traces of a few neurons over time, for one example.

    ``states`` is ``(T, n)`` (e.g. ``B.to_numpy(rec["state"][l]["v"])[:, 0]``) or a dict of
    such arrays (e.g. ``{"v": ..., "a": ...}``), one panel per entry.  ``neurons`` is how
    many neurons to draw (the first ones) or their indices.  ``threshold`` draws a dashed
    line in every panel (a number) or in the named panels (a dict).  ``spikes`` ``(T, n)``
    marks the steps where each drawn neuron spiked with a dot on its trace.
    """
    items = _named_arrays(states, "states", "membrane potential v")
    T, n = None, None
    for name, a in items:
        if a.ndim != 2:
            raise ValueError(f"states: {name!r} must be (T, n) for one example, got shape {a.shape}; index the batch axis first")
        if T is not None and a.shape != (T, n):
            raise ValueError(f"states: {name!r} has shape {a.shape}, the first entry has {(T, n)}")
        T, n = a.shape
    if isinstance(neurons, (int, np.integer)):
        if neurons <= 0:
            raise ValueError(f"neurons: expected a positive count or a list of indices, got {neurons!r}")
        idx = list(range(min(int(neurons), n)))
    else:
        idx = [int(i) for i in neurons]
        if not idx or any(not 0 <= i < n for i in idx):
            raise ValueError(f"neurons: expected indices in [0, {n}), got {list(neurons)!r}")
    if spikes is not None:
        spikes = np.asarray(spikes)
        if spikes.shape != (T, n):
            raise ValueError(f"spikes: expected shape {(T, n)} like states, got {spikes.shape}")
    if dt <= 0:
        raise ValueError(f"dt: expected a positive step in ms, got {dt!r}")
    plt = _pyplot()
    fig, axes = plt.subplots(len(items), 1, figsize=(8, 1.0 + 2.2 * len(items)), sharex=True, squeeze=False)
    t = np.arange(T) * dt
    colors = plt.get_cmap("tab10")
    for ax, (name, a) in zip(axes[:, 0], items):
        for c, i in enumerate(idx):
            ax.plot(t, a[:, i], color=colors(c % 10), lw=1.0, label=f"neuron {i}")
            if spikes is not None:
                s = np.nonzero(spikes[:, i] != 0)[0]
                ax.plot(t[s], a[s, i], "o", color=colors(c % 10), ms=3)
        thr = threshold.get(name) if isinstance(threshold, Mapping) else threshold
        if thr is not None:
            ax.axhline(float(thr), color="k", ls="--", lw=0.8, label="threshold")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=min(len(idx) + 1, 6), loc="upper right")
    axes[-1, 0].set_xlabel(_time_label(dt))
    sub = " (dots: spikes)" if spikes is not None else ""
    fig.suptitle(f"{title}{sub}")
    fig.tight_layout()
    return _save(fig, path)


def firing_rates_hz(spikes: np.ndarray, dt: float) -> np.ndarray:
    """Per-neuron rate in Hz of spikes ``(T, n)`` or ``(T, B, n)`` with ``dt`` ms per step."""
    z = np.abs(np.asarray(spikes, dtype=np.float64))
    if z.ndim not in (2, 3):
        raise ValueError(f"spikes: expected (T, n) or (T, batch, n), got shape {z.shape}")
    if not dt > 0:
        raise ValueError(f"dt: expected a positive step in ms, got {dt!r}")
    per_step = z.reshape(z.shape[0], -1, z.shape[-1]).mean(axis=(0, 1))
    return per_step * 1000.0 / dt


def plot_rate_histograms(
    spikes: Sequence[np.ndarray] | Mapping[str, np.ndarray],
    dt: float,
    path: str | Path,
    names: Sequence[str] | None = None,
    bins: int = 20,
    title: str = "Firing rates per layer",
) -> Path:
    """Histogram of per-neuron firing rates (Hz), one panel per layer.

    ``spikes`` lists each layer's spikes ``(T, B, n)`` or ``(T, n)`` (or maps names to
    them); ``dt`` is milliseconds per step.  A neuron's rate is its spike count per step,
    averaged over time and batch, times ``1000 / dt``.
    """
    items = _named_arrays(spikes, "spikes", "layer {}")
    if names is not None:
        if len(names) != len(items):
            raise ValueError(f"names: {len(names)} names for {len(items)} layers")
        items = [(str(nm), a) for nm, (_, a) in zip(names, items)]
    if not (isinstance(bins, (int, np.integer)) and bins > 0):
        raise ValueError(f"bins: expected a positive integer, got {bins!r}")
    rates = [(name, firing_rates_hz(a, dt)) for name, a in items]
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(rates), figsize=(max(6.5, 3.6 * len(rates) + 0.6), 3.4), squeeze=False)
    for ax, (name, r) in zip(axes[0], rates):
        hi = float(r.max()) if r.size and r.max() > 0 else 1.0
        ax.hist(r, bins=bins, range=(0.0, hi), color="tab:blue", edgecolor="k", lw=0.4)
        ax.axvline(float(r.mean()), color="tab:red", ls="--", lw=1.0, label=f"mean {r.mean():.1f} Hz")
        silent = 100.0 * float(np.mean(r == 0)) if r.size else 0.0
        ax.set_title(f"{name}: {r.size} neurons, {silent:.0f}% silent", fontsize=9)
        ax.set_xlabel("firing rate (Hz)")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("number of neurons")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


ALIGNMENT_METRICS = ("cosine", "rel_deviation", "sign_agreement", "bias")

#: metric -> (axis label, value of perfect agreement with the reference)
_METRIC_INFO = {
    "cosine": ("cosine similarity", 1.0),
    "rel_deviation": ("relative deviation\n$\\|g - g_{ref}\\| / \\|g_{ref}\\|$", 0.0),
    "sign_agreement": ("sign agreement\n(fraction of elements)", 1.0),
    "bias": ("bias\n$(g - g_{ref}) \\cdot g_{ref} / \\|g_{ref}\\|^2$", 0.0),
    "norm_ratio": ("norm ratio $\\|g\\| / \\|g_{ref}\\|$", 1.0),
}


def _min_yspan(ax: Any, span: float = 0.02) -> None:
    """Plain tick labels (no ``1e-12+1`` offsets) and a y-range of at least ``span``."""
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    lo, hi = ax.get_ylim()
    if hi - lo < span:
        mid = 0.5 * (lo + hi)
        ax.set_ylim(mid - span / 2, mid + span / 2)


def _ordered_unique(values: Any) -> list:
    return list(dict.fromkeys(values))


#: matplotlib's tab10 then tab20b: 30 distinguishable colours
RULE_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#393b79", "#5254a3", "#6b6ecf", "#9c9ede", "#637939", "#8ca252", "#b5cf6b", "#cedb9c", "#8c6d31", "#bd9e39",
    "#e7ba52", "#e7cb94", "#843c39", "#ad494a", "#d6616b", "#e7969c", "#7b4173", "#a55194", "#ce6dbd", "#de9ed6",
)
#: the order in which rules take the palette's colours: the main job's six first (tab10's first six)
RULE_ORDER = ("bptt", "eprop-symmetric", "eprop-random", "eprop-adaptive", "ostl", "dfa", "tbptt", "ottt", "otpe", "rtrl",
              "fptt", "superspike", "dcll", "fa", "eprop", "trace-feedback", "spike_time", "spikegrad", "manhattan",
              "manhattan-conductance", "mala", "hmc")


def rule_color(label: str) -> str:
    """The colour of rule ``label`` in every plot (alignment, deviations, landscape, accuracy): a fixed function of the
    label alone, so a rule keeps its colour whichever other rules a figure shows.

    Registered rules take the palette in :data:`RULE_ORDER` (then the registry's others); any other
    label (an arm such as ``tbptt-10``) gets a colour from a hash of its name.
    """
    if not isinstance(label, str):
        raise TypeError(f"label: expected a rule name (str), got {type(label).__name__}")
    from ..rules import RULES

    order = list(RULE_ORDER) + sorted(set(RULES) - set(RULE_ORDER))
    if label in order and order.index(label) < len(RULE_PALETTE):
        return RULE_PALETTE[order.index(label)]
    import zlib

    return RULE_PALETTE[zlib.crc32(label.encode()) % len(RULE_PALETTE)]


def rule_colors(labels: Sequence[str]) -> dict:
    """``{label: rule_color(label)}`` for ``labels``."""
    return {r: rule_color(r) for r in labels}


def _rule_colors(plt: Any, rules: Sequence[str]) -> dict:
    return rule_colors(rules)


def integer_ticks(ax: Any) -> None:
    """Only whole numbers on ``ax``'s x axis (epochs, steps)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def plot_alignment_curves(
    records: Sequence[dict],
    path: str | Path,
    metrics: Sequence[str] = ALIGNMENT_METRICS,
    layers: Sequence[str] | None = None,
    kind: str | None = None,
    reference: str = "the reference",
    title: str | None = None,
) -> Path:
    """Gradient-agreement metrics over training: a grid of metric (rows) x layer (columns).

    ``records`` are per-step dicts ``{"step", "rule", "layer", <metric>: float, ...}``, as
    written by :class:`~neuroplastic.train.compare.GradientComparison`; each rule is one
    line (same colour in every panel).  ``layers`` picks and orders the columns (default:
    every layer, ``"all"`` first).  Records carrying a ``"kind"`` (``"gradient"``,
    ``"update"``) are filtered to ``kind``; mixing kinds without choosing one is an error.
    The dotted line marks perfect agreement with ``reference``.
    """
    records = list(records)
    if kind is not None:
        records = [r for r in records if r.get("kind") == kind]
    if not records:
        raise ValueError("records: nothing to plot" + (f" of kind {kind!r}" if kind is not None else ""))
    kinds = _ordered_unique(r["kind"] for r in records if "kind" in r)
    if len(kinds) > 1:
        raise ValueError(f"kind: records mix kinds {kinds}; pass kind= one of them")
    metrics = list(metrics)
    bad = [m for m in metrics if m not in _METRIC_INFO]
    if not metrics or bad:
        raise ValueError(f"metrics: unknown metric(s) {bad}; choose from {list(_METRIC_INFO)}")
    for i, r in enumerate(records):
        missing = [k for k in ("step", "rule", "layer", *metrics) if k not in r]
        if missing:
            raise ValueError(f"records[{i}]: missing key(s) {missing}")
    present = _ordered_unique(r["layer"] for r in records)
    if layers is None:
        layers = (["all"] if "all" in present else []) + [l for l in present if l != "all"]
    else:
        layers = list(layers)
        absent = [l for l in layers if l not in present]
        if not layers or absent:
            raise ValueError(f"layers: {absent or layers} not in the records' layers {present}")
    rules = _ordered_unique(r["rule"] for r in records)
    plt = _pyplot()
    colors = _rule_colors(plt, rules)
    fig, axes = plt.subplots(
        len(metrics), len(layers), figsize=(1.2 + 3.0 * len(layers), 0.8 + 2.2 * len(metrics)),
        sharex=True, squeeze=False,
    )
    for j, layer in enumerate(layers):
        for i, m in enumerate(metrics):
            ax = axes[i, j]
            for rule in rules:
                rows = sorted((r for r in records if r["rule"] == rule and r["layer"] == layer), key=lambda r: r["step"])
                if rows:
                    ax.plot([r["step"] for r in rows], [np.nan if r[m] is None else r[m] for r in rows],
                            "-o", ms=2.5, lw=1.2, color=colors[rule], label=rule)
            ax.axhline(_METRIC_INFO[m][1], color="gray", ls=":", lw=1.0)
            ax.grid(alpha=0.3)
            _min_yspan(ax)
            if i == 0:
                ax.set_title("all parameters" if layer == "all" else f"parameter {layer}", fontsize=9)
            if j == 0:
                ax.set_ylabel(_METRIC_INFO[m][0], fontsize=8)
            if i == len(metrics) - 1:
                ax.set_xlabel("training step")
                integer_ticks(ax)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes.ravel():
        h, l = ax.get_legend_handles_labels()
        for hh, ll in zip(h, l):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    fig.legend(handles, labels, loc="upper right", fontsize=8, title="rule", title_fontsize=8)
    what = f"{kinds[0]}s" if kinds else "gradients"
    fig.suptitle(title or f"Agreement of each rule's {what} with {reference}'s (dotted: perfect agreement)")
    fig.tight_layout(rect=(0, 0, 0.9 if len(layers) > 1 else 0.8, 0.97))
    return _save(fig, path)


def plot_deviation_violins(
    samples: Mapping[tuple[str, str], np.ndarray],
    path: str | Path,
    step: int,
    reference: str = "the reference",
    title: str | None = None,
) -> Path:
    """Distributions of element-wise deviations at one training step: one panel per layer.

    ``samples[(rule, layer)]`` holds deviations ``(g - g_ref) / rms(g_ref)`` of one rule's
    gradient for one parameter (as from ``alignment.deviation_sample``); each panel has
    one violin per rule (as in Neko, Zhao et al. 2021, Fig. 4).  Non-finite values are dropped.
    """
    if not samples:
        raise ValueError("samples: nothing to plot")
    for key in samples:
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ValueError(f"samples: keys must be (rule, layer) pairs, got {key!r}")
    rules = _ordered_unique(k[0] for k in samples)
    layers = _ordered_unique(k[1] for k in samples)
    layers = (["all"] if "all" in layers else []) + [l for l in layers if l != "all"]
    plt = _pyplot()
    colors = _rule_colors(plt, rules)
    fig, axes = plt.subplots(1, len(layers), figsize=(1.0 + max(2.8, 0.9 * len(rules) + 1.2) * len(layers), 4.2), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        for x, rule in enumerate(rules):
            v = np.asarray(samples.get((rule, layer), np.zeros(0)), dtype=np.float64).ravel()
            v = v[np.isfinite(v)]
            if v.size == 0:
                ax.text(x, 0.0, "no data", ha="center", va="center", fontsize=7, color="gray")
                continue
            if v.size > 1 and np.ptp(v) > 0:
                parts = ax.violinplot([v], positions=[x], widths=0.8, showmedians=True, showextrema=True)
                for body in parts["bodies"]:
                    body.set_facecolor(colors[rule])
                    body.set_gid(f"rule:{rule}")  # which rule a violin is (tests read it back)
                    body.set_edgecolor("k")
                    body.set_alpha(0.7)
                for k in ("cbars", "cmins", "cmaxes", "cmedians"):
                    if k in parts:
                        parts[k].set_color("k")
                        parts[k].set_linewidth(0.8)
            else:
                ax.plot([x - 0.3, x + 0.3], [v[0], v[0]], color=colors[rule], lw=2, gid=f"rule:{rule}")
        ax.axhline(0.0, color="gray", ls=":", lw=1.0)
        _min_yspan(ax)
        ax.set_xticks(range(len(rules)))
        ax.set_xticklabels(rules, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(rules) - 0.4)
        ax.set_title("all parameters" if layer == "all" else f"parameter {layer}", fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0, 0].set_ylabel("element-wise deviation\n$(g - g_{ref}) / \\mathrm{rms}(g_{ref})$")
    fig.suptitle(title or f"Gradient deviations from {reference} at step {step}")
    fig.tight_layout()
    return _save(fig, path)


def plot_uncertainty_boxplot(
    correct_values: np.ndarray,
    wrong_values: np.ndarray,
    path: str | Path,
    label: str = "predictive entropy",
    p_value: float | None = None,
    test: str | None = None,
    title: str | None = None,
) -> Path:
    """Box plots of an uncertainty measure for correctly and wrongly classified examples.

    ``correct_values`` and ``wrong_values`` hold one value per test example (e.g. the
    predictive entropy of HMC posterior samples); individual values are drawn as jittered
    dots.  ``p_value`` (and the name of the ``test`` that gave it) goes under the title.
    One group may be empty (a perfect or a useless classifier), not both.
    """
    groups = []
    for name, vals in (("correct_values", correct_values), ("wrong_values", wrong_values)):
        v = np.asarray(vals, dtype=np.float64).ravel()
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{name}: contains NaN or infinite values")
        groups.append(v)
    if groups[0].size == 0 and groups[1].size == 0:
        raise ValueError("correct_values, wrong_values: both are empty")
    if p_value is not None and not (0.0 <= float(p_value) <= 1.0):
        raise ValueError(f"p_value: expected a probability in [0, 1], got {p_value!r}")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    names = [f"correct predictions\n(n = {groups[0].size})", f"wrong predictions\n(n = {groups[1].size})"]
    present = [i for i, g in enumerate(groups) if g.size]
    bp = ax.boxplot([groups[i] for i in present], positions=[i + 1 for i in present], widths=0.5, patch_artist=True, showfliers=False)
    fills = ["tab:green", "tab:red"]
    for patch, i in zip(bp["boxes"], present):
        patch.set_facecolor(fills[i])
        patch.set_alpha(0.35)
    for med in bp["medians"]:
        med.set_color("k")
    rng = np.random.default_rng(0)
    for i in present:
        g = groups[i]
        ax.scatter(i + 1 + rng.uniform(-0.12, 0.12, g.size), g, s=6, color=fills[i], alpha=0.6, lw=0)
    for i in range(2):
        if groups[i].size == 0:
            ax.text(i + 1, 0.5, "none", transform=ax.get_xaxis_transform(), ha="center", color="gray")
    ax.set_xticks([1, 2])
    ax.set_xticklabels(names)
    ax.set_xlim(0.4, 2.6)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3, axis="y")
    heading = title or f"{label[0].upper() + label[1:]} of correct and wrong predictions"
    if p_value is not None:
        heading += f"\n{test + ': ' if test else ''}p = {float(p_value):.3g}"
    ax.set_title(heading, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_accuracy_curves(rules: Mapping[str, Sequence[Sequence[dict]]], path: str | Path, title: str | None = None) -> Path:
    """Test accuracy per epoch of several rules: ``rules[label]`` holds one history (per-epoch dicts with ``epoch`` and
    ``test_acc``) per seed; the line is the mean over seeds, the band one standard deviation.  Each rule in its
    :func:`rule_color`; whole-number epoch ticks."""
    if not rules:
        raise ValueError("rules: nothing to plot")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    n_seeds = 1
    for label, histories in rules.items():
        if not histories or not all(histories):
            raise ValueError(f"rules[{label!r}]: expected one non-empty history per seed")
        curves = np.array([[100 * e["test_acc"] for e in h] for h in histories], dtype=np.float64)
        n_seeds = len(curves)
        epochs = [e["epoch"] for e in histories[0]]
        mean = curves.mean(axis=0)
        ax.plot(epochs, mean, marker="o", ms=3, label=label, color=rule_color(label))
        if len(curves) > 1:
            sd = curves.std(axis=0, ddof=1)
            ax.fill_between(epochs, mean - sd, mean + sd, color=rule_color(label), alpha=0.2)
    ax.set_xlabel("epoch")
    integer_ticks(ax)
    ax.set_ylabel("test accuracy (%)")
    what = f"mean and std over {n_seeds} seeds" if n_seeds > 1 else "one seed"
    ax.set_title(title or f"Test accuracy per epoch ({what}), same network and optimizer")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
