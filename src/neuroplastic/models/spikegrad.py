"""SpikeGrad's model container: a feed-forward network of integrate-and-fire layers on static input.

Used by the SpikeGrad rule (:mod:`neuroplastic.rules.spikegrad`, where the neuron and the
integer ANN are described) and, with ``integer=False``, as the float-backprop baseline.
It is not a time-stepped :class:`~neuroplastic.network.Network`: SpikeGrad's neurons have
no time constant, a pass is one presentation whose result depends only on the total
input, and layers are convolutions and poolings on images rather than blocks of cells.
It satisfies the :class:`~neuroplastic.protocols.Model` protocol (``n_in``, ``spiking``,
``init``, ``check_input``, ``run``).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..backend import Backend, get_backend, ops_for
from ..layers import AvgPool2d, Conv2d, Dense
from ..network import check_time_major

LAYER_TYPES = (Dense, Conv2d, AvgPool2d)


def round_half_away(x: Any) -> Any:
    """Round to the nearest integer, halves away from zero (exact: no ``x + 0.5`` rounding)."""
    B = ops_for(x)
    a = B.abs(x)
    f = B.floor(a)
    up = B.astype((a - f) >= 0.5, x.dtype)
    return B.sign(x) * (f + up)


def _positive(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


class SpikeGradNet:
    """A feed-forward SpikeGrad network on static inputs: ``Dense``/``Conv2d``/``AvgPool2d`` layers.

    ``input_shape`` is an int (a flat vector) or ``(C, H, W)`` (channels-first images;
    inputs arrive flattened as ``(T, B, C*H*W)`` and are summed over ``T``: non-leaky
    neurons only see the total input).  ``Dense`` layers flatten their input.  Hidden
    ``Dense``/``Conv2d`` layers are ReLU IF neurons, ``AvgPool2d`` layers linear IF neurons
    (weights ``1/k^2``), all with ``threshold``; the last layer is the non-spiking output.
    ``integer=True`` gives the integer ANN ``S = R(φ(z / Θ))``; ``integer=False`` the same
    network with float activations ``φ(z / Θ)`` (the float-backprop baseline).
    """

    def __init__(
        self,
        input_shape: int | Sequence[int],
        layers: Sequence[Any],
        threshold: float = 1.0,
        integer: bool = True,
    ) -> None:
        if isinstance(input_shape, (int, np.integer)) and not isinstance(input_shape, bool):
            input_shape = (int(input_shape),)
        shape = tuple(input_shape)
        if len(shape) not in (1, 3) or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape):
            raise ValueError(f"input_shape: expected a positive int or (C, H, W), got {input_shape!r}")
        layers = list(layers)
        if not layers:
            raise ValueError("layers: a SpikeGrad network needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, LAYER_TYPES) or getattr(layer, "recurrent", False):
                raise ValueError(f"layers[{i}]: expected Dense, Conv2d or AvgPool2d, got {type(layer).__name__}")
        self.threshold = _positive(threshold, "threshold")
        self.integer = bool(integer)
        self.layers = tuple(layers)
        self.input_shape = tuple(int(s) for s in shape)
        shapes = [self.input_shape]
        for i, layer in enumerate(layers):
            if isinstance(layer, Dense):
                shapes.append((int(layer.size),))
            else:
                if len(shapes[-1]) != 3:
                    raise ValueError(
                        f"layers[{i}]: {type(layer).__name__} needs an image (C, H, W) input, got shape {shapes[-1]}"
                    )
                shapes.append(tuple(layer.output_shape(shapes[-1])))
        self.shapes = tuple(shapes)
        #: per layer: synapses leaving each input (shape ``shapes[l]``) and entering each output
        self.fanout, self.fanin = self._fan_counts()

    # ------------------------------------------------------------------ structure
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_in(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.shapes[-1]))

    @property
    def sizes(self) -> list[int]:
        """Neurons per layer."""
        return [int(np.prod(s)) for s in self.shapes[1:]]

    @property
    def spiking(self) -> list[bool]:
        """Hidden layers spike; the output layer integrates."""
        return [True] * (self.n_layers - 1) + [False]

    def activation(self, l: int) -> str:
        """``"relu"`` (Dense, Conv2d), ``"linear"`` (AvgPool2d) or ``"output"`` (last layer)."""
        if l == self.n_layers - 1:
            return "output"
        return "linear" if isinstance(self.layers[l], AvgPool2d) else "relu"

    def layer_threshold(self, l: int) -> float:
        """``Θ`` of layer ``l`` (1 for the non-spiking output layer: ``V^L`` is not divided)."""
        return 1.0 if l == self.n_layers - 1 else self.threshold

    def __repr__(self) -> str:
        parts = [f"{type(layer).__name__}->{s}" for layer, s in zip(self.layers, self.shapes[1:])]
        return f"SpikeGradNet(input={self.input_shape}, [{', '.join(parts)}], threshold={self.threshold}, integer={self.integer})"

    # ------------------------------------------------------------------ params
    def layer_params(self, params: dict, l: int) -> dict:
        """Layer ``l``'s parameters (``{"w": ..., "b": ...}``; ``{}`` for pooling)."""
        return params["layers"][l]

    def param_tree(self, per_layer: Sequence[dict]) -> dict:
        """A parameter-shaped tree from one dict per layer (gradients, increments)."""
        if len(per_layer) != self.n_layers:
            raise ValueError(f"per_layer: expected {self.n_layers} entries, got {len(per_layer)}")
        return {"layers": list(per_layer)}

    def init_numpy(self, seed: int | np.random.Generator = 0) -> dict:
        """Initial parameters ``{"layers": [...]}`` as numpy float64 (identical on every backend)."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        params = []
        for layer, shape in zip(self.layers, self.shapes[:-1]):
            if isinstance(layer, Dense):
                params.append(layer.init_params(rng, int(np.prod(shape))))
            else:
                params.append(layer.init_params(rng, shape))
        return {"layers": params}

    def init(self, seed: int | np.random.Generator = 0, backend: str | Backend = "jax", dtype: str = "float32", device: str | None = None) -> dict:
        """Initial parameters on ``backend`` (see :meth:`init_numpy`)."""
        B = get_backend(backend, device=device, dtype=dtype)
        return B.tree_asarray(self.init_numpy(seed))

    def count_connections(self) -> list[int]:
        """Synapses of each layer, i.e. an ANN's multiply-accumulates per example and pass."""
        return [int(round(float(f.sum()))) for f in self.fanout]

    def _fan_counts(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per layer, the outgoing-synapse count of each input and incoming count of each output (numpy)."""
        B = get_backend("numpy", dtype="float64")
        params = self.init_numpy(0)["layers"]
        fanout, fanin = [], []
        for l in range(self.n_layers):
            ones = self.ones_params(l, params[l])
            scale = 1.0 / self.layers[l].weight if isinstance(self.layers[l], AvgPool2d) else 1.0
            fanout.append(np.asarray(self.transpose_layer(l, ones, B.ones((1,) + self.shapes[l + 1])))[0] * scale)
            fanin.append(np.asarray(self.apply_layer(l, ones, B.ones((1,) + self.shapes[l])))[0] * scale)
        return fanout, fanin

    # ------------------------------------------------------------------ layer maps
    def ones_params(self, l: int, p: dict) -> dict:
        """Layer ``l``'s parameters with every weight 1 and no bias (pooling: ``{}``, weights ``1/k^2``)."""
        if "w" not in p:
            return {}
        return {"w": ops_for(p["w"]).ones_like(p["w"])}

    def synapse_sum(self, l: int, x: Any) -> Any:
        """``sum_j x_j fanout_j`` over layer ``l``'s inputs (and the batch): events into layer ``l``."""
        # elementwise with precomputed fan counts: no matmul against constant ones, which
        # XLA's CPU dot fusion gets wrong under jit (jax 0.10.2)
        B = ops_for(x)
        return B.sum(x * B.asarray(self.fanout[l], dtype=x.dtype))

    def synapse_sum_transposed(self, l: int, g: Any) -> Any:
        """``sum_i g_i fanin_i`` over layer ``l``'s outputs (and the batch): events sent down through it."""
        B = ops_for(g)
        return B.sum(g * B.asarray(self.fanin[l], dtype=g.dtype))

    def apply_layer(self, l: int, p: dict, x: Any) -> Any:
        """Total input ``z`` of layer ``l`` for its input ``x`` ``(B, *shapes[l])``."""
        layer = self.layers[l]
        if isinstance(layer, Dense):
            return layer(p, ops_for(x).reshape(x, (x.shape[0], -1)))
        return layer(p, x)

    def transpose_layer(self, l: int, p: dict, g: Any) -> Any:
        """Adjoint of layer ``l``: ``dL/dx`` ``(B, *shapes[l])`` for ``dL/dz = g``."""
        layer = self.layers[l]
        B = ops_for(g)
        if isinstance(layer, Dense):
            return B.reshape(B.matmul(g, B.transpose(p["w"])), (g.shape[0],) + self.shapes[l])
        return layer.transpose(p, g, self.shapes[l])

    def layer_param_grads(self, l: int, p: dict, g: Any, x: Any) -> dict:
        """``dL/dparams`` of layer ``l`` (summed over the batch) for ``dL/dz = g`` at input ``x``."""
        layer = self.layers[l]
        if isinstance(layer, Dense):
            B = ops_for(g)
            xf = B.reshape(x, (x.shape[0], -1))
            out = {"w": B.matmul(B.transpose(xf), g)}
            if "b" in p:
                out["b"] = B.sum(g, axis=0)
            return out
        return layer.param_grads(p, g, x)

    # ------------------------------------------------------------------ forward
    def check_input(self, xs: Any, name: str = "xs") -> None:
        """Raise a ``ValueError`` naming ``name`` unless ``xs`` is ``(T, B, n_in)`` and finite."""
        check_time_major(xs, self.n_in, name)

    def image(self, xs: Any, name: str = "xs") -> Any:
        """``(T, B, n_in) -> (B, *input_shape)``: the input summed over time."""
        check_time_major(xs, self.n_in, name)
        shape = tuple(xs.shape)
        B = ops_for(xs)
        x = xs[0] if shape[0] == 1 else B.sum(xs, axis=0)
        return B.reshape(x, (shape[1],) + self.input_shape)

    def forward(self, params: dict, x: Any) -> list:
        """Every layer's output for images ``x`` ``(B, *input_shape)``: ``[S^1, ..., S^{L-1}, V^L]``."""
        B = ops_for(x)
        outs = []
        for l in range(self.n_layers):
            z = self.apply_layer(l, self.layer_params(params, l), x)
            kind = self.activation(l)
            if kind == "output":
                outs.append(z)
                break
            a = z / self.threshold
            if kind == "relu":
                a = B.relu(a)
            x = round_half_away(a) if self.integer else a
            outs.append(x)
        return outs

    def run(self, params: dict, xs: Any, state: Any = None, record: bool = False, truncate: int | None = None) -> tuple[Any, dict, dict]:
        """``(ys, {}, rec)`` as :meth:`Network.run`: ``ys = V^L`` as ``(1, B, n_out)``, ``rec["out"]`` every layer ``(1, B, n_l)``.

        ``state`` and ``truncate`` are accepted for interface compatibility and ignored
        (the network has no state across presentations).
        """
        x = self.image(xs)
        B = ops_for(x)
        outs = self.forward(params, x)
        flat = [B.reshape(o, (1, o.shape[0], -1)) for o in outs]
        return flat[-1], {}, {"out": flat}


__all__ = ["LAYER_TYPES", "SpikeGradNet", "round_half_away"]
