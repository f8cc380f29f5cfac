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

:class:`GRIDDataset` gives the clips as decoded (RGB frames, audio). :class:`GRIDDataModule`
gives them as the AVSR batches of :mod:`lightning_sparse.data.avsr`: grey frames of the mouth
region, one of

* mouth crops: a folder ``<clip id>/`` of ``mouth_imageNNN.png`` images (the layout of the
  published GRID lip-reading crops, e.g. 100 x 50 crops), found beside the clip or in a folder
  above it (up to ``data_dir``), used instead of the clip's frames when present;
* else a fixed box of every frame, by default :data:`GRID_CROP_BOX`, the lower face in GRID's
  studio framing (a head-and-shoulders shot, the mouth near the middle of the box for the
  speakers seen; speakers sit a little differently, so it is a coarse region);

resized to ``image_size`` and cropped to ``crop_size``, with the audio trimmed or padded to 640
samples per frame (GRID's 3 s clips: 75 frames, 48000 samples).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchaudio
from torch import Tensor
from torch.utils.data import Dataset

from lightning_sparse._validation import check_bool, check_number
from lightning_sparse.core.text import build_tokenizer
from lightning_sparse.data.avsr.datamodule import AVSpeechDataset, AVSRDataModule, split_by_fraction
from lightning_sparse.data.avsr.transforms import check_box, crop_box, to_grayscale
from lightning_sparse.data.video.decode import read_video_frames

__all__ = ["GRID_ALIGN_UNITS_PER_SECOND", "GRID_CROP_BOX", "GRID_GRAMMAR", "GRIDClips", "GRIDDataModule",
           "GRIDDataset", "find_mouth_crops", "grid_transcript", "read_align", "read_audio_track", "read_mouth_crops"]

GRID_ALIGN_UNITS_PER_SECOND = 25000
"""Time units of GRID's ``.align`` files per second (1000 per 25 fps video frame)."""

GRID_CROP_BOX: tuple[int, int, int, int] = (160, 110, 112, 112)
"""``(top, left, height, width)`` of the lower face in GRID's 360 x 288 frames (the default mouth region)."""

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


# ---------------------------------------------------------------------------------------- AVSR batches
_MOUTH_IMAGE = re.compile(r"^mouth_image(\d+)\.png$")


def find_mouth_crops(clip: str | os.PathLike, root: str | os.PathLike) -> Path | None:
    """The folder of a clip's mouth crops: ``<folder>/<clip stem>/`` holding ``mouth_imageNNN.png``.

    Looked for in the clip's own folder, then each folder above it up to ``root`` (so
    ``root/GRID/bbaf2n.mpg`` finds ``root/GRID/bbaf2n/`` or ``root/bbaf2n/``); None when there is
    none.
    """
    clip, root = Path(clip), Path(root)
    folder = clip.parent
    while True:
        candidate = folder / clip.stem
        if candidate.is_dir() and any(_MOUTH_IMAGE.match(p.name) for p in candidate.iterdir()):
            return candidate
        if folder == root or folder.parent == folder or root not in folder.parents:
            return None
        folder = folder.parent


def read_mouth_crops(folder: str | os.PathLike) -> np.ndarray:
    """The ``mouth_imageNNN.png`` images of ``folder`` in number order, as ``uint8`` ``(T, H, W, 3)``.

    Raises:
        FileNotFoundError: If the folder holds no such image.
        ValueError: If the images differ in size.
    """
    from PIL import Image

    folder = Path(folder)
    found = sorted((int(m[1]), p) for p in folder.iterdir() if (m := _MOUTH_IMAGE.match(p.name)))
    if not found:
        raise FileNotFoundError(f"no mouth_imageNNN.png images in {folder}.")
    images = [np.asarray(Image.open(p).convert("RGB")) for _, p in found]
    if len({im.shape for im in images}) > 1:
        raise ValueError(f"the mouth crops of {folder} must share one size, got {sorted({im.shape for im in images})}.")
    return np.stack(images)


class GRIDClips(AVSpeechDataset):
    """GRID clips as AVSR items (see :class:`~lightning_sparse.data.avsr.datamodule.AVSpeechDataset`).

    Frames are the clip's mouth crops (:func:`find_mouth_crops`) when ``mouth_crops`` and they
    exist, else ``crop_box`` of every grey frame (None: the whole frame); audio is the clip's own
    track at 16 kHz. Transcripts as :class:`GRIDDataset` (``.align`` file, else the sentence id).

    Args:
        paths: The clips (``.mpg``).
        root: The folder the mouth-crop search stops at.
        tokenizer: A tokenizer or its spec.
        modality: ``"audiovisual"``, ``"audio"`` or ``"video"``.
        video_transform: Grey frames -> model input.
        crop_box: ``(top, left, height, width)`` of the mouth region in the clip's frames.
        mouth_crops: Use ``<clip id>/mouth_imageNNN.png`` folders where present.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], root: str | os.PathLike, tokenizer: Any = "char",
                 modality: str = "audiovisual", video_transform: Any = None,
                 crop_box: Sequence[int] | None = GRID_CROP_BOX, mouth_crops: bool = True) -> None:
        self.paths = [Path(p) for p in paths]
        super().__init__([GRIDDataset._transcript(p) for p in self.paths], tokenizer, modality, video_transform)
        self.crop_box = None if crop_box is None else tuple(crop_box)
        self.mouth_folders = [find_mouth_crops(p, root) if mouth_crops else None for p in self.paths]

    _item_fields = ("paths", "mouth_folders")

    def frames(self, i: int) -> torch.Tensor:
        """Grey frames of the mouth region ``(T, H, W)``, 0-255."""
        if self.mouth_folders[i] is not None:
            return to_grayscale(read_mouth_crops(self.mouth_folders[i]))
        grey = to_grayscale(read_video_frames(self.paths[i]))
        return grey if self.crop_box is None else crop_box(grey, self.crop_box)

    def waveform(self, i: int) -> torch.Tensor:
        """The clip's audio track at 16 kHz."""
        return read_audio_track(self.paths[i], 16000)


def _patterns(name: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    patterns = (value,) if isinstance(value, str) else value
    if not isinstance(patterns, Sequence) or not all(isinstance(v, str) and v for v in patterns):
        raise ValueError(f"`{name}` must be None, a clip id / glob pattern or a list of them, got {value!r}.")
    return tuple(patterns)


class GRIDDataModule(AVSRDataModule):
    """The GRID corpus (Cooke et al. 2006) as audio-visual speech batches (see the module docstring).

    ``data_dir`` holds the clips ``<sentence id>.mpg`` anywhere below it (the corpus's
    ``s<speaker>/<id>.mpg`` folders, or one folder), optional ``.align`` files beside them and
    optional mouth-crop folders. Splits:

    * by ids: ``train_ids`` / ``val_ids`` / ``test_ids``, each a list of clip ids or glob
      patterns matched against a clip's path below ``data_dir`` without its suffix
      (``"s1/bbaf2n"``, ``"s1/*"`` for a speaker) and against its file stem (``"bbaf2n"``).
      When any is given, the fractions are unused and ``train_ids=None`` means every clip not
      in the other two (e.g. ``test_ids=["s1/*", "s2/*", "s20/*", "s22/*"]``: LipNet's
      unseen-speaker split);
    * else by a permutation of ``seed``: ``test_fraction`` of the clips for test,
      ``val_fraction`` for validation, the rest for training.

    Args:
        data_dir: The folder holding the clips.
        val_fraction: Share of the clips for validation (0: none), without id lists.
        test_fraction: Share of the clips for test (0: none), without id lists.
        train_ids: Training clips (ids or patterns); None: the clips not in the other splits.
        val_ids: Validation clips (ids or patterns).
        test_ids: Test clips (ids or patterns).
        crop_box: ``(top, left, height, width)`` mouth region of the 360 x 288 frames; None: the
            whole frame.
        mouth_crops: Use ``<clip id>/mouth_imageNNN.png`` folders where present.
        image_size: The region is resized to this (an int: square), before ``crop_size``.
        crop_size: Crop of the resized region (random for training, else the centre); None: none.
        **kwargs: See :class:`~lightning_sparse.data.avsr.datamodule.AVSRDataModule` (``tokenizer``,
            ``modality``, ``flip``, ``time_mask``, ...) and :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: If an argument is malformed (naming it); in ``setup``, if an id list matches
            no clip or a clip falls in two splits.
        FileNotFoundError: In ``setup``, if ``data_dir`` holds no ``.mpg`` clip.
    """

    def __init__(self, data_dir: str, val_fraction: float = 0.1, test_fraction: float = 0.1,
                 train_ids: Sequence[str] | None = None, val_ids: Sequence[str] | None = None,
                 test_ids: Sequence[str] | None = None, crop_box: tuple[int, int, int, int] | None = GRID_CROP_BOX,
                 mouth_crops: bool = True, image_size: int | tuple[int, int] | None = 96,
                 crop_size: int | tuple[int, int] | None = 88, **kwargs: Any) -> None:
        super().__init__(image_size=image_size, crop_size=crop_size, **kwargs)
        check_number("val_fraction", val_fraction, 0.0, 1.0, high_open=True)
        check_number("test_fraction", test_fraction, 0.0, 1.0, high_open=True)
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(f"`val_fraction` + `test_fraction` must be < 1 (leaving training clips), got "
                             f"{val_fraction!r} + {test_fraction!r}.")
        check_box("crop_box", crop_box, allow_none=True)
        self.data_dir = Path(data_dir).expanduser()
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.train_ids, self.val_ids, self.test_ids = (_patterns("train_ids", train_ids),
                                                       _patterns("val_ids", val_ids), _patterns("test_ids", test_ids))
        self.crop_box = None if crop_box is None else tuple(int(v) for v in crop_box)
        self.mouth_crops = check_bool("mouth_crops", mouth_crops)

    def clips(self) -> dict[str, list[Path]]:
        """The clips of ``"train"``, ``"val"`` and ``"test"`` (see the class docstring)."""
        if not self.data_dir.is_dir():
            raise FileNotFoundError(f"`data_dir` must be a folder of GRID clips, got {str(self.data_dir)!r} "
                                    "(no such folder).")
        paths = sorted(self.data_dir.rglob("*.mpg"))
        if not paths:
            raise FileNotFoundError(f"no GRID clips (*.mpg) under {self.data_dir}.")
        if (self.train_ids, self.val_ids, self.test_ids) == (None, None, None):
            split = split_by_fraction(len(paths), self.val_fraction, self.test_fraction, self.seed)
            return {name: [paths[i] for i in positions] for name, positions in split.items()}
        names = [(str(p.relative_to(self.data_dir).with_suffix("")).replace(os.sep, "/"), p.stem) for p in paths]

        def matching(arg: str, patterns: tuple[str, ...] | None) -> set[int]:
            if patterns is None:
                return set()
            chosen = set()
            for pattern in patterns:
                hits = {i for i, (rel, stem) in enumerate(names)
                        if fnmatch.fnmatchcase(rel, pattern) or fnmatch.fnmatchcase(stem, pattern)}
                if not hits:
                    raise ValueError(f"`{arg}` entry {pattern!r} matches no clip under {self.data_dir} "
                                     f"(clip ids such as {names[0][0]!r} or {names[0][1]!r}).")
                chosen |= hits
            return chosen

        val, test = matching("val_ids", self.val_ids), matching("test_ids", self.test_ids)
        train = matching("train_ids", self.train_ids) if self.train_ids is not None else (
            set(range(len(paths))) - val - test)
        for (a, sa), (b, sb) in ((("train", train), ("val", val)), (("train", train), ("test", test)),
                                 (("val", val), ("test", test))):
            if sa & sb:
                clash = names[min(sa & sb)][0]
                raise ValueError(f"`{a}_ids` and `{b}_ids` must not share clips, got {clash!r} in both.")
        return {"train": [paths[i] for i in sorted(train)], "val": [paths[i] for i in sorted(val)],
                "test": [paths[i] for i in sorted(test)]}

    def build_datasets(self) -> dict[str, GRIDClips | None]:
        """Every split's :class:`GRIDClips` (None for an empty validation / test split)."""
        def dataset(paths: list[Path], train: bool) -> GRIDClips | None:
            if not paths:
                return None
            return GRIDClips(paths, self.data_dir, self.tokenizer, self.modality, self.video_transform(train),
                             self.crop_box, self.mouth_crops)

        clips = self.clips()
        return {"train": dataset(clips["train"], True), "val": dataset(clips["val"], False),
                "test": dataset(clips["test"], False)}
