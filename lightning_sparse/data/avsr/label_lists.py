"""auto_avsr's pre-processed layout: label lists and the dataset of mouth crops, audio and labels.

What auto_avsr's ``preparation/preprocess_lrs2lrs3.py`` writes under its ``root_dir`` (``root``
here; :class:`~lightning_sparse.data.avsr.lrs3.LRS3DataModule` with ``layout="preprocessed"``
reads it from its ``data_dir``)::

    <root>/labels/lrs3_train_transcript_lengths_seg24s.csv
    <root>/lrs3/lrs3_video_seg24s/trainval/<speaker>/<utt>.mp4    (96 x 96 mouth crops, 25 fps)
    <root>/lrs3/lrs3_video_seg24s/trainval/<speaker>/<utt>.wav    (16 kHz audio)
    <root>/lrs3/lrs3_text_seg24s/trainval/<speaker>/<utt>.txt     (the transcript)

A label list line is ``<dataset>,<path below root/dataset>,<video frames>,<label>`` with
``<label>`` the SentencePiece token ids of the transcript separated by spaces (auto_avsr) or
the transcript itself (:func:`read_label_list`). Token ids are used as targets as they are:
they index auto_avsr's units file (``spm/unigram/unigram5000_units.txt``), which must then be
the ``tokenizer`` (:class:`~lightning_sparse.data.avsr.text.UnitsTokenizer`); the texts come
from the ``_text_seg`` files when present, else from decoding the ids. Audio is the ``.wav``
beside the video, else the video's own audio track (``--combine-av``)
(:class:`LRS3LabelListDataset`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from lightning_sparse._validation import check_choice
from lightning_sparse.data.avsr.datamodule import AVSpeechDataset
from lightning_sparse.data.avsr.grid import read_audio_track
from lightning_sparse.data.avsr.text import UnitsTokenizer, build_avsr_tokenizer
from lightning_sparse.data.avsr.transforms import to_grayscale
from lightning_sparse.data.speech.audio import read_audio
from lightning_sparse.data.video.decode import read_video_frames

__all__ = ["LABEL_KINDS", "LRS3LabelListDataset", "LabelRow", "read_label_list"]

LABEL_KINDS: tuple[str, ...] = ("auto", "token_ids", "text")
"""What the last column of a label list holds (``"auto"``: token ids when every line is digits)."""

_IDS = re.compile(r"^\d+( \d+)*$")


@dataclass(frozen=True)
class LabelRow:
    """One line of an auto_avsr label list.

    Attributes:
        dataset: The dataset folder below the root (``"lrs3"``).
        rel_path: The video's path below ``<root>/<dataset>``.
        frames: The video's frame count as listed.
        token_ids: The label as token ids, or None when it is text.
        text: The label as text (``""`` when it is token ids).
    """

    dataset: str
    rel_path: str
    frames: int
    token_ids: tuple[int, ...] | None
    text: str = ""


def read_label_list(path: str | os.PathLike, labels: str = "auto") -> list[LabelRow]:
    """The lines ``dataset,rel_path,frames,label`` of an auto_avsr label list.

    Args:
        path: The ``.csv`` label list.
        labels: ``"token_ids"`` (space-separated ids), ``"text"`` (a transcript, commas allowed) or
            ``"auto"`` (token ids when every non-empty label is digits and spaces).

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If ``labels`` is not allowed, or a line is malformed (naming the file and line).

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "labels.csv"
        >>> _ = path.write_text("lrs3,lrs3_video_seg24s/test/spk/00001.mp4,52,12 7 401\\n")
        >>> read_label_list(path)[0]
        LabelRow(dataset='lrs3', rel_path='lrs3_video_seg24s/test/spk/00001.mp4', frames=52, token_ids=(12, 7, 401), text='')
    """
    check_choice("labels", labels, LABEL_KINDS)
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"label list {path} does not exist.")
    rows: list[tuple[int, str, str, int, str]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(",", 3)
        if len(parts) != 4 or not parts[0] or not parts[1] or not parts[2].strip().isdigit():
            raise ValueError(f"{path}:{number}: a label line must be 'dataset,rel_path,frames,label', got {line!r}.")
        rows.append((number, parts[0], parts[1], int(parts[2]), parts[3].strip()))
    if labels == "auto":
        labels = "token_ids" if all(_IDS.match(r[4]) or not r[4] for r in rows) else "text"
    out = []
    for number, dataset, rel_path, frames, label in rows:
        if labels == "token_ids":
            if label and not _IDS.match(label):
                raise ValueError(f"{path}:{number}: the label must be token ids separated by spaces, got {label!r}.")
            out.append(LabelRow(dataset, rel_path, frames, tuple(int(v) for v in label.split())))
        else:
            out.append(LabelRow(dataset, rel_path, frames, None, label))
    return out


class LRS3LabelListDataset(AVSpeechDataset):
    """The pre-processed layout of auto_avsr: mouth-crop videos, ``.wav`` audio and a label list.

    Args:
        root: auto_avsr's ``root_dir`` (the label list's paths are below ``<root>/<dataset>``).
        label_list: The label list ``.csv``.
        tokenizer: A tokenizer or its spec; for token-id labels, the units file they index.
        modality: ``"audiovisual"``, ``"audio"`` or ``"video"``.
        video_transform: Grey frames -> model input.
        labels: ``"auto"``, ``"token_ids"`` or ``"text"`` (:func:`read_label_list`).

    Raises:
        FileNotFoundError: If the label list does not exist.
        ValueError: If a line is malformed, or token-id labels come without their units file or
            with an id outside it.
    """

    def __init__(self, root: str | os.PathLike, label_list: str | os.PathLike, tokenizer: Any = "char",
                 modality: str = "audiovisual", video_transform: Any = None, labels: str = "auto") -> None:
        self.root = Path(root).expanduser()
        self.rows = read_label_list(label_list, labels)
        self.videos = [self.root / r.dataset / r.rel_path for r in self.rows]
        if self.rows and self.rows[0].token_ids is not None:
            tok = build_avsr_tokenizer(tokenizer)
            if not isinstance(tok, UnitsTokenizer):
                raise ValueError(f"`tokenizer` must be the units .txt file the token ids of {label_list} index "
                                 f"(auto_avsr: spm/unigram/unigram5000_units.txt), got {tokenizer!r}.")
            top = max((max(r.token_ids) for r in self.rows if r.token_ids), default=0)
            if top >= tok.vocab_size:
                raise ValueError(f"{label_list}: token id {top} is outside the {tok.vocab_size} ids of "
                                 f"{tok.units_file}; `tokenizer` must be the units file of the label list.")
            texts = [self._text_file(v) or tok.decode(r.token_ids) for v, r in zip(self.videos, self.rows)]
            super().__init__(texts, tok, modality, video_transform, targets=[r.token_ids for r in self.rows])
        else:
            super().__init__([r.text for r in self.rows], tokenizer, modality, video_transform)
        self._lengths = np.array([r.frames for r in self.rows], dtype=np.float64)

    _item_fields = ("rows", "videos", "_lengths")

    @staticmethod
    def _text_file(video: Path) -> str:
        """The transcript auto_avsr wrote beside the label list (``_video_seg`` -> ``_text_seg``), or ``""``."""
        parts = list(video.with_suffix(".txt").parts)
        for k, part in enumerate(parts):
            if "_video_seg" in part:
                parts[k] = part.replace("_video_seg", "_text_seg")
                path = Path(*parts)
                return " ".join(path.read_text(encoding="utf-8").split()) if path.is_file() else ""
        return ""

    @property
    def lengths(self) -> np.ndarray:
        """Every video's frame count, from the label list."""
        return self._lengths

    def frames(self, i: int) -> Tensor:
        """The mouth-crop video's grey frames ``(T, H, W)``, 0-255."""
        return to_grayscale(read_video_frames(self.videos[i]))

    def waveform(self, i: int) -> Tensor:
        """The ``.wav`` beside the video (else the video's own audio track) at 16 kHz."""
        wav = self.videos[i].with_suffix(".wav")
        if wav.is_file():
            return read_audio(wav, 16000)
        return read_audio_track(self.videos[i], 16000)
