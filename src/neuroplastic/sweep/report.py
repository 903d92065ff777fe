"""The sweep report: ``report.md`` and ``report.html`` with PNG figures, from a sweep folder.

It reads only what the sweep wrote (``sweep.json`` and the trials' run folders), so
:func:`write_sweep_report` can render it again at any time.

* per setting (every axis but ``seed``): mean, standard deviation and 95% t interval over
  seeds of the final and best test accuracy and of the training wall time;
* between rules (settings that differ only in their ``rule`` axes; without a rule axis,
  between all settings): a paired t-test and Wilcoxon signed-rank test over the seeds both
  share, or Welch's t-test where the seeds differ, with the number of seeds and Holm's
  adjusted p-values;
* figures: accuracy with error bars, mean learning curves with their spread, and the
  hyper-parameter space (parallel coordinates; a heatmap of two swept fields).
"""

from __future__ import annotations

import html
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

from .runner import TRIALS, Manifest, read_history
from .spec import short_names, value_label
from .stats import LEVEL, compare_paired, compare_welch, describe, holm, min_wilcoxon_p

FIGURES = [
    ("accuracy.png", "Accuracy per setting", "Mean over seeds with its 95% t interval (bars; none for a single seed); dots are single seeds."),
    ("curves.png", "Learning curves", "Test accuracy per epoch, mean over seeds, shaded: plus and minus one standard deviation."),
    ("hyperparameters.png", "Hyper-parameter space", "Parallel coordinates: one line per finished trial across the swept fields, coloured by its final test accuracy."),
    ("heatmap.png", "Two swept fields", "Mean final test accuracy over seeds (and over the other fields) for each pair of values of the first two swept fields."),
]
MACHINE_NOTE = (
    "Figures move by machine: floating-point reductions are ordered differently on other CPUs (AVX2 or AVX-512), "
    "thread counts and library versions, so accuracies differ in the last digits and sometimes by a point or more "
    "after many epochs; compare settings within one sweep, and use the intervals and tests, not single numbers."
)


def _pct(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _p(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return "<0.001" if v < 1e-3 else f"{v:.3f}"


def _spread(s: Any, scale: float = 100.0, fmt: str = "{:.1f}") -> tuple[str, str]:
    """``mean ± std`` and ``[low, high]`` cells of a :class:`Summary`."""
    if s.n == 0:
        return "n/a", "n/a"
    mean = fmt.format(scale * s.mean)
    if s.n < 2:
        return mean, "n/a (1 seed)"
    return f"{mean} ± {fmt.format(scale * s.std)}", f"[{fmt.format(scale * s.low)}, {fmt.format(scale * s.high)}]"


# ---------------------------------------------------------------------------- analysis
def settings_of(trials: list[dict]) -> dict[str, list[dict]]:
    """Trials grouped by setting label (every axis but the seed), in the sweep's order."""
    out: dict[str, list[dict]] = {}
    for t in trials:
        out.setdefault(t["label"], []).append(t)
    return out


def _finished(group: list[dict], key: str) -> dict[int, float]:
    """seed -> value over the finished trials of a setting (a seed listed twice keeps its first)."""
    out: dict[int, float] = {}
    for t in group:
        if t["status"] == "finished" and t.get(key) is not None and t["seed"] not in out:
            out[t["seed"]] = float(t[key])
    return out


def setting_rows(trials: list[dict]) -> list[dict]:
    """Per setting: number of seeds and :class:`Summary` of final accuracy, best accuracy and wall time."""
    rows = []
    for label, group in settings_of(trials).items():
        final = _finished(group, "final_test_acc")
        rows.append({
            "label": label, "setting": {k: v for k, v in group[0]["setting"].items() if k != "seed"}, "trials": group,
            "seeds": sorted(final), "n_trials": len(group),
            "final": describe(list(final.values())), "best": describe(list(_finished(group, "best_test_acc").values())),
            "wall": describe(list(_finished(group, "wall_time_s").values())),
        })
    return rows


def compared_axes(axes: list[str]) -> list[str]:
    """The axes a significance test compares: the rule axes if there are any, else every axis but the seed."""
    rule = [k for k in axes if k == "rule" or k.startswith("rule.")]
    return rule or [k for k in axes if k != "seed"]


def comparison_rows(trials: list[dict], axes: list[str]) -> list[dict]:
    """Tests of final test accuracy between settings that differ only in the compared axes."""
    compared = compared_axes(axes)
    if not compared:
        return []
    rows = setting_rows(trials)
    groups: dict[str, list[dict]] = {}
    for r in rows:
        rest = " ".join(f"{k}={value_label(v)}" for k, v in r["setting"].items() if k not in compared)
        groups.setdefault(rest, []).append(r)
    out = []
    for rest, members in groups.items():
        for a, b in itertools.combinations(members, 2):
            va, vb = _finished(a["trials"], "final_test_acc"), _finished(b["trials"], "final_test_acc")
            row = {"within": rest, "a": _compared_label(a, compared), "b": _compared_label(b, compared)}
            if set(va) == set(vb) and len(va) >= 2:
                seeds = sorted(va)
                c = compare_paired([va[s] for s in seeds], [vb[s] for s in seeds])
                row.update(test="paired t + Wilcoxon", n=f"{len(seeds)} shared", cmp=c)
            elif len(va) >= 2 and len(vb) >= 2:
                c = compare_welch(list(va.values()), list(vb.values()))
                row.update(test="Welch t (seeds differ)", n=f"{len(va)} vs {len(vb)}", cmp=c)
            else:
                row.update(test="none (fewer than 2 seeds)", n=f"{len(va)} vs {len(vb)}", cmp=None)
            out.append(row)
    adjusted = holm([r["cmp"].p if r["cmp"] is not None else math.nan for r in out])
    for r, p in zip(out, adjusted):
        r["p_holm"] = p
    return out


def _compared_label(row: dict, compared: list[str]) -> str:
    shorts = short_names(list(row["setting"]))
    return " ".join(f"{shorts[k]}={value_label(v)}" for k, v in row["setting"].items() if k in compared) or row["label"]


# ---------------------------------------------------------------------------- tables
SETTING_HEADER = ["setting", "seeds", "final test acc (%) mean ± std", "95% interval", "best test acc (%) mean ± std",
                  "95% interval", "wall time (s) mean ± std"]
COMPARISON_HEADER = ["within", "A", "B", "seeds", "test", "mean A − B (points)", "p (t)", "p (Wilcoxon)", "p (t, Holm)"]
TRIAL_HEADER = ["trial", "seed", "status", "final test acc (%)", "best test acc (%)", "epochs", "wall time (s)", "message"]


def _setting_cells(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        final, best, wall = _spread(r["final"]), _spread(r["best"]), _spread(r["wall"], 1.0, "{:.0f}")
        n = len(r["seeds"])
        seeds = f"{n} ({', '.join(map(str, r['seeds']))})" if n else "0"
        if n < r["n_trials"]:
            seeds += f" of {r['n_trials']}"
        out.append([r["label"], seeds, final[0], final[1], best[0], best[1], wall[0]])
    return out


def _comparison_cells(rows: list[dict]) -> list[list[str]]:
    out = []
    for r in rows:
        c = r["cmp"]
        diff = "n/a" if c is None else f"{100 * c.mean_diff:+.1f}"
        out.append([r["within"] or "—", r["a"], r["b"], r["n"], r["test"], diff,
                    _p(c.p) if c else "n/a", _p(c.p_wilcoxon) if c and c.p_wilcoxon is not None else "—", _p(r["p_holm"])])
    return out


def _trial_cells(trials: list[dict]) -> list[list[str]]:
    out = []
    for t in trials:
        wall = t.get("wall_time_s")
        out.append([t["name"], str(t["seed"]), t["status"], _pct(t.get("final_test_acc")), _pct(t.get("best_test_acc")),
                    str(t.get("epochs_done", "")), "" if wall is None else f"{wall:.0f}", (t.get("message") or "").replace("|", "/")])
    return out


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _description(m: dict) -> list[str]:
    trials = m["trials"]
    cfg = next((t["config"] for t in trials if t["config"] is not None), None)
    counts: dict[str, int] = {}
    for t in trials:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    sweep = m.get("sweep", {})
    lines = [
        f"Sweep file `{m.get('source')}`, mode `{sweep.get('mode')}`, swept: {', '.join(f'`{a}`' for a in m.get('axes', [])) or 'nothing'}; "
        f"{len(trials)} trials ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}), run with {m.get('engine', 'n/a')}.",
    ]
    if cfg is not None:
        configs = [t["config"] for t in trials if t["config"] is not None]

        def v(key: str, fmt: str = "{}") -> str:  # the shared value, or "swept" where the trials differ
            return fmt.format(cfg[key]) if all(c[key] == cfg[key] for c in configs) else "swept"

        lines.append(f"Shared settings: data `{v('data')}`, model `{v('model')}` (hidden {v('hidden')}), {v('epochs')} epochs, "
                     f"batch {v('batch_size')}, optimizer {v('optimizer')} with lr {v('lr')} ({v('schedule')} schedule), "
                     f"backend `{v('backend')}`; each trial's full config is `trials/NAME/config.toml`.")
    return lines


def _tested(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["cmp"] is not None]


def _comparison_text(rows: list[dict]) -> str:
    """What the significance table holds, or why there is none."""
    if not rows:
        return "Only one setting: nothing to compare."
    tested = _tested(rows)
    skipped = len(rows) - len(tested)
    skip = (f" {skipped} pair{'s' if skipped != 1 else ''} of settings not tested: fewer than 2 finished seeds on a side."
            if skipped else "")
    if not tested:
        return "No pair of settings has 2 or more finished seeds on both sides: no tests." + skip
    return _test_note(tested) + skip


def _test_note(rows: list[dict]) -> str:
    ns = sorted({c.n_a for r in rows if (c := r["cmp"]) is not None and c.test == "paired"})
    note = (f"Final test accuracy, two-sided tests; A − B is in percentage points. Paired tests use the seeds both settings "
            f"finished; Holm's adjustment is over the {len(rows)} test{'s' if len(rows) != 1 else ''} of this table "
            f"(no other correction).")
    if ns:
        note += (f" With {ns[0]} seeds the exact Wilcoxon test cannot give a p-value below {min_wilcoxon_p(ns[0]):.3g}: "
                 f"more seeds are needed before it can reject.")
    return note


# ---------------------------------------------------------------------------- figures
def _figures(m: dict, sweep_dir: Path, rows: list[dict]) -> list[str]:
    from ..analysis.plots import have_matplotlib

    if not have_matplotlib() or not any(r["final"].n for r in rows):
        return []
    made = [_plot_accuracy(rows, sweep_dir / "accuracy.png"), _plot_curves(rows, sweep_dir, sweep_dir / "curves.png")]
    axes = [k for k in m.get("axes", []) if k != "seed"]
    finished = [t for t in m["trials"] if t["status"] == "finished" and t.get("final_test_acc") is not None]
    if axes and finished:
        made.append(_plot_parallel(finished, axes, sweep_dir / "hyperparameters.png"))
    varied = [k for k in axes if len({_key(t["setting"][k]) for t in finished}) > 1]
    if len(varied) >= 2:
        made.append(_plot_heatmap(finished, varied[0], varied[1], sweep_dir / "heatmap.png"))
    return [p.name for p in made if p is not None]


def _key(v: Any) -> str:
    return value_label(v)


def _plot_accuracy(rows: list[dict], path: Path) -> Path:
    from ..analysis.plots import _pyplot, _save

    plt = _pyplot()
    n = len(rows)
    fig, axes = plt.subplots(1, 3, figsize=(13, 1.2 + 0.42 * n), sharey=True, squeeze=False)
    y = np.arange(n)[::-1]
    panels = [("final", "final_test_acc", "final test accuracy (%)", 100.0), ("best", "best_test_acc", "best test accuracy (%)", 100.0),
              ("wall", "wall_time_s", "training wall time (s)", 1.0)]
    for ax, (stat, key, title, scale) in zip(axes[0], panels):
        for yi, r in zip(y, rows):
            s = r[stat]
            if s.n == 0:
                continue
            if s.n >= 2:
                ax.errorbar(scale * s.mean, yi, xerr=[[scale * (s.mean - s.low)], [scale * (s.high - s.mean)]], fmt="o",
                            color="tab:blue", capsize=3)
            else:
                ax.plot(scale * s.mean, yi, "o", color="tab:blue")
            vals = list(_finished(r["trials"], key).values())
            ax.plot([scale * v for v in vals], [yi] * len(vals), ".", color="k", alpha=0.5, markersize=4)
        ax.set_xlabel(title)
        ax.grid(axis="x", alpha=0.3)
        if scale == 100.0:  # intervals of few seeds can reach past 0-100%: show the possible range
            lo, hi = ax.get_xlim()
            ax.set_xlim(max(lo, 0.0), min(hi, 100.0))
    axes[0][0].set_yticks(y)
    axes[0][0].set_yticklabels([r["label"] for r in rows], fontsize=8)
    fig.suptitle(f"Per setting: mean and {int(100 * LEVEL)}% interval over seeds")
    fig.tight_layout()
    return _save(fig, path)


def _plot_curves(rows: list[dict], sweep_dir: Path, path: Path, limit: int = 12) -> Path | None:
    from ..analysis.plots import _pyplot, _save

    curves = []
    for r in rows:
        hist = [read_history(sweep_dir / TRIALS / t["name"]) for t in r["trials"] if t["status"] == "finished"]
        hist = [h for h in hist if h and h[0].get("test_acc") is not None]
        if not hist:
            continue
        n_ep = min(len(h) for h in hist)
        acc = np.array([[100 * e["test_acc"] for e in h[:n_ep]] for h in hist])
        curves.append((r["label"], acc, r["final"].mean))
    if not curves:
        return None
    curves = sorted(curves, key=lambda c: -c[2])[:limit] if len(curves) > limit else curves
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    cmap = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    for i, (label, acc, _) in enumerate(curves):
        ep = np.arange(1, acc.shape[1] + 1)
        mean = acc.mean(axis=0)
        ax.plot(ep, mean, color=cmap(i), label=f"{label} (n={len(acc)})")
        if len(acc) > 1:
            sd = acc.std(axis=0, ddof=1)
            ax.fill_between(ep, mean - sd, mean + sd, color=cmap(i), alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    title = "Test accuracy, mean ± std over seeds" + (f" (best {limit} settings)" if len(rows) > limit else "")
    ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def _axis_positions(values: list[Any]) -> tuple[list[float], list[tuple[float, str]]]:
    """Positions in [0, 1] of one parallel-coordinates axis and its tick labels (numbers on a linear or log scale)."""
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric:
        x = np.asarray(values, dtype=np.float64)
        lo, hi = float(x.min()), float(x.max())
        log = lo > 0 and hi / lo >= 10
        f = (lambda v: math.log(v)) if log else (lambda v: v)
        span = (f(hi) - f(lo)) or 1.0
        pos = [(f(v) - f(lo)) / span if hi > lo else 0.5 for v in values]
        uniq = sorted(set(values))
        ticks = uniq if len(uniq) <= 8 else [lo, hi]
        return pos, [((f(v) - f(lo)) / span if hi > lo else 0.5, value_label(v)) for v in ticks]
    labels = list(dict.fromkeys(value_label(v) for v in values))
    where = {lab: (i / (len(labels) - 1) if len(labels) > 1 else 0.5) for i, lab in enumerate(labels)}
    return [where[value_label(v)] for v in values], [(p, lab) for lab, p in where.items()]


def _plot_parallel(trials: list[dict], axes: list[str], path: Path) -> Path:
    from ..analysis.plots import _pyplot, _save

    plt = _pyplot()
    acc = [100 * t["final_test_acc"] for t in trials]
    columns = [_axis_positions([t["setting"][k] for t in trials]) for k in axes]
    columns.append(_axis_positions(acc))
    names = list(short_names(axes).values()) + ["final test acc (%)"]
    fig, ax = plt.subplots(figsize=(2.2 + 1.8 * len(names), 4.5))
    cmap = plt.get_cmap("viridis")
    lo, hi = min(acc), max(acc)
    n = len(acc)
    for i, a in enumerate(acc):
        spread = 0.04 * (i / (n - 1) - 0.5) if n > 1 else 0.0  # lines through one value stay apart
        ys = [c[0][i] + spread for c in columns[:-1]] + [columns[-1][0][i]]
        ax.plot(range(len(names)), ys, color=cmap((a - lo) / (hi - lo) if hi > lo else 0.5), alpha=0.7)
    for j, (_, ticks) in enumerate(columns):
        ax.axvline(j, color="0.6", lw=0.8)
        for p, lab in ticks:
            ax.text(j + 0.03, p, lab, fontsize=7, va="center")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(names) - 0.4)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(lo, hi))
    fig.colorbar(sm, ax=ax, label="final test accuracy (%)")
    ax.set_title("Swept fields of every finished trial")
    fig.tight_layout()
    return _save(fig, path)


def _plot_heatmap(trials: list[dict], kx: str, ky: str, path: Path) -> Path:
    from ..analysis.plots import _pyplot, _save

    plt = _pyplot()
    xs = list(dict.fromkeys(_key(t["setting"][kx]) for t in trials))
    ys = list(dict.fromkeys(_key(t["setting"][ky]) for t in trials))
    cells: dict[tuple[str, str], list[float]] = {}
    for t in trials:
        cells.setdefault((_key(t["setting"][kx]), _key(t["setting"][ky])), []).append(100 * t["final_test_acc"])
    grid = np.full((len(ys), len(xs)), np.nan)
    for (x, y), v in cells.items():
        grid[ys.index(y), xs.index(x)] = float(np.mean(v))
    fig, ax = plt.subplots(figsize=(3.0 + 1.1 * len(xs), 1.8 + 0.6 * len(ys)))
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    for i in range(len(ys)):
        for j in range(len(xs)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", color="w", fontsize=8)
    shorts = short_names([kx, ky])
    ax.set_xticks(range(len(xs)))
    ax.set_xticklabels(xs, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(ys)))
    ax.set_yticklabels(ys, fontsize=8)
    ax.set_xlabel(shorts[kx])
    ax.set_ylabel(shorts[ky])
    fig.colorbar(im, ax=ax, label="mean final test accuracy (%)")
    ax.set_title("Mean over seeds and other fields")
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------- rendering
def render_markdown(m: dict, rows: list[dict], comparisons: list[dict], figures: list[str]) -> str:
    lines = ["# Sweep report", ""] + _description(m) + ["", f"*{MACHINE_NOTE}*", "", "## Per setting", "",
             f"Over the finished seeds of each setting; {int(100 * LEVEL)}% interval of the mean from Student's t with n − 1 degrees of freedom.", ""]
    lines += _md_table(SETTING_HEADER, _setting_cells(rows))
    lines += ["", "## Significance between " + ("rules" if any(k == "rule" or k.startswith("rule.") for k in m.get("axes", [])) else "settings"), ""]
    lines += [_comparison_text(comparisons)]
    if _tested(comparisons):
        lines += [""] + _md_table(COMPARISON_HEADER, _comparison_cells(_tested(comparisons)))
    for name, title, caption in FIGURES:
        if name in figures:
            lines += ["", f"## {title}", "", caption, "", f"![{title}]({name})"]
    lines += ["", "## Trials", "", "Each trial is a run folder `trials/NAME/`; `neuroplastic train --config trials/NAME/config.toml` reruns one alone.", ""]
    lines += _md_table(TRIAL_HEADER, _trial_cells(m["trials"]))
    return "\n".join(lines) + "\n"


def render_html(m: dict, rows: list[dict], comparisons: list[dict], figures: list[str]) -> str:
    esc = html.escape
    desc = "".join(f"<p>{esc(line).replace('`', '')}</p>" for line in _description(m))
    compare = f"<p>{esc(_comparison_text(comparisons))}</p>" + (
        _html_table(COMPARISON_HEADER, _comparison_cells(_tested(comparisons))) if _tested(comparisons) else "")
    figs = "".join(f'<figure><h2>{esc(title)}</h2><img src="{esc(name)}" alt="{esc(title)}"><figcaption>{esc(caption)}</figcaption></figure>'
                   for name, title, caption in FIGURES if name in figures)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>neuroplastic sweep report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption, .note {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>Sweep report</h1>
{desc}
<p class="note"><em>{esc(MACHINE_NOTE)}</em></p>
<h2>Per setting</h2>
<p>Over the finished seeds of each setting; {int(100 * LEVEL)}% interval of the mean from Student's t with n − 1 degrees of freedom.</p>
{_html_table(SETTING_HEADER, _setting_cells(rows))}
<h2>Significance</h2>
{compare}
{figs}
<h2>Trials</h2>
<p>Each trial is a run folder <code>trials/NAME/</code>; <code>neuroplastic train --config trials/NAME/config.toml</code> reruns one alone.</p>
{_html_table(TRIAL_HEADER, _trial_cells(m["trials"]))}
</body></html>
"""


def write_sweep_report(sweep_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and the figures into ``sweep_dir`` from its manifest."""
    d = Path(sweep_dir)
    m = Manifest.load(d).data
    rows = setting_rows(m["trials"])
    comparisons = comparison_rows(m["trials"], m.get("axes", []))
    figures = _figures(m, d, rows)
    md, page = d / "report.md", d / "report.html"
    md.write_text(render_markdown(m, rows, comparisons, figures), encoding="utf-8")
    page.write_text(render_html(m, rows, comparisons, figures), encoding="utf-8")
    return md, page


__all__ = ["FIGURES", "MACHINE_NOTE", "comparison_rows", "compared_axes", "setting_rows", "settings_of", "write_sweep_report"]
