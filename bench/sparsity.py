"""Event sparsity: does a sparse product beat the dense one for spike inputs, and below what density?

``python -m bench.sparsity`` (issue 12, "below the time of the dense matmuls alone").  For a
binary input ``x`` (``rows x H``, each entry 1 with probability ``density``) and a float32
weight ``W`` (``H x H``), it times the two products a Dense projection of spikes needs:
the forward ``x @ W`` and the weight gradient ``x^T @ g`` (``g`` dense, ``rows x H``), each
dense and in the sparse forms each framework offers on the CPU:

* torch: CSR (``x.to_sparse_csr() @ W``, MKL's sparse routines) and COO
  (``torch.sparse.mm``), the conversion from dense included in the time;
* JAX (jit-compiled; the number of non-zeros is fixed at trace time): ``BCOO.fromdense`` and
  a gather + ``segment_sum`` of the active rows of ``W``;
* both: ``event``, neuroplastic's own event kernels (``backend/event_matmul.cc``: the
  non-zeros listed per row, rows of ``W`` in 256-byte column panels; through ``ctypes`` on
  torch and an XLA FFI call on JAX), the kernels ``Backend.event_matmul`` selects.

The figure is the process CPU time of one call (minimum over ``--repeats``), which a loaded,
shared machine inflates less than wall-clock time; every (framework, density) runs in its
own process (:func:`bench.common.run_isolated`).  Results go to
``bench/results/sparsity.json`` and the section ``sparsity`` of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402

NAME = "sparsity"
DEFAULTS = {"rows": 4096, "hidden": 2048, "densities": [0.01, 0.02, 0.04, 0.083, 0.15, 0.25], "repeats": 3, "seed": 0}


def _cpu_time(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def measure(config: dict) -> dict:
    """One (framework, density): CPU seconds of each product form, and its largest difference from dense."""
    import numpy as np

    rng = np.random.default_rng(config["seed"])
    rows, H, density = config["rows"], config["hidden"], config["density"]
    x = (rng.random((rows, H)) < density).astype(np.float32)
    W = rng.normal(size=(H, H)).astype(np.float32)
    g = rng.normal(size=(rows, H)).astype(np.float32)
    times: dict = {}
    errors: dict = {}
    if config["framework"] == "torch":
        import torch

        xt, Wt, gt = torch.from_numpy(x), torch.from_numpy(W), torch.from_numpy(g)
        forms = {
            "dense": (lambda: xt @ Wt, lambda: xt.T @ gt),
            "csr": (lambda: xt.to_sparse_csr() @ Wt, lambda: xt.T.contiguous().to_sparse_csr() @ gt),
            "coo": (lambda: torch.sparse.mm(xt.to_sparse(), Wt), lambda: torch.sparse.mm(xt.T.to_sparse(), gt)),
        }
        from neuroplastic.backend import events_torch, native

        if native.event_library() is not None:
            forms["event"] = (lambda: events_torch.kernel_product(xt, Wt), lambda: events_torch.kernel_weight_grad(xt, gt))
        to_np = lambda a: a.numpy()  # noqa: E731
    else:
        import jax
        import jax.numpy as jnp
        from jax.experimental import sparse

        nse, nse_t = int(x.sum()), int(x.sum())
        xj, Wj, gj = jnp.asarray(x), jnp.asarray(W), jnp.asarray(g)
        hi = jax.lax.Precision.HIGHEST

        def segment(a: Any, b: Any, n: int) -> Any:
            r, c = jnp.nonzero(a, size=n)
            return jax.ops.segment_sum(b[c], r, num_segments=a.shape[0])

        compiled = {
            "dense": (jax.jit(lambda a, b: jnp.matmul(a, b, precision=hi)), jax.jit(lambda a, b: jnp.matmul(a.T, b, precision=hi))),
            "bcoo": (jax.jit(lambda a, b: sparse.BCOO.fromdense(a, nse=nse) @ b),
                     jax.jit(lambda a, b: sparse.BCOO.fromdense(a.T, nse=nse_t) @ b)),
            "segment_sum": (jax.jit(lambda a, b: segment(a, b, nse)), jax.jit(lambda a, b: segment(a.T, b, nse_t))),
        }
        from neuroplastic.backend import events_jax, native

        if native.event_library_ffi() is not None:
            threads = native.usable_threads()
            compiled["event"] = (jax.jit(lambda a, b: events_jax.kernel_product(a, b, threads)),
                                 jax.jit(lambda a, b: events_jax.kernel_weight_grad(a, b, threads)))
        forms = {k: (lambda f=f: jax.block_until_ready(f(xj, Wj)), lambda f=b: jax.block_until_ready(f(xj, gj)))
                 for k, (f, b) in compiled.items()}
        to_np = np.asarray
    ref = [to_np(forms["dense"][0]()), to_np(forms["dense"][1]())]
    for name, (fwd, wgrad) in forms.items():
        times[name] = {"forward": _cpu_time(fwd, config["repeats"]), "weight_grad": _cpu_time(wgrad, config["repeats"])}
        errors[name] = max(float(np.abs(to_np(fwd()) - ref[0]).max()), float(np.abs(to_np(wgrad()) - ref[1]).max()))
    return {"framework": config["framework"], "density": density, "measured_density": float(x.mean()), "cpu_s": times,
            "max_abs_diff": errors}


def _load(avg: Any) -> str:
    return "unknown" if not avg else ", ".join(f"{a:.1f}" for a in avg)


def render_markdown(report: dict) -> str:
    """The docs section: one row per (framework, density, form), with ratios to the dense product."""
    cfg = report["config"]
    lines = [f"Measured {report['date']} with `python -m bench.sparsity`: `x` binary {cfg['rows']} x {cfg['hidden']}, "
             f"`W` and `g` float32; CPU seconds of one call (minimum of {cfg['repeats']}), conversion to the sparse "
             f"format included. {report['machine']}. Load average (1, 5, 15 min) before / after: "
             f"{_load(report['load_before'])} / {_load(report['load_after'])}.", ""]
    header = ["framework", "density", "form", "x @ W (s)", "x^T @ g (s)", "vs dense (x @ W)", "vs dense (x^T @ g)", "max abs diff"]
    rows = []
    for r in report["results"]:
        if "cpu_s" not in r:
            rows.append([r["framework"], r["density"], "failed", r.get("error", "")[-80:], "", "", "", ""])
            continue
        d = r["cpu_s"]["dense"]
        for form, t in r["cpu_s"].items():
            rows.append([r["framework"], f"{r['density']:g}", form, f"{t['forward']:.4f}", f"{t['weight_grad']:.4f}",
                         f"{t['forward'] / d['forward']:.2f}", f"{t['weight_grad'] / d['weight_grad']:.2f}",
                         f"{r['max_abs_diff'][form]:.1e}"])
    lines.append(common.markdown_table(header, rows, align="lrlrrrrr"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=DEFAULTS["rows"])
    p.add_argument("--hidden", type=int, default=DEFAULTS["hidden"])
    p.add_argument("--densities", default=",".join(str(d) for d in DEFAULTS["densities"]))
    p.add_argument("--frameworks", default="torch,jax")
    p.add_argument("--repeats", type=int, default=DEFAULTS["repeats"])
    p.add_argument("--json", default=str(common.REPO / "bench" / "results" / f"{NAME}.json"))
    p.add_argument("--docs", default=str(common.REPO / "docs" / "benchmarks.md"))
    p.add_argument("--no-docs", action="store_true")
    args = p.parse_args(argv)
    densities = [float(d) for d in args.densities.split(",")]
    if args.rows <= 0 or args.hidden <= 0 or args.repeats <= 0:
        p.error(f"--rows, --hidden and --repeats must be positive, got {args.rows}, {args.hidden}, {args.repeats}")
    if any(not (0 < d < 1) for d in densities):
        p.error(f"--densities must lie in (0, 1), got {densities}")
    frameworks = args.frameworks.split(",")
    if any(f not in ("torch", "jax") for f in frameworks):
        p.error(f"--frameworks: choose from torch, jax, got {args.frameworks!r}")
    load_before = common.load_average()
    results = []
    for fw in frameworks:
        for d in densities:
            cfg = {"framework": fw, "density": d, "rows": args.rows, "hidden": args.hidden, "repeats": args.repeats, "seed": 0}
            try:
                results.append(common.run_isolated("bench.sparsity:measure", cfg))
            except Exception as err:  # a failed form is reported, the suite goes on
                results.append({"framework": fw, "density": d, "error": str(err)})
            print(json.dumps(results[-1]), flush=True)
    m = common.machine_info()
    report = {"benchmark": NAME, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "config": {"rows": args.rows, "hidden": args.hidden, "densities": densities, "repeats": args.repeats},
              "machine": f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores", "load_before": load_before,
              "load_after": common.load_average(), "results": results}
    Path(args.json).write_text(json.dumps(report, indent=1))
    if not args.no_docs:
        common.update_docs(args.docs, NAME, render_markdown(report))
    print(render_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
