"""Lightning callbacks: they decide *when*; ``lightning_sparse.core`` decides *what*.

Every mask-holding callback subclasses :class:`SparseMaskCallback` and satisfies the
:class:`MaskProvider` protocol, through which :class:`TrulySparse` runs any of them truly sparse.
:class:`PruningAtInit` scores the units once before training (SNIP, GraSP, SynFlow);
:class:`LotteryTicket` prunes a trained network into a ticket file that
``DynamicSparseTraining(masks_from=...)`` trains from. :class:`AdversarialTraining` /
:class:`AdversarialRobustness` train and evaluate with PGD; :class:`HardnessScores` writes EL2N /
GraNd scores of the training set.
:class:`MSRS` learns a sparse mask at the start of training (then dense, or sparse on the same
base). :class:`DynamicDataPruning` chooses each epoch's training samples by their losses.
"""

from lightning_sparse.callbacks._masked import SparseMaskCallback
from lightning_sparse.callbacks.data_pruning import DynamicDataPruning, PrunedSampler
from lightning_sparse.callbacks.dst import METHODS, DynamicSparseTraining
from lightning_sparse.callbacks.adversarial import AdversarialRobustness, AdversarialTraining
from lightning_sparse.callbacks.hardness import HardnessScores
from lightning_sparse.callbacks.lottery_ticket import LotteryTicket, load_ticket
from lightning_sparse.callbacks.mask_provider import MaskProvider, mask_providers
from lightning_sparse.callbacks.msrs import MSRS
from lightning_sparse.callbacks.pruning_at_init import PRUNING_AT_INIT_METHODS, PruningAtInit
from lightning_sparse.callbacks.robustness import CorruptionRobustness
from lightning_sparse.callbacks.truly_sparse import TrulySparse

__all__ = [
    "AdversarialRobustness",
    "AdversarialTraining",
    "HardnessScores",
    "LotteryTicket",
    "load_ticket",
    "METHODS",
    "MSRS",
    "CorruptionRobustness",
    "DynamicDataPruning",
    "DynamicSparseTraining",
    "MaskProvider",
    "PRUNING_AT_INIT_METHODS",
    "PrunedSampler",
    "PruningAtInit",
    "SparseMaskCallback",
    "TrulySparse",
    "mask_providers",
]
