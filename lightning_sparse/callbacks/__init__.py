"""Lightning callbacks: they decide *when*; ``lightning_sparse.core`` decides *what*."""

from lightning_sparse.callbacks.dst import METHODS, DynamicSparseTraining

__all__ = ["METHODS", "DynamicSparseTraining"]
