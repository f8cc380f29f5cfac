"""The GRID audio-visual corpus (Cooke, Barker, Cunningham, Shao 2006): files, grammar, clips.

GRID sentences follow a fixed six-word grammar, *command color preposition letter digit
adverb*, and a clip's file name is the sentence id: one letter per word (the digit as ``1``-``9``
or ``z`` for zero), so ``bbaf2n.mpg`` says "bin blue at f two now". :func:`grid_transcript`
spells an id out; :data:`GRID_GRAMMAR` is the table.

Word timings come in ``.align`` files, one ``start end word`` line per word (``sil`` / ``sp``
for silence and short pauses), in units of 1/25000 s (:data:`GRID_ALIGN_UNITS_PER_SECOND`:
the 25 fps video frame ``t`` spans ``[1000 t, 1000 (t + 1))``).

Videos are MPEG-1 (360x288, 25 fps, 3 s) with MP2 audio at 44.1 kHz in the same file:
:func:`read_audio_track` decodes the audio with PyAV (its wheels bundle FFmpeg) and resamples
it with torchaudio; frames come from :func:`lightning_sparse.data.video.read_video_frames`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio
from torch import Tensor
from torch.utils.data import Dataset

from lightning_sparse.core.text import build_tokenizer
from lightning_sparse.data.video.decode import read_video_frames

__all__ = ["GRID_ALIGN_UNITS_PER_SECOND", "GRID_GRAMMAR", "GRIDDataset", "grid_transcript", "read_align",
           "read_audio_track"]

GRID_ALIGN_UNITS_PER_SECOND = 25000
"""Time units of GRID's ``.align`` files per second (1000 per 25 fps video frame)."""

_DIGITS = {"z": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
           "7": "seven", "8": "eight", "9": "nine"}
GRID_GRAMMAR: tuple[dict[str, str], ...] = (
    {"b": "bin", "l": "lay", "p": "place", "s": "set"},
    {"b": "blue", "g": "green", "r": "red", "w": "white"},
    {"a": "at", "b": "by", "i": "in", "w": "with"},
    {c: c for c in "abcdefghijklmnopqrstuvxyz"},  # every letter but w
    _DIGITS,
    {"a": "again", "n": "now", "p": "please", "s": "soon"},
)
"""Per word position, sentence-id letter -> word (command, color, preposition, letter, digit, adverb)."""


def grid_transcript(sentence_id: str) -> str:
    """The sentence a GRID id stands for.

    Raises:
        ValueError: If ``sentence_id`` is not six letters of the grammar.

    Examples:
        >>> grid_transcript("bbaf2n")
        'bin blue at f two now'
        >>> grid_transcript("swwp2s")
        'set white with p two soon'
        >>> grid_transcript("bbaw2n")
        Traceback (most recent call last):
        ...
        ValueError: `sentence_id` must be 6 characters of GRID's grammar (command color preposition letter digit adverb), got 'bbaw2n'.
    """
    words = []
    if isinstance(sentence_id, str) and len(sentence_id) == 6:
        words = [table.get(c) for table, c in zip(GRID_GRAMMAR, sentence_id.lower())]
    if len(words) != 6 or None in words:
        raise ValueError("`sentence_id` must be 6 characters of GRID's grammar (command color preposition letter "
                         f"digit adverb), got {sentence_id!r}.")
    return " ".join(words)


def read_align(path: str | os.PathLike, keep_silence: bool = False) -> list[tuple[float, float, str]]:
    """``(start_s, end_s, word)`` of every line of a GRID ``.align`` file, silences dropped.

    Raises:
        ValueError: If a line is not ``start end word``.
    """
    rows = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()):
            raise ValueError(f"{path}:{number}: an .align line must be 'start end word', got {line!r}.")
        if not keep_silence and parts[2] in ("sil", "sp"):
            continue
        rows.append((int(parts[0]) / GRID_ALIGN_UNITS_PER_SECOND, int(parts[1]) / GRID_ALIGN_UNITS_PER_SECOND,
                     parts[2]))
    return rows


def read_audio_track(path: str | os.PathLike, sample_rate: int = 16000) -> Tensor:
    """The audio track of a video file as mono float32 ``(samples,)`` at ``sample_rate``.

    Raises:
        ValueError: If the file has no audio stream.
    """
    import av

    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            raise ValueError(f"{path} has no audio stream.")
        stream = streams[0]
        source_rate = int(stream.rate or stream.codec_context.sample_rate)
        chunks = []
        for frame in container.decode(stream):
            data = frame.to_ndarray()
            if data.ndim == 1:  # packed interleaved samples
                data = data.reshape(-1, len(frame.layout.channels)).T
            elif frame.format.is_packed:
                data = data.reshape(-1, len(frame.layout.channels)).T
            if np.issubdtype(data.dtype, np.integer):
                data = data.astype(np.float32) / float(np.iinfo(data.dtype).max)
            chunks.append(data.astype(np.float32).mean(axis=0))
    audio = torch.from_numpy(np.concatenate(chunks)) if chunks else torch.zeros(0)
    if source_rate != sample_rate and audio.numel():
        audio = torchaudio.functional.resample(audio, source_rate, sample_rate)
    return audio.contiguous()


class GRIDDataset(Dataset):
    """GRID clips under ``root`` (every ``*.mpg`` below it), each with its transcript.

    The transcript comes from an ``.align`` file beside the clip (same stem, or the last six
    characters of the stem) when there is one, else from the sentence id in the file name.

    Items: ``{"video": uint8 (T, H, W, 3), "audio": float32 (samples,), "text": str,
    "targets": int64 (S,), "index": int}``.

    Args:
        root: Folder holding the clips (searched recursively).
        sample_rate: Rate the audio is resampled to.
        tokenizer: ``"char"`` or a SentencePiece ``.model`` path.
        size: Frame size for :func:`~lightning_sparse.data.video.read_video_frames` (``None``: native).

    Raises:
        FileNotFoundError: If ``root`` holds no ``.mpg`` clip.
    """

    def __init__(self, root: str | os.PathLike, sample_rate: int = 16000, tokenizer: str = "char",
                 size: int | tuple[int, int] | None = None) -> None:
        self.root = Path(root).expanduser()
        self.paths = sorted(self.root.rglob("*.mpg"))
        if not self.paths:
            raise FileNotFoundError(f"no GRID clips (*.mpg) under {self.root}.")
        self.sample_rate, self.size = sample_rate, size
        self.tokenizer = build_tokenizer(tokenizer)
        self.texts = [self._transcript(p) for p in self.paths]

    @staticmethod
    def _transcript(path: Path) -> str:
        for align in (path.with_suffix(".align"), path.with_name(f"{path.stem[-6:]}.align")):
            if align.is_file():
                return " ".join(word for _, _, word in read_align(align))
        return grid_transcript(path.stem[-6:])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path = self.paths[i]
        video = torch.from_numpy(read_video_frames(path, size=self.size))
        text = self.tokenizer.normalize(self.texts[i])
        return {"video": video, "audio": read_audio_track(path, self.sample_rate), "text": text,
                "targets": torch.tensor(self.tokenizer.encode(text), dtype=torch.int64), "index": i}
