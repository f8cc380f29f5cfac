"""ConvNormAct: a convolution, a normalisation and an activation, for 1D, 2D or 3D inputs.

The basic unit of VGG-style and residual networks (convolution, batch normalisation of Ioffe &
Szegedy 2015, arXiv:1502.03167, then a nonlinearity), as MONAI's ``Convolution`` and timm's
``ConvNormAct``. The kernel may be rectangular, e.g. ``(51, 5)`` for the decomposed large kernels
of SLaK (Liu et al. 2023, "More ConvNets in the 2020s", arXiv:2207.03620).

Deviations from MONAI/timm: a plain ``nn.Sequential`` of only the parts that are set, indexed
``0`` (convolution), ``1`` (normalisation), ``2`` (activation), so its parameter names are those
of a hand-written ``nn.Sequential(conv, norm, act)``; no dropout and no transposed convolution.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from lightning_sparse.models.layers import factories
from lightning_sparse.models.layers.factories import LayerSpec, same_padding

__all__ = ["ConvNormAct"]


class ConvNormAct(nn.Sequential):
    """``conv -> norm -> act`` as an ``nn.Sequential`` (``norm`` or ``act`` ``None``: left out).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: An int or one int per spatial dimension.
        stride: Convolution stride.
        padding: ``None`` for :func:`same_padding` (size kept at stride 1 for odd kernels), else
            passed to the convolution.
        dilation: Convolution dilation.
        groups: Convolution groups (``in_channels`` for a depthwise convolution).
        bias: Convolution bias; ``None`` for a bias only when there is no normalisation.
        spatial_dims: 1, 2 or 3 (``Conv1d``/``Conv2d``/``Conv3d`` and the matching norm).
        norm: A :func:`~lightning_sparse.models.layers.factories.norm` spec or ``None``.
        act: An :func:`~lightning_sparse.models.layers.factories.act` spec or ``None``; built
            in place when it can be.

    Raises:
        ValueError: If ``spatial_dims``, ``norm`` or ``act`` is not allowed.

    Examples:
        >>> import torch
        >>> layer = ConvNormAct(3, 8, spatial_dims=3, norm="instance", act="gelu")
        >>> layer(torch.randn(2, 3, 4, 6, 6)).shape
        torch.Size([2, 8, 4, 6, 6])
        >>> [name for name, _ in ConvNormAct(3, 8, act=None).named_children()]
        ['0', '1']
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 3,
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str | None = None,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool | None = None,
        spatial_dims: int = 2,
        norm: LayerSpec | None = "batch",
        act: LayerSpec | None = "relu",
    ) -> None:
        conv_cls = factories.conv(spatial_dims)
        layers: list[nn.Module] = [
            conv_cls(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=same_padding(kernel_size, dilation) if padding is None else padding,
                dilation=dilation,
                groups=groups,
                bias=norm is None if bias is None else bias,
            )
        ]
        if norm is not None:
            layers.append(factories.norm(norm, spatial_dims, out_channels))
        if act is not None:
            layers.append(factories.act(act, inplace=True))
        super().__init__(*layers)

