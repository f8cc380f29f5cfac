"""Lightning callbacks: they decide *when*; ``lightning_sparse.core`` decides *what*."""

from lightning_sparse.callbacks.dst import METHODS, DynamicSparseTraining
from lightning_sparse.callbacks.robustness import CorruptionRobustness
from lightning_sparse.callbacks.truly_sparse import TrulySparse

__all__ = ["METHODS", "CorruptionRobustness", "DynamicSparseTraining", "TrulySparse"]
