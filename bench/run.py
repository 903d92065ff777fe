"""Run the benchmarks: ``python bench/run.py`` (or ``make bench``).

The default suite is the feed-forward BPTT benchmark (``bench/ffwd.py``): 3 x (Dense + LIF),
100-H-H-10, T=500, batch 64, H in {128, 512, 2048}, on torch and JAX.  Each configuration
runs in its own process.  The results go to ``bench/results/ffwd.json`` (``--json``) and
the table to ``docs/benchmarks.md`` (``--docs``), between the markers
``<!-- bench:ffwd:start -->`` / ``<!-- bench:ffwd:end -->`` (``ffwd-cuda`` for
``--device cuda``); the rest of that file is left alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, ffwd  # noqa: E402

HEADING = "## Feed-forward BPTT: forward + backward time and peak memory"


def _int_list(name: str):
    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.replace(",", " ").split()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be positive integers, got {text!r}") from None
        if not values or any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"{name} must be positive integers, got {text!r}")
        return values

    return parse


def _positive(name: str, lo: int = 1):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= {lo}, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= {lo}, got {text!r}")
        return v

    return parse


def _backends(text: str) -> list[str]:
    values = [v for v in text.replace(",", " ").split() if v]
    if not values or any(v not in ffwd.BACKENDS for v in values):
        raise argparse.ArgumentTypeError(f"--backends must be a list of {', '.join(ffwd.BACKENDS)}, got {text!r}")
    return values


def _device(text: str) -> str:
    kind, _, idx = text.partition(":")
    if kind not in ("cpu", "cuda") or (idx and not idx.isdigit()) or (kind == "cpu" and idx):
        raise argparse.ArgumentTypeError(f"--device must be 'cpu', 'cuda' or 'cuda:N', got {text!r}")
    return text


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    d = ffwd.DEFAULTS
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", type=_backends, default=d["backends"],
                   help="comma-separated from torch, jax (default: both)")
    p.add_argument("--hidden", type=_int_list("--hidden"), default=d["hidden"], help="hidden sizes H, comma-separated (default: 128,512,2048)")
    p.add_argument("--T", type=_positive("--T"), default=d["T"], help="time steps (default: 500)")
    p.add_argument("--batch", type=_positive("--batch"), default=d["batch"], help="batch size (default: 64)")
    p.add_argument("--repeats", type=_positive("--repeats"), default=d["repeats"], help="timed calls per configuration (default: 5)")
    p.add_argument("--warmup", type=_positive("--warmup", 0), default=d["warmup"], help="untimed calls before them (default: 2)")
    p.add_argument("--budget", type=float, default=d["budget_s"], metavar="S",
                   help="seconds of warm-up + timed calls per configuration; slower ones get fewer (>= 3) calls (default: 900)")
    p.add_argument("--device", type=_device, default=d["device"], help="cpu (default) or cuda[:N]")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT",
                   help="results JSON (default: bench/results/ffwd.json, or ffwd-cuda.json for --device cuda)")
    p.add_argument("--docs", default=str(common.REPO / "docs" / "benchmarks.md"), metavar="MD", help="markdown file whose table is rewritten")
    p.add_argument("--no-docs", action="store_true", help="leave the markdown file alone")
    p.add_argument("--from-json", default=None, metavar="IN",
                   help="run nothing: rewrite the docs table from a saved results JSON (e.g. bench/results/ffwd.json)")
    p.add_argument("--timeout", type=_positive("--timeout"), default=3600, help="seconds allowed per configuration (default: 3600)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite, write the JSON and the docs table; 0 when every configuration ran."""
    p = parser()
    args = p.parse_args(argv)
    if not args.budget > 0:
        p.error(f"--budget must be positive, got {args.budget!r}")
    progress = common.Progress(quiet=args.quiet)
    if args.from_json:
        try:
            report = json.loads(Path(args.from_json).read_text())
        except (OSError, ValueError) as err:
            p.error(f"--from-json: cannot read results from {args.from_json!r} ({err})")
        if report.get("benchmark") != ffwd.NAME:
            p.error(f"--from-json: {args.from_json!r} holds no {ffwd.NAME!r} results")
        device = report["config"]["device"]
    else:
        report = ffwd.run_suite(args.backends, args.hidden, args.T, args.batch, args.repeats, args.warmup, args.device,
                                budget_s=args.budget, timeout=args.timeout, progress=progress)
        device = args.device
    section = ffwd.section_name(device)
    if not args.from_json:
        out = Path(args.json_out) if args.json_out else common.REPO / "bench" / "results" / f"{section}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        progress(f"results: {out}")
    table = ffwd.render_markdown(report)
    if not args.no_docs:
        heading = HEADING + (f" ({device})" if device != "cpu" else "")
        progress(f"docs: {common.update_docs(args.docs, section, table, heading=heading)} (section {section})")
    if not args.quiet:
        print(table)
    failed = [r for r in report["results"] if "error" in r]
    for r in failed:
        print(f"\n{r['backend']} H={r['hidden']} failed:\n{r['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
