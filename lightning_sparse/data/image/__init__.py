"""Image DataModules (UCI digits, CIFAR-10/100, ImageFolder trees, Tiny-ImageNet), transforms,
image files and corrupted image test sets."""

from lightning_sparse.data.image.base import ImageDataModuleBase
from lightning_sparse.data.image.cifar import CIFAR10_CLASSES, CIFAR10DataModule, CIFAR100DataModule, read_cifar_pickle
from lightning_sparse.data.image.corrupted import CIFARCDataset, ImageNetCFolder, write_cifar_c
from lightning_sparse.data.image.datasets import ArrayImages, FileImages
from lightning_sparse.data.image.digits import DigitsDataModule
from lightning_sparse.data.image.files import IMAGE_EXTENSIONS, FileSource, decode_rgb, find_split, scan_classes
from lightning_sparse.data.image.folder import ImageFolderDataModule, TinyImageNetDataModule
from lightning_sparse.data.image.robustness import CorruptionsMixin, SupportsCorruptions

__all__ = [
    "ArrayImages",
    "CIFAR100DataModule",
    "CIFAR10DataModule",
    "CIFAR10_CLASSES",
    "CIFARCDataset",
    "CorruptionsMixin",
    "DigitsDataModule",
    "FileImages",
    "FileSource",
    "IMAGE_EXTENSIONS",
    "ImageDataModuleBase",
    "ImageFolderDataModule",
    "ImageNetCFolder",
    "SupportsCorruptions",
    "TinyImageNetDataModule",
    "decode_rgb",
    "find_split",
    "read_cifar_pickle",
    "scan_classes",
    "write_cifar_c",
]
