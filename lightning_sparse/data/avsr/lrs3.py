"""LRS3 (Afouras, Chung & Zisserman 2018, arXiv:1809.00496) in its published and its pre-processed layout.

**Published layout** (:class:`LRS3Dataset`): ``<data_dir>/<split>/<speaker id>/<utt>.mp4``
with ``<utt>.txt`` beside it, splits ``pretrain``, ``trainval`` and ``test``. The videos are
25 fps face tracks (224 x 224) with the speaker's audio (AAC), decoded with PyAV and
resampled to 16 kHz. A transcript file reads::

    Text:  THE TRANSCRIPT IN UPPER CASE
    Conf:  4

    WORD START END ASDSCORE
    THE 0.08 0.21 7.3
    ...

The transcript is the ``Text:`` line (:func:`read_lrs3_text`; braces, as in ``{LG}``, are
dropped as auto_avsr's preparation does, keeping the word), word timings are the lines after
the ``WORD START END ASDSCORE`` header (:func:`read_lrs3_words`). The mouth region comes from
facial landmarks when there are any (:func:`read_landmarks`: auto_avsr's released ``.pkl``
landmarks, a per-frame list of ``(68, 2)`` arrays or None, or a ``.npy`` ``(T, K, 2)`` array, NaN
where a frame has none), found in ``landmarks_dir`` at the video's path below ``data_dir``
(auto_avsr's ``LRS3_landmarks`` layout) or beside the video: a square of ``mouth_size`` source
pixels around the smoothed mouth centre
(:func:`~lightning_sparse.data.avsr.transforms.mouth_centers`). Without landmarks the region is
``crop_box`` or the whole face frame.

**Pre-processed layout** (:class:`~lightning_sparse.data.avsr.label_lists.LRS3LabelListDataset`),
what auto_avsr's ``preparation/preprocess_lrs2lrs3.py`` writes under its ``root_dir``
(``data_dir`` here): mouth-crop videos, ``.wav`` audio and label lists of SentencePiece token
ids. The label lists and the dataset over them are in
:mod:`~lightning_sparse.data.avsr.label_lists` (re-exported here).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from lightning_sparse._validation import check_choice, check_int, check_number
from lightning_sparse.data.avsr.datamodule import AVSpeechDataset, AVSRDataModule, split_by_fraction
from lightning_sparse.data.avsr.grid import read_audio_track
from lightning_sparse.data.avsr.label_lists import LABEL_KINDS, LabelRow, LRS3LabelListDataset, read_label_list
from lightning_sparse.data.avsr.transforms import (
    check_box,
    check_size,
    crop_box,
    crop_mouth,
    landmark_frames,
    mouth_centers,
    to_grayscale,
)
from lightning_sparse.data.video.decode import read_video_frames

__all__ = [
    "LABEL_KINDS",
    "LRS3DataModule",
    "LRS3Dataset",
    "LRS3LabelListDataset",
    "LRS3_SPLITS",
    "LabelRow",
    "lrs3_videos",
    "read_label_list",
    "read_landmarks",
    "read_lrs3_text",
    "read_lrs3_words",
]

LRS3_SPLITS: tuple[str, ...] = ("pretrain", "trainval", "test")
"""The published LRS3 split folders."""


# ---------------------------------------------------------------------------------------- files
def read_lrs3_text(path: str | os.PathLike) -> str:
    """The transcript of an LRS3 ``.txt`` file: its ``Text:`` line, braces dropped.

    Raises:
        ValueError: If the file has no ``Text:`` line.

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "00001.txt"
        >>> _ = path.write_text("Text:  SO {LG} THANK YOU\\nConf:  3\\n\\n"
        ...                     "WORD START END ASDSCORE\\nSO 0.10 0.30 5.1\\n")
        >>> read_lrs3_text(path), read_lrs3_words(path)
        ('SO LG THANK YOU', [('SO', 0.1, 0.3)])
    """
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("Text:"):
            return " ".join(line[len("Text:"):].replace("{", "").replace("}", "").split())
    raise ValueError(f"{path}: an LRS3 transcript file must have a 'Text:  TRANSCRIPT' line, found none.")


def read_lrs3_words(path: str | os.PathLike) -> list[tuple[str, float, float]]:
    """``(word, start_s, end_s)`` of the lines after ``WORD START END ASDSCORE`` of an LRS3 ``.txt``.

    Raises:
        ValueError: If a timing line is not ``WORD START END SCORE``.
    """
    words, inside = [], False
    for number, line in enumerate(Path(path).read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if line.split()[:4] == ["WORD", "START", "END", "ASDSCORE"]:
            inside = True
            continue
        if not inside or not line.strip():
            continue
        parts = line.split()
        try:
            words.append((parts[0], float(parts[1]), float(parts[2])))
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{number}: a word line must be 'WORD START END SCORE', got {line!r}.") from None
    return words


def read_landmarks(path: str | os.PathLike) -> list[np.ndarray | None]:
    """Per-frame facial landmarks from a ``.pkl`` (a list of ``(K, 2)`` arrays or None) or a ``.npy``.

    A ``.npy`` is ``(T, K, 2)`` with NaN in the frames without landmarks. A ``.pkl`` is
    unpickled (auto_avsr's released landmarks): load only files from a source you trust.

    Raises:
        ValueError: If the file is neither or its content is not per-frame ``(K, 2)`` points.

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "a.npy"
        >>> points = np.ones((3, 68, 2)); points[1] = np.nan
        >>> np.save(path, points)
        >>> [None if f is None else f.shape for f in read_landmarks(path)]
        [(68, 2), None, (68, 2)]
    """
    path = Path(path)
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.ndim != 3 or array.shape[-1] != 2:
            raise ValueError(f"{path}: landmarks must be a (T, K, 2) array, got shape {array.shape}.")
        return [None if np.isnan(frame).all() else frame for frame in array.astype(np.float64)]
    if path.suffix == ".pkl":
        with open(path, "rb") as handle:
            content = pickle.load(handle)  # noqa: S301 - auto_avsr's landmark files are pickles
        if not isinstance(content, (list, tuple, np.ndarray)):
            raise ValueError(f"{path}: landmarks must be a list of per-frame (K, 2) arrays or None, "
                             f"got {type(content).__name__}.")
        return landmark_frames(content, where=str(path))
    raise ValueError(f"`landmarks` files must be .pkl or .npy, got {str(path)!r}.")


def lrs3_videos(data_dir: str | os.PathLike, split: str) -> list[Path]:
    """The ``<speaker>/<utt>.mp4`` videos of one split folder that have a transcript, sorted.

    Raises:
        FileNotFoundError: If the split folder is missing or holds no video with a ``.txt``.
    """
    folder = Path(data_dir).expanduser() / split
    if not folder.is_dir():
        raise FileNotFoundError(f"LRS3 split folder {folder} does not exist (published splits: "
                                f"{', '.join(LRS3_SPLITS)}).")
    videos = sorted(p for p in folder.glob("*/*.mp4") if p.with_suffix(".txt").is_file())
    if not videos:
        raise FileNotFoundError(f"{folder} holds no <speaker>/<utt>.mp4 video with its <utt>.txt transcript.")
    return videos


def _frame_count(path: Path) -> int:
    """A video's frame count from its container (duration x 25 fps when it states none)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        if stream.duration is not None and stream.time_base is not None:
            return max(1, round(float(stream.duration * stream.time_base) * 25))
        return max(1, round((container.duration or 0) / 1_000_000 * 25))


# ---------------------------------------------------------------------------------------- datasets
class LRS3Dataset(AVSpeechDataset):
    """LRS3 videos of the published layout as AVSR items (see the module docstring).

    ``lengths`` (for length bucketing) are the videos' frame counts read from their container
    headers on first use.

    Args:
        videos: The ``.mp4`` files (each with its ``.txt``), in item order.
        tokenizer: A tokenizer or its spec.
        modality: ``"audiovisual"``, ``"audio"`` or ``"video"``.
        video_transform: Grey frames -> model input.
        data_dir: The folder the videos' paths are taken relative to for ``landmarks_dir``.
        landmarks_dir: Landmarks at ``<landmarks_dir>/<video path below data_dir>`` with suffix
            ``.pkl`` or ``.npy``; None: landmark files beside the videos, where present.
        mouth_size: Side (or ``(height, width)``) of the mouth crop, in source pixels.
        window: Frames the mouth centre is smoothed over.
        crop_box: ``(top, left, height, width)`` region for videos without landmarks; None: the
            whole frame.

    Raises:
        FileNotFoundError: If ``landmarks_dir`` lacks a video's landmarks.
        ValueError: If a transcript file is malformed.
    """

    def __init__(self, videos: Sequence[str | os.PathLike], tokenizer: Any = "char", modality: str = "audiovisual",
                 video_transform: Any = None, data_dir: str | os.PathLike | None = None,
                 landmarks_dir: str | os.PathLike | None = None, mouth_size: int | Sequence[int] = 96,
                 window: int = 12, crop_box: Sequence[int] | None = None) -> None:
        self.videos = [Path(v) for v in videos]
        super().__init__([read_lrs3_text(v.with_suffix(".txt")) for v in self.videos], tokenizer, modality,
                         video_transform)
        self.mouth_size = check_size("mouth_size", mouth_size)
        self.window = check_int("window", window, 0)
        self.crop_box = check_box("crop_box", crop_box, allow_none=True)
        self.landmark_files = [self._landmarks_of(v, data_dir, landmarks_dir) for v in self.videos]
        self._lengths: np.ndarray | None = None

    _item_fields = ("videos", "landmark_files", "_lengths")

    @staticmethod
    def _landmarks_of(video: Path, data_dir: Any, landmarks_dir: Any) -> Path | None:
        if landmarks_dir is None:
            return next((p for p in (video.with_suffix(".pkl"), video.with_suffix(".npy")) if p.is_file()), None)
        base = Path(landmarks_dir).expanduser() / video.relative_to(Path(data_dir).expanduser()) if data_dir \
            else Path(landmarks_dir).expanduser() / video.name
        for candidate in (base.with_suffix(".pkl"), base.with_suffix(".npy")):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"no landmarks for {video}: looked for {base.with_suffix('.pkl')} and .npy.")

    @property
    def lengths(self) -> np.ndarray:
        """Every video's frame count from its container header (read once, on first use)."""
        if self._lengths is None:
            self._lengths = np.array([_frame_count(v) for v in self.videos], dtype=np.float64)
        return self._lengths

    def frames(self, i: int) -> Tensor:
        """Grey frames of the mouth region (landmarks), of ``crop_box`` or whole, ``(T, H, W)``, 0-255."""
        grey = to_grayscale(read_video_frames(self.videos[i]))
        if self.landmark_files[i] is not None:
            landmarks = read_landmarks(self.landmark_files[i])[: grey.shape[0]]
            landmarks += [None] * (grey.shape[0] - len(landmarks))  # held from the last known frame
            return crop_mouth(grey, mouth_centers(landmarks, self.window), self.mouth_size)
        return grey if self.crop_box is None else crop_box(grey, self.crop_box)

    def waveform(self, i: int) -> Tensor:
        """The video's audio track at 16 kHz."""
        return read_audio_track(self.videos[i], 16000)


# ---------------------------------------------------------------------------------------- DataModule
def _names(name: str, value: Any) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, Sequence) or not all(isinstance(v, str) and v for v in names):
        raise ValueError(f"`{name}` must be a split folder name or a list of them, got {value!r}.")
    return tuple(names)


def _path_or_none(name: str, value: Any) -> str | None:
    if value is not None and not (isinstance(value, (str, os.PathLike)) and str(value)):
        raise ValueError(f"`{name}` must be a file path or None, got {value!r}.")
    return None if value is None else str(value)


class LRS3DataModule(AVSRDataModule):
    """LRS3 as audio-visual speech batches, from the published or auto_avsr's pre-processed layout.

    ``layout="raw"``: the split folders ``train_splits`` / ``val_splits`` / ``test_splits`` of
    ``data_dir`` (:class:`LRS3Dataset`; mouth crops from landmarks where given). ``layout=
    "preprocessed"``: the label lists ``train_list`` / ``val_list`` / ``test_list``
    (:class:`LRS3LabelListDataset`); a relative list path is looked up in ``<data_dir>/labels/``,
    then in ``data_dir``. LRS3 has no validation split of its own: ``val_fraction`` holds out a
    seeded share of the training utterances when no validation split or list is given.

    auto_avsr's recipe: pre-processed 96 x 96 mouth crops, ``crop_size=88`` (random in training,
    centred otherwise), ``time_mask=True``, its 5000-unit SentencePiece vocabulary
    (``tokenizer=".../unigram5000_units.txt"`` with token-id label lists).

    Args:
        data_dir: The folder holding the split folders (raw) or auto_avsr's ``root_dir``.
        layout: ``"raw"`` or ``"preprocessed"``.
        train_splits: Raw layout: training split folder(s), e.g. ``("pretrain", "trainval")``.
        val_splits: Raw layout: validation split folder(s); ``()``: none.
        test_splits: Raw layout: test split folder(s); ``()``: none.
        train_list: Pre-processed layout: the training label list.
        val_list: Pre-processed layout: the validation label list (None: none).
        test_list: Pre-processed layout: the test label list (None: none).
        labels: Pre-processed layout: ``"auto"``, ``"token_ids"`` or ``"text"`` (:func:`read_label_list`).
        val_fraction: Share of the training utterances held out for validation when no
            validation split / list is given (0: none).
        landmarks_dir: Raw layout: folder of landmark files mirroring ``data_dir``
            (:class:`LRS3Dataset`); None: landmark files beside the videos, where present.
        mouth_size: Raw layout: side of the mouth crop around the landmarks, in source pixels.
        crop_box: Raw layout: ``(top, left, height, width)`` region of videos without landmarks;
            None: the whole face frame.
        image_size: The region is resized to this (an int: square), before ``crop_size``.
        crop_size: Crop of the resized region (random for training, else the centre); None: none.
        **kwargs: See :class:`~lightning_sparse.data.avsr.datamodule.AVSRDataModule` (``tokenizer``,
            ``modality``, ``flip``, ``time_mask``, ...) and :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: If an argument is malformed (naming it); in ``setup``, if a file is malformed.
        FileNotFoundError: In ``setup``, if a split folder, label list or landmark file is missing.
    """

    def __init__(self, data_dir: str, layout: str = "raw", train_splits: Sequence[str] = ("trainval",),
                 val_splits: Sequence[str] = (), test_splits: Sequence[str] = ("test",),
                 train_list: str = "lrs3_train_transcript_lengths_seg24s.csv", val_list: str | None = None,
                 test_list: str | None = "lrs3_test_transcript_lengths_seg24s.csv", labels: str = "auto",
                 val_fraction: float = 0.0, landmarks_dir: str | None = None, mouth_size: int = 96,
                 crop_box: tuple[int, int, int, int] | None = None, image_size: int | tuple[int, int] | None = 96,
                 crop_size: int | tuple[int, int] | None = 88, **kwargs: Any) -> None:
        super().__init__(image_size=image_size, crop_size=crop_size, **kwargs)
        check_choice("layout", layout, ("raw", "preprocessed"))
        check_choice("labels", labels, LABEL_KINDS)
        check_number("val_fraction", val_fraction, 0.0, 1.0, high_open=True)
        self.data_dir = Path(data_dir).expanduser()
        self.layout, self.labels, self.val_fraction = layout, labels, val_fraction
        self.train_splits = _names("train_splits", train_splits)
        if not self.train_splits:
            raise ValueError(f"`train_splits` must name at least one split folder, got {train_splits!r}.")
        self.val_splits, self.test_splits = _names("val_splits", val_splits), _names("test_splits", test_splits)
        self.train_list = _path_or_none("train_list", train_list)
        if self.train_list is None:
            raise ValueError("`train_list` must be a label list path, got None.")
        self.val_list, self.test_list = _path_or_none("val_list", val_list), _path_or_none("test_list", test_list)
        has_val = bool(self.val_splits) if layout == "raw" else self.val_list is not None
        if val_fraction > 0 and has_val:
            raise ValueError(f"`val_fraction` must be 0 when a validation {'split' if layout == 'raw' else 'list'} "
                             f"is given, got val_fraction={val_fraction!r}.")
        self.landmarks_dir = _path_or_none("landmarks_dir", landmarks_dir)
        self.mouth_size = check_size("mouth_size", mouth_size)
        self.crop_box = check_box("crop_box", crop_box, allow_none=True)

    def _label_list(self, name: str) -> Path:
        given = Path(name).expanduser()
        candidates = [given] if given.is_absolute() else [self.data_dir / "labels" / given, self.data_dir / given]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"label list {name!r} not found: looked for {' and '.join(map(str, candidates))}.")
        return found

    def _raw(self, splits: tuple[str, ...], train: bool) -> LRS3Dataset | None:
        if not splits:
            return None
        videos = [v for split in splits for v in lrs3_videos(self.data_dir, split)]
        return LRS3Dataset(videos, self.tokenizer, self.modality, self.video_transform(train), self.data_dir,
                           self.landmarks_dir, self.mouth_size, crop_box=self.crop_box)

    def _listed(self, name: str | None, train: bool) -> LRS3LabelListDataset | None:
        if name is None:
            return None
        return LRS3LabelListDataset(self.data_dir, self._label_list(name), self.tokenizer, self.modality,
                                    self.video_transform(train), self.labels)

    def build_datasets(self) -> dict[str, Any]:
        """Every split's dataset; ``val_fraction`` carves the validation split from the training one."""
        if self.layout == "raw":
            train, val, test = (self._raw(self.train_splits, True), self._raw(self.val_splits, False),
                                self._raw(self.test_splits, False))
        else:
            train, val, test = (self._listed(self.train_list, True), self._listed(self.val_list, False),
                                self._listed(self.test_list, False))
        if self.val_fraction > 0:
            split = split_by_fraction(len(train), self.val_fraction, 0.0, self.seed)
            val = train.subset(split["val"], self.video_transform(False)) if len(split["val"]) else None
            train = train.subset(split["train"])
        return {"train": train, "val": val, "test": test}

