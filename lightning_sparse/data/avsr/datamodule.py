"""The base of the audio-visual speech datasets and DataModules (GRID, LRS3, AV digits).

:class:`AVSpeechDataset` holds what every audio-visual set shares: the transcripts (normalised
and encoded once, at construction, or token ids given by a label list), the ``modality`` (which
streams an item carries), the frame transform, and the audio alignment: when an item carries
both streams its audio is trimmed or zero-padded at the end to exactly 640 samples per video
frame (16 kHz / 25 fps, :func:`~lightning_sparse.data.avsr.transforms.align_audio`, as
auto_avsr's ``cut_or_pad``). Audio-only items keep the whole recording. Subclasses read the
grey frames of the region of interest (``frames``) and the 16 kHz waveform (``waveform``).

:class:`AVSRDataModule` is the DataModule base: tokenizer (``vocab_size``), modality, frame
sizes and augmentation (a training and an evaluation
:class:`~lightning_sparse.data.avsr.transforms.AVSRVideoTransform`), length-bucketed training
batches, and the AVSR batch dict (:func:`~lightning_sparse.data.avsr.collate.collate_av`). As
every :class:`~lightning_sparse.data.base.DataModule`, its training loader is a
:class:`~lightning_sparse.data.loading.ResumableDataLoader` over an
:class:`~lightning_sparse.data.loading.EpochSampler` (through a
:class:`~lightning_sparse.data.loading.BucketBatchSampler` with ``bucketing``), so mid-epoch
resume, DDP sharding and a callback's training sampler (``set_train_sampler``) work, and
``return_index=True`` adds each training item's position in ``train_dataset`` as ``"index"``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lightning_sparse._validation import check_bool, check_choice, check_number
from lightning_sparse.data.avsr.collate import collate_av
from lightning_sparse.data.avsr.text import build_avsr_tokenizer
from lightning_sparse.data.avsr.transforms import (
    AUDIO_SAMPLES_PER_FRAME,
    AVSR_MEAN,
    AVSR_STD,
    AVSRVideoTransform,
    align_audio,
    check_size,
)
from lightning_sparse.data.base import DataModule, check_count
from lightning_sparse.data.loading import BucketBatchSampler, EpochSampler, ResumableDataLoader

__all__ = ["MODALITIES", "AVSRDataModule", "AVSpeechDataset", "split_by_fraction"]

MODALITIES: tuple[str, ...] = ("audiovisual", "audio", "video")
"""The streams an item carries: both, audio only, video only."""


class AVSpeechDataset(Dataset):
    """Audio-visual utterances as items ``{"video", "audio", "text", "targets", "index"}``.

    ``video`` float32 ``(T_v, h, w)`` is the frame transform's output, ``audio`` float32 ``(N,)``
    the 16 kHz waveform (``N = 640 T_v`` when both streams are present), ``text`` the normalised
    transcript, ``targets`` int64 token ids (no blank), ``index`` the item's position. With
    ``modality="audio"`` items have no ``video`` (and the frames are not decoded), with
    ``"video"`` no ``audio``.

    Subclasses implement ``__len__``'s source (``texts``), :meth:`frames` and :meth:`waveform`,
    and may give :attr:`lengths` (frames per item, for length bucketing).

    Args:
        texts: The transcripts, in item order (normalised here).
        tokenizer: A tokenizer or its spec (:func:`~lightning_sparse.data.avsr.text.build_avsr_tokenizer`).
        modality: ``"audiovisual"``, ``"audio"`` or ``"video"``.
        video_transform: Grey frames ``(T, H, W)`` -> model input ``(T, h, w)`` (default:
            normalisation only).
        targets: Token ids per item instead of encoding ``texts`` (label lists that store ids).

    Raises:
        ValueError: If ``modality`` is not allowed or ``targets`` does not match ``texts``.
    """

    def __init__(self, texts: Sequence[str], tokenizer: Any = "char", modality: str = "audiovisual",
                 video_transform: Any = None, targets: Sequence[Sequence[int]] | None = None) -> None:
        check_choice("modality", modality, MODALITIES)
        self.tokenizer = build_avsr_tokenizer(tokenizer)
        self.texts: list[str] = [self.tokenizer.normalize(t) for t in texts]
        if targets is None:
            targets = [self.tokenizer.encode(t) for t in self.texts]
        elif len(targets) != len(self.texts):
            raise ValueError(f"`targets` must hold one id sequence per transcript ({len(self.texts)}), "
                             f"got {len(targets)}.")
        self._targets = [np.asarray(t, dtype=np.int64) for t in targets]
        self.modality = modality
        self.video_transform = video_transform if video_transform is not None else AVSRVideoTransform(None)

    _item_fields: tuple[str, ...] = ()
    """Per-item attributes (lists or arrays in item order; None: absent) that :meth:`subset` slices."""

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, positions: Sequence[int], video_transform: Any = None) -> AVSpeechDataset:
        """A copy holding the items at ``positions`` (renumbered from 0), with ``video_transform`` if given."""
        keep = [int(i) for i in positions]
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.texts = [self.texts[i] for i in keep]
        out._targets = [self._targets[i] for i in keep]
        for name in self._item_fields:
            value = getattr(self, name)
            if value is not None:
                setattr(out, name, value[keep] if isinstance(value, np.ndarray) else [value[i] for i in keep])
        if video_transform is not None:
            out.video_transform = video_transform
        return out

    @property
    def lengths(self) -> np.ndarray | None:
        """Video frames (or another length measure) of every item, for length bucketing; None: unknown."""
        return None

    def frames(self, i: int) -> Tensor | np.ndarray:
        """Item ``i``'s frames of the region of interest: grey ``(T, H, W)`` or RGB ``(T, H, W, 3)``, 0-255."""
        raise NotImplementedError

    def waveform(self, i: int) -> Tensor:
        """Item ``i``'s mono waveform ``(N,)`` float32 at 16 kHz."""
        raise NotImplementedError

    def targets(self, i: int) -> Tensor:
        """Token ids ``(S,)`` int64 of item ``i``."""
        return torch.from_numpy(self._targets[i].copy())

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} utterances")
        i %= len(self)
        item: dict[str, Any] = {}
        if self.modality != "audio":
            item["video"] = self.video_transform(self.frames(i))
        if self.modality != "video":
            audio = torch.as_tensor(self.waveform(i), dtype=torch.float32).reshape(-1)
            item["audio"] = align_audio(audio, item["video"].shape[0]) if "video" in item else audio
        item.update(text=self.texts[i], targets=self.targets(i), index=i)
        return item

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} utterances, modality={self.modality!r})"


class AVSRDataModule(DataModule):
    """The base of the audio-visual speech DataModules (subclasses implement :meth:`build_datasets`).

    Batches are the AVSR batch dict of :mod:`lightning_sparse.data.avsr` (:func:`collate_av`).
    Frames go through :class:`~lightning_sparse.data.avsr.transforms.AVSRVideoTransform`:
    resized to ``image_size``, cropped to ``crop_size`` (a random position for training, the
    centre otherwise), ``flip`` / ``time_mask`` in training, normalised by ``mean`` / ``std``.

    Args:
        tokenizer: ``"char"``, a SentencePiece ``.model`` path, or a units ``.txt`` path
            (:func:`~lightning_sparse.data.avsr.text.build_avsr_tokenizer`); built at construction.
        modality: ``"audiovisual"`` (both streams), ``"audio"`` or ``"video"`` (one stream; the
            other is never read).
        image_size: Size the region of interest is resized to (an int: square); None: as read.
        crop_size: Crop of the resized frames (an int: square); None: no crop.
        flip: Random horizontal flips of training clips (probability 0.5).
        time_mask: Mask stretches of training frames (auto_avsr's adaptive time mask).
        mean: Frame mean on the 0-1 scale (default: auto_avsr's LRS3 statistics).
        std: Frame standard deviation on the 0-1 scale.
        bucketing: Length-bucketed training batches where the dataset knows its lengths.
        bucket_size: Batches per sorted chunk of the epoch's order when ``bucketing``.
        **kwargs: ``batch_size``, ``num_workers``, ``seed``, ``return_index``: see
            :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: If an argument is out of range (naming it).
    """

    sample_rate = 16000
    """Audio rate of every batch, in Hz."""
    fps = 25
    """Video frame rate of every batch."""
    samples_per_frame = AUDIO_SAMPLES_PER_FRAME

    def __init__(self, tokenizer: str = "char", modality: str = "audiovisual",
                 image_size: int | tuple[int, int] | None = 96, crop_size: int | tuple[int, int] | None = 88,
                 flip: bool = False, time_mask: bool = False, mean: float = AVSR_MEAN, std: float = AVSR_STD,
                 bucketing: bool = True, bucket_size: int = 100, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_choice("modality", modality, MODALITIES)
        check_bool("bucketing", bucketing)
        check_count("bucket_size", bucket_size, 1)
        check_number("mean", mean)
        check_number("std", std, 0.0, low_open=True)
        # both transforms now: every size / flag error surfaces at construction
        AVSRVideoTransform(crop_size, image_size, train=True, flip=flip, time_mask=time_mask, mean=mean, std=std)
        self.tokenizer = build_avsr_tokenizer(tokenizer)
        self.modality = modality
        self.image_size = check_size("image_size", image_size, allow_none=True)
        self.crop_size = check_size("crop_size", crop_size, allow_none=True)
        self.flip, self.time_mask, self.mean, self.std = flip, time_mask, float(mean), float(std)
        self.bucketing, self.bucket_size = bucketing, bucket_size

    # ------------------------------------------------------------------ what the task reads
    @property
    def vocab_size(self) -> int:
        """Token ids of the tokenizer, the CTC blank (id 0) included."""
        return self.tokenizer.vocab_size

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """``(H, W)`` of the batches' frames (None: the frames' own size)."""
        return self.crop_size or self.image_size

    def video_transform(self, train: bool) -> AVSRVideoTransform:
        """The frame transform of the training (``train=True``) or the evaluation splits."""
        return AVSRVideoTransform(self.crop_size, self.image_size, train=train, flip=self.flip,
                                  time_mask=self.time_mask, mean=self.mean, std=self.std)

    # ------------------------------------------------------------------ splits
    def build_datasets(self) -> dict[str, Dataset | None]:
        """The datasets of ``"train"``, ``"val"`` and ``"test"`` (None: no such split)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Build every split (all of them, any stage; once)."""
        if self.train_dataset is not None:
            return
        splits = self.build_datasets()
        if splits.get("train") is None or len(splits["train"]) == 0:
            raise ValueError(f"{type(self).__name__}: the training split holds no utterances.")
        self.train_dataset = splits["train"]
        self.val_dataset = splits.get("val") or None
        self.test_dataset = splits.get("test") or None

    # ------------------------------------------------------------------ loaders
    def _loader(self, dataset: Dataset | None, name: str) -> DataLoader:
        """AVSR loaders: collated dicts; resumable (and bucketed) for ``"train"``."""
        if dataset is None:
            raise self._no_setup(name)
        common = dict(num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                      collate_fn=partial(collate_av, return_index=self.return_index and name == "train"))
        if name != "train":
            return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, **common)
        replicas, rank = self._shards()
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        sampler = EpochSampler(len(dataset), seed, self._train_sampler, replicas, rank)
        lengths = getattr(dataset, "lengths", None) if self.bucketing else None
        if lengths is None:
            return ResumableDataLoader(dataset, batch_size=self.batch_size, sampler=sampler,
                                       progress=self._batches_trained, **common)
        batches = BucketBatchSampler(sampler, self.batch_size, lengths=lengths, bucket_size=self.bucket_size,
                                     seed=seed)
        return ResumableDataLoader(dataset, batch_sampler=batches, progress=self._batches_trained, **common)

    def test_dataloader(self) -> DataLoader | list:
        """Batches of the test split, in order; ``[]`` when there is none."""
        if self.test_dataset is None and self.train_dataset is not None:
            return []
        return self._loader(self.test_dataset, "test")


def split_by_fraction(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Positions ``0..n-1`` split by a permutation of ``seed``: test, then validation, then train (each sorted).

    Examples:
        >>> {k: v.tolist() for k, v in split_by_fraction(5, 0.2, 0.2, seed=0).items()}
        {'test': [2], 'val': [4], 'train': [0, 1, 3]}
    """
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = round(test_fraction * n), round(val_fraction * n)
    return {"test": np.sort(order[:n_test]), "val": np.sort(order[n_test : n_test + n_val]),
            "train": np.sort(order[n_test + n_val :])}
