"""A small VGG-style convolutional network for small grayscale or RGB images.

Stacks of 3x3 convolutions as in VGG (Simonyan & Zisserman 2014, "Very Deep Convolutional
Networks for Large-Scale Image Recognition", arXiv:1409.1556), each followed by batch
normalisation (Ioffe & Szegedy 2015, arXiv:1502.03167) and ReLU, then global average pooling and
one linear classifier. Sized for quick experiments (8x8 to 32x32 inputs, e.g. the UCI digits,
MNIST, CIFAR-10): ``width=16`` has about 0.1 M parameters.

Deviation from VGG: three stages instead of five, global average pooling instead of the large
fully connected head, so any input size of at least 4x4 works.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_sparse.models._registry import register_model

__all__ = ["SmallCNN", "small_cnn"]


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Three stages of 3x3 conv-BN-ReLU (``width``, ``2*width``, ``4*width`` channels).

    The first two stages hold two convolutions each and end with a 2x2 max-pool; the third holds
    one convolution and is followed by global average pooling, optional dropout and the
    classifier ``fc``.

    Args:
        in_channels: Input channels (1 for grayscale, 3 for RGB).
        num_classes: Number of output logits.
        width: Channels of the first stage; later stages use ``2*width`` and ``4*width``.
        dropout: Dropout probability before the classifier, in ``[0, 1)``.

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> model = SmallCNN(in_channels=1, num_classes=10, width=8)
        >>> model(torch.randn(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self, in_channels: int = 1, num_classes: int = 10, width: int = 16, dropout: float = 0.0
    ) -> None:
        super().__init__()
        sizes = {"in_channels": in_channels, "num_classes": num_classes, "width": width}
        for arg, value in sizes.items():
            if value < 1:
                raise ValueError(f"`{arg}` must be a positive integer, got {value}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}.")
        self.example_input_size = (in_channels, 16, 16)
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, width),
            _conv_bn_relu(width, width),
            nn.MaxPool2d(2),  # H/2
            _conv_bn_relu(width, 2 * width),
            _conv_bn_relu(2 * width, 2 * width),
            nn.MaxPool2d(2),  # H/4
            _conv_bn_relu(2 * width, 4 * width),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(4 * width, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(B, num_classes)`` for images of shape ``(B, C, H, W)``."""
        x = self.features(x)  # (B, 4*width, H/4, W/4)
        x = torch.flatten(self.pool(x), 1)  # (B, 4*width)
        return self.fc(self.dropout(x))  # (B, num_classes)


@register_model
def small_cnn(**kwargs) -> SmallCNN:
    """A :class:`SmallCNN`; every argument is passed through (defaults: 1 channel, width 16)."""
    return SmallCNN(**kwargs)
