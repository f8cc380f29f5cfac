"""Multi-task classification data: one :class:`~.domains.Domain` per task, train / val / trval / test splits.

:class:`MultiTaskDataModule` serves the data of multi-task learning with a bilevel loop as MOML
runs it (Ye et al., "Multi-Objective Meta Learning", NeurIPS 2021, arXiv:2102.07121; code
Baijiong-Lin/MOML, ``MTL/create_dataset.py``): every task is a data set of its own (Office-31:
amazon, dslr and webcam are three 31-class tasks; Office-Home: Art, Clipart, Product and
Real_World are four 65-class tasks), each split at random into **train**, **val** and **test**
(60 / 20 / 20 % in the paper), plus **trval** = train + val. A step of the official loop draws a
train batch of every task (the inner step), a val batch of every task (the upper-level
objectives) and a trval batch of every task (the real weight update).

Splits are stratified by class and seeded (:func:`~lightning_sparse.data.splits.stratified_take`,
the package's one subset rule), task by task: ``test`` takes ``round(test_fraction * N_k)`` of
task ``k``'s ``N_k`` samples, ``val`` then ``round(val_fraction * N_k)`` of the rest, ``train`` is
what is left. Labels are each task's own (the global labels of its domain, ``0..K_k-1``); tasks may
have different class counts.

Batches:

* **training** (one loader, the base's shuffled, resumable
  :class:`~lightning_sparse.data.loading.EpochSampler`): dicts
  ``{"train": [TaskSample(x, y) per task], "val": [...], "trval": [...]}``; after collation
  ``batch["train"][k]`` is a :class:`TaskSample` (a named tuple) ``(x (B, C, H, W) float32,
  y (B,) int64)`` of task ``k``. Item ``i`` of the paired training set
  (:class:`MultiTaskPairs`) is, for every task ``k`` and split ``s``, sample
  ``perm[k][s][i % n_k_s]`` (``perm`` seeded permutations); its length is the largest trval split.
  Shuffled indices give fresh random batches of every task and split each epoch, and a mid-epoch
  checkpoint resumes at the next unseen batch. ``train`` and ``trval`` items carry the domain's
  training transform (``dataset(split, train=True)``), ``val`` items its evaluation transform.
* **validation / test**: a list of loaders, one per task (Lightning's multiple dataloaders,
  ``dataloader_idx`` = task index), batches ``(x, y)`` of the task's val / test split with the
  evaluation transform, in order.

On this machine (no Office data), three real digit data sets sharing the classes ``"0"``..``"9"``
stand in for Office-31's three tasks: MNIST handwriting, UCI optical scans and FSDD spoken digits
as log-mel images, all 1-channel 16x16::

    MultiTaskDataModule([MNISTDomain(mnist_path, image_size=16, max_samples=2000),
                         UCIDigitsDomain(image_size=16),
                         FSDDSpeakerDomain(fsdd_dir, speakers=["george", "jackson", "lucas", "nicolas",
                                                               "theo", "yweweler"], n_mels=16, frames=16)],
                        task_names=["mnist", "uci", "fsdd"])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from torch.utils.data import DataLoader, Dataset

from lightning_sparse._validation import check_number
from lightning_sparse.data.base import DataModule
from lightning_sparse.data.domain.datamodule import Relabelled, dataset_labels
from lightning_sparse.data.domain.domains import Domain, build_domain
from lightning_sparse.data.splits import stratified_take

__all__ = ["MULTITASK_SPLITS", "MultiTaskDataModule", "MultiTaskPairs", "TaskSample"]

MULTITASK_SPLITS: tuple[str, ...] = ("train", "val", "trval", "test")
"""The splits of every task; ``trval`` = ``train`` + ``val``."""

_TRAINING_SPLITS = ("train", "val", "trval")


class TaskSample(NamedTuple):
    """One task's ``(x, y)``: a sample, or (after the default collation) a batch ``(B, C, H, W)``, ``(B,)``."""

    x: Any
    y: Any


class MultiTaskPairs(Dataset):
    """Every task's train, val and trval samples side by side.

    Item ``i`` = ``{"train": [TaskSample per task], "val": [...], "trval": [...]}`` with sample
    ``perm[k][s][i % len(splits[k][s])]`` of task ``k`` and split ``s``; the length is the
    largest trval split. ``perm`` holds permutations drawn from ``seed`` (tasks in order, then
    train, val, trval).

    Args:
        splits: Per task, ``{"train", "val", "trval"}`` datasets of ``(x, y)`` items.
        seed: Seed of the permutations.
    """

    def __init__(self, splits: Sequence[dict[str, Dataset]], seed: int = 0) -> None:
        self.splits = [{s: task[s] for s in _TRAINING_SPLITS} for task in splits]
        rng = np.random.default_rng(seed)
        self.perm = [{s: rng.permutation(len(task[s])) for s in _TRAINING_SPLITS} for task in self.splits]

    def __len__(self) -> int:
        return max(len(task["trval"]) for task in self.splits)

    def __getitem__(self, i: int) -> dict[str, list[TaskSample]]:
        out: dict[str, list[TaskSample]] = {s: [] for s in _TRAINING_SPLITS}
        for task, perm in zip(self.splits, self.perm):
            for s in _TRAINING_SPLITS:
                x, y = task[s][int(perm[s][i % len(perm[s])])]
                out[s].append(TaskSample(x, int(y)))
        return out


def _default_names(tasks: list[Domain]) -> list[str]:
    """Each domain's ``domain`` name (Office-31, Office-Home) when all have distinct ones, else ``task0``, ..."""
    names = [getattr(t, "domain", None) for t in tasks]
    if all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names):
        return list(names)
    return [f"task{k}" for k in range(len(tasks))]


class MultiTaskDataModule(DataModule):
    """Per-task train / val / trval / test splits and MOML's bilevel training batches (see the module docstring).

    Args:
        tasks: One :class:`~.domains.Domain` per task (or its ``class_path`` / ``init_args`` dict);
            all with the same ``in_channels``.
        task_names: One distinct name per task; None: the domains' ``domain`` names when they are
            distinct (Office-31, Office-Home), else ``task0``, ``task1``, ...
        split: The split of every domain that is divided into the four task splits (``"all"``).
        val_fraction: Share of each task's samples in ``val``, in ``(0, 1)``.
        test_fraction: Share of each task's samples in ``test``, in ``(0, 1)``; ``val_fraction +
            test_fraction < 1`` (the rest is ``train``). The defaults are the paper's 60 / 20 / 20.
        batch_size: Samples per batch, per task and split.
        **kwargs: ``num_workers`` and ``seed`` (of the splits and the permutations): see
            :class:`~lightning_sparse.data.base.DataModule`. ``return_index=True`` is not
            supported (training batches are dicts).

    Attributes:
        num_tasks: The number of tasks.
        task_names: Their names.
        num_classes_per_task: ``[K_k]``, each task's class count (the size of its head).
        class_names: Each task's class names.
        in_channels: Channels of the images.

    These are known at construction; construction reads no file for domains whose class list is
    a constant (the digit domains, Office-31, Office-Home). After ``setup``: ``task_splits[k][s]``
    for ``s`` in :data:`MULTITASK_SPLITS` (``train`` / ``trval`` with the training transform,
    ``val`` / ``test`` with the evaluation transform; each a
    :class:`~.datamodule.Relabelled` with ``labels``), ``task_positions[k][s]`` (sorted positions
    into the domain's ``split`` dataset), ``train_dataset`` (:class:`MultiTaskPairs`),
    ``val_datasets`` and ``test_datasets`` (one per task).

    Raises:
        ValueError: Naming the argument, if anything is malformed or inconsistent; at ``setup``, if
            a task's split would be empty.

    Examples:
        >>> from lightning_sparse.data.domain import UCIDigitsDomain
        >>> dm = MultiTaskDataModule([UCIDigitsDomain(image_size=8, max_samples=100),
        ...                           UCIDigitsDomain(image_size=8, max_samples=200, seed=1)],
        ...                          task_names=["a", "b"], batch_size=4)
        >>> dm.num_tasks, dm.num_classes_per_task
        (2, [10, 10])
        >>> dm.setup("fit")
        >>> [{s: len(dm.task_splits[k][s]) for s in MULTITASK_SPLITS} for k in range(2)]
        [{'train': 60, 'val': 20, 'trval': 80, 'test': 20}, {'train': 120, 'val': 40, 'trval': 160, 'test': 40}]
        >>> batch = next(iter(dm.train_dataloader()))
        >>> x, y = batch["val"][1]
        >>> len(dm.train_dataset), tuple(x.shape), y.dtype, len(dm.val_dataloader())
        (160, (4, 1, 8, 8), torch.int64, 2)
    """

    def __init__(self, tasks: list[Domain], task_names: list[str] | None = None, split: str = "all",
                 val_fraction: float = 0.2, test_fraction: float = 0.2, batch_size: int = 32,
                 **kwargs: Any) -> None:
        if kwargs.get("return_index"):
            raise ValueError("`return_index` must be False for MultiTaskDataModule: its training batches are "
                             "dicts {'train', 'val', 'trval'}, got True.")
        super().__init__(batch_size=batch_size, **kwargs)
        if isinstance(tasks, (str, bytes, dict)) or not isinstance(tasks, Sequence) or not tasks:
            raise ValueError(f"`tasks` must be a non-empty list of Domains (or their class_path dicts), got {tasks!r}.")
        self.tasks = [build_domain(f"tasks[{k}]", t) for k, t in enumerate(tasks)]
        configs = [t.config() for t in self.tasks]  # small, weights-only-loadable hyper-parameters
        self.hparams["tasks"] = configs
        self._hparams_initial["tasks"] = [dict(c) for c in configs]
        channels = [t.in_channels for t in self.tasks]
        if len(set(channels)) != 1:
            raise ValueError(f"`tasks` must all have the same `in_channels` (one shared network), got {channels}.")
        if task_names is None:
            task_names = _default_names(self.tasks)
        elif (isinstance(task_names, (str, bytes)) or not isinstance(task_names, Sequence)
              or not all(isinstance(n, str) and n for n in task_names)):
            raise ValueError(f"`task_names` must be None or a list of non-empty strings, got {task_names!r}.")
        if len(task_names) != len(self.tasks):
            raise ValueError(f"`task_names` must name each of the {len(self.tasks)} tasks once, got "
                             f"{len(task_names)} names: {list(task_names)!r}.")
        if len(set(task_names)) != len(task_names):
            raise ValueError(f"`task_names` must be distinct, got {list(task_names)!r}.")
        for t in self.tasks:
            t.check_split("split", split)
        check_number("val_fraction", val_fraction, 0.0, 1.0, low_open=True, high_open=True)
        check_number("test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True)
        if val_fraction + test_fraction >= 1.0:
            raise ValueError("`val_fraction` + `test_fraction` must be < 1 (the rest is the train split), got "
                             f"{val_fraction} + {test_fraction}.")
        self.split, self.val_fraction, self.test_fraction = split, val_fraction, test_fraction
        self.task_names = list(task_names)
        self.num_tasks = len(self.tasks)
        self.class_names = [list(t.classes) for t in self.tasks]
        self.num_classes_per_task = [len(c) for c in self.class_names]
        self.in_channels = channels[0]
        self.task_splits: list[dict[str, Relabelled]] | None = None
        self.task_positions: list[dict[str, np.ndarray]] | None = None
        self.val_datasets: list[Dataset] | None = None
        self.test_datasets: list[Dataset] | None = None

    def _positions(self, k: int, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Task ``k``'s positions per split: test, then val from the rest, stratified, seeded by ``(seed, k)``."""
        n = len(labels)
        rng = np.random.default_rng((self.seed, k))
        test, rest = stratified_take(labels, round(self.test_fraction * n), rng)
        val_in_rest, train_in_rest = stratified_take(labels[rest], round(self.val_fraction * n), rng)
        val, train = rest[val_in_rest], rest[train_in_rest]
        out = {"train": train, "val": val, "trval": np.union1d(train, val), "test": test}
        for s, pos in out.items():
            if len(pos) == 0:
                name = {"val": "val_fraction", "test": "test_fraction"}.get(s, "val_fraction` + `test_fraction")
                raise ValueError(f"`{name}` leaves the {s} split of task {self.task_names[k]!r} empty "
                                 f"({n} samples in its {self.split!r} split).")
        return out

    def setup(self, stage: str | None = None) -> None:
        """Split every task (once) and build the paired training set and the per-task evaluation sets.

        Raises:
            FileNotFoundError, ValueError: From the domains' first ``dataset`` calls (a file-backed
                domain indexes its files there), or if a split would be empty.
        """
        if self.train_dataset is not None:
            return
        splits, positions = [], []
        for k, task in enumerate(self.tasks):
            train_data = task.dataset(self.split, train=True)
            eval_data = task.dataset(self.split, train=False)
            labels = dataset_labels(eval_data)
            pos = self._positions(k, labels)
            splits.append({s: Relabelled(train_data if s in ("train", "trval") else eval_data, p, labels[p])
                           for s, p in pos.items()})
            positions.append(pos)
        self.task_splits, self.task_positions = splits, positions
        self.val_datasets = [task["val"] for task in splits]
        self.test_datasets = [task["test"] for task in splits]
        self.train_dataset = MultiTaskPairs(splits, self.seed)

    def _per_task(self, datasets: list[Dataset] | None, name: str) -> list[DataLoader]:
        if datasets is None:
            raise self._no_setup(name)
        return [self._loader(d, name) for d in datasets]

    def val_dataloader(self) -> list[DataLoader]:
        """One loader per task (``dataloader_idx`` = task index): batches ``(x, y)`` of its val split."""
        return self._per_task(self.val_datasets, "val")

    def test_dataloader(self) -> list[DataLoader]:
        """One loader per task (``dataloader_idx`` = task index): batches ``(x, y)`` of its test split."""
        return self._per_task(self.test_datasets, "test")
