"""NIR (the Neuromorphic Intermediate Representation) export and import.

NIR describes neurons as continuous-time equations; every simulator discretises them.  The
reading used here is the explicit Euler step of length ``dt`` that snnTorch and Norse use, which
maps a node onto one of our cells exactly::

    NIR LIF      tau dv/dt = (v_leak - v) + R I,  spike when v > v_threshold, then v = v_reset
                 -> LIF(decay = 1 - dt/tau, input_gain = R dt/tau, v_leak, threshold = v_threshold,
                        reset="zero", v_reset)                      (reset with this step's spike)
    NIR CubaLIF  tau_syn dI/dt = -I + w_in S;  tau_mem dv/dt = (v_leak - v) + R I
                 -> LIF(syn_decay = 1 - dt/tau_syn, decay = 1 - dt/tau_mem,
                        input_gain = (dt/tau_mem) R (dt/tau_syn) w_in, ...)
    NIR IF       dv/dt = R I           -> LIF(decay=1, input_gain = R dt, reset="zero", v_reset)
    NIR LI       tau dv/dt = (v_leak - v) + R I   -> LeakyReadout(decay = 1 - dt/tau, input_gain = R dt/tau, v_leak)
    NIR I        dv/dt = R I           -> LeakyReadout(decay=1, input_gain = R dt)

and back: a cell with decay ``alpha`` and gain ``g`` is written with ``tau = dt/(1 - alpha)`` and
``R = g/(1 - alpha)`` (``R = g/dt`` for a perfect integrator; ``w_in = tau_syn/dt`` for a
current-based LIF), the convention of snnTorch's export (``dt = 1e-4``, our default), so that
snnTorch reads unit gain.  Projections: ``Affine``/``Linear`` (``weight`` is ``(out, in)``, ours
``(in, out)``), ``Conv2d`` (stride 1, no dilation or groups), ``AvgPool2d`` (stride = kernel);
``Flatten`` nodes are read as no-ops (images travel flat between our blocks).  The export writes a
``Flatten`` before a dense layer that reads an image with ``start_dim = -3, end_dim = -1``
(dimensions counted from the end): NIR's shapes leave the batch out, so NIR reads it as
``(C, H, W) -> (C*H*W,)`` (its type inference agrees, through ``nir.write``/``nir.read``), while
snnTorch's, Norse's and nirtorch's importers hand ``start_dim``/``end_dim`` to ``torch.nn.Flatten``
on batched tensors ``(B, C, H, W)``, which with negative dimensions keeps the batch.  (The
batch-free ``start_dim = 0`` that snnTorch's own export writes flattens the batch into the
features there; ``start_dim = 1`` would break NIR's type check, ``(C, H*W)`` against the dense
layer's ``(C*H*W,)``.)  A recurrent weight
is a ``Linear`` node in a cycle ``cell -> Linear -> cell``: NIR's cycles take the previous step's
output, as ours do.

NIR has no subtractive reset, no reset from the previous step's spike, no signed spikes and no
surrogate gradient.  :func:`network_to_nir` refuses a cell it cannot write exactly, naming it,
unless ``approximate=True``; the node then carries our exact semantics in its ``metadata`` under
``"neuroplastic"`` (read back by :func:`network_from_nir`; other tools ignore it and run NIR's
reset).  The surrogate and ``detach_reset`` (training only) are always kept there.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..cells import ALIF, LIF, Cell, Identity, LeakyReadout, SignedIF
from ..layers import AvgPool2d, Conv2d, Dense, RecurrentDense
from ..network import Link, Network
from ..surrogates import SURROGATES

#: how :func:`network_from_nir` reads a neuron node that carries no neuroplastic metadata
SEMANTICS = ("nir", "snntorch")
#: the metadata key of our exact cell semantics
META_KEY = "neuroplastic"
#: the time step snnTorch's NIR export and import assume
SNNTORCH_DT = 1e-4

_PROJECTIONS = ("Affine", "Linear", "Conv2d", "AvgPool2d")
_CELLS = ("LIF", "CubaLIF", "IF", "LI", "I")


def _nir() -> Any:
    try:
        import nir
    except ImportError:  # pragma: no cover - nir is in the dev extra
        raise ImportError("NIR export and import need the 'nir' package: pip install nir") from None
    return nir


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x.astype(np.float64)
    from ..backend import ops_for

    return np.asarray(ops_for(x).to_numpy(x), dtype=np.float64)


def _check_dt(dt: float) -> float:
    if isinstance(dt, bool) or not (isinstance(dt, (int, float)) and np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt: the NIR time step must be a positive number, got {dt!r}")
    return float(dt)


# ---------------------------------------------------------------------------------------------- export


def _surrogate_meta(surrogate: Any) -> dict:
    return {"name": surrogate.name, **dataclasses.asdict(surrogate)}


def _cell_node(cell: Cell, cell_params: dict, shape: tuple, dt: float, approximate: bool, where: str) -> Any:
    """The NIR node of ``cell`` for a layer of ``shape`` (``None`` for an identity), or a ``ValueError`` naming ``where``."""
    nir = _nir()
    full = lambda v: np.full(shape, float(v))  # noqa: E731

    def per_neuron(name: str, default: float) -> np.ndarray:
        if name in cell_params:
            return np.clip(_numpy(cell_params[name]), 0.0, 1.0).reshape(shape)
        return full(default)

    if isinstance(cell, Identity):
        return None
    if isinstance(cell, LIF):
        nir_reset = cell.reset == "zero" and (cell.reset_from == "this_step" or cell.reset_order == "before_leak")
        if not nir_reset and not approximate:
            raise ValueError(
                f"network_to_nir: {where}'s LIF(reset={cell.reset!r}, reset_from={cell.reset_from!r},"
                f" reset_order={cell.reset_order!r}) has no NIR equivalent: NIR's neurons reset to v_reset with"
                " this step's spike (reset='zero'); pass approximate=True to write it anyway (the exact reset goes"
                " in the node's metadata, which neuroplastic reads back and other tools ignore)"
            )
        meta = {"cell": "LIF", "reset": cell.reset, "reset_from": cell.reset_from, "reset_order": cell.reset_order,
                "detach_reset": cell.detach_reset, "surrogate": _surrogate_meta(cell.surrogate)}
        alpha = per_neuron("alpha", cell.alpha)
        g = cell.input_gain
        common = {"v_threshold": full(cell.threshold), "v_reset": full(cell.v_reset), "metadata": {META_KEY: json.dumps(meta)}}
        if cell.current_based:
            beta = per_neuron("beta", cell.beta)
            if np.any(alpha >= 1.0) or np.any(beta >= 1.0):
                raise ValueError(f"network_to_nir: {where}'s current-based LIF needs decays below 1 (NIR's CubaLIF has finite time constants)")
            tau_syn = dt / (1.0 - beta)
            return nir.CubaLIF(tau_syn=tau_syn, tau_mem=dt / (1.0 - alpha), r=g / (1.0 - alpha), v_leak=full(cell.v_leak),
                               w_in=tau_syn / dt, **common)
        if np.all(alpha == 1.0):
            return nir.IF(r=full(g / dt), **common)
        if np.any(alpha >= 1.0):
            raise ValueError(f"network_to_nir: {where}'s LIF has per-neuron decays with some equal to 1 and some below; NIR needs one node type per layer")
        return nir.LIF(tau=dt / (1.0 - alpha), r=g / (1.0 - alpha), v_leak=full(cell.v_leak), **common)
    if isinstance(cell, LeakyReadout):
        kappa = per_neuron("kappa", cell.kappa)
        g = cell.input_gain
        meta = {"cell": "LeakyReadout"}
        if np.all(kappa == 1.0):
            if cell.v_leak != 0.0:
                raise ValueError(f"network_to_nir: {where}'s LeakyReadout(decay=1, v_leak={cell.v_leak!r}) has no NIR node (NIR's I has no leak potential)")
            return nir.I(r=full(g / dt), metadata={META_KEY: json.dumps(meta)})
        if np.any(kappa >= 1.0):
            raise ValueError(f"network_to_nir: {where}'s LeakyReadout has per-neuron decays with some equal to 1; NIR needs one node type per layer")
        return nir.LI(tau=dt / (1.0 - kappa), r=g / (1.0 - kappa), v_leak=full(cell.v_leak), metadata={META_KEY: json.dumps(meta)})
    if isinstance(cell, SignedIF):
        if not approximate:
            raise ValueError(
                f"network_to_nir: {where}'s SignedIF emits -1 spikes and resets by subtraction, which no NIR node"
                " expresses; pass approximate=True to write it as NIR's IF (the exact neuron goes in the node's"
                " metadata, which neuroplastic reads back and other tools ignore)"
            )
        meta = {"cell": "SignedIF", "nonnegative": cell.nonnegative, "detach_reset": cell.detach_reset,
                "surrogate": _surrogate_meta(cell.surrogate)}
        return nir.IF(r=full(1.0 / dt), v_threshold=full(cell.threshold), v_reset=full(0.0), metadata={META_KEY: json.dumps(meta)})
    if isinstance(cell, ALIF):
        raise ValueError(f"network_to_nir: {where}'s ALIF has no NIR node (NIR 1.0 has no threshold adaptation)")
    raise ValueError(f"network_to_nir: {where}'s cell {type(cell).__name__} has no NIR node; supported: LIF, LeakyReadout, SignedIF (approximate), Identity")


def network_to_nir(network: Network, params: dict, dt: float = SNNTORCH_DT, approximate: bool = False) -> Any:
    """``network`` with ``params`` (any backend's arrays) as a ``nir.NIRGraph``; see the module docstring.

    ``dt`` is the time step the graph's time constants refer to (snnTorch assumes ``1e-4``).
    Node names: ``input``, ``layer{l}`` (the projection), ``flatten{l}`` (``start_dim=-3``, see the
    module docstring), ``cell{l}``, ``rec{l}``
    (a recurrent weight), ``link{i}``, ``output``.
    """
    nir = _nir()
    dt = _check_dt(dt)
    if not isinstance(network, Network):
        raise ValueError(f"network: expected a Network, got {type(network).__name__}")
    if not isinstance(approximate, bool):
        raise ValueError(f"approximate: expected True or False, got {approximate!r}")
    nodes: dict = {"input": nir.Input(input_type={"input": np.array(network.in_shape)})}
    edges: list = []
    outs: list[str] = []  # the node whose output is block l's output
    sums: list[str | None] = []  # the node that sums block l's currents (its cell)
    for l, blk in enumerate(network.blocks):
        where = f"block {l}"
        p = params["layers"][l]
        in_shape = network.in_shape if l == 0 else network.blocks[l - 1].shape
        src = "input" if l == 0 else outs[l - 1]
        proj = blk.projection
        name = f"layer{l}"
        if isinstance(proj, Dense):
            if len(in_shape) > 1:
                # counted from the end: NIR (no batch) and torch.nn.Flatten (batched) both read it as "flatten the image"
                nodes[f"flatten{l}"] = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=-len(in_shape), end_dim=-1)
                edges.append((src, f"flatten{l}"))
                src = f"flatten{l}"
            w = _numpy(p["w"]).T
            nodes[name] = nir.Affine(weight=w, bias=_numpy(p["b"])) if "b" in p else nir.Linear(weight=w)
        elif isinstance(proj, Conv2d):
            w = _numpy(p["w"])
            nodes[name] = nir.Conv2d(input_shape=tuple(int(s) for s in in_shape[1:]), weight=w, stride=1, padding=proj.padding,
                                     dilation=1, groups=1, bias=_numpy(p["b"]) if "b" in p else np.zeros(w.shape[0]))
        elif isinstance(proj, AvgPool2d):
            k = proj.kernel_size
            nodes[name] = nir.AvgPool2d(kernel_size=np.array([k, k]), stride=np.array([k, k]), padding=np.array([0, 0]))
        else:
            raise ValueError(f"network_to_nir: {where}'s projection {type(proj).__name__} has no NIR node")
        edges.append((src, name))
        node = _cell_node(blk.cell, p.get("cell", {}), tuple(blk.shape) or (blk.size,), dt, approximate, where)
        if node is None:
            outs.append(name)
            sums.append(None)
        else:
            nodes[f"cell{l}"] = node
            edges.append((name, f"cell{l}"))
            outs.append(f"cell{l}")
            sums.append(f"cell{l}")
        if isinstance(proj, RecurrentDense):
            if node is None:
                raise ValueError(f"network_to_nir: {where} is recurrent but has no cell to sum its currents; NIR needs one")
            rec = next(c for c in network.connections_into(l) if c.kind == "recurrent")
            nodes[f"rec{l}"] = nir.Linear(weight=_numpy(network.dense_weight(params, rec)).T)
            edges += [(f"cell{l}", f"rec{l}"), (f"rec{l}", f"cell{l}")]
    for i, link in enumerate(network.links):
        if sums[link.dst] is None:
            raise ValueError(f"network_to_nir: links[{i}] feeds block {link.dst}, which has no cell to sum its currents; NIR needs one")
        nodes[f"link{i}"] = nir.Linear(weight=_numpy(params["links"][i]["w"]).T)
        edges += [("input" if link.src == -1 else outs[link.src], f"link{i}"), (f"link{i}", sums[link.dst])]
    nodes["output"] = nir.Output(output_type={"output": np.array(network.blocks[-1].shape)})
    edges.append((outs[-1], "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges)


# ---------------------------------------------------------------------------------------------- import


def _inline(graph: Any, prefix: str = "") -> tuple[dict, list]:
    """Nodes and edges with every sub-graph inlined (its ``Input``/``Output`` nodes bridged)."""
    nir = _nir()
    nodes: dict = {}
    edges: list = []
    entry: dict = {}  # a sub-graph's name -> the nodes its input feeds
    exit_: dict = {}  # a sub-graph's name -> the nodes that feed its output
    for name, node in graph.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _inline(node, full + ".")
            ins = [k for k, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [k for k, v in node.nodes.items() if isinstance(v, nir.Output)]
            entry[full] = [full + "." + b for a, b in node.edges if a in ins]
            exit_[full] = [full + "." + a for a, b in node.edges if b in outs]
            drop = {full + "." + k for k in ins + outs}
            nodes.update({k: v for k, v in sub_nodes.items() if k not in drop})
            edges += [(a, b) for a, b in sub_edges if a not in drop and b not in drop]
        else:
            nodes[full] = node
    for a, b in graph.edges:
        a, b = prefix + a, prefix + b
        for s in exit_.get(a, [a]):
            for d in entry.get(b, [b]):
                edges.append((s, d))
    return nodes, edges


def _uniform(node_name: str, node: Any, field: str, values: Any) -> float:
    arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if not np.allclose(arr, arr.flat[0], rtol=1e-6, atol=0.0):
        raise ValueError(f"network_from_nir: node {node_name!r} ({type(node).__name__}) has per-neuron {field}; neuroplastic's cells take one value per layer")
    return float(arr.flat[0])


def _decay(node_name: str, node: Any, field: str, tau: Any, dt: float) -> tuple[float, np.ndarray | None]:
    """``1 - dt/tau`` (one value, or per neuron as the second item), checked to lie in ``[0, 1]``."""
    tau = np.atleast_1d(np.asarray(tau, dtype=np.float64)).reshape(-1)
    decay = 1.0 - dt / tau
    if np.any(decay < 0.0) or np.any(decay > 1.0) or not np.all(np.isfinite(decay)):
        raise ValueError(
            f"network_from_nir: node {node_name!r} ({type(node).__name__}) has {field}={tau.min()!r} below dt={dt!r};"
            " pass the dt the graph was written for"
        )
    if np.allclose(decay, decay[0], rtol=0.0, atol=1e-15):
        return float(decay[0]), None
    return float(decay.mean()), decay


def _meta(node: Any) -> dict | None:
    raw = (getattr(node, "metadata", None) or {}).get(META_KEY)
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("utf8")
    if isinstance(raw, np.ndarray):
        raw = raw.item().decode("utf8") if isinstance(raw.item(), bytes) else str(raw.item())
    return json.loads(raw)


def _surrogate_from(meta: dict) -> Any:
    spec = dict(meta)
    name = spec.pop("name")
    if name not in SURROGATES:
        raise ValueError(f"network_from_nir: unknown surrogate {name!r} in the node metadata")
    return SURROGATES[name](**spec)


def _cell_from_node(name: str, node: Any, dt: float, semantics: str) -> tuple[Cell, dict]:
    """Our cell for a NIR neuron node, and its cell parameters (per-neuron decays)."""
    kind = type(node).__name__
    meta = _meta(node)
    params: dict = {}
    if meta is not None and meta.get("cell") == "SignedIF":
        thr = _uniform(name, node, "v_threshold", node.v_threshold)
        return SignedIF(threshold=thr, nonnegative=meta["nonnegative"], detach_reset=meta["detach_reset"],
                        surrogate=_surrogate_from(meta["surrogate"])), params
    if kind in ("LI", "I"):
        if kind == "I":
            return LeakyReadout(tau_out=None, decay=1.0, input_gain=_gain(name, node, "r * dt", np.asarray(node.r, dtype=np.float64) * dt)), params
        kappa, per = _decay(name, node, "tau", node.tau, dt)
        gain = _gain(name, node, "r * dt / tau", np.asarray(node.r) * dt / np.asarray(node.tau))
        if per is not None:
            params["kappa"] = per
        return LeakyReadout(tau_out=None, decay=kappa, input_gain=gain, v_leak=_uniform(name, node, "v_leak", node.v_leak),
                            train_decay=per is not None), params
    thr = _uniform(name, node, "v_threshold", node.v_threshold)
    v_reset = _uniform(name, node, "v_reset", node.v_reset if node.v_reset is not None else 0.0)
    options: dict = {"reset": "zero", "v_reset": v_reset, "threshold": thr, "detach_reset": False}
    if meta is not None:
        options.update(reset=meta["reset"], reset_from=meta["reset_from"], reset_order=meta["reset_order"],
                       detach_reset=meta["detach_reset"], surrogate=_surrogate_from(meta["surrogate"]))
        if meta["reset"] != "zero":
            options["v_reset"] = 0.0
    elif semantics == "snntorch":
        # snnTorch's export writes every Leaky/Synaptic as a zero-reset LIF/CubaLIF whatever its reset; read it as
        # snnTorch's default neuron (subtract, reset_delay=True: the previous step's spike, after the leak)
        options.update(reset="subtract", v_reset=0.0, reset_from="previous_step", reset_order="after_leak", detach_reset=True,
                       surrogate=SURROGATES["arctan"](alpha=2.0))
    if kind == "IF":
        gain = _gain(name, node, "r * dt", np.asarray(node.r, dtype=np.float64) * dt)
        return LIF(tau_mem=None, decay=1.0, input_gain=gain, **options), params
    if kind == "LIF":
        alpha, per = _decay(name, node, "tau", node.tau, dt)
        gain = _gain(name, node, "r * dt / tau", np.asarray(node.r) * dt / np.asarray(node.tau))
        if per is not None:
            params["alpha"] = per
        return LIF(tau_mem=None, decay=alpha, input_gain=gain, v_leak=_uniform(name, node, "v_leak", node.v_leak),
                   train_decay=per is not None, **options), params
    # CubaLIF
    alpha, per_a = _decay(name, node, "tau_mem", node.tau_mem, dt)
    beta, per_b = _decay(name, node, "tau_syn", node.tau_syn, dt)
    gain = _gain(name, node, "(dt/tau_mem) r (dt/tau_syn) w_in",
                    (dt / np.asarray(node.tau_mem)) * np.asarray(node.r) * (dt / np.asarray(node.tau_syn)) * np.asarray(node.w_in))
    trained = per_a is not None or per_b is not None
    if trained:
        params["alpha"] = per_a if per_a is not None else np.full(np.size(node.tau_mem), alpha)
        params["beta"] = per_b if per_b is not None else np.full(np.size(node.tau_syn), beta)
    return LIF(tau_mem=None, decay=alpha, syn_decay=beta, input_gain=gain, v_leak=_uniform(name, node, "v_leak", node.v_leak),
               train_decay=trained, **options), params


def _gain(name: str, node: Any, field: str, values: Any) -> float:
    """A uniform input gain; within 1e-6 of 1 (float32 rounding of ``r`` and ``tau`` in a peer's file) it is 1."""
    g = _uniform(name, node, field, values) if np.size(values) > 1 else float(np.asarray(values, dtype=np.float64).reshape(-1)[0])
    return 1.0 if abs(g - 1.0) <= 1e-6 else g


def network_from_nir(graph: Any, dt: float = SNNTORCH_DT, semantics: str = "nir") -> tuple[Network, dict]:
    """``(network, params)`` (numpy float64 parameters) from a ``nir.NIRGraph`` or a ``.nir`` file's path.

    The graph must be a chain of layers (a projection, then optionally a neuron node) with extra
    dense links between layers; a weight node in a cycle from a neuron back to itself is a
    recurrent weight (:class:`~neuroplastic.layers.RecurrentDense`), other cycles are delayed
    links.  ``dt`` is the time step the graph's time constants refer to.  ``semantics`` says how
    to read neuron nodes that carry no neuroplastic metadata: ``"nir"`` (NIR's equations: reset to
    ``v_reset`` with this step's spike) or ``"snntorch"`` (snnTorch's default ``Leaky``/``Synaptic``,
    which its export writes as NIR nodes without saying that they reset by subtraction from the
    previous step's spike).  An unsupported node raises a ``ValueError`` naming its type and name.
    """
    nir = _nir()
    dt = _check_dt(dt)
    if semantics not in SEMANTICS:
        raise ValueError(f"semantics: unknown value {semantics!r}; choose one of {list(SEMANTICS)}")
    if isinstance(graph, (str, Path)):
        path = Path(graph)
        if not path.is_file():
            raise ValueError(f"graph: no NIR file at {path}")
        graph = nir.read(str(path))
    if not isinstance(graph, nir.NIRGraph):
        raise ValueError(f"graph: expected a nir.NIRGraph or the path of a .nir file, got {type(graph).__name__}")
    nodes, edges = _inline(graph)
    for name, node in nodes.items():
        kind = type(node).__name__
        if kind not in _PROJECTIONS + _CELLS + ("Input", "Output", "Flatten"):
            raise ValueError(
                f"network_from_nir: node {name!r} is a {kind}, which neuroplastic does not import; supported:"
                f" {', '.join(_PROJECTIONS + _CELLS)}, Flatten, Input, Output"
            )
    # Flatten nodes are no-ops: bridge them
    for name in [k for k, v in nodes.items() if type(v).__name__ == "Flatten"]:
        ins = [a for a, b in edges if b == name]
        outs = [b for a, b in edges if a == name]
        edges = [(a, b) for a, b in edges if name not in (a, b)] + [(a, b) for a in ins for b in outs]
        del nodes[name]
    kind = {k: type(v).__name__ for k, v in nodes.items()}
    inputs = [k for k, v in kind.items() if v == "Input"]
    outputs = [k for k, v in kind.items() if v == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"network_from_nir: the graph needs exactly one Input and one Output node, got inputs {inputs} and outputs {outputs}")
    preds: dict = {k: [] for k in nodes}
    succs: dict = {k: [] for k in nodes}
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise ValueError(f"network_from_nir: edge ({a!r}, {b!r}) names a node that is not in the graph")
        succs[a].append(b)
        preds[b].append(a)
    # back edges (cycles) by depth-first search from the input
    back: set = set()
    state: dict = {}

    def visit(u: str) -> None:
        state[u] = 1
        for v in succs[u]:
            if state.get(v) == 1:
                back.add((u, v))
            elif v not in state:
                visit(v)
        state[u] = 2

    visit(inputs[0])
    unreached = [k for k in nodes if k not in state]
    if unreached:
        raise ValueError(f"network_from_nir: nodes {unreached} are not reachable from the input")
    # units: neuron nodes, and projections whose output goes on to another projection or the output (identity cells)
    weight_kinds = set(_PROJECTIONS)
    units = [k for k, v in kind.items() if v in _CELLS]
    for k, v in kind.items():
        if v in weight_kinds and any(kind[s] in weight_kinds or kind[s] == "Output" for s in succs[k]):
            units.append(k)
    # longest-path depth over forward edges
    order: list = []
    seen: set = set()

    def topo(u: str) -> None:
        seen.add(u)
        for v in succs[u]:
            if (u, v) not in back and v not in seen:
                topo(v)
        order.append(u)

    topo(inputs[0])
    depth = {k: 0 for k in nodes}
    for u in reversed(order):
        for v in succs[u]:
            if (u, v) not in back:
                depth[v] = max(depth[v], depth[u] + 1)
    unit_of: dict = {}  # the unit whose output a node's output is
    # blocks in order of depth; each unit's "feed" is the weight node from the previous unit (or the input)
    units.sort(key=lambda k: depth[k])
    blocks: list = []  # (unit name, projection node name)
    for u in units:
        if kind[u] in weight_kinds:
            proj = u
        else:
            feeders = [p for p in preds[u] if kind[p] in weight_kinds]
            prev_src = inputs[0] if not blocks else blocks[-1][0]
            chain = [p for p in feeders if (p, u) not in back and preds[p] == [prev_src]]
            if len(chain) != 1:
                raise ValueError(
                    f"network_from_nir: node {u!r} ({kind[u]}) is not fed by exactly one projection from the layer before"
                    f" ({prev_src!r}); found {chain}: neuroplastic imports chains of layers with skip and recurrent links"
                )
            proj = chain[0]
        blocks.append((u, proj))
        unit_of[u] = len(blocks) - 1
    # the main chain must be consistent: each projection is fed by the previous unit
    for l, (u, proj) in enumerate(blocks):
        src = inputs[0] if l == 0 else blocks[l - 1][0]
        if preds[proj] != [src]:
            raise ValueError(f"network_from_nir: projection {proj!r} is fed by {preds[proj]}, expected the previous layer {src!r} only")
    if preds[outputs[0]] != [blocks[-1][0]]:
        raise ValueError(f"network_from_nir: the output is fed by {preds[outputs[0]]}, expected the last layer {blocks[-1][0]!r}")
    # build layers
    in_node = nodes[inputs[0]]
    in_shape = tuple(int(s) for s in np.asarray(list(in_node.input_type.values())[0]).reshape(-1))
    layers_spec: list = []
    layer_params: list = []
    links: list = []
    link_params: list = []
    used = {p for _, p in blocks}
    for l, (u, proj) in enumerate(blocks):
        pnode, pkind = nodes[proj], kind[proj]
        p: dict = {}
        if pkind in ("Affine", "Linear"):
            w = np.asarray(pnode.weight, dtype=np.float64)
            p["w"] = w.T.copy()
            bias = np.zeros(w.shape[0])
            has_bias = pkind == "Affine" and pnode.bias is not None
            if has_bias:
                bias = bias + np.asarray(pnode.bias, dtype=np.float64).reshape(-1)
            spec_kwargs = {"size": int(w.shape[0])}
        elif pkind == "Conv2d":
            w = np.asarray(pnode.weight, dtype=np.float64)
            for field, ok in (("stride", 1), ("dilation", 1)):
                if np.any(np.asarray(getattr(pnode, field)) != ok):
                    raise ValueError(f"network_from_nir: node {proj!r} (Conv2d) has {field}={getattr(pnode, field)!r}; neuroplastic's Conv2d has {field} 1")
            if int(pnode.groups) != 1 or w.shape[-1] != w.shape[-2]:
                raise ValueError(f"network_from_nir: node {proj!r} (Conv2d) needs groups=1 and a square kernel, got groups={pnode.groups!r}, kernel {w.shape[-2:]}")
            pad = np.unique(np.asarray(pnode.padding))
            if pad.size != 1 or isinstance(pnode.padding, str):
                raise ValueError(f"network_from_nir: node {proj!r} (Conv2d) has padding {pnode.padding!r}; neuroplastic pads every side alike")
            p["w"] = w.copy()
            bias = np.asarray(pnode.bias, dtype=np.float64).reshape(-1) if pnode.bias is not None else np.zeros(w.shape[0])
            has_bias = bool(np.any(bias != 0.0))
            spec_kwargs = {"channels": int(w.shape[0]), "kernel_size": int(w.shape[-1]), "padding": int(pad[0])}
        else:  # AvgPool2d
            k = np.unique(np.asarray(pnode.kernel_size))
            s = np.unique(np.asarray(pnode.stride))
            if k.size != 1 or s.size != 1 or s[0] != k[0] or np.any(np.asarray(pnode.padding) != 0):
                raise ValueError(f"network_from_nir: node {proj!r} (AvgPool2d) needs a square kernel, stride = kernel and no padding")
            spec_kwargs = {"kernel_size": int(k[0])}
            has_bias, bias = False, None
        # the cell, its recurrent weight and its links
        cell: Cell = Identity()
        cell_params: dict = {}
        rec_w = None
        if u != proj:
            cell, cell_params = _cell_from_node(u, nodes[u], dt, semantics)
            for q in preds[u]:
                if q == proj:
                    continue
                if kind[q] not in ("Affine", "Linear"):
                    raise ValueError(f"network_from_nir: node {q!r} ({kind[q]}) feeds {u!r} beside its projection; only dense links are imported")
                if len(preds[q]) != 1:
                    raise ValueError(f"network_from_nir: link node {q!r} has {len(preds[q])} inputs; expected one")
                src_node = preds[q][0]
                w = np.asarray(nodes[q].weight, dtype=np.float64).T.copy()
                if kind[q] == "Affine" and nodes[q].bias is not None:
                    bias = (np.zeros(w.shape[1]) if bias is None else bias) + np.asarray(nodes[q].bias, dtype=np.float64).reshape(-1)
                    has_bias = True
                if src_node == u and rec_w is None and pkind in ("Affine", "Linear"):
                    rec_w = w
                elif src_node == inputs[0]:
                    links.append(Link(-1, l))
                    link_params.append({"w": w})
                elif src_node in unit_of:
                    links.append(Link(unit_of[src_node], l))
                    link_params.append({"w": w})
                else:
                    raise ValueError(f"network_from_nir: link node {q!r} is fed by {src_node!r}, which is not a layer's output")
                used.add(q)
        if pkind in ("Affine", "Linear"):
            if rec_w is not None:
                layers_spec.append(RecurrentDense(bias=has_bias, **spec_kwargs))
                p["w_rec"] = rec_w
            else:
                layers_spec.append(Dense(bias=has_bias, **spec_kwargs))
        elif pkind == "Conv2d":
            layers_spec.append(Conv2d(bias=has_bias, **spec_kwargs))
        else:
            layers_spec.append(AvgPool2d(**spec_kwargs))
        if has_bias:
            p["b"] = bias
        if not isinstance(cell, Identity):
            layers_spec.append(cell)
        p["cell"] = cell_params
        layer_params.append(p)
    leftover = [k for k, v in kind.items() if v in weight_kinds and k not in used]
    if leftover:
        raise ValueError(f"network_from_nir: weight nodes {leftover} do not fit a chain of layers with links")
    network = Network(in_shape if len(in_shape) > 1 else in_shape[0], layers_spec, links)
    for l, blk in enumerate(network.blocks):
        expected = network.in_shape if l == 0 else network.blocks[l - 1].shape
        w = layer_params[l].get("w")
        if isinstance(blk.projection, Dense) and w is not None and w.shape[0] != int(np.prod(expected)):
            raise ValueError(f"network_from_nir: projection {blocks[l][1]!r} takes {w.shape[0]} inputs, but the layer before gives {int(np.prod(expected))}")
    return network, {"layers": layer_params, "links": link_params}


# ---------------------------------------------------------------------------------------------- run folders


def export_run(run_dir: str | Path, out_path: str | Path, dt: float = SNNTORCH_DT, approximate: bool = False) -> Path:
    """Write a run folder's trained network (``config.toml``/``config.json`` + ``params.safetensors``) as a ``.nir`` file.

    The network is rebuilt as the run built it (the data set gives its sizes and time step);
    the parameters are read from safetensors (no pickle).  Returns ``out_path``.
    """
    nir = _nir()
    from safetensors.numpy import load_file

    from ..experiment import build_trainer, load_run_data, read_run_config

    run_dir = Path(run_dir)
    weights = run_dir / "params.safetensors"
    if not weights.is_file():
        raise ValueError(f"run_dir: {run_dir} has no params.safetensors (is the run finished?)")
    cfg = read_run_config(run_dir)
    data = load_run_data(cfg)
    net, _ = build_trainer(cfg, data)
    params = _unflatten(net.init_numpy(0), load_file(str(weights)), str(weights))
    graph = network_to_nir(net, params, dt=dt, approximate=approximate)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    nir.write(str(out), graph)
    return out


def _unflatten(template: dict, flat: dict, where: str) -> dict:
    """``template``'s tree filled with ``flat``'s arrays keyed by dotted path (as ``save_params`` writes them)."""
    from ..tree import tree_flatten_dict

    keys = list(tree_flatten_dict(template))
    missing = [k for k in keys if k not in flat]
    if missing:
        raise ValueError(f"{where}: missing parameters {missing[:5]} for the network of the run's config")
    it = iter(np.asarray(flat[k], dtype=np.float64) for k in keys)
    from ..tree import tree_map

    return tree_map(lambda _: next(it), template)
