"""Bottleneck: the 1x1-3x3-1x1 residual block of ResNet-50/101/152.

He et al. 2016, "Deep Residual Learning for Image Recognition", arXiv:1512.03385, Figure 5: a 1x1
convolution reducing to ``channels``, a 3x3 convolution, a 1x1 convolution expanding to
``4 * channels``, each with batch norm, plus a shortcut, ``act`` after the sum. Module names
follow ``torchvision.models.resnet.Bottleneck`` (``conv1``-``conv3``, ``bn1``-``bn3``, ``relu``,
``downsample``), so torchvision checkpoints load.

Deviations from the paper: the stride is in the 3x3 convolution, not the first 1x1 ("ResNet
v1.5", as torchvision); any ``spatial_dims`` (1D/2D/3D), normalisation and activation (the
``bn*`` names are kept whatever the normalisation); optional stochastic depth on the residual
branch (:class:`DropPath`, Huang et al. 2016, arXiv:1603.09382).
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_sparse.models.layers import factories
from lightning_sparse.models.layers._residual import _ResidualBlock
from lightning_sparse.models.layers.factories import LayerSpec, same_padding

__all__ = ["Bottleneck"]


class Bottleneck(_ResidualBlock):
    """1x1 reduce, ``kernel_size`` (strided), 1x1 expand to ``4 * channels``, plus a shortcut.

    Args:
        in_channels: Input channels.
        channels: Bottleneck channels; the output has ``expansion * channels = 4 * channels``.
        stride: Stride of the middle convolution.
        downsample: Shortcut module when the shape changes; ``None`` for the identity.
        spatial_dims: 1, 2 or 3.
        kernel_size: Odd kernel size of the middle convolution.
        norm: A :func:`~lightning_sparse.models.layers.factories.norm` spec.
        act: An :func:`~lightning_sparse.models.layers.factories.act` spec (built in place).
        drop_path: Stochastic-depth probability of the residual branch (0: none).

    Examples:
        >>> block = Bottleneck(32, 8, spatial_dims=3)
        >>> block(torch.randn(1, 32, 4, 4, 4)).shape
        torch.Size([1, 32, 4, 4, 4])
    """

    expansion = 4

    def _build(
        self, in_channels: int, channels: int, stride: int, spatial_dims: int, kernel_size: int,
        norm: LayerSpec, act: LayerSpec,
    ) -> None:
        conv, out_channels = factories.conv(spatial_dims), channels * self.expansion
        self.conv1 = conv(in_channels, channels, 1, bias=False)
        self.bn1 = factories.norm(norm, spatial_dims, channels)
        self.conv2 = conv(
            channels, channels, kernel_size, stride=stride, padding=same_padding(kernel_size), bias=False
        )
        self.bn2 = factories.norm(norm, spatial_dims, channels)
        self.conv3 = conv(channels, out_channels, 1, bias=False)
        self.bn3 = factories.norm(norm, spatial_dims, out_channels)
        self.relu = factories.act(act, inplace=True)

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (B, C, *spatial)
        out = self.relu(self.bn2(self.conv2(out)))  # (B, C, *spatial / s)
        return self.bn3(self.conv3(out))  # (B, 4C, *spatial / s)

    def _last_norm(self) -> nn.Module:
        return self.bn3
