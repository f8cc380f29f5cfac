"""SLaK and ConvNeXt: ConvNeXt blocks with sparse-friendly decomposed 51x51 kernels, or the 7x7 baseline.

- SLaK: Liu et al. 2023, "More ConvNets in the 2020s: Scaling up Kernels Beyond 51x51 using
  Sparsity", ICLR 2023, arXiv:2207.03620 (official code: github.com/VITA-Group/SLaK,
  ``models/SLaK.py``).
- ConvNeXt: Liu et al. 2022, "A ConvNet for the 2020s", CVPR 2022, arXiv:2201.03545 (official
  code: github.com/facebookresearch/ConvNeXt, ``models/convnext.py``).

Layout: input ``(B, in_channels, H, W)``, logits ``(B, num_classes)``.

Architecture (both papers): a patchify stem (``stem_stride x stem_stride`` convolution of stride
``stem_stride``, then channels-first layer norm), then stages of blocks at widths ``dims``, each
stage after the first entered through layer norm and a 2x2 stride-2 convolution. A block is
``x + drop_path(gamma * pwconv2(GELU(pwconv1(LN(dw(x))))))``: a depthwise convolution ``dw``
(:class:`~lightning_sparse.models.layers.LargeKernelConv`), a channels-last ``nn.LayerNorm``, an
``nn.Linear`` MLP of ratio 4, layer scale ``gamma`` (init ``layer_scale_init_value``, 1e-6) and
stochastic depth rising linearly from 0 to ``drop_path_rate`` over the blocks. Global average
pooling, layer norm and a linear head close the network. Convolution and linear weights start
from a truncated normal (std 0.02), biases at zero; the head is scaled by ``head_init_scale``.

SLaK's ``dw`` is the decomposed large kernel ``M x 5 + 5 x M + 5 x 5``, each branch with batch
norm, kernels ``M`` = (51, 49, 47, 13) per stage and widths ``int(1.3 * w)`` of the ConvNeXt
widths (the official ``--Decom True --width_factor 1.3 --kernel_size 51 49 47 13 5``); ConvNeXt's
``dw`` is a plain 7x7 depthwise convolution with bias (``decomposed=False, small_kernel=None,
bn=False``). SLaK trains sparse: 40% sparsity with SNIP's layer densities, magnitude pruning and
random regrowth of 50% (T) or 30% (S, B) of each layer's weights every 2000 (T) or 100 (S, B)
iterations, close to ``DynamicSparseTraining(method="set", sparsity=0.4, distribution="snip")``
here; the builders give the dense network. The paper's stochastic-depth rates are 0.1 / 0.4 / 0.5 for
SLaK-T/S/B and 0.1 / 0.4 / 0.5 for ConvNeXt-T/S/B; the builders default to 0 (set it in the recipe).

==================  ===========  ===================  ==============  ====  ===========  ======  ===========
builder             depths       dims                 kernels         stem  parameters   G MACs  published
==================  ===========  ===================  ==============  ====  ===========  ======  ===========
``slak_tiny``       3, 3, 9, 3   124, 249, 499, 998   51, 49, 47, 13  4     50,703,838   8.70    30M, 5.0G
``slak_small``      3, 3, 27, 3  124, 249, 499, 998   51, 49, 47, 13  4     91,131,820   16.60   55M, 9.8G
``slak_base``       3, 3, 27, 3  166, 332, 665, 1331  51, 49, 47, 13  4     157,950,792  28.51   95M, 17.1G
``convnext_tiny``   3, 3, 9, 3   96, 192, 384, 768    7, 7, 7, 7      4     28,589,128   4.46    28.6M, 4.5G
``slak_cifar``      2, 2, 4      83, 166, 332         15, 13, 7       2     4,592,317    0.133   -
``convnext_cifar``  2, 2, 4      64, 128, 256         7, 7, 7         2     2,675,146    0.075   -
==================  ===========  ===================  ==============  ====  ===========  ======  ===========

(SLaK's kernels come with small kernel 5. Dense parameters at 1000 classes for the ImageNet
builders, 10 for the CIFAR ones; running statistics are buffers, not parameters. MACs of the
convolutions and linear layers per 224x224 image, 32x32 for CIFAR, as
:func:`~lightning_sparse.models.conv_linear_flops` counts them; the papers' "FLOPs" are MACs.
"published": SLaK's README, non-zero parameters and MACs at 40% sparsity; ConvNeXt's paper,
dense. At 40% sparsity of every convolution and linear weight SLaK-T/S/B keep 30.5 M / 54.8 M /
94.9 M non-zero parameters and 0.6 x the dense MACs, 5.2 G / 10.0 G / 17.1 G: SLaK's SNIP layer
densities differ a little from uniform ones. ConvNeXt-S and -B, ``ConvNeXt(depths=(3, 3, 27, 3))``
with ConvNeXt's widths, have 50,223,688 and 88,591,464 parameters, the published 50.2 M and 88.6 M.)

CIFAR variants (32x32 inputs; not in the papers): a 2x2 stride-2 stem (32 -> 16) and three stages
at 16x16, 8x8 and 4x4 (no fourth stage: it would be 2x2, smaller than the 5x5 small kernel). The
kernels keep the paper's kernel-to-feature-map ratios: 51 on 56x56 (0.91) -> 15 on 16x16; 49 on
28x28 (1.75) -> 13 on 8x8 (odd, below the global 2 * 8 - 1 = 15); from the third stage on the
paper's kernels see the whole map (47 >= 2 * 14 - 1), so 7 = 2 * 4 - 1 on 4x4. ConvNeXt's 7x7 is
kept unchanged as the dense baseline.

Deviations from the official code: ``nn.BatchNorm2d`` instead of ``nn.SyncBatchNorm``, correct
paddings for every kernel size and :meth:`ConvNeXt.merge` for decomposed kernels too (see
:mod:`~lightning_sparse.models.layers.large_kernel`); any number of stages and a configurable
stem stride (for the CIFAR variants); ConvNeXt's depthwise convolution is the one-branch
``LargeKernelConv`` (parameter ``stages.{i}.{j}.dw.lkb_origin.0.weight`` instead of
``stages.{i}.{j}.dwconv.weight``; the same computation and parameters); module names otherwise
follow the official ones (``downsample_layers``, ``stages``, ``pwconv1``, ``gamma``, ``head``), the
block's depthwise layer is ``dw`` (official: ``large_kernel`` / ``dwconv``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lightning_sparse._validation import check_number
from lightning_sparse.models._checks import check_sizes
from lightning_sparse.models._registry import register_model
from lightning_sparse.models.layers import ChannelLayerNorm, DropPath, LargeKernelConv

__all__ = [
    "ConvNeXt",
    "ConvNeXtBlock",
    "SLaK",
    "convnext_cifar",
    "convnext_tiny",
    "slak_base",
    "slak_cifar",
    "slak_small",
    "slak_tiny",
]

_TINY_DIMS = (96, 192, 384, 768)  # ConvNeXt-T/S widths
_BASE_DIMS = (128, 256, 512, 1024)  # ConvNeXt-B widths
_CIFAR_DIMS = (64, 128, 256)
_SLAK_KERNELS = (51, 49, 47, 13)
_SLAK_CIFAR_KERNELS = (15, 13, 7)  # the paper's kernel-to-map ratios on 16, 8, 4 (module docstring)


def _positive_ints(name: str, values: Any) -> tuple[int, ...]:
    ok = isinstance(values, Sequence) and not isinstance(values, str) and len(values) >= 1
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values)
    if not ok:
        raise ValueError(f"`{name}` must be a non-empty sequence of positive integers (one per stage), got {values!r}.")
    return tuple(values)


class ConvNeXtBlock(nn.Module):
    """``x + drop_path(gamma * pwconv2(GELU(pwconv1(LN(dw(x))))))`` on ``(B, C, H, W)``.

    Args:
        dim: Channels ``C``.
        kernel_size: Side ``M`` of the depthwise kernel.
        small_kernel: ``N`` (see :class:`~lightning_sparse.models.layers.LargeKernelConv`).
        decomposed: SLaK's ``M x N + N x M (+ N x N)`` instead of ``M x M (+ N x N)``.
        bn: Batch norm in each depthwise branch (SLaK); ``False``: convolutions with bias (ConvNeXt).
        drop_path: Stochastic-depth probability of the residual branch.
        layer_scale_init_value: Initial ``gamma`` (``0``: no layer scale).
        impl: How the depthwise convolutions run (see ``LargeKernelConv``): ``"torch"`` or
            ``"auto"`` (the fastest of the FFT / banded-matrix / stock paths per shape).

    Examples:
        >>> block = ConvNeXtBlock(8, kernel_size=7, small_kernel=None, decomposed=False, bn=False)
        >>> block(torch.randn(2, 8, 5, 5)).shape
        torch.Size([2, 8, 5, 5])
    """

    def __init__(self, dim: int, kernel_size: int = 7, small_kernel: int | None = None, decomposed: bool = False,
                 bn: bool = False, drop_path: float = 0.0, layer_scale_init_value: float = 1e-6,
                 impl: str = "torch") -> None:
        super().__init__()
        self.dw = LargeKernelConv(dim, kernel_size, small_kernel, decomposed=decomposed, bn=bn, impl=impl)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)  # pointwise convolutions as linear layers (channels last)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        scale = float(layer_scale_init_value)
        self.gamma = nn.Parameter(torch.full((dim,), scale)) if scale > 0 else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        y = self.dw(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))  # (B, H, W, C)
        if self.gamma is not None:
            y = self.gamma * y
        return x + self.drop_path(y.permute(0, 3, 1, 2))  # (B, C, H, W)


class ConvNeXt(nn.Module):
    """ConvNeXt (Liu et al. 2022) with any depthwise kernel: 7x7 by default, SLaK's with :class:`SLaK`.

    Args:
        depths: Blocks per stage (``(3, 3, 9, 3)`` for ConvNeXt-T).
        dims: Base widths per stage, scaled by ``width_factor`` (``(96, 192, 384, 768)``).
        in_channels: Input channels (3 for RGB).
        num_classes: Number of output logits.
        kernel_sizes: Depthwise kernel side per stage.
        small_kernel: SLaK's ``N`` (``None``: no small branch; see
            :class:`~lightning_sparse.models.layers.LargeKernelConv`).
        decomposed: SLaK's ``M x N + N x M + N x N`` kernels instead of ``M x M (+ N x N)``.
        bn: Batch norm in the depthwise branches (SLaK) or convolutions with bias (ConvNeXt).
        width_factor: Multiplies ``dims`` (``int(width_factor * d)``; 1.3 in SLaK).
        drop_path_rate: Stochastic depth of the last block (linear from 0 over the blocks), in ``[0, 1)``.
        layer_scale_init_value: Initial layer scale (``0``: none).
        head_init_scale: Multiplies the head's initial weights and bias.
        stem_stride: Kernel and stride of the patchify stem (4 for 224x224, 2 for 32x32).
        impl: How the depthwise convolutions run: ``"torch"`` (stock) or ``"auto"`` / a path of
            :data:`lightning_sparse.nn.depthwise.IMPLS` (see ``LargeKernelConv``).

    Raises:
        ValueError: If ``depths``, ``dims`` or ``kernel_sizes`` are not positive integers of the same
            length, or a size or rate is out of range.

    Examples:
        >>> model = ConvNeXt(depths=(1, 1), dims=(8, 16), kernel_sizes=(7, 7), num_classes=3, stem_stride=2)
        >>> model(torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 3])
        >>> ConvNeXt(depths=(1, 1), dims=(8, 16), kernel_sizes=(7,))
        Traceback (most recent call last):
        ...
        ValueError: `kernel_sizes` must have one entry per stage (len(depths) = 2), got (7,).
    """

    def __init__(
        self,
        depths: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = _TINY_DIMS,
        in_channels: int = 3,
        num_classes: int = 1000,
        kernel_sizes: Sequence[int] = (7, 7, 7, 7),
        small_kernel: int | None = None,
        decomposed: bool = False,
        bn: bool = False,
        width_factor: float = 1.0,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        head_init_scale: float = 1.0,
        stem_stride: int = 4,
        impl: str = "torch",
    ) -> None:
        super().__init__()
        depths, dims, kernel_sizes = (_positive_ints(n, v) for n, v in
                                      (("depths", depths), ("dims", dims), ("kernel_sizes", kernel_sizes)))
        for name, values in (("dims", dims), ("kernel_sizes", kernel_sizes)):
            if len(values) != len(depths):
                raise ValueError(f"`{name}` must have one entry per stage (len(depths) = {len(depths)}), got {values}.")
        check_sizes(in_channels=in_channels, num_classes=num_classes, stem_stride=stem_stride)
        check_number("width_factor", width_factor, 0.0, low_open=True)
        check_number("drop_path_rate", drop_path_rate, 0.0, 1.0, high_open=True)
        check_number("layer_scale_init_value", layer_scale_init_value, 0.0)
        check_number("head_init_scale", head_init_scale)
        widths = [int(d * width_factor) for d in dims]
        if min(widths) < 1:
            raise ValueError(f"`width_factor` * `dims` must leave every width >= 1, got {widths}.")
        self.dims, self.kernel_sizes = tuple(widths), kernel_sizes
        # One sample reaching the last stage at 2x2 (ImageNet layout: 64x64), at least CIFAR's 32x32.
        side = max(32, 2 * stem_stride * 2 ** (len(depths) - 1))
        self.example_input_size = (in_channels, side, side)

        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_channels, widths[0], stem_stride, stride=stem_stride),
                           ChannelLayerNorm(widths[0]))]
        )
        for i in range(1, len(widths)):
            self.downsample_layers.append(
                nn.Sequential(ChannelLayerNorm(widths[i - 1]), nn.Conv2d(widths[i - 1], widths[i], 2, stride=2))
            )
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()  # also under torch.device("meta")
        self.stages = nn.ModuleList()
        for i, (depth, width, kernel) in enumerate(zip(depths, widths, kernel_sizes)):
            first = sum(depths[:i])
            self.stages.append(nn.Sequential(*[
                ConvNeXtBlock(width, kernel, small_kernel, decomposed, bn, rates[first + j], layer_scale_init_value, impl)
                for j in range(depth)
            ]))
        self.norm = nn.LayerNorm(widths[-1], eps=1e-6)
        self.head = nn.Linear(widths[-1], num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        with torch.no_grad():
            self.head.weight.mul_(head_init_scale)
            self.head.bias.mul_(head_init_scale)

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled, normalised features ``(B, dims[-1])`` of images ``(B, C, H, W)``."""
        for downsample, stage in zip(self.downsample_layers, self.stages):
            x = stage(downsample(x))  # (B, d_i, H / s_i, W / s_i)
        return self.norm(x.mean((-2, -1)))  # (B, d_last)

    def forward(self, x: Tensor) -> Tensor:
        """Return logits of shape ``(B, num_classes)`` for images of shape ``(B, C, H, W)``."""
        return self.head(self.forward_features(x))

    def merge(self) -> ConvNeXt:
        """Merge every depthwise layer into one convolution (:meth:`LargeKernelConv.merge`); for inference.

        Returns:
            ``self``; in eval mode it computes what it computed before.
        """
        for module in self.modules():
            if isinstance(module, LargeKernelConv):
                module.merge()
        return self


class SLaK(ConvNeXt):
    """SLaK (Liu et al. 2023): :class:`ConvNeXt` with decomposed large kernels and 1.3x widths.

    The same arguments as :class:`ConvNeXt`, with SLaK's defaults: ``kernel_sizes=(51, 49, 47, 13)``,
    ``small_kernel=5``, ``decomposed=True``, ``bn=True``, ``width_factor=1.3``, and ``impl="auto"``
    (the depthwise convolutions through :class:`~lightning_sparse.nn.DepthwiseConv2d`: per shape the
    fastest of FFT, banded matrix and stock; ``impl="torch"`` for stock ``nn.Conv2d``).

    Examples:
        >>> model = SLaK(depths=(1, 1), dims=(8, 8), kernel_sizes=(9, 7), num_classes=3, stem_stride=2)
        >>> model(torch.randn(2, 3, 16, 16)).shape, model.dims
        (torch.Size([2, 3]), (10, 10))
    """

    def __init__(self, depths: Sequence[int] = (3, 3, 9, 3), dims: Sequence[int] = _TINY_DIMS, *,
                 kernel_sizes: Sequence[int] = _SLAK_KERNELS, small_kernel: int | None = 5, decomposed: bool = True,
                 bn: bool = True, width_factor: float = 1.3, impl: str = "auto", **kwargs: Any) -> None:
        super().__init__(depths, dims, kernel_sizes=kernel_sizes, small_kernel=small_kernel, decomposed=decomposed,
                         bn=bn, width_factor=width_factor, impl=impl, **kwargs)


@register_model
def slak_tiny(num_classes: int = 1000, in_channels: int = 3, drop_path_rate: float = 0.0,
              kernel_sizes: Sequence[int] = _SLAK_KERNELS, width_factor: float = 1.3, small_kernel: int | None = 5,
              decomposed: bool = True, depths: Sequence[int] = (3, 3, 9, 3), dims: Sequence[int] = _TINY_DIMS,
              **kwargs: Any) -> SLaK:
    """SLaK-T: 50.7 M dense parameters (30 M non-zero at 40% sparsity), 224x224 inputs."""
    return SLaK(depths, dims, num_classes=num_classes, in_channels=in_channels, drop_path_rate=drop_path_rate,
                kernel_sizes=kernel_sizes, width_factor=width_factor, small_kernel=small_kernel,
                decomposed=decomposed, **kwargs)


@register_model
def slak_small(num_classes: int = 1000, in_channels: int = 3, drop_path_rate: float = 0.0,
               kernel_sizes: Sequence[int] = _SLAK_KERNELS, width_factor: float = 1.3, small_kernel: int | None = 5,
               decomposed: bool = True, depths: Sequence[int] = (3, 3, 27, 3), dims: Sequence[int] = _TINY_DIMS,
               **kwargs: Any) -> SLaK:
    """SLaK-S: 91.1 M dense parameters (55 M non-zero at 40% sparsity), 224x224 inputs."""
    return SLaK(depths, dims, num_classes=num_classes, in_channels=in_channels, drop_path_rate=drop_path_rate,
                kernel_sizes=kernel_sizes, width_factor=width_factor, small_kernel=small_kernel,
                decomposed=decomposed, **kwargs)


@register_model
def slak_base(num_classes: int = 1000, in_channels: int = 3, drop_path_rate: float = 0.0,
              kernel_sizes: Sequence[int] = _SLAK_KERNELS, width_factor: float = 1.3, small_kernel: int | None = 5,
              decomposed: bool = True, depths: Sequence[int] = (3, 3, 27, 3), dims: Sequence[int] = _BASE_DIMS,
              **kwargs: Any) -> SLaK:
    """SLaK-B: 158.0 M dense parameters (95 M non-zero at 40% sparsity), 224x224 inputs."""
    return SLaK(depths, dims, num_classes=num_classes, in_channels=in_channels, drop_path_rate=drop_path_rate,
                kernel_sizes=kernel_sizes, width_factor=width_factor, small_kernel=small_kernel,
                decomposed=decomposed, **kwargs)


@register_model
def convnext_tiny(num_classes: int = 1000, in_channels: int = 3, drop_path_rate: float = 0.0,
                  kernel_sizes: Sequence[int] = (7, 7, 7, 7), width_factor: float = 1.0,
                  small_kernel: int | None = None, decomposed: bool = False, depths: Sequence[int] = (3, 3, 9, 3),
                  dims: Sequence[int] = _TINY_DIMS, **kwargs: Any) -> ConvNeXt:
    """ConvNeXt-T, SLaK's dense 7x7 baseline: 28.6 M parameters, 4.5 G MACs at 224x224."""
    return ConvNeXt(depths, dims, num_classes=num_classes, in_channels=in_channels, drop_path_rate=drop_path_rate,
                    kernel_sizes=kernel_sizes, width_factor=width_factor, small_kernel=small_kernel,
                    decomposed=decomposed, **kwargs)


@register_model
def slak_cifar(num_classes: int = 10, in_channels: int = 3, drop_path_rate: float = 0.0,
               kernel_sizes: Sequence[int] = _SLAK_CIFAR_KERNELS, width_factor: float = 1.3,
               small_kernel: int | None = 5, decomposed: bool = True, depths: Sequence[int] = (2, 2, 4),
               dims: Sequence[int] = _CIFAR_DIMS, **kwargs: Any) -> SLaK:
    """SLaK for 32x32 inputs: stem 2, three stages at 16/8/4 with kernels 15/13/7 (module docstring)."""
    kwargs.setdefault("stem_stride", 2)
    return SLaK(depths, dims, num_classes=num_classes, in_channels=in_channels, drop_path_rate=drop_path_rate,
                kernel_sizes=kernel_sizes, width_factor=width_factor, small_kernel=small_kernel,
                decomposed=decomposed, **kwargs)


@register_model
def convnext_cifar(num_classes: int = 10, in_channels: int = 3, drop_path_rate: float = 0.0,
                   kernel_sizes: Sequence[int] = (7, 7, 7), width_factor: float = 1.0,
                   small_kernel: int | None = None, decomposed: bool = False, depths: Sequence[int] = (2, 2, 4),
                   dims: Sequence[int] = _CIFAR_DIMS, **kwargs: Any) -> ConvNeXt:
    """ConvNeXt for 32x32 inputs, the dense 7x7 baseline of :func:`slak_cifar` (same stem and depths)."""
    kwargs.setdefault("stem_stride", 2)
    return ConvNeXt(depths, dims, num_classes=num_classes, in_channels=in_channels, drop_path_rate=drop_path_rate,
                    kernel_sizes=kernel_sizes, width_factor=width_factor, small_kernel=small_kernel,
                    decomposed=decomposed, **kwargs)
