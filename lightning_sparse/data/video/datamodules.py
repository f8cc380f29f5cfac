"""UCF101 (official layout and folds) and any ``<split>/<class>/<video>`` tree as DataModules.

Soomro, Zamir & Shah 2012, "UCF101: A Dataset of 101 Human Actions Classes From Videos in The
Wild" (arXiv:1212.0402). Preprocessing follows Tran et al. 2018, "A Closer Look at
Spatiotemporal Convolutions for Action Recognition" (CVPR, arXiv:1711.11248), see
:mod:`lightning_sparse.data.video`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning_sparse.data.video.base import VideoDataModule
from lightning_sparse.data.video.decode import VIDEO_EXTENSIONS

__all__ = ["UCF101DataModule", "VideoFolderDataModule", "read_ucf101_split"]


def read_ucf101_split(split_dir: str | os.PathLike, fold: int, split: str) -> tuple[list[tuple[str, int]], list[str]]:
    """Parse UCF101's ``classInd.txt`` and ``trainlist0{fold}.txt`` / ``testlist0{fold}.txt``.

    ``classInd.txt`` lines are ``<index> <ClassName>`` (1-based); train lines
    ``<ClassName>/v_<ClassName>_gXX_cYY.avi <label>`` (1-based); test lines carry no label, which
    comes from the class folder. Blank lines and Windows line ends (as in the official zip) are
    accepted.

    Args:
        split_dir: Folder with the split files (``ucfTrainTestlist`` in the official zip).
        fold: 1, 2 or 3.
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(samples, classes)``: ``(relative path, 0-based label)`` pairs and the class names.

    Raises:
        ValueError: If ``fold`` or ``split`` is not allowed or a line is malformed or disagrees
            with ``classInd.txt``.
        FileNotFoundError: If a split file is missing.
    """
    if fold not in (1, 2, 3) or isinstance(fold, bool):
        raise ValueError(f"`fold` must be 1, 2 or 3; got {fold!r}.")
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test'; got {split!r}.")
    split_dir = Path(split_dir)

    def lines(name: str) -> list[tuple[int, list[str]]]:
        path = split_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"UCF101 split file not found: {path}.")
        text = path.read_text(encoding="utf-8-sig")
        return [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]

    classes: list[str] = []
    for n, parts in lines("classInd.txt"):
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
            raise ValueError(f"classInd.txt line {n} must be '<index> <ClassName>' with indices 1, 2, ...; "
                             f"got {' '.join(parts)!r}.")
        classes.append(parts[1])
    index = {c: i for i, c in enumerate(classes)}
    name = f"{split}list0{fold}.txt"
    samples: list[tuple[str, int]] = []
    for n, parts in lines(name):
        folder = parts[0].replace("\\", "/").split("/")[0]
        if folder not in index or len(parts) != (2 if split == "train" else 1):
            raise ValueError(f"{name} line {n} must be '<ClassName>/<file>{' <label>' if split == 'train' else ''}' "
                             f"with a class of classInd.txt; got {' '.join(parts)!r}.")
        if split == "train" and (not parts[1].isdigit() or int(parts[1]) - 1 != index[folder]):
            raise ValueError(f"{name} line {n}: label {parts[1]} disagrees with classInd.txt "
                             f"({folder} is {index[folder] + 1}).")
        samples.append((parts[0], index[folder]))
    return samples, classes


def _existing(root: Path, samples: list[tuple[str, int]], what: str) -> list[tuple[str, int]]:
    paths = [(str(root / rel), y) for rel, y in samples]
    missing = [p for p, _ in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} videos of the {what} are missing, e.g. {missing[:3]}.")
    return paths


class UCF101DataModule(VideoDataModule):
    """UCF101 action recognition (101 classes, 13,320 clips) with the official three folds.

    Soomro, Zamir & Shah 2012, "UCF101: A Dataset of 101 Human Actions Classes From Videos in The
    Wild" (arXiv:1212.0402). Layout of the official archives: ``<data_dir>/<ClassName>/v_...avi``
    and ``<split_dir>/{classInd.txt, trainlist0N.txt, testlist0N.txt}``. Any container FFmpeg
    reads is accepted for the videos. UCF101 has no validation split: ``val_dataloader`` serves
    the test split, as usual in the literature. Batches are ``(clips, labels)`` with clips
    ``(B, 3, frames_per_clip, image_size, image_size)`` (``(clips, labels, index)`` for training
    with ``return_index``); see :class:`VideoFolderDataset` for sampling and
    :meth:`corruption_datasets` for the robustness sets.

    Args:
        data_dir: Root of the class folders (``UCF-101``).
        split_dir: Folder of the split files (default ``<data_dir>/ucfTrainTestlist`` if it
            exists, else ``data_dir``).
        fold: Official split 1, 2 or 3.
        **kwargs: ``frames_per_clip``, ``frame_stride`` (1 = consecutive, at 25 fps),
            ``image_size``, ``resize_size``, ``batch_size``, ``train_subset``, ``test_subset``,
            ``native_resolution``, ``corruption_temporal``, ``corruption_params``: see
            :class:`~lightning_sparse.data.video.base.VideoDataModule`; ``num_workers``,
            ``seed`` (of the subsets and of the corruptions), ``return_index``: see
            :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: If an argument is not one of the allowed values (at construction), or a
            split file is malformed (at ``setup``).
        FileNotFoundError: At ``setup``, if split files or listed videos are missing.

    Examples:
        >>> dm = UCF101DataModule("UCF-101", fold=2, frames_per_clip=16, image_size=112)
        >>> dm.fold, dm.resize_size, dm.available_corruptions[-3:]
        (2, None, ('frame_drop', 'frame_rate', 'video_compression'))
    """

    def __init__(self, data_dir: str, split_dir: str | None = None, fold: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if fold not in (1, 2, 3) or isinstance(fold, bool):
            raise ValueError(f"`fold` must be 1, 2 or 3; got {fold!r}.")
        self.data_dir, self.fold = Path(data_dir), fold
        default = self.data_dir / "ucfTrainTestlist"
        self.split_dir = Path(split_dir) if split_dir is not None else default if default.is_dir() else self.data_dir

    def setup(self, stage: str | None = None) -> None:
        """Read the fold's split files and build the train and test datasets (any stage)."""
        if self.test_dataset is not None:
            return
        train, self.classes = read_ucf101_split(self.split_dir, self.fold, "train")
        test, _ = read_ucf101_split(self.split_dir, self.fold, "test")
        self.train_dataset = self._dataset(_existing(self.data_dir, train, f"train list {self.fold}"), True,
                                           self.train_subset)
        self.test_dataset = self._dataset(_existing(self.data_dir, test, f"test list {self.fold}"), False,
                                          self.test_subset)
        self.val_dataset = self.test_dataset


def _scan_split(root: Path) -> dict[str, list[Path]]:
    return {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
            for d in sorted(root.iterdir()) if d.is_dir()}


class VideoFolderDataModule(VideoDataModule):
    """Any video classification tree ``<data_dir>/<split>/<ClassName>/<video>``.

    Classes are the sorted class folders of the training split; videos are the files with an
    extension in :data:`VIDEO_EXTENSIONS` (any container FFmpeg reads). Without ``val_split``,
    ``val_dataloader`` serves the test split. Sampling, batches and corruptions as in
    :class:`UCF101DataModule`.

    Args:
        data_dir: Root of the split folders.
        train_split: Training split folder name.
        test_split: Test split folder name.
        val_split: Validation split folder name, or ``None`` (the test split).
        **kwargs: The clip, subset, corruption and loader arguments of
            :class:`UCF101DataModule` (``test_subset`` also subsets the validation split).

    Raises:
        ValueError: If an argument is not one of the allowed values, or (at ``setup``) a split
            has a class that the training split lacks or no video.
        FileNotFoundError: At ``setup``, if a split folder is missing.

    Examples:
        >>> VideoFolderDataModule("videos", val_split="val", image_size=64).resize_size is None
        True
    """

    def __init__(self, data_dir: str, train_split: str = "train", test_split: str = "test",
                 val_split: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir)
        self.train_split, self.test_split, self.val_split = train_split, test_split, val_split

    def _samples(self, split: str) -> list[tuple[str, int]]:
        root = self.data_dir / split
        if not root.is_dir():
            raise FileNotFoundError(f"split folder not found: {root}.")
        found = _scan_split(root)
        extra = sorted(set(found) - set(self.classes or ()))
        if extra:
            raise ValueError(f"split {split!r} has classes the training split lacks: {extra}.")
        samples = [(str(p), self.classes.index(c)) for c, paths in found.items() for p in paths]
        if not samples:
            raise ValueError(f"split {split!r} has no video ({', '.join(VIDEO_EXTENSIONS)}) in {root}.")
        return samples

    def setup(self, stage: str | None = None) -> None:
        """Scan the split folders and build the datasets (any stage)."""
        if self.test_dataset is not None:
            return
        root = self.data_dir / self.train_split
        if not root.is_dir():
            raise FileNotFoundError(f"split folder not found: {root}.")
        self.classes = list(_scan_split(root))
        self.train_dataset = self._dataset(self._samples(self.train_split), True, self.train_subset)
        self.test_dataset = self._dataset(self._samples(self.test_split), False, self.test_subset)
        self.val_dataset = self.test_dataset if self.val_split is None else self._dataset(
            self._samples(self.val_split), False, self.test_subset)
