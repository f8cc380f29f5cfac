"""LightningModules: what is trained and how it is scored (loss, metrics, optimizer)."""

from lightning_sparse.tasks.classification import ImageClassifier
from lightning_sparse.tasks.timeseries import TimeSeriesClassifier

__all__ = ["ImageClassifier", "TimeSeriesClassifier"]
