"""Layer normalisation over the channels of a channels-first tensor ``(B, C, *spatial)``.

Ba et al. 2016, "Layer Normalization", arXiv:1607.06450, applied as ConvNeXt does (Liu et al.
2022, "A ConvNet for the 2020s", arXiv:2201.03545, ``LayerNorm(data_format="channels_first")``):
each position is normalised over its ``C`` channels, with a per-channel scale and shift. Works for
any number of spatial dimensions (1D, 2D, 3D). Deviation: implemented by moving the channels
last and calling ``F.layer_norm`` rather than computing the moments by hand (same result).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ChannelLayerNorm"]


class ChannelLayerNorm(nn.Module):
    """``LayerNorm`` over dimension 1 of ``(B, C, *spatial)``.

    Args:
        channels: ``C``.
        eps: Added to the variance (1e-6 as ConvNeXt).
        affine: Learn a per-channel ``weight`` and ``bias``.

    Examples:
        >>> y = ChannelLayerNorm(4)(torch.randn(2, 4, 3, 5))
        >>> torch.allclose(y.mean(1), torch.zeros(2, 3, 5), atol=1e-6)
        True
    """

    def __init__(self, channels: int, eps: float = 1e-6, affine: bool = True) -> None:
        super().__init__()
        self.channels, self.eps = channels, eps
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(1, -1)  # (B, *spatial, C)
        x = F.layer_norm(x, (self.channels,), self.weight, self.bias, self.eps)
        return x.movedim(-1, 1)  # (B, C, *spatial)

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}, affine={self.weight is not None}"
