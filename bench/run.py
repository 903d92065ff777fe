"""Run the benchmarks: ``python bench/run.py [--suite ffwd|peers|rules|all]`` (``make bench``: all).

``--suite peers`` (``bench/peers.py``): neuroplastic against plain JAX/torch and the peer
libraries (snnTorch, Norse, SpikingJelly, Spyx, Slax, each in a bench-only virtual
environment under ``.bench-venvs/``) on one BPTT problem; section ``peers`` of the docs.
``--suite rules`` (``bench/rules.py``): seconds per training epoch of the main job's rules
and the online rules on both backends; section ``rules`` (``before``/``after`` columns).

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

from bench import common, ffwd, peers, rules  # noqa: E402

HEADING = "## Feed-forward BPTT: forward + backward time and peak memory"
PEERS_HEADING = "## Against peer libraries: forward + backward time on one problem"
RULES_HEADING = "## Rule comparison: seconds per training epoch"
SUITES = ("ffwd", "peers", "rules", "all")


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
    known = list(dict.fromkeys(ffwd.BACKENDS + rules.BACKENDS))
    if not values or any(v not in known for v in values):
        raise argparse.ArgumentTypeError(f"--backends must be a list of {', '.join(known)}, got {text!r}")
    return values


def _names(option: str, choices: Sequence[str]):
    def parse(text: str) -> list[str]:
        values = [v for v in text.replace(",", " ").split() if v]
        if not values or any(v not in choices for v in values):
            raise argparse.ArgumentTypeError(f"{option} must be a list of {', '.join(choices)}, got {text!r}")
        return values

    return parse


def _rule_cases(text: str) -> list:
    try:
        return [rules.parse_case(v) for v in text.replace(",", " ").split() if v] or [rules.parse_case("")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _device(text: str) -> str:
    kind, _, idx = text.partition(":")
    if kind not in ("cpu", "cuda") or (idx and not idx.isdigit()) or (kind == "cpu" and idx):
        raise argparse.ArgumentTypeError(f"--device must be 'cpu', 'cuda' or 'cuda:N', got {text!r}")
    return text


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    d = ffwd.DEFAULTS
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=SUITES, default="ffwd",
                   help="ffwd (default), peers, rules, or all three (make bench)")
    p.add_argument("--backends", type=_backends, default=None,
                   help="comma-separated from torch, jax and (--suite rules only) torch-compiled "
                        "(default: torch, jax; for --suite rules also torch-compiled)")
    p.add_argument("--hidden", type=_int_list("--hidden"), default=d["hidden"], help="hidden sizes H, comma-separated (default: 128,512,2048)")
    p.add_argument("--T", type=_positive("--T"), default=d["T"], help="time steps (default: 500)")
    p.add_argument("--batch", type=_positive("--batch"), default=d["batch"], help="batch size (default: 64)")
    p.add_argument("--repeats", type=_positive("--repeats"), default=d["repeats"], help="timed calls per configuration (default: 5)")
    p.add_argument("--warmup", type=_positive("--warmup", 0), default=d["warmup"], help="untimed calls before them (default: 2)")
    p.add_argument("--budget", type=float, default=d["budget_s"], metavar="S",
                   help="seconds of warm-up + timed calls per configuration; slower ones get fewer (>= 3) calls (default: 900)")
    p.add_argument("--min-time", dest="min_time", type=float, default=d["min_timed_s"], metavar="S",
                   help="ffwd and peers: a configuration whose --repeats calls take less than S seconds gets more timed "
                        f"calls, up to {d['max_repeats']} (default: {d['min_timed_s']:g}; 0: exactly --repeats)")
    p.add_argument("--device", type=_device, default=d["device"], help="cpu (default) or cuda[:N]")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT",
                   help="results JSON (default: bench/results/ffwd.json, or ffwd-cuda.json for --device cuda)")
    p.add_argument("--docs", default=str(common.REPO / "docs" / "benchmarks.md"), metavar="MD", help="markdown file whose table is rewritten")
    p.add_argument("--no-docs", action="store_true", help="leave the markdown file alone")
    p.add_argument("--from-json", default=None, metavar="IN",
                   help="run nothing: rewrite the docs table from a saved results JSON (e.g. bench/results/ffwd.json)")
    p.add_argument("--timeout", type=_positive("--timeout"), default=3600, help="seconds allowed per configuration (default: 3600)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    g = p.add_argument_group("--suite peers")
    g.add_argument("--peers", type=_names("--peers", list(peers.BY_NAME)), default=list(peers.BY_NAME),
                   help="implementations, comma-separated (default: all): " + ", ".join(peers.BY_NAME))
    g.add_argument("--jax-hidden", type=_int_list("--jax-hidden"), default=[], metavar="H",
                   help="extra hidden sizes for the JAX implementations only (e.g. 8192)")
    g.add_argument("--env-root", default=str(peers.ENV_ROOT), metavar="DIR", help="where the bench-only environments live")
    g.add_argument("--no-setup", action="store_true", help="do not install missing bench-only environments (report them unavailable)")
    g.add_argument("--setup-only", action="store_true", help="install the bench-only environments and stop (make bench-peers-env)")
    g = p.add_argument_group("--suite rules")
    g.add_argument("--rules", type=_rule_cases, default=None, metavar="LIST",
                   help="rule[:mode[:hidden]], comma-separated (default: the main job's six rules, rtrl:online:16, ottt:online, otpe:online)")
    g.add_argument("--epochs", type=_positive("--epochs", 2), default=rules.DEFAULTS["epochs"], help="epochs per rule (default: 3)")
    g.add_argument("--train-examples", type=_positive("--train-examples"), default=rules.DEFAULTS["train_examples"],
                   help="training examples (default: 512)")
    g.add_argument("--test-examples", type=_positive("--test-examples"), default=rules.DEFAULTS["test_examples"],
                   help="test examples evaluated after each epoch (default: 256)")
    g.add_argument("--column", choices=rules.COLUMNS, default=None,
                   help="which column the run fills (default: before until bench/results/rules-before.json exists, then after)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite(s), write the JSON and the docs table; 0 when every configuration ran."""
    p = parser()
    args = p.parse_args(argv)
    if not args.budget > 0:
        p.error(f"--budget must be positive, got {args.budget!r}")
    if not args.min_time >= 0:
        p.error(f"--min-time must be >= 0 seconds, got {args.min_time!r}")
    if args.suite == "all" and (args.json_out or args.from_json):
        p.error("--json and --from-json name one suite's results: use them with --suite ffwd, peers or rules")
    progress = common.Progress(quiet=args.quiet)
    if args.setup_only:
        failed = {k: v for k, v in peers.setup_envs(root=Path(args.env_root), progress=progress).items() if v}
        for env, why in failed.items():
            print(f"{env}: {why}", file=sys.stderr)
        return 0  # a peer that cannot be installed is reported as unavailable by the suite, not an error here
    status = 0
    if args.suite in ("ffwd", "all"):
        status |= main_ffwd(p, args, progress)
    if args.suite in ("peers", "all"):
        status |= main_peers(p, args, progress)
    if args.suite in ("rules", "all"):
        status |= main_rules(p, args, progress)
    return status


def _read_report(p: argparse.ArgumentParser, path: str, name: str) -> dict:
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        p.error(f"--from-json: cannot read results from {path!r} ({err})")
    if report.get("benchmark") != name:
        p.error(f"--from-json: {path!r} holds no {name!r} results")
    return report


def main_peers(p: argparse.ArgumentParser, args: argparse.Namespace, progress: common.Progress) -> int:
    """The peers suite; 0 when every available implementation ran and agreed (unavailable peers are not failures)."""
    if args.from_json:
        report = peers.recheck(_read_report(p, args.from_json, peers.NAME))
    else:
        try:
            report = peers.run_suite(args.peers, args.hidden, args.T, args.batch, args.repeats, args.warmup, args.budget,
                                     jax_hidden=args.jax_hidden, min_timed_s=args.min_time, timeout=args.timeout, env_root=args.env_root,
                                     setup=not args.no_setup, progress=progress)
        except ValueError as err:
            p.error(str(err))
        out = Path(args.json_out) if args.json_out else common.REPO / "bench" / "results" / f"{peers.NAME}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        progress(f"results: {out}")
    table = peers.render_markdown(report)
    if not args.no_docs:
        progress(f"docs: {common.update_docs(args.docs, peers.section_name(), table, heading=PEERS_HEADING)} (section {peers.NAME})")
    if not args.quiet:
        print(table)
    # a peer that fails or disagrees is flagged in the table and here; only our own rows fail the suite
    flagged = [r for r in report["results"] if "error" in r or (r.get("agreement") or {}).get("ok") is False]
    for r in flagged:
        why = r.get("error") or f"disagrees: {r['agreement']}"
        print(f"\n{r['implementation']} H={r['hidden']}: {why}", file=sys.stderr)
    return 1 if any(BY_KIND.get(r["implementation"]) != "peer" for r in flagged) else 0


BY_KIND = {impl.name: impl.kind for impl in peers.IMPLEMENTATIONS}


def main_rules(p: argparse.ArgumentParser, args: argparse.Namespace, progress: common.Progress) -> int:
    """The rule-comparison suite; fills the ``before`` or ``after`` column."""
    results_dir = common.REPO / "bench" / "results"
    if args.from_json:
        report = _read_report(p, args.from_json, rules.NAME)
        reports = {**rules.load_reports(results_dir), (args.column or "after"): report}
        failed = []
    else:
        column = args.column or rules.default_column(results_dir)
        backends = args.backends or rules.DEFAULTS["backends"]
        try:
            report = rules.run_suite(args.rules, backends, args.epochs, args.train_examples, args.test_examples,
                                     timeout=args.timeout, progress=progress)
        except ValueError as err:
            p.error(str(err))
        report["column"] = column
        out = Path(args.json_out) if args.json_out else rules.results_path(column, results_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        progress(f"results: {out} (column {column})")
        reports = {**(rules.load_reports(results_dir) if not args.json_out else {}), column: report}
        failed = [r for r in report["results"] if "error" in r]
    table = rules.render_markdown(reports)
    if not args.no_docs:
        progress(f"docs: {common.update_docs(args.docs, rules.NAME, table, heading=RULES_HEADING)} (section {rules.NAME})")
    if not args.quiet:
        print(table)
    for r in failed:
        print(f"\n{r['case']} on {r['backend']} failed:\n{r['error']}", file=sys.stderr)
    return 1 if failed else 0


def main_ffwd(p: argparse.ArgumentParser, args: argparse.Namespace, progress: common.Progress) -> int:
    """The feed-forward BPTT suite."""
    if args.from_json:
        try:
            report = json.loads(Path(args.from_json).read_text())
        except (OSError, ValueError) as err:
            p.error(f"--from-json: cannot read results from {args.from_json!r} ({err})")
        if report.get("benchmark") != ffwd.NAME:
            p.error(f"--from-json: {args.from_json!r} holds no {ffwd.NAME!r} results")
        device = report["config"]["device"]
    else:
        report = ffwd.run_suite(args.backends or ffwd.DEFAULTS["backends"], args.hidden, args.T, args.batch, args.repeats, args.warmup, args.device,
                                budget_s=args.budget, timeout=args.timeout, progress=progress, min_timed_s=args.min_time)
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
