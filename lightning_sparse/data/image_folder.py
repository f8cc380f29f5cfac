"""The ImageFolder DataModules, also importable from here: see
:mod:`lightning_sparse.data.image.folder` (and ``image.files``, ``image.datasets``, ``image.base``)."""

from lightning_sparse.data.image.base import ImageDataModuleBase
from lightning_sparse.data.image.datasets import ArrayImages, FileImages
from lightning_sparse.data.image.files import FileSource, decode_rgb, find_split, scan_classes
from lightning_sparse.data.image.folder import ImageFolderDataModule, TinyImageNetDataModule
from lightning_sparse.data.splits import stratified_take

__all__ = [
    "ArrayImages",
    "FileImages",
    "FileSource",
    "ImageDataModuleBase",
    "ImageFolderDataModule",
    "TinyImageNetDataModule",
    "decode_rgb",
    "find_split",
    "scan_classes",
    "stratified_take",
]
