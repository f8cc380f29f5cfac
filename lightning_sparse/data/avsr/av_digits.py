"""Audio-visual spoken digits: FSDD recordings paired with MNIST images of the same digit (AV-MNIST style).

This is NOT lip reading. The visual stream is a static handwritten digit image, not a face: a
stand-in that gives an audio-visual model two real, informative, label-aligned streams so that
audio-visual fusion (and dropping one stream) can be exercised on a CPU with real data. Results
on it say nothing about visual speech recognition.

The protocol follows the AV-MNIST pairing (a spoken digit with a handwritten image of the same
digit): every Free Spoken Digit Dataset recording (Jakobovski et al., 8 kHz, resampled to
16 kHz) is paired with one MNIST image of its digit, and the image is shown as a video of
``ceil(samples / 640)`` identical frames at 25 fps (the audio is zero-padded to exactly 640
samples per frame), optionally shifted by a few pixels per frame (``jitter``, drawn from a
generator seeded by ``seed`` and the item, so the frames are the same in every epoch). The
transcript is the digit as a word (``"seven"``).

Pairing is deterministic under ``seed`` and keeps the splits apart: the MNIST images of each
digit are cut, in file order, into a training, a validation and a test part
(``image_fractions`` of them), each split's recordings take images only from its own part, so
no image appears in two splits. Within a
split and digit, the recordings (in listing order) take the part's images of that digit in an
order permuted by ``(seed, split, digit)``, each image once before any repeats.

The recordings are split as :class:`~lightning_sparse.data.speech.SpokenDigitsDataModule` splits
them (its listing is reused): by default takes 0-4 test, 5-9 validation, 10-49 training.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lightning_sparse._validation import check_int
from lightning_sparse.data.avsr.datamodule import AVSpeechDataset, AVSRDataModule
from lightning_sparse.data.avsr.transforms import AUDIO_SAMPLES_PER_FRAME
from lightning_sparse.data.speech.audio import audio_info, read_audio
from lightning_sparse.data.speech.datamodule import SpokenDigitsDataModule
from lightning_sparse.data.speech.datasets import DIGIT_WORDS, Utterance

__all__ = ["MNIST_MEAN", "MNIST_STD", "AVDigitsDataModule", "AVDigitsDataset", "pair_images", "read_mnist_npz"]

MNIST_MEAN = 0.1307
"""Mean of the MNIST training images on the 0-1 scale."""
MNIST_STD = 0.3081
"""Standard deviation of the MNIST training images on the 0-1 scale."""

_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def read_mnist_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``images`` uint8 ``(N, H, W)`` and ``labels`` int64 ``(N,)`` of an ``.npz`` file.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it lacks ``images`` / ``labels`` or their shapes disagree.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"`mnist_path` must be an .npz file with 'images' and 'labels', got {str(path)!r} "
                                "(no such file).")
    with np.load(path, allow_pickle=False) as data:
        if "images" not in data or "labels" not in data:
            raise ValueError(f"{path} must hold arrays 'images' and 'labels', got {sorted(data.files)}.")
        images, labels = np.asarray(data["images"]), np.asarray(data["labels"]).astype(np.int64)
    if images.ndim != 3 or labels.shape != (len(images),):
        raise ValueError(f"{path}: 'images' must be (N, H, W) and 'labels' (N,), got {images.shape} and "
                         f"{labels.shape}.")
    if images.dtype != np.uint8:
        images = np.clip(images, 0, 255).astype(np.uint8)
    return images, labels


def pair_images(digits: Sequence[int], labels: np.ndarray, rows: np.ndarray, seed: int, split: str) -> np.ndarray:
    """The image row of each recording: images of its digit among ``rows``, permuted by ``(seed, split, digit)``.

    The ``k``-th recording of digit ``d`` takes image ``k mod m`` of the permuted ``m`` rows of
    digit ``d`` (each image once before any repeats).

    Raises:
        ValueError: If ``rows`` hold no image of a digit that is needed.

    Examples:
        >>> labels = np.array([0, 1, 0, 1, 0])
        >>> pairs = pair_images([0, 0, 0, 0, 1], labels, np.arange(5), seed=0, split="train")
        >>> sorted(pairs[:3].tolist()), bool(pairs[3] == pairs[0]), int(labels[pairs[4]])
        ([0, 2, 4], True, 1)
    """
    digits = np.asarray(digits, dtype=np.int64)
    out = np.empty(len(digits), dtype=np.int64)
    for digit in np.unique(digits):
        pool = rows[labels[rows] == digit]
        if len(pool) == 0:
            raise ValueError(f"`image_fractions` leave the {split} split no image of digit {digit} (its part of "
                             f"the images holds {len(rows)}).")
        pool = pool[np.random.default_rng([seed, _SPLIT_CODES[split], int(digit)]).permutation(len(pool))]
        where = np.flatnonzero(digits == digit)
        out[where] = pool[np.arange(len(where)) % len(pool)]
    return out


class AVDigitsDataset(AVSpeechDataset):
    """Spoken digits with a static handwritten digit image as the video stream (NOT lip reading).

    See the module docstring. Items: ``video`` the transform of ``ceil(N / 640)`` copies of the
    image (shifted by up to ``jitter`` pixels per frame), ``audio`` the 16 kHz recording padded
    to ``640 T_v`` samples, ``text`` the digit word.

    Args:
        utterances: The FSDD recordings (transcripts the digit words).
        images: The image of every recording, ``uint8`` ``(N, H, W)``, in item order.
        tokenizer: A tokenizer or its spec.
        modality: ``"audiovisual"``, ``"audio"`` or ``"video"``.
        video_transform: Grey frames -> model input.
        jitter: Largest shift of a frame, in pixels (0: identical frames).
        seed: Seed of the shifts (with the item's position).
        image_rows: The images' rows in the source file (kept for reference).

    Raises:
        ValueError: If ``images`` does not match ``utterances`` or ``jitter`` is negative.

    Examples:
        >>> import tempfile, soundfile as sf
        >>> path = tempfile.mkdtemp() + "/3_x_0.wav"
        >>> sf.write(path, np.zeros(1000, np.float32), 8000)
        >>> ds = AVDigitsDataset([Utterance("3_x_0", path, "three")], np.zeros((1, 28, 28), np.uint8))
        >>> item = ds[0]
        >>> tuple(item["video"].shape), tuple(item["audio"].shape), item["text"]
        ((4, 28, 28), (2560,), 'three')
    """

    _item_fields = ("utterances", "images", "image_rows", "_samples")

    def __init__(self, utterances: Sequence[Utterance], images: np.ndarray, tokenizer: Any = "char",
                 modality: str = "audiovisual", video_transform: Any = None, jitter: int = 0, seed: int = 0,
                 image_rows: np.ndarray | None = None) -> None:
        self.utterances = list(utterances)
        super().__init__([u.text for u in self.utterances], tokenizer, modality, video_transform)
        self.images = np.asarray(images)
        if self.images.ndim != 3 or len(self.images) != len(self.utterances):
            raise ValueError(f"`images` must be (N, H, W) with one image per utterance ({len(self.utterances)}), "
                             f"got shape {self.images.shape}.")
        self.jitter, self.seed = check_int("jitter", jitter, 0), int(seed)
        self.image_rows = None if image_rows is None else np.asarray(image_rows, dtype=np.int64)
        self._samples: np.ndarray | None = None

    def samples(self, i: int) -> int:
        """Samples of recording ``i`` at 16 kHz (from the file's header)."""
        if self._samples is not None:
            return int(self._samples[i])
        frames, rate = audio_info(self.utterances[i].path)
        return math.ceil(frames * 16000 / rate)

    @property
    def lengths(self) -> np.ndarray:
        """Video frames of every item (``ceil(samples / 640)``, from the files' headers; read once)."""
        if self._samples is None:
            self._samples = np.array([self.samples(i) for i in range(len(self))], dtype=np.int64)
        return np.maximum(1, -(-self._samples // AUDIO_SAMPLES_PER_FRAME)).astype(np.float64)

    def frames(self, i: int) -> Tensor:
        """The image repeated for ``ceil(samples / 640)`` frames (jittered), ``(T, H, W)`` 0-255."""
        count = max(1, math.ceil(self.samples(i) / AUDIO_SAMPLES_PER_FRAME))
        image = torch.from_numpy(self.images[i].astype(np.float32))
        if self.jitter == 0:
            return image.expand(count, *image.shape).clone()
        j, (h, w) = self.jitter, image.shape
        padded = torch.nn.functional.pad(image, (j, j, j, j))
        shifts = np.random.default_rng([self.seed, i]).integers(-j, j + 1, size=(count, 2))
        return torch.stack([padded[j + dy : j + dy + h, j + dx : j + dx + w] for dy, dx in shifts.tolist()])

    def waveform(self, i: int) -> Tensor:
        """The recording at 16 kHz."""
        return read_audio(self.utterances[i].path, 16000)


def _fsdd_splits(data_dir: str, split: str, val_takes: Any, val_speakers: Any,
                 test_speakers: Any) -> SpokenDigitsDataModule:
    """The spoken digits' split rule (arguments checked there), built outside any ``__init__``."""
    return SpokenDigitsDataModule(data_dir=data_dir, split=split, val_takes=val_takes, val_speakers=val_speakers,
                                  test_speakers=test_speakers, bucketing=False)


class AVDigitsDataModule(AVSRDataModule):
    """FSDD recordings paired with MNIST images of their digit: an audio-visual set that is NOT lip reading.

    The visual stream is a static handwritten digit image repeated over the utterance's frames,
    a stand-in used to exercise audio-visual fusion on a CPU with real data (see the module
    docstring for the pairing). Batches are the AVSR batch dict; ``modality="audio"`` or
    ``"video"`` drops a stream.

    Args:
        data_dir: The folder holding ``recordings/`` (or the ``{digit}_{speaker}_{take}.wav`` files).
        mnist_path: An ``.npz`` with ``images`` uint8 ``(N, 28, 28)`` and ``labels`` ``(N,)``.
        split: ``"takes"`` or ``"speakers"`` (as :class:`~lightning_sparse.data.speech.SpokenDigitsDataModule`).
        val_takes: ``(first, last)`` validation takes for ``split="takes"``; None: no validation.
        val_speakers: Validation speakers for ``split="speakers"``.
        test_speakers: Test speakers for ``split="speakers"``.
        image_fractions: Shares of each digit's MNIST images (in file order) that the training,
            validation and test images come from.
        jitter: Largest per-frame shift of the image, in pixels (0: a still image).
        image_size: Frames resized to this (an int: square); None: the images' 28 x 28.
        crop_size: Crop of the frames (random for training, else the centre); None: none.
        mean: Frame mean on the 0-1 scale (default: MNIST's).
        std: Frame standard deviation on the 0-1 scale (default: MNIST's).
        **kwargs: See :class:`~lightning_sparse.data.avsr.datamodule.AVSRDataModule` (``tokenizer``,
            ``modality``, ...) and :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: If an argument is malformed (naming it); in ``setup``, if a split's part of
            the images lacks a digit.
        FileNotFoundError: In ``setup``, if the recordings or ``mnist_path`` are missing.
    """

    def __init__(self, data_dir: str, mnist_path: str, split: str = "takes",
                 val_takes: tuple[int, int] | None = (5, 9), val_speakers: Sequence[str] = ("nicolas",),
                 test_speakers: Sequence[str] = ("theo",),
                 image_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), jitter: int = 0,
                 image_size: int | tuple[int, int] | None = None, crop_size: int | tuple[int, int] | None = None,
                 mean: float = MNIST_MEAN, std: float = MNIST_STD, **kwargs: Any) -> None:
        super().__init__(image_size=image_size, crop_size=crop_size, mean=mean, std=std, **kwargs)
        self._fsdd = _fsdd_splits(data_dir, split, val_takes, val_speakers, test_speakers)
        ok = isinstance(image_fractions, Sequence) and len(image_fractions) == 3 and all(
            isinstance(f, (int, float)) and not isinstance(f, bool) and f >= 0 for f in image_fractions)
        if not ok or sum(image_fractions) > 1 + 1e-9 or image_fractions[0] <= 0:
            raise ValueError("`image_fractions` must be three shares >= 0 (train > 0) of the images summing to at "
                             f"most 1, got {image_fractions!r}.")
        if not isinstance(mnist_path, (str, os.PathLike)) or not str(mnist_path):
            raise ValueError(f"`mnist_path` must be the path of an .npz file, got {mnist_path!r}.")
        self.data_dir, self.mnist_path = Path(data_dir).expanduser(), Path(mnist_path).expanduser()
        self.image_fractions = tuple(float(f) for f in image_fractions)
        self.jitter = check_int("jitter", jitter, 0)

    def image_parts(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        """The MNIST rows each split's images come from: per digit, consecutive shares in file order (disjoint)."""
        parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
        for digit in np.unique(labels):
            rows = np.flatnonzero(labels == digit)
            a = round(self.image_fractions[0] * len(rows))
            b = a + round(self.image_fractions[1] * len(rows))
            c = min(len(rows), b + round(self.image_fractions[2] * len(rows)))
            for name, chosen in (("train", rows[:a]), ("val", rows[a:b]), ("test", rows[b:c])):
                parts[name].append(chosen)
        return {name: np.sort(np.concatenate(chunks)) if chunks else np.zeros(0, np.int64)
                for name, chunks in parts.items()}

    def build_datasets(self) -> dict[str, AVDigitsDataset | None]:
        """Every split's recordings paired with images of its own part of MNIST."""
        images, labels = read_mnist_npz(self.mnist_path)
        parts = self.image_parts(labels)
        out: dict[str, AVDigitsDataset | None] = {}
        for name, utterances in self._fsdd.utterances().items():
            if not utterances:
                out[name] = None
                continue
            digits = [DIGIT_WORDS.index(u.text) for u in utterances]
            rows = pair_images(digits, labels, parts[name], self.seed, name)
            out[name] = AVDigitsDataset(utterances, images[rows], self.tokenizer, self.modality,
                                        self.video_transform(name == "train"), self.jitter, self.seed, rows)
        return out
