"""Projections that turn presynaptic activity into input currents."""

from .conv import Conv2d
from .dense import Dense, RecurrentDense
from .pooling import AvgPool2d

__all__ = ["AvgPool2d", "Conv2d", "Dense", "RecurrentDense"]
