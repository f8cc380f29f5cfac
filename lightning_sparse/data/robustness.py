"""The corrupted image test sets, also importable from here: see
:mod:`lightning_sparse.data.image.corrupted` and :mod:`lightning_sparse.data.image.robustness`."""

from lightning_sparse.data.corruptions import CorruptedDataset
from lightning_sparse.data.image.corrupted import CIFARCDataset, ImageNetCFolder, write_cifar_c
from lightning_sparse.data.image.files import IMAGE_EXTENSIONS
from lightning_sparse.data.image.robustness import CorruptionsMixin, SupportsCorruptions

__all__ = [
    "CIFARCDataset",
    "CorruptedDataset",
    "CorruptionsMixin",
    "IMAGE_EXTENSIONS",
    "ImageNetCFolder",
    "SupportsCorruptions",
    "write_cifar_c",
]
