"""CIFAR-style residual networks (ResNet-8/20/32/56) built from BasicBlocks.

He et al. 2016, "Deep Residual Learning for Image Recognition", arXiv:1512.03385, Section 4.2:
a 3x3 stem convolution, then three stages of ``n`` BasicBlocks with ``width``, ``2*width`` and
``4*width`` channels (16/32/64 in the paper), stride 2 at the start of stages 2 and 3, global
average pooling and a linear classifier: ``6n + 2`` weighted layers in all. These are the
ResNet-20/32/56 used by most sparse-training papers on CIFAR (e.g. RigL, arXiv:1911.11134).

Deviation from the paper: a shortcut that changes shape is a 1x1 convolution with batch norm
(the paper's option B) rather than zero-padded identity (option A used for CIFAR in the paper);
``in_channels``, ``width``, ``norm`` and ``act`` are configurable. The block is
:mod:`lightning_sparse.models.layers`' ``BasicBlock`` with its shortcut named ``shortcut``.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_sparse.models._checks import check_sizes
from lightning_sparse.models._registry import register_model
from lightning_sparse.models.layers import BasicBlock, ConvNormAct, LayerSpec

__all__ = ["ResNetCIFAR", "resnet8", "resnet20", "resnet32", "resnet56"]


class _CIFARBasicBlock(BasicBlock):
    """:class:`~lightning_sparse.models.layers.BasicBlock` whose shortcut is named ``shortcut``.

    The shortcut is built by the block (a 1x1 conv-norm when the shape changes, else an
    ``nn.Identity``), under the parameter names of this model's checkpoints and recipes.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        norm: LayerSpec = "batch",
        act: LayerSpec = "relu",
    ) -> None:
        super().__init__(in_channels, out_channels, stride, norm=norm, act=act)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = ConvNormAct(in_channels, out_channels, 1, stride, norm=norm, act=None)

    def shortcut_path(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x)


class ResNetCIFAR(nn.Module):
    """A ``depth``-layer CIFAR ResNet (``depth = 6n + 2``) of He et al. 2016.

    Args:
        depth: Number of weighted layers, ``6n + 2`` with ``n >= 1`` (8, 14, 20, 32, 44, 56, ...).
        in_channels: Input channels (3 for RGB, 1 for grayscale).
        num_classes: Number of output logits.
        width: Channels of the first stage (16 in the paper); stages use ``width``, ``2*width``,
            ``4*width``.
        norm: Normalisation, a name or ``(name, kwargs)`` (see
            :func:`lightning_sparse.models.layers.norm`); ``"batch"`` in the paper.
        act: Activation, a name or ``(name, kwargs)`` (see
            :func:`lightning_sparse.models.layers.act`); ``"relu"`` in the paper.

    Raises:
        ValueError: If ``depth`` is not ``6n + 2``, another size is not positive, or ``norm`` or
            ``act`` is unknown.

    Examples:
        >>> model = ResNetCIFAR(depth=8, in_channels=3, num_classes=10, width=4)
        >>> model(torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        depth: int = 20,
        in_channels: int = 3,
        num_classes: int = 10,
        width: int = 16,
        norm: LayerSpec = "batch",
        act: LayerSpec = "relu",
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(
                f"`depth` must be 6n + 2 with n >= 1 (8, 14, 20, 32, 56, ...), got {depth}."
            )
        check_sizes(in_channels=in_channels, num_classes=num_classes, width=width)
        self.example_input_size = (in_channels, 16, 16)
        blocks_per_stage = (depth - 2) // 6
        self.stem = ConvNormAct(in_channels, width, 3, norm=norm, act=act)
        n, kw = blocks_per_stage, {"norm": norm, "act": act}
        self.layer1 = self._make_stage(width, width, n, stride=1, **kw)
        self.layer2 = self._make_stage(width, 2 * width, n, stride=2, **kw)
        self.layer3 = self._make_stage(2 * width, 4 * width, n, stride=2, **kw)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _make_stage(
        in_channels: int, out_channels: int, blocks: int, stride: int, **kwargs: LayerSpec
    ) -> nn.Sequential:
        stage = [_CIFARBasicBlock(in_channels, out_channels, stride, **kwargs)]
        stage += [_CIFARBasicBlock(out_channels, out_channels, **kwargs) for _ in range(blocks - 1)]
        return nn.Sequential(*stage)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(B, num_classes)`` for images of shape ``(B, C, H, W)``."""
        x = self.stem(x)  # (B, w, H, W)
        x = self.layer3(self.layer2(self.layer1(x)))  # (B, 4w, H/4, W/4)
        x = torch.flatten(self.pool(x), 1)  # (B, 4w)
        return self.fc(x)  # (B, num_classes)


@register_model
def resnet8(**kwargs) -> ResNetCIFAR:
    """ResNet-8 (one BasicBlock per stage): a tiny CIFAR ResNet for quick runs."""
    return ResNetCIFAR(depth=8, **kwargs)


@register_model
def resnet20(**kwargs) -> ResNetCIFAR:
    """ResNet-20 (three BasicBlocks per stage), He et al. 2016 Table 6."""
    return ResNetCIFAR(depth=20, **kwargs)


@register_model
def resnet32(**kwargs) -> ResNetCIFAR:
    """ResNet-32 (five BasicBlocks per stage), He et al. 2016 Table 6."""
    return ResNetCIFAR(depth=32, **kwargs)


@register_model
def resnet56(**kwargs) -> ResNetCIFAR:
    """ResNet-56 (nine BasicBlocks per stage), He et al. 2016 Table 6."""
    return ResNetCIFAR(depth=56, **kwargs)
