"""Training: the trainer and the optimizers."""

from .optimizers import OPTIMIZERS, NaiveOptimizer, Optimizer, make_optimizer
from .trainer import Trainer

__all__ = ["NaiveOptimizer", "OPTIMIZERS", "Optimizer", "Trainer", "make_optimizer"]
