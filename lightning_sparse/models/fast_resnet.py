"""FastResNet: the 9-layer "DAWNBench" ResNet of Page 2018, with a width multiplier.

David Page 2018, "How to Train Your ResNet" (Myrtle.ai blog series,
https://myrtle.ai/learn/how-to-train-your-resnet/), part 4 "Architecture": the network behind the
Myrtle.ai entry of the DAWNBench CIFAR-10 competition (Coleman et al. 2017, "DAWNBench: An
End-to-End Deep Learning Benchmark and Competition", NIPS ML Systems Workshop), which reaches 94%
CIFAR-10 test accuracy in 24 epochs::

    prep    conv-bn-relu 64                                    32x32
    layer1  conv-bn-relu 128, max-pool 2, residual(2 x conv-bn-relu 128)   16x16
    layer2  conv-bn-relu 256, max-pool 2                       8x8
    layer3  conv-bn-relu 512, max-pool 2, residual(2 x conv-bn-relu 512)   4x4
    head    global max-pool, linear 512 -> classes (no bias), logits x 0.125

All convolutions are 3x3 without bias; 6.57 M parameters at 10 classes. ``width`` scales every
channel count (``width=0.25``: 16/32/64/128 channels, 0.41 M parameters), which makes it the
cheapest ResNet in this package per CIFAR image on a CPU.

Deviations from the blog: the final max-pool is adaptive (any input of at least 8x8 works);
``in_channels`` and ``width`` are configurable. Every conv-bn-relu is a
:class:`~lightning_sparse.models.layers.ConvNormAct`. The training tricks of the series (label
smoothing, batch-norm weight freezing, ``CELU``, test-time flips) are not part of the model.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_sparse.models._checks import check_sizes
from lightning_sparse.models._registry import register_model
from lightning_sparse.models.layers import ConvNormAct

__all__ = ["FastResNet", "fast_resnet"]

_CHANNELS = (64, 128, 256, 512)  # prep, layer1, layer2, layer3 at width 1


class _Residual(nn.Module):
    """``x + f(x)`` with ``f`` two conv-bn-relu layers of the same width."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.res1 = ConvNormAct(channels, channels)
        self.res2 = ConvNormAct(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res2(self.res1(x))


class FastResNet(nn.Module):
    """Page's ResNet-9 for 32x32 images, every channel count scaled by ``width``.

    Args:
        in_channels: Input channels (3 for RGB).
        num_classes: Number of output logits.
        width: Multiplier of the channel counts 64/128/256/512 (rounded, at least 1), > 0.
        logit_scale: Factor on the logits (0.125 in the blog, which trains with sum-reduced loss
            and a large learning rate); 1.0 for a plain classifier.

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> model = FastResNet(num_classes=10, width=0.25)
        >>> [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)][:3]
        [16, 32, 32]
        >>> model(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width: float = 1.0,
        logit_scale: float = 0.125,
    ) -> None:
        super().__init__()
        check_sizes(in_channels=in_channels, num_classes=num_classes)
        if not width > 0:
            raise ValueError(f"`width` must be a positive number, got {width}.")
        if not logit_scale > 0:
            raise ValueError(f"`logit_scale` must be a positive number, got {logit_scale}.")
        self.example_input_size = (in_channels, 32, 32)
        self.logit_scale = float(logit_scale)
        c0, c1, c2, c3 = (max(1, round(c * width)) for c in _CHANNELS)
        self.prep = ConvNormAct(in_channels, c0)
        self.layer1 = nn.Sequential(ConvNormAct(c0, c1), nn.MaxPool2d(2), _Residual(c1))
        self.layer2 = nn.Sequential(ConvNormAct(c1, c2), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(ConvNormAct(c2, c3), nn.MaxPool2d(2), _Residual(c3))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(c3, num_classes, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(B, num_classes)`` for images of shape ``(B, C, H, W)``."""
        x = self.layer1(self.prep(x))  # (B, c1, H/2, W/2)
        x = self.layer3(self.layer2(x))  # (B, c3, H/8, W/8)
        x = torch.flatten(self.pool(x), 1)  # (B, c3)
        return self.fc(x) * self.logit_scale  # (B, num_classes)


@register_model
def fast_resnet(**kwargs) -> FastResNet:
    """A :class:`FastResNet` (ResNet-9, Page 2018); every argument is passed through."""
    return FastResNet(**kwargs)
