"""Lightning callbacks: they decide *when*; ``lightning_sparse.core`` decides *what*.

Every mask-holding callback subclasses :class:`SparseMaskCallback` and satisfies the
:class:`MaskProvider` protocol, through which :class:`TrulySparse` runs any of them truly sparse.
:class:`MSRS` learns a sparse mask at the start of training (then dense, or sparse on the same
base). :class:`DynamicDataPruning` chooses each epoch's training samples by their losses.
"""

from lightning_sparse.callbacks._masked import SparseMaskCallback
from lightning_sparse.callbacks.data_pruning import DynamicDataPruning, PrunedSampler
from lightning_sparse.callbacks.dst import METHODS, DynamicSparseTraining
from lightning_sparse.callbacks.mask_provider import MaskProvider, mask_providers
from lightning_sparse.callbacks.msrs import MSRS
from lightning_sparse.callbacks.robustness import CorruptionRobustness
from lightning_sparse.callbacks.truly_sparse import TrulySparse

__all__ = [
    "METHODS",
    "MSRS",
    "CorruptionRobustness",
    "DynamicDataPruning",
    "DynamicSparseTraining",
    "MaskProvider",
    "PrunedSampler",
    "SparseMaskCallback",
    "TrulySparse",
    "mask_providers",
]
