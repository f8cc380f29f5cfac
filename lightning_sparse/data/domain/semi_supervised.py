"""Semi-supervised domain adaptation (SSDA): a labelled source, a few labelled target images per class.

:class:`SemiSupervisedDADataModule` serves the data of MME (Saito et al., "Semi-supervised Domain
Adaptation via Minimax Entropy", ICCV 2019, arXiv:1904.06487) and of methods on its protocol
(MOML + MME): the target domain's images are divided per class (closed set: source and target
share their classes) into

* ``labeled_per_class`` **labelled** target images per class (MME's 1-shot / 3-shot protocol),
* ``val_per_class`` more labelled target images per class for **validation** (model selection),
* the rest, **unlabelled**: adapted to without labels in training, and the **test** set (with its
  labels, never seen in training).

The draw is seeded and class-balanced (:func:`~lightning_sparse.data.splits.stratified_take` with
``balanced=True``: exactly that many of every class); every class needs at least
``labeled_per_class + val_per_class`` images.

Batches:

* **training**: dicts ``{"source": (B, C, H, W), "source_label": int64 (B,), "target": (B, C, H, W),
  "target_label": int64 (B,), "target_unlabeled": (B, C, H, W)}``: source images with their
  labels, labelled target images with theirs, unlabelled target images **without** any label.
  Item ``i`` of the paired training set (:class:`SemiSupervisedPairs`) is source sample
  ``i % n_s``, labelled target sample ``perm_l[i % n_l]`` (cycled: the few labelled images come
  back many times an epoch) and unlabelled target sample ``perm_u[i % n_u]``; its length is the
  largest of the three. The base's shuffled, resumable sampler gives fresh batches every epoch and
  resumes mid-epoch. Training items carry the domains' training transforms.
* **validation**: ``(x, y)`` of the target validation images; **test**: ``(x, y)`` of the
  unlabelled target images with their labels; both with the evaluation transform, labels
  ``0..K-1``.

MME's own loader draws unlabelled target batches twice the size of the labelled ones; here all
three parts have ``batch_size`` samples (draw two batches, or double ``batch_size``, to match).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data import Dataset

from lightning_sparse.data.base import check_count
from lightning_sparse.data.domain.datamodule import DomainAdaptationDataModule, Relabelled
from lightning_sparse.data.domain.domains import Domain
from lightning_sparse.data.splits import stratified_take

__all__ = ["SSDA_KEYS", "SemiSupervisedDADataModule", "SemiSupervisedPairs"]

SSDA_KEYS: tuple[str, ...] = ("source", "source_label", "target", "target_label", "target_unlabeled")
"""The keys of an SSDA training batch."""


class SemiSupervisedPairs(Dataset):
    """Source, labelled target and unlabelled target items side by side (item ``i``: see the module docstring).

    Args:
        source: Source ``(x, y)`` items.
        labeled: Labelled target ``(x, y)`` items.
        unlabeled: Unlabelled target items ``(x, y)``; ``y`` is dropped.
        seed: Seed of the two target permutations.
    """

    def __init__(self, source: Dataset, labeled: Dataset, unlabeled: Dataset, seed: int = 0) -> None:
        self.source, self.labeled, self.unlabeled = source, labeled, unlabeled
        rng = np.random.default_rng(seed)
        self.perm_labeled = rng.permutation(len(labeled))
        self.perm_unlabeled = rng.permutation(len(unlabeled))

    def __len__(self) -> int:
        return max(len(self.source), len(self.labeled), len(self.unlabeled))

    def __getitem__(self, i: int) -> dict[str, Any]:
        xs, ys = self.source[i % len(self.source)]
        xl, yl = self.labeled[int(self.perm_labeled[i % len(self.labeled)])]
        xu, _ = self.unlabeled[int(self.perm_unlabeled[i % len(self.unlabeled)])]
        return {"source": xs, "source_label": int(ys), "target": xl, "target_label": int(yl), "target_unlabeled": xu}


class SemiSupervisedDADataModule(DomainAdaptationDataModule):
    """Source / target data of semi-supervised domain adaptation (closed set; see the module docstring).

    Args:
        source: The labelled source :class:`~.domains.Domain` (or its ``class_path`` / ``init_args``
            dict).
        target: The target domain; it must have the same ``classes`` list.
        labeled_per_class: Labelled target images per class (1 or 3 in MME's protocol).
        val_per_class: Further labelled target images per class, for validation (MME: 3).
        source_split: The source domain's split to train on.
        target_split: The target domain's split that is divided into labelled / validation /
            unlabelled images.
        batch_size: Samples per batch (per part for training batches).
        **kwargs: ``source_classes`` / ``target_classes`` / ``setting`` / ``benchmark`` as in
            :class:`~.datamodule.DomainAdaptationDataModule` (they must give the closed setting:
            the same classes in both domains), ``num_workers`` and ``seed`` (of the draw and the
            permutations). ``test_split`` must be None (the test set is the unlabelled part) and
            ``return_index`` False.

    Attributes:
        num_classes: ``K``, the number of (shared) classes; known at construction, like
            ``class_names``, ``in_channels`` and ``split``.

    After ``setup``: ``train_dataset`` (:class:`SemiSupervisedPairs`), ``val_dataset`` (target
    validation images), ``test_dataset`` (the unlabelled target images with their labels),
    ``source_train`` / ``source_eval``, ``target_labeled`` and ``target_unlabeled`` (training
    transform; the latter keeps its ``labels`` for inspection only), and ``target_positions``:
    ``{"labeled", "val", "unlabeled"}``, sorted positions into the target's ``target_split``
    dataset.

    Raises:
        ValueError: Naming the argument, if anything is malformed, the classes are not the same in
            both domains, or (at ``setup``) a class has too few target images.

    Examples:
        >>> from lightning_sparse.data.domain import UCIDigitsDomain
        >>> dm = SemiSupervisedDADataModule(UCIDigitsDomain(image_size=8, max_samples=200),
        ...                                 UCIDigitsDomain(image_size=8, max_samples=100, seed=1),
        ...                                 labeled_per_class=3, batch_size=4)
        >>> dm.num_classes
        10
        >>> dm.setup("fit")
        >>> len(dm.target_labeled), len(dm.val_dataset), len(dm.test_dataset)
        (30, 30, 40)
        >>> sorted(next(iter(dm.train_dataloader())))
        ['source', 'source_label', 'target', 'target_label', 'target_unlabeled']
    """

    def __init__(self, source: Domain, target: Domain, labeled_per_class: int = 3, val_per_class: int = 3,
                 source_split: str = "all", target_split: str = "all", batch_size: int = 32,
                 **kwargs: Any) -> None:
        if kwargs.get("return_index"):
            raise ValueError("`return_index` must be False for SemiSupervisedDADataModule: its training batches are "
                             f"dicts {set(SSDA_KEYS)}, got True.")
        if kwargs.get("test_split") is not None:
            raise ValueError("`test_split` must be None for SemiSupervisedDADataModule (the test set is the "
                             f"unlabelled part of `target_split`), got {kwargs['test_split']!r}.")
        check_count("labeled_per_class", labeled_per_class, 1)
        check_count("val_per_class", val_per_class, 0)
        super().__init__(source, target, source_split=source_split, target_split=target_split,
                         batch_size=batch_size, **kwargs)
        if self.setting != "closed":
            raise ValueError("`source_classes` and `target_classes` must be the same classes for semi-supervised "
                             f"domain adaptation (closed set), got the {self.setting!r} setting "
                             f"({len(self.split.source_classes)} source and {len(self.split.target_classes)} "
                             "target classes).")
        self.labeled_per_class, self.val_per_class = labeled_per_class, val_per_class
        self.target_labeled: Dataset | None = None
        self.target_unlabeled: Dataset | None = None
        self.target_positions: dict[str, np.ndarray] | None = None

    def _draw(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Positions (into the filtered target) of the labelled, validation and unlabelled images."""
        classes, counts = np.unique(labels, return_counts=True)
        need = self.labeled_per_class + self.val_per_class
        short = [(self.class_names[int(c)], int(n)) for c, n in zip(classes, counts) if n < need]
        missing = sorted(set(range(self.num_classes)) - set(classes.tolist()))
        if short or missing:
            where = short[:3] + [(self.class_names[c], 0) for c in missing[:3]]
            raise ValueError(f"`labeled_per_class` + `val_per_class` ({self.labeled_per_class} + {self.val_per_class}) "
                             f"must not exceed the target images of any class in `target_split` "
                             f"{self.target_split!r}, but {len(short) + len(missing)} classes have fewer "
                             f"(class, images): {where}.")
        rng = np.random.default_rng(self.seed)
        k = self.num_classes
        labeled, rest = stratified_take(labels, self.labeled_per_class * k, rng, balanced=True)
        val_in_rest, unl_in_rest = stratified_take(labels[rest], self.val_per_class * k, rng, balanced=True)
        val, unlabeled = rest[val_in_rest], rest[unl_in_rest]
        if len(unlabeled) == 0:
            raise ValueError(f"`labeled_per_class` + `val_per_class` ({need} per class) leave no unlabelled target "
                             f"images in `target_split` {self.target_split!r}.")
        return {"labeled": labeled, "val": val, "unlabeled": unlabeled}

    @staticmethod
    def _part(data: Relabelled, positions: np.ndarray) -> Relabelled:
        """The items ``positions`` of a filtered dataset, flattened onto the domain's dataset."""
        return Relabelled(data.dataset, data.positions[positions], data.labels[positions])

    def setup(self, stage: str | None = None) -> None:
        """Build the source datasets and the labelled / validation / unlabelled target parts (once).

        Raises:
            FileNotFoundError, ValueError: From the domains' first ``dataset`` calls, or if a class
                has too few target images.
        """
        if self.train_dataset is not None:
            return
        split = self.split
        index = split.source_index.__getitem__
        source_train = self._filtered(self.source.dataset(self.source_split, train=True), split.source_classes, index)
        if len(source_train) == 0:
            raise ValueError(f"`source_split` must hold samples of the chosen classes, got {self.source_split!r} "
                             "(none).")
        target_train = self._filtered(self.target.dataset(self.target_split, train=True), split.target_classes, index)
        target_eval = self._filtered(self.target.dataset(self.target_split, train=False), split.target_classes, index)
        parts = self._draw(target_eval.labels)
        self.source_train = source_train
        self.source_eval = self._filtered(self.source.dataset(self.source_split, train=False),
                                          split.source_classes, index)
        self.target_train = target_train
        self.target_labeled = self._part(target_train, parts["labeled"])
        self.target_unlabeled = self._part(target_train, parts["unlabeled"])
        self.val_dataset = self._part(target_eval, parts["val"]) if len(parts["val"]) else None
        self.test_dataset = self._part(target_eval, parts["unlabeled"])
        self.target_positions = {name: target_eval.positions[p] for name, p in parts.items()}
        self.train_dataset = SemiSupervisedPairs(self.source_train, self.target_labeled, self.target_unlabeled,
                                                 self.seed)
