"""A small VGG-style convolutional network for small grayscale or RGB images.

Stacks of 3x3 convolutions as in VGG (Simonyan & Zisserman 2014, "Very Deep Convolutional
Networks for Large-Scale Image Recognition", arXiv:1409.1556), each followed by batch
normalisation (Ioffe & Szegedy 2015, arXiv:1502.03167) and ReLU, then global average pooling and
one linear classifier. Sized for quick experiments (8x8 to 32x32 inputs, e.g. the UCI digits,
MNIST, CIFAR-10): ``width=16`` has about 0.1 M parameters.

Deviation from VGG: three stages instead of five, global average pooling instead of the large
fully connected head, so any input size of at least 4x4 works; ``norm`` and ``act`` can replace
batch norm and ReLU. Each layer is a :class:`~lightning_sparse.models.layers.ConvNormAct`.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_sparse.models._checks import check_sizes
from lightning_sparse.models._registry import register_model
from lightning_sparse.models.layers import ConvNormAct, LayerSpec

__all__ = ["SmallCNN", "small_cnn"]


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
        norm: Normalisation, a name or ``(name, kwargs)`` (see
            :func:`lightning_sparse.models.layers.norm`).
        act: Activation, a name or ``(name, kwargs)`` (see
            :func:`lightning_sparse.models.layers.act`).

    Raises:
        ValueError: If an argument is out of range or ``norm`` or ``act`` is unknown.

    Examples:
        >>> model = SmallCNN(in_channels=1, num_classes=10, width=8)
        >>> model(torch.randn(2, 1, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        width: int = 16,
        dropout: float = 0.0,
        norm: LayerSpec = "batch",
        act: LayerSpec = "relu",
    ) -> None:
        super().__init__()
        check_sizes(in_channels=in_channels, num_classes=num_classes, width=width)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}.")
        self.example_input_size = (in_channels, 16, 16)
        kw = {"norm": norm, "act": act}
        self.features = nn.Sequential(
            ConvNormAct(in_channels, width, **kw),
            ConvNormAct(width, width, **kw),
            nn.MaxPool2d(2),  # H/2
            ConvNormAct(width, 2 * width, **kw),
            ConvNormAct(2 * width, 2 * width, **kw),
            nn.MaxPool2d(2),  # H/4
            ConvNormAct(2 * width, 4 * width, **kw),
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
