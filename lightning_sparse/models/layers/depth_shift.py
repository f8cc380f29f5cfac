"""Restricted depth shift: channel groups moved along the depth axis, then a 1x3x3 convolution.

E2ENet's "restricted depth-shift in 3D convolution" (Wu et al., "E2ENet: Dynamic Sparse Feature
Fusion for Accurate and Efficient 3D Medical Image Segmentation", NeurIPS 2024,
arXiv:2312.04727; official code ``torch_shift`` in ``e2enet/network_architecture/unetpp_d.py`` of
github.com/boqian333/E2ENet-Medical), after the temporal shift of TSM (Lin et al. 2019,
arXiv:1811.08383): the channels are split into ``2k + 1`` groups and group ``i`` is moved by
``s_i = i - k`` slices along depth, so a following 1x3x3 convolution, which costs as much as a 2D
one, mixes ``2k + 1`` neighbouring slices. The official code uses ``k = 2`` (five groups).

Exact semantics (those of the official ``torch_shift``):

- Output slice ``d`` of group ``i`` is input slice ``d - s_i`` of the same channels; slices that
  come from outside the volume are zeros. Nothing wraps around from the other end.
- The groups are ``torch.chunk(x, 2k + 1, dim=1)``: ``ceil(C / (2k + 1))`` channels each, the last
  group takes what is left (fewer channels), and when ``C`` is small there are fewer groups,
  which take the first offsets ``-k, -k + 1, ...``. For ``C = 6, k = 2`` the groups are
  ``[0, 2), [2, 4), [4, 6)`` with offsets ``-2, -1, 0``; for ``C = 1`` the single channel moves
  by ``-k``. :meth:`DepthShift.groups` lists the groups of any ``C``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_sparse._validation import check_int
from lightning_sparse.models.layers.conv_norm_act import ConvNormAct
from lightning_sparse.models.layers.factories import LayerSpec

__all__ = ["DepthShift", "DepthShiftConv"]


class DepthShift(nn.Module):
    """Move channel groups by ``-k, ..., k`` slices along one axis with zero fill (no parameters).

    Args:
        max_shift: ``k``; the channels form ``2k + 1`` groups (``k = 2`` in E2ENet). ``0`` is the
            identity.
        dim: The axis of the input that is shifted: ``2``, the depth ``D`` of ``(B, C, D, H, W)``.

    Raises:
        ValueError: If ``max_shift < 0`` or ``dim < 2`` (the batch and channel axes).

    Examples:
        >>> x = torch.arange(5.0).expand(5, 5).reshape(1, 5, 5, 1, 1)  # 5 channels, slices 0..4
        >>> DepthShift(max_shift=2)(x)[0, :, :, 0, 0]  # channel i moved by i - 2 slices
        tensor([[2., 3., 4., 0., 0.],
                [1., 2., 3., 4., 0.],
                [0., 1., 2., 3., 4.],
                [0., 0., 1., 2., 3.],
                [0., 0., 0., 1., 2.]])
        >>> DepthShift(2).groups(6)  # (first channel, end, offset): chunk sizes ceil(6 / 5) = 2
        [(0, 2, -2), (2, 4, -1), (4, 6, 0)]
    """

    def __init__(self, max_shift: int = 2, dim: int = 2) -> None:
        super().__init__()
        self.max_shift = check_int("max_shift", max_shift, 0)
        self.dim = check_int("dim", dim, 2)

    @property
    def num_groups(self) -> int:
        """``2 * max_shift + 1``: the most channel groups (fewer when there are fewer channels)."""
        return 2 * self.max_shift + 1

    def groups(self, channels: int) -> list[tuple[int, int, int]]:
        """``(start, stop, offset)`` of every channel group for ``channels`` channels.

        The split of ``torch.chunk(x, num_groups, dim=1)``; ``offset`` is the shift along the axis
        (output slice ``d`` = input slice ``d - offset``), ``-max_shift`` for the first group.
        """
        check_int("channels", channels, 1)
        size = -(-channels // self.num_groups)  # ceil
        return [
            (start, min(start + size, channels), i - self.max_shift)
            for i, start in enumerate(range(0, channels, size))
        ]

    def forward(self, x: Tensor) -> Tensor:
        """Shift ``x`` (any shape with at least ``dim + 1`` axes, channels on axis 1)."""
        if x.dim() <= self.dim:
            raise ValueError(
                f"`x` must have more than {self.dim} dimensions to shift axis {self.dim}, "
                f"got shape {tuple(x.shape)}."
            )
        k = self.max_shift
        if k == 0:
            return x
        n = x.shape[self.dim]
        pad = [0, 0] * (x.dim() - 1 - self.dim) + [k, k]  # F.pad lists the last axis first
        padded = F.pad(x, pad)  # zeros: k slices in front and behind
        chunks = torch.chunk(padded, self.num_groups, dim=1)
        # group i (offset s = i - k): output slice d = padded slice d + k - s = input slice d - s
        return torch.cat([c.narrow(self.dim, 2 * k - i, n) for i, c in enumerate(chunks)], dim=1)

    def extra_repr(self) -> str:
        return f"max_shift={self.max_shift}, dim={self.dim}"


class DepthShiftConv(nn.Sequential):
    """:class:`DepthShift` (optional), then ``conv -> norm -> act`` with named children.

    E2ENet's convolution block: a depth shift followed by a 1x3x3 convolution (the default
    kernel), instance normalisation and leaky ReLU. The convolution, normalisation and activation
    are built by :class:`~lightning_sparse.models.layers.ConvNormAct` and kept under the names
    ``shift``, ``conv``, ``norm``, ``act`` (only the parts that are set), so the convolution
    weight is ``<block>.conv.weight``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: An int or one int per spatial dimension; ``(1, 3, 3)`` in E2ENet.
        stride: Convolution stride.
        spatial_dims: 1, 2 or 3.
        norm: A :func:`~lightning_sparse.models.layers.factories.norm` spec or ``None``.
        act: An :func:`~lightning_sparse.models.layers.factories.act` spec or ``None``.
        bias: Convolution bias; ``None`` for a bias only when there is no normalisation.
        max_shift: ``k`` of the :class:`DepthShift` in front (``2`` in E2ENet); ``None`` for no
            shift (the block is then a plain convolution, normalisation and activation).
        dim: The axis the shift moves (``2``: depth of ``(B, C, D, H, W)``).

    Raises:
        ValueError: If an argument is not allowed.

    Examples:
        >>> block = DepthShiftConv(6, 8, (1, 3, 3), spatial_dims=3, norm="instance", act="relu")
        >>> [name for name, _ in block.named_children()]
        ['shift', 'conv', 'norm', 'act']
        >>> block(torch.randn(2, 6, 5, 7, 9)).shape
        torch.Size([2, 8, 5, 7, 9])
        >>> [name for name, _ in DepthShiftConv(6, 8, 3, spatial_dims=2, max_shift=None).named_children()]
        ['conv', 'norm', 'act']
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = (1, 3, 3),
        stride: int | Sequence[int] = 1,
        spatial_dims: int = 3,
        norm: LayerSpec | None = "instance",
        act: LayerSpec | None = "leaky_relu",
        bias: bool | None = None,
        max_shift: int | None = 2,
        dim: int = 2,
    ) -> None:
        parts = list(
            ConvNormAct(
                in_channels, out_channels, kernel_size, stride=stride, bias=bias,
                spatial_dims=spatial_dims, norm=norm, act=act,
            )
        )
        names = ["conv"] + (["norm"] if norm is not None else []) + (["act"] if act is not None else [])
        layers: list[tuple[str, nn.Module]] = list(zip(names, parts))
        if max_shift is not None:
            layers.insert(0, ("shift", DepthShift(max_shift, dim)))
        super().__init__(OrderedDict(layers))
