"""R3D-18: an 18-layer ResNet of full 3D convolutions for video classification.

Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions for Action Recognition",
arXiv:1711.11248, Section 3.1 and Table 1: the 2D ResNet-18 with every convolution a 3D one
(3x3x3 kernels), a ``(3, 7, 7)`` stem of stride ``(1, 2, 2)``, four stages of two BasicBlocks
(64/128/256/512 channels; stages 2-4 stride 2 in time and space), global average pooling and a
linear classifier. 33.37 M parameters at 400 (Kinetics-400) classes.

Input layout: ``(B, C, T, H, W)``, channels first, then frames, then height and width (the
layout of ``torchvision.io`` video tensors after ``permute(0, 4, 1, 2, 3)`` and of torchvision's
video transforms). The paper trains on 8- or 16-frame 112x112 clips; any ``T >= 1`` and
``H, W >= 16`` run, since the pooling is adaptive. Time is downsampled 8x, space 16x.

Built from ``torchvision.models.video.r3d_18(weights=None)`` (never downloads weights), so module
names are torchvision's. All convolutions are ``nn.Conv3d`` (``Conv3DSimple`` subclasses it), so
``DynamicSparseTraining``'s default targets sparsify them along with the classifier.

Deviations from the paper: the 1x1x1 projection shortcuts and the initialisation are
torchvision's; ``in_channels`` is configurable (e.g. 2 for optical flow).
"""

from __future__ import annotations

from torch import nn
from torchvision.models.video import VideoResNet
from torchvision.models.video import r3d_18 as _tv_r3d_18

from lightning_sparse.models._checks import check_sizes
from lightning_sparse.models._registry import register_model

__all__ = ["r3d_18"]


@register_model
def r3d_18(num_classes: int = 400, in_channels: int = 3) -> VideoResNet:
    """R3D-18 (torchvision's ``VideoResNet``, untrained) for clips of shape ``(B, C, T, H, W)``.

    Args:
        num_classes: Number of output logits (400 for Kinetics-400, 101 for UCF-101).
        in_channels: Input channels (3 for RGB frames).

    Returns:
        A ``torchvision.models.video.VideoResNet`` with ``example_input_size`` set to a small clip.

    Raises:
        ValueError: If a size is not positive.

    Examples:
        >>> import torch
        >>> model = r3d_18(num_classes=5).eval()
        >>> model(torch.randn(1, 3, 4, 32, 32)).shape  # (B, C, T, H, W)
        torch.Size([1, 5])
    """
    check_sizes(num_classes=num_classes, in_channels=in_channels)
    model = _tv_r3d_18(weights=None, num_classes=num_classes)
    if in_channels != 3:
        old = model.stem[0]  # Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3))
        stem = nn.Conv3d(in_channels, old.out_channels, old.kernel_size, stride=old.stride,
                         padding=old.padding, bias=False)
        nn.init.kaiming_normal_(stem.weight, mode="fan_out", nonlinearity="relu")
        model.stem[0] = stem
    # A small clip (4 frames of 32x32) so generic tests stay fast; real clips are 8-16 x 112x112.
    model.example_input_size = (in_channels, 4, 32, 32)
    return model
