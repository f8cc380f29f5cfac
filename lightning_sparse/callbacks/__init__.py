"""Lightning callbacks: they decide *when*; ``lightning_sparse.core`` decides *what*."""

from lightning_sparse.callbacks.dst import METHODS, DynamicSparseTraining
from lightning_sparse.callbacks.robustness import CorruptionRobustness

__all__ = ["METHODS", "CorruptionRobustness", "DynamicSparseTraining"]
