"""Networks: the one home of the wiring.

A network is built from a flat list that alternates projections and cells, e.g.
``[RecurrentDense(128), ALIF(), Dense(10), LeakyReadout()]``.  Each projection and the
cell after it form a *block*; a projection with no cell after it gets an
:class:`~neuroplastic.cells.Identity` cell.  Projections are ``Dense``, ``RecurrentDense``,
``Conv2d`` and ``AvgPool2d`` (images are carried flat between blocks, channels first).
Extra :class:`Link` s add weighted connections between blocks, as Slax's ``connect``:

* ``Link(src, dst)`` with ``src < dst`` is a skip link: block ``src``'s output at step
  ``t`` feeds block ``dst`` at the same step (``src=-1`` is the network input);
* ``src >= dst`` is a recurrent (feedback) link: the output of step ``t-1`` is used.

**Connections.**  Every weighted input of a block is a :class:`Connection`: a
:class:`~neuroplastic.layers.Synapse` (a linear map with its adjoints) from a source (the
input, a block, or a constant 1 for a bias) with a delay of 0 or 1 step.  The input current
of block ``l`` at step ``t`` is::

    I^l_t = sum_{same-step c into l} c(x^{src(c)}_t)  [+ offsets^l_t]  +  sum_{delayed c into l} c(x^{src(c)}_{t-1})

Rules reach weights, presynaptic activity and gradient slots only through connections
(:meth:`Network.connection_params`, :meth:`Network.presynaptic_sequences`,
:meth:`Network.gradient_tree`, the stacked dense view of a block), never through the
parameter layout, which stays private to this module and the layers::

    params = {"layers": [{"w": ..., "w_rec": ..., "b": ..., "cell": {...}}, ...],
              "links":  [{"w": ...}, ...]}
    state  = {"layers": [{"cell": {"v": ...}, "out": z_prev}, ...]}

**One forward step.**  :meth:`Network.step_record` advances every block once and returns a
:class:`StepRecord` (new state, block outputs, each connection's presynaptic input, each
block's current, and on request the cells' Jacobians).  :meth:`Network.run` runs whole
sequences with the same two pieces per block (the same-step input, then the block's own
recurrence): block by block when every delayed connection is a self-loop (the *layer-wise
fast path*: one product per connection over all ``T`` steps, and a scan of the block's
recurrence only), or step by step otherwise.  :class:`Hooks` let a rule change the wiring's
behaviour without copying it: current offsets (handles for ``dL/dI``), detaching inputs
that come from other blocks, and a replacement for a synapse's product (feedback alignment).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np

from .backend import Backend, get_backend, ops_for
from .cells import Cell, Identity
from .cells.jacobians import CellJacobians, reshape_jacobians, step_with_jacobians
from .layers.synapse import BiasMap, DenseMap, Synapse
from .tree import tree_map


@dataclass(frozen=True)
class Link:
    """A weighted connection from block ``src`` (``-1`` = network input) to block ``dst``."""

    src: int
    dst: int
    gain: float = 1.0

    @property
    def backward(self) -> bool:
        return self.src >= self.dst


@dataclass(frozen=True)
class Block:
    """A projection and the cell it drives; ``shape`` is the projection's output shape."""

    projection: Any
    cell: Cell
    shape: tuple = ()

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else int(self.projection.size)

    @property
    def recurrent(self) -> bool:
        return bool(getattr(self.projection, "recurrent", False))


#: the source of a bias connection (a constant presynaptic unit with activity 1)
BIAS = "bias"


@dataclass(frozen=True)
class Connection:
    """One weighted input of block ``dst``: ``synapse`` from ``src`` with ``delay`` 0 or 1 steps.

    ``kind`` is ``"feed"`` (the projection's input), ``"bias"``, ``"recurrent"`` (a
    ``RecurrentDense`` block's own previous output) or ``"link"``; ``src`` is ``-1`` for the
    network input, a block index, or :data:`BIAS`.  ``index`` is its position in
    :attr:`Network.connections`; ``name`` its dotted parameter path (``layers.1.w_rec``).
    """

    index: int
    kind: str
    src: int | str
    dst: int
    delay: int
    synapse: Synapse
    location: tuple  # ("layers", l) or ("links", i)
    keys: tuple  # ((synapse key, parameter name), ...)

    @property
    def name(self) -> str:
        names = [pk for _, pk in self.keys]
        return f"{self.location[0]}.{self.location[1]}.{names[0] if len(names) == 1 else '/'.join(names) or '-'}"

    @property
    def is_bias(self) -> bool:
        return self.src == BIAS

    @property
    def from_block(self) -> bool:
        """True when the source is a block (not the input or a bias)."""
        return isinstance(self.src, int) and self.src >= 0

    @property
    def trainable(self) -> bool:
        return bool(self.keys)


@dataclass(frozen=True)
class Hooks:
    """Changes to the forward step that rules ask for (all off by default).

    ``offsets``: one array (or ``None``) per block, added to the block's input current
    (``(B, n)`` in a step, ``(T, B, n)`` in :meth:`Network.run`); differentiating with respect
    to zero offsets gives ``dL/dI``.  ``detach_between_blocks``: inputs that come from another
    block (same step or previous) carry no gradient.  ``apply(connection, p, x)``: replaces
    ``connection.synapse.apply(p, x)`` for every non-bias connection.
    """

    offsets: Sequence[Any] | None = None
    detach_between_blocks: bool = False
    apply: Callable[["Connection", dict, Any], Any] | None = None


NO_HOOKS = Hooks()


class StepRecord(NamedTuple):
    """What one step of :meth:`Network.step_record` produced (a pytree)."""

    state: dict  # the new network state
    outs: list  # each block's output (B, n)
    pres: list  # each connection's presynaptic input (B, n_src); None for a bias
    currents: list  # each block's input current (B, n)
    jacobians: list | None  # each block's CellJacobians (B, n) when asked for


def _fusable_bias(same_step: Sequence[Connection]) -> Connection | None:
    """The bias connection that a block's first same-step connection can take into its product (a plain
    :class:`DenseMap` followed by a one-per-output :class:`BiasMap`), or ``None``."""
    if len(same_step) < 2:
        return None
    first, second = same_step[:2]
    if first.is_bias or type(first.synapse) is not DenseMap or not second.is_bias:
        return None
    return second if type(second.synapse) is BiasMap and second.synapse.repeat == 1 else None


class Network:
    """A stack of blocks with optional links; see the module docstring."""

    def __init__(self, n_in: int | Sequence[int], layers: Sequence[Any], links: Sequence[Link] = (), fused: bool = True) -> None:
        """``fused=False`` keeps every block on the reference path (a scan of ``cell.step``), for checking
        the fused kernels that :meth:`run_block` selects by itself (see there)."""
        if not isinstance(fused, bool):
            raise ValueError(f"fused: expected True or False, got {fused!r}")
        self.fused = fused
        self.in_shape = _check_in_shape(n_in)
        self.n_in = int(np.prod(self.in_shape))
        self.blocks: tuple[Block, ...] = _group(layers, self.in_shape)
        for i, link in enumerate(links):
            if not isinstance(link, Link):
                raise ValueError(f"links[{i}]: expected a Link, got {type(link).__name__}")
            if not (-1 <= link.src < len(self.blocks)) or not (0 <= link.dst < len(self.blocks)):
                raise ValueError(f"links[{i}]: src/dst out of range for {len(self.blocks)} blocks: {link}")
            if link.src == link.dst - 1:
                raise ValueError(f"links[{i}]: {link} duplicates the chain connection {link.src}->{link.dst}")
        self.links: tuple[Link, ...] = tuple(links)
        self._sizes = [self.n_in] + [b.size for b in self.blocks]
        self.connections: tuple[Connection, ...] = self._wire()
        self._into = [tuple(c for c in self.connections if c.dst == l) for l in range(len(self.blocks))]
        self._same_step = [tuple(c for c in into if not c.delay) for into in self._into]
        self._fusable_bias = [_fusable_bias(conns) for conns in self._same_step]

    def _wire(self) -> tuple[Connection, ...]:
        out: list[Connection] = []
        for l, blk in enumerate(self.blocks):
            in_shape = self.in_shape if l == 0 else self.blocks[l - 1].shape
            for kind, keys, syn in blk.projection.synapses(in_shape):
                src, delay = {"feed": (l - 1, 0), "bias": (BIAS, 0), "recurrent": (l, 1)}[kind]
                out.append(Connection(len(out), kind, src, l, delay, syn, ("layers", l), tuple(keys.items())))
            for i, link in self.links_into(l):
                syn = DenseMap(self.size_of(link.src), blk.size)
                out.append(Connection(len(out), "link", link.src, l, int(link.backward), syn, ("links", i), (("w", "w"),)))
        return tuple(out)

    # ------------------------------------------------------------------ structure
    @property
    def n_out(self) -> int:
        return self.blocks[-1].size

    @property
    def layerwise(self) -> bool:
        """True when every delayed connection is a block's own recurrence, so the layer-wise fast path applies."""
        return all(c.delay == 0 or c.src == c.dst for c in self.connections)

    @property
    def spiking(self) -> list[bool]:
        """For each block, whether its cell emits spikes."""
        return [bool(b.cell.spiking) for b in self.blocks]

    def size_of(self, src: int) -> int:
        """Units of block ``src`` (``-1``: the network input)."""
        return self._sizes[src + 1]

    def links_into(self, dst: int) -> list[tuple[int, Link]]:
        return [(i, link) for i, link in enumerate(self.links) if link.dst == dst]

    def connections_into(self, l: int) -> tuple[Connection, ...]:
        """Block ``l``'s connections: the projection's (feed, bias, recurrent), then links, in summation order."""
        return self._into[l]

    def feed_connection(self, l: int) -> Connection:
        """The connection of block ``l``'s projection from the block below (or the input)."""
        return next(c for c in self._into[l] if c.kind == "feed")

    def __repr__(self) -> str:
        parts = [f"{type(b.projection).__name__}({b.size})->{type(b.cell).__name__}" for b in self.blocks]
        links = f", links={list(self.links)}" if self.links else ""
        return f"Network(n_in={self.n_in if len(self.in_shape) == 1 else self.in_shape}, [{', '.join(parts)}]{links})"

    # ------------------------------------------------------------------ parameters through connections
    def connection_params(self, params: dict, c: Connection, partial: bool = False) -> dict:
        """The synapse's parameters of ``c`` under the synapse's own names (``{"w": ...}``).

        ``partial=True`` reads a tree that holds only some entries (see :meth:`connection_tree`)
        and returns the ones present (``{}`` when none is).
        """
        holder = params[c.location[0]][c.location[1]]
        return {sk: holder[pk] for sk, pk in c.keys if not partial or pk in holder}

    def connection_tree(self, pieces: dict) -> dict:
        """A tree with the parameters' layout holding only ``pieces`` (connection index -> synapse-keyed
        arrays): per-connection rule state (feedback weights) that checkpoints store by path."""
        tree: dict = {"layers": [{} for _ in self.blocks], "links": [{} for _ in self.links]}
        for idx, piece in pieces.items():
            c = self.connections[idx]
            for sk, pk in c.keys:
                if sk in piece:
                    tree[c.location[0]][c.location[1]][pk] = piece[sk]
        return tree

    def dense_weight(self, params: dict, c: Connection) -> Any:
        """``c``'s ``(n_src, n_dst)`` weight matrix as the network uses it (masks applied)."""
        return c.synapse.dense_weight(self.connection_params(params, c))

    def block_outputs(self, state: dict) -> list:
        """Every block's output in a network state (or in anything with the state's layout)."""
        return [s["out"] for s in state["layers"]]

    def cell_params(self, params: dict, l: int) -> dict:
        return params["layers"][l]["cell"]

    def gradient_tree(self, params: dict, connections: dict | None = None, cells: dict | None = None) -> dict:
        """A gradient with the structure of ``params``, built fresh (nothing is mutated).

        ``connections`` maps a connection index to its synapse-keyed gradient (as
        ``Synapse.param_grads`` returns it), ``cells`` a block index to its cell's parameter
        gradient; every other entry is zero.  Two pieces for the same parameter are added.
        """
        pieces: dict = {}
        for idx, g in (connections or {}).items():
            c = self.connections[idx]
            for sk, pk in c.keys:
                key = (c.location, pk)
                pieces[key] = pieces[key] + g[sk] if key in pieces else g[sk]
        zeros = lambda x: ops_for(x).zeros_like(x)  # noqa: E731
        layers = []
        for l, p in enumerate(params["layers"]):
            entry = {}
            for k, v in p.items():
                if k == "cell":
                    entry[k] = cells[l] if cells and l in cells else tree_map(zeros, v)
                else:
                    entry[k] = pieces.get((("layers", l), k), None)
                    if entry[k] is None:
                        entry[k] = zeros(v)
            layers.append(entry)
        links = [
            {k: (pieces[(("links", i), k)] if (("links", i), k) in pieces else zeros(v)) for k, v in p.items()}
            for i, p in enumerate(params["links"])
        ]
        return {"layers": layers, "links": links}

    # ------------------------------------------------------------------ stacked dense view (per-synapse rules)
    def presynaptic_size(self, l: int) -> int:
        """``P``: the length of block ``l``'s stacked presynaptic vector (biases count 1)."""
        return sum(c.synapse.n_src for c in self._into[l] if c.trainable)

    def stacked_weight(self, params: dict, l: int) -> Any:
        """``W`` ``(P, n)`` with ``I_t = p_t @ W``: the dense weights of block ``l``'s connections stacked."""
        parts = [self.dense_weight(params, c) for c in self._into[l] if c.trainable]
        return ops_for(parts[0]).concatenate(parts, axis=0)

    def stacked_presynaptic(self, l: int, pres: Sequence[Any], like: Any) -> Any:
        """``p_t`` ``(..., P)``: block ``l``'s connections' presynaptic inputs side by side (ones for a bias).

        ``pres`` is indexed by connection (a step's :attr:`StepRecord.pres`, or
        :meth:`presynaptic_sequences`); ``like`` gives the leading shape and dtype.
        """
        B = ops_for(like)
        parts = []
        for c in self._into[l]:
            if not c.trainable:
                continue
            parts.append(B.ones(tuple(like.shape[:-1]) + (1,), dtype=like.dtype) if c.is_bias else pres[c.index])
        return B.concatenate(parts, axis=-1)

    def split_stacked(self, l: int, grad: Any) -> dict:
        """A stacked ``(P, n)`` gradient of block ``l`` as ``{connection index: synapse-keyed gradient}``."""
        out, pos = {}, 0
        B = ops_for(grad)
        for c in self._into[l]:
            if not c.trainable:
                continue
            g = grad[pos:pos + c.synapse.n_src]
            pos += c.synapse.n_src
            if c.is_bias:
                out[c.index] = {"b": g[0]} if c.synapse.repeat == 1 else {"b": B.sum(B.reshape(g[0], (-1, c.synapse.repeat)), axis=1)}
            elif isinstance(c.synapse, DenseMap):
                if c.synapse.mask_diagonal:
                    g = g * (1.0 - B.eye(c.synapse.n_dst, dtype=g.dtype))
                out[c.index] = {"w": g}
            else:
                raise ValueError(
                    f"network: connection {c.name} ({type(c.synapse).__name__}) shares its weights across positions;"
                    " per-synapse traces need dense connections"
                )
        return out

    # ------------------------------------------------------------------ params and state
    def init_numpy(self, seed: int | np.random.Generator = 0) -> dict:
        """Initial parameters as numpy float64 arrays (identical for every backend)."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        layers = []
        for l, blk in enumerate(self.blocks):
            in_shape = self.in_shape if l == 0 else self.blocks[l - 1].shape
            p = blk.projection.init_params(rng, in_shape if len(in_shape) > 1 else in_shape[0])
            p["cell"] = blk.cell.init_params(rng, blk.size)
            layers.append(p)
        links = [
            {"w": rng.normal(0.0, link.gain / np.sqrt(self.size_of(link.src)), (self.size_of(link.src), self.size_of(link.dst)))}
            for link in self.links
        ]
        return {"layers": layers, "links": links}

    def init(self, seed: int | np.random.Generator = 0, backend: str | Backend = "jax", dtype: str = "float32", device: str | None = None) -> dict:
        """Initial parameters on ``backend`` (see :meth:`init_numpy`)."""
        B = get_backend(backend, device=device, dtype=dtype)
        return B.tree_asarray(self.init_numpy(seed))

    def initial_state(self, B: Backend, batch: int) -> dict:
        if not (isinstance(batch, (int, np.integer)) and batch > 0):
            raise ValueError(f"batch size must be a positive integer, got {batch!r}")
        return {
            "layers": [
                {"cell": blk.cell.initial_state(B, batch, blk.size), "out": B.zeros((batch, blk.size))}
                for blk in self.blocks
            ]
        }

    # ------------------------------------------------------------------ checks
    def check_input(self, xs: Any, name: str = "xs") -> None:
        """Raise a ``ValueError`` naming ``name`` unless ``xs`` is ``(T, B, n_in)`` and finite."""
        check_time_major(xs, self.n_in, name)

    def _flat_input(self, xs: Any) -> Any:
        """Image input ``(T, B, C, H, W)`` of an image network, read flat; anything else as given."""
        shape = tuple(getattr(xs, "shape", ()))
        if len(self.in_shape) > 1 and len(shape) == 2 + len(self.in_shape) and shape[2:] == self.in_shape:
            return ops_for(xs).reshape(xs, shape[:2] + (self.n_in,))
        return xs

    # ------------------------------------------------------------------ the two pieces of a block's step
    def _apply(self, c: Connection, params: dict, x: Any, hooks: Hooks, bias: Any = None) -> Any:
        if hooks.detach_between_blocks and c.from_block and c.src != c.dst:
            x = ops_for(x).stop_gradient(x)
        p = self.connection_params(params, c)
        if bias is not None:  # see _same_step_input
            return c.synapse.apply(p, x, bias)
        return hooks.apply(c, p, x) if hooks.apply is not None else c.synapse.apply(p, x)

    def _same_step_input(self, l: int, params: dict, sources: Callable[[int], Any], hooks: Hooks) -> Any:
        """Block ``l``'s current from its same-step connections (and offsets); ``sources(src)`` is the
        source's activity (one step, or all steps at once).

        A dense projection followed by its bias (a ``Dense`` block's first two terms, found once at
        construction: :func:`_fusable_bias`) is one ``x @ w + b`` (:meth:`DenseMap.apply` with ``bias``: added
        inside the event kernel, the same numbers as the sum), unless ``hooks.apply`` replaces synapse products."""
        fused = self._fusable_bias[l] if hooks.apply is None else None
        current = None
        for i, c in enumerate(self._same_step[l]):
            if c is fused:
                continue
            if c.is_bias:
                term = c.synapse.apply(self.connection_params(params, c))
            else:
                bias = fused.synapse.apply(self.connection_params(params, fused)) if fused is not None and i == 0 else None
                term = self._apply(c, params, sources(c.src), hooks, bias)
            current = term if current is None else current + term
        if hooks.offsets is not None and hooks.offsets[l] is not None:
            current = current + hooks.offsets[l]
        return current

    def _delayed_input(self, l: int, params: dict, current: Any, previous: Callable[[int], Any], hooks: Hooks) -> Any:
        """``current`` plus block ``l``'s delayed connections, from ``previous(src)`` (step ``t-1``)."""
        for c in self._into[l]:
            if c.delay:
                current = current + self._apply(c, params, previous(c.src), hooks)
        return current

    # ------------------------------------------------------------------ one step
    def step_record(self, params: dict, state: dict, x_t: Any, hooks: Hooks = NO_HOOKS, jacobians: bool | Sequence[int] = False) -> StepRecord:
        """One time step of the whole network with everything rules need (see :class:`StepRecord`).

        ``jacobians``: ``True`` for every block's cell Jacobians, or the indices of the blocks
        that need them (the others get ``None``).
        """
        with_jac = set(range(len(self.blocks))) if jacobians is True else set(jacobians or ())
        prev_outs = [s["out"] for s in state["layers"]]
        outs: list = []
        currents, layers, jacs = [], [], []

        def same(src: int) -> Any:
            return x_t if src == -1 else outs[src]

        for l, blk in enumerate(self.blocks):
            current = self._delayed_input(l, params, self._same_step_input(l, params, same, hooks), prev_outs.__getitem__, hooks)
            cp, cs = self.cell_params(params, l), state["layers"][l]["cell"]
            if l in with_jac:
                new_cs, out, J = step_with_jacobians(blk.cell, cp, cs, current)
            else:
                (new_cs, out), J = blk.cell.step(cp, cs, current), None
            jacs.append(J)
            outs.append(out)
            currents.append(current)
            layers.append({"cell": new_cs, "out": out})
        pres = [
            None if c.is_bias else (prev_outs[c.src] if c.delay else same(c.src)) for c in self.connections
        ]
        return StepRecord({"layers": layers}, outs, pres, currents, jacs if with_jac else None)

    def step(self, params: dict, state: dict, x_t: Any, current_offsets: Sequence[Any] | None = None) -> tuple[dict, Any]:
        """One time step of the whole network: ``(state, x_t) -> (state, y_t)``.

        ``current_offsets`` (one ``(B, n_l)`` array per block) is added to every block's input
        current: differentiating with respect to zero offsets gives ``dL/dI_l``.
        """
        r = self.step_record(params, state, x_t, Hooks(offsets=current_offsets) if current_offsets is not None else NO_HOOKS)
        return r.state, r.outs[-1]

    # ------------------------------------------------------------------ whole sequences
    def run(
        self,
        params: dict,
        xs: Any,
        state: dict | None = None,
        record: bool | Sequence[str] = False,
        truncate: int | None = None,
        hooks: Hooks = NO_HOOKS,
    ) -> tuple[Any, dict, dict]:
        """Run over ``xs`` of shape ``(T, B, n_in)``.

        Returns ``(ys, final_state, rec)``: ``ys`` is the last block's output ``(T, B, n_out)``;
        ``rec["out"]`` lists every block's output ``(T, B, n)`` (spikes for spiking cells).
        ``record`` asks for more: ``True`` or ``"state"`` for every block's cell state over time
        (``rec["state"]``), ``"current"`` for every block's input current (``rec["current"]``);
        :meth:`presynaptic_sequences` and :meth:`jacobians` derive the rest from these.
        ``truncate=k`` stops gradients through the state every ``k`` steps (truncated
        BPTT); ``k >= T`` changes nothing.  ``hooks`` as in :meth:`step_record`, with offsets
        ``(T, B, n)`` per block.
        """
        xs = self._flat_input(xs)
        self.check_input(xs)
        B = ops_for(xs)
        T, batch = xs.shape[0], xs.shape[1]
        if state is None:
            state = self.initial_state(B, batch)
        if truncate is not None and not (isinstance(truncate, (int, np.integer)) and truncate > 0):
            raise ValueError(f"truncate must be a positive integer, got {truncate!r}")
        wanted = _record_names(record)
        ts = B.arange(T) if truncate is not None else None
        if self.layerwise:
            return self._run_layerwise(B, params, xs, state, wanted, truncate, ts, hooks)
        return self._run_stepwise(B, params, xs, state, wanted, truncate, ts, hooks)

    def _run_stepwise(self, B, params, xs, state, wanted, truncate, ts, hooks):
        offsets = hooks.offsets

        def body(carry, inp):
            x_t, t, off_t = inp
            carry = _truncate(B, carry, t, truncate)
            h = hooks if offsets is None else Hooks(off_t, hooks.detach_between_blocks, hooks.apply)
            r = self.step_record(params, carry, x_t, h)
            cells = [s["cell"] for s in r.state["layers"]] if "state" in wanted else None
            return r.state, (r.outs, cells, r.currents if "current" in wanted else None)

        final, (outs, cells, currents) = B.scan(body, state, (xs, ts, offsets))
        return outs[-1], final, _rec(outs, cells, currents, wanted)

    def _run_layerwise(self, B, params, xs, state, wanted, truncate, ts, hooks):
        seqs: list = []
        finals, cell_recs, current_recs = [], [], []
        for l in range(len(self.blocks)):
            ext = self._same_step_input(l, params, lambda src: xs if src == -1 else seqs[src], hooks)
            final, (out_seq, cs_seq, cur_seq) = self.run_block(params, l, ext, state["layers"][l], wanted, truncate, ts, hooks)
            seqs.append(out_seq)
            finals.append(final)
            cell_recs.append(cs_seq)
            current_recs.append(cur_seq)
        return seqs[-1], {"layers": finals}, _rec(seqs, cell_recs, current_recs, wanted)

    def run_block(self, params: dict, l: int, ext: Any, state: dict | None = None, record: Any = (), truncate: int | None = None,
                  ts: Any = None, hooks: Hooks = NO_HOOKS, cell_params: dict | None = None) -> tuple[dict, tuple]:
        """Block ``l`` over time from its same-step input current ``ext`` ``(T, B, n)``: its own recurrence only.

        Returns ``(final block state, (outputs, cell states or None, currents or None))``.
        This is the layer-wise fast path's scan; it needs every delayed connection into ``l``
        to be a self-loop.  ``cell_params`` replaces the cell's parameters of ``params`` (a
        rule differentiating through one block).

        The block's whole recurrence runs as one fused kernel (:meth:`Backend.lif_sequence`:
        the same forward bit for bit, the same gradients to round-off) when
        :meth:`fused_block` says it may and ``ext`` is not being differentiated in forward
        mode; otherwise as a scan of ``cell.step``.
        """
        B = ops_for(ext)
        if any(c.delay and c.src != l for c in self._into[l]):
            raise ValueError(f"network: block {l} has a delayed input from another block; run it step by step")
        if state is None:
            state = {"cell": self.blocks[l].cell.initial_state(B, ext.shape[1], self.blocks[l].size),
                     "out": B.zeros((ext.shape[1], self.blocks[l].size))}
        if truncate is not None and ts is None:
            ts = B.arange(ext.shape[0])
        wanted = _record_names(record)
        cell = self.blocks[l].cell
        cp = self.cell_params(params, l) if cell_params is None else cell_params
        if (truncate is None and "state" not in wanted and self.fused_block(l) and not B.in_forward_mode(ext)
                and not any(B.in_forward_mode(v) for v in state["cell"].values())):
            fused = cell.sequence(cp, state["cell"], ext)
            if fused is not None:
                cell_state, outs = fused
                return {"cell": cell_state, "out": outs[-1]}, (outs, None, ext if "current" in wanted else None)

        def body(carry, inp):
            ext_t, t = inp
            carry = _truncate(B, carry, t, truncate)
            current = self._delayed_input(l, params, ext_t, lambda src: carry["out"], hooks)
            cs, out = cell.step(cp, carry["cell"], current)
            return {"cell": cs, "out": out}, (out, cs if "state" in wanted else None, current if "current" in wanted else None)

        return B.scan(body, state, (ext, ts))

    def fused_block(self, l: int) -> bool:
        """Whether block ``l`` may run its recurrence as a fused kernel: the network allows it
        (``fused=True``), the block has no delayed connection, and its cell has a kernel for its
        settings (``cell.fused``; :meth:`Cell.sequence <neuroplastic.cells.base.Cell.sequence>`).
        A run with ``truncate``, a ``"state"`` record, trained cell parameters or forward-mode
        differentiation keeps the reference path (:meth:`run_block` checks those per call).
        """
        return self.fused and self.blocks[l].cell.fused and not any(c.delay for c in self._into[l])

    # ------------------------------------------------------------------ derived records
    def presynaptic_sequences(self, xs: Any, outs: Sequence[Any], initial_outs: Sequence[Any] | None = None) -> list:
        """Each connection's presynaptic input over time ``(T, B, n_src)`` (``None`` for a bias), from
        the input, the recorded block outputs and the blocks' outputs before the first step
        (``initial_outs``, e.g. ``block_outputs(state)``; zeros when ``None``)."""
        xs = self._flat_input(xs)
        B = ops_for(xs)
        out = []
        for c in self.connections:
            if c.is_bias:
                out.append(None)
                continue
            seq = xs if c.src == -1 else outs[c.src]
            if c.delay:
                first = B.zeros_like(seq[:1]) if initial_outs is None else B.asarray(initial_outs[c.src])[None]
                seq = B.concatenate([first, seq[:-1]], axis=0)
            out.append(seq)
        return out

    def previous_cell_states(self, l: int, states: dict, state: dict | None = None) -> dict:
        """``h_{t-1}`` of block ``l`` for every step, from its recorded ``h_t`` and the initial state."""
        first = None if state is None else state["layers"][l]["cell"]
        out = {}
        for k, seq in states.items():
            B = ops_for(seq)
            h0 = B.zeros_like(seq[0]) if first is None else first[k]
            out[k] = B.concatenate([h0[None], seq[:-1]], axis=0)
        return out

    def to_nir(self, params: dict, dt: float = 1e-4, approximate: bool = False) -> Any:
        """This network with ``params`` as a NIR graph (:func:`neuroplastic.interop.network_to_nir`)."""
        from .interop import network_to_nir

        return network_to_nir(self, params, dt=dt, approximate=approximate)

    @staticmethod
    def from_nir(graph: Any, dt: float = 1e-4, semantics: str = "nir") -> tuple["Network", dict]:
        """``(network, numpy params)`` from a NIR graph or file (:func:`neuroplastic.interop.network_from_nir`)."""
        from .interop import network_from_nir

        return network_from_nir(graph, dt=dt, semantics=semantics)

    def jacobians(self, params: dict, l: int, rec: dict, state: dict | None = None) -> CellJacobians:
        """Block ``l``'s cell Jacobians at every step, ``(T, B, n)`` arrays, from a run recorded with
        ``record=("state", "current")`` (all steps at once: the cell is neuron-wise)."""
        if "state" not in rec or "current" not in rec:
            raise ValueError("rec: run the network with record=('state', 'current') to get cell Jacobians")
        cur = rec["current"][l]
        B = ops_for(cur)
        T, batch, n = cur.shape
        h_prev = self.previous_cell_states(l, rec["state"][l], state)
        flat = lambda x: B.reshape(x, (T * batch, n))  # noqa: E731
        _, _, J = step_with_jacobians(self.blocks[l].cell, self.cell_params(params, l), {k: flat(v) for k, v in h_prev.items()}, flat(cur))
        return reshape_jacobians(J, (T, batch, n))


def _record_names(record: Any) -> tuple:
    if record is True:
        return ("state",)
    if not record:
        return ()
    names = (record,) if isinstance(record, str) else tuple(record)
    for r in names:
        if r not in ("state", "current"):
            raise ValueError(f"record: unknown record {r!r}; choose from ['state', 'current'] (or True for 'state')")
    return names


def _rec(outs: list, cells: Any, currents: Any, wanted: tuple) -> dict:
    rec = {"out": list(outs)}
    if "state" in wanted:
        rec["state"] = list(cells)
    if "current" in wanted:
        rec["current"] = list(currents)
    return rec


def _truncate(B: Backend, carry: Any, t: Any, k: int | None) -> Any:
    if k is None:
        return carry
    cut = (t % k) == 0
    return tree_map(lambda s: B.where(cut, B.stop_gradient(s), s), carry)


def check_time_major(xs: Any, n_in: int, name: str = "xs", finite: bool = True) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``xs`` is a non-empty ``(T, B, n_in)`` array.

    With ``finite=True`` it also rejects NaN or infinite values (skipped inside ``jit``,
    where the values are not known).  Every model class checks its input here.
    """
    shape = tuple(getattr(xs, "shape", ()))
    if len(shape) != 3:
        raise ValueError(f"{name}: expected a time-major array (T, batch, {n_in}), got shape {shape}")
    if shape[2] != n_in:
        raise ValueError(f"{name}: expected {n_in} input features (last axis), got {shape[2]} (shape {shape})")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"{name}: empty time or batch axis, shape {shape}")
    if finite and not ops_for(xs).is_traced(xs) and not ops_for(xs).all_finite(xs):
        raise ValueError(f"{name}: contains NaN or infinite values")


def _check_in_shape(n_in: Any) -> tuple:
    if isinstance(n_in, (tuple, list)):
        shape = tuple(n_in)
        if not shape or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape):
            raise ValueError(f"n_in must be a positive integer or an image shape (C, H, W) of positive integers, got {n_in!r}")
        return tuple(int(s) for s in shape)
    if not (isinstance(n_in, (int, np.integer)) and not isinstance(n_in, bool) and n_in > 0):
        raise ValueError(f"n_in must be a positive integer, got {n_in!r}")
    return (int(n_in),)


def _group(layers: Sequence[Any], in_shape: tuple) -> tuple[Block, ...]:
    layers = list(layers)
    if not layers:
        raise ValueError("layers: a network needs at least one projection (Dense, RecurrentDense, Conv2d or AvgPool2d)")
    blocks: list[Block] = []
    shape = in_shape
    i = 0
    while i < len(layers):
        proj = layers[i]
        if not (hasattr(proj, "synapses") and hasattr(proj, "output_shape")):
            raise ValueError(
                f"layers[{i}]: expected a projection (Dense, RecurrentDense, Conv2d, AvgPool2d) here, got {type(proj).__name__};"
                " each cell must follow a projection"
            )
        try:
            out_shape = tuple(proj.output_shape(shape if len(shape) > 1 else shape))
        except ValueError as err:
            raise ValueError(f"layers[{i}]: {err}") from None
        cell = layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], Cell) else None
        blocks.append(Block(proj, cell if cell is not None else Identity(), out_shape))
        shape = out_shape
        i += 2 if cell is not None else 1
    return tuple(blocks)


__all__ = ["BIAS", "Block", "Connection", "Hooks", "Link", "NO_HOOKS", "Network", "StepRecord", "check_time_major"]
