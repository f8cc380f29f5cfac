"""EfficientNet-B0 for 224x224 (ImageNet) or 32x32 (CIFAR) inputs.

Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
arXiv:1905.11946, Table 1: a 3x3 stride-2 stem (32 channels), seven stages of MBConv blocks
(inverted residuals of Sandler et al. 2018, arXiv:1801.04381, with depthwise 3x3/5x5
convolutions and squeeze-and-excitation, Hu et al. 2018, arXiv:1709.01507), SiLU activations,
a 1x1 head to 1280 channels, global average pooling, dropout 0.2 and a linear classifier.
Stochastic depth (Huang et al. 2016, arXiv:1603.09382) drops each residual branch with a
probability rising linearly over the blocks up to ``drop_path_rate`` (0.2 as the paper's
"drop connect rate"); it is off in ``eval()`` mode. 5.29 M parameters at 1000 classes, 4.02 M at 10.

Built from ``torchvision.models.efficientnet_b0(weights=None)`` (never downloads weights), so
module names are torchvision's. ``cifar_stem=True`` makes the stem stride 1: a 32x32 image
reaches the head at 2x2 instead of 1x1 (overall stride 16 instead of 32), as the usual CIFAR ports
(e.g. kuangliu/pytorch-cifar) do.

For sparse training: every convolution is an ``nn.Conv2d``, so ``DynamicSparseTraining``'s
default targets include the depthwise convolutions (``groups == channels``, 9 or 25 weights per
channel) and the squeeze-and-excitation 1x1 convolutions as well as the classifier.

Deviations from the paper: batch norm uses PyTorch's defaults (momentum 0.1, eps 1e-5) rather
than TensorFlow's (0.99 decay, eps 1e-3), as torchvision; the optional CIFAR stem and
``in_channels``.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import EfficientNet
from torchvision.models import efficientnet_b0 as _tv_efficientnet_b0

from lightning_sparse.models._checks import check_sizes
from lightning_sparse.models._registry import register_model

__all__ = ["efficientnet_b0"]


@register_model
def efficientnet_b0(
    num_classes: int = 10,
    in_channels: int = 3,
    cifar_stem: bool = False,
    drop_path_rate: float = 0.2,
    dropout: float = 0.2,
) -> EfficientNet:
    """EfficientNet-B0 (torchvision's module, untrained), optionally with a stride-1 CIFAR stem.

    Args:
        num_classes: Number of output logits.
        in_channels: Input channels (3 for RGB).
        cifar_stem: ``True`` for a stride-1 stem (32x32 inputs), ``False`` for the paper's
            stride-2 stem (224x224 inputs).
        drop_path_rate: Stochastic-depth probability of the last block, in ``[0, 1)``.
        dropout: Dropout probability before the classifier, in ``[0, 1)``.

    Returns:
        A ``torchvision.models.EfficientNet`` with ``example_input_size`` set.

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> import torch
        >>> model = efficientnet_b0(num_classes=10, cifar_stem=True).eval()
        >>> model(torch.randn(1, 3, 32, 32)).shape
        torch.Size([1, 10])
        >>> model.features[0][0].stride
        (1, 1)
    """
    check_sizes(num_classes=num_classes, in_channels=in_channels)
    for arg, value in {"drop_path_rate": drop_path_rate, "dropout": dropout}.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"`{arg}` must be in [0, 1), got {value}.")
    model = _tv_efficientnet_b0(
        weights=None, num_classes=num_classes, stochastic_depth_prob=drop_path_rate, dropout=dropout
    )
    old = model.features[0][0]  # Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
    if cifar_stem or in_channels != old.in_channels:
        stem = nn.Conv2d(in_channels, old.out_channels, 3, stride=1 if cifar_stem else 2, padding=1,
                         bias=False)
        nn.init.kaiming_normal_(stem.weight, mode="fan_out")  # torchvision's init
        model.features[0][0] = stem
    # One small sample that reaches the head at 2x2 (CIFAR stem: 32x32; paper's stem: 64x64).
    model.example_input_size = (in_channels, 32, 32) if cifar_stem else (in_channels, 64, 64)
    return model
