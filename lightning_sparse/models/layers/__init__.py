"""Layers shared by the models: factories, conv-norm-activation, residual blocks, drop path.

The lowest tier below the networks (as MONAI's ``layers -> blocks -> nets`` and timm's
``layers/``): dimension-aware (``spatial_dims`` 1, 2 or 3) and configurable by YAML, since a
normalisation or activation is a name or ``(name, kwargs)``.

- :mod:`~lightning_sparse.models.layers.factories`: :func:`conv`, :func:`pool`, :func:`norm`,
  :func:`act`, :func:`same_padding` and the allowed names :data:`NORMS`, :data:`ACTS`,
  :data:`POOLS`.
- :class:`ConvNormAct`: ``conv -> norm -> act`` as an ``nn.Sequential``.
- :class:`BasicBlock`, :class:`Bottleneck`: the residual blocks of ResNet (torchvision names).
- :class:`DropPath` / :func:`drop_path`: per-sample stochastic depth.
- :class:`ChannelLayerNorm`: layer norm over the channels of ``(B, C, *spatial)``.
- :class:`DepthShift` / :class:`DepthShiftConv`: E2ENet's restricted depth shift (channel groups
  moved along depth, zero fill) and the shift + 1x3x3 conv-norm-act block.
- :class:`LogMelFilterbank`: the audio front end (log-mel features with exact lengths).
- :class:`Conv2dSubsampling` / :func:`subsampled_lengths`: 4x time subsampling of features
  (the Conformer's input layer), with exact output lengths.
- :class:`VideoResNetFrontend` / :class:`AudioResNetFrontend`: the ResNet-18 lip-video and
  raw-waveform front-ends of audio-visual speech recognition (25 Hz features).
- :class:`FusionMLP`: auto_avsr's MLP that fuses the audio and video streams.
- :class:`LargeKernelConv` / :func:`same_padding_2d`: SLaK's decomposed large depthwise kernel
  (``M x N + N x M + N x N`` with batch norms) and its merge into one convolution.
- :class:`AttentionDecoder` / :class:`SinusoidalPositionalEncoding`: the Transformer decoder of
  hybrid CTC/attention models and ESPnet's sinusoidal positional encoding.

Examples:
    >>> import torch
    >>> from lightning_sparse.models.layers import ConvNormAct
    >>> ConvNormAct(1, 4, kernel_size=5, spatial_dims=1, norm=("group", {"num_groups": 2}))(
    ...     torch.randn(2, 1, 16)).shape
    torch.Size([2, 4, 16])
"""

from lightning_sparse.models.layers.audio import LogMelFilterbank
from lightning_sparse.models.layers.basic_block import BasicBlock
from lightning_sparse.models.layers.bottleneck import Bottleneck
from lightning_sparse.models.layers.channel_layer_norm import ChannelLayerNorm
from lightning_sparse.models.layers.conv_norm_act import ConvNormAct
from lightning_sparse.models.layers.depth_shift import DepthShift, DepthShiftConv
from lightning_sparse.models.layers.drop_path import DropPath, drop_path
from lightning_sparse.models.layers.factories import (
    ACTS,
    NORMS,
    POOLS,
    LayerSpec,
    act,
    conv,
    norm,
    pool,
    same_padding,
)
from lightning_sparse.models.layers.fusion import FusionMLP
from lightning_sparse.models.layers.large_kernel import LargeKernelConv, same_padding_2d
from lightning_sparse.models.layers.resnet_frontends import AudioResNetFrontend, VideoResNetFrontend
from lightning_sparse.models.layers.subsampling import Conv2dSubsampling, subsampled_lengths
from lightning_sparse.models.layers.transformer_decoder import AttentionDecoder, SinusoidalPositionalEncoding

__all__ = [
    "ACTS",
    "NORMS",
    "POOLS",
    "AttentionDecoder",
    "AudioResNetFrontend",
    "BasicBlock",
    "Bottleneck",
    "ChannelLayerNorm",
    "Conv2dSubsampling",
    "ConvNormAct",
    "DepthShift",
    "DepthShiftConv",
    "DropPath",
    "FusionMLP",
    "LargeKernelConv",
    "LayerSpec",
    "LogMelFilterbank",
    "SinusoidalPositionalEncoding",
    "VideoResNetFrontend",
    "act",
    "conv",
    "drop_path",
    "norm",
    "pool",
    "same_padding",
    "same_padding_2d",
    "subsampled_lengths",
]
