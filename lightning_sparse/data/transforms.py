"""The augmentation presets, also importable from here: see :mod:`lightning_sparse.data.image.transforms`."""

from lightning_sparse.data.image import transforms as _module
from lightning_sparse.data.image.transforms import *  # noqa: F403

__all__ = list(_module.__all__)
