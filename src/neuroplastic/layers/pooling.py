"""Average pooling on channels-first images ``(N, C, H, W)``, built from backend ops only.

Non-overlapping windows (stride = ``kernel_size``), floor mode: rows and columns that do
not fill a whole window are dropped, as ``torch.nn.AvgPool2d`` does.  The map is linear
with fixed weights ``1/k^2``; :meth:`AvgPool2d.transpose` is its adjoint (each output's
error spread evenly over its window, zero on the dropped border).  No parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..backend import ops_for
from .conv import _check_int, check_image_shape, check_images, pad2d
from .synapse import ImageMap, Synapse


@dataclass(frozen=True)
class AvgPool2d:
    """``y[n, c, i, j] = mean of x[n, c, k*i:k*i+k, k*j:k*j+k]`` (``k = kernel_size``)."""

    kernel_size: int = 2

    def __post_init__(self) -> None:
        _check_int(self.kernel_size, "kernel_size", 1)

    def output_shape(self, in_shape: Sequence[int]) -> tuple[int, int, int]:
        """``(C, H // k, W // k)`` for an input image of shape ``(C, H, W)``."""
        c, h, w = check_image_shape(in_shape)
        k = self.kernel_size
        if h < k or w < k:
            raise ValueError(f"kernel_size: {k} is larger than the input image {(c, h, w)}")
        return (c, h // k, w // k)

    def init_params(self, rng: np.random.Generator, in_shape: Sequence[int]) -> dict:
        """No parameters (``{}``); validates ``in_shape``."""
        self.output_shape(in_shape)
        return {}

    def synapses(self, in_shape: Sequence[int]) -> list[tuple[str, dict, Synapse]]:
        """The fixed pooling map (no parameters), for a network block."""
        return [("feed", {}, ImageMap(self, tuple(in_shape)))]

    @property
    def weight(self) -> float:
        """The fixed synaptic weight ``1/k^2`` of every window connection."""
        return 1.0 / self.kernel_size**2

    def __call__(self, params: dict, x: Any) -> Any:
        """``(N, C, H, W) -> (N, C, H // k, W // k)``."""
        check_images(x)
        B = ops_for(x)
        n, c, h, w = x.shape
        k = self.kernel_size
        ho, wo = h // k, w // k
        x = x[:, :, : ho * k, : wo * k]
        return B.sum(B.reshape(x, (n, c, ho, k, wo, k)), axis=(3, 5)) * self.weight

    def transpose(self, params: dict, g: Any, in_shape: Sequence[int] | None = None) -> Any:
        """``dL/dx`` for ``dL/dy = g``; ``in_shape = (C, H, W)`` restores a cropped border as zeros.

        Without ``in_shape`` the input is taken to have had no cropped border.
        """
        check_images(g, name="g")
        B = ops_for(g)
        n, _, ho, wo = g.shape
        k = self.kernel_size
        if in_shape is None:
            in_shape = (g.shape[1], ho * k, wo * k)
        c, h, w = check_image_shape(in_shape)
        if (c, ho, wo) != self.output_shape(in_shape):
            raise ValueError(f"g: shape {tuple(g.shape)} does not match the output of an input {(c, h, w)}")
        spread = g[:, :, :, None, :, None] * B.ones((1, 1, 1, k, 1, k), dtype=g.dtype) * self.weight
        dx = B.reshape(spread, (n, c, ho * k, wo * k))
        return pad2d(dx, 0, h - ho * k, 0, w - wo * k)

    def param_grads(self, params: dict, g: Any, x: Any) -> dict:
        """No parameters: ``{}``."""
        return {}


__all__ = ["AvgPool2d"]
