"""LargeKernelConv: SLaK's decomposed large depthwise kernel, with re-parameterisation by merge().

Liu et al. 2023, "More ConvNets in the 2020s: Scaling up Kernels Beyond 51x51 using Sparsity",
ICLR 2023, arXiv:2207.03620, Section 4 (official code: github.com/VITA-Group/SLaK,
``models/SLaK.py``, class ``ReparamLargeKernelConv`` with ``Decom=True``); the non-decomposed form
is RepLKNet's (Ding et al. 2022, "Scaling Up Your Kernels to 31x31", arXiv:2203.06717).

An ``M x M`` depthwise kernel (``M = kernel_size``) is replaced by the sum of three depthwise
branches, each a convolution followed by batch norm, on ``(B, C, H, W)`` inputs:

- ``lora1``: ``M x N`` (tall), ``lora2``: ``N x M`` (wide), with ``N = small_kernel`` (5 in the
  paper): the official ``LoRA1`` / ``LoRA2`` with ``kernel_size=(kernel_size, small_kernel)`` and
  ``(small_kernel, kernel_size)``;
- ``small_conv``: ``N x N``, which the official code keeps in the decomposed layer too (it is
  built whenever ``small_kernel < kernel_size``).

With ``decomposed=False`` the branches are RepLKNet's ``lkb_origin`` (``M x M``) and
``small_conv`` (``N x N``, left out when ``small_kernel`` is ``None`` or ``>= kernel_size``, as the
official ConvNeXt setting ``--kernel_size 7 7 7 7 100``). ``bn=False`` drops the batch norms and
gives every convolution a bias (so ``LargeKernelConv(C, 7, None, decomposed=False, bn=False)`` is
ConvNeXt's depthwise ``nn.Conv2d(C, C, 7, padding=3, groups=C)``).

Every branch keeps the spatial size, for odd and even kernels and inputs: a ``k``-tap dimension is
padded by ``(k - 1) // 2`` before and ``k // 2`` after (PyTorch's ``padding="same"``, see
:func:`same_padding_2d`). Odd kernels pad inside ``nn.Conv2d``; an even kernel is padded
asymmetrically by ``F.pad`` before a convolution with ``padding=0``. All depthwise convolutions
run through :meth:`LargeKernelConv._depthwise`, the one place to switch implementations.

:meth:`LargeKernelConv.merge` folds each batch norm into its convolution (running statistics),
zero-pads every kernel to ``M x M`` at the offset that keeps its taps aligned with the paddings
above (``(M - 1) // 2 - (k - 1) // 2`` before), sums kernels and biases and replaces the branches
by one ``nn.Conv2d`` ``lkb_reparam``: the merged layer computes the eval-mode output of the
unmerged one.

Deviations from the official code: paddings are correct for every kernel shape (the official
layer passes ``kernel_size // 2`` everywhere and relies on its CUDA kernel, which ignores padding
and always keeps the size); :meth:`~LargeKernelConv.merge` also merges the decomposed layer (the
official ``merge_kernel`` handles only ``lkb_origin``); ``nn.BatchNorm2d`` instead of
``nn.SyncBatchNorm`` (use Lightning's ``sync_batchnorm=True`` under DDP); ``bn=False`` convolutions
have a bias (the official ones have none); branch modules are ``nn.Sequential(conv, bn)`` indexed
``0``/``1`` (:class:`~lightning_sparse.models.layers.ConvNormAct`) instead of ``conv``/``bn``.

Examples:
    >>> import torch
    >>> layer = LargeKernelConv(8, kernel_size=13, small_kernel=5).eval()
    >>> x = torch.randn(2, 8, 10, 9)
    >>> y = layer(x)
    >>> y.shape
    torch.Size([2, 8, 10, 9])
    >>> torch.allclose(layer.merge()(x), y, atol=1e-5), layer.merged
    (True, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_sparse._validation import check_bool, check_int
from lightning_sparse.models.layers.conv_norm_act import ConvNormAct
from lightning_sparse.nn.depthwise import IMPLS
from lightning_sparse.nn.depthwise_conv import DepthwiseConv2d

__all__ = ["LargeKernelConv", "same_padding_2d"]


def same_padding_2d(kernel_size: int | Sequence[int]) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` zero padding that keeps the size of a stride-1 convolution.

    A ``k``-tap dimension gets ``(k - 1) // 2`` before and ``k // 2`` after (PyTorch's
    ``padding="same"``): symmetric for odd ``k``, one more after for even ``k``.

    Examples:
        >>> same_padding_2d(51), same_padding_2d((51, 5)), same_padding_2d((4, 7))
        ((25, 25, 25, 25), (25, 25, 2, 2), (1, 2, 3, 3))
    """
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    return (kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2


def _fused_kernel_bias(branch: nn.Sequential) -> tuple[Tensor, Tensor]:
    """The kernel and bias of ``conv`` (then ``bn`` in eval mode, if present) as one convolution."""
    conv = branch[0]
    weight = conv.weight  # (C, 1, kh, kw)
    bias = conv.bias if conv.bias is not None else weight.new_zeros(weight.shape[0])
    if len(branch) == 1:
        return weight, bias
    bn = branch[1]
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    scale = gamma / (bn.running_var + bn.eps).sqrt()  # (C,)
    return weight * scale.reshape(-1, 1, 1, 1), beta + (bias - bn.running_mean) * scale


def _embed(kernel: Tensor, size: int) -> Tensor:
    """Zero-pad a ``(C, 1, kh, kw)`` kernel to ``size x size``, aligned as :func:`same_padding_2d`."""
    kh, kw = kernel.shape[-2:]
    top, left = (size - 1) // 2 - (kh - 1) // 2, (size - 1) // 2 - (kw - 1) // 2
    return F.pad(kernel, (left, size - kw - left, top, size - kh - top))


class LargeKernelConv(nn.Module):
    """A depthwise ``M x M`` convolution as SLaK's sum of ``M x N``, ``N x M`` and ``N x N`` branches.

    See the module docstring for the branches, the paddings and the merge.

    Args:
        channels: Input and output channels ``C`` (every convolution is depthwise, ``groups=C``).
        kernel_size: ``M``, the large kernel's side (odd or even).
        small_kernel: ``N``: the short side of the rectangles and the side of the small square
            kernel; ``None`` (only with ``decomposed=False``) for no small branch. With
            ``decomposed=True`` it must be smaller than ``kernel_size``.
        decomposed: ``True`` for SLaK's two rectangles (plus the small kernel), ``False`` for
            RepLKNet's ``M x M`` kernel (plus the small kernel when ``small_kernel < kernel_size``).
        bn: Batch norm after each branch's convolution (the convolutions then have no bias); with
            ``False`` each convolution has a bias and there is no normalisation.
        impl: How the depthwise convolutions run: ``"torch"`` (stock ``nn.Conv2d``), ``"auto"``
            (:class:`~lightning_sparse.nn.DepthwiseConv2d`: FFT, banded-matrix or stock per shape,
            the fastest measured, equal to stock to float32 rounding) or one of
            :data:`~lightning_sparse.nn.depthwise.IMPLS`. The parameters are the same either way.

    Attributes:
        merged: ``True`` after :meth:`merge`: the layer is one ``nn.Conv2d`` ``lkb_reparam``.

    Raises:
        ValueError: If ``channels`` or ``kernel_size`` is not a positive integer, ``small_kernel`` is
            neither ``None`` nor a positive integer, is ``None`` or ``>= kernel_size`` with
            ``decomposed=True``, or ``decomposed`` / ``bn`` is not a bool.

    Examples:
        >>> layer = LargeKernelConv(4, kernel_size=6, small_kernel=3)
        >>> [(name, tuple(m.kernel_size)) for name, m in layer.named_modules() if isinstance(m, nn.Conv2d)]
        [('lora1.0', (6, 3)), ('lora2.0', (3, 6)), ('small_conv.0', (3, 3))]
        >>> LargeKernelConv(4, 7, small_kernel=7)
        Traceback (most recent call last):
        ...
        ValueError: `small_kernel` must be an integer in [1, kernel_size - 1] = [1, 6] when `decomposed=True`, got 7.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        small_kernel: int | None = 5,
        decomposed: bool = True,
        bn: bool = True,
        impl: str = "torch",
    ) -> None:
        super().__init__()
        if impl != "auto" and impl not in IMPLS:
            raise ValueError(f"`impl` must be 'auto' or one of {IMPLS}, got {impl!r}.")
        self.impl = impl
        self.channels = check_int("channels", channels, 1)
        self.kernel_size = check_int("kernel_size", kernel_size, 1)
        self.decomposed = check_bool("decomposed", decomposed)
        self.bn = check_bool("bn", bn)
        if decomposed and (
            not isinstance(small_kernel, int) or isinstance(small_kernel, bool) or not 1 <= small_kernel < kernel_size
        ):
            raise ValueError(
                f"`small_kernel` must be an integer in [1, kernel_size - 1] = [1, {kernel_size - 1}] when "
                f"`decomposed=True`, got {small_kernel!r}."
            )
        self.small_kernel = check_int("small_kernel", small_kernel, 1, allow_none=True)
        self.merged = False
        m, n = kernel_size, small_kernel
        if decomposed:
            self.lora1 = self._branch((m, n))  # (M, N): tall
            self.lora2 = self._branch((n, m))  # (N, M): wide
        else:
            self.lkb_origin = self._branch((m, m))
        if n is not None and n < m:
            self.small_conv = self._branch((n, n))

    def _branch(self, kernel_size: tuple[int, int]) -> nn.Sequential:
        top, bottom, left, right = same_padding_2d(kernel_size)
        symmetric = top == bottom and left == right  # else F.pad in _depthwise, conv pads nothing
        branch = ConvNormAct(
            self.channels, self.channels, kernel_size, padding=(top, left) if symmetric else 0,
            groups=self.channels, bias=not self.bn, norm="batch" if self.bn else None, act=None,
        )
        if self.impl != "torch":  # the same parameters, run by the fast depthwise paths
            branch[0] = self._fast(branch[0])
        return branch

    def _fast(self, conv: nn.Conv2d) -> DepthwiseConv2d:
        fast = DepthwiseConv2d(self.channels, conv.kernel_size, padding="same", bias=conv.bias is not None,
                               impl=self.impl, device=conv.weight.device, dtype=conv.weight.dtype)
        fast.load_state_dict(conv.state_dict())
        return fast

    def _depthwise(self, conv: nn.Conv2d, x: Tensor, padding: tuple[int, int, int, int]) -> Tensor:
        """Every depthwise convolution of the layer: ``conv`` on ``x`` padded by ``(top, bottom, left, right)``.

        Symmetric paddings are ``conv``'s own; asymmetric ones (even kernels) are added here, ``conv``
        then has ``padding=0``. The one place to route to a faster depthwise implementation.
        """
        if isinstance(conv, DepthwiseConv2d):  # pads by itself, "same"
            return conv(x)
        top, bottom, left, right = padding
        if top != bottom or left != right:
            x = F.pad(x, (left, right, top, bottom))  # (B, C, H + kh - 1, W + kw - 1)
        return conv(x)  # (B, C, H, W)

    def _run(self, branch: nn.Sequential, x: Tensor) -> Tensor:
        conv = branch[0]
        out = self._depthwise(conv, x, same_padding_2d(conv.kernel_size))
        return branch[1](out) if len(branch) > 1 else out

    def branches(self) -> list[nn.Sequential]:
        """The ``conv [-> bn]`` branches whose outputs are summed (empty after :meth:`merge`)."""
        names = ("lora1", "lora2", "lkb_origin", "small_conv")
        return [getattr(self, name) for name in names if hasattr(self, name)]

    def forward(self, x: Tensor) -> Tensor:
        """Return the summed branch outputs, shape ``(B, C, H, W)``, for ``x`` of that shape."""
        if self.merged:
            return self._depthwise(self.lkb_reparam, x, same_padding_2d(self.kernel_size))
        out = None
        for branch in self.branches():
            y = self._run(branch, x)
            out = y if out is None else out + y
        return out

    @torch.no_grad()
    def get_equivalent_kernel_bias(self) -> tuple[Tensor, Tensor]:
        """The ``(C, 1, M, M)`` kernel and ``(C,)`` bias of one convolution equal to the eval-mode layer."""
        if self.merged:
            return self.lkb_reparam.weight.detach().clone(), self.lkb_reparam.bias.detach().clone()
        kernel = bias = None
        for branch in self.branches():
            k, b = _fused_kernel_bias(branch)
            k = _embed(k, self.kernel_size)
            kernel, bias = (k, b) if kernel is None else (kernel + k, bias + b)
        return kernel, bias

    def merge(self) -> LargeKernelConv:
        """Re-parameterise for inference: replace the branches by one ``M x M`` ``nn.Conv2d`` with bias.

        Uses the batch norms' running statistics, so the merged layer equals the unmerged layer in
        eval mode (to float rounding). Idempotent. Masks of a sparse-training callback name the old
        branch weights: merge after training.

        Returns:
            ``self``, merged.
        """
        if self.merged:
            return self
        kernel, bias = self.get_equivalent_kernel_bias()
        top, bottom, left, right = same_padding_2d(self.kernel_size)
        symmetric = top == bottom and left == right
        conv = nn.Conv2d(self.channels, self.channels, self.kernel_size, padding=(top, left) if symmetric else 0,
                         groups=self.channels, bias=True, device=kernel.device, dtype=kernel.dtype)
        conv.weight.data.copy_(kernel)
        conv.bias.data.copy_(bias)
        if self.impl != "torch":
            conv = self._fast(conv)
        for name in ("lora1", "lora2", "lkb_origin", "small_conv"):
            if hasattr(self, name):
                delattr(self, name)
        self.lkb_reparam = conv
        self.merged = True
        return self

    def extra_repr(self) -> str:
        return (f"{self.channels}, kernel_size={self.kernel_size}, small_kernel={self.small_kernel}, "
                f"decomposed={self.decomposed}, bn={self.bn}, impl={self.impl!r}, merged={self.merged}")
