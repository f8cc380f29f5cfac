"""Standard augmentation presets for image classification, as ``torchvision.transforms.v2`` pipelines.

Every pipeline accepts a ``uint8`` image as a numpy array ``(H, W, C)``, a PIL image or a
``uint8`` tensor ``(C, H, W)`` and returns a float32 tensor ``(C, H', W')`` normalised with the
given per-channel mean and standard deviation (values of the training split, on the ``[0, 1]``
pixel scale). Geometric steps run on ``uint8`` before the conversion to float (cheaper).

* CIFAR (He et al. 2016, "Deep Residual Learning for Image Recognition", arXiv:1512.03385,
  Sec. 4.2): 4-pixel zero padding, random 32x32 crop, horizontal flip; evaluation normalises
  only. The recipe of the sparse-training papers on CIFAR (RigL, Evci et al. 2020,
  arXiv:1911.11134; GraNet, Liu et al. 2021, arXiv:2106.10404).
* ImageNet (Szegedy et al. 2015, "Going Deeper with Convolutions", arXiv:1409.4842, as in the
  PyTorch ImageNet example): ``RandomResizedCrop`` (scale 0.08-1) + flip for training; resize
  the short side to ``image_size / 0.875`` (256 for 224) and centre-crop for evaluation.
* Tiny-ImageNet (64x64): the CIFAR recipe at 64 pixels (random crop with 4-pixel padding +
  flip), as used by the DST papers that report Tiny-ImageNet (e.g. MEST, Yuan et al. 2021,
  arXiv:2110.14032).

:func:`train_transform` and :func:`eval_transform` pick a preset by name (:data:`PRESETS`);
:func:`center_crop_transform` and :func:`normalize_transform` are the two halves of an
evaluation pipeline, so that a corruption can be applied to the cropped ``uint8`` pixels in
between (Hendrycks & Dietterich 2019, arXiv:1903.12261, corrupt the 224x224 centre crop).

Examples:
    >>> import numpy as np
    >>> image = np.zeros((32, 32, 3), dtype=np.uint8)
    >>> cifar_train_transform(CIFAR10_MEAN, CIFAR10_STD)(image).shape
    torch.Size([3, 32, 32])
    >>> eval_transform("imagenet", image_size=64)(np.zeros((100, 80, 3), np.uint8)).shape
    torch.Size([3, 64, 64])
"""

from __future__ import annotations

from typing import Sequence

import torch
from torchvision.transforms import v2

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRESETS",
    "TINY_IMAGENET_MEAN",
    "TINY_IMAGENET_STD",
    "center_crop_transform",
    "cifar_eval_transform",
    "cifar_train_transform",
    "eval_geometry",
    "eval_transform",
    "imagenet_eval_transform",
    "imagenet_train_transform",
    "normalize_transform",
    "resolve_preset",
    "tiny_imagenet_eval_transform",
    "tiny_imagenet_train_transform",
    "train_transform",
]

# Per-channel statistics of the training splits on the [0, 1] scale. CIFAR's std is the true
# per-pixel std over the 50k training images; the (0.2023, 0.1994, 0.2010) found in many CIFAR
# repositories is the std of per-image means, a long-standing copy-paste slip.
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN: tuple[float, float, float] = (0.5071, 0.4865, 0.4409)
CIFAR100_STD: tuple[float, float, float] = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
TINY_IMAGENET_MEAN: tuple[float, float, float] = (0.4802, 0.4481, 0.3975)
TINY_IMAGENET_STD: tuple[float, float, float] = (0.2770, 0.2691, 0.2821)

# preset -> (default image size, default mean, default std)
_DEFAULTS: dict[str, tuple[int, tuple[float, ...], tuple[float, ...]]] = {
    "cifar": (32, CIFAR10_MEAN, CIFAR10_STD),
    "tiny_imagenet": (64, TINY_IMAGENET_MEAN, TINY_IMAGENET_STD),
    "imagenet": (224, IMAGENET_MEAN, IMAGENET_STD),
}
PRESETS: tuple[str, ...] = tuple(_DEFAULTS)
_CROP_RATIO = 0.875  # 224 / 256, the centre-crop share of the ImageNet evaluation recipe


def _check_size(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")


def normalize_transform(mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """``uint8`` image (array ``(H, W, C)``, PIL or tensor) -> normalised float32 ``(C, H, W)``.

    Args:
        mean: Per-channel mean on the ``[0, 1]`` scale.
        std: Per-channel standard deviation on the ``[0, 1]`` scale, all positive.

    Raises:
        ValueError: If ``mean`` and ``std`` differ in length or a std is not positive.
    """
    if len(mean) != len(std):
        raise ValueError(f"`mean` and `std` must have the same length, got {len(mean)} and {len(std)}.")
    if any(s <= 0 for s in std):
        raise ValueError(f"`std` must be positive in every channel, got {tuple(std)}.")
    return v2.Compose([
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
        v2.ToPureTensor(),
    ])


def center_crop_transform(image_size: int, resize_size: int | None = None) -> v2.Compose:
    """Resize the short side to ``resize_size`` and centre-crop ``image_size``; stays ``uint8``.

    Args:
        image_size: Side of the square crop.
        resize_size: Short side after resizing (bilinear, antialiased); default
            ``round(image_size / 0.875)`` (256 for 224).

    Returns:
        A pipeline to a ``uint8`` tensor ``(C, image_size, image_size)``.
    """
    _check_size("image_size", image_size)
    resize_size = round(image_size / _CROP_RATIO) if resize_size is None else resize_size
    _check_size("resize_size", resize_size)
    return v2.Compose([v2.ToImage(), v2.Resize(resize_size, antialias=True), v2.CenterCrop(image_size)])


def cifar_train_transform(
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
    image_size: int = 32,
    padding: int = 4,
) -> v2.Compose:
    """Zero-pad by ``padding``, random ``image_size`` crop, horizontal flip, normalise.

    He et al. 2016, "Deep Residual Learning for Image Recognition" (arXiv:1512.03385), Sec. 4.2.
    """
    _check_size("image_size", image_size)
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"`padding` must be a non-negative integer, got {padding!r}.")
    return v2.Compose([
        v2.ToImage(),
        v2.RandomCrop(image_size, padding=padding),
        v2.RandomHorizontalFlip(),
        normalize_transform(mean, std),
    ])


def cifar_eval_transform(
    mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD
) -> v2.Compose:
    """Normalise only (the images are already 32x32)."""
    return normalize_transform(mean, std)


def imagenet_train_transform(
    image_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """``RandomResizedCrop(image_size)`` (scale 0.08-1, antialiased) + horizontal flip + normalise.

    Szegedy et al. 2015, "Going Deeper with Convolutions" (arXiv:1409.4842), as in the PyTorch
    ImageNet example.
    """
    _check_size("image_size", image_size)
    return v2.Compose([
        v2.ToImage(),
        v2.RandomResizedCrop(image_size, antialias=True),
        v2.RandomHorizontalFlip(),
        normalize_transform(mean, std),
    ])


def imagenet_eval_transform(
    image_size: int = 224,
    resize_size: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Resize the short side to ``resize_size`` (default ``image_size / 0.875``), centre-crop, normalise."""
    return v2.Compose([center_crop_transform(image_size, resize_size), normalize_transform(mean, std)])


def tiny_imagenet_train_transform(
    image_size: int = 64,
    mean: Sequence[float] = TINY_IMAGENET_MEAN,
    std: Sequence[float] = TINY_IMAGENET_STD,
    padding: int = 4,
) -> v2.Compose:
    """Resize to ``image_size`` if needed, pad + random crop + flip + normalise (CIFAR recipe at 64px)."""
    _check_size("image_size", image_size)
    return v2.Compose([
        v2.ToImage(),
        v2.Resize(image_size, antialias=True),
        cifar_train_transform(mean, std, image_size=image_size, padding=padding),
    ])


def tiny_imagenet_eval_transform(
    image_size: int = 64,
    mean: Sequence[float] = TINY_IMAGENET_MEAN,
    std: Sequence[float] = TINY_IMAGENET_STD,
) -> v2.Compose:
    """Resize the short side to ``image_size`` and centre-crop it (a no-op at 64x64), normalise."""
    return imagenet_eval_transform(image_size, image_size, mean, std)


def resolve_preset(
    preset: str,
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[int, Sequence[float], Sequence[float]]:
    """``(image_size, mean, std)`` of a preset, each given value taking precedence over its default.

    Raises:
        ValueError: If ``preset`` is not in :data:`PRESETS`.
    """
    if preset not in _DEFAULTS:
        raise ValueError(f"`preset` must be one of {list(PRESETS)}, got {preset!r}.")
    size, default_mean, default_std = _DEFAULTS[preset]
    return (
        size if image_size is None else image_size,
        default_mean if mean is None else mean,
        default_std if std is None else std,
    )


def train_transform(
    preset: str,
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> v2.Compose:
    """The training pipeline of a preset in :data:`PRESETS` (``None`` picks the preset's defaults).

    Args:
        preset: ``"cifar"`` (pad 4 + random crop + flip), ``"tiny_imagenet"`` (the same at 64px)
            or ``"imagenet"`` (random resized crop + flip).
        image_size: Output side; default 32, 64 and 224 respectively.
        mean: Per-channel mean; default CIFAR-10's, Tiny-ImageNet's and ImageNet's.
        std: Per-channel std; defaults as for ``mean``.

    Raises:
        ValueError: If ``preset`` is unknown or a size is not a positive integer.
    """
    image_size, mean, std = resolve_preset(preset, image_size, mean, std)
    if preset == "cifar":
        return cifar_train_transform(mean, std, image_size=image_size)
    if preset == "tiny_imagenet":
        return tiny_imagenet_train_transform(image_size, mean, std)
    return imagenet_train_transform(image_size, mean, std)


def eval_transform(
    preset: str,
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> v2.Compose:
    """The evaluation pipeline of a preset: ``eval_geometry(preset)`` then normalisation.

    ``"cifar"`` and ``"tiny_imagenet"`` resize the short side to ``image_size`` and centre-crop
    (a no-op on images of that size); ``"imagenet"`` resizes to ``image_size / 0.875`` first.
    Arguments as in :func:`train_transform`.
    """
    image_size, mean, std = resolve_preset(preset, image_size, mean, std)
    return v2.Compose([eval_geometry(preset, image_size), normalize_transform(mean, std)])


def eval_geometry(preset: str, image_size: int | None = None) -> v2.Compose:
    """The ``uint8`` resize + centre-crop half of :func:`eval_transform` (corruptions go after it)."""
    image_size, _, _ = resolve_preset(preset, image_size, None, None)
    if preset == "imagenet":
        return center_crop_transform(image_size)
    return center_crop_transform(image_size, image_size)
