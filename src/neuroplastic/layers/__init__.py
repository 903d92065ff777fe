"""Projections that turn presynaptic activity into input currents."""

from .dense import Dense, RecurrentDense

__all__ = ["Dense", "RecurrentDense"]
