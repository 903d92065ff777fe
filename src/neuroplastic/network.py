"""Networks: layers and cells composed into blocks, with optional skip and recurrent links.

A network is built from a flat list that alternates projections and cells, e.g.
``[RecurrentDense(128), ALIF(), Dense(10), LeakyReadout()]``.  Each projection and the
cell after it form a *block*; a projection with no cell after it gets an
:class:`~neuroplastic.cells.Identity` cell.  Extra :class:`Link` s add weighted
connections between blocks, as Slax's ``connect`` does:

* ``Link(src, dst)`` with ``src < dst`` is a skip link: block ``src``'s output at step
  ``t`` feeds block ``dst`` at the same step (``src=-1`` is the network input);
* ``src >= dst`` is a recurrent (feedback) link: the output of step ``t-1`` is used.

Parameters and state are plain pytrees::

    params = {"layers": [{"w": ..., "w_rec": ..., "b": ..., "cell": {...}}, ...],
              "links":  [{"w": ...}, ...]}
    state  = {"layers": [{"cell": {"v": ...}, "out": z_prev}, ...]}

:meth:`Network.run` takes the *layer-wise fast path* whenever no link goes backwards:
each block's input currents for all ``T`` steps come from one matmul, and only the
block's own recurrence (cell state, ``w_rec``) is scanned.  With a backward link it
scans :meth:`Network.step` over time instead.  Both give the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .backend import Backend, get_backend, ops_for
from .cells import Cell, Identity
from .layers import Dense
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
    """A projection and the cell it drives."""

    projection: Dense
    cell: Cell

    @property
    def size(self) -> int:
        return self.projection.size

    @property
    def recurrent(self) -> bool:
        return self.projection.recurrent


class Network:
    """A stack of blocks with optional links; see the module docstring."""

    def __init__(self, n_in: int, layers: Sequence[Any], links: Sequence[Link] = ()) -> None:
        if not (isinstance(n_in, (int, np.integer)) and n_in > 0):
            raise ValueError(f"n_in must be a positive integer, got {n_in!r}")
        self.n_in = int(n_in)
        self.blocks: tuple[Block, ...] = _group(layers)
        sizes = [self.n_in] + [b.size for b in self.blocks]
        for i, link in enumerate(links):
            if not (-1 <= link.src < len(self.blocks)) or not (0 <= link.dst < len(self.blocks)):
                raise ValueError(f"links[{i}]: src/dst out of range for {len(self.blocks)} blocks: {link}")
            if link.src == link.dst - 1:
                raise ValueError(f"links[{i}]: {link} duplicates the chain connection {link.src}->{link.dst}")
        self.links: tuple[Link, ...] = tuple(links)
        self._sizes = sizes

    # ------------------------------------------------------------------ structure
    @property
    def n_out(self) -> int:
        return self.blocks[-1].size

    @property
    def layerwise(self) -> bool:
        """True when no link goes backwards, so the layer-wise fast path applies."""
        return not any(link.backward for link in self.links)

    @property
    def spiking(self) -> list[bool]:
        """For each block, whether its cell emits spikes."""
        return [bool(b.cell.spiking) for b in self.blocks]

    def size_of(self, src: int) -> int:
        return self._sizes[src + 1]

    def links_into(self, dst: int) -> list[tuple[int, Link]]:
        return [(i, link) for i, link in enumerate(self.links) if link.dst == dst]

    def __repr__(self) -> str:
        parts = [f"{type(b.projection).__name__}({b.size})->{type(b.cell).__name__}" for b in self.blocks]
        links = f", links={list(self.links)}" if self.links else ""
        return f"Network(n_in={self.n_in}, [{', '.join(parts)}]{links})"

    # ------------------------------------------------------------------ params and state
    def init_numpy(self, seed: int | np.random.Generator = 0) -> dict:
        """Initial parameters as numpy float64 arrays (identical for every backend)."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        layers = []
        for l, blk in enumerate(self.blocks):
            p = blk.projection.init_params(rng, self._sizes[l])
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

    # ------------------------------------------------------------------ one step
    def block_current(self, l: int, params: dict, x_t: Any, outs: list, prev_outs: list) -> Any:
        """Total input current of block ``l`` at one step.

        ``outs`` holds this step's outputs of blocks ``< l``; ``prev_outs`` the previous
        step's outputs of every block.
        """
        blk = self.blocks[l]
        p = params["layers"][l]
        src = x_t if l == 0 else outs[l - 1]
        current = blk.projection(p, src)
        if blk.recurrent:
            current = current + blk.projection.recurrent_current(p, prev_outs[l])
        B = ops_for(current)
        for i, link in self.links_into(l):
            if link.backward:
                pre = prev_outs[link.src]
            else:
                pre = x_t if link.src == -1 else outs[link.src]
            current = current + B.matmul(pre, params["links"][i]["w"])
        return current

    def step(self, params: dict, state: dict, x_t: Any, current_offsets: Sequence[Any] | None = None) -> tuple[dict, Any]:
        """One time step of the whole network: ``(state, x_t) -> (state, y_t)``.

        ``current_offsets`` (one ``(B, n_l)`` array per block) is added to every block's input
        current: differentiating with respect to zero offsets gives ``dL/dI_l``.
        """
        prev_outs = [s["out"] for s in state["layers"]]
        outs: list = []
        new_layers = []
        for l, blk in enumerate(self.blocks):
            current = self.block_current(l, params, x_t, outs, prev_outs)
            if current_offsets is not None:
                current = current + current_offsets[l]
            cell_state, out = blk.cell.step(params["layers"][l]["cell"], state["layers"][l]["cell"], current)
            outs.append(out)
            new_layers.append({"cell": cell_state, "out": out})
        return {"layers": new_layers}, outs[-1]

    # ------------------------------------------------------------------ whole sequences
    def run(
        self,
        params: dict,
        xs: Any,
        state: dict | None = None,
        record: bool = False,
        truncate: int | None = None,
    ) -> tuple[Any, dict, dict]:
        """Run over ``xs`` of shape ``(T, B, n_in)``.

        Returns ``(ys, final_state, rec)``: ``ys`` is the last block's output ``(T, B, n_out)``;
        ``rec["out"]`` lists every block's output ``(T, B, n)`` (spikes for spiking cells);
        with ``record=True``, ``rec["state"]`` lists every block's cell state over time.
        ``truncate=k`` stops gradients through the state every ``k`` steps (truncated
        BPTT); ``k >= T`` changes nothing.
        """
        self.check_input(xs)
        B = ops_for(xs)
        T, batch = xs.shape[0], xs.shape[1]
        if state is None:
            state = self.initial_state(B, batch)
        if truncate is not None and not (isinstance(truncate, (int, np.integer)) and truncate > 0):
            raise ValueError(f"truncate must be a positive integer, got {truncate!r}")
        ts = B.arange(T) if truncate is not None else None
        if self.layerwise:
            return self._run_layerwise(B, params, xs, state, record, truncate, ts)
        return self._run_stepwise(B, params, xs, state, record, truncate, ts)

    def _run_stepwise(self, B, params, xs, state, record, truncate, ts):
        def body(carry, inp):
            x_t, t = inp
            carry = _truncate(B, carry, t, truncate)
            carry, _ = self.step(params, carry, x_t)
            outs = [s["out"] for s in carry["layers"]]
            cells = [s["cell"] for s in carry["layers"]] if record else None
            return carry, (outs, cells)

        final, (outs, cells) = B.scan(body, state, (xs, ts))
        rec = {"out": outs}
        if record:
            rec["state"] = cells
        return outs[-1], final, rec

    def _run_layerwise(self, B, params, xs, state, record, truncate, ts):
        seqs: list = []
        finals, cell_recs = [], []
        for l, blk in enumerate(self.blocks):
            p = params["layers"][l]
            src = xs if l == 0 else seqs[l - 1]
            ext = blk.projection(p, src)  # (T, B, n): all steps in one matmul
            for i, link in self.links_into(l):
                pre = xs if link.src == -1 else seqs[link.src]
                ext = ext + B.matmul(pre, params["links"][i]["w"])
            cell, proj = blk.cell, blk.projection

            def body(carry, inp, cell=cell, proj=proj, p=p):
                ext_t, t = inp
                carry = _truncate(B, carry, t, truncate)
                current = ext_t + proj.recurrent_current(p, carry["out"]) if proj.recurrent else ext_t
                cs, out = cell.step(p["cell"], carry["cell"], current)
                return {"cell": cs, "out": out}, (out, cs if record else None)

            final, (out_seq, cs_seq) = B.scan(body, state["layers"][l], (ext, ts))
            seqs.append(out_seq)
            finals.append(final)
            cell_recs.append(cs_seq)
        rec = {"out": seqs}
        if record:
            rec["state"] = cell_recs
        return seqs[-1], {"layers": finals}, rec


def _truncate(B: Backend, carry: Any, t: Any, k: int | None) -> Any:
    if k is None:
        return carry
    cut = (t % k) == 0
    return tree_map(lambda s: B.where(cut, B.stop_gradient(s), s), carry)


def _is_traced(x: Any) -> bool:
    return "Tracer" in type(x).__name__


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
    if finite and not _is_traced(xs) and not ops_for(xs).all_finite(xs):
        raise ValueError(f"{name}: contains NaN or infinite values")


def _group(layers: Sequence[Any]) -> tuple[Block, ...]:
    layers = list(layers)
    if not layers:
        raise ValueError("layers: a network needs at least one Dense projection")
    blocks: list[Block] = []
    i = 0
    while i < len(layers):
        proj = layers[i]
        if not isinstance(proj, Dense):
            raise ValueError(
                f"layers[{i}]: expected a projection (Dense/RecurrentDense) here, got {type(proj).__name__};"
                " each cell must follow a projection"
            )
        cell = layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], Cell) else None
        blocks.append(Block(proj, cell if cell is not None else Identity()))
        i += 2 if cell is not None else 1
    return tuple(blocks)
