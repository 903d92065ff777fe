"""Training: the trainer and the optimizers."""

from .optimizers import OPTIMIZERS, NaiveOptimizer, Optimizer, make_optimizer
from .guard import NonFiniteError
from .trainer import Trainer

__all__ = ["NaiveOptimizer", "NonFiniteError", "OPTIMIZERS", "Optimizer", "Trainer", "make_optimizer"]
