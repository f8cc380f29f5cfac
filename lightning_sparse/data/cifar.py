"""The CIFAR DataModules, also importable from here: see :mod:`lightning_sparse.data.image.cifar`."""

from lightning_sparse.data.image.cifar import CIFAR10_CLASSES, CIFAR10DataModule, CIFAR100DataModule, read_cifar_pickle

__all__ = ["CIFAR10_CLASSES", "CIFAR100DataModule", "CIFAR10DataModule", "read_cifar_pickle"]
