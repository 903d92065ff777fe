"""Projections that turn presynaptic activity into input currents."""

from .conv import Conv2d
from .dense import Dense, RecurrentDense
from .pooling import AvgPool2d
from .synapse import BiasMap, DenseMap, ImageMap, Synapse

__all__ = ["AvgPool2d", "BiasMap", "Conv2d", "Dense", "DenseMap", "ImageMap", "RecurrentDense", "Synapse"]
