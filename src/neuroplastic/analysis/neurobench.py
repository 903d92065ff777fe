"""Efficiency metrics with NeuroBench's definitions (Yik et al., *NeuroBench: a framework
for benchmarking neuromorphic computing algorithms and systems*, arXiv:2304.04640).

All workload figures are **per sample** (counts over the evaluated batch divided by its
size); static figures describe the network.  For a :class:`~neuroplastic.network.Network`
with blocks ``l = 0..L-1`` (projection + cell) evaluated on ``xs`` of shape ``(T, B, n_in)``:

activation sparsity
    ``1 - nnz / numel`` over the outputs of every *spiking* block, all steps and samples
    (NeuroBench's ``ActivationSparsity`` over the spiking-neuron hooks).  ``None`` when the
    network has no spiking block.
synaptic operations (forward)
    every connection (``w`` from the block below or the input, ``w_rec`` from the block's
    own previous output, every :class:`~neuroplastic.network.Link`) counts, per step,
    ``sum_j [a_j != 0] * fanout_j`` where ``a`` is the presynaptic activity feeding it and
    ``fanout_j`` the number of *nonzero* weights leaving unit ``j`` (pruned synapses cost
    nothing; biases are not synaptic operations).  A connection whose presynaptic values
    are all in ``{-1, 0, 1}`` (spikes, also ternary) counts **ACs**, any other (analog input,
    a readout's membrane, a tanh unit) effective **MACs** — NeuroBench's ``SynapticOperations``
    (``Effective_ACs``, ``Effective_MACs``).  Recurrent connections and backward links see the
    previous step's output (the initial state's at ``t = 0``).  ``dense_synops`` counts
    every synapse at every step (``T * n_src * n_dst`` per connection; NeuroBench's ``Dense``).
neuron updates
    ``n_l * T`` per sample for every block whose cell has a state (spiking and readout
    neurons; an :class:`~neuroplastic.cells.Identity` block is a plain linear map).
parameter count
    every number in ``params`` (weights, biases, trainable cell constants).
connection sparsity
    zero weights / all weights, over the weight matrices of all connections (``w_rec``
    as used: a masked diagonal counts as zeros).  Biases and cell constants are not
    connections.
memory footprint
    bytes of ``params`` plus bytes of the network state of **one** sample (every cell's
    state and every block's previous output), at the arrays' own dtypes.

For training, :func:`backward_synaptic_operations` counts the backward pass from the errors
``delta_l`` (``(T, B, n_l)``, the loss's sensitivity to block ``l``'s input current):
every nonzero error entry is sent down each incoming connection whose source is not the
network input, costing ``fanin_i`` (nonzero weights into neuron ``i``) operations; through
``w_rec`` and backward links only for ``t >= 1`` (nothing is sent to the initial state).
This is SpikeGrad's ``bwd`` count (:mod:`neuroplastic.rules.spikegrad`) for one step of
ternary errors, and it works for any rule that can say which error it propagates:
:func:`current_errors` gives backprop's (BPTT's) own, and ``error_sparsity`` is the fraction
of zero error entries.

Everything is counted in numpy from arrays converted with ``B.to_numpy``, so the numbers
are the same on torch and JAX.  See ``docs/analysis.md`` ("Efficiency metrics").
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..backend import ops_for
from ..losses import Loss, Objective, make_loss
from ..network import Connection, Hooks, Network
from ..tree import tree_leaves

__all__ = [
    "Connection",
    "SUMMARY_FIELDS",
    "connection_label",
    "activation_sparsity",
    "backward_synaptic_operations",
    "connection_sparsity",
    "connection_weight",
    "connections",
    "current_errors",
    "efficiency_metrics",
    "fan_in",
    "fan_out",
    "is_spike_input",
    "memory_footprint",
    "neuron_updates",
    "parameter_count",
    "summary_rows",
    "synaptic_operations",
]


# ------------------------------------------------------------------------------ helpers
def _check_net(net: Any) -> Network:
    if not isinstance(net, Network):
        raise ValueError(f"net: expected a neuroplastic Network, got {type(net).__name__}")
    return net


def _np(x: Any) -> np.ndarray:
    return np.asarray(ops_for(x).to_numpy(x))


def _check_sequences(net: Network, seqs: Any, T: int, batch: int, name: str) -> list[np.ndarray]:
    """``seqs`` as one ``(T, batch, n_l)`` numpy array per block, or a ``ValueError`` naming ``name``."""
    if not isinstance(seqs, (list, tuple)) or len(seqs) != len(net.blocks):
        got = len(seqs) if isinstance(seqs, (list, tuple)) else type(seqs).__name__
        raise ValueError(f"{name}: expected a list of {len(net.blocks)} arrays (one per block), got {got}")
    out = []
    for l, (a, blk) in enumerate(zip(seqs, net.blocks)):
        shape = tuple(getattr(a, "shape", ()))
        if shape != (T, batch, blk.size):
            raise ValueError(f"{name}[{l}]: expected shape {(T, batch, blk.size)}, got {shape}")
        out.append(_np(a))
    return out


def connections(net: Network) -> list[Connection]:
    """Every weight matrix of ``net`` (its weighted connections; biases are not synapses), in block order."""
    _check_net(net)
    return [c for c in net.connections if not c.is_bias]


def connection_label(c: Connection) -> str:
    """``"w: input -> block 0"``, ``"w_rec: block 1 -> block 1 (t-1)"``, ``"links[0]: block 2 -> block 0 (t-1)"``."""
    name = {"feed": "w", "recurrent": "w_rec"}.get(c.kind, f"links[{c.location[1]}]")
    src = "input" if c.src == -1 else f"block {c.src}"
    return f"{name}: {src} -> block {c.dst}" + (" (t-1)" if c.delay else "")


def connection_weight(net: Network, params: dict, c: Connection) -> np.ndarray:
    """The weight matrix ``(n_src, n_dst)`` of connection ``c`` as used by the network (numpy)."""
    return _np(net.dense_weight(params, c))


def fan_out(w: Any) -> np.ndarray:
    """Nonzero weights leaving each presynaptic unit of ``w`` ``(n_src, n_dst)``."""
    return (_np(w) != 0).sum(axis=1).astype(np.float64)


def fan_in(w: Any) -> np.ndarray:
    """Nonzero weights entering each postsynaptic unit of ``w`` ``(n_src, n_dst)``."""
    return (_np(w) != 0).sum(axis=0).astype(np.float64)


def is_spike_input(a: Any) -> bool:
    """True when every value of ``a`` is in ``{-1, 0, 1}`` (NeuroBench counts such input as ACs)."""
    a = _np(a)
    return bool(np.all((a == 0) | (a == 1) | (a == -1)))


def _initial_outs(net: Network, batch: int, state: dict | None) -> list[np.ndarray]:
    if state is None:
        return [np.zeros((batch, blk.size)) for blk in net.blocks]
    try:
        outs = [_np(o) for o in net.block_outputs(state)]
    except (KeyError, TypeError, IndexError):
        raise ValueError("state: expected a network state {'layers': [{'cell': ..., 'out': ...}, ...]}") from None
    for l, (o, blk) in enumerate(zip(outs, net.blocks)):
        if o.shape != (batch, blk.size):
            raise ValueError(f"state: layers[{l}]['out'] has shape {o.shape}, expected {(batch, blk.size)}")
    return outs


# ------------------------------------------------------------------------------ workload metrics
def activation_sparsity(net: Network, outs: Sequence[Any]) -> float | None:
    """Fraction of zero outputs over all spiking blocks, steps and samples (``None`` without spiking blocks)."""
    _check_net(net)
    if not isinstance(outs, (list, tuple)) or len(outs) != len(net.blocks):
        raise ValueError(f"outs: expected one output array per block ({len(net.blocks)})")
    zeros = total = 0
    for blk, z in zip(net.blocks, outs):
        if blk.cell.spiking:
            z = _np(z)
            zeros += int(z.size - np.count_nonzero(z))
            total += int(z.size)
    return zeros / total if total else None


def synaptic_operations(net: Network, params: dict, xs: Any, outs: Sequence[Any], state: dict | None = None) -> dict:
    """Forward synaptic operations per sample (see the module docstring), per connection and in total.

    ``outs`` are the blocks' outputs of ``net.run(params, xs, state)`` (``rec["out"]``).
    Returns ``effective_acs``, ``effective_macs``, ``synops`` (their sum), ``dense_synops``
    and ``connections`` (one dict per weight matrix).
    """
    _check_net(net)
    net.check_input(xs, "xs")
    T, batch = int(xs.shape[0]), int(xs.shape[1])
    outs_np = _check_sequences(net, outs, T, batch, "outs")
    init = _initial_outs(net, batch, state)
    pres = net.presynaptic_sequences(_np(xs), outs_np, init)
    rows = []
    for c in connections(net):
        w = connection_weight(net, params, c)
        pre = pres[c.index]
        active = np.count_nonzero(pre, axis=(0, 1)).astype(np.float64)  # (t, b) pairs with a_j != 0
        ops = float(active @ fan_out(w)) / batch
        rows.append({
            "connection": connection_label(c), "src": c.src, "dst": c.dst, "delay": c.delay,
            "kind": "AC" if is_spike_input(pre) else "MAC",
            "synops": ops, "dense_synops": float(T * w.shape[0] * w.shape[1]),
        })
    acs = sum(r["synops"] for r in rows if r["kind"] == "AC")
    macs = sum(r["synops"] for r in rows if r["kind"] == "MAC")
    return {
        "effective_acs": acs, "effective_macs": macs, "synops": acs + macs,
        "dense_synops": sum(r["dense_synops"] for r in rows), "connections": rows,
    }


def neuron_updates(net: Network, T: int) -> list[int]:
    """Per block, neuron updates per sample over ``T`` steps: ``n_l * T`` for stateful cells, else 0."""
    _check_net(net)
    if not (isinstance(T, (int, np.integer)) and not isinstance(T, bool) and T > 0):
        raise ValueError(f"T: expected a positive number of time steps, got {T!r}")
    return [int(blk.size * T) if blk.cell.state_names else 0 for blk in net.blocks]


def backward_synaptic_operations(net: Network, params: dict, errors: Sequence[Any]) -> dict:
    """Synaptic operations per sample of sending ``errors`` down the network (see the module docstring).

    ``errors[l]`` ``(T, B, n_l)``: the error at block ``l``'s input current (for example
    :func:`current_errors`, or a rule's own discretised errors).  Returns ``synops``,
    ``dense_synops``, ``error_sparsity`` (zero entries / all, over every block) and
    per-connection and per-block rows.
    """
    _check_net(net)
    if not isinstance(errors, (list, tuple)) or not errors:
        raise ValueError(f"errors: expected a list of {len(net.blocks)} arrays (one per block)")
    shape = tuple(getattr(errors[0], "shape", ()))
    if len(shape) != 3:
        raise ValueError(f"errors[0]: expected a time-major array (T, batch, n), got shape {shape}")
    T, batch = shape[0], shape[1]
    err = _check_sequences(net, errors, T, batch, "errors")
    rows = []
    for c in connections(net):
        if c.src == -1:
            continue  # nothing is sent to the network input
        d = err[c.dst][c.delay:]  # through w_rec / backward links only from t >= 1
        active = np.count_nonzero(d, axis=(0, 1)).astype(np.float64)
        w = connection_weight(net, params, c)
        rows.append({
            "connection": connection_label(c), "src": c.src, "dst": c.dst, "delay": c.delay,
            "synops": float(active @ fan_in(w)) / batch,
            "dense_synops": float((T - c.delay) * w.shape[0] * w.shape[1]),
        })
    zeros = sum(int(e.size - np.count_nonzero(e)) for e in err)
    total = sum(int(e.size) for e in err)
    return {
        "synops": sum(r["synops"] for r in rows),
        "dense_synops": sum(r["dense_synops"] for r in rows),
        "error_sparsity": zeros / total,
        "connections": rows,
        "layers": [
            {"block": l, "error_sparsity": float(1.0 - np.count_nonzero(e) / e.size),
             "synops": sum(r["synops"] for r in rows if r["dst"] == l)}
            for l, e in enumerate(err)
        ],
    }


def current_errors(net: Network, params: dict, xs: Any, targets: Any, loss: str | Loss | Objective, state: dict | None = None) -> list:
    """Backprop's errors ``dL/dI_l`` ``(T, B, n_l)`` at every block's input current (backend arrays).

    The network is run with a zero offset added to each block's current
    (:class:`~neuroplastic.network.Hooks`) and the loss differentiated with respect to it
    (surrogate derivatives for spikes), so the result is exactly what BPTT sends back
    through each block's weights.
    """
    _check_net(net)
    net.check_input(xs, "xs")
    objective = loss if isinstance(loss, Objective) else Objective(make_loss(loss))
    B = ops_for(xs)
    T, batch = int(xs.shape[0]), int(xs.shape[1])
    eps = [B.zeros((T, batch, blk.size), dtype=xs.dtype) for blk in net.blocks]

    def fn(eps: list) -> Any:
        ys, _, rec = net.run(params, xs, state=state, hooks=Hooks(offsets=eps))
        return objective(ys, targets, rec, net.spiking)

    return list(B.value_and_grad(fn)(eps)[1])


# ------------------------------------------------------------------------------ static metrics
def parameter_count(params: Any) -> int:
    """Number of values in ``params`` (every leaf)."""
    leaves = tree_leaves(params)
    if not leaves:
        raise ValueError("params: no arrays found")
    return int(sum(int(np.prod(getattr(p, "shape", ()))) for p in leaves))


def _count(tree: Any) -> int:
    return int(sum(int(np.prod(getattr(p, "shape", ()))) for p in tree_leaves(tree)))


def connection_sparsity(net: Network, params: dict) -> float:
    """Zero weights over all weights of every connection's matrix (as the network uses it)."""
    ws = [connection_weight(net, params, c) for c in connections(net)]
    return float(sum(int(w.size - np.count_nonzero(w)) for w in ws) / sum(int(w.size) for w in ws))


def _nbytes(tree: Any) -> int:
    return int(sum(_np(a).nbytes for a in tree_leaves(tree)))


def memory_footprint(net: Network, params: dict, backend: Any = None) -> dict:
    """``param_bytes``, ``state_bytes`` (one sample's network state) and ``footprint_bytes`` (their sum)."""
    _check_net(net)
    leaves = tree_leaves(params)
    if not leaves:
        raise ValueError("params: no arrays found")
    B = backend if backend is not None else ops_for(leaves[0])
    p = _nbytes(params)
    s = _nbytes(net.initial_state(B, 1))
    return {"param_bytes": p, "state_bytes": s, "footprint_bytes": p + s}


# ------------------------------------------------------------------------------ main entry
def efficiency_metrics(
    net: Network,
    params: dict,
    xs: Any,
    rec: dict | None = None,
    *,
    state: dict | None = None,
    errors: Sequence[Any] | None = None,
) -> dict:
    """All metrics of the module docstring for one evaluation of ``net`` on ``xs`` ``(T, B, n_in)``.

    Runs ``net.run(params, xs, state)`` once unless ``rec`` (its record, with ``rec["out"]``)
    is given.  ``errors`` (one ``(T, B, n_l)`` array per block, see
    :func:`backward_synaptic_operations`) adds a ``backward`` entry.  Returns a dict of
    totals (plain Python numbers), ``layers`` (one dict per block) and ``connections``.
    """
    _check_net(net)
    net.check_input(xs, "xs")
    B = ops_for(xs)
    T, batch = int(xs.shape[0]), int(xs.shape[1])
    if rec is None:
        _, _, rec = net.run(B.tree_stop_gradient(params), xs, state=state)
    if not isinstance(rec, dict) or "out" not in rec:
        raise ValueError("rec: expected the record of net.run (a dict with 'out')")
    outs = _check_sequences(net, rec["out"], T, batch, "rec['out']")
    syn = synaptic_operations(net, params, xs, outs, state)
    updates = neuron_updates(net, T)
    mem = memory_footprint(net, params, B)
    layers = []
    for l, (blk, z) in enumerate(zip(net.blocks, outs)):
        rows = [r for r in syn["connections"] if r["dst"] == l]
        layers.append({
            "block": l,
            "cell": type(blk.cell).__name__,
            "neurons": blk.size,
            "spiking": bool(blk.cell.spiking),
            "activation_sparsity": float(1.0 - np.count_nonzero(z) / z.size) if blk.cell.spiking else None,
            "neuron_updates": updates[l],
            "effective_acs": sum(r["synops"] for r in rows if r["kind"] == "AC"),
            "effective_macs": sum(r["synops"] for r in rows if r["kind"] == "MAC"),
            "synops": sum(r["synops"] for r in rows),
            "dense_synops": sum(r["dense_synops"] for r in rows),
            "param_count": _count([net.connection_params(params, c) for c in net.connections_into(l) if c.location == ("layers", l)]
                                  + [net.cell_params(params, l)]),
        })
    out = {
        "samples": batch,
        "time_steps": T,
        "activation_sparsity": activation_sparsity(net, outs),
        "synops_per_sample": syn["synops"],
        "effective_acs": syn["effective_acs"],
        "effective_macs": syn["effective_macs"],
        "dense_synops": syn["dense_synops"],
        "neuron_updates": int(sum(updates)),
        "param_count": parameter_count(params),
        "connection_sparsity": connection_sparsity(net, params),
        **mem,
        "layers": layers,
        "connections": syn["connections"],
    }
    if errors is not None:
        out["backward"] = backward_synaptic_operations(net, params, errors)
    return out


#: (key, label, format) of the totals that summaries show, in order
SUMMARY_FIELDS = (
    ("activation_sparsity", "activation sparsity (spiking blocks)", "{:.3f}"),
    ("synops_per_sample", "synaptic operations / sample (ACs + MACs)", "{:,.0f}"),
    ("effective_acs", "effective ACs / sample (spike input)", "{:,.0f}"),
    ("effective_macs", "effective MACs / sample (dense input)", "{:,.0f}"),
    ("dense_synops", "dense synaptic operations / sample", "{:,.0f}"),
    ("neuron_updates", "neuron updates / sample", "{:,}"),
    ("param_count", "parameters", "{:,}"),
    ("connection_sparsity", "connection sparsity", "{:.3f}"),
    ("footprint_bytes", "memory footprint (params + one sample's state)", "{:,} B"),
)


def summary_rows(metrics: dict) -> list[tuple[str, str]]:
    """``(label, formatted value)`` rows of the totals in ``metrics`` (from :func:`efficiency_metrics`)."""
    if not isinstance(metrics, dict):
        raise ValueError(f"metrics: expected the dict of efficiency_metrics, got {type(metrics).__name__}")
    rows = []
    for key, label, fmt in SUMMARY_FIELDS:
        v = metrics.get(key)
        rows.append((label, "n/a" if v is None else fmt.format(v)))
    back = metrics.get("backward")
    if isinstance(back, dict):
        rows.append(("backward synaptic operations / sample", f"{back['synops']:,.0f}"))
        rows.append(("error sparsity (backward pass)", f"{back['error_sparsity']:.3f}"))
    return rows
