"""Render a run folder of the main job as ``report.md`` and ``report.html``.

The report reads only what the run wrote (``results.json`` and the PNG files), so
``neuroplastic report RUN_DIR`` can render it again at any time.  The HTML page is
self-contained apart from the images beside it, which it references by relative path.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from .analysis.neurobench import SUMMARY_FIELDS

FIGURES = [
    ("accuracy_curves.png", "Test accuracy per epoch", "Every rule trained from the same initial parameters, batches and optimizer settings."),
    ("alignment_curves.png", "Gradient alignment with the reference", "Cosine similarity, relative deviation, sign agreement and bias of each rule's gradient against the reference rule's, per layer, along the reference's training trajectory."),
    ("deviation_violins.png", "Distribution of element-wise deviations", "Element-wise gradient deviations from the reference, in units of the reference's RMS, at the last compared step (after Neko's Fig. 4)."),
    ("landscape.png", "Loss landscape", "Test loss on the plane spanned by the first two principal directions of the reference's training trajectory, around its final parameters, with every rule's trajectory projected on it."),
    ("raster.png", "Spike raster", "Spikes of every spiking block for one test example after training with the reference rule."),
]


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _num(v: Any, fmt: str = "{:.3f}") -> str:
    return fmt.format(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else "n/a"


def training_subset(cfg: dict, rule_result: dict) -> str:
    """What one rule trained on: ``768 examples (a subset), 2 epochs`` or ``all examples, 60 epochs``."""
    epochs = len(rule_result.get("history") or []) or cfg.get("epochs")
    n = cfg.get("train_examples")
    return f"{f'{n} examples (a subset)' if n else 'all examples'}, {epochs} epoch{'' if epochs == 1 else 's'}"


def subset_note(cfg: dict) -> str:
    """The sentence that says a study trained on a subset of the training set (``--quick``), or ``""``."""
    if not cfg.get("train_examples"):
        return ""
    return (f"Trained on the first {cfg['train_examples']} training examples only (a quick run, {cfg['epochs']} epochs); accuracies are far "
            "from what the full set gives.")


def hidden_cosines(run_dir: Path) -> dict[str, float]:
    """Each rule's mean gradient cosine to the reference over the *hidden* blocks' parameters (every block but the
    readout, per parameter, averaged over the compared steps), from ``alignment/alignment.jsonl``.

    The cosine over all parameters is dominated by the readout's gradient, which every rule of the main job computes
    exactly, so it sits near 1 for all of them; the hidden blocks' cosine is where the rules differ.
    """
    path = Path(run_dir) / "alignment" / "alignment.jsonl"
    if not path.exists():
        return {}
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records = [r for r in records if r.get("kind", "gradient") == "gradient" and str(r.get("layer", "")).startswith("layers.")]
    if not records:
        return {}
    readout = max(int(r["layer"].split(".")[1]) for r in records)
    out: dict[str, list] = {}
    for r in records:
        if int(r["layer"].split(".")[1]) < readout and r.get("cosine") is not None:
            out.setdefault(r["rule"], []).append(float(r["cosine"]))
    return {rule: sum(v) / len(v) for rule, v in out.items() if v}


def table_rows(results: dict, hidden: dict | None = None) -> list[list[str]]:
    """One row per rule: accuracy, what it trained on, rates, synaptic operations, alignment (over all parameters and,
    with ``hidden`` from :func:`hidden_cosines`, over the hidden blocks), time."""
    hidden = hidden or {}
    rows = []
    cfg = results["config"]
    align = (results.get("alignment") or {}).get("summary", {})
    for rule, r in results["rules"].items():
        final = r["final"]
        rates = [x for x in final.get("rate_hz", []) if x is not None]
        eff = r.get("efficiency") or {}
        a = align.get(rule, {})
        spread = r.get("test_acc_spread")
        test = _pct(final.get("test_acc")) if not spread else f"{100 * spread['mean']:.1f} ± {100 * spread['std']:.1f}% (n={spread['n']})"
        rows.append([
            rule, r.get("describe", rule), test, training_subset(cfg, r), _pct(final.get("train_acc")),
            ", ".join(f"{x:.1f}" for x in rates) or "n/a",
            _num(eff.get("synops_per_sample"), "{:,.0f}"),
            _num(eff.get("activation_sparsity")),
            _num(a.get("mean_cosine")), _num(hidden.get(rule)), _num(a.get("mean_sign_agreement")),
            f"{r['wall_time_s']:.0f}",
        ])
    return rows


HEADER = ["rule", "setting", "test accuracy", "trained on", "train accuracy", "hidden rate (Hz)", "synaptic ops / sample", "activation sparsity", "cosine to reference", "cosine, hidden blocks", "sign agreement", "train time (s)"]

#: (key of ``efficiency_metrics``, column, format) of the efficiency table: the summary fields
#: of :mod:`neuroplastic.analysis.neurobench` except the total, which the main table shows
EFFICIENCY_COLUMNS = [f for f in SUMMARY_FIELDS if f[0] != "synops_per_sample"]
EFFICIENCY_CAPTION = (
    "NeuroBench definitions (Yik et al., arXiv:2304.04640), on the first {n} test examples after training: effective ACs count "
    "spike (binary) input, effective MACs dense input, each as nonzero presynaptic activations times nonzero fan-out, "
    "recurrent connections included; the memory footprint is parameters plus one sample's network state. "
    "See docs/analysis.md."
)


def efficiency_rows(results: dict) -> list[list[str]]:
    """One row per rule with the NeuroBench metrics (``[]`` when the run recorded none)."""
    rows = []
    for rule, r in results["rules"].items():
        eff = r.get("efficiency")
        if isinstance(eff, dict):
            rows.append([rule] + [_num(eff.get(k), fmt) for k, _, fmt in EFFICIENCY_COLUMNS])
    return rows


def _efficiency_samples(results: dict) -> Any:
    return next((r["efficiency"].get("samples") for r in results["rules"].values() if isinstance(r.get("efficiency"), dict)), None)


def network_details(cfg: dict) -> str:
    """``tau_mem = 1 step, fast_sigmoid surrogate`` (older run folders lack the time constants)."""
    tau = cfg.get("tau_mem")
    parts = [f"tau_mem = {tau:g} step{'' if tau == 1 else 's'}"] if tau is not None else []
    return ", ".join(parts + [f"{cfg['surrogate']} surrogate"])


def regularizer_details(cfg: dict) -> str:
    """`` + rate regulariser (10 Hz, strength 10)`` when the study used one."""
    if cfg.get("reg_rate_hz") is None:
        return ""
    return f" + rate regulariser ({cfg['reg_rate_hz']:g} Hz, strength {cfg['reg_strength']:g})"


def notes(results: dict) -> list[str]:
    """What a reader must know to read the table: seeds, a training subset, arms left out of the comparison."""
    cfg = results["config"]
    seeds = cfg.get("seeds", 1) or 1
    out = []
    if seeds > 1:
        out.append(f"Test accuracy: mean ± standard deviation over {seeds} seeds ({cfg['seed']}..{cfg['seed'] + seeds - 1}); the other "
                   "columns, the gradient comparison, the landscape and the raster are those of the first seed.")
    else:
        out.append("One seed: rerun with `--seeds 3` (or more) for spreads; a second seed moves rows by a few points.")
    out.append("The figures move by machine (CPU instruction set, thread count, framework version): compare rows of one run.")
    if subset_note(cfg):
        out.append(subset_note(cfg))
    left = (results.get("alignment") or {}).get("not_compared") or []
    if left:
        out.append(f"Not in the gradient comparison (no offline gradient): {', '.join(left)}.")
    return out


def significance_rows(results: dict) -> list[list[str]]:
    """Each arm against the reference over the shared seeds (paired t-test, Wilcoxon signed-rank)."""
    rows = []
    for label, c in (results.get("significance") or {}).items():
        rows.append([label, f"{100 * c['mean_diff']:+.1f}", str(c["n_a"]), _num(c["p"], "{:.3g}"), _num(c.get("p_wilcoxon"), "{:.3g}")])
    return rows


SIGNIFICANCE_HEADER = ["rule", "accuracy minus reference (points)", "seeds", "p (paired t)", "p (Wilcoxon)"]


def render_markdown(results: dict, run_dir: Path) -> str:
    cfg = results["config"]
    lines = [
        "# neuroplastic: learning rules compared",
        "",
        f"Task `{cfg['data']}`, model `{cfg['model']}` with {cfg['hidden']} hidden neurons ({network_details(cfg)}), "
        f"loss `{cfg['loss']}`{regularizer_details(cfg)}, {cfg['optimizer']} lr {cfg['lr']} ({cfg['schedule']}), {cfg['epochs']} epochs, batch {cfg['batch_size']}, "
        f"backend `{cfg['backend']}`, seed {cfg['seed']}. Reference rule for the gradient comparison: `{cfg['reference']}`.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results, hidden_cosines(run_dir))]
    for n in notes(results):
        lines += ["", n]
    sig = significance_rows(results)
    if sig:
        lines += ["", f"## Against {cfg['reference']}", "", "| " + " | ".join(SIGNIFICANCE_HEADER) + " |", "|" + "---|" * len(SIGNIFICANCE_HEADER)]
        lines += ["| " + " | ".join(row) + " |" for row in sig]
    if results.get("skipped"):
        lines += ["", f"Not available in this installation: {', '.join(results['skipped'])}."]
    eff_rows = efficiency_rows(results)
    if eff_rows:
        head = ["rule"] + [c for _, c, _ in EFFICIENCY_COLUMNS]
        lines += ["", "## Efficiency", "", EFFICIENCY_CAPTION.format(n=_efficiency_samples(results)), "",
                  "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in eff_rows]
    for name, title, caption in FIGURES:
        if (run_dir / name).exists():
            lines += ["", f"## {title}", "", caption, "", f"![{title}]({name})"]
    return "\n".join(lines) + "\n"


def render_html(results: dict, run_dir: Path) -> str:
    cfg = results["config"]
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in HEADER)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in table_rows(results, hidden_cosines(run_dir)))
    figures = "".join(
        f'<figure><h2>{esc(title)}</h2><img src="{esc(name)}" alt="{esc(title)}"><figcaption>{esc(caption)}</figcaption></figure>'
        for name, title, caption in FIGURES if (run_dir / name).exists()
    )
    skipped = f"<p>Not available in this installation: {esc(', '.join(results['skipped']))}.</p>" if results.get("skipped") else ""
    skipped = "".join(f"<p>{esc(n)}</p>" for n in notes(results)) + skipped
    sig = significance_rows(results)
    if sig:
        sig_head = "".join(f"<th>{esc(h)}</th>" for h in SIGNIFICANCE_HEADER)
        sig_body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in sig)
        skipped += f"<h2>Against {esc(cfg['reference'])}</h2><table><thead><tr>{sig_head}</tr></thead><tbody>{sig_body}</tbody></table>"
    eff_rows = efficiency_rows(results)
    efficiency = ""
    if eff_rows:
        eff_head = "".join(f"<th>{esc(h)}</th>" for h in ["rule"] + [c for _, c, _ in EFFICIENCY_COLUMNS])
        eff_body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in eff_rows)
        efficiency = (
            f"<h2>Efficiency</h2><p>{esc(EFFICIENCY_CAPTION.format(n=_efficiency_samples(results)))}</p>"
            f"<table><thead><tr>{eff_head}</tr></thead><tbody>{eff_body}</tbody></table>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>neuroplastic report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
figcaption {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>neuroplastic: learning rules compared</h1>
<p>Task <code>{esc(cfg['data'])}</code>, model <code>{esc(cfg['model'])}</code> with {cfg['hidden']} hidden neurons ({esc(network_details(cfg))}),
loss <code>{esc(cfg['loss'])}</code>{esc(regularizer_details(cfg))}, {esc(cfg['optimizer'])} lr {cfg['lr']} ({esc(cfg['schedule'])}), {cfg['epochs']} epochs,
batch {cfg['batch_size']}, backend <code>{esc(cfg['backend'])}</code>, seed {cfg['seed']}; reference rule <code>{esc(cfg['reference'])}</code>.</p>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
{skipped}
{efficiency}
{figures}
</body></html>
"""


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``run_dir`` from its ``results.json``."""
    run = Path(run_dir)
    path = run / "results.json"
    if not path.exists():
        raise ValueError(f"run_dir: {run} has no results.json; is it a folder written by `neuroplastic run`?")
    results = json.loads(path.read_text())
    md, page = run / "report.md", run / "report.html"
    md.write_text(render_markdown(results, run))
    page.write_text(render_html(results, run))
    return md, page
