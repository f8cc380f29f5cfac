"""LightningModules: what is trained and how it is scored (loss, metrics, optimizer)."""

from lightning_sparse.tasks.classification import ImageClassifier

__all__ = ["ImageClassifier"]
