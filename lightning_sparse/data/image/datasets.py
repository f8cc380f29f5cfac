"""Labelled image datasets (in memory or decoded from files) and the pools the splits are cut from."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_sparse.data.image.files import FileSource, decode_rgb

__all__ = ["ArrayImages", "FileImages", "FilePool"]


class _Images(Dataset):
    """Labelled ``uint8`` images ``(H, W, C)``; item ``(transform(image), label)``."""

    def __init__(self, labels: np.ndarray, source_indices: np.ndarray,
                 transform: Callable[[Any], Any] | None = None) -> None:
        self.labels = labels  # (N,) int64
        self.source_indices = source_indices  # (N,) positions in the full split
        self.transform = transform

    def image(self, i: int) -> np.ndarray:
        """The ``uint8`` image ``(H, W, C)`` of item ``i``, before the transform."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        image = self.image(i)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[i])


class ArrayImages(_Images):
    """In-memory ``uint8`` images ``(N, H, W, C)`` and labels; item ``(transform(image), label)``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, source_indices: np.ndarray,
                 transform: Callable[[Any], Any] | None = None) -> None:
        super().__init__(labels, source_indices, transform)
        self.images = images  # (N, H, W, C) uint8

    def image(self, i: int) -> np.ndarray:
        return self.images[i]


class FileImages(_Images):
    """Images decoded from a :class:`FileSource` on access; item ``(transform(image), label)``."""

    def __init__(self, source: FileSource, files: Sequence[str], labels: np.ndarray,
                 source_indices: np.ndarray, transform: Callable[[Any], Any] | None = None) -> None:
        super().__init__(labels, source_indices, transform)
        self.source = source
        self.files = list(files)

    def image(self, i: int) -> np.ndarray:
        return decode_rgb(self.source.read(self.files[i]))  # (H, W, 3) uint8


class FilePool:
    """Every image file of one split with its label; ``subset`` gives a :class:`FileImages`."""

    def __init__(self, source: FileSource, files: list[str], labels: np.ndarray) -> None:
        self.source, self.files, self.labels = source, files, labels

    def subset(self, idx: np.ndarray, transform: Any) -> FileImages:
        return FileImages(self.source, [self.files[i] for i in idx], self.labels[idx], idx, transform)


class ToArray:
    """``uint8`` tensor ``(C, H, W)`` -> numpy ``(H, W, C)`` (the raw pixels corruptions expect)."""

    def __call__(self, image: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(image.permute(1, 2, 0).numpy())


class Compose:
    """Apply ``steps`` in order (picklable for DataLoader workers)."""

    def __init__(self, *steps: Callable[[Any], Any]) -> None:
        self.steps = steps

    def __call__(self, x: Any) -> Any:
        for step in self.steps:
            x = step(x)
        return x
