""":class:`DigitsDataModule`, also importable from here: see :mod:`lightning_sparse.data.image.digits`."""

from lightning_sparse.data.image.digits import DigitsDataModule

__all__ = ["DigitsDataModule"]
