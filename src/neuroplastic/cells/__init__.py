"""Neuron models: small pure step functions ``step(params, state, current) -> (state, out)``."""

from .alif import ALIF
from .base import Cell
from .integrate_fire import SignedIF
from .jacobians import CellJacobians, step_with_jacobians
from .lif import LIF
from .readout import Identity, LeakyReadout
from .rnn import TanhRNN

CELLS = {"lif": LIF, "alif": ALIF, "signed_if": SignedIF, "readout": LeakyReadout, "identity": Identity, "tanh": TanhRNN}

__all__ = ["ALIF", "CELLS", "Cell", "CellJacobians", "Identity", "LIF", "LeakyReadout", "SignedIF", "TanhRNN", "step_with_jacobians"]
