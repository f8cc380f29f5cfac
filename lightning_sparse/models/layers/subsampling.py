"""Convolutional 4x time subsampling of feature sequences, the input layer of a Conformer.

Two 3x3 ``Conv2d`` with stride 2 and no padding, each followed by ReLU, over the
``(time, feature)`` plane, then a ``Linear`` from ``channels * F'`` to ``d_model``, as ESPnet's
``Conv2dSubsampling`` (``espnet/nets/pytorch_backend/transformer/subsampling.py``; the
``input_layer: conv2d`` of its Conformer recipes) without the positional encoding. A sequence of
``L`` frames becomes ``((L - 1) // 2 - 1) // 2`` frames: exactly the outputs whose receptive
field lies inside the valid frames, so zero padding never reaches a valid output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_sparse._validation import check_int

__all__ = ["Conv2dSubsampling", "subsampled_lengths"]

_MIN_FRAMES = 7
"""The fewest input frames that give one output frame."""


def subsampled_lengths(lengths: Tensor) -> Tensor:
    """Frames after two 3-tap, stride-2 convolutions: ``((L - 1) // 2 - 1) // 2``, at least 0.

    Examples:
        >>> subsampled_lengths(torch.tensor([0, 6, 7, 10, 11, 100])).tolist()
        [0, 0, 1, 1, 2, 24]
    """
    once = torch.div(lengths - 1, 2, rounding_mode="floor").clamp_min(0)
    return torch.div(once - 1, 2, rounding_mode="floor").clamp_min(0)


class Conv2dSubsampling(nn.Module):
    """``(B, T, in_features)`` features to ``(B, T', d_model)``, ``T' = ((T - 1) // 2 - 1) // 2``.

    Args:
        in_features: Features per frame (e.g. 80 mel bands); at least 7.
        d_model: Output size per frame.
        channels: Channels of the two convolutions; ``None``: ``d_model`` (as ESPnet).

    Raises:
        ValueError: If a size is out of range.

    Examples:
        >>> sub = Conv2dSubsampling(80, 32)
        >>> y, lengths = sub(torch.randn(2, 100, 80), torch.tensor([100, 50]))
        >>> y.shape, lengths.tolist()
        (torch.Size([2, 24, 32]), [24, 11])
    """

    def __init__(self, in_features: int, d_model: int, channels: int | None = None) -> None:
        super().__init__()
        check_int("in_features", in_features, _MIN_FRAMES)
        check_int("d_model", d_model, 1)
        channels = d_model if channels is None else check_int("channels", channels, 1)
        self.in_features = in_features
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, stride=2), nn.ReLU(),
        )
        self.out = nn.Linear(channels * int(subsampled_lengths(torch.tensor(in_features))), d_model)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(features (B, T', d_model), lengths (B,))``; ``lengths`` ``None``: all ``T`` frames.

        Inputs shorter than 7 frames are zero-padded to 7 (one output frame, length 0).
        """
        if x.dim() != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f"`x` must be (B, T, {self.in_features}), got shape {tuple(x.shape)}.")
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.int64, device=x.device)
        if x.shape[1] < _MIN_FRAMES:
            x = F.pad(x, (0, 0, 0, _MIN_FRAMES - x.shape[1]))
        y = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        y = self.out(y.permute(0, 2, 1, 3).flatten(2))  # (B, T', d_model)
        return y, subsampled_lengths(lengths)
