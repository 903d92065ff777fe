"""Dense projections: feed-forward ``Dense`` and ``RecurrentDense`` (input plus recurrent weights)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import ops_for
from .synapse import BiasMap, DenseMap, Synapse

INITS = ("normal", "uniform")


def init_weight(rng: np.random.Generator, n_in: int, n_out: int, gain: float, kind: str) -> np.ndarray:
    """Fan-in scaled weights: ``N(0, gain^2/n_in)`` or ``U(+-gain*sqrt(3/n_in))`` (same variance)."""
    if kind == "normal":
        return rng.normal(0.0, gain / math.sqrt(n_in), (n_in, n_out))
    bound = gain * math.sqrt(3.0 / n_in)
    return rng.uniform(-bound, bound, (n_in, n_out))


@dataclass(frozen=True)
class Dense:
    """``I = x @ w (+ b)``; works on one step ``(B, n_in)`` or on all steps ``(T, B, n_in)`` at once."""

    size: int
    bias: bool = False
    gain: float = 1.0
    init: str = "normal"

    recurrent = False

    def __post_init__(self) -> None:
        if not (isinstance(self.size, (int, np.integer)) and self.size > 0):
            raise ValueError(f"size must be a positive integer, got {self.size!r}")
        if self.init not in INITS:
            raise ValueError(f"init: unknown value {self.init!r}; choose one of {list(INITS)}")
        if not self.gain > 0:
            raise ValueError(f"gain must be positive, got {self.gain!r}")

    def output_shape(self, in_shape: Any) -> tuple[int]:
        """``(size,)`` whatever the input's shape (an image input is read flat)."""
        return (self.size,)

    def init_params(self, rng: np.random.Generator, n_in: Any) -> dict:
        p = {"w": init_weight(rng, _flat_size(n_in), self.size, self.gain, self.init)}
        if self.bias:
            p["b"] = np.zeros(self.size)
        return p

    def synapses(self, in_shape: Any) -> list[tuple[str, dict, Synapse]]:
        """``(kind, {synapse key: parameter name}, synapse)`` for each weighted input of the block."""
        out: list = [("feed", {"w": "w"}, DenseMap(_flat_size(in_shape), self.size))]
        if self.bias:
            out.append(("bias", {"b": "b"}, BiasMap(self.size)))
        return out

    def __call__(self, params: dict, x: Any) -> Any:
        """``x @ w (+ b)``; an event-driven product where ``x`` is sparse spikes, the bias added inside it
        (:meth:`Backend.event_matmul`)."""
        return ops_for(x).event_matmul(x, params["w"], params.get("b"))


@dataclass(frozen=True)
class RecurrentDense(Dense):
    """``I_t = x_t @ w + z_{t-1} @ w_rec (+ b)``; ``self_connections=False`` zeroes ``diag(w_rec)``.

    The diagonal is masked in :meth:`recurrent_weight` on every use, so it stays out of
    the model even when an optimizer writes to it.
    """

    self_connections: bool = True
    rec_gain: float = 1.0

    recurrent = True

    def init_params(self, rng: np.random.Generator, n_in: Any) -> dict:
        p = super().init_params(rng, n_in)
        w_rec = init_weight(rng, self.size, self.size, self.rec_gain, self.init)
        if not self.self_connections:
            np.fill_diagonal(w_rec, 0.0)
        p["w_rec"] = w_rec
        return p

    def synapses(self, in_shape: Any) -> list[tuple[str, dict, Synapse]]:
        return super().synapses(in_shape) + [("recurrent", {"w": "w_rec"}, DenseMap(self.size, self.size, not self.self_connections))]

    def recurrent_weight(self, params: dict) -> Any:
        w = params["w_rec"]
        if self.self_connections:
            return w
        B = ops_for(w)
        return w * (1.0 - B.eye(self.size, dtype=w.dtype))

    def recurrent_current(self, params: dict, z_prev: Any) -> Any:
        B = ops_for(z_prev)
        return B.matmul(z_prev, self.recurrent_weight(params))


def _flat_size(shape: Any) -> int:
    """Number of units of an input given as a size or a shape."""
    if isinstance(shape, (tuple, list)):
        return int(np.prod(shape))
    return int(shape)
