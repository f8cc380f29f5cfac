"""The base of the image DataModules: validation split, subsets, transforms and corrupted test sets.

The training images are chosen in this order, each step on the positions the previous one left
(all positions are into the full training split, ``train_dataset.source_indices``):

1. the validation split (``val_split``, stratified, seeded) is carved from the training split;
2. limited data: ``train_subset`` (a count) *or* ``train_fraction`` (a share), stratified and
   seeded the same way (``train_fraction=F`` keeps the images of ``train_subset=round(F * M)``);
   giving both is an error;
3. ``subset``: ``"hardest:F"`` / ``"easiest:F"`` keep the share ``F`` with the highest / lowest
   scores of ``scores_file`` (a file of :class:`~lightning_sparse.callbacks.hardness.HardnessScores`,
   or several averaged), ``"random:F"`` a stratified, seeded share (the baseline). The scores
   file must score every image left by steps 1-2 (it may score more, e.g. the whole split).

``train_corruption="name:severity"`` then corrupts every training image (before the
augmentation), seeded per image by its position in the full split (Xiao et al. 2024, "Are
Sparse Neural Networks Better Hard Sample Learners?", arXiv:2409.09196, train on corrupted
data); validation stays clean. ``test_corruption`` replaces the test split by its corrupted copy
from ``corruption_datasets`` (the images ``CorruptionRobustness`` evaluates).

``loader="memory"`` (:class:`~lightning_sparse.data.memory.MemoryBatchLoader`): the splits held
as ``uint8`` arrays (:class:`~lightning_sparse.data.image.datasets.ArrayImages`) are served as
one ``uint8 (N, C, H, W)`` tensor each, augmented and normalised per batch by the subclass's
``_memory_train_transform`` / ``_memory_eval_transform``; subsets, ``val_split`` and
``test_subset`` apply as above. A corrupted test set (``test_corruption``) keeps the per-sample
loader; ``train_corruption`` is refused with ``loader="memory"``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_sparse._validation import check_bool
from lightning_sparse.data.base import DataModule, check_count
from lightning_sparse.data.corruptions import PARAMS
from lightning_sparse.data.image.datasets import ArrayImages
from lightning_sparse.data.image.robustness import CorruptionsMixin
from lightning_sparse.data.image.subsets import (
    PositionCorruptedDataset,
    check_scores_file,
    check_train_fraction,
    fraction_count,
    parse_corruption,
    parse_subset,
    select_subset,
    train_corruption_seed,
)
from lightning_sparse.data.splits import stratified_take

__all__ = ["ImageDataModuleBase"]


class ImageDataModuleBase(CorruptionsMixin, DataModule):
    """Splits, subsets and corruption hooks shared by the image DataModules.

    Subclasses implement ``_pool(split)`` returning a pool (``labels`` and ``subset(indices,
    transform)``) for ``"train"``, ``"val"`` (or None: carve it from train with ``val_split``)
    and ``"test"``, and the transforms ``_train_transform``, ``_eval_transform``,
    ``_raw_transform`` (to ``uint8`` ``(H, W, C)`` before normalising) and
    ``_corruption_transform``. Loaders, ``return_index`` and ``set_train_sampler``:
    :class:`~lightning_sparse.data.base.DataModule`. The training-set options ``train_subset``,
    ``train_fraction``, ``subset`` / ``scores_file`` and ``train_corruption`` apply in the order
    of the module docstring; :meth:`train_eval_dataset` is the training split un-augmented.

    Args:
        data_dir: Directory holding the data.
        val_split: Validation images taken from the training split (when it has no validation
            split of its own): a count or a fraction in [0, 1); stratified, seeded; 0: none.
        augment: Use the training augmentation (else the evaluation transform).
        train_subset: Keep a stratified, seeded subset of this many training images.
        test_subset: Keep a stratified, seeded subset of this many test images.
        corrupted_dir: Directory of corrupted test sets (see ``corruption_datasets``): published
            ImageNet-C / CIFAR-C files, or where ``cache_corrupted`` writes them; None corrupts
            on the fly.
        cache_corrupted: Write missing corrupted sets into ``corrupted_dir`` once.
        corruption_seed: Seed of the per-item corruptions.
        corruption_params: Constants of ``corrupt``: ``"cifar"``, ``"imagenet"`` or None (by
            image size: CIFAR's up to 64 pixels).
        subset: ``"hardest:F"``, ``"easiest:F"`` (by ``scores_file``) or ``"random:F"``, ``F`` in
            (0, 1]: keep that share of the training images (see the module docstring); None: all.
        scores_file: A scores file (``lightning_sparse.metrics.hardness`` format) or a list of
            them (runs, averaged); needed by, and only by, ``hardest`` / ``easiest``.
        train_fraction: Keep a stratified, seeded share in (0, 1] of the training images
            (limited data); not together with ``train_subset``.
        train_corruption: ``"name:severity"`` (a name of ``ALL_CORRUPTIONS``, severity 1-5):
            corrupt the training images, each with a fixed per-image seed drawn from
            ``corruption_seed``; None: clean.
        test_corruption: ``"name:severity"``: the test split is its corrupted copy (as
            ``corruption_datasets`` yields it; ``CorruptionRobustness`` then calls it "clean");
            None: clean.
        **kwargs: ``batch_size``, ``num_workers``, ``seed`` (of the validation split and the
            subsets), ``return_index``, ``loader``: see :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: If an argument is out of range, or ``train_corruption`` is given with
            ``loader="memory"``.
    """

    in_channels = 3

    def __init__(
        self,
        data_dir: str,
        val_split: int | float = 0,
        augment: bool = True,
        train_subset: int | None = None,
        test_subset: int | None = None,
        corrupted_dir: str | None = None,
        cache_corrupted: bool = True,
        corruption_seed: int = 0,
        corruption_params: str | None = None,
        subset: str | None = None,
        scores_file: str | list[str] | None = None,
        train_fraction: float | None = None,
        train_corruption: str | None = None,
        test_corruption: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_count("corruption_seed", corruption_seed, 0)
        if isinstance(val_split, bool) or not isinstance(val_split, (int, float)) or val_split < 0 \
                or (isinstance(val_split, float) and val_split >= 1):
            raise ValueError(
                "`val_split` must be a sample count (int >= 0) or a fraction of the training split "
                f"in [0, 1), got {val_split!r}."
            )
        for arg, value in (("train_subset", train_subset), ("test_subset", test_subset)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{arg}` must be None or a positive integer, got {value!r}.")
        check_bool("augment", augment)
        check_bool("cache_corrupted", cache_corrupted)
        if corruption_params is not None and corruption_params not in PARAMS:
            raise ValueError(
                f"`corruption_params` must be None (by image size) or one of {list(PARAMS)}, got "
                f"{corruption_params!r}."
            )
        self._subset_spec = parse_subset(subset)
        self._scores_files = check_scores_file(scores_file, self._subset_spec)
        self.train_fraction = check_train_fraction(train_fraction, train_subset)
        self._train_corruption = parse_corruption("train_corruption", train_corruption)
        self._test_corruption = parse_corruption("test_corruption", test_corruption)
        if self._train_corruption is not None and self.loader == "memory":
            raise ValueError(
                f"`train_corruption` ({train_corruption!r}) is not supported with `loader='memory'` (the "
                "corruptions run per image on the raw pixels); use `loader='dataset'`."
            )
        self.subset = subset
        self.scores_file = scores_file
        self.train_corruption = train_corruption
        self.test_corruption = test_corruption
        self.data_dir = Path(data_dir)
        self.val_split = val_split
        self.augment = augment
        self.train_subset = train_subset
        self.test_subset = test_subset
        self.corrupted_dir = corrupted_dir
        self.cache_corrupted = cache_corrupted
        self.corruption_seed = corruption_seed
        self.corruption_params = corruption_params
        self.classes: list[str] = []
        self._test_indices: np.ndarray | None = None
        self._test_pool: Any = None
        self._train_pool: Any = None
        self._train_indices: np.ndarray | None = None
        self._memory_cache: dict[str, tuple[Any, tuple[torch.Tensor, ...]]] = {}

    # subclass hooks
    def _pool(self, split: str) -> Any:
        raise NotImplementedError

    def _train_transform(self) -> Callable[[Any], Any]:
        raise NotImplementedError

    def _eval_transform(self) -> Callable[[Any], Any]:
        raise NotImplementedError

    def _raw_transform(self) -> Callable[[Any], Any] | None:
        return None

    def _memory_train_transform(self) -> Any:
        """The batch augmentation of ``loader="memory"`` (``uint8 (B, C, H, W)`` -> float)."""
        raise NotImplementedError

    def _memory_eval_transform(self) -> Any:
        """The batch evaluation transform of ``loader="memory"`` (``uint8 (B, C, H, W)`` -> float)."""
        raise NotImplementedError

    # loader="memory" hooks
    def memory_arrays(self, split: str) -> tuple[torch.Tensor, ...] | None:
        """``(uint8 (N, C, H, W) images, int64 (N,) labels)`` of the split's dataset when it holds
        its images in memory (:class:`ArrayImages`), else None (e.g. a corrupted test set)."""
        dataset = getattr(self, f"{split}_dataset")
        if not isinstance(dataset, ArrayImages):
            return None
        cached = self._memory_cache.get(split)
        if cached is not None and cached[0] is dataset:
            return cached[1]
        images = torch.from_numpy(np.ascontiguousarray(dataset.images)).permute(0, 3, 1, 2).contiguous()
        labels = torch.from_numpy(np.asarray(dataset.labels, dtype=np.int64))
        self._memory_cache[split] = dataset, (images, labels)
        return images, labels

    def memory_transform(self, train: bool) -> Any:
        """Training with ``augment``: the batch augmentation; else the evaluation transform."""
        return self._memory_train_transform() if train and self.augment else self._memory_eval_transform()

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    # splits
    def _subset(self, labels: np.ndarray, n: int | None, arg: str, tag: int) -> np.ndarray:
        if n is None:
            return np.arange(len(labels))
        if n > len(labels):
            raise ValueError(f"`{arg}` must be at most the split's {len(labels)} images, got {n}.")
        return stratified_take(labels, n, np.random.default_rng([self.seed, tag]))[0]

    def _train_plan(self) -> tuple[Any, Any, np.ndarray | None, np.ndarray]:
        """``(train pool, val pool or None, validation positions or None, training positions)``."""
        train, val = self._pool("train"), self._pool("val")
        pool_idx, val_idx = np.arange(len(train.labels)), None
        if val is None and self.val_split:
            n_val = self.val_split if isinstance(self.val_split, int) else round(self.val_split * len(pool_idx))
            if n_val >= len(pool_idx):
                raise ValueError(
                    f"`val_split` must leave training images: the training split has {len(pool_idx)}, "
                    f"got {self.val_split!r} ({n_val} images)."
                )
            val_idx, pool_idx = stratified_take(train.labels, n_val, np.random.default_rng([self.seed, 0]))
        labels = train.labels[pool_idx]
        if self.train_fraction is not None:
            n = fraction_count("train_fraction", self.train_fraction, self.train_fraction, len(pool_idx))
            keep = pool_idx[self._subset(labels, n, "train_fraction", 1)]
        else:
            keep = pool_idx[self._subset(labels, self.train_subset, "train_subset", 1)]
        if self._subset_spec is not None:  # reads the scores file
            keep = select_subset(keep, train.labels[keep], self._subset_spec, self._scores_files,
                                 np.random.default_rng([self.seed, 3]), len(train.labels))
        return train, val, val_idx, keep

    def _train_images(self, transform: Callable[[Any], Any]) -> Dataset:
        """The training images (after ``train_corruption``) through ``transform``."""
        if self._train_corruption is None:
            return self._train_pool.subset(self._train_indices, transform)
        name, severity = self._train_corruption
        return PositionCorruptedDataset(self._train_pool.subset(self._train_indices, None), name, severity,
                                        seed=train_corruption_seed(self.corruption_seed),
                                        params=self.corruption_params, transform=transform)

    def train_eval_dataset(self) -> Dataset:
        """The training split with the evaluation transform: what ``train_dataset`` holds (same
        images, order and ``train_corruption``), un-augmented, for scoring the training images
        (``HardnessScores``). Items ``(x, y)``; ``source_indices`` are the positions in the full
        training split. Runs ``setup("fit")`` first if needed."""
        if self._train_pool is None:
            self.setup("fit")
        return self._train_images(self._eval_transform())

    def _test_plan(self) -> tuple[Any, np.ndarray]:
        """``(test pool, test positions)``."""
        test = self._pool("test")
        return test, self._subset(test.labels, self.test_subset, "test_subset", 2)

    def setup(self, stage: str | None = None) -> None:
        """Read the data and build the splits that ``stage`` needs (all of them for None)."""
        if self.trainer is None:  # used outside a Trainer: nobody called prepare_data
            self.prepare_data()
        if stage in (None, "fit", "validate") and self.train_dataset is None:
            train, val, val_idx, keep = self._train_plan()
            self._train_pool, self._train_indices = train, keep
            if val_idx is not None:
                self.val_dataset = train.subset(val_idx, self._eval_transform())
            elif val is not None:
                self.val_dataset = val.subset(np.arange(len(val.labels)), self._eval_transform())
            transform = self._train_transform() if self.augment else self._eval_transform()
            self.train_dataset = self._train_images(transform)
        if stage in (None, "test", "predict") and self.test_dataset is None:
            self._test_pool, self._test_indices = self._test_plan()
            self.test_dataset = self._test_pool.subset(self._test_indices, self._eval_transform())
            if self._test_corruption is not None:
                name, severity = self._test_corruption
                self.test_dataset = next(iter(self.corruption_datasets([name], [severity])))[2]

    # SupportsCorruptions hooks
    def _corruption_base(self) -> tuple[Any, np.ndarray | None]:
        if self.test_dataset is None:
            self.setup("test")
        return self._test_pool.subset(self._test_indices, self._raw_transform()), self._test_indices
