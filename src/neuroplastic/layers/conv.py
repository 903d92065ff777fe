"""2-D convolution on channels-first images ``(N, C, H, W)``, built from backend ops only.

The convolution is written as im2col (``k*k`` shifted slices of the zero-padded input,
stacked) followed by one ``einsum`` with the kernel, so it runs on torch, JAX and numpy
and is differentiable wherever the backend is.  Besides the forward map it gives its two
adjoints explicitly, for rules that backpropagate by hand (SpikeGrad):

* :meth:`Conv2d.transpose` — ``dL/dx`` from ``dL/dy`` (a full correlation with the
  flipped, channel-swapped kernel), the error path;
* :meth:`Conv2d.param_grads` — ``dL/dw``, ``dL/db`` from ``dL/dy`` and the input.

Layout (PyTorch's): images ``(N, C, H, W)``, kernel ``w`` of shape ``(C_out, C_in, k, k)``,
bias ``b`` of shape ``(C_out,)``.  Stride 1 (the paper topologies need no other);
``padding`` zeros on every side, so ``H_out = H + 2*padding - k + 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..backend import ops_for
from .synapse import BiasMap, ImageMap, Synapse

INITS = ("normal", "uniform")


def _check_int(value: Any, name: str, minimum: int) -> None:
    if not (isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_image_shape(shape: Sequence[int], name: str = "in_shape") -> tuple[int, int, int]:
    """``shape`` as a ``(C, H, W)`` tuple of positive integers, or a ``ValueError`` naming ``name``."""
    shape = tuple(shape)
    if len(shape) != 3 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in shape):
        raise ValueError(f"{name}: expected an image shape (C, H, W) of positive integers, got {shape}")
    return tuple(int(s) for s in shape)  # type: ignore[return-value]


def check_images(x: Any, channels: int | None = None, name: str = "x") -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``x`` is ``(N, C, H, W)`` (with ``C == channels``)."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 4:
        raise ValueError(f"{name}: expected images (N, C, H, W), got shape {shape}")
    if channels is not None and shape[1] != channels:
        raise ValueError(f"{name}: expected {channels} channels (axis 1), got {shape[1]} (shape {shape})")


def pad2d(x: Any, before_h: int, after_h: int, before_w: int, after_w: int) -> Any:
    """Zero-pad the last two axes of ``(N, C, H, W)`` (by concatenation: works on every backend)."""
    if before_h == after_h == before_w == after_w == 0:
        return x
    B = ops_for(x)
    n, c, h, w = x.shape
    parts = []
    if before_h:
        parts.append(B.zeros((n, c, before_h, w), dtype=x.dtype))
    parts.append(x)
    if after_h:
        parts.append(B.zeros((n, c, after_h, w), dtype=x.dtype))
    x = B.concatenate(parts, axis=2) if len(parts) > 1 else x
    h2 = h + before_h + after_h
    parts = []
    if before_w:
        parts.append(B.zeros((n, c, h2, before_w), dtype=x.dtype))
    parts.append(x)
    if after_w:
        parts.append(B.zeros((n, c, h2, after_w), dtype=x.dtype))
    return B.concatenate(parts, axis=3) if len(parts) > 1 else x


def im2col(x: Any, k: int) -> Any:
    """``(N, C, H, W) -> (N, C, k*k, H-k+1, W-k+1)``: the ``k*k`` shifted views, kernel-position-major."""
    B = ops_for(x)
    h_out, w_out = x.shape[2] - k + 1, x.shape[3] - k + 1
    return B.stack([x[:, :, i : i + h_out, j : j + w_out] for i in range(k) for j in range(k)], axis=2)


@dataclass(frozen=True)
class Conv2d:
    """``y = w * x + b``: ``channels`` output maps, square ``kernel_size``, stride 1, zero ``padding``.

    Weights are drawn fan-in scaled (fan-in ``C_in*k*k``) as :class:`~neuroplastic.layers.Dense`
    does: ``N(0, gain^2/fan_in)`` or the uniform law of the same variance; bias zero.
    """

    channels: int
    kernel_size: int
    padding: int = 0
    bias: bool = True
    gain: float = 1.0
    init: str = "normal"

    def __post_init__(self) -> None:
        _check_int(self.channels, "channels", 1)
        _check_int(self.kernel_size, "kernel_size", 1)
        _check_int(self.padding, "padding", 0)
        if self.init not in INITS:
            raise ValueError(f"init: unknown value {self.init!r}; choose one of {list(INITS)}")
        if not self.gain > 0:
            raise ValueError(f"gain must be positive, got {self.gain!r}")

    # ------------------------------------------------------------------ shapes and params
    def output_shape(self, in_shape: Sequence[int]) -> tuple[int, int, int]:
        """``(C_out, H_out, W_out)`` for an input image of shape ``(C, H, W)``."""
        c, h, w = check_image_shape(in_shape)
        h_out, w_out = h + 2 * self.padding - self.kernel_size + 1, w + 2 * self.padding - self.kernel_size + 1
        if h_out < 1 or w_out < 1:
            raise ValueError(
                f"kernel_size: {self.kernel_size} (padding {self.padding}) does not fit an input of shape {(c, h, w)}"
            )
        return (self.channels, h_out, w_out)

    def init_params(self, rng: np.random.Generator, in_shape: Sequence[int]) -> dict:
        """``{"w": (C_out, C_in, k, k)[, "b": (C_out,)]}`` as numpy float64."""
        self.output_shape(in_shape)  # validates the shape and that the kernel fits
        c_in = check_image_shape(in_shape)[0]
        fan_in = c_in * self.kernel_size**2
        shape = (self.channels, c_in, self.kernel_size, self.kernel_size)
        if self.init == "normal":
            w = rng.normal(0.0, self.gain / math.sqrt(fan_in), shape)
        else:
            bound = self.gain * math.sqrt(3.0 / fan_in)
            w = rng.uniform(-bound, bound, shape)
        p = {"w": w}
        if self.bias:
            p["b"] = np.zeros(self.channels)
        return p

    def synapses(self, in_shape: Sequence[int]) -> list[tuple[str, dict, Synapse]]:
        """The kernel (a flat :class:`ImageMap`) and the per-channel bias, for a network block."""
        out_shape = self.output_shape(in_shape)
        out: list = [("feed", {"w": "w"}, ImageMap(self, tuple(in_shape)))]
        if self.bias:
            out.append(("bias", {"b": "b"}, BiasMap(int(np.prod(out_shape)), repeat=out_shape[1] * out_shape[2])))
        return out

    # ------------------------------------------------------------------ maps
    def _padded_cols(self, x: Any) -> Any:
        p = self.padding
        return im2col(pad2d(x, p, p, p, p), self.kernel_size)

    def __call__(self, params: dict, x: Any) -> Any:
        """``(N, C_in, H, W) -> (N, C_out, H_out, W_out)``."""
        w = params["w"]
        check_images(x, w.shape[1])
        B = ops_for(x)
        cols = self._padded_cols(x)
        k2 = self.kernel_size**2
        out = B.einsum("ncpij,ocp->noij", cols, B.reshape(w, (w.shape[0], w.shape[1], k2)))
        if "b" in params:
            out = out + B.reshape(params["b"], (1, -1, 1, 1))
        return out

    def transpose(self, params: dict, g: Any, in_shape: Sequence[int] | None = None) -> Any:
        """``dL/dx`` for ``dL/dy = g`` (``(N, C_out, H_out, W_out) -> (N, C_in, H, W)``): the adjoint map.

        ``in_shape`` (optional, ``(C_in, H, W)``) is checked against ``g``'s shape.
        """
        w = params["w"]
        check_images(g, w.shape[0], "g")
        if in_shape is not None and self.output_shape(in_shape) != tuple(g.shape[1:]):
            raise ValueError(f"g: shape {tuple(g.shape)} does not match the output of an input {tuple(in_shape)}")
        B = ops_for(g)
        k, p = self.kernel_size, self.padding
        # full correlation: pad by k-1, correlate with the kernel flipped in space, C_in <-> C_out
        w_t = B.transpose(B.flip(B.flip(w, axis=2), axis=3), (1, 0, 2, 3))
        cols = im2col(pad2d(g, k - 1, k - 1, k - 1, k - 1), k)
        dx = B.einsum("nopij,cop->ncij", cols, B.reshape(w_t, (w_t.shape[0], w_t.shape[1], k * k)))
        if p:
            dx = dx[:, :, p : dx.shape[2] - p, p : dx.shape[3] - p]
        return dx

    def param_grads(self, params: dict, g: Any, x: Any) -> dict:
        """``{"w": dL/dw[, "b": dL/db]}`` summed over the batch, for ``dL/dy = g`` at input ``x``."""
        w = params["w"]
        check_images(x, w.shape[1])
        check_images(g, w.shape[0], "g")
        B = ops_for(g)
        cols = self._padded_cols(x)
        dw = B.reshape(B.einsum("noij,ncpij->ocp", g, cols), tuple(w.shape))
        out = {"w": dw}
        if "b" in params:
            out["b"] = B.sum(g, axis=(0, 2, 3))
        return out


__all__ = ["Conv2d", "check_image_shape", "check_images", "im2col", "pad2d"]
