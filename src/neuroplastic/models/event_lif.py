"""An event-based network of current-based LIF neurons with exact spike times (EventProp's model).

Wunderlich & Pehle, *Event-based backpropagation can compute exact gradients for spiking
neural networks*, Sci. Rep. 11:12829 (2021).  This module holds the forward simulation
(:func:`layer_forward`), the model container :class:`EventLIFNetwork` (a
:class:`~neuroplastic.protocols.Model`) and :func:`raster_to_times` (a binary raster to spike
times); the adjoint backward pass is the rule, :mod:`neuroplastic.rules.eventprop`.

The neuron
----------
Every neuron ``j`` of a layer has a membrane ``V_j`` and a synaptic current ``I_j``::

    dV_j/dt = -V_j / tau_mem + I_j / tau_syn         dI_j/dt = -I_j / tau_syn

A spike of presynaptic neuron ``i`` at ``t_i`` makes ``I_j`` jump by ``w_ij``; when ``V_j``
reaches ``theta`` the neuron spikes and ``V_j`` is reset to 0 (``I_j`` is continuous), so a
neuron may fire several times.  (The paper writes ``tau_mem dV/dt = -V + I``; its current is
``tau_mem / tau_syn`` times ours.  With our scaling the limit ``tau_mem -> inf`` is Mostafa's
non-leaky neuron of :class:`~neuroplastic.models.spike_time.SpikeTimeNetwork`:
``V(t) = sum_i w_i (1 - exp(-(t - t_i)/tau_syn))`` before the first spike.)

Between events the dynamics are linear, and with ``s`` the time since the state ``(V0, I0)``,
``x = exp(-s/tau_mem)``, ``y = exp(-s/tau_syn)`` and ``k = tau_mem / (tau_mem - tau_syn)``::

    V(s) = V0 x + k I0 (x - y)          I(s) = I0 y                 (leaky)
    V(s) = V0 + I0 (1 - y)              I(s) = I0 y                 (tau_mem = inf)

Threshold crossings in closed form
----------------------------------
Two ratios are supported, both with an exact crossing time (no root finder, so no tolerance
enters the spike times and the finite-difference checks of the gradient are limited only by
round-off):

* ``tau_mem = 2 tau_syn`` (the default): ``y = x^2``, so ``V = a x - b x^2`` with
  ``a = V0 + 2 I0`` and ``b = 2 I0`` is a quadratic in ``x``.  As ``s`` grows ``x`` falls
  from 1; ``V`` reaches ``theta`` iff ``b > 0``, ``a > 0``, ``a^2 >= 4 b theta`` and the larger
  root ``x+ = (a + sqrt(a^2 - 4 b theta)) / (2 b)`` is below 1; then ``s = -tau_mem ln x+``.
  (For ``b <= 0`` ``V`` is convex in ``x`` with both ends below ``theta``: no crossing.)
* ``tau_mem = inf`` (non-leaky): ``V`` is linear in ``y``; it crosses iff
  ``I0 > theta - V0``, at ``y = 1 - (theta - V0) / I0``, ``s = -tau_syn ln y``.

Other ratios would need a root finder with a tolerance (the crossing of a sum of two
exponentials); the model refuses them by name rather than giving spike times of unknown
accuracy.

The simulation
--------------
Per layer, the input spikes of every example are sorted by time (on the host: the order is
data, not a differentiable quantity) and processed in order: inside each interval between
two input events every neuron fires as long as a crossing falls before the interval's end
(after a reset ``V = 0`` but ``I`` may still drive it over ``theta`` again), then its state is
carried to the next event and the event's weights are added to ``I``.  All examples and
neurons advance together; the loops have data-dependent lengths, so the simulation runs
eagerly (no ``jit``), through backend ops: numpy's by default (``engine="host"``), or the
torch/JAX arrays' own (``engine="backend"``), the same functions either way.  Each neuron
keeps at most ``max_spikes`` spikes; one more raises :class:`MaxSpikesExceeded` naming the
layer.  Spikes at or after ``t_max`` are not simulated.

Input format
------------
``xs`` is ``(K, B, n_in)``: the ``k``-th spike time of every input channel (``K`` spike slots
per channel; a slot at ``t >= t_max`` or ``inf`` is empty).  Yin-Yang's
:func:`~neuroplastic.models.spike_time.encode_times` gives ``K = 1``; :func:`raster_to_times`
turns a binary raster ``(T, B, n)`` (Randman) into this form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..backend import Backend, get_backend, ops_for
from .spike_time import SpikeTimeLayers, _positive

INF = float("inf")

#: where the event loops run: "host" (numpy float64 through the numpy backend's ops) or
#: "backend" (the parameters' own torch or JAX arrays); the same functions either way
ENGINES = ("host", "backend")


class MaxSpikesExceeded(ValueError):
    """A neuron fired more than the network's ``max_spikes`` times within the window."""


@dataclass
class LayerTrace:
    """What one layer's forward pass leaves for the adjoint pass: ``O(number of spikes)`` numbers.

    ``ev_t``/``ev_src``/``ev_slot`` ``(B, E)``: the layer's input events sorted by time
    (``inf`` for padding), the presynaptic neuron and its spike slot; ``inverse`` ``(B, E)``
    maps the flat presynaptic spike array ``(B, n_in * K_in)`` to event order and back.
    ``times``/``current``/``interval`` ``(B, n, K)``: the layer's own spike times (``inf``
    where there is none), the synaptic current at each spike (for ``dV/dt`` before and after
    the reset) and the index of the input interval it fell in; ``count`` ``(B, n)``: spikes per
    neuron.
    """

    ev_t: Any
    ev_src: Any
    ev_slot: Any
    inverse: np.ndarray
    n_events: int
    times: Any
    current: Any
    interval: Any
    count: Any


def propagate(V: Any, I: Any, s: Any, tau_syn: float, tau_mem: float, B: Backend | None = None) -> tuple[Any, Any]:
    """The state ``(V, I)`` after a time ``s >= 0`` without events (see the module docstring); ``B``: ``ops_for(V)``."""
    B = B or ops_for(V)
    y = B.exp(-s / tau_syn)
    if math.isinf(tau_mem):
        return V + I * (1.0 - y), I * y
    x = B.exp(-s / tau_mem)
    k = tau_mem / (tau_mem - tau_syn)
    return V * x + k * I * (x - y), I * y


def crossing_time(V: Any, I: Any, threshold: float, tau_syn: float, tau_mem: float, B: Backend | None = None) -> tuple[Any, Any]:
    """``(crosses, s)``: whether ``V`` reaches ``threshold`` from ``(V, I)`` without events, and when.

    Closed form for ``tau_mem = 2 tau_syn`` (a quadratic in ``exp(-s/tau_mem)``) and for
    ``tau_mem = inf``; ``s`` is ``inf`` where there is no crossing.  A state already at or
    above threshold (round-off) crosses at ``s = 0``.  ``B``: ``ops_for(V)`` (passed by the loops).
    """
    B = B or ops_for(V)
    at = V >= threshold
    if math.isinf(tau_mem):
        need = threshold - V
        ok = I > need
        y = 1.0 - need / B.where(ok, I, 1.0)
        s = -tau_syn * B.log(B.where(ok, y, 1.0))
    else:
        b = 2.0 * I
        a = V + b
        disc = a * a - 4.0 * b * threshold
        pos = (b > 0) & (a > 0) & (disc >= 0)
        xp = (a + B.sqrt(B.where(pos, disc, 0.0))) / B.where(pos, 2.0 * b, 1.0)
        ok = pos & (xp < 1.0)
        s = -tau_mem * B.log(B.where(ok, xp, 1.0))
    ok = ok | at
    s = B.where(at, 0.0, s)
    return ok, B.where(ok, s, INF)


def input_events(t_pre: Any, t_max: float) -> tuple[Any, Any, Any, np.ndarray, int]:
    """Sort presynaptic spike times ``(B, n, K)`` into events: ``(ev_t, ev_src, ev_slot, inverse, n_events)``.

    Empty slots (``t >= t_max``) become ``inf`` and go last; ``n_events`` is the largest number
    of real events of any example (the arrays are cut to it).  The sort runs on the host.
    """
    B = ops_for(t_pre)
    batch, n, K = t_pre.shape
    flat = B.reshape(B.where(t_pre < t_max, t_pre, INF), (batch, n * K))
    host = B.to_numpy(flat)
    order = np.argsort(host, axis=1, kind="stable")
    inverse = np.argsort(order, axis=1, kind="stable")
    n_events = int(np.isfinite(host).sum(axis=1).max()) if host.size else 0
    order = order[:, :n_events]
    idx = B.asarray(order)
    ev_t = B.take_along_axis(flat, idx, 1)
    return ev_t, B.asarray(order // K), B.asarray(order % K), inverse, n_events


def layer_forward(
    w: Any, t_pre: Any, threshold: float, tau_syn: float, tau_mem: float, t_max: float, max_spikes: int, layer: int = 0
) -> tuple[Any, LayerTrace]:
    """Spike times ``(B, n_out, max_spikes)`` of one layer (``inf`` where none) and its :class:`LayerTrace`.

    ``w``: weights ``(n_in, n_out)``; ``t_pre``: presynaptic spike times ``(B, n_in, K_in)``
    (``inf`` or ``>= t_max`` for empty slots).  Raises :class:`MaxSpikesExceeded` when a neuron
    would fire more than ``max_spikes`` times before ``t_max``.
    """
    B = ops_for(w)
    batch, n = t_pre.shape[0], w.shape[1]
    ev_t, ev_src, ev_slot, inverse, n_events = input_events(t_pre, t_max)
    zeros = B.zeros((batch, n), dtype=w.dtype)
    V, I, t_loc = zeros, zeros, zeros
    times = B.full((batch, n, max_spikes), INF, dtype=w.dtype)
    current = B.zeros((batch, n, max_spikes), dtype=w.dtype)
    interval = B.full((batch, n, max_spikes), -1.0, dtype=w.dtype)
    count = B.zeros((batch, n), dtype=w.dtype)
    slots = B.astype(B.arange(max_spikes), w.dtype)

    def fire_until(V, I, t_loc, times, current, interval, count, t_end, e):
        while True:
            crosses, s = crossing_time(V, I, threshold, tau_syn, tau_mem, B)
            t_spk = t_loc + B.where(crosses, s, 0.0)
            fire = crosses & (t_spk < t_end)
            if not bool(B.any(fire)):
                break
            if bool(B.any(fire & (count >= max_spikes))):
                raise MaxSpikesExceeded(
                    f"max_spikes: a neuron of layer {layer} fired more than max_spikes={max_spikes} times before"
                    f" t_max={t_max}; raise max_spikes or lower the weights"
                )
            _, I_spk = propagate(V, I, B.where(fire, s, 0.0), tau_syn, tau_mem, B)
            put = fire[..., None] & (slots == count[..., None])
            times = B.where(put, t_spk[..., None], times)
            current = B.where(put, I_spk[..., None], current)
            interval = B.where(put, float(e), interval)
            count = count + B.astype(fire, w.dtype)
            V = B.where(fire, 0.0, V)
            I = B.where(fire, I_spk, I)
            t_loc = B.where(fire, t_spk, t_loc)
        V, I = propagate(V, I, t_end - t_loc, tau_syn, tau_mem, B)
        return V, I, t_end + 0.0 * t_loc, times, current, interval, count

    for e in range(n_events + 1):
        t_end = B.minimum(ev_t[:, e], t_max)[:, None] if e < n_events else t_max + zeros
        t_end = t_end + zeros
        V, I, t_loc, times, current, interval, count = fire_until(V, I, t_loc, times, current, interval, count, t_end, e)
        if e < n_events:
            valid = B.astype(ev_t[:, e] < t_max, w.dtype)[:, None]
            I = I + valid * B.take(w, ev_src[:, e], axis=0)
    trace = LayerTrace(ev_t, ev_src, ev_slot, inverse, n_events, times, current, interval, count)
    return times, trace


def raster_to_times(raster: Any, dt: float = 1.0, max_spikes: int | None = None, t_offset: float = 0.0) -> np.ndarray:
    """A binary raster ``(T, N, n)`` as spike-time slots ``(K, N, n)`` for :class:`EventLIFNetwork`.

    A spike at step ``t`` is at time ``t_offset + t dt``; ``K`` is the largest number of spikes
    of any channel (or ``max_spikes``, which raises a ``ValueError`` when a channel has more);
    empty slots are ``inf``.
    """
    x = np.asarray(raster)
    if x.ndim != 3:
        raise ValueError(f"raster: expected a (T, N, n) spike raster, got shape {x.shape}")
    if not np.all((x == 0) | (x == 1)):
        raise ValueError("raster: expected 0/1 spikes")
    dt = _positive(dt, "dt")
    counts = x.sum(axis=0).astype(np.int64)
    K = int(counts.max()) if counts.size else 0
    if max_spikes is not None:
        if isinstance(max_spikes, bool) or not isinstance(max_spikes, (int, np.integer)) or max_spikes < 1:
            raise ValueError(f"max_spikes: expected a positive integer, got {max_spikes!r}")
        if K > max_spikes:
            raise ValueError(f"max_spikes: a channel has {K} spikes, more than max_spikes={max_spikes}")
    K = max(K, 1)
    out = np.full((K, x.shape[1], x.shape[2]), np.inf)
    steps = np.arange(x.shape[0], dtype=np.float64)
    rank = np.cumsum(x, axis=0) - 1                      # slot of each spike
    t_idx, b_idx, c_idx = np.nonzero(x)
    out[rank[t_idx, b_idx, c_idx].astype(np.int64), b_idx, c_idx] = t_offset + steps[t_idx] * dt
    return out


# ---------------------------------------------------------------------------- the model
class EventLIFNetwork(SpikeTimeLayers):
    """Feed-forward layers of current-based LIF neurons simulated event by event (exact spike times).

    ``n_in`` input channels carry up to ``K`` spike times each (``xs`` ``(K, B, n_in)``, see
    the module docstring); ``sizes`` lists the neurons of every layer, the last being the
    output.  All layers share ``threshold``, ``tau_syn``, ``tau_mem`` (``2 tau_syn`` by default,
    or ``inf`` for non-leaky neurons; other values are refused, see the module docstring), the
    window ``t_max`` and ``max_spikes`` (spikes kept per neuron; one more raises
    :class:`MaxSpikesExceeded`).  Weights start as
    ``N(init_mean * theta / n, (init_std * theta / sqrt(n))^2)`` for ``n`` inputs.

    :meth:`run` returns ``(ys, {}, rec)`` with ``ys = -t_first`` ``(1, B, n_out)`` (the first
    spike time of every output, ``t_max`` when silent), so a cross-entropy of ``ys`` is a
    first-to-spike loss (:class:`~neuroplastic.models.spike_time.FirstToSpike`);
    ``rec["out"]`` every layer's spike counts ``(1, B, n_l)`` and ``rec["times"]`` every
    layer's spike times ``(B, n_l, max_spikes)``.  It runs eagerly: train it with
    ``Trainer(..., jit=False)`` on JAX.

    ``engine`` chooses where the event loops run: ``"host"`` (default) converts the weights
    and spike times to numpy float64 and runs the simulation and the adjoint through the
    numpy backend's ops; ``"backend"`` runs the very same functions on the torch or JAX
    arrays.  The loops handle a few numbers per event, so per-operation dispatch dominates:
    measured on Yin-Yang (``docs/rules/eventprop.md``) the host is many times faster than
    eager torch and JAX.  Parameters, loss and gradients stay on the caller's backend.
    """

    def __init__(
        self,
        n_in: int,
        sizes: Sequence[int],
        threshold: float = 1.0,
        tau_syn: float = 1.0,
        tau_mem: float | None = None,
        t_max: float = 10.0,
        max_spikes: int = 4,
        init_mean: float = 2.0,
        init_std: float = 1.0,
        engine: str = "host",
    ) -> None:
        super().__init__(n_in, sizes, threshold, tau_syn, t_max, init_mean, init_std)
        if not self.t_max > 0:  # spike times are measured from 0
            raise ValueError(f"t_max: expected a positive finite number, got {t_max!r}")
        if tau_mem is None:
            tau_mem = 2.0 * self.tau_syn
        if isinstance(tau_mem, bool) or not isinstance(tau_mem, (int, float, np.integer, np.floating)) or not (
            math.isinf(tau_mem) and tau_mem > 0 or math.isclose(float(tau_mem), 2.0 * self.tau_syn, rel_tol=1e-12)
        ):
            raise ValueError(
                f"tau_mem: expected 2 * tau_syn ({2.0 * self.tau_syn}) or inf (the two ratios with a closed-form"
                f" threshold crossing), got {tau_mem!r}"
            )
        self.tau_mem = INF if math.isinf(tau_mem) else 2.0 * self.tau_syn
        if isinstance(max_spikes, bool) or not isinstance(max_spikes, (int, np.integer)) or max_spikes < 1:
            raise ValueError(f"max_spikes: expected a positive integer, got {max_spikes!r}")
        self.max_spikes = int(max_spikes)
        if engine not in ENGINES:
            raise ValueError(f"engine: expected one of {list(ENGINES)}, got {engine!r}")
        self.engine = engine

    def __repr__(self) -> str:
        return (
            f"EventLIFNetwork(n_in={self.n_in}, sizes={self.sizes}, threshold={self.threshold}, tau_syn={self.tau_syn},"
            f" tau_mem={self.tau_mem}, t_max={self.t_max}, max_spikes={self.max_spikes}, engine={self.engine!r})"
        )

    def check_input(self, xs: Any, name: str = "xs") -> None:
        """Raise a ``ValueError`` naming ``name`` unless ``xs`` is spike times ``(K, B, n_in)`` without NaN."""
        shape = tuple(getattr(xs, "shape", ()))
        if len(shape) != 3 or shape[0] == 0 or shape[1] == 0 or shape[2] != self.n_in:
            raise ValueError(
                f"{name}: expected input spike times of shape (spikes per channel, batch, {self.n_in}), got {shape}"
            )
        B = ops_for(xs)
        if not B.is_traced(xs) and bool(B.any(xs != xs)):
            raise ValueError(f"{name}: input spike times contain NaN")

    # ------------------------------------------------------------------ forward
    def to_engine(self, params: dict, xs: Any) -> tuple[list[Any], Any]:
        """``(weights, xs)`` as the arrays the simulation runs on (numpy float64 for ``engine="host"``)."""
        B = ops_for(xs)
        if B.is_traced(xs):
            raise ValueError(
                "xs: EventLIFNetwork simulates events eagerly and cannot run inside jit/vjp/vmap;"
                " use Trainer(..., jit=False) on JAX"
            )
        ws = [self.layer_weight(params, l) for l in range(self.n_layers)]
        if self.engine == "backend":
            return ws, xs
        H = get_backend("numpy", dtype="float64")
        return [H.asarray(ops_for(w).to_numpy(w), dtype=np.float64) for w in ws], H.asarray(B.to_numpy(xs), dtype=np.float64)

    @staticmethod
    def from_engine(x: Any, like: Any) -> Any:
        """An engine array ``x`` on the backend and in the dtype of ``like``."""
        B = ops_for(like)
        return B.astype(B.asarray(ops_for(x).to_numpy(x)), like.dtype) if ops_for(x).name != B.name else x

    def simulate(self, weights: Sequence[Any], xs: Any) -> list[tuple[Any, LayerTrace]]:
        """``[(times (B, n_l, max_spikes), LayerTrace)]`` of every layer, on the arrays of :meth:`to_engine`."""
        B = ops_for(xs)
        t = B.transpose(xs, (1, 2, 0))                                  # (B, n_in, K)
        out = []
        for l, w in enumerate(weights):
            t, trace = layer_forward(w, t, self.threshold, self.tau_syn, self.tau_mem, self.t_max, self.max_spikes, layer=l)
            out.append((t, trace))
        return out

    def forward(self, params: dict, xs: Any) -> list[Any]:
        """Every layer's spike times ``(B, n_l, max_spikes)`` on the backend of ``xs`` (``inf`` for empty slots)."""
        return [self.from_engine(t, xs) for t, _ in self.simulate(*self.to_engine(params, xs))]

    def first_times(self, times: Any) -> Any:
        """First spike time ``(B, n)`` of every neuron from ``times`` ``(B, n, K)``, ``t_max`` when silent."""
        B = ops_for(times)
        return B.minimum(times[:, :, 0], self.t_max)

    def spike_times(self, params: dict, xs: Any) -> list[Any]:
        """Every layer's spike times ``(B, n_l, max_spikes)`` (``inf`` for empty slots)."""
        self.check_input(xs)
        return self.forward(params, xs)

    def run(self, params: dict, xs: Any, state: Any = None, record: Any = False, truncate: int | None = None) -> tuple[Any, dict, dict]:
        """``(ys, {}, rec)``: ``ys = -t_first`` ``(1, B, n_out)``; see the class docstring.

        ``state``, ``record`` and ``truncate`` are accepted for interface compatibility and
        ignored (no state across presentations, no time steps).
        """
        self.check_input(xs)
        self.check_params(params)
        layers = self.simulate(*self.to_engine(params, xs))
        rec = self.record(layers, xs)
        return -self.first_times(rec["times"][-1])[None], {}, rec

    def record(self, layers: list[tuple[Any, LayerTrace]], xs: Any) -> dict:
        """``{"out": spike counts (1, B, n_l), "times": spike times (B, n_l, K)}`` per layer, on the backend of ``xs``."""
        return {"out": [self.from_engine(tr.count, xs)[None] for _, tr in layers],
                "times": [self.from_engine(t, xs) for t, _ in layers]}


__all__ = ["ENGINES", "EventLIFNetwork", "LayerTrace", "MaxSpikesExceeded", "crossing_time", "input_events", "layer_forward",
           "propagate", "raster_to_times"]
