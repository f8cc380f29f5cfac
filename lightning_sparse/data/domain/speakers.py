"""Spoken digits of chosen speakers as a domain: FSDD recordings as log-mel spectrogram images.

The Free Spoken Digit Dataset (Jakobovski et al.; 6 speakers x 10 digits x 50 takes, 8 kHz) read
from ``<data_dir>/recordings/{digit}_{speaker}_{take}.wav`` (or the files directly in
``data_dir``). A domain is a set of speakers: adapting from one set to another is a
speaker-to-speaker shift (voice, accent, recording conditions) with the same ten classes.

Each recording becomes a 1-channel image ``(1, n_mels, frames)``: log-mel features of
:class:`~lightning_sparse.models.layers.audio.LogMelFilterbank` (torchaudio's
``MelSpectrogram``, power 2, ``log(mel + 1e-6)``, the speech tasks' own front end), **normalised
per utterance** (zero mean, unit standard deviation over all its bins and frames, so loudness
differences between speakers do not dominate), then padded or cropped in time to ``frames``:
a shorter utterance is placed in a field of its own minimum value (its silence level), a longer
one is cropped. Evaluation centres the utterance (or the crop); training (``train=True`` with
``augment=True``) places it at a random offset, the only augmentation. The defaults (256-sample
window, 20 ms hop at 8 kHz, 32 frames = 0.66 s) hold 95 % of the recordings uncropped.

Splits: ``"test"`` = takes 0-4 (the official FSDD test takes), ``"train"`` = takes 5-49,
``"all"``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_sparse._validation import check_bool, check_int
from lightning_sparse.data.domain.domains import DIGIT_CLASSES, Domain
from lightning_sparse.data.speech.audio import read_audio
from lightning_sparse.data.speech.datamodule import FSDD_TEST_TAKES
from lightning_sparse.data.speech.datasets import parse_fsdd_name, spoken_digit_utterances
from lightning_sparse.models.layers.audio import LogMelFilterbank

__all__ = ["FSDDSpeakerDomain", "Spectrograms"]


class Spectrograms(Dataset):
    """Per-utterance features ``(n_mels, T)`` fitted to ``frames``; item ``((1, n_mels, frames), label)``."""

    def __init__(self, features: list[torch.Tensor], labels: np.ndarray, frames: int, random_offset: bool) -> None:
        self.features = features
        self.labels = np.asarray(labels, dtype=np.int64)
        self.frames, self.random_offset = frames, random_offset

    def __len__(self) -> int:
        return len(self.labels)

    def _offset(self, room: int) -> int:
        if self.random_offset:
            return int(torch.randint(0, room + 1, ()))
        return room // 2

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        feat = self.features[i]
        length = feat.shape[1]
        if length >= self.frames:
            start = self._offset(length - self.frames)
            out = feat[:, start : start + self.frames]
        else:
            left = self._offset(self.frames - length)
            out = feat.new_full((feat.shape[0], self.frames), float(feat.min()))
            out[:, left : left + length] = feat
        return out.unsqueeze(0).contiguous(), int(self.labels[i])


class FSDDSpeakerDomain(Domain):
    """FSDD recordings of ``speakers`` as log-mel images ``(1, n_mels, frames)``; classes ``"0"``..``"9"``.

    Args:
        data_dir: The folder holding ``recordings/`` (or the wav files).
        speakers: The speakers of this domain (e.g. ``["george", "jackson"]``).
        n_mels: Mel bands (the image height).
        frames: Frames per image (the width).
        sample_rate: Rate the audio is resampled to (FSDD is recorded at 8000 Hz).
        n_fft: Window and FFT size in samples.
        hop_length: Hop in samples.
        augment: Training items place the utterance at a random offset in time.

    Raises:
        ValueError: If an argument is out of range or a speaker has no recordings (listing the
            speakers found).
        FileNotFoundError: If ``data_dir`` holds no FSDD recordings.

    Examples:
        >>> import tempfile, soundfile as sf
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ("3_ann_0", "3_ann_7", "5_bob_0"):
        ...     sf.write(root / f"{name}.wav", np.random.default_rng(0).normal(0, 0.1, 4000), 8000)
        >>> domain = FSDDSpeakerDomain(str(root), ["ann"], n_mels=16, frames=20)
        >>> x, y = domain.dataset("test")[0]
        >>> tuple(x.shape), y, len(domain.dataset("train"))
        ((1, 16, 20), 3, 1)
        >>> FSDDSpeakerDomain(str(root), ["carl"])
        Traceback (most recent call last):
        ...
        ValueError: `speakers` must be among the speakers found in ... ['ann', 'bob'], got 'carl'.
    """

    splits = ("all", "train", "test")
    in_channels = 1

    def __init__(self, data_dir: str, speakers: Sequence[str], n_mels: int = 32, frames: int = 32,
                 sample_rate: int = 8000, n_fft: int = 256, hop_length: int = 160, augment: bool = True) -> None:
        if not isinstance(data_dir, (str, os.PathLike)) or not str(data_dir):
            raise ValueError(f"`data_dir` must be a folder path, got {data_dir!r}.")
        if isinstance(speakers, str) or not isinstance(speakers, Sequence) or not speakers or not all(
                isinstance(s, str) and s for s in speakers):
            raise ValueError(f"`speakers` must be a non-empty list of speaker names, got {speakers!r}.")
        if len(set(speakers)) != len(speakers):
            raise ValueError(f"`speakers` must not repeat a speaker, got {list(speakers)!r}.")
        for name, value in (("n_mels", n_mels), ("frames", frames), ("sample_rate", sample_rate),
                            ("n_fft", n_fft), ("hop_length", hop_length)):
            check_int(name, value, 1)
        check_bool("augment", augment)
        self.data_dir, self.speakers = str(data_dir), list(speakers)
        self.n_mels, self.frames, self.sample_rate = n_mels, frames, sample_rate
        self.n_fft, self.hop_length, self.augment = n_fft, hop_length, augment
        every = spoken_digit_utterances(Path(self.data_dir).expanduser())
        found = sorted({u.speaker for u in every})
        for speaker in self.speakers:
            if speaker not in found:
                raise ValueError(f"`speakers` must be among the speakers found in {self.data_dir}: {found}, "
                                 f"got {speaker!r}.")
        chosen = [u for u in every if u.speaker in self.speakers]
        parsed = [parse_fsdd_name(Path(u.path).name) for u in chosen]
        self._paths = [u.path for u in chosen]
        self._labels = np.asarray([p[0] for p in parsed], dtype=np.int64)
        takes = np.asarray([p[2] for p in parsed])
        test = np.isin(takes, list(FSDD_TEST_TAKES))
        self._splits = {"all": np.arange(len(chosen)), "train": np.flatnonzero(~test), "test": np.flatnonzero(test)}
        self._features: list[torch.Tensor] | None = None

    @property
    def classes(self) -> list[str]:
        return list(DIGIT_CLASSES)

    def features(self) -> list[torch.Tensor]:
        """Every recording's normalised log-mel features ``(n_mels, T)``, computed once."""
        if self._features is None:
            bank = LogMelFilterbank(self.sample_rate, self.n_mels, self.n_fft, self.hop_length, self.n_fft)
            out = []
            with torch.no_grad():
                for path in self._paths:
                    feats, _ = bank(read_audio(path, self.sample_rate))  # (1, T, n_mels)
                    f = feats[0].T.contiguous()
                    out.append((f - f.mean()) / f.std(unbiased=False).clamp_min(1e-5))
            self._features = out
        return self._features

    def _dataset(self, split: str, train: bool) -> Dataset:
        idx = self._splits[split]
        feats = self.features()
        return Spectrograms([feats[i] for i in idx], self._labels[idx], self.frames, train and self.augment)

    def __getstate__(self) -> dict[str, Any]:  # pickles and deep copies carry the listing, not the features
        return {**self.__dict__, "_features": None}
