"""The UCI optical-recognition handwritten digits as a LightningDataModule.

Alpaydin & Kaynak 1998, "Optical Recognition of Handwritten Digits", UCI Machine Learning
Repository (doi:10.24432/C50P49): 1797 grayscale 8x8 images of the digits 0-9 with pixel values
0-16. The data ships inside scikit-learn (``sklearn.datasets.load_digits``), so nothing is
downloaded: a real, small classification task that trains in seconds on a CPU.

Images are scaled to ``[0, 1]``, resized with bilinear interpolation to ``image_size`` and then
normalised with the mean and standard deviation of the training split (one scalar each).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import Dataset

from lightning_sparse.data.base import DataModule, check_count
from lightning_sparse.data.splits import stratified_take

__all__ = ["DigitsDataModule"]

_NUM_CLASSES = 10


class _DigitsSplit(Dataset):
    """In-memory images and labels; items ``(image, label)``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, source_indices: np.ndarray) -> None:
        self.images = images  # (N, 1, H, W) float32
        self.labels = labels  # (N,) int64
        self.source_indices = source_indices  # (N,) positions in ``load_digits()``

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


class DigitsDataModule(DataModule):
    """Stratified, seeded train/val/test splits of scikit-learn's 8x8 digits, upsampled.

    Each item is ``(image, label)`` with ``image`` a float32 tensor of shape
    ``(1, image_size, image_size)`` and ``label`` an int64 scalar. With ``return_index=True`` the
    training batches are ``(image, label, index)`` where ``index`` (int64) is the sample's
    position in ``train_dataset``, the key that data-pruning callbacks use for per-sample scores;
    ``train_dataset.source_indices[index]`` gives its position in ``load_digits()``. Loaders,
    ``train_sampler`` and mid-epoch resume: :class:`~lightning_sparse.data.base.DataModule`.

    Args:
        image_size: Side of the square output images; the 8x8 originals are resized bilinearly.
        batch_size: Samples per batch for every split.
        val_fraction: Share of the 1797 samples held out for validation, in ``(0, 1)``.
        test_fraction: Share held out for testing, in ``(0, 1)``; ``val_fraction + test_fraction``
            must stay below 1.
        **kwargs: ``seed`` (of the stratified split; the same seed always gives the same split),
            ``num_workers``, ``return_index``, ``loader`` (``"memory"``: batches sliced from the
            split's float tensors, no augmentation, as the per-sample path): see
            :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> dm = DigitsDataModule(image_size=16, batch_size=32)
        >>> dm.setup("fit")
        >>> len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)
        (1258, 180, 359)
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> tuple(x.shape), y.dtype
        ((32, 1, 16, 16), torch.int64)
    """

    num_classes = _NUM_CLASSES
    in_channels = 1
    _memory_loader = True  # loader="memory": the split tensors as they are, no augmentation

    def __init__(
        self,
        image_size: int = 32,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        check_count("image_size", image_size, 1)
        for arg, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise ValueError(f"`{arg}` must be in (0, 1), got {value!r}.")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                "`val_fraction + test_fraction` must be below 1 to leave training data, got "
                f"{val_fraction} + {test_fraction} = {val_fraction + test_fraction}."
            )
        self.image_size = image_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.mean: float | None = None
        self.std: float | None = None

    def _split_indices(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = labels.shape[0]
        n_val, n_test = round(self.val_fraction * n), round(self.test_fraction * n)
        for arg, count in (("val_fraction", n_val), ("test_fraction", n_test)):
            if count < _NUM_CLASSES:
                raise ValueError(
                    f"`{arg}` must leave at least one sample per class ({_NUM_CLASSES} of {n}) for "
                    f"a stratified split, got {getattr(self, arg)} ({count} samples)."
                )
        if n - n_val - n_test < _NUM_CLASSES:
            raise ValueError(
                "`val_fraction + test_fraction` leaves fewer training samples than classes, got "
                f"{self.val_fraction} + {self.test_fraction}."
            )
        rng = np.random.default_rng(self.seed)
        test, rest = stratified_take(labels, n_test, rng)
        val, train = stratified_take(labels[rest], n_val, rng)
        return rest[train], rest[val], test

    def setup(self, stage: str | None = None) -> None:
        """Load the digits, split them and build the three datasets (all splits, any stage)."""
        if self.train_dataset is not None:
            return
        digits = load_digits()
        labels = digits.target.astype(np.int64)
        images = torch.from_numpy(digits.images).to(torch.float32).div_(16.0).unsqueeze(1)
        if self.image_size != images.shape[-1]:  # (N, 1, 8, 8) -> (N, 1, S, S)
            size = (self.image_size, self.image_size)
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
            images = images.clamp_(0.0, 1.0)
        train, val, test = self._split_indices(labels)
        self.mean = images[train].mean().item()
        self.std = images[train].std().item()
        images = (images - self.mean) / self.std
        targets = torch.from_numpy(labels)

        def split(idx: np.ndarray) -> _DigitsSplit:
            t = torch.from_numpy(idx)
            return _DigitsSplit(images[t].contiguous(), targets[t].clone(), idx)

        self.train_dataset, self.val_dataset, self.test_dataset = split(train), split(val), split(test)

    # loader="memory" hooks
    def memory_arrays(self, split: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The split's ``float32 (N, 1, S, S)`` images (normalised) and ``int64 (N,)`` labels."""
        dataset = getattr(self, f"{split}_dataset")
        if not isinstance(dataset, _DigitsSplit):
            return None
        return dataset.images, dataset.labels

    def memory_transform(self, train: bool) -> None:
        """None: no augmentation (nor on the per-sample path); the images are normalised in ``setup``."""
        return None
