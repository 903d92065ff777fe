"""neuroplastic against peer libraries on one BPTT problem, each in its own process.

The problem (issue 12): ``Dense(100->H)+bias -> LIF -> Dense(H->H)+bias -> LIF ->
Dense(H->10)+bias -> LIF``, T=500, batch 64, LIF decay 0.9, threshold 1, subtractive
reset, fast-sigmoid surrogate ``1/(1+25|x|)^2``, cross-entropy of the output spike counts
(``ce_sum``); one forward plus backward (BPTT) pass in float32, returning the loss and
the weight gradients.  The weights, biases, input spikes and labels are drawn once with
numpy (:func:`make_problem`), written to an ``.npz`` and read by every implementation.

Each implementation is a script in ``bench/peers/`` with a ``measure(config) -> dict``
function, run by :func:`bench.common.run_isolated` with its own interpreter: the main
virtual environment for neuroplastic and the plain JAX/torch references, and a bench-only
virtual environment under ``.bench-venvs/<peer>/`` for each peer library, installed from
the package registry by :func:`ensure_env` (``make bench-peers-env``), because the peers
pin their own torch/JAX/Flax versions.  A peer whose environment is missing, fails to
install or fails to run is reported as ``unavailable: <reason>``; the suite goes on.

Every implementation reports its loss and the L2 norm of each weight and bias gradient.
Where a peer's neuron cannot be configured to neuroplastic's exact semantics, its
:class:`Semantics` say how it differs, and its numbers are checked against a plain-JAX
reference of those semantics (``bench/peers/reference.py``), computed in the same run;
everything else is checked against neuroplastic itself.

This module imports only the standard library (and numpy in the functions that need it):
the implementation scripts import it from the peers' interpreters too.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from . import common

NAME = "peers"
#: where the bench-only virtual environments live (gitignored)
ENV_ROOT = common.REPO / ".bench-venvs"
SCRIPTS = "bench/peers"
DEFAULTS: dict = {
    "hidden": [128, 512, 2048],
    "T": 500,
    "batch": 64,
    "n_in": 100,
    "n_out": 10,
    "decay": 0.9,
    "threshold": 1.0,
    "slope": 25.0,
    "input_rate": 0.2,
    "bias_std": 0.1,
    "seed": 0,
    "repeats": 5,
    "warmup": 2,
    "min_repeats": 3,
    "budget_s": 900.0,
    # fast cells: more timed calls (up to max_repeats) until they add up to min_timed_s (common.time_calls)
    "min_timed_s": 2.0,
    "max_repeats": 60,
    # agreement: loss relative difference, and each gradient norm's relative difference
    "loss_rtol": 1e-5,
    "grad_rtol": 1e-3,
}
#: the gradient norms every implementation reports, in this order
GRAD_NAMES = ("w1", "b1", "w2", "b2", "w3", "b3")


# ---------------------------------------------------------------------------- semantics


@dataclass(frozen=True)
class Semantics:
    """How an implementation's LIF neuron computes, relative to neuroplastic's.

    neuroplastic (``model="neuroplastic"``, the defaults): ``u_t = decay v_{t-1} + I_t``,
    ``z_t = H(u_t - 1)``, ``v_t = u_t - sg(z_t)`` (reset detached), surrogate
    ``scale / (1 + slope |x|)^2`` with scale 1, slope 25.

    * ``detach_reset=False``: the surrogate gradient also flows through the reset;
    * ``surrogate_scale`` / ``surrogate_slope``: another surrogate of the same family;
    * ``model="snntorch"``: snnTorch's ``Leaky(reset_delay=False)``: the reset of the
      previous step's membrane ``r = sg(H(v_{t-1} - 1))`` is subtracted before the spike
      and added back after it (``v_t = u_t - (z_t - r)``); differs from neuroplastic only
      when a membrane stays above threshold after its reset;
    * ``model="spyx"``: Spyx's ``LIF``: the spike of step t comes from the membrane
      before the input, ``z_t = H(V_{t-1} - 1)``, ``V_t = decay V_{t-1} + I_t - z_t``
      (undecayed reset, not detached).
    """

    model: str = "neuroplastic"
    detach_reset: bool = True
    surrogate_scale: float = 1.0
    surrogate_slope: float = 25.0

    def key(self) -> str:
        """A short stable name, e.g. ``neuroplastic/attached-reset/scale=12.5``."""
        parts = [self.model]
        if not self.detach_reset:
            parts.append("attached-reset")
        if self.surrogate_scale != 1.0:
            parts.append(f"scale={self.surrogate_scale:g}")
        if self.surrogate_slope != DEFAULTS["slope"]:
            parts.append(f"slope={self.surrogate_slope:g}")
        return "/".join(parts)

    def describe(self) -> str:
        """The differences from neuroplastic's neuron, in words ('' when there are none)."""
        out = []
        if self.model == "snntorch":
            out.append("reset applied one step late and undone after the spike (snnTorch reset_delay=False)")
        if self.model == "spyx":
            out.append("spike from the membrane before the input (one step later), undecayed reset")
        if not self.detach_reset:
            out.append("reset not detached")
        if self.surrogate_scale != 1.0 or self.surrogate_slope != DEFAULTS["slope"]:
            out.append(f"surrogate {self.surrogate_scale:g}/(1+{self.surrogate_slope:g}|x|)^2")
        return "; ".join(out)


OURS = Semantics()


# ---------------------------------------------------------------------------- implementations


@dataclass(frozen=True)
class Implementation:
    """One implementation of the problem: a script, the interpreter it runs with, its semantics."""

    name: str
    label: str
    script: str
    kind: str  # "neuroplastic", "reference" (plain JAX / torch) or "peer"
    env: str | None = None  # None: the main virtual environment; else .bench-venvs/<env>
    options: dict = field(default_factory=dict)
    semantics: Semantics = OURS
    framework: str = "jax"
    note: str = ""


IMPLEMENTATIONS: tuple[Implementation, ...] = (
    Implementation("neuroplastic-jax", "**neuroplastic, JAX**", "neuroplastic_impl.py", "neuroplastic",
                   options={"backend": "jax"}, note="`BPTT().gradients`, jit-compiled"),
    Implementation("neuroplastic-torch", "**neuroplastic, torch**", "neuroplastic_impl.py", "neuroplastic",
                   options={"backend": "torch"}, framework="torch", note="`BPTT().gradients`, eager"),
    Implementation("neuroplastic-torch-compiled", "**neuroplastic, torch compiled**", "neuroplastic_impl.py", "neuroplastic",
                   options={"backend": "torch", "compile": True}, framework="torch",
                   note="`BPTT().gradients` through `get_backend('torch', compile=True).jit`: traced once, compiled by "
                        "TorchInductor, the LIF loops and event products as custom operators (compiled in the warm-up)"),
    Implementation("neuroplastic-jax-reference", "neuroplastic, JAX, reference path", "neuroplastic_impl.py",
                   "reference", options={"backend": "jax", "fused": False, "events": False},
                   note="as neuroplastic, JAX, with `Network(..., fused=False)` and `NEUROPLASTIC_EVENT_KERNELS=0`: a scan "
                        "of `LIF.step` per layer instead of the fused kernel, dense products instead of the event kernels "
                        "(the speed of the fast paths, measured in the same run)"),
    Implementation("neuroplastic-torch-reference", "neuroplastic, torch, reference path", "neuroplastic_impl.py",
                   "reference", options={"backend": "torch", "fused": False, "events": False}, framework="torch",
                   note="as neuroplastic, torch, with `Network(..., fused=False)` and `NEUROPLASTIC_EVENT_KERNELS=0`"),
    Implementation("jax-scan", "plain JAX, scan over time, all layers in the body", "plain_jax.py", "reference",
                   options={"variant": "scan"}),
    Implementation("jax-layer", "plain JAX, layer by layer (one matmul per layer, scan per LIF)", "plain_jax.py", "reference",
                   options={"variant": "layer"}),
    Implementation("torch-layer", "plain torch, layer by layer (one matmul per layer, loop per LIF)", "plain_torch.py", "reference",
                   framework="torch"),
    Implementation("snntorch", "snnTorch 1.0 `Leaky`", "peer_snntorch.py", "peer", env="snntorch", framework="torch",
                   semantics=Semantics(model="snntorch", detach_reset=False),
                   note="`Leaky(beta=0.9, reset_mechanism='subtract', reset_delay=False)`, `fast_sigmoid(slope=25)`; "
                        "layer by layer, Python loop over time"),
    Implementation("norse", "Norse 1.1 `LIFBoxCell`", "peer_norse.py", "peer", env="norse", framework="torch",
                   semantics=Semantics(detach_reset=False, surrogate_slope=1.0),
                   note="`LIFBoxParameters(tau_mem_inv=0.1, v_leak=0, v_th=1, reset_method=reset_subtract, method='super')`, "
                        "dt=1, weights x10 (Norse integrates 0.1 x input); its SuperSpike ignores `alpha` (slope 1)"),
    Implementation("spikingjelly", "SpikingJelly 2.0 `LIFNode`, fast-sigmoid surrogate", "peer_spikingjelly.py", "peer",
                   env="spikingjelly", framework="torch", options={"surrogate": "fast_sigmoid"},
                   note="`LIFNode(tau=10, decay_input=False, v_reset=None, detach_reset=True, step_mode='m')` with a "
                        "user-defined fast-sigmoid surrogate: SpikingJelly's Torch reference path (autograd per step)"),
    Implementation("spikingjelly-softsign", "SpikingJelly 2.0 `LIFNode`, SoftSign surrogate (CPU kernel)", "peer_spikingjelly.py",
                   "peer", env="spikingjelly", framework="torch", options={"surrogate": "softsign"},
                   semantics=Semantics(surrogate_scale=12.5),
                   note="as above with `surrogate.SoftSign(alpha=25)` = 12.5/(1+25|x|)^2, a built-in surrogate, so the "
                        "registered multistep CPU operator runs (one autograd node per layer)"),
    Implementation("spyx", "Spyx 1.0 `LIF`", "peer_spyx.py", "peer", env="spyx",
                   semantics=Semantics(model="spyx", detach_reset=False),
                   note="`spyx.nn.LIF(beta=0.9, activation=superspike(25))` in `spyx.nn.Sequential` with `nnx.Linear`, "
                        "`spyx.nn.run` (scan over time); gradients of the linear layers only"),
    Implementation("slax", "Slax 0.0.1 `LIF` (scan)", "peer_slax.py", "peer", env="slax",
                   semantics=Semantics(detach_reset=False),
                   note="`slax.LIF(init_tau=logit(0.9), spike_fn=fast_sigmoid(25))` with `flax.linen.Dense`, "
                        "`slax.RNN` (flax scan over time, all layers in the body)"),
)
BY_NAME = {impl.name: impl for impl in IMPLEMENTATIONS}
MAIN_VENV = tuple(i.name for i in IMPLEMENTATIONS if i.env is None)


# ---------------------------------------------------------------------------- bench-only environments


@dataclass(frozen=True)
class PeerEnv:
    """What a bench-only virtual environment holds: ``requirements`` installed with the
    project's ``constraints.txt`` (its torch pin), then ``no_deps`` without dependencies."""

    requirements: tuple[str, ...]
    no_deps: tuple[str, ...] = ()
    why: str = ""

    def digest(self) -> str:
        return hashlib.sha256(json.dumps([self.requirements, self.no_deps]).encode()).hexdigest()[:16]


PEER_ENVS: dict[str, PeerEnv] = {
    "snntorch": PeerEnv(("torch==2.13.0", "snntorch==1.0.0", "numpy")),
    "norse": PeerEnv(("torch==2.13.0", "norse==1.1.0")),
    # spikingjelly 2.0 requires torchaudio, whose releases all pin another torch; the
    # neuron modules import only torch, numpy and loguru
    "spikingjelly": PeerEnv(("torch==2.13.0", "numpy", "loguru>=0.7,<1"), ("spikingjelly==2.0.0",),
                            why="torchaudio (a declared dependency) has no release for torch 2.13: installed without it"),
    "spyx": PeerEnv(("spyx==1.0.0",)),
    "slax": PeerEnv(("slax==0.0.1",)),
}
STAMP = ".neuroplastic-bench.json"


def env_python(env: str, root: Path = ENV_ROOT) -> Path:
    """The interpreter of bench-only environment ``env``."""
    return Path(root) / env / "bin" / "python"


def env_status(env: str, root: Path = ENV_ROOT) -> str | None:
    """``None`` when environment ``env`` is installed with its current spec, else why not."""
    if env not in PEER_ENVS:
        raise ValueError(f"env: unknown peer environment {env!r}; choose one of {sorted(PEER_ENVS)}")
    stamp = Path(root) / env / STAMP
    if not env_python(env, root).exists():
        return f"no virtual environment at {Path(root) / env} (make bench-peers-env)"
    try:
        info = json.loads(stamp.read_text())
    except (OSError, ValueError):
        return f"{Path(root) / env} is not set up (make bench-peers-env)"
    if info.get("error"):
        return f"install failed: {info['error']}"
    if info.get("digest") != PEER_ENVS[env].digest():
        return f"{Path(root) / env} was built from another package list (make bench-peers-env)"
    return None


def ensure_env(env: str, root: Path = ENV_ROOT, retry: bool = False, progress: Callable[[str], None] = lambda m: None,
               timeout: float = 1800.0) -> str | None:
    """Create and install bench-only environment ``env`` unless it is already there.

    Returns ``None`` when it is ready, else the reason it is not (recorded in the stamp
    file, so a failed install is not retried on every run unless ``retry``).
    """
    status = env_status(env, root)
    if status is None:
        return None
    if status.startswith("install failed") and not retry:
        return status
    spec, where = PEER_ENVS[env], Path(root) / env
    if where.exists():
        shutil.rmtree(where)
    where.parent.mkdir(parents=True, exist_ok=True)
    py = env_python(env, root)
    constraints = common.REPO / "constraints.txt"
    steps = [[sys.executable, "-m", "venv", str(where)],
             [str(py), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
             [str(py), "-m", "pip", "install", "--quiet", "-c", str(constraints), *spec.requirements]]
    if spec.no_deps:
        steps.append([str(py), "-m", "pip", "install", "--quiet", "--no-deps", *spec.no_deps])
    progress(f"{NAME}: installing {env} into {where}: {' '.join(spec.requirements + spec.no_deps)}")
    error = None
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            error = f"`{' '.join(cmd[2:5])} ...` took over {timeout:.0f} s"
            break
        if proc.returncode != 0:
            lines = [ln for ln in (proc.stderr + proc.stdout).strip().splitlines() if ln.strip()]
            error = (lines[-1] if lines else f"exit status {proc.returncode}").strip()[:300]
            break
    info = {"digest": spec.digest(), "requirements": list(spec.requirements), "no_deps": list(spec.no_deps),
            "installed": time.strftime("%Y-%m-%d %H:%M %Z"), "error": error}
    if error is None:
        info["versions"] = env_versions(env, root)
    where.mkdir(parents=True, exist_ok=True)
    (where / STAMP).write_text(json.dumps(info, indent=2) + "\n")
    progress(f"{NAME}: {env}: " + ("ready" if error is None else f"install failed: {error}"))
    return None if error is None else f"install failed: {error}"


def env_versions(env: str, root: Path = ENV_ROOT) -> dict:
    """Versions of the main packages in environment ``env`` (``pip`` metadata, no imports)."""
    names = ["torch", "jax", "jaxlib", "flax", "numpy", "snntorch", "norse", "spikingjelly", "spyx", "slax"]
    code = ("import json, importlib.metadata as m\nout = {}\nfor n in %r:\n    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\nprint(json.dumps(out))" % names)
    try:
        proc = subprocess.run([str(env_python(env, root)), "-c", code], capture_output=True, text=True, timeout=120)
        return json.loads(proc.stdout) if proc.returncode == 0 else {}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}


def setup_envs(envs: Sequence[str] | None = None, root: Path = ENV_ROOT, retry: bool = True,
               progress: Callable[[str], None] = lambda m: None) -> dict[str, str | None]:
    """Install every bench-only environment (``make bench-peers-env``); name -> ``None`` or the failure."""
    return {env: ensure_env(env, root, retry=retry, progress=progress) for env in (envs or sorted(PEER_ENVS))}


# ---------------------------------------------------------------------------- the problem


def make_problem(hidden: int, config: dict | None = None) -> dict:
    """The numpy weights, biases, input spikes and labels of one hidden size.

    Weights ``N(0, 1/n_in)`` (shape ``(n_in, n_out)``, ``I = x @ w + b``), biases
    ``N(0, bias_std^2)``, inputs Bernoulli(``input_rate``) of shape ``(T, batch, n_in)``,
    labels uniform; float32, from ``seed`` (the same for every H up to the sizes).
    """
    import numpy as np

    cfg = {**DEFAULTS, **(config or {})}
    if not (isinstance(hidden, int) and hidden > 0):
        raise ValueError(f"hidden: must be a positive integer, got {hidden!r}")
    rng = np.random.default_rng(cfg["seed"])
    sizes = [cfg["n_in"], hidden, hidden, cfg["n_out"]]
    out: dict = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        out[f"w{i}"] = rng.normal(0.0, 1.0 / math.sqrt(a), (a, b)).astype(np.float32)
        out[f"b{i}"] = rng.normal(0.0, cfg["bias_std"], (b,)).astype(np.float32)
    data_rng = np.random.default_rng(cfg["seed"] + 1)
    out["xs"] = (data_rng.random((cfg["T"], cfg["batch"], cfg["n_in"])) < cfg["input_rate"]).astype(np.float32)
    out["labels"] = data_rng.integers(0, cfg["n_out"], cfg["batch"]).astype(np.int64)
    return out


def write_problem(path: str | Path, hidden: int, config: dict | None = None) -> Path:
    """:func:`make_problem` saved as an ``.npz`` (plain arrays: no pickle)."""
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **make_problem(hidden, config))
    return path


def load_problem(path: str | Path) -> dict:
    """The arrays of a problem file (``allow_pickle=False``)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# ---------------------------------------------------------------------------- child side


def grad_norms(grads: Sequence[Any]) -> list[float]:
    """L2 norms (float64) of the six gradients ``w1, b1, w2, b2, w3, b3``, given as numpy-convertible arrays."""
    import numpy as np

    if len(grads) != len(GRAD_NAMES):
        raise ValueError(f"grads: expected {len(GRAD_NAMES)} arrays ({', '.join(GRAD_NAMES)}), got {len(grads)}")
    return [float(np.linalg.norm(np.asarray(g, dtype=np.float64))) for g in grads]


def measure_step(config: dict, step: Callable[[], Any], sync: Callable[[Any], Any], read: Callable[[Any], tuple],
                 compile_fn: Callable[[], Any] | None = None) -> dict:
    """Time ``step`` as every implementation does: (compile,) first call, warm-up, timed calls.

    ``step()`` runs one forward + backward pass; ``sync(out)`` waits for its result;
    ``read(out) -> (loss, [six gradients])`` converts it.  ``compile_fn`` (JAX) is timed on
    its own before the first call.  Warm-ups and repeats are cut to fit ``budget_s`` as in
    the ffwd suite (:func:`bench.ffwd.plan_calls`).
    """
    from .ffwd import plan_calls

    cfg = {**DEFAULTS, **config}
    result: dict = {}
    if compile_fn is not None:
        t0 = time.perf_counter()
        compile_fn()
        result["compile_s"] = time.perf_counter() - t0
    else:
        result["compile_s"] = None
    with common.RssPhase() as first:
        t0 = time.perf_counter()
        out = sync(step())
        result["first_call_s"] = time.perf_counter() - t0
    loss, grads = read(out)
    result["loss"] = float(loss)
    result["grad_norms"] = grad_norms(grads)
    del out, grads
    warmup, repeats = plan_calls(result["first_call_s"], cfg["warmup"], cfg["repeats"], cfg["min_repeats"], cfg["budget_s"])
    reduced = (warmup, repeats) != (cfg["warmup"], cfg["repeats"])
    with common.RssPhase() as steady:  # a cell cut to fit the budget gets no extra calls
        times = common.time_calls(step, repeats, warmup, sync, min_seconds=0.0 if reduced else cfg["min_timed_s"],
                                  max_repeats=cfg["max_repeats"])
    result.update({
        "warmup": warmup, "reduced": reduced,
        "times_s": times, "time": common.summarize(times),
        "rss_increase_mib": max(0, steady.peak_bytes - first.start_bytes) / common.MiB,
    })
    return result


def torch_threads() -> int | None:
    """torch's intra-op thread count in this process, or ``None`` without torch."""
    if "torch" not in sys.modules:
        return None
    return int(sys.modules["torch"].get_num_threads())


# ---------------------------------------------------------------------------- agreement


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


def compare(result: dict, expected: dict) -> dict:
    """Relative differences of ``result``'s loss and gradient norms from ``expected``'s."""
    g = [_rel(a, b) for a, b in zip(result["grad_norms"], expected["grad_norms"])]
    return {"loss_rel": _rel(result["loss"], expected["loss"]), "grad_rel_max": max(g) if g else 0.0, "grad_rel": g}


def check_agreement(results: list[dict], references: dict, config: dict) -> None:
    """Add ``agreement`` to every measured result of one H (in place).

    An implementation with neuroplastic's semantics is compared with neuroplastic (JAX,
    else torch); the others with the plain-JAX reference of their semantics, and that
    reference's own agreement is reported alongside.  neuroplastic's two backends are
    compared with each other and with the plain-JAX layer-by-layer reference.
    """
    ok = {r["implementation"]: r for r in results if "error" not in r and "loss" in r}
    ours = ok.get("neuroplastic-jax") or ok.get("neuroplastic-torch")
    for r in results:
        if r["implementation"] not in ok:
            continue
        impl = BY_NAME[r["implementation"]]
        if impl.kind == "neuroplastic":
            other = ok.get("neuroplastic-torch" if impl.name == "neuroplastic-jax" else "neuroplastic-jax") or ok.get("jax-layer")
            against = None if other is None else other["implementation"]
            expected = other
        elif impl.semantics == OURS:
            against, expected = (None, None) if ours is None else (ours["implementation"], ours)
        else:
            key = impl.semantics.key()
            ref = references.get(key)
            against, expected = (f"reference {key}", ref) if ref is not None and "error" not in ref else (None, None)
        if expected is None:
            r["agreement"] = {"against": against, "ok": None, "why": "nothing to compare with"}
            continue
        d = compare(r, expected)
        d["against"] = against
        # the loss is a batch mean of cross-entropies of spike counts in the hundreds: one output
        # spike more or less in one example moves it by about 1/batch
        d["loss_diff_per_example"] = abs(r["loss"] - expected["loss"]) * r.get("batch", config["batch"])
        d["ok"] = bool(d["loss_rel"] <= config["loss_rtol"] and d["grad_rel_max"] <= config["grad_rtol"])
        r["agreement"] = d


# ---------------------------------------------------------------------------- the suite


def check_config(implementations: Sequence[str], hidden: Sequence[int], T: int, batch: int, repeats: int, warmup: int) -> None:
    """Raise ``ValueError`` naming the bad argument."""
    unknown = [n for n in implementations if n not in BY_NAME]
    if not implementations or unknown:
        raise ValueError(f"--peers must be a non-empty list of {', '.join(BY_NAME)}, got {list(implementations)!r}")
    if not hidden or any(not (isinstance(h, int) and h > 0) for h in hidden):
        raise ValueError(f"--hidden must be positive integers, got {list(hidden)!r}")
    for name, v, lo in (("--T", T, 1), ("--batch", batch, 1), ("--repeats", repeats, 1), ("--warmup", warmup, 0)):
        if not (isinstance(v, int) and v >= lo):
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


def run_suite(
    implementations: Sequence[str] = tuple(BY_NAME),
    hidden: Sequence[int] = DEFAULTS["hidden"],
    T: int = DEFAULTS["T"],
    batch: int = DEFAULTS["batch"],
    repeats: int = DEFAULTS["repeats"],
    warmup: int = DEFAULTS["warmup"],
    budget_s: float = DEFAULTS["budget_s"],
    jax_hidden: Sequence[int] = (),
    min_timed_s: float = DEFAULTS["min_timed_s"],
    timeout: float | None = 3600.0,
    env_root: str | Path = ENV_ROOT,
    setup: bool = True,
    progress: Callable[[str], None] = lambda msg: None,
) -> dict:
    """Run every implementation at every H, each in its own process; the JSON report.

    ``jax_hidden``: extra sizes run for the JAX implementations only (e.g. 8192).
    ``min_timed_s``: a cell whose ``repeats`` calls take less gets more (up to ``max_repeats``; 0: none).
    ``setup``: install a missing bench-only environment first (else it is reported as
    unavailable).  An implementation that cannot run is reported with its ``error``.
    """
    implementations = list(implementations)
    check_config(implementations, hidden, T, batch, repeats, warmup)
    if any(not (isinstance(h, int) and h > 0) for h in jax_hidden):
        raise ValueError(f"--jax-hidden must be positive integers, got {list(jax_hidden)!r}")
    if not budget_s > 0:
        raise ValueError(f"--budget must be positive, got {budget_s!r}")
    if not min_timed_s >= 0:
        raise ValueError(f"--min-time must be >= 0, got {min_timed_s!r}")
    cfg = {**DEFAULTS, "T": T, "batch": batch, "repeats": repeats, "warmup": warmup, "budget_s": float(budget_s),
           "min_timed_s": float(min_timed_s)}
    t0 = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M %Z")
    load_before = common.load_average()
    env_root = Path(env_root)

    unavailable: dict[str, str] = {}
    env_info: dict[str, dict] = {}
    for env in sorted({BY_NAME[n].env for n in implementations if BY_NAME[n].env}):
        why = ensure_env(env, env_root, progress=progress) if setup else env_status(env, env_root)
        if why is None:
            try:
                env_info[env] = json.loads((env_root / env / STAMP).read_text())
            except (OSError, ValueError):
                env_info[env] = {}
        else:
            unavailable[env] = why
            progress(f"{NAME}: {env} unavailable: {why}")

    sizes = [(int(h), False) for h in hidden] + [(int(h), True) for h in jax_hidden if int(h) not in hidden]
    results: list[dict] = []
    references: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="neuroplastic-peers-") as tmp:
        for H, jax_only in sizes:
            problem = write_problem(Path(tmp) / f"problem-H{H}.npz", H, cfg)
            names = [n for n in implementations if not jax_only or BY_NAME[n].framework == "jax"]
            row: list[dict] = []
            for name in names:
                impl = BY_NAME[name]
                base = {"implementation": name, "hidden": H, "T": T, "batch": batch}
                if impl.env and impl.env in unavailable:
                    row.append({**base, "unavailable": unavailable[impl.env]})
                    continue
                child = {**cfg, **impl.options, "hidden": H, "problem": str(problem)}
                python = env_python(impl.env, env_root) if impl.env else None
                progress(f"{NAME}: {name} H={H} T={T} batch={batch} ...")
                load = common.load_average()
                try:
                    r = common.run_isolated(f"{SCRIPTS}/{impl.script}:measure", child, timeout=timeout, python=python)
                    progress(f"{NAME}: {name} H={H}: median {r['time']['median']:.4f} s over {r['time']['n']}, "
                             f"loss {r['loss']:.6f} ({r['child_wall_s']:.0f} s in all)")
                except common.BenchmarkError as err:
                    r = {"error": str(err)}
                    progress(f"{NAME}: {name} H={H} FAILED: {str(err).splitlines()[-1][:200]}")
                row.append({**base, **r, "load_average_before": load})
            # plain-JAX references of the other semantics that ran at this H
            needed = sorted({BY_NAME[r["implementation"]].semantics for r in row
                             if "loss" in r and BY_NAME[r["implementation"]].semantics != OURS}, key=Semantics.key)
            references[H] = {}
            if needed:
                progress(f"{NAME}: reference H={H}: {', '.join(s.key() for s in needed)} ...")
                try:
                    ref = common.run_isolated(f"{SCRIPTS}/reference.py:measure",
                                              {**cfg, "hidden": H, "problem": str(problem), "semantics": [asdict(s) for s in needed]},
                                              timeout=timeout)
                    references[H] = ref["references"]
                except common.BenchmarkError as err:
                    references[H] = {s.key(): {"error": str(err)} for s in needed}
                    progress(f"{NAME}: reference H={H} FAILED: {str(err).splitlines()[-1][:200]}")
            check_agreement(row, references[H], cfg)
            results.extend(row)

    return {
        "benchmark": NAME,
        "config": {**cfg, "hidden": [int(h) for h in hidden], "jax_hidden": [int(h) for h in jax_hidden],
                   "implementations": implementations},
        "machine": common.machine_info(),
        "git": common.git_state(),
        "started": started,
        "load_average_before": load_before,
        "load_average_after": common.load_average(),
        "wall_s": time.perf_counter() - t0,
        "environments": env_info,
        "unavailable": unavailable,
        "references": {str(h): v for h, v in references.items()},
        "results": results,
    }


# ---------------------------------------------------------------------------- markdown


def _cell(r: dict | None) -> str:
    if r is None:
        return "–"
    if "unavailable" in r:
        return "unavailable"
    if "skipped" in r:
        return "not run"
    if "error" in r:
        return "failed"
    t = r["time"]
    return f"{t['median']:.3f} ± {t['iqr'] / 2:.3f}" + ("*" if r.get("reduced") else "")


def _agreement(rows: Sequence[dict]) -> str:
    marks = []
    for r in rows:
        a = r.get("agreement")
        if a is None:
            continue
        if a.get("ok") is None:
            marks.append(f"H={r['hidden']}: not checked")
        elif a["ok"]:
            marks.append(f"H={r['hidden']}: ok")
        else:
            counts = a.get("loss_diff_per_example")
            flips = "" if counts is None or counts > 5.5 else f" = {counts:.2f}/batch: about {max(1, round(counts))} output spike count(s)"
            marks.append(f"H={r['hidden']}: **differs** (loss {a['loss_rel']:.1e}{flips}; grads {a['grad_rel_max']:.1e})")
    if not marks:
        return "–"
    if all(m.endswith(": ok") for m in marks):
        worst = max(max(r["agreement"]["loss_rel"], 0.0) for r in rows if r.get("agreement", {}).get("ok"))
        worst_g = max(r["agreement"]["grad_rel_max"] for r in rows if r.get("agreement", {}).get("ok"))
        return f"yes (loss ≤ {worst:.0e}, grads ≤ {worst_g:.0e})"
    return "; ".join(marks)


def _why_unavailable(rows: Sequence[dict]) -> str:
    out = []
    for r in rows:
        if "unavailable" in r:
            return "unavailable: " + r["unavailable"]
        if "skipped" in r:
            out.append(f"H={r['hidden']} not run: " + r["skipped"])
        elif "error" in r:
            out.append(f"H={r['hidden']} failed: " + r["error"].strip().splitlines()[-1][:160])
    return "; ".join(out)


def fastest(results: Sequence[dict], H: int, kinds: Sequence[str]) -> dict | None:
    """The measured result of the lowest median at ``H`` among implementations of ``kinds``."""
    ok = [r for r in results if r["hidden"] == H and "time" in r and BY_NAME[r["implementation"]].kind in kinds]
    return min(ok, key=lambda r: r["time"]["median"]) if ok else None


def ratio_rows(report: dict) -> list[list[str]]:
    """Per H: neuroplastic's best backend over the fastest peer and over the fastest of all others; torch / JAX and
    torch compiled / JAX."""
    res = report["results"]
    rows = []
    for H in sorted({r["hidden"] for r in res}):
        ours = fastest(res, H, ("neuroplastic",))
        peer = fastest(res, H, ("peer",))
        other = fastest(res, H, ("peer", "reference"))
        by = {r["implementation"]: r for r in res if r["hidden"] == H and "time" in r}
        tj, cj = (by[t]["time"]["median"] / by["neuroplastic-jax"]["time"]["median"] if t in by and "neuroplastic-jax" in by
                  else None for t in ("neuroplastic-torch", "neuroplastic-torch-compiled"))

        def fmt(a: dict | None, b: dict | None) -> str:
            if a is None or b is None:
                return "–"
            flag = "" if (b.get("agreement") or {}).get("ok", True) else " (disagrees)"
            return f"{a['time']['median'] / b['time']['median']:.2f} ({BY_NAME[b['implementation']].label}{flag})"

        rows.append([str(H), "–" if ours is None else BY_NAME[ours["implementation"]].label.strip("*"), fmt(ours, peer), fmt(ours, other),
                     "–" if tj is None else f"{tj:.2f}", "–" if cj is None else f"{cj:.2f}"])
    return rows


def render_markdown(report: dict) -> str:
    """The generated docs section: setup, times per implementation and H, agreement, ratios."""
    cfg, mach = report["config"], report["machine"]
    v = mach["versions"]
    res = report["results"]
    sizes = sorted({r["hidden"] for r in res})
    la = lambda x: "–" if not x else ", ".join(f"{y:.1f}" for y in x)  # noqa: E731
    envs = report.get("environments", {})
    env_text = "; ".join(f"{name}: " + ", ".join(f"{k} {val}" for k, val in (info.get("versions") or {}).items())
                         for name, info in sorted(envs.items()))
    lines = [
        f"Measured {report['started']} with `python bench/run.py --suite peers`: network 100-H-H-10 (Dense with bias + LIF, x3), "
        f"T={cfg['T']}, batch={cfg['batch']}, float32, LIF decay {cfg['decay']}, threshold {cfg['threshold']}, subtractive reset, "
        f"fast-sigmoid surrogate (slope {cfg['slope']:g}), `ce_sum` of the output spike counts; one forward + backward pass "
        f"(loss and all six gradients); {cfg['warmup']} warm-up + {cfg['repeats']} timed calls per cell after the first call"
        + (f", more (up to {cfg['max_repeats']}) until the timed calls add up to {cfg['min_timed_s']:g} s" if cfg.get("min_timed_s") else "")
        + f" (*: fewer, to stay within {cfg['budget_s']:.0f} s); every cell in its own process; the suite took {report['wall_s'] / 60:.1f} min.",
        "",
        f"Machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory_gib']} GiB RAM, {mach['os']}; Python {mach['python']}; "
        f"main environment: torch {v.get('torch')}, jax {v.get('jax')}, numpy {v.get('numpy')}"
        + (f"; bench-only environments: {env_text}" if env_text else "")
        + f"; {common.describe_git(report.get('git'))}"
        + (f"; {mach['allocator']}" if mach.get("allocator") else "")
        + f". Load average (1, 5, 15 min) before / after: {la(report.get('load_average_before'))} / {la(report.get('load_average_after'))}.",
        "",
        "Median ± half the interquartile range, seconds per forward + backward pass:",
        "",
    ]
    header = ["implementation", "kind"] + [f"H={H}" for H in sizes] + ["agrees", "semantics / notes"]
    rows = []
    for impl in IMPLEMENTATIONS:
        mine = [r for r in res if r["implementation"] == impl.name]
        if not mine:
            continue
        cells = [_cell(next((r for r in mine if r["hidden"] == H), None)) for H in sizes]
        diff = impl.semantics.describe()
        agree = _agreement(mine)
        if impl.semantics != OURS and agree.startswith("yes"):
            agree = agree.replace("yes", "yes, with the reference of its semantics", 1)
        notes = "; ".join(x for x in (_why_unavailable(mine), ("differs: " + diff) if diff else "", impl.note) if x)
        kind = {"neuroplastic": "ours", "reference": "reference", "peer": "peer"}[impl.kind]
        rows.append([impl.label, kind] + cells + [agree, notes.replace("|", "\\|")])
    lines.append(common.markdown_table(header, rows, align="ll" + "r" * len(sizes) + "ll"))
    lines += ["", "Ratios of the medians above (same run; < 1: neuroplastic is faster; the goal of issue 12 is <= 0.67 "
              "against the fastest peer, and torch / JAX <= 1.5):", "",
              common.markdown_table(["H", "neuroplastic's best", "best / fastest peer", "best / fastest of peers and plain references",
                                     "neuroplastic torch / JAX", "neuroplastic torch compiled / JAX"], ratio_rows(report),
                                    align="rlllll")]
    refs = {h: v for h, v in (report.get("references") or {}).items() if v}
    if refs:
        lines += ["", "Plain-JAX references of the other semantics (`bench/peers/reference.py`), loss at each H: "
                  + "; ".join(f"H={h}: " + ", ".join(f"{k} {r['loss']:.6f}" if "loss" in r else f"{k} failed" for k, r in sorted(v.items()))
                              for h, v in sorted(refs.items(), key=lambda kv: int(kv[0])))
                  + "."]
    return "\n".join(lines)


def recheck(report: dict) -> dict:
    """``report`` with every result's agreement computed again (the current tolerances and code)."""
    cfg = {**DEFAULTS, **report["config"]}
    refs = report.get("references") or {}
    for H in sorted({r["hidden"] for r in report["results"]}):
        check_agreement([r for r in report["results"] if r["hidden"] == H], refs.get(str(H), {}), cfg)
    return report


def section_name() -> str:
    """Docs section of this suite."""
    return NAME
