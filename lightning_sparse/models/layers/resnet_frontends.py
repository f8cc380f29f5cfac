"""ResNet-18 front-ends of audio-visual speech recognition: lip video and raw waveform to 25 Hz features.

Both follow auto_avsr (Ma, Haliassos, Fernandez-Lopez, Chen, Petridis, Pantic 2023, "Auto-AVSR:
Audio-Visual Speech Recognition with Automatic Labels", ICASSP, arXiv:2303.14307; code
github.com/mpc001/auto_avsr, ``espnet/nets/pytorch_backend/backbones/``), whose front-ends go
back to Stafylakis and Tzimiropoulos 2017 ("Combining Residual Networks with LSTMs for
Lipreading", arXiv:1703.04105) and Petridis et al. 2018 ("End-to-End Audiovisual Speech
Recognition", arXiv:1802.06424):

- :class:`VideoResNetFrontend` (auto_avsr's ``Conv3dResNet``): a 3D stem, ``Conv3d(1, C,
  (5, 7, 7), stride (1, 2, 2), padding (2, 3, 3))`` -> ``BatchNorm3d`` -> activation ->
  ``MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))``, then a 2D ResNet-18 trunk (two
  :class:`~lightning_sparse.models.layers.BasicBlock` per stage, widths ``C, 2C, 4C, 8C``,
  strides 1, 2, 2, 2) applied to every frame and global average pooling:
  ``(B, T, H, W) -> (B, T, 8C)``; the frame rate is kept (25 fps in, 25 Hz out).
- :class:`AudioResNetFrontend` (auto_avsr's ``Conv1dResNet``): ``Conv1d(1, C, 80, stride 4,
  padding 38)`` -> ``BatchNorm1d`` -> activation on the raw waveform, a 1D ResNet-18 trunk
  (strides 1, 2, 2, 2: 32x in all) and ``AvgPool1d(samples_per_frame // 32)``:
  ``(B, N) -> (B, N // samples_per_frame, 8C)``, 25 Hz for 16 kHz audio (640 samples a frame).

Module names are auto_avsr's (``frontend3D``, ``trunk``, ``trunk.layer1.0.conv1``,
``downsample.0`` / ``.1``, ...), so with its parameter-free Swish activation (the default here)
the state dict of auto_avsr's ``encoder.frontend`` loads into these modules once that prefix is
removed. Deviation: a PReLU activation is one module shared by the two activations of each block
(auto_avsr has two); ReLU and Swish have no parameters, so there it makes no difference.

Padding. :class:`AudioResNetFrontend` takes the valid length of every waveform and zeros the
padded positions right before each of its convolutions (forward pre-hooks, as
:class:`~lightning_sparse.models.conformer.MaskedConformer` does), after trimming each waveform
to whole frames, so in eval mode an utterance's features are the same batched or alone. The video
front-end mixes frames only in its stem, whose temporal zero padding equals zero-padded frames:
zero the padded frames of the input (:class:`~lightning_sparse.models.avsr.AVSR` does) and the
same holds.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lightning_sparse._validation import check_choice, check_int
from lightning_sparse.models.layers import factories
from lightning_sparse.models.layers.basic_block import BasicBlock

__all__ = ["FRONTEND_ACTIVATIONS", "AudioResNetFrontend", "VideoResNetFrontend"]

FRONTEND_ACTIVATIONS = ("swish", "relu", "prelu")
"""The allowed ``activation`` values (auto_avsr's ``relu_type``; it trains with ``"swish"``)."""


def _stage(in_channels: int, channels: int, stride: int, spatial_dims: int, act: str) -> nn.Sequential:
    """Two BasicBlocks; a 1x1 convolution + batch norm shortcut on the first when the shape changes."""
    downsample = None
    if stride != 1 or in_channels != channels:
        conv, norm = factories.conv(spatial_dims), {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}[spatial_dims]
        downsample = nn.Sequential(conv(in_channels, channels, 1, stride=stride, bias=False), norm(channels))
    return nn.Sequential(
        BasicBlock(in_channels, channels, stride, downsample, spatial_dims=spatial_dims, act=act),
        BasicBlock(channels, channels, spatial_dims=spatial_dims, act=act),
    )


def _act(activation: str, channels: int) -> nn.Module:
    return nn.PReLU(channels) if activation == "prelu" else factories.act(activation, inplace=True)


class _Trunk(nn.Module):
    """ResNet-18 stages ``layer1`` .. ``layer4`` (widths ``C .. 8C``), then ``avgpool``."""

    def __init__(self, width: int, spatial_dims: int, activation: str, avgpool: nn.Module,
                 stem: dict[str, nn.Module] | None = None) -> None:
        super().__init__()
        for name, module in (stem or {}).items():  # the audio trunk starts with conv1, bn1, relu
            self.add_module(name, module)
        act = "prelu" if activation == "prelu" else activation
        self.layer1 = _stage(width, width, 1, spatial_dims, act)
        self.layer2 = _stage(width, 2 * width, 2, spatial_dims, act)
        self.layer3 = _stage(2 * width, 4 * width, 2, spatial_dims, act)
        self.layer4 = _stage(4 * width, 8 * width, 2, spatial_dims, act)
        self.avgpool = avgpool

    def forward(self, x: Tensor) -> Tensor:
        for module in self.children():
            x = module(x)
        return x


class VideoResNetFrontend(nn.Module):
    """Grayscale frames ``(B, T, H, W)`` -> per-frame features ``(B, T, 8 * width)``.

    Args:
        width: Channels of the stem and the first stage (auto_avsr: 64); the output has
            ``8 * width`` features.
        activation: One of :data:`FRONTEND_ACTIVATIONS`.

    Raises:
        ValueError: If an argument is out of range, or the input is not ``(B, T, H, W)``.

    Examples:
        >>> frontend = VideoResNetFrontend(width=4)
        >>> frontend(torch.randn(2, 5, 32, 32)).shape
        torch.Size([2, 5, 32])
    """

    def __init__(self, width: int = 64, activation: str = "swish") -> None:
        super().__init__()
        check_int("width", width, 1)
        check_choice("activation", activation, FRONTEND_ACTIVATIONS)
        self.width, self.out_features = width, 8 * width
        self.frontend3D = nn.Sequential(  # noqa: N815 (auto_avsr's name, so its weights load)
            nn.Conv3d(1, width, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False),
            nn.BatchNorm3d(width),
            _act(activation, width),
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        self.trunk = _Trunk(width, 2, activation, nn.AdaptiveAvgPool2d(1))

    def forward(self, video: Tensor) -> Tensor:
        if not isinstance(video, Tensor) or video.dim() != 4:
            shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
            raise ValueError(f"`video` must be grayscale frames (B, T, H, W), got {shape}.")
        batch = video.shape[0]
        x = self.frontend3D(video.unsqueeze(1))  # (B, C, T, H / 4, W / 4)
        steps = x.shape[2]
        x = x.transpose(1, 2).reshape(batch * steps, *x.shape[1:2], *x.shape[3:])  # every frame on its own
        return self.trunk(x).reshape(batch, steps, self.out_features)


class AudioResNetFrontend(nn.Module):
    """Waveforms ``(B, N)`` -> ``(B, N // samples_per_frame, 8 * width)`` features, with their lengths.

    Args:
        width: Channels of the first convolution and stage (auto_avsr: 64).
        activation: One of :data:`FRONTEND_ACTIVATIONS`.
        samples_per_frame: Waveform samples per output frame, a multiple of 32 (640: 25 Hz
            features from 16 kHz audio, one per video frame).

    Raises:
        ValueError: If an argument is out of range, or the input is not ``(B, N)``.

    Examples:
        >>> frontend = AudioResNetFrontend(width=4).eval()
        >>> audio = torch.randn(2, 3200)
        >>> features, frames = frontend(audio, torch.tensor([3200, 2000]))
        >>> features.shape, frames.tolist()  # 2000 samples: 3 whole frames
        (torch.Size([2, 5, 32]), [5, 3])
        >>> alone, _ = frontend(audio[1:, :1920])
        >>> torch.allclose(features[1, :3], alone[0], atol=1e-5)
        True
    """

    def __init__(self, width: int = 64, activation: str = "swish", samples_per_frame: int = 640) -> None:
        super().__init__()
        check_int("width", width, 1)
        check_choice("activation", activation, FRONTEND_ACTIVATIONS)
        check_int("samples_per_frame", samples_per_frame, 32)
        if samples_per_frame % 32:
            raise ValueError(
                f"`samples_per_frame` must be a multiple of 32 (the trunk's stride), got {samples_per_frame}.")
        self.width, self.out_features, self.samples_per_frame = width, 8 * width, samples_per_frame
        stem = {"conv1": nn.Conv1d(1, width, 80, stride=4, padding=38, bias=False),
                "bn1": nn.BatchNorm1d(width), "relu": _act(activation, width)}
        pool = samples_per_frame // 32
        self.trunk = _Trunk(width, 1, activation, nn.AvgPool1d(pool, stride=pool), stem=stem)
        self._frames: Tensor | None = None  # (B,) valid frames during forward
        self._steps = 0
        for module in self.trunk.modules():
            if isinstance(module, nn.Conv1d):
                module.register_forward_pre_hook(self._zero_padding)

    def _zero_padding(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Tensor, ...] | None:
        """Zero the input positions past each waveform's valid frames (``(B, C, L)``, ``L`` = steps x rate)."""
        if self._frames is None:
            return None
        x = args[0]
        valid = self._frames * x.shape[-1] // self._steps  # every stage's length is a whole multiple of steps
        keep = torch.arange(x.shape[-1], device=x.device)[None, :] < valid[:, None]
        return (x * keep.unsqueeze(1).to(x.dtype),)

    def frames(self, lengths: Tensor) -> Tensor:
        """Output frames of waveforms of ``lengths`` samples: ``lengths // samples_per_frame``."""
        return torch.div(lengths, self.samples_per_frame, rounding_mode="floor")

    def forward(self, audio: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Features ``(B, T, 8 * width)``, ``T = N // samples_per_frame``, and valid frames ``(B,)``."""
        if not isinstance(audio, Tensor) or audio.dim() != 2:
            shape = tuple(audio.shape) if isinstance(audio, Tensor) else type(audio).__name__
            raise ValueError(f"`audio` must be mono waveforms (B, N), got {shape}.")
        steps = audio.shape[1] // self.samples_per_frame
        if lengths is None:
            lengths = torch.full((audio.shape[0],), audio.shape[1], dtype=torch.int64)
        frames = self.frames(lengths.to(audio.device)).clamp(0, steps)
        if steps == 0:  # shorter than one frame: no output frame
            return audio.new_zeros(audio.shape[0], 0, self.out_features), frames
        x = audio[:, : steps * self.samples_per_frame].unsqueeze(1)  # (B, 1, N'): whole frames only
        self._frames, self._steps = frames, steps
        try:
            x = self.trunk(x)  # (B, 8C, T)
        finally:
            self._frames = None
        return x.transpose(1, 2), frames
