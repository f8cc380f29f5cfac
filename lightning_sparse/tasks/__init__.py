"""LightningModules: what is trained and how it is scored (loss, metrics, optimizer).

:class:`~lightning_sparse.tasks.base.SparseTask` is their shared base (batch layouts, metric
triples, the per-sample contract, optimizers and schedules).
"""

from lightning_sparse.tasks.base import SparseTask
from lightning_sparse.tasks.classification import ImageClassifier
from lightning_sparse.tasks.timeseries import TimeSeriesClassifier

__all__ = ["ImageClassifier", "SparseTask", "TimeSeriesClassifier"]
