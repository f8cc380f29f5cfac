"""Reading audio files: ``soundfile`` (wav, flac, ogg), mono mixdown, float32, resampling.

``torchaudio.load`` needs torchcodec, which is not a dependency; ``soundfile`` bundles
libsndfile. Resampling is ``torchaudio.functional.resample`` (windowed sinc, its defaults).
"""

from __future__ import annotations

import os

import soundfile as sf
import torch
import torchaudio.functional as AF

from lightning_sparse._validation import check_int

__all__ = ["audio_info", "read_audio", "resample"]


def audio_info(path: str | os.PathLike) -> tuple[int, int]:
    """``(frames, sample_rate)`` of an audio file, read from its header (no decoding).

    Examples:
        >>> import tempfile, numpy as np
        >>> path = tempfile.mkdtemp() + "/a.wav"
        >>> sf.write(path, np.zeros(800, dtype=np.float32), 8000)
        >>> audio_info(path)
        (800, 8000)
    """
    info = sf.info(str(path))
    return int(info.frames), int(info.samplerate)


def resample(audio: torch.Tensor, orig_rate: int, sample_rate: int) -> torch.Tensor:
    """``audio`` ``(..., T)`` from ``orig_rate`` to ``sample_rate`` (unchanged when they are equal).

    The output has ``ceil(T * sample_rate / orig_rate)`` samples.

    Examples:
        >>> resample(torch.zeros(4000), 8000, 16000).shape
        torch.Size([8000])
    """
    check_int("orig_rate", orig_rate, 1)
    check_int("sample_rate", sample_rate, 1)
    if orig_rate == sample_rate:
        return audio
    return AF.resample(audio, orig_rate, sample_rate)


def read_audio(path: str | os.PathLike, sample_rate: int | None = None) -> torch.Tensor:
    """The waveform of an audio file: ``(T,)`` float32 in ``[-1, 1]``, channels averaged.

    Args:
        path: A file ``soundfile`` reads (wav, flac, ogg, ...).
        sample_rate: Resample to this rate; None keeps the file's.

    Returns:
        ``(T,)`` float32.

    Examples:
        >>> import tempfile, numpy as np
        >>> path = tempfile.mkdtemp() + "/stereo.flac"
        >>> sf.write(path, np.full((800, 2), [0.5, -0.25]), 8000)
        >>> x = read_audio(path)
        >>> x.dtype, x.shape, round(float(x[0]), 3)
        (torch.float32, torch.Size([800]), 0.125)
        >>> read_audio(path, sample_rate=16000).shape
        torch.Size([1600])
    """
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    audio = torch.from_numpy(data.mean(axis=1) if data.shape[1] > 1 else data[:, 0].copy())
    if sample_rate is not None:
        audio = resample(audio, int(rate), sample_rate)
    return audio.contiguous()
