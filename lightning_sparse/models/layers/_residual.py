"""The shared frame of the residual blocks: ``act(drop_path(branch(x)) + shortcut(x))``.

He et al. 2016, "Deep Residual Learning for Image Recognition", arXiv:1512.03385, with optional
stochastic depth on the branch (Huang et al. 2016, arXiv:1603.09382) and the zero-initialised
last norm of Goyal et al. 2017 (arXiv:1706.02677). Subclasses build the branch and name its last
norm; the shortcut is ``downsample`` (torchvision's name), or the identity when it is ``None``.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_sparse.models.layers.drop_path import DropPath
from lightning_sparse.models.layers.factories import LayerSpec

__all__: list[str] = []


class _ResidualBlock(nn.Module):
    """Base of :class:`BasicBlock` and :class:`Bottleneck`; see those for the arguments."""

    expansion = 1
    relu: nn.Module

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        spatial_dims: int = 2,
        kernel_size: int = 3,
        norm: LayerSpec = "batch",
        act: LayerSpec = "relu",
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self._build(in_channels, channels, stride, spatial_dims, kernel_size, norm, act)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path) if drop_path > 0 else None

    def _build(
        self, in_channels: int, channels: int, stride: int, spatial_dims: int, kernel_size: int,
        norm: LayerSpec, act: LayerSpec,
    ) -> None:
        """Create the branch's modules, ``self.relu`` among them."""
        raise NotImplementedError

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch up to its last norm (no activation)."""
        raise NotImplementedError

    def _last_norm(self) -> nn.Module:
        raise NotImplementedError

    def zero_init_last(self) -> None:
        """Zero the scale of the last norm, so the block starts as ``act(shortcut(x))``."""
        last = self._last_norm()
        if getattr(last, "weight", None) is not None:
            nn.init.zeros_(last.weight)

    def shortcut_path(self, x: torch.Tensor) -> torch.Tensor:
        """The shortcut of ``x``: ``downsample(x)``, or ``x`` itself."""
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.shortcut_path(x)  # (B, expansion * channels, *spatial / stride)
        out = self._branch(x)  # same shape
        if self.drop_path is not None:
            out = self.drop_path(out)
        return self.relu(out + identity)
