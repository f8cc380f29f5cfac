"""The audio front end: log-mel filterbank features with exact per-utterance lengths.

One module computes features for the speech task (on the fly) and for the speech data modules'
feature cache, so cached and live features are the same numbers for the same settings.

Features are ``log(mel + 1e-6)`` of torchaudio's ``MelSpectrogram`` (power 2, Hann window,
``center=False``, so frame ``t`` covers samples ``[t * hop, t * hop + n_fft)`` (the window
centred in it) and an utterance of ``n`` samples has ``1 + (n - n_fft) // hop`` frames, at least one). Frames past an utterance's
length are set to 0.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor, nn

from lightning_sparse._validation import check_int

__all__ = ["LogMelFilterbank"]


class LogMelFilterbank(nn.Module):
    """Log-mel features ``(B, T', n_mels)`` of zero-padded waveforms ``(B, T)``.

    Args:
        sample_rate: Sampling rate of the audio in Hz.
        n_mels: Mel bands.
        win_length: Window length in samples (400 = 25 ms at 16 kHz).
        hop_length: Hop in samples (160 = 10 ms at 16 kHz).
        n_fft: FFT size (``>= win_length``).

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> fb = LogMelFilterbank(sample_rate=8000, n_mels=40, win_length=200, hop_length=80, n_fft=256)
        >>> feats, lengths = fb(torch.randn(2, 8000), torch.tensor([8000, 4000]))
        >>> feats.shape, lengths.tolist()
        (torch.Size([2, 97, 40]), [97, 47])
        >>> bool((feats[1, 47:] == 0).all())
        True
    """

    def __init__(self, sample_rate: int = 16000, n_mels: int = 80, win_length: int = 400, hop_length: int = 160,
                 n_fft: int = 512) -> None:
        super().__init__()
        check_int("sample_rate", sample_rate, 1)
        check_int("n_mels", n_mels, 1)
        check_int("win_length", win_length, 1)
        check_int("hop_length", hop_length, 1)
        check_int("n_fft", n_fft, win_length)
        self.sample_rate, self.n_mels = sample_rate, n_mels
        self.win_length, self.hop_length, self.n_fft = win_length, hop_length, n_fft
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length,
            n_mels=n_mels, center=False, power=2.0,
        )

    def feature_lengths(self, lengths: Tensor) -> Tensor:
        """Frames of utterances of ``lengths`` samples: ``1 + (n - n_fft) // hop``, at least 1."""
        return (torch.clamp(lengths - self.n_fft, min=0) // self.hop_length + 1).to(torch.int64)

    def forward(self, audio: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(features (B, T', n_mels), feature_lengths (B,))``; ``audio`` ``(B, T)`` or ``(T,)``."""
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)
        if audio.dim() != 2:
            raise ValueError(f"`audio` must be (B, T) or (T,), got shape {tuple(audio.shape)}.")
        batch, samples = audio.shape
        if lengths is None:
            lengths = torch.full((batch,), samples, dtype=torch.int64, device=audio.device)
        if samples < self.n_fft:  # shorter than one frame: pad to one frame
            audio = nn.functional.pad(audio, (0, self.n_fft - samples))
        with torch.autocast(audio.device.type, enabled=False):
            feats = torch.log(self.mel(audio.float()) + 1e-6).transpose(1, 2)  # (B, T', n_mels)
        out_lengths = self.feature_lengths(lengths.to(audio.device)).clamp(max=feats.shape[1])
        valid = torch.arange(feats.shape[1], device=feats.device)[None, :] < out_lengths[:, None]
        return feats * valid.unsqueeze(-1), out_lengths

    def extra_repr(self) -> str:
        return (f"sample_rate={self.sample_rate}, n_mels={self.n_mels}, win_length={self.win_length}, "
                f"hop_length={self.hop_length}, n_fft={self.n_fft}")
