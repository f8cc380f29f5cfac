"""Labelled video files as a dataset of fixed-length clips (random for training, centred otherwise)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_sparse.data.video.decode import PAD_MODES, _is_int, _positive_int, read_video_frames
from lightning_sparse.data.video.transform import VideoTransform

__all__ = ["VideoFolderDataset"]


class VideoFolderDataset(Dataset):
    """Labelled video files decoded into fixed-length clips.

    Item ``i`` is ``(clip, label)`` with ``clip`` the float ``(C, T, H, W)`` tensor of
    :class:`VideoTransform` (``(clip, label, i)`` with ``return_index``). :meth:`raw` returns the
    ``uint8`` ``(T, H, W, 3)`` clip before the transform: decoded at ``resize_size`` on the short
    side (or natively with ``native_resolution``), the corruption stage of the robustness sets.

    Training items (``train=True``) start at a random frame and get a random crop and flip,
    drawn from torch's global generator (reproducible under ``lightning.seed_everything``, distinct
    per DataLoader worker); evaluation items are deterministic: the centred clip, centre crop.

    Args:
        samples: ``(path, label)`` pairs, labels 0-based.
        classes: Class names, ``classes[label]``.
        frames_per_clip: Frames per clip ``T``.
        frame_stride: Distance between sampled frames.
        image_size: Side of the square crop.
        resize_size: Short side before cropping (default ``round(image_size * 8 / 7)``, 128 for
            112 as in the R3D recipe).
        train: Random clip start, crop and flip.
        native_resolution: Decode at the file's resolution (raw clips and corruptions at that
            size, resized after) instead of at ``resize_size``.
        return_index: Also yield the item's index (for data-pruning callbacks).
        pad: How clips longer than the video are filled (see :func:`clip_indices`).

    Raises:
        ValueError: If an argument is not one of the allowed values.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str | os.PathLike, int]],
        classes: Sequence[str],
        frames_per_clip: int = 16,
        frame_stride: int = 1,
        image_size: int = 112,
        resize_size: int | None = None,
        train: bool = False,
        native_resolution: bool = False,
        return_index: bool = False,
        pad: str = "loop",
    ) -> None:
        _positive_int("frames_per_clip", frames_per_clip)
        _positive_int("frame_stride", frame_stride)
        _positive_int("image_size", image_size)
        resize_size = round(image_size * 8 / 7) if resize_size is None else resize_size
        if pad not in PAD_MODES:
            raise ValueError(f"`pad` must be one of {', '.join(PAD_MODES)}; got {pad!r}.")
        for path, label in samples:
            if not _is_int(label) or not 0 <= label < len(classes):
                raise ValueError(f"labels must be in 0..{len(classes) - 1}; got {label!r} for {path}.")
        self.samples = [(os.fspath(p), int(y)) for p, y in samples]
        self.classes = list(classes)
        self.frames_per_clip, self.frame_stride = int(frames_per_clip), int(frame_stride)
        self.train, self.native_resolution, self.return_index, self.pad = train, native_resolution, return_index, pad
        self.transform = VideoTransform(image_size, resize_size, train=train)

    @property
    def targets(self) -> list[int]:
        """The label of every item, in order."""
        return [y for _, y in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def raw(self, index: int) -> tuple[np.ndarray, int]:
        """The ``uint8`` clip ``(T, H, W, 3)`` of item ``index`` and its label, before the transform."""
        path, label = self.samples[index]
        start: int | str = "center"
        seed = None
        if self.train:
            start, seed = "random", int(torch.randint(0, 2**62, ()))
        clip = read_video_frames(
            path, num_frames=self.frames_per_clip, stride=self.frame_stride, start=start,
            size=None if self.native_resolution else self.transform.resize_size, seed=seed, pad=self.pad,
        )
        return clip, label

    def __getitem__(self, index: int):
        clip, label = self.raw(index)
        x = self.transform(clip)
        return (x, label, index) if self.return_index else (x, label)
