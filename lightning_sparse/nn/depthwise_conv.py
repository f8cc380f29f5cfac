"""DepthwiseConv2d: an ``nn.Conv2d`` run by the fast depthwise paths of :mod:`.depthwise`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_sparse.nn.depthwise import IMPLS, Padding, _pad4, depthwise_conv2d

__all__ = ["DepthwiseConv2d"]


class DepthwiseConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (``groups = channels``, stride 1) whose forward is :func:`depthwise_conv2d`.

    A drop-in module: sparse-training callbacks find it as an ``nn.Conv2d`` and mask its weight,
    FLOP counters see its forward hooks, checkpoints hold the usual ``weight`` / ``bias``. The
    padding is explicit and may be asymmetric (``"same"`` for even kernels); ``impl`` picks the path
    (``"auto"``: the fastest measured for each input shape).

    Examples:
        >>> conv = DepthwiseConv2d(4, (7, 2), padding="same", impl="fft")
        >>> conv(torch.randn(1, 4, 9, 8)).shape
        torch.Size([1, 4, 9, 8])
    """

    def __init__(self, channels: int, kernel_size: int | Sequence[int], padding: Padding = "same",
                 bias: bool = True, impl: str = "auto", device=None, dtype=None) -> None:
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        super().__init__(channels, channels, ks, padding=0, groups=channels, bias=bias, device=device, dtype=dtype)
        if impl != "auto" and impl not in IMPLS:
            raise ValueError(f"`impl` must be 'auto' or one of {IMPLS}, got {impl!r}.")
        self.pad4 = _pad4(padding, ks)
        self.impl = impl

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H', W')`` (the input size with ``"same"`` padding)."""
        return depthwise_conv2d(x, self.weight, self.bias, padding=self.pad4, impl=self.impl)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, kernel_size={self.kernel_size}, padding={self.pad4}, impl={self.impl!r}"
