"""A dense 3D U-Net baseline: MONAI's ``DynUNet`` (the nnU-Net architecture) in the registry.

MONAI's ``DynUNet`` (``monai.networks.nets.DynUNet``) is nnU-Net's self-configuring U-Net
(Isensee et al. 2021, "nnU-Net: a self-configuring method for deep learning-based biomedical
image segmentation", Nature Methods): two conv-norm-LeakyReLU blocks per stage, strided
convolutions down, transposed convolutions up, instance norm, and optional deep-supervision
heads. :class:`UNet3D` wraps it for the project's segmentation task: in training mode with deep
supervision it returns a list of full-resolution logits (the main head first; MONAI interpolates
the deeper heads' outputs to full size), otherwise one logits tensor ``(B, num_classes, *spatial)``.
Every spatial size must be divisible by the product of the strides (8 for the defaults);
sliding-window inference with such a window handles any volume.

Registered: ``unet3d`` (widths 32-64-128-256-320, nnU-Net's 3D full-resolution start), and
``unet3d_small`` (16-32-64-128-128 with strides 1, (1, 2, 2), 2, 2, 2: the widths, levels and
strides of ``e2enet_small``, the dense baseline of the CPU benchmarks).

Torch and MONAI only: never imports Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from lightning_sparse._validation import check_bool, check_int
from lightning_sparse.models._registry import register_model

__all__ = ["UNet3D", "unet3d", "unet3d_small"]


class UNet3D(nn.Module):
    """MONAI's ``DynUNet`` with 3x3x3 kernels, returning a list of logits under deep supervision.

    Args:
        num_classes: Output classes (background included).
        in_channels: Input channels.
        filters: Channels per stage, the first at full resolution.
        strides: Down-sampling stride entering each stage (the first is 1): an int, or one int per
            spatial dimension (``(1, 2, 2)``: in-plane only, for anisotropic volumes).
        deep_supervision: Add the deep-supervision heads (training mode only).
        deep_supr_num: Number of deeper heads (at most ``len(filters) - 2``).
        spatial_dims: 3 (volumes) or 2 (slices).

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> import torch
        >>> net = UNet3D(num_classes=3, filters=(4, 8, 16), strides=(1, 2, 2), deep_supr_num=1)
        >>> [o.shape for o in net.train()(torch.randn(1, 1, 8, 8, 8))]
        [torch.Size([1, 3, 8, 8, 8]), torch.Size([1, 3, 8, 8, 8])]
        >>> net.eval()(torch.randn(1, 1, 8, 8, 8)).shape
        torch.Size([1, 3, 8, 8, 8])
    """

    input_convention = "segmentation"
    """Logits per voxel (a list of them in training mode with deep supervision)."""

    def __init__(self, num_classes: int = 2, in_channels: int = 1, filters: Sequence[int] = (16, 32, 64, 128),
                 strides: Sequence[int | Sequence[int]] = (1, 2, 2, 2), deep_supervision: bool = True,
                 deep_supr_num: int = 2, spatial_dims: int = 3) -> None:
        super().__init__()
        from monai.networks.nets import DynUNet

        check_int("num_classes", num_classes, 2)
        check_int("in_channels", in_channels, 1)
        check_int("spatial_dims", spatial_dims, 2, 3)
        filters = [int(f) for f in filters]
        strides = [[int(s)] * spatial_dims if isinstance(s, int) else [int(v) for v in s] for s in strides]
        if len(filters) < 2 or len(filters) != len(strides) or any(f < 1 for f in filters) \
                or any(v != 1 for v in strides[0]) or any(len(s) != spatial_dims or min(s) < 1 for s in strides):
            raise ValueError(f"`filters` and `strides` must have one entry per stage (at least 2), positive, the first "
                             f"stride 1; got filters={filters}, strides={strides}.")
        check_bool("deep_supervision", deep_supervision)
        check_int("deep_supr_num", deep_supr_num, 1, len(filters) - 2 if len(filters) > 2 else 1)
        self.deep_supervision = deep_supervision
        self.net = DynUNet(spatial_dims, in_channels, num_classes, kernel_size=[3] * len(filters), strides=strides,
                           upsample_kernel_size=strides[1:], filters=filters, deep_supervision=deep_supervision,
                           deep_supr_num=deep_supr_num)
        factors = [1] * spatial_dims
        for s in strides:
            factors = [f * v for f, v in zip(factors, s)]
        self.size_multiple = tuple(factors)
        """Every spatial size must be a multiple of these (the product of the strides)."""
        self.example_input_size = (in_channels, *(2 * f for f in factors))

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """Logits, or in training mode with deep supervision a list of full-resolution logits."""
        out = self.net(x)
        if self.training and self.deep_supervision:
            return list(out.unbind(1))
        return out


def _build(defaults: dict[str, Any], kwargs: dict[str, Any]) -> UNet3D:
    return UNet3D(**{**defaults, **kwargs})


@register_model
def unet3d(**kwargs: Any) -> UNet3D:
    """nnU-Net's 3D full-resolution widths: 32-64-128-256-320, strides 1-2-2-2-2."""
    return _build({"filters": (32, 64, 128, 256, 320), "strides": (1, 2, 2, 2, 2), "deep_supr_num": 3}, kwargs)


@register_model
def unet3d_small(**kwargs: Any) -> UNet3D:
    """The CPU-scale dense baseline with ``e2enet_small``'s widths, levels and strides."""
    return _build({"filters": (16, 32, 64, 128, 128), "strides": (1, (1, 2, 2), 2, 2, 2), "deep_supr_num": 3}, kwargs)
