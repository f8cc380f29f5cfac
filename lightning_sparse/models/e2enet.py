"""E2ENet: a CNN encoder and a UNet++-like multi-scale fusion grid for 3D medical segmentation.

Wu et al., "E2ENet: Dynamic Sparse Feature Fusion for Accurate and Efficient 3D Medical Image
Segmentation", NeurIPS 2024, arXiv:2312.04727 (official code: github.com/boqian333/E2ENet-Medical,
``e2enet/network_architecture/unetpp_d.py``, class ``Generic_UNetPlusPlus``, on nnU-Net v1).

Layout: input ``(B, in_channels, D, H, W)`` (``(B, C, H, W)`` for ``spatial_dims=2``); logits
``(B, out_channels, D, H, W)``, at the input's size.

Architecture (``n = len(channels) - 1`` downsamplings, level ``s`` has ``channels[s]`` maps):

- **Encoder** ``encoder.{s}`` (``X^{s,0}``): two conv-norm-act blocks per level, the first of
  level ``s >= 1`` strided by ``strides[s - 1]`` (nnU-Net's convolutional pooling).
- **Fusion grid** ``fusion.x{s}_{j}`` (node ``X^{s,j}`` for ``j >= 1``, ``s + j <= n``): each node
  concatenates three inputs from the previous column ``j - 1`` and convolves them to
  ``channels[s]`` maps:
  *forward* ``X^{s,j-1}`` (same level), *upward* ``X^{s+1,j-1}`` upsampled by a transposed
  convolution ``up`` (kernel = stride = ``strides[s]``, no bias), and *downward* ``X^{s-1,j-1}``
  max-pooled by ``down`` (kernel = stride = ``strides[s - 1]``; absent at level 0). The nodes of the
  last diagonal (``s + j = n``, the U-Net decoder path) have two conv-norm-act blocks, the others
  one. A node is computed as soon as its inputs exist, as in the official ``forward``.
- **Deep supervision heads** ``heads.{s}``: 1x1 convolutions without bias on the last-diagonal
  nodes ``X^{s,n-s}`` of levels ``s = 0 .. max(0, n - 2)``: the lowest decoder level has no head
  (four heads for five downsamplings, as the official code). The official loss (nnU-Net's
  ``MultipleOutputLoss2``) weights head ``s`` by ``2^-s``, normalised over the heads (every head
  counts: ``8/15, 4/15, 2/15, 1/15``), against labels downsampled by nearest neighbour:
  :attr:`E2ENet.deep_supervision_weights`.
- Every convolution block is ``[DepthShift] -> conv -> norm -> act``
  (:class:`~lightning_sparse.models.layers.DepthShiftConv`): by default a depth shift of
  ``k = 2`` (five channel groups moved by -2..2 slices, zero fill), a 1x3x3 convolution with bias,
  instance normalisation with affine parameters and leaky ReLU (slope 0.01); He-normal
  initialisation (``a = 0.01``) of every (transposed) convolution, zero biases.

What ``forward`` returns: in training mode with ``deep_supervision=True`` a list of
``num_heads`` logits tensors, full resolution first, then level ``s`` at the size of encoder level
``s`` (every spatial size divided by the cumulative stride :attr:`E2ENet.head_strides` ``[s]``,
rounded up); in eval mode, or with ``deep_supervision=False``, the full-resolution logits tensor
only. Any input size works: each level is the previous one divided by its stride and rounded up,
and upsampled maps are cropped to the size of the level they join (no cropping when the sizes
are divisible by the total stride, the only sizes the official code accepts).

Dynamic sparse feature fusion: the paper learns sparse, kernel-level connections of the fusion
convolutions. Their weights are ``fusion.x{s}_{j}.convs.{i}.conv.weight``; the glob
``"fusion.*.conv.weight"`` selects exactly these (not the transposed ``up`` convolutions, norms,
biases, encoder or heads), ``"model.fusion.*.conv.weight"`` inside a LightningModule that stores
the network as ``self.model``. :data:`E2ENET_FUSION_INCLUDE` (``["*fusion.*.conv.weight"]``)
matches both, e.g. ``DynamicSparseTraining(granularity="kernel",
include=E2ENET_FUSION_INCLUDE)``; :data:`E2ENET_ENCODER_INCLUDE` does the same for the encoder's
convolutions.

Ablation switches: ``depth_shift=False`` keeps the 1x3x3 convolutions without the shift (the
official ``unetpp_d_noshift.py``); ``kernel="3x3x3"`` uses full 3D kernels everywhere, without
shift.

Configurations (parameters at the default classes, ``in_channels=1``):

================  ============================  =========================  =======  ==========  ==========
builder           channels                      strides                    classes  parameters  fusion
================  ============================  =========================  =======  ==========  ==========
``e2enet_tiny``   (4, 8, 16, 32)                (1,2,2), 2, 2              2        37,980      12,528
``e2enet_small``  (16, 32, 64, 128, 128)        (1,2,2), 2, 2, 2           2        1,747,904   836,352
``e2enet``        (48, 96, 192, 320, 320, 320)  (1,2,2), 2, 2, 2, (1,2,2)  16       23,397,328  13,360,896
================  ============================  =========================  =======  ==========  ==========

("fusion": the weights :data:`E2ENET_FUSION_INCLUDE` selects.) ``e2enet`` is the official
``shiftConvPP`` network: ``base_num_features=48`` doubled per level up to nnU-Net's cap of 320,
five downsamplings (its ``forward`` is written for exactly five), two convolutions per stage. Its
strides come from each dataset's nnU-Net plans file, not from the code; the default is nnU-Net's
usual plan for abdominal CT (depth halved three times, height and width five times), pass
``strides=`` for another plan. With ``kernel="3x3x3"`` the encoder and fusion convolution weights
triple (``e2enet``: 61,727,536 parameters).

Deviations from the official code: any input size (see above); ``norm``, ``act``, ``channels``,
``strides`` and the number of levels are configurable; 2D (``spatial_dims=2``) uses 3x3 kernels
without shift, as the official 2D branch. As in the official ``torch_shift``, a block with fewer
input channels than shift groups shifts only the first offsets: the first convolution, on a single
input channel, sees input slice ``d + 2`` at output slice ``d``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from lightning_sparse._validation import check_bool, check_choice, check_int
from lightning_sparse.models._checks import check_sizes
from lightning_sparse.models._registry import register_model
from lightning_sparse.models.layers import factories
from lightning_sparse.models.layers.depth_shift import DepthShiftConv
from lightning_sparse.models.layers.factories import LayerSpec

__all__ = [
    "E2ENET_ENCODER_INCLUDE",
    "E2ENET_FUSION_INCLUDE",
    "KERNELS",
    "E2ENet",
    "e2enet",
    "e2enet_small",
    "e2enet_tiny",
]

#: Globs selecting exactly the fusion-grid convolution weights (bare or under a prefix such as ``model.``).
E2ENET_FUSION_INCLUDE = ["*fusion.*.conv.weight"]
#: Globs selecting exactly the encoder convolution weights.
E2ENET_ENCODER_INCLUDE = ["*encoder.*.conv.weight"]

#: Allowed ``kernel`` values per ``spatial_dims``.
KERNELS = {3: ("1x3x3", "3x3x3"), 2: ("3x3",)}
_KERNEL_SIZES = {"1x3x3": (1, 3, 3), "3x3x3": (3, 3, 3), "3x3": (3, 3)}


def _check_channels(channels: Any) -> tuple[int, ...]:
    ok = isinstance(channels, Sequence) and not isinstance(channels, str) and len(channels) >= 2
    if ok:
        ok = all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in channels)
    if not ok:
        raise ValueError(
            f"`channels` must be at least two positive integers (one per level), got {channels!r}."
        )
    return tuple(channels)


def _check_strides(strides: Any, steps: int, dims: int) -> tuple[tuple[int, ...], ...]:
    if strides is None:
        return ((2,) * dims,) * steps
    what = (
        f"`strides` must be {steps} strides (one per downsampling, len(channels) - 1), each a positive "
        f"integer or {dims} positive integers, got {strides!r}."
    )
    if not isinstance(strides, Sequence) or isinstance(strides, str) or len(strides) != steps:
        raise ValueError(what)
    out = []
    for stride in strides:
        stride = (stride,) * dims if isinstance(stride, int) else stride
        if not isinstance(stride, Sequence) or isinstance(stride, str) or len(stride) != dims:
            raise ValueError(what)
        if not all(isinstance(t, int) and not isinstance(t, bool) and t >= 1 for t in stride):
            raise ValueError(what)
        out.append(tuple(stride))
    return tuple(out)


class _FusionNode(nn.Module):
    """``convs(cat[forward, up(upward), down(downward)])`` at one level of the fusion grid."""

    def __init__(
        self,
        channels: int,
        lower_channels: int,
        upper_channels: int | None,
        up_stride: tuple[int, ...],
        down_stride: tuple[int, ...] | None,
        num_convs: int,
        block: Any,
        spatial_dims: int,
    ) -> None:
        super().__init__()
        self.up = factories.conv(spatial_dims, transposed=True)(
            lower_channels, channels, up_stride, stride=up_stride, bias=False
        )
        in_channels = 2 * channels
        if upper_channels is not None:
            self.down = factories.pool("max", spatial_dims)(down_stride, stride=down_stride, ceil_mode=True)
            in_channels += upper_channels
        self.convs = nn.Sequential(
            *(block(in_channels if i == 0 else channels, channels) for i in range(num_convs))
        )

    def forward(self, same: Tensor, lower: Tensor, upper: Tensor | None = None) -> Tensor:
        up = self.up(lower)  # (B, C_s, >= size of level s)
        up = up[(slice(None), slice(None), *(slice(0, n) for n in same.shape[2:]))]
        parts = [same, up] if upper is None else [same, up, self.down(upper)]
        return self.convs(torch.cat(parts, dim=1))


class E2ENet(nn.Module):
    """E2ENet: encoder, UNet++-like fusion grid with depth-shift convolutions, deep supervision.

    See the module docstring for the architecture, the module names and the official settings.

    Args:
        spatial_dims: 3 (volumes ``(B, C, D, H, W)``) or 2 (images ``(B, C, H, W)``).
        in_channels: Input channels (modalities).
        out_channels: Number of classes (logit maps), background included.
        channels: Feature maps per level, at least two levels (``(48, 96, 192, 320, 320, 320)``).
        strides: One stride per downsampling (``len(channels) - 1``), an int or one per spatial
            dimension; ``None`` for 2 everywhere (the official default).
        kernel: Convolution kernels: ``"1x3x3"`` (default in 3D) or ``"3x3x3"``; ``"3x3"`` in 2D.
        depth_shift: Depth shift in front of every 1x3x3 convolution; ``None`` for on with
            ``"1x3x3"`` and off otherwise (``True`` needs ``"1x3x3"``).
        max_shift: ``k`` of the shift: ``2k + 1`` channel groups moved by ``-k .. k`` slices (2).
        norm: Normalisation, a name or ``(name, kwargs)``, or ``None`` for none; nnU-Net's
            instance norm with affine parameters by default.
        act: Activation, a name or ``(name, kwargs)``, or ``None``; leaky ReLU with slope 0.01 by
            default.
        deep_supervision: Return the logits of every head in training mode (see :meth:`forward`).

    Attributes:
        num_heads: Number of deep supervision heads, ``max(1, len(channels) - 2)``.
        head_strides: Cumulative stride of each head's level (``(1, 1, 1)`` first).
        example_input_size: A small valid ``(in_channels, *spatial)``: the total stride, doubled
            along the last axis (the deepest level keeps two voxels, which instance normalisation
            needs in training).

    Raises:
        ValueError: If an argument is not allowed.

    Examples:
        >>> model = E2ENet(3, 1, 3, channels=(4, 8, 16), strides=((1, 2, 2), 2))
        >>> outputs = model(torch.randn(1, 1, 9, 13, 15))  # training mode: one tensor per head
        >>> [tuple(o.shape) for o in outputs]
        [(1, 3, 9, 13, 15)]
        >>> model.eval()(torch.randn(1, 1, 9, 13, 15)).shape
        torch.Size([1, 3, 9, 13, 15])
        >>> list(model.fusion)  # X^{s,j}: level s, column j
        ['x0_1', 'x1_1', 'x0_2']
        >>> from lightning_sparse.core import find_targets
        >>> [t.name for t in find_targets(model, include=E2ENET_FUSION_INCLUDE)][:2]
        ['fusion.x0_1.convs.0.conv.weight', 'fusion.x1_1.convs.0.conv.weight']
    """

    #: Input and output layout for generic tools: ``(B, C, *spatial)`` in, per-voxel logits out.
    input_convention = "segmentation"

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (48, 96, 192, 320, 320, 320),
        strides: Sequence[int | Sequence[int]] | None = None,
        kernel: str | None = None,
        depth_shift: bool | None = None,
        max_shift: int = 2,
        norm: LayerSpec | None = ("instance", {"affine": True}),
        act: LayerSpec | None = ("leaky_relu", {"negative_slope": 0.01}),
        deep_supervision: bool = True,
    ) -> None:
        super().__init__()
        dims = check_choice("spatial_dims", spatial_dims, (2, 3))
        check_sizes(in_channels=in_channels, out_channels=out_channels)
        channels = _check_channels(channels)
        n = len(channels) - 1
        strides = _check_strides(strides, n, dims)
        kernel = check_choice("kernel", KERNELS[dims][0] if kernel is None else kernel, KERNELS[dims])
        if depth_shift is None:
            depth_shift = kernel == "1x3x3"
        check_bool("depth_shift", depth_shift)
        if depth_shift and kernel != "1x3x3":
            raise ValueError(
                f"`depth_shift=True` needs kernel='1x3x3' (the shift precedes 1x3x3 convolutions), "
                f"got kernel={kernel!r}."
            )
        check_int("max_shift", max_shift, 0)
        self.deep_supervision = check_bool("deep_supervision", deep_supervision)
        self.spatial_dims, self.in_channels, self.out_channels = dims, in_channels, out_channels
        self.channels, self.strides, self.kernel, self.depth_shift = channels, strides, kernel, depth_shift
        kernel_size = _KERNEL_SIZES[kernel]

        def block(cin: int, cout: int, stride: int | tuple[int, ...] = 1) -> DepthShiftConv:
            return DepthShiftConv(
                cin, cout, kernel_size, stride=stride, spatial_dims=dims, norm=norm, act=act, bias=True,
                max_shift=max_shift if depth_shift else None,
            )

        self.encoder = nn.ModuleList(
            nn.Sequential(
                block(in_channels if s == 0 else channels[s - 1], c, 1 if s == 0 else strides[s - 1]),
                block(c, c),
            )
            for s, c in enumerate(channels)
        )
        self.fusion = nn.ModuleDict()
        for diagonal in range(1, n + 1):  # the nodes computed once encoder level `diagonal` exists
            for j in range(1, diagonal + 1):
                s = diagonal - j
                self.fusion[f"x{s}_{j}"] = _FusionNode(
                    channels[s], channels[s + 1], channels[s - 1] if s else None, strides[s],
                    strides[s - 1] if s else None, 2 if diagonal == n else 1, block, dims,
                )
        self.num_heads = max(1, n - 1)
        conv = factories.conv(dims)
        self.heads = nn.ModuleList(
            conv(channels[s], out_channels, 1, bias=False) for s in range(self.num_heads)
        )
        cumulative = [(1,) * dims]
        for stride in strides:
            cumulative.append(tuple(a * b for a, b in zip(cumulative[-1], stride)))
        self.head_strides = tuple(cumulative[: self.num_heads])  # head s: input size / it, rounded up
        total = cumulative[-1]
        self.example_input_size = (in_channels, *total[:-1], 2 * total[-1])
        for module in self.modules():
            if isinstance(module, nn.modules.conv._ConvNd):
                nn.init.kaiming_normal_(module.weight, a=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    @property
    def deep_supervision_weights(self) -> list[float]:
        """The official loss weights of the heads, finest first: ``2^-s`` normalised to sum 1.

        nnU-Net weights ``n`` scales ``2^-s`` with the coarsest at 0; E2ENet has no head on that
        scale, so every head keeps its weight (``[8/15, 4/15, 2/15, 1/15]`` for four heads).

        Examples:
            >>> E2ENet(3, 1, 2, channels=(4, 8, 16, 16)).deep_supervision_weights
            [0.6666666666666666, 0.3333333333333333]
        """
        weights = [2.0**-s for s in range(self.num_heads)]
        return [w / sum(weights) for w in weights]

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """Per-voxel logits of ``x`` ``(B, in_channels, *spatial)``.

        Returns:
            In training mode with ``deep_supervision``: a list of ``num_heads`` tensors
            ``(B, out_channels, *size_s)``, full resolution (``size_0`` = the input's size) first,
            then level ``s = 1, 2, ...`` with ``size_s = ceil(size / head_strides[s])``. Otherwise
            (eval mode, or ``deep_supervision=False``): the full-resolution tensor
            ``(B, out_channels, *spatial)`` alone.

        Raises:
            ValueError: If ``x`` does not have ``spatial_dims + 2`` dimensions and ``in_channels``
                channels.
        """
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            axes = ", ".join("DHW"[3 - self.spatial_dims :])
            raise ValueError(f"`x` must have shape (batch, {self.in_channels}, {axes}), got {tuple(x.shape)}.")
        n = len(self.channels) - 1
        grid: dict[tuple[int, int], Tensor] = {}
        for level, stage in enumerate(self.encoder):
            x = grid[level, 0] = stage(x)
            for j in range(1, level + 1):  # the new diagonal, from the deepest node up
                s = level - j
                upper = grid[s - 1, j - 1] if s else None
                grid[s, j] = self.fusion[f"x{s}_{j}"](grid[s, j - 1], grid[s + 1, j - 1], upper)
        if not (self.training and self.deep_supervision):
            return self.heads[0](grid[0, n])
        return [head(grid[s, n - s]) for s, head in enumerate(self.heads)]


def _build(
    defaults: dict[str, Any], num_classes: int | None, in_channels: int, kwargs: dict[str, Any]
) -> E2ENet:
    out_channels = kwargs.pop("out_channels", None)
    if num_classes is not None and out_channels is not None and num_classes != out_channels:
        raise ValueError(
            f"`num_classes` is an alias of `out_channels`; give one or equal values, "
            f"got {num_classes} and {out_channels}."
        )
    default_classes = defaults.pop("num_classes")
    classes = next((c for c in (num_classes, out_channels) if c is not None), default_classes)
    args = {"spatial_dims": 3, "in_channels": in_channels, "out_channels": classes, **defaults, **kwargs}
    return E2ENet(**args)


@register_model
def e2enet_tiny(num_classes: int | None = None, in_channels: int = 1, **kwargs: Any) -> E2ENet:
    """A test-sized :class:`E2ENet`: channels ``(4, 8, 16, 32)``, strides ``(1, 2, 2), 2, 2``.

    Args:
        num_classes: Output classes (alias ``out_channels``); 2 by default.
        in_channels: Input channels.
        **kwargs: Other :class:`E2ENet` arguments.

    Examples:
        >>> model = e2enet_tiny(num_classes=3)
        >>> [tuple(o.shape) for o in model(torch.randn(1, 1, 20, 24, 28))]
        [(1, 3, 20, 24, 28), (1, 3, 20, 12, 14)]
    """
    defaults = {"num_classes": 2, "channels": (4, 8, 16, 32), "strides": ((1, 2, 2), 2, 2)}
    return _build(defaults, num_classes, in_channels, kwargs)


@register_model
def e2enet_small(num_classes: int | None = None, in_channels: int = 1, **kwargs: Any) -> E2ENet:
    """A CPU-sized :class:`E2ENet`: channels ``(16, 32, 64, 128, 128)``, strides ``(1, 2, 2), 2, 2, 2``.

    Args:
        num_classes: Output classes (alias ``out_channels``); 2 by default.
        in_channels: Input channels.
        **kwargs: Other :class:`E2ENet` arguments.
    """
    defaults = {"num_classes": 2, "channels": (16, 32, 64, 128, 128), "strides": ((1, 2, 2), 2, 2, 2)}
    return _build(defaults, num_classes, in_channels, kwargs)


@register_model
def e2enet(num_classes: int | None = None, in_channels: int = 1, **kwargs: Any) -> E2ENet:
    """The official :class:`E2ENet` (``shiftConvPP``): channels ``(48, 96, 192, 320, 320, 320)``.

    Strides ``(1, 2, 2), 2, 2, 2, (1, 2, 2)`` (nnU-Net's abdominal CT plan; see the module
    docstring); 16 classes by default (AMOS-CT: 15 organs and background; 14 for BTCV).

    Args:
        num_classes: Output classes (alias ``out_channels``); 16 by default.
        in_channels: Input channels (1 for CT).
        **kwargs: Other :class:`E2ENet` arguments.
    """
    defaults = {
        "num_classes": 16,
        "channels": (48, 96, 192, 320, 320, 320),
        "strides": ((1, 2, 2), 2, 2, 2, (1, 2, 2)),
    }
    return _build(defaults, num_classes, in_channels, kwargs)
