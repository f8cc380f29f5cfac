"""The data of unsupervised domain adaptation: labelled source and unlabelled target batches.

:class:`DomainAdaptationDataModule` pairs a source and a target :class:`~.domains.Domain` in one
of the four settings of :mod:`~.settings` (closed, partial, open, universal) and serves:

* **training batches**: dicts ``{"source": (B, C, H, W), "source_label": int64 (B,),
  "target": (B, C, H, W)}``, the source with its label remapped to ``0..K-1`` (``K`` the number
  of source classes, in sorted order of their global indices), the target **without** any label
  (unsupervised). Item ``i`` of the paired training set is source sample ``i % n_s`` and target
  sample ``perm[i % n_t]`` (``perm`` a permutation seeded by ``seed``); its length is
  ``max(n_s, n_t)``. The base's shuffled, resumable :class:`~lightning_sparse.data.loading.EpochSampler`
  gives fresh random source and target batches every epoch, and a mid-epoch checkpoint resumes
  at the next unseen batch, as for every DataModule of the package.
* **validation and test batches**: tuples ``(x, y)`` of the target domain with the evaluation
  transform, ``y`` the sample's source index ``0..K-1`` when its class is a source class and
  ``K`` (the "unknown" label) when the class is private to the target. The UDA protocol trains on
  the unlabelled target data and evaluates on the same target data with its labels (the labels
  are never seen in training): by default all three use ``target_split``; ``test_split`` may
  name a held-out split of the target instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_sparse._validation import check_choice
from lightning_sparse.data.base import DataModule
from lightning_sparse.data.domain.domains import Domain, build_domain
from lightning_sparse.data.domain.settings import BENCHMARKS, SETTINGS, ClassSplit, class_split, standard_split

__all__ = ["DomainAdaptationDataModule", "PairedDomains", "Relabelled", "dataset_labels"]


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """The ``(N,)`` int64 global labels of a domain's dataset (its ``labels``, else read item by item)."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [int(dataset[i][1]) for i in range(len(dataset))]
    return np.asarray(labels, dtype=np.int64)


class Relabelled(Dataset):
    """The items ``positions`` of ``dataset`` with new labels: item ``(x, labels[j])``."""

    def __init__(self, dataset: Dataset, positions: np.ndarray, labels: np.ndarray) -> None:
        self.dataset, self.positions = dataset, np.asarray(positions, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, j: int) -> tuple[Any, int]:
        x, _ = self.dataset[int(self.positions[j])]
        return x, int(self.labels[j])


class PairedDomains(Dataset):
    """Source and target items side by side; item ``i`` = ``{"source", "source_label", "target"}``.

    Source sample ``i % len(source)``, target sample ``perm[i % len(target)]``; the length is the
    larger of the two. The target's labels are dropped.
    """

    def __init__(self, source: Dataset, target: Dataset, seed: int = 0) -> None:
        self.source, self.target = source, target
        self.perm = np.random.default_rng(seed).permutation(len(target))

    def __len__(self) -> int:
        return max(len(self.source), len(self.target))

    def __getitem__(self, i: int) -> dict[str, Any]:
        xs, ys = self.source[i % len(self.source)]
        xt, _ = self.target[int(self.perm[i % len(self.target)])]
        return {"source": xs, "source_label": ys, "target": xt}


def _first_difference(a: list[str], b: list[str]) -> str:
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"class {k} is {x!r} in the source and {y!r} in the target"
    return f"the source has {len(a)} classes and the target {len(b)}"


class DomainAdaptationDataModule(DataModule):
    """Source / target data of unsupervised domain adaptation (see the module docstring).

    Args:
        source: The labelled source :class:`~.domains.Domain` (or its ``class_path`` /
            ``init_args`` dict).
        target: The unlabelled target domain; it must have the same ``classes`` list.
        source_classes: Source classes, as global indices or class names; None: every class
            (unless ``benchmark`` is given).
        target_classes: Target classes, likewise.
        setting: One of ``closed``, ``partial``, ``open``, ``universal``; with explicit (or
            default) class lists it must be the setting they form; with ``benchmark`` it picks
            the split of :func:`~.settings.standard_split`.
        benchmark: ``office31``, ``officehome``, ``visda`` or ``digits``: take the class lists of
            ``standard_split(benchmark, setting)`` (``setting`` required, explicit lists not allowed).
        source_split: The source domain's split to train on (and of ``source_eval``).
        target_split: The target domain's split to adapt to and to validate on.
        test_split: The target split of ``test_dataset``; None: ``target_split`` (the UDA protocol).
        batch_size: Samples per batch (per domain for training batches).
        **kwargs: ``num_workers`` and ``seed`` (of the target permutation): see
            :class:`~lightning_sparse.data.base.DataModule`. ``return_index=True`` is not
            supported (training batches are dicts).

    Attributes:
        num_classes: ``K``, the classifier size (the number of source classes).
        unknown_label: ``K``, the label of target-private classes in evaluation batches.
        setting: The UDA setting.
        split: The :class:`~.settings.ClassSplit`.
        class_names: Names of the ``K`` source classes, in output order.
        in_channels: Channels of the images.

    All of these are known at construction, before ``setup`` (a recipe can link them to the
    task); construction reads no file for domains whose class list is a constant (Office-31,
    Office-Home, VisDA-2017, the digit domains, an image list with ``classes``), so a recipe builds
    without the data; DomainNet and an image list without ``classes`` read their lists for the
    class list. After ``setup``: ``train_dataset`` (:class:`PairedDomains`), ``val_dataset``, ``test_dataset``,
    ``source_train`` (source, training transform, labels ``0..K-1``), ``target_train`` (target,
    training transform, global labels kept for inspection only), ``source_eval`` (source,
    evaluation transform, labels ``0..K-1``).

    Raises:
        ValueError: Naming the argument, if anything is malformed or inconsistent.
        FileNotFoundError: At ``setup`` (the domains index their files there), if a domain's files
            are missing (naming the path); at construction only for a domain whose class list comes
            from its files (DomainNet, an image list without ``classes``).

    Examples:
        >>> from lightning_sparse.data.domain import UCIDigitsDomain
        >>> dm = DomainAdaptationDataModule(UCIDigitsDomain(image_size=16), UCIDigitsDomain(image_size=16),
        ...                                 benchmark="digits", setting="partial", batch_size=8)
        >>> dm.num_classes, dm.setting, dm.split.target_classes
        (10, 'partial', (0, 1, 2, 3, 4))
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> {k: tuple(v.shape) for k, v in batch.items()}
        {'source': (8, 1, 16, 16), 'source_label': (8,), 'target': (8, 1, 16, 16)}
        >>> ys = torch.cat([y for _, y in dm.test_dataloader()])
        >>> len(dm.train_dataset), int(ys.min()), int(ys.max())
        (1797, 0, 4)
    """

    def __init__(self, source: Domain, target: Domain, source_classes: Sequence[int | str] | None = None,
                 target_classes: Sequence[int | str] | None = None, setting: str | None = None,
                 benchmark: str | None = None, source_split: str = "all", target_split: str = "all",
                 test_split: str | None = None, batch_size: int = 32, **kwargs: Any) -> None:
        if kwargs.get("return_index"):
            raise ValueError("`return_index` must be False for DomainAdaptationDataModule: its training batches are "
                             "dicts {'source', 'source_label', 'target'}, got True.")
        super().__init__(batch_size=batch_size, **kwargs)
        self.source, self.target = build_domain("source", source), build_domain("target", target)
        for key, domain in (("source", self.source), ("target", self.target)):  # small, weights-only-loadable
            self.hparams[key] = domain.config()
            self._hparams_initial[key] = domain.config()
        names, other = self.source.classes, self.target.classes
        if list(names) != list(other):
            raise ValueError("`source` and `target` must have the same `classes` list, but "
                             f"{_first_difference(list(names), list(other))}.")
        self.source_split = self.source.check_split("source_split", source_split)
        self.target_split = self.target.check_split("target_split", target_split)
        self.test_split = None if test_split is None else self.target.check_split("test_split", test_split)
        if setting is not None:
            check_choice("setting", setting, SETTINGS)
        if benchmark is not None:
            check_choice("benchmark", benchmark, BENCHMARKS)
            if setting is None:
                raise ValueError(f"`setting` must be one of {SETTINGS} when `benchmark` is given, got None.")
            if source_classes is not None or target_classes is not None:
                raise ValueError("`source_classes` and `target_classes` must be None when `benchmark` is given "
                                 f"(it sets them), got {source_classes!r} and {target_classes!r}.")
            source_classes, target_classes = standard_split(benchmark, setting)
            if max(source_classes + target_classes) >= len(names):
                top = max(source_classes + target_classes)
                raise ValueError(f"`benchmark` {benchmark!r} uses classes up to {top}, but the domains have "
                                 f"{len(names)} classes.")
        self.benchmark = benchmark
        src = self._indices("source_classes", source_classes)
        tgt = self._indices("target_classes", target_classes)
        try:
            self.split: ClassSplit = class_split(src, tgt)
        except ValueError as err:
            raise ValueError(f"{err} (class names: {[names[c] for c in src]} and {[names[c] for c in tgt]})") from None
        if setting is not None and setting != self.split.setting:
            raise ValueError(f"`setting` must be {self.split.setting!r}, the setting of `source_classes` and "
                             f"`target_classes` (shared {len(self.split.shared)}, source-private "
                             f"{len(self.split.source_private)}, target-private {len(self.split.target_private)}), "
                             f"got {setting!r}.")
        self.setting = self.split.setting
        self.num_classes = self.split.num_known
        self.unknown_label = self.split.unknown_label
        self.class_names = [names[c] for c in self.split.source_classes]
        self.in_channels = self.source.in_channels
        self.source_train: Dataset | None = None
        self.target_train: Dataset | None = None
        self.source_eval: Dataset | None = None

    def _indices(self, name: str, classes: Sequence[int | str] | None) -> list[int]:
        names = self.source.classes
        if classes is None:
            return list(range(len(names)))
        if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence) or not classes:
            raise ValueError(f"`{name}` must be None or a non-empty list of class indices or names, got {classes!r}.")
        lookup = {n: k for k, n in enumerate(names)}
        out = []
        for c in classes:
            if isinstance(c, str):
                if c not in lookup:
                    raise ValueError(f"`{name}` must name classes of the domains ({names[:8]}"
                                     f"{' ...' if len(names) > 8 else ''}), got {c!r}.")
                c = lookup[c]
            elif isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < len(names):
                raise ValueError(f"`{name}` must hold class indices in 0..{len(names) - 1} or class names, got {c!r}.")
            out.append(int(c))
        if len(set(out)) != len(out):
            raise ValueError(f"`{name}` must not repeat a class, got {classes!r}.")
        return sorted(out)

    def _filtered(self, dataset: Dataset, classes: Sequence[int], code: Any) -> Relabelled:
        labels = dataset_labels(dataset)
        keep = np.flatnonzero(np.isin(labels, list(classes)))
        return Relabelled(dataset, keep, np.asarray([code(int(y)) for y in labels[keep]], dtype=np.int64))

    def setup(self, stage: str | None = None) -> None:
        """Build the source and target datasets of every stage (once).

        Raises:
            FileNotFoundError, ValueError: From the domains' first ``dataset`` calls (a file-backed
                domain indexes its files there), or if a split holds no sample of the chosen classes.
        """
        if self.train_dataset is not None:
            return
        split = self.split
        index = split.source_index.__getitem__
        self.source_train = self._filtered(self.source.dataset(self.source_split, train=True),
                                           split.source_classes, index)
        self.source_eval = self._filtered(self.source.dataset(self.source_split, train=False),
                                          split.source_classes, index)
        self.target_train = self._filtered(self.target.dataset(self.target_split, train=True),
                                           split.target_classes, int)
        for name, value, data in (("source_split", self.source_split, self.source_train),
                                  ("target_split", self.target_split, self.target_train)):
            if len(data) == 0:
                raise ValueError(f"`{name}` must hold samples of the chosen classes, got {value!r} (none).")
        self.train_dataset = PairedDomains(self.source_train, self.target_train, self.seed)
        self.val_dataset = self._filtered(self.target.dataset(self.target_split, train=False),
                                          split.target_classes, split.target_label)
        test_split = self.target_split if self.test_split is None else self.test_split
        self.test_dataset = (self.val_dataset if test_split == self.target_split else self._filtered(
            self.target.dataset(test_split, train=False), split.target_classes, split.target_label))
