"""DSN: the Dynamic Sparse Network for time series classification.

Xiao et al. 2022, "Dynamic Sparse Network for Time Series Classification: Learning What to
'See'", NeurIPS 2022, arXiv:2212.09840 (official code: github.com/QiaoXiao7282/DSN).

``depth`` stacked sparse CNN modules, each a 1x1 bottleneck convolution (``width`` channels),
one large ``Conv1d`` (kernel ``K = 39``, ``num_groups * width`` output channels), batch
normalisation and ReLU; then adaptive average pooling to ``pool_size = 50`` positions, a 1x1
convolution to the classes with batch normalisation, and global average pooling. The large
convolution's output channels are split into ``num_groups`` contiguous groups; group ``i``
(0-based) may only use the first ``k_i = (i + 1) * K / num_groups`` taps (13, 26 and 39 for
``K = 39`` in three groups), so the groups cover small, medium and large receptive fields.
:meth:`DSN.allowed_regions` returns these regions, with group ``i`` labelled ``i + 1``, for the DST
callback, which explores sparse connections inside them and keeps every group's number of active
weights fixed; the module itself is an ordinary dense network.

What follows the official code (``model/SCNN.py``, ``model/layers.py``,
``sparselearning/core_kernel.py``, ``trainer_DSN.py``):

- ``width`` 47 for UCR and 59 for UEA, ``depth`` 4, ``K`` 39, three groups (``Readme.md``).
- The first module has no bottleneck for univariate input (``bottleneck if ni > 1``); convs have
  no bias; the module is ``bottleneck -> conv -> BN -> ReLU`` without a residual or dropout.
- The head ``AdaptiveAvgPool1d(50) -> Conv1d(1x1, no bias) -> BatchNorm1d -> global average``.
- Groups are ``torch.chunk(weight, num_groups, dim=0)`` and a group's region is its *first*
  ``k_i`` taps (``ind = list(range(kernel_size))`` in ``core_kernel.py``), not centred taps.
- ``padding="replicate"`` (the default, ``pad_zero=False``) pads ``K - 1`` copies of the last
  value on the right, so output ``t`` of group ``i`` sees ``x[t : t + k_i]``;
  ``padding="zeros"`` (``pad_zero=True``, which the official code sets for the UCR 2018 archive)
  pads ``(K - 1) // 2`` zeros left and ``K // 2`` right, so group ``i`` sees
  ``x[t - (K - 1) // 2 : t - (K - 1) // 2 + k_i]``.
- Only the large convolutions are sparse in the paper (1x1 convolutions stay dense), and its
  density is relative to each group's region: see :attr:`DSN.region_fraction`.

Deviations: the model returns logits, not log-probabilities (use cross-entropy); ``kernel_size``
must be divisible by ``num_groups`` (the official code silently shortens the last group);
``forward`` accepts per-sample ``lengths`` for zero-padded batches of different lengths (below),
which the official code does not handle.

Variable lengths: with ``lengths`` every sample behaves exactly as if it were run alone,
unpadded. Before each large convolution the positions at or beyond a sample's length are
refilled with what the unpadded sequence's own padding would put there (its last valid value for
``"replicate"``, zeros for ``"zeros"``); batch normalisation computes its training statistics over
valid positions only; the head pools each sample's valid prefix into ``pool_size`` bins exactly
as ``AdaptiveAvgPool1d`` would. The 1x1 convolutions and ReLU act position-wise, so values at
padded positions never reach valid ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_sparse.models._checks import check_sizes
from lightning_sparse.models._registry import register_model
from lightning_sparse.models.layers import factories

__all__ = ["DSN", "dsn", "dsn_uea"]

PADDINGS = ("replicate", "zeros")


class _MaskedBatchNorm1d(nn.BatchNorm1d):
    """``BatchNorm1d`` whose training statistics cover only the valid positions of each sample."""

    def forward(self, x: Tensor, valid: Tensor | None = None) -> Tensor:  # x (B, C, L), valid (B, L)
        if valid is None or not self.training:
            return super().forward(x)
        dtype, x = x.dtype, x.float()  # statistics in float32, also under mixed precision
        w = valid[:, None, :].float()  # (B, 1, L)
        n = w.sum()
        mean = (x * w).sum((0, 2)) / n  # (C,)
        var = ((x - mean[:, None]).square() * w).sum((0, 2)) / n  # (C,), biased as in BatchNorm
        if self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), factor)
                self.running_var.lerp_(var.detach() * n / (n - 1).clamp_min(1), factor)
        y = (x - mean[:, None]) * torch.rsqrt(var[:, None] + self.eps)  # (B, C, L)
        if self.affine:
            y = y * self.weight[:, None] + self.bias[:, None]
        return y.to(dtype)


class _SparseCNNModule(nn.Module):
    """Optional 1x1 bottleneck, the large grouped-receptive-field convolution, BN and ReLU."""

    def __init__(
        self, in_channels: int, width: int, kernel_size: int, num_groups: int, bottleneck: bool, padding: str
    ) -> None:
        super().__init__()
        conv = factories.conv(1)
        self.bottleneck = conv(in_channels, width, 1, bias=False) if bottleneck else nn.Identity()
        conv_in = width if bottleneck else in_channels
        self.conv = conv(conv_in, num_groups * width, kernel_size, bias=False)
        self.bn = _MaskedBatchNorm1d(num_groups * width)
        self.act = factories.act("relu")
        self.padding = padding
        k = kernel_size
        self._pad = (0, k - 1) if padding == "replicate" else ((k - 1) // 2, k // 2)

    def forward(self, x: Tensor, lengths: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
        x = self.bottleneck(x)  # (B, width, L)
        if lengths is not None:
            x = _refill_padding(x, lengths, valid, self.padding)
        mode = "replicate" if self.padding == "replicate" else "constant"
        x = self.conv(F.pad(x, self._pad, mode=mode))  # (B, num_groups * width, L)
        return self.act(self.bn(x, valid))


def _refill_padding(x: Tensor, lengths: Tensor, valid: Tensor, padding: str) -> Tensor:
    """Set positions ``>= lengths`` to what padding the unpadded sequence would put there."""
    if padding == "zeros":
        return x * valid[:, None, :].to(x.dtype)
    steps = torch.arange(x.shape[-1], device=x.device)  # (L,)
    index = torch.minimum(steps[None, :], (lengths - 1)[:, None])  # (B, L): last valid index
    return x.gather(2, index[:, None, :].expand_as(x))


def _masked_adaptive_avg_pool1d(x: Tensor, lengths: Tensor, size: int) -> Tensor:
    """``AdaptiveAvgPool1d(size)`` applied to each sample's first ``lengths[b]`` positions."""
    steps = torch.arange(x.shape[-1], device=x.device)  # (L,)
    bins = torch.arange(size, device=x.device)  # (S,)
    n = lengths[:, None]  # (B, 1)
    start = torch.div(bins * n, size, rounding_mode="floor")  # (B, S), as PyTorch's adaptive pool
    end = torch.div((bins + 1) * n + size - 1, size, rounding_mode="floor")  # (B, S): ceil
    at = steps[None, :, None]  # (1, L, 1)
    inside = (at >= start[:, None, :]) & (at < end[:, None, :])  # (B, L, S)
    weights = inside.to(x.dtype) / (end - start)[:, None, :].to(x.dtype)
    return torch.einsum("bcl,bls->bcs", x, weights)  # (B, C, S)


class DSN(nn.Module):
    """The Dynamic Sparse Network (dense module; the DST callback makes it sparse).

    Input ``(B, in_channels, L)``, univariate (``in_channels=1``) or multivariate; any ``L >= 1``.

    Args:
        in_channels: Input variables (1 for univariate series).
        num_classes: Number of output logits.
        width: Channels of each bottleneck and of each group (47 for UCR, 59 for UEA).
        depth: Number of stacked sparse CNN modules (4).
        kernel_size: Taps ``K`` of the large convolutions (39); divisible by ``num_groups``.
        num_groups: Groups of output channels with receptive fields ``K / num_groups``,
            ``2 K / num_groups``, ..., ``K`` (3).
        padding: ``"replicate"`` (right, the official default) or ``"zeros"`` (centred); see the
            module docstring for the window each group sees.
        pool_size: Positions kept by the head's adaptive average pooling (50).

    Raises:
        ValueError: If an argument is out of range, or ``kernel_size`` is not a multiple of
            ``num_groups``.

    Examples:
        >>> model = DSN(in_channels=3, num_classes=5, width=8, depth=2)
        >>> model(torch.randn(2, 3, 60)).shape
        torch.Size([2, 5])
        >>> model.group_kernel_sizes
        (13, 26, 39)
        >>> regions = model.allowed_regions(prefix="model.")
        >>> list(regions)
        ['model.blocks.0.conv.weight', 'model.blocks.1.conv.weight']
        >>> region = regions["model.blocks.1.conv.weight"]  # (3 * width, width, K) group labels
        >>> region.shape, region[0, 0, 12:14].tolist(), region[8, 0, 25:27].tolist()
        (torch.Size([24, 8, 39]), [1, 0], [2, 0])
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        width: int = 47,
        depth: int = 4,
        kernel_size: int = 39,
        num_groups: int = 3,
        padding: str = "replicate",
        pool_size: int = 50,
    ) -> None:
        super().__init__()
        check_sizes(
            in_channels=in_channels,
            num_classes=num_classes,
            width=width,
            depth=depth,
            kernel_size=kernel_size,
            num_groups=num_groups,
            pool_size=pool_size,
        )
        if kernel_size % num_groups:
            raise ValueError(
                f"`kernel_size` must be a multiple of `num_groups` ({num_groups}) so the groups' "
                f"receptive fields are K/groups, 2K/groups, ..., K; got kernel_size={kernel_size}."
            )
        if padding not in PADDINGS:
            raise ValueError(f"`padding` must be one of {list(PADDINGS)}, got {padding!r}.")
        self.example_input_size = (in_channels, 128)
        self.width, self.num_groups = width, num_groups
        self.kernel_size, self.pool_size = kernel_size, pool_size
        channels = num_groups * width
        self.blocks = nn.ModuleList(
            _SparseCNNModule(
                in_channels if i == 0 else channels,
                width,
                kernel_size,
                num_groups,
                bottleneck=i > 0 or in_channels > 1,
                padding=padding,
            )
            for i in range(depth)
        )
        self.head_conv = factories.conv(1)(channels, num_classes, 1, bias=False)
        self.head_bn = factories.norm("batch", 1, num_classes)

    @property
    def group_kernel_sizes(self) -> tuple[int, ...]:
        """Taps ``k_i`` each group of output channels may use, smallest first."""
        step = self.kernel_size // self.num_groups
        return tuple(step * (i + 1) for i in range(self.num_groups))

    @property
    def region_fraction(self) -> float:
        """Share of each large convolution's weights inside the allowed regions.

        ``sum(k_i) / (num_groups * K)``: 2/3 for three groups. The paper's density ``d`` counts
        within the regions: the DST callback takes it directly with
        ``density_within_regions=True, sparsity=1 - d``; measured over the whole weights it is
        ``d * region_fraction`` (0.1333 for the UCR density 0.2, 0.0667 for the UEA density 0.1).
        """
        return sum(self.group_kernel_sizes) / (self.num_groups * self.kernel_size)

    def _region(self, in_channels: int) -> Tensor:
        """Group labels of one large convolution weight, shape ``(num_groups * width, in, K)``."""
        labels = torch.zeros(self.num_groups, self.width, in_channels, self.kernel_size, dtype=torch.int64)
        for i, k in enumerate(self.group_kernel_sizes):
            labels[i, :, :, :k] = i + 1  # group i: output channels [i * width, (i + 1) * width)
        return labels.reshape(self.num_groups * self.width, in_channels, self.kernel_size)

    def allowed_regions(self, prefix: str = "") -> dict[str, Tensor]:
        """Qualified weight name -> group labels of every large convolution.

        A label tensor is shaped like the weight: ``i + 1`` on the first ``k_i`` taps of the output
        channels of group ``i``, ``0`` (forbidden) on the other taps; ``region > 0`` is the bool
        region. The DST callback keeps an exact count per group (see
        :mod:`lightning_sparse.core.targets`).

        Args:
            prefix: Prepended to every name: the model's own name inside the module the DST
                callback sees, e.g. ``"model."`` when a LightningModule stores it as ``self.model``.

        Returns:
            ``{f"{prefix}blocks.{i}.conv.weight": labels}`` with int64 labels shaped like the weights.
        """
        return {
            f"{prefix}blocks.{i}.conv.weight": self._region(block.conv.in_channels)
            for i, block in enumerate(self.blocks)
        }

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Return logits ``(B, num_classes)`` for series ``x`` of shape ``(B, in_channels, L)``.

        Args:
            x: The series, zero-padded (or padded with anything) to a common length ``L``.
            lengths: Optional valid length of each series, integers in ``[1, L]``, shape ``(B,)``;
                the output of each series then equals its output run alone without padding.

        Raises:
            ValueError: If ``x`` is not 3-dimensional or ``lengths`` has the wrong shape or values.
        """
        if x.dim() != 3:
            raise ValueError(f"`x` must have shape (batch, channels, length), got {tuple(x.shape)}.")
        valid = None
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=x.device).long()
            if lengths.shape != x.shape[:1]:
                raise ValueError(f"`lengths` must have shape ({x.shape[0]},), got {tuple(lengths.shape)}.")
            if bool((lengths < 1).any() or (lengths > x.shape[-1]).any()):
                raise ValueError(f"`lengths` must lie in [1, {x.shape[-1]}], got {lengths.tolist()}.")
            valid = torch.arange(x.shape[-1], device=x.device)[None, :] < lengths[:, None]  # (B, L)
        for block in self.blocks:
            x = block(x, lengths, valid)  # (B, num_groups * width, L)
        if lengths is None:
            x = F.adaptive_avg_pool1d(x, self.pool_size)  # (B, C, pool_size)
        else:
            x = _masked_adaptive_avg_pool1d(x, lengths, self.pool_size)
        x = self.head_bn(self.head_conv(x))  # (B, num_classes, pool_size)
        return x.mean(-1)  # (B, num_classes)


@register_model
def dsn(**kwargs) -> DSN:
    """A :class:`DSN` with the paper's UCR settings (width 47, depth 4, K 39, 3 groups)."""
    return DSN(**kwargs)


@register_model
def dsn_uea(**kwargs) -> DSN:
    """A :class:`DSN` with the paper's UEA (multivariate) settings: width 59."""
    kwargs.setdefault("width", 59)
    return DSN(**kwargs)
