"""VGG-11/13/16/19 with batch norm, in the CIFAR variant used by sparse-training code.

Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
arXiv:1409.1556, Table 1: configurations A (11 layers), B (13), D (16) and E (19) of 3x3
convolutions in five stages, each closed by a 2x2 max-pool.

CIFAR variant (kuangliu/pytorch-cifar, and the VGG-16 of the DST-robustness and GraNet/RigL
reproductions on CIFAR): every convolution is followed by batch norm (Ioffe & Szegedy 2015,
arXiv:1502.03167) and ReLU, and the three 4096-wide fully connected layers are replaced by a
single linear classifier on the flattened last feature map: ``512 -> num_classes`` for 32x32
inputs (VGG-16: 14.73 M parameters at 10 classes), ``512 * (image_size // 32) ** 2`` inputs in
general (2048 for 64x64 Tiny-ImageNet). No dropout.

Deviations from the paper: batch norm, the single-layer classifier, configurable ``in_channels``.
The ``features`` module is laid out as torchvision's ``vgg*_bn`` (same indices, convolutions
with bias; each triple is the modules of a :class:`~lightning_sparse.models.layers.ConvNormAct`,
laid out flat), so its state dict loads into ours.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_sparse.models._checks import check_sizes
from lightning_sparse.models._registry import register_model
from lightning_sparse.models.layers import ConvNormAct

__all__ = ["VGG", "VGG_CONFIGS", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]

# Output channels of each 3x3 convolution; "M" is a 2x2 stride-2 max-pool (Table 1 of the paper).
VGG_CONFIGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """A VGG configuration with batch norm and a linear classifier on the last feature map.

    Args:
        config: ``"A"`` (VGG-11), ``"B"`` (VGG-13), ``"D"`` (VGG-16) or ``"E"`` (VGG-19).
        in_channels: Input channels (3 for RGB).
        num_classes: Number of output logits.
        image_size: Side of the square input, a multiple of 32; the classifier reads
            ``512 * (image_size // 32) ** 2`` features (512 for CIFAR, 2048 for Tiny-ImageNet).

    Raises:
        ValueError: If ``config`` is unknown, ``image_size`` is not a positive multiple of 32, or
            a size is not positive.

    Examples:
        >>> model = VGG("A", num_classes=10, image_size=32)
        >>> model(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
        >>> VGG("D", image_size=64).classifier.in_features
        2048
    """

    def __init__(
        self,
        config: str = "D",
        in_channels: int = 3,
        num_classes: int = 10,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        if config not in VGG_CONFIGS:
            raise ValueError(f"`config` must be one of {list(VGG_CONFIGS)}, got {config!r}.")
        if image_size < 32 or image_size % 32 != 0:
            raise ValueError(f"`image_size` must be a positive multiple of 32, got {image_size}.")
        check_sizes(in_channels=in_channels, num_classes=num_classes)
        self.example_input_size = (in_channels, image_size, image_size)
        layers: list[nn.Module] = []
        channels = in_channels
        for v in VGG_CONFIGS[config]:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            layers += ConvNormAct(channels, int(v), 3, bias=True)  # flat: conv, bn, relu
            channels = int(v)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels * (image_size // 32) ** 2, num_classes)
        for module in self.modules():  # torchvision's VGG initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(B, num_classes)`` for images ``(B, C, image_size, image_size)``."""
        x = self.features(x)  # (B, 512, H/32, W/32)
        return self.classifier(torch.flatten(x, 1))  # (B, num_classes)


@register_model
def vgg11_bn(**kwargs) -> VGG:
    """VGG-11 (configuration A) with batch norm, CIFAR classifier."""
    return VGG("A", **kwargs)


@register_model
def vgg13_bn(**kwargs) -> VGG:
    """VGG-13 (configuration B) with batch norm, CIFAR classifier."""
    return VGG("B", **kwargs)


@register_model
def vgg16_bn(**kwargs) -> VGG:
    """VGG-16 (configuration D) with batch norm, CIFAR classifier: 14.73 M parameters."""
    return VGG("D", **kwargs)


@register_model
def vgg19_bn(**kwargs) -> VGG:
    """VGG-19 (configuration E) with batch norm, CIFAR classifier: 20.04 M parameters."""
    return VGG("E", **kwargs)
