"""BasicBlock: the two-convolution residual block of ResNet-18/34 and the CIFAR ResNets.

He et al. 2016, "Deep Residual Learning for Image Recognition", arXiv:1512.03385, Figure 2:
``act(norm2(conv2(act(norm1(conv1(x))))) + shortcut(x))`` with 3x3 convolutions, the first one
strided. Module names follow ``torchvision.models.resnet.BasicBlock`` (``conv1``, ``bn1``,
``relu``, ``conv2``, ``bn2``, ``downsample``), so torchvision checkpoints load.

Deviations from the paper and torchvision: any ``spatial_dims`` (1D/2D/3D), normalisation and
activation (``bn1``/``bn2`` keep their names whatever the normalisation), an odd ``kernel_size``
other than 3, and optional stochastic depth on the residual branch (:class:`DropPath`, Huang et
al. 2016, arXiv:1603.09382).
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_sparse.models.layers import factories
from lightning_sparse.models.layers._residual import _ResidualBlock
from lightning_sparse.models.layers.factories import LayerSpec, same_padding

__all__ = ["BasicBlock"]


class BasicBlock(_ResidualBlock):
    """Two ``kernel_size`` conv-norm layers and a shortcut, with ``channels`` output channels.

    Args:
        in_channels: Input channels.
        channels: Output channels (``expansion = 1``).
        stride: Stride of the first convolution.
        downsample: Shortcut module (e.g. a 1x1 ``ConvNormAct`` without activation) when the
            shape changes; ``None`` for the identity.
        spatial_dims: 1, 2 or 3.
        kernel_size: Odd kernel size of both convolutions.
        norm: A :func:`~lightning_sparse.models.layers.factories.norm` spec.
        act: An :func:`~lightning_sparse.models.layers.factories.act` spec (built in place).
        drop_path: Stochastic-depth probability of the residual branch (0: none).

    Examples:
        >>> block = BasicBlock(8, 8, spatial_dims=1)
        >>> block(torch.randn(2, 8, 20)).shape
        torch.Size([2, 8, 20])
    """

    expansion = 1

    def _build(
        self, in_channels: int, channels: int, stride: int, spatial_dims: int, kernel_size: int,
        norm: LayerSpec, act: LayerSpec,
    ) -> None:
        conv, pad = factories.conv(spatial_dims), same_padding(kernel_size)
        self.conv1 = conv(in_channels, channels, kernel_size, stride=stride, padding=pad, bias=False)
        self.bn1 = factories.norm(norm, spatial_dims, channels)
        self.relu = factories.act(act, inplace=True)
        self.conv2 = conv(channels, channels, kernel_size, padding=pad, bias=False)
        self.bn2 = factories.norm(norm, spatial_dims, channels)

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (B, C, *spatial / s)
        return self.bn2(self.conv2(out))

    def _last_norm(self) -> nn.Module:
        return self.bn2
