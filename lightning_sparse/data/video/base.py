"""The base of the video DataModules: clip arguments, class-balanced subsets, corrupted test sets."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from lightning_sparse.data.base import DataModule
from lightning_sparse.data.splits import stratified_take
from lightning_sparse.data.video.corruptions import (
    ALL_VIDEO_CORRUPTIONS,
    TEMPORAL_MODES,
    VIDEO_CORRUPTIONS,
    CorruptedVideoDataset,
    _check_params,
)
from lightning_sparse.data.video.dataset import VideoFolderDataset
from lightning_sparse.data.video.decode import _is_int, _positive_int

__all__ = ["VideoDataModule"]


def _check_subset(name: str, value: object) -> None:
    if value is None or (_is_int(value) and value >= 1):
        return
    if isinstance(value, float) and 0.0 < value <= 1.0:
        return
    raise ValueError(f"`{name}` must be None, a positive clip count or a fraction in (0, 1]; got {value!r}.")


class VideoDataModule(DataModule):
    """Clip sampling, subsets and corrupted test sets shared by the video DataModules.

    Batches are ``(clips, labels)`` with clips ``(B, 3, frames_per_clip, image_size,
    image_size)`` (``(clips, labels, index)`` for training with ``return_index``); subclasses
    set ``classes`` and build ``train_dataset`` / ``val_dataset`` / ``test_dataset`` in ``setup``
    with :meth:`_dataset`. Loaders and ``set_train_sampler``:
    :class:`~lightning_sparse.data.base.DataModule`.

    Args:
        frames_per_clip: Frames per clip.
        frame_stride: Distance between sampled frames (1 = consecutive).
        image_size: Side of the square crop (112 for R3D-18).
        resize_size: Short side before cropping (default ``round(image_size * 8 / 7)``).
        batch_size: Clips per batch.
        train_subset: ``None``, a clip count or a fraction: a seeded class-balanced subset.
        test_subset: The same for the test (and validation) split.
        native_resolution: Decode (and corrupt) at the file's resolution, see
            :class:`~lightning_sparse.data.video.dataset.VideoFolderDataset`.
        corruption_temporal: ``"consistent"`` (the same random draws in every frame) or
            ``"independent"``, for the spatial corruptions of :meth:`corruption_datasets`.
        corruption_params: Constants of the image corruptions: ``"cifar"``, ``"imagenet"`` or
            ``None`` (by frame size: ImageNet-C above 64 pixels on the short side).
        **kwargs: ``num_workers``, ``seed`` (of the subsets and of the corruptions),
            ``return_index``: see :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: If an argument is not one of the allowed values.
    """

    def __init__(
        self,
        frames_per_clip: int = 16,
        frame_stride: int = 1,
        image_size: int = 112,
        resize_size: int | None = None,
        batch_size: int = 8,
        train_subset: int | float | None = None,
        test_subset: int | float | None = None,
        native_resolution: bool = False,
        corruption_temporal: str = "consistent",
        corruption_params: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        if corruption_temporal not in TEMPORAL_MODES:
            raise ValueError(f"`corruption_temporal` must be one of {', '.join(TEMPORAL_MODES)}; "
                             f"got {corruption_temporal!r}.")
        _check_params(corruption_params)
        for name, value in (("frames_per_clip", frames_per_clip), ("frame_stride", frame_stride),
                            ("image_size", image_size)):
            _positive_int(name, value)
        _positive_int("resize_size", resize_size, allow_none=True)
        if resize_size is not None and resize_size < image_size:
            raise ValueError(f"`resize_size` must be at least `image_size` ({image_size}); got {resize_size}.")
        _check_subset("train_subset", train_subset)
        _check_subset("test_subset", test_subset)
        self.corruption_temporal, self.corruption_params = corruption_temporal, corruption_params
        self.frames_per_clip, self.frame_stride = frames_per_clip, frame_stride
        self.image_size, self.resize_size = image_size, resize_size
        self.train_subset, self.test_subset = train_subset, test_subset
        self.native_resolution = native_resolution
        self.classes: list[str] | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes (after ``setup``)."""
        if self.classes is None:
            raise RuntimeError(f"`{type(self).__name__}.setup()` must run before `num_classes` is known.")
        return len(self.classes)

    @property
    def available_corruptions(self) -> tuple[str, ...]:
        """Every corruption ``corruption_datasets`` accepts (image corruptions + temporal ones)."""
        return ALL_VIDEO_CORRUPTIONS

    def _dataset(self, samples: list[tuple[str, int]], train: bool, subset: int | float | None) -> VideoFolderDataset:
        """The clips of ``samples`` (a seeded class-balanced ``subset`` of them), for training or evaluation."""
        labels = np.asarray([y for _, y in samples], dtype=np.int64)
        count = len(labels) if subset is None else subset if _is_int(subset) else int(round(float(subset) * len(labels)))
        if count > len(labels):
            raise ValueError(f"`{'train_subset' if train else 'test_subset'}` asks for {count} clips but the split "
                             f"has only {len(labels)}.")
        keep = stratified_take(labels, count, np.random.default_rng(self.seed), balanced=True)[0]
        return VideoFolderDataset(
            [samples[i] for i in keep], self.classes, self.frames_per_clip, self.frame_stride,
            self.image_size, self.resize_size, train=train, native_resolution=self.native_resolution,
        )

    def corruption_datasets(
        self, corruptions: Sequence[str] | None = None, severities: Sequence[int] = (1, 2, 3, 4, 5)
    ) -> Iterator[tuple[str, int, Dataset]]:
        """Corrupted copies of the test split, one per (corruption, severity), built lazily.

        Item ``i`` of each copy is ``(clip, label)``: the ``uint8`` test clip ``raw(i)``,
        corrupted by :func:`~lightning_sparse.data.video.corruptions.corrupt_video` with a seed
        fixed by ``(seed, i)`` (the same item always gets the same corruption, whatever the
        order or number of workers), then the evaluation transform.

        Args:
            corruptions: Names from ``available_corruptions``; default the benchmark set
                :data:`~lightning_sparse.data.video.corruptions.VIDEO_CORRUPTIONS`.
            severities: Severities in 1..5.

        Returns:
            An iterator of ``(name, severity, dataset)``.

        Raises:
            ValueError: If a name or severity is not allowed (checked before any item is built).
        """
        names = list(VIDEO_CORRUPTIONS if corruptions is None else corruptions)
        unknown = [c for c in names if c not in self.available_corruptions]
        if unknown or isinstance(corruptions, str):
            raise ValueError(f"`corruptions` must be names from {', '.join(self.available_corruptions)}; "
                             f"got {corruptions!r}.")
        severities = list(severities)
        if not severities or any(not _is_int(s) or not 1 <= s <= 5 for s in severities):
            raise ValueError(f"`severities` must be a non-empty list of integers in 1..5; got {severities!r}.")
        if self.test_dataset is None:
            self.setup("test")
        test = self.test_dataset

        def generate() -> Iterator[tuple[str, int, Dataset]]:
            for name in names:
                for severity in severities:
                    yield name, int(severity), CorruptedVideoDataset(
                        test, name, int(severity), seed=self.seed, temporal=self.corruption_temporal,
                        params=self.corruption_params, transform=test.transform,
                    )

        return generate()
