"""Synapses: the linear maps from presynaptic activity to a block's input current.

Every weighted input of a block (a ``Dense`` projection's weights and bias, a recurrent
weight, a convolution, a pooling window, a skip or feedback link) is a :class:`Synapse`
acting on *flat* arrays: presynaptic activity ``(..., n_src)`` to current ``(..., n_dst)``,
with any leading axes (one step ``(B, n)`` or all steps ``(T, B, n)``).  Because the map
is linear in its input, every synapse also offers the two adjoints learning rules need:

``apply(p, x)``          the current ``I = x W`` (``W`` the map's matrix);
``transpose(p, g)``      ``g W^T``: an error at the current sent back to the presynaptic side;
``param_grads(p, g, x)`` ``dL/dp`` for ``dL/dI = g`` at input ``x``, summed over leading axes
                         (for a trace-based rule, ``x`` is a presynaptic trace);
``dense_weight(p)``      the ``(n_src, n_dst)`` matrix itself (materialised for convolutions),
                         for rules with per-synapse traces.

``p`` holds the synapse's own parameters under its own names (``{"w": ...}``, ``{"b": ...}``);
the network maps them to and from its parameter tree (see
:class:`~neuroplastic.network.Connection`), so no rule needs to know that layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import ops_for


class Synapse:
    """A linear map from ``n_src`` presynaptic units to ``n_dst`` currents (see the module docstring)."""

    n_src: int
    n_dst: int
    #: names of the parameters the map reads
    keys: tuple = ()

    def apply(self, p: dict, x: Any) -> Any:
        raise NotImplementedError

    def transpose(self, p: dict, g: Any) -> Any:
        raise NotImplementedError

    def param_grads(self, p: dict, g: Any, x: Any) -> dict:
        raise NotImplementedError

    def dense_weight(self, p: dict) -> Any:
        """``W`` with ``apply(p, x) = x @ W``: the map applied to the identity (exact, as the map is linear)."""
        leaves = list(p.values())
        if not leaves:
            raise ValueError(f"{type(self).__name__}: a map without parameters has no weight matrix to learn")
        B = ops_for(leaves[0])
        return self.apply(p, B.eye(self.n_src, dtype=leaves[0].dtype))


@dataclass(frozen=True)
class DenseMap(Synapse):
    """``I = x @ w``; ``mask_diagonal`` keeps ``diag(w)`` out of the map (no self-connections).

    :meth:`apply` uses :meth:`Backend.event_matmul <neuroplastic.backend.base.Backend.event_matmul>`:
    where ``x`` is sparse spikes over many steps at once, an event-driven product (same numbers
    up to summation order); a single step or a dense input takes the dense product.
    """

    n_src: int
    n_dst: int
    mask_diagonal: bool = False

    keys = ("w",)

    def weight(self, p: dict) -> Any:
        w = p["w"]
        if not self.mask_diagonal:
            return w
        return w * (1.0 - ops_for(w).eye(self.n_dst, dtype=w.dtype))

    def apply(self, p: dict, x: Any, bias: Any = None) -> Any:
        """``x @ w``, or ``x @ w + bias`` for a ``(n_dst,)`` ``bias`` (added inside the event kernel: the same
        numbers as adding it after, one pass over the output fewer)."""
        return ops_for(x).event_matmul(x, self.weight(p), bias)

    def transpose(self, p: dict, g: Any) -> Any:
        B = ops_for(g)
        return B.matmul(g, B.transpose(self.weight(p), (1, 0)))

    def param_grads(self, p: dict, g: Any, x: Any) -> dict:
        B = ops_for(g)
        dw = B.outer_sum(x, g)
        if self.mask_diagonal:
            dw = dw * (1.0 - B.eye(self.n_dst, dtype=dw.dtype))
        return {"w": dw}

    def dense_weight(self, p: dict) -> Any:
        return self.weight(p)


@dataclass(frozen=True)
class BiasMap(Synapse):
    """``I = b``: a bias, i.e. a synapse from a constant presynaptic unit whose activity is 1.

    Its presynaptic input is ``(..., 1)`` ones (or, for trace-based rules, a trace of ones);
    ``apply`` with ``x=None`` returns ``b`` itself.  ``repeat`` copies each bias over that
    many consecutive outputs (a convolution's per-channel bias over its positions).
    """

    n_dst: int
    repeat: int = 1

    n_src = 1
    keys = ("b",)

    def _expand(self, b: Any) -> Any:
        if self.repeat == 1:
            return b
        B = ops_for(b)
        return B.reshape(b[:, None] * B.ones((1, self.repeat), dtype=b.dtype), (self.n_dst,))

    def apply(self, p: dict, x: Any = None) -> Any:
        b = self._expand(p["b"])
        return b if x is None else x * b

    def transpose(self, p: dict, g: Any) -> Any:
        B = ops_for(g)
        return B.sum(g * self._expand(p["b"]), axis=-1, keepdims=True)

    def param_grads(self, p: dict, g: Any, x: Any = None) -> dict:
        B = ops_for(g)
        lead = tuple(range(g.ndim - 1))
        db = B.sum(g if x is None else g * x, axis=lead)
        if self.repeat > 1:
            db = B.sum(B.reshape(db, (-1, self.repeat)), axis=1)
        return {"b": db}

    def dense_weight(self, p: dict) -> Any:
        return self._expand(p["b"])[None, :]


@dataclass(frozen=True)
class ImageMap(Synapse):
    """A channels-first image map (:class:`~neuroplastic.layers.Conv2d` weights without bias, or
    :class:`~neuroplastic.layers.AvgPool2d`) on flat arrays: ``(..., C*H*W) -> (..., C'*H'*W')``."""

    op: Any
    in_shape: tuple

    @property
    def out_shape(self) -> tuple:
        return tuple(self.op.output_shape(self.in_shape))

    @property
    def n_src(self) -> int:  # type: ignore[override]
        return int(np.prod(self.in_shape))

    @property
    def n_dst(self) -> int:  # type: ignore[override]
        return int(np.prod(self.out_shape))

    @property
    def keys(self) -> tuple:  # type: ignore[override]
        return ("w",) if hasattr(self.op, "channels") else ()

    def _images(self, x: Any, shape: tuple) -> tuple[Any, tuple]:
        B = ops_for(x)
        lead = tuple(x.shape[:-1])
        return B.reshape(x, (int(np.prod(lead)) if lead else 1,) + shape), lead

    def _flat(self, y: Any, lead: tuple) -> Any:
        return ops_for(y).reshape(y, lead + (-1,))

    def apply(self, p: dict, x: Any) -> Any:
        img, lead = self._images(x, self.in_shape)
        return self._flat(self.op(p, img), lead)

    def transpose(self, p: dict, g: Any) -> Any:
        img, lead = self._images(g, self.out_shape)
        return self._flat(self.op.transpose(p, img, self.in_shape), lead)

    def param_grads(self, p: dict, g: Any, x: Any) -> dict:
        gi, _ = self._images(g, self.out_shape)
        xi, _ = self._images(x, self.in_shape)
        return self.op.param_grads(p, gi, xi)


__all__ = ["BiasMap", "DenseMap", "ImageMap", "Synapse"]
