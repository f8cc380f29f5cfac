"""``CorruptedDataset``: a fixed corrupted copy of any image dataset, seeded per item."""

from __future__ import annotations

from typing import Any, Callable

from torch.utils.data import Dataset

from ._transform import Corrupt

__all__ = ["CorruptedDataset"]


class CorruptedDataset(Dataset):
    """Wrap a dataset so that item ``i`` is corrupted with a seed fixed by ``(seed, i)``.

    Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness to Common Corruptions
    and Perturbations" (ICLR, arXiv:1903.12261). Like the published CIFAR-10-C and ImageNet-C
    files, every item has one fixed corruption, whatever the order, shuffling or number of
    DataLoader workers; unlike them, nothing is stored.

    The wrapped dataset must yield an image (PIL ``"RGB"``/``"L"``, or a ``uint8`` array or
    tensor; see :class:`Corrupt`) or a tuple/list whose first element is one; the remaining
    elements (label, index, ...) pass through. ``transform`` runs after the corruption, e.g.
    ``ToTensor`` and ``Normalize``.

    Args:
        dataset: Any map-style dataset of images or ``(image, ...)`` tuples.
        name: A corruption in ``ALL_CORRUPTIONS``.
        severity: 1 to 5.
        seed: Non-negative integer; item ``i`` uses ``Corrupt(name, severity, seed).item_seed(i)``.
        params: ``"cifar"``, ``"imagenet"`` or ``None`` (by image size).
        transform: Optional callable applied to the corrupted image.

    Raises:
        ValueError: If an argument is not one of the allowed values.

    Examples:
        >>> import numpy as np
        >>> images = [np.full((32, 32, 3), 100 + i, dtype=np.uint8) for i in range(4)]
        >>> data = CorruptedDataset(list(zip(images, range(4))), "shot_noise", severity=5, seed=0)
        >>> image, label = data[2]
        >>> image.shape, label, bool((image == data[2][0]).all())
        ((32, 32, 3), 2, True)
    """

    def __init__(self, dataset: Any, name: str, severity: int, seed: int = 0,
                 params: str | None = None, transform: Callable[[Any], Any] | None = None) -> None:
        if seed is None:
            raise ValueError("`seed` must be a non-negative integer (a fixed corrupted set); got None.")
        self.dataset = dataset
        self.corruption = Corrupt(name, severity, seed=seed, params=params)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        item = self.dataset[index]
        is_tuple = isinstance(item, (tuple, list))
        image = item[0] if is_tuple else item
        image = self.corruption(image, index=index)
        if self.transform is not None:
            image = self.transform(image)
        return (image, *item[1:]) if is_tuple else image
