"""LightningDataModules for the datasets used by the recipes."""

from lightning_sparse.data.digits import DigitsDataModule

__all__ = ["DigitsDataModule"]
