"""ImageNet-style residual networks (ResNet-18/34/50) with an optional CIFAR stem.

He et al. 2016, "Deep Residual Learning for Image Recognition", arXiv:1512.03385, Table 1: a
7x7 stride-2 stem convolution and a 3x3 stride-2 max-pool, four stages of BasicBlocks
(ResNet-18/34) or Bottlenecks (ResNet-50) with 64/128/256/512 base channels (stride 2 at the
start of stages 2-4), global average pooling and a linear classifier.

``cifar_stem=True`` replaces the stem by a 3x3 stride-1 convolution without max-pool, so a 32x32
image reaches the last stage at 4x4. This is the ResNet-18/34/50 for CIFAR used by most sparse
training code (e.g. the CIFAR models of the RigL and DST-robustness reproductions, and
kuangliu/pytorch-cifar); with it ResNet-18 has 11.17 M parameters at 10 classes.

Deviations from the paper: a Bottleneck strides in its 3x3 convolution, not its first 1x1
("ResNet v1.5", as torchvision); shortcuts that change shape are 1x1 convolutions with batch norm
(option B); ``norm`` and ``act`` may replace batch norm and ReLU (the ``bn*`` names stay). The
blocks are :mod:`lightning_sparse.models.layers`' ``BasicBlock`` and ``Bottleneck``. Module and
parameter names follow ``torchvision.models.resnet`` (``conv1``, ``bn1``,
``layer1.0.downsample.0``, ``fc``), so a torchvision state dict loads into the ``cifar_stem=False``
model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_sparse.models._checks import check_sizes
from lightning_sparse.models._registry import register_model
from lightning_sparse.models.layers import BasicBlock, Bottleneck, ConvNormAct, LayerSpec, factories

__all__ = [
    "ResNet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet18_imagenet",
    "resnet34_imagenet",
    "resnet50_imagenet",
]


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
}


class ResNet(nn.Module):
    """A four-stage ResNet of He et al. 2016 with either the ImageNet or the CIFAR stem.

    Args:
        block: ``"basic"`` (two 3x3 convolutions) or ``"bottleneck"`` (1x1-3x3-1x1, 4x wider).
        layers: Blocks per stage, four positive integers (``[2, 2, 2, 2]`` for ResNet-18).
        in_channels: Input channels (3 for RGB).
        num_classes: Number of output logits.
        cifar_stem: ``True`` for a 3x3 stride-1 stem without max-pool (32x32 to 64x64 inputs);
            ``False`` for the paper's 7x7 stride-2 stem and 3x3 stride-2 max-pool (224x224).
        width: Base channels of the first stage (64 in the paper); stages use ``width * 2**i``.
        zero_init_residual: Start the last batch norm of every block at zero, so each block is
            the identity at initialisation (Goyal et al. 2017, arXiv:1706.02677).
        norm: Normalisation, a name or ``(name, kwargs)`` (see
            :func:`lightning_sparse.models.layers.norm`); ``"batch"`` in the paper.
        act: Activation, a name or ``(name, kwargs)`` (see
            :func:`lightning_sparse.models.layers.act`); ``"relu"`` in the paper.

    Raises:
        ValueError: If ``block``, ``norm`` or ``act`` is unknown or a size is not positive.

    Examples:
        >>> model = ResNet("basic", [1, 1, 1, 1], num_classes=10, width=8)
        >>> model(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        block: str = "basic",
        layers: Sequence[int] = (2, 2, 2, 2),
        in_channels: int = 3,
        num_classes: int = 10,
        cifar_stem: bool = True,
        width: int = 64,
        zero_init_residual: bool = False,
        norm: LayerSpec = "batch",
        act: LayerSpec = "relu",
    ) -> None:
        super().__init__()
        if block not in _BLOCKS:
            raise ValueError(f"`block` must be one of {list(_BLOCKS)}, got {block!r}.")
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"`layers` must be four positive integers, got {list(layers)}.")
        check_sizes(in_channels=in_channels, num_classes=num_classes, width=width)
        block_cls = _BLOCKS[block]
        # One sample that reaches the last stage at 4x4 (CIFAR stem) or 2x2 (ImageNet stem).
        self.example_input_size = (in_channels, 32, 32) if cifar_stem else (in_channels, 64, 64)
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = factories.norm(norm, 2, width)
        self.relu = factories.act(act, inplace=True)
        self._in_channels, self._norm_spec, self._act_spec = width, norm, act
        self.layer1 = self._make_stage(block_cls, width, int(layers[0]), stride=1)
        self.layer2 = self._make_stage(block_cls, 2 * width, int(layers[1]), stride=2)
        self.layer3 = self._make_stage(block_cls, 4 * width, int(layers[2]), stride=2)
        self.layer4 = self._make_stage(block_cls, 8 * width, int(layers[3]), stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * width * block_cls.expansion, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    module.zero_init_last()

    def _make_stage(
        self, block_cls: type[BasicBlock] | type[Bottleneck], channels: int, blocks: int, stride: int
    ) -> nn.Sequential:
        out_channels = channels * block_cls.expansion
        downsample = None
        if stride != 1 or self._in_channels != out_channels:
            downsample = ConvNormAct(
                self._in_channels, out_channels, 1, stride, norm=self._norm_spec, act=None
            )
        kwargs = {"norm": self._norm_spec, "act": self._act_spec}
        stage = [block_cls(self._in_channels, channels, stride, downsample, **kwargs)]
        self._in_channels = out_channels
        stage += [block_cls(out_channels, channels, **kwargs) for _ in range(blocks - 1)]
        return nn.Sequential(*stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(B, num_classes)`` for images of shape ``(B, C, H, W)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, w, H, W) or (B, w, H/4, W/4)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 8w*e, H'/8, W'/8)
        x = torch.flatten(self.avgpool(x), 1)  # (B, 8w*e)
        return self.fc(x)  # (B, num_classes)


@register_model
def resnet18(cifar_stem: bool = True, **kwargs) -> ResNet:
    """ResNet-18 (BasicBlocks ``[2, 2, 2, 2]``), CIFAR stem by default; 11.17 M parameters."""
    return ResNet("basic", (2, 2, 2, 2), cifar_stem=cifar_stem, **kwargs)


@register_model
def resnet34(cifar_stem: bool = True, **kwargs) -> ResNet:
    """ResNet-34 (BasicBlocks ``[3, 4, 6, 3]``), CIFAR stem by default; 21.28 M parameters."""
    return ResNet("basic", (3, 4, 6, 3), cifar_stem=cifar_stem, **kwargs)


@register_model
def resnet50(cifar_stem: bool = True, **kwargs) -> ResNet:
    """ResNet-50 (Bottlenecks ``[3, 4, 6, 3]``), CIFAR stem by default; 23.52 M parameters."""
    return ResNet("bottleneck", (3, 4, 6, 3), cifar_stem=cifar_stem, **kwargs)


@register_model
def resnet18_imagenet(**kwargs) -> ResNet:
    """ResNet-18 with the paper's 7x7 stem and max-pool (224x224 inputs), as torchvision's."""
    return ResNet("basic", (2, 2, 2, 2), cifar_stem=False, **kwargs)


@register_model
def resnet34_imagenet(**kwargs) -> ResNet:
    """ResNet-34 with the paper's 7x7 stem and max-pool (224x224 inputs), as torchvision's."""
    return ResNet("basic", (3, 4, 6, 3), cifar_stem=False, **kwargs)


@register_model
def resnet50_imagenet(**kwargs) -> ResNet:
    """ResNet-50 (v1.5) with the paper's 7x7 stem and max-pool (224x224 inputs)."""
    return ResNet("bottleneck", (3, 4, 6, 3), cifar_stem=False, **kwargs)
