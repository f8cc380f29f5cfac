"""The clip transform of the R3D / R(2+1)D recipe: resize, crop, flip, normalise (Kinetics-400)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lightning_sparse.data.video.decode import _positive_int

__all__ = ["KINETICS_MEAN", "KINETICS_STD", "VideoTransform"]

# torchvision.models.video (R3D-18, MC3-18, R(2+1)D-18) normalisation, Kinetics-400 statistics
KINETICS_MEAN: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
KINETICS_STD: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)


class VideoTransform:
    """``uint8`` clip ``(T, H, W, C)`` -> normalised float tensor ``(C, T, H, W)``.

    Resize the short side to ``resize_size`` (bilinear, antialiased; skipped when it already
    matches), crop ``crop_size`` (random position and a horizontal flip with probability 0.5 when
    ``train``, else the centre), scale to [0, 1] and normalise per channel. The same crop and
    flip apply to every frame.

    Args:
        crop_size: Side of the square crop.
        resize_size: Short side before cropping, at least ``crop_size``.
        train: Random crop and flip (from torch's global generator, or ``generator``).
        mean: Per-channel mean (default: Kinetics-400).
        std: Per-channel standard deviation (default: Kinetics-400).

    Raises:
        ValueError: If a size is not a positive integer or ``resize_size < crop_size``.

    Examples:
        >>> clip = np.full((8, 120, 160, 3), 128, dtype=np.uint8)
        >>> x = VideoTransform(crop_size=112, resize_size=128)(clip)
        >>> tuple(x.shape), x.dtype
        ((3, 8, 112, 112), torch.float32)
    """

    def __init__(
        self,
        crop_size: int = 112,
        resize_size: int = 128,
        train: bool = False,
        mean: Sequence[float] = KINETICS_MEAN,
        std: Sequence[float] = KINETICS_STD,
    ) -> None:
        _positive_int("crop_size", crop_size)
        _positive_int("resize_size", resize_size)
        if resize_size < crop_size:
            raise ValueError(f"`resize_size` must be at least `crop_size` ({crop_size}); got {resize_size}.")
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"`mean` and `std` must have one value per channel, std > 0; got {mean}, {std}.")
        self.crop_size, self.resize_size, self.train = int(crop_size), int(resize_size), bool(train)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1)  # (C, 1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1, 1)

    def __call__(self, clip: np.ndarray | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(clip)).permute(0, 3, 1, 2).float().div_(255.0)  # (T, C, H, W)
        h, w = x.shape[-2:]
        if min(h, w) != self.resize_size:
            scale = self.resize_size / min(h, w)
            size = (max(self.resize_size, round(h * scale)), max(self.resize_size, round(w * scale)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            h, w = size
        c = self.crop_size
        if self.train:
            top = int(torch.randint(0, h - c + 1, (), generator=generator))
            left = int(torch.randint(0, w - c + 1, (), generator=generator))
            flip = bool(torch.rand((), generator=generator) < 0.5)
        else:
            top, left, flip = (h - c) // 2, (w - c) // 2, False
        x = x[..., top : top + c, left : left + c]
        if flip:
            x = x.flip(-1)
        x = x.permute(1, 0, 2, 3)  # (C, T, H, W)
        return ((x - self.mean) / self.std).contiguous()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(crop_size={self.crop_size}, resize_size={self.resize_size}, "
                f"train={self.train})")
