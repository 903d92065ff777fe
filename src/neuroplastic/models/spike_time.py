"""The event-based model of exact spike-time learning (Mostafa 2018): layers of non-leaky IF neurons
that fire at most once, mapping input spike times to output spike times in closed form.

The neuron, its closed form and the causal set are described with the rule in
:mod:`neuroplastic.rules.spike_time`; this module holds the forward map
(:func:`layer_forward`), the model container :class:`SpikeTimeNetwork` (a
:class:`~neuroplastic.protocols.Model`), its first-to-spike loss and the time encoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..backend import Backend, get_backend, ops_for
from ..losses import Loss, cross_entropy

INF = float("inf")


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected a positive finite number, got {value!r}")
    return float(value)


def _non_negative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: expected a non-negative finite number, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------- one layer
def layer_forward(w: Any, t_in: Any, fired_in: Any, threshold: float, tau: float, t_max: float, tol: float = 1e-6) -> tuple[Any, Any, Any]:
    """Spike times of one layer of non-leaky IF neurons (see the module docstring).

    ``w``: weights ``(n_in, n_out)``; ``t_in``: input spike times ``(B, n_in)``;
    ``fired_in``: booleans ``(B, n_in)``, false for silent inputs (their times are ignored).
    Returns ``(t_out, fired_out, t_last)``, each ``(B, n_out)``: the output spike times
    (``t_max`` for silent neurons), whether each neuron fired before ``t_max``, and the
    time of the last input in its causal set (the causal set is every fired input with
    ``t_i <= t_last``).  ``tol`` accepts candidates that fall a relative ``tol`` before
    their interval's start (round-off when ``V`` reaches ``theta`` exactly at an input).
    """
    B = ops_for(w)
    n = t_in.shape[-1]
    ts = B.where(fired_in, t_in, 0.0)
    tk, tj = ts[:, :, None], ts[:, None, :]                      # k: interval, j: other input
    fk, fj = fired_in[:, :, None], fired_in[:, None, :]
    idx = B.arange(n)
    tie = idx[None, :] <= idx[:, None]                           # [k, j] = j <= k
    both = fk & fj
    before = both & ((tj < tk) | ((tj == tk) & tie))            # j in C_k
    after = both & ~before
    wk = B.matmul(B.astype(before, w.dtype), w)                  # (B, n, m): W_k
    decay = B.where(before, B.exp(B.where(before, (tj - tk) / tau, 0.0)), 0.0)
    ak = B.matmul(decay, w)                                      # A_k relative to t_(k)
    t_next = B.min(B.where(after, tj, INF), axis=2)              # (B, n)
    d = wk - threshold
    ok = (d > 0) & (ak > 0) & fk
    ratio = B.where(ok, ak / B.where(ok, d, 1.0), 1.0)
    cand = tk + tau * B.log(ratio)
    valid = ok & (ratio >= 1.0 - tol) & (cand < t_next[:, :, None]) & (cand < t_max)
    first = B.min(B.where(valid, cand, INF), axis=1)            # (B, m)
    fired_out = first < t_max
    kstar = B.argmax(B.where(valid, -cand, -INF), axis=1)      # (B, m)
    t_last = B.sum(B.one_hot(kstar, n) * ts[:, None, :], axis=2)
    t_out = B.where(fired_out, first, t_max)
    return t_out, fired_out, t_last


def causal_mask(t_in: Any, fired_in: Any, fired_out: Any, t_last: Any) -> Any:
    """``C[b, i, j]``: input ``i`` is in output ``j``'s causal set (booleans ``(B, n_in, n_out)``)."""
    B = ops_for(t_in)
    ts = B.where(fired_in, t_in, 0.0)
    return fired_in[:, :, None] & fired_out[:, None, :] & (ts[:, :, None] <= t_last[:, None, :])


def closed_form_time(w: Any, t_in: Any, mask: Any, threshold: float, tau: float) -> Any:
    """``t_out = tau ln(sum_C w_i exp(t_i/tau) / (sum_C w_i - theta))`` for a *fixed* causal set.

    ``mask``: 0/1 floats ``(B, n_in, n_out)``.  Smooth in ``w`` and ``t_in``, so autodiff of
    it is a reference for :func:`layer_vjp` (valid where the causal set does not change).
    The times are taken relative to the per-example earliest input to avoid overflow.
    """
    B = ops_for(w)
    ref = B.stop_gradient(B.min(t_in, axis=1, keepdims=True))
    z = B.exp((t_in - ref) / tau)                                # (B, n)
    num = B.sum(mask * (w[None] * z[:, :, None]), axis=1)
    den = B.sum(mask * w[None], axis=1) - threshold
    return ref + tau * B.log(num / den)


# ---------------------------------------------------------------------------- the model
class SpikeTimeLayers:
    """What the two event-based models share: ``n_in`` inputs, feed-forward ``sizes``, one weight
    matrix per layer (``{"layers": [{"w": (n_{l-1}, n_l)}, ...]}``), a shared ``threshold``,
    ``tau_syn`` and window ``t_max``, and the weight initialisation
    ``N(init_mean * theta / n, (init_std * theta / sqrt(n))^2)`` for ``n`` inputs (an average
    neuron gets ``init_mean`` thresholds of total weight)."""

    def __init__(self, n_in: int, sizes: Sequence[int], threshold: float, tau_syn: float, t_max: float, init_mean: float,
                 init_std: float) -> None:
        if isinstance(n_in, bool) or not (isinstance(n_in, (int, np.integer)) and n_in > 0):
            raise ValueError(f"n_in: expected a positive integer, got {n_in!r}")
        sizes = list(sizes) if isinstance(sizes, (list, tuple)) else sizes
        if not isinstance(sizes, list) or not sizes or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in sizes
        ):
            raise ValueError(f"sizes: expected a non-empty list of positive integers, got {sizes!r}")
        self.n_in = int(n_in)
        self.sizes = [int(s) for s in sizes]
        self.threshold = _positive(threshold, "threshold")
        self.tau_syn = _positive(tau_syn, "tau_syn")
        if isinstance(t_max, bool) or not isinstance(t_max, (int, float, np.integer, np.floating)) or not math.isfinite(t_max):
            raise ValueError(f"t_max: expected a finite number, got {t_max!r}")
        self.t_max = float(t_max)
        if isinstance(init_mean, bool) or not isinstance(init_mean, (int, float, np.integer, np.floating)) or not math.isfinite(init_mean):
            raise ValueError(f"init_mean: expected a finite number, got {init_mean!r}")
        self.init_mean = float(init_mean)
        self.init_std = _non_negative(init_std, "init_std")

    @property
    def n_out(self) -> int:
        return self.sizes[-1]

    @property
    def n_layers(self) -> int:
        return len(self.sizes)

    @property
    def spiking(self) -> list[bool]:
        return [True] * self.n_layers

    # ------------------------------------------------------------------ params
    def init_numpy(self, seed: int | np.random.Generator = 0) -> dict:
        """``{"layers": [{"w": (n_{l-1}, n_l)}, ...]}`` as numpy float64 (the same on every backend)."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        layers, n_prev = [], self.n_in
        for n in self.sizes:
            mean = self.init_mean * self.threshold / n_prev
            std = self.init_std * self.threshold / math.sqrt(n_prev)
            layers.append({"w": rng.normal(mean, std, (n_prev, n))})
            n_prev = n
        return {"layers": layers}

    def init(self, seed: int | np.random.Generator = 0, backend: str | Backend = "jax", dtype: str = "float32", device: str | None = None) -> dict:
        """Initial parameters on ``backend`` (see :meth:`init_numpy`)."""
        B = backend if isinstance(backend, Backend) else get_backend(backend, device=device, dtype=dtype)
        return B.tree_asarray(self.init_numpy(seed))

    def check_params(self, params: Any) -> None:
        """Raise a ``ValueError`` naming ``params`` unless the weight shapes fit the network."""
        layers = params.get("layers") if isinstance(params, dict) else None
        if not isinstance(layers, (list, tuple)) or len(layers) != self.n_layers:
            raise ValueError(f"params: expected {{'layers': [...]}} with {self.n_layers} layers")
        n_prev = self.n_in
        for l, (p, n) in enumerate(zip(layers, self.sizes)):
            shape = tuple(getattr(p.get("w") if isinstance(p, dict) else None, "shape", ()))
            if shape != (n_prev, n):
                raise ValueError(f"params: layers[{l}]['w'] should have shape {(n_prev, n)}, got {shape}")
            n_prev = n

    def layer_weight(self, params: dict, l: int) -> Any:
        """Layer ``l``'s weights ``(n_{l-1}, n_l)``."""
        return params["layers"][l]["w"]

    def param_tree(self, weights: Sequence[Any]) -> dict:
        """A parameter-shaped tree from one weight array (or gradient) per layer."""
        return {"layers": [{"w": w} for w in weights]}


class SpikeTimeNetwork(SpikeTimeLayers):
    """Feed-forward layers of non-leaky IF neurons that each fire at most once.

    ``n_in`` input channels carry one spike time each (inputs at ``t >= t_max`` are silent);
    ``sizes`` lists the neurons of every layer, the last being the output.  All layers
    share ``threshold`` (``theta``), ``tau_syn`` (``tau``) and the observation window
    ``t_max``: a neuron that has not fired by ``t_max`` is silent and reports ``t_max``.
    Weights start as ``N(init_mean * theta / n, (init_std * theta / sqrt(n))^2)`` for
    ``n`` inputs, so an average neuron gets ``init_mean`` thresholds of total weight.

    Event-based, not time-stepped: :meth:`run` takes ``xs`` of shape ``(1, B, n_in)`` (one
    "step" carrying the input spike times) and returns ``(ys, {}, rec)`` with
    ``ys = -t_out`` as ``(1, B, n_out)`` (so a cross-entropy of ``ys`` is a first-to-spike
    loss), ``rec["out"]`` every layer's fired flags ``(1, B, n_l)`` (spikes per neuron and
    example) and ``rec["times"]`` every layer's spike times ``(B, n_l)``.  It has the part
    of the :class:`~neuroplastic.network.Network` interface the trainer uses (``n_in``,
    ``spiking``, ``init``, ``run``), and ``run`` is differentiable by autodiff (so
    ``"bptt"`` trains it too, through the same closed form).
    """

    def __init__(
        self,
        n_in: int,
        sizes: Sequence[int],
        threshold: float = 1.0,
        tau_syn: float = 1.0,
        t_max: float = 10.0,
        init_mean: float = 2.0,
        init_std: float = 1.0,
    ) -> None:
        super().__init__(n_in, sizes, threshold, tau_syn, t_max, init_mean, init_std)

    def __repr__(self) -> str:
        return (
            f"SpikeTimeNetwork(n_in={self.n_in}, sizes={self.sizes}, threshold={self.threshold}, "
            f"tau_syn={self.tau_syn}, t_max={self.t_max})"
        )

    def check_input(self, xs: Any, name: str = "xs") -> None:
        """Raise a ``ValueError`` naming ``name`` unless ``xs`` is ``(1, B, n_in)``."""
        shape = tuple(getattr(xs, "shape", ()))
        if len(shape) != 3 or shape[0] != 1 or shape[2] != self.n_in or shape[1] == 0:
            raise ValueError(
                f"{name}: expected input spike times of shape (1, batch, {self.n_in}) (one step carrying times), got {shape}"
            )

    # ------------------------------------------------------------------ forward
    def forward(self, params: dict, t_in: Any) -> list[tuple[Any, Any, Any]]:
        """``[(t, fired, t_last)]`` for every layer from input times ``(B, n_in)`` (see :func:`layer_forward`)."""
        fired = t_in < self.t_max
        out, t = [], t_in
        for p in params["layers"]:
            t, fired, t_last = layer_forward(p["w"], t, fired, self.threshold, self.tau_syn, self.t_max)
            out.append((t, fired, t_last))
        return out

    def spike_times(self, params: dict, xs: Any) -> list[Any]:
        """Every layer's spike times ``(B, n_l)`` (``t_max`` where silent) for ``xs`` ``(1, B, n_in)``."""
        self.check_input(xs)
        return [t for t, _, _ in self.forward(params, xs[0])]

    def run(self, params: dict, xs: Any, state: Any = None, record: bool = False, truncate: int | None = None) -> tuple[Any, dict, dict]:
        """``(ys, {}, rec)``: ``ys = -t_out`` ``(1, B, n_out)``; see the class docstring.

        ``state``, ``record`` and ``truncate`` are accepted for interface compatibility and
        ignored (there is no state across presentations and no time axis).
        """
        self.check_input(xs)
        self.check_params(params)
        B = ops_for(xs)
        layers = self.forward(params, xs[0])
        rec = {
            "out": [B.astype(f, xs.dtype)[None] for _, f, _ in layers],
            "times": [t for t, _, _ in layers],
        }
        return -layers[-1][0][None], {}, rec


# ---------------------------------------------------------------------------- loss
@dataclass(frozen=True)
class FirstToSpike(Loss):
    """Cross-entropy of ``softmax(-t_out / temperature)``: the earliest output neuron is the prediction.

    Reads outputs ``(1, B, C)`` holding ``-t_out`` (what :meth:`SpikeTimeNetwork.run`
    returns); ``temperature`` is in the network's time units.  ``alpha > 0`` adds Göltz et
    al.'s (2021) term ``alpha (exp(t_label / beta) - 1)`` (batch mean), which pulls the
    correct neuron's spike earlier, so a network cannot settle with every output late or
    silent.
    """

    temperature: float = 1.0
    alpha: float = 0.0
    beta: float = 1.0
    name = "first_to_spike"

    def __post_init__(self) -> None:
        _positive(self.temperature, "temperature")
        _non_negative(self.alpha, "alpha")
        _positive(self.beta, "beta")

    def scores(self, outputs: Any) -> Any:
        return ops_for(outputs).sum(outputs, axis=0) / self.temperature

    def __call__(self, outputs: Any, targets: Any, rec: dict | None = None) -> Any:
        value = cross_entropy(self.scores(outputs), targets)
        if self.alpha > 0:
            B = ops_for(outputs)
            t_label = -B.sum(B.sum(outputs, axis=0) * B.one_hot(targets, outputs.shape[-1]), axis=-1)
            value = value + self.alpha * B.mean(B.exp(t_label / self.beta) - 1.0)
        return value


# ---------------------------------------------------------------------------- encoding
def encode_times(features: Any, t_early: float = 0.0, t_late: float = 2.0, bias_time: float | None = None) -> np.ndarray:
    """Static features in ``[0, 1]`` ``(N, C)`` as spike times ``(1, N, C[+1])`` for :class:`SpikeTimeNetwork`.

    ``t = t_early + x (t_late - t_early)`` (Göltz et al. 2021, Kriener et al. 2021);
    ``bias_time`` appends a channel with one spike at that time for every example.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features: expected (N, C), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features: contains NaN or infinite values")
    for name, v in (("t_early", t_early), ("t_late", t_late)):
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise ValueError(f"{name}: expected a finite number, got {v!r}")
    t = t_early + np.clip(x, 0.0, 1.0) * (t_late - t_early)
    if bias_time is not None:
        if not (isinstance(bias_time, (int, float)) and math.isfinite(bias_time)):
            raise ValueError(f"bias_time: expected a finite number or None, got {bias_time!r}")
        t = np.concatenate([t, np.full((t.shape[0], 1), float(bias_time))], axis=1)
    return t[None].astype(np.float32)


# ---------------------------------------------------------------------------- the rule


__all__ = ["FirstToSpike", "INF", "SpikeTimeNetwork", "causal_mask", "closed_form_time", "encode_times", "layer_forward"]
