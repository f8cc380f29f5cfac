"""The base of every DataModule here: shared arguments, the one loader builder, the train sampler hook.

:class:`DataModule` holds what all modalities share: the arguments ``batch_size``,
``num_workers``, ``seed`` and ``return_index`` (checked at construction), the three datasets
``train_dataset`` / ``val_dataset`` / ``test_dataset`` that a subclass's ``setup`` builds, and
the loaders built from them:

* training: a :class:`~lightning_sparse.data.loading.ResumableDataLoader` over an
  :class:`~lightning_sparse.data.loading.EpochSampler`, so a mid-epoch checkpoint resumes at the
  next unseen batch. The order of epoch ``e`` is a permutation drawn from ``(shuffle seed, e)``,
  the shuffle seed being Lightning's global seed (``seed_everything``, ``PL_GLOBAL_SEED``; 0
  without one), the seed Lightning gives its own ``DistributedSampler``. Under DDP the sampler
  shards itself (same order on every rank, disjoint shards), so Lightning keeps it;
  ``Trainer(use_distributed_sampler=False)`` turns that off.
* a callback may own the training order: :meth:`DataModule.set_train_sampler` installs a sampler
  (say, of the samples a data-pruning rule keeps) that the training loader takes its order from
  instead of the permutation; it gets ``set_epoch`` and travels in checkpoints (``state_dict``)
  if it has them, and is sharded under DDP as above. ``set_train_sampler(None)`` restores the
  permutation. Lightning builds the loader again when ``reload_dataloaders_every_n_epochs`` asks.
* with ``return_index=True`` training items pass through
  :class:`~lightning_sparse.data.loading.IndexedDataset`: batches ``(x, y, index)``, or
  ``(x, y, index, lengths)`` where items carry lengths; ``index`` int64 ``(B,)`` is the position
  in ``train_dataset``. Evaluation batches never carry it.
* validation and test: plain loaders in order; ``val_dataloader`` is ``[]`` once the training
  split exists without a validation one.
* ``loader="memory"``: every split is served by a
  :class:`~lightning_sparse.data.memory.MemoryBatchLoader` instead of a ``DataLoader``: the
  split as tensors (:meth:`DataModule.memory_arrays`), batches by index gather, the
  augmentation on whole batches (:meth:`DataModule.memory_transform`). The training order is
  the same :class:`~lightning_sparse.data.loading.EpochSampler` (permutation, callback sampler,
  DDP shards), batches carry ``index`` with ``return_index``, and its ``state_dict`` resumes
  mid-epoch in the same format; evaluation splits are in order (sharded under DDP as
  Lightning's ``DistributedSampler(shuffle=False)`` would). A split the subclass cannot hold as
  tensors (``memory_arrays`` returns None, e.g. a corrupted test set) falls back to the
  ``DataLoader`` (the training split must be held); only data modules that implement the two hooks accept ``"memory"``
  (``_memory_loader = True``). ``num_workers`` does not apply to it (the main process builds
  the batches).

Subclasses add their own arguments and pass the shared ones on (``**kwargs``), which
LightningCLI (jsonargparse) follows, so ``--print_config`` shows all of them.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lightning_sparse._validation import check_bool, check_int
from lightning_sparse.data.loading import EpochSampler, IndexedDataset, ResumableDataLoader
from lightning_sparse.data.memory import MemoryBatchLoader, with_feature_major

__all__ = ["BATCH_LAYOUTS", "LOADERS", "DataModule", "check_count"]

LOADERS: tuple[str, ...] = ("dataset", "memory")
"""The values of ``loader``: the per-sample ``DataLoader`` path, or the in-memory batch loader."""

BATCH_LAYOUTS: tuple[str, ...] = ("batch_major", "feature_major")
"""The values of ``batch_layout``: the memory order of the in-memory loader's input batches."""


def check_count(name: str, value: Any, low: int, allow_none: bool = False) -> Any:
    """:func:`~lightning_sparse._validation.check_int` worded as "a positive / non-negative integer".

    Examples:
        >>> check_count("num_workers", -1, 0)
        Traceback (most recent call last):
        ...
        ValueError: `num_workers` must be a non-negative integer, got -1.
    """
    try:
        return check_int(name, value, low, allow_none=allow_none)
    except ValueError:
        kind = "a positive" if low >= 1 else "a non-negative"
        extra = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be {kind} integer{extra}, got {value!r}.") from None


class DataModule(L.LightningDataModule):
    """Shared arguments, loaders and the callback-owned training sampler (see the module docstring).

    Args:
        batch_size: Samples per batch for every split (``None`` where a subclass resolves it).
        num_workers: DataLoader worker processes (0 loads in the main process).
        seed: Seed of the splits and subsets.
        return_index: Training batches also carry each sample's index in ``train_dataset``.
        loader: ``"dataset"`` (a ``DataLoader`` over the per-sample dataset) or ``"memory"``
            (a :class:`~lightning_sparse.data.memory.MemoryBatchLoader` over the split held as
            tensors, augmented per batch; only for data modules that provide it).
        batch_layout: The memory order of the input batches of ``loader="memory"``:
            ``"batch_major"`` (contiguous, as collated) or ``"feature_major"`` (the batch index
            fastest, :func:`~lightning_sparse.data.memory.feature_major_batch`: the layout a
            truly sparse first layer reads without a transpose; slower for convolutions). The
            values are the same either way.

    Raises:
        ValueError: If an argument is out of range, ``loader="memory"`` is given to a data
            module without the in-memory hooks, or ``batch_layout="feature_major"`` without
            ``loader="memory"``.

    Examples:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> dm = DataModule(batch_size=2, return_index=True)
        >>> dm.train_dataset = TensorDataset(torch.arange(6.0), torch.arange(6))
        >>> x, y, index = next(iter(dm.train_dataloader()))
        >>> torch.equal(x.long(), index) and torch.equal(y, index)
        True
        >>> dm.set_train_sampler([5, 4])  # a callback's order (any iterable of indices)
        >>> [b[2].tolist() for b in dm.train_dataloader()]
        [[5, 4]]
    """

    _batch_size_optional = False  # subclasses that resolve ``batch_size=None`` themselves set True
    _memory_loader = False  # subclasses implementing ``memory_arrays`` / ``memory_transform`` set True

    def __init__(self, batch_size: int | None = 64, num_workers: int = 0, seed: int = 0,
                 return_index: bool = False, loader: str = "dataset", batch_layout: str = "batch_major") -> None:
        super().__init__()
        check_count("batch_size", batch_size, 1, allow_none=self._batch_size_optional)
        check_count("num_workers", num_workers, 0)
        check_count("seed", seed, 0)
        check_bool("return_index", return_index)
        if not isinstance(loader, str) or loader not in LOADERS:
            raise ValueError(f"`loader` must be one of {list(LOADERS)}, got {loader!r}.")
        if loader == "memory" and not self._memory_loader:
            raise ValueError(
                f"`loader='memory'` is not supported by {type(self).__name__} (it does not hold its splits as "
                "tensors: no `memory_arrays` / `memory_transform`); use `loader='dataset'`."
            )
        if not isinstance(batch_layout, str) or batch_layout not in BATCH_LAYOUTS:
            raise ValueError(f"`batch_layout` must be one of {list(BATCH_LAYOUTS)}, got {batch_layout!r}.")
        if batch_layout != "batch_major" and loader != "memory":
            raise ValueError(
                f"`batch_layout={batch_layout!r}` needs `loader='memory'` (the per-sample DataLoader collates "
                f"contiguous batches), got loader={loader!r}."
            )
        self.save_hyperparameters()  # every argument of the subclasses' __init__ chain too
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.return_index = return_index
        self.loader = loader
        self.batch_layout = batch_layout
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        self._train_sampler: Sampler | None = None

    # ------------------------------------------------------------------ the training order
    @property
    def train_sampler(self) -> Sampler | None:
        """The sampler installed by :meth:`set_train_sampler` (None: the seeded permutation)."""
        return self._train_sampler

    def set_train_sampler(self, sampler: Sampler | None) -> None:
        """Take the training order from ``sampler`` (indices into ``train_dataset``) from the next
        training loader on; ``None`` restores the seeded permutation."""
        self._train_sampler = sampler

    def _shards(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None or not getattr(trainer._accelerator_connector, "use_distributed_sampler", True):
            return 1, 0
        kwargs = trainer.distributed_sampler_kwargs or {}
        return int(kwargs.get("num_replicas", 1)), int(kwargs.get("rank", 0))

    def _batches_trained(self) -> int | None:
        """Batches of the current epoch handed to ``training_step`` (None outside ``fit``)."""
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return None
        return int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)

    # ------------------------------------------------------------------ in-memory hooks
    def memory_arrays(self, split: str) -> tuple[torch.Tensor, ...] | None:
        """The dataset of ``split`` (``"train"``, ``"val"``, ``"test"``) as tensors for
        ``loader="memory"``: ``(x, y, *extras)``, row ``i`` being item ``i`` of the dataset
        before its transform (``x`` as compact as possible, e.g. ``uint8`` images), ``extras``
        per-sample tensors appended to the batches after ``index`` (e.g. lengths). None: this
        split is not held in memory (its loader is the ``DataLoader``). Called after ``setup``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement `memory_arrays` (loader='memory').")

    def memory_transform(self, train: bool) -> Any:
        """The batch transform ``transform(x, generator)`` of the training (``train=True``: the
        augmentation, equal in distribution to the per-sample one) or evaluation split for
        ``loader="memory"``; None: the tensors as they are."""
        raise NotImplementedError(f"{type(self).__name__} does not implement `memory_transform` (loader='memory').")

    def _memory_loader_of(self, name: str, sampler: Any) -> MemoryBatchLoader | None:
        arrays = self.memory_arrays(name)
        if arrays is None:
            return None
        x, y, *extras = arrays
        train = name == "train"
        transform = self.memory_transform(train)
        if self.batch_layout == "feature_major":
            transform = with_feature_major(transform)
        return MemoryBatchLoader(x, y, self.batch_size, sampler, transform=transform,
                                 return_index=self.return_index and train, extras=extras,
                                 progress=self._batches_trained if train else None)

    # ------------------------------------------------------------------ loaders
    def _no_setup(self, name: str) -> RuntimeError:
        return RuntimeError(f"`{type(self).__name__}.setup()` must run before `{name}_dataloader()`.")

    def _loader(self, dataset: Dataset | None, name: str) -> DataLoader | MemoryBatchLoader:
        """The one loader builder: resumable and shuffled for ``"train"``, in order otherwise."""
        if dataset is None:
            raise self._no_setup(name)
        common = dict(batch_size=self.batch_size, num_workers=self.num_workers,
                      persistent_workers=self.num_workers > 0)
        replicas, rank = self._shards()
        if name != "train":
            if self.loader == "memory":
                sampler = EpochSampler(len(dataset), 0, None, replicas, rank, shuffle=False) if replicas > 1 else None
                memory = self._memory_loader_of(name, sampler)
                if memory is not None:
                    return memory
            return DataLoader(dataset, shuffle=False, **common)
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        sampler = EpochSampler(len(dataset), seed, self._train_sampler, replicas, rank)
        if self.loader == "memory":
            memory = self._memory_loader_of(name, sampler)
            if memory is None:
                raise ValueError(f"`loader='memory'`: {type(self).__name__} cannot hold this training split in "
                                 "memory (`memory_arrays('train')` is None); use `loader='dataset'`.")
            return memory
        data = IndexedDataset(dataset) if self.return_index else dataset
        return ResumableDataLoader(data, sampler=sampler, progress=self._batches_trained, **common)

    def train_dataloader(self) -> DataLoader:
        """Batches of the training split in the epoch's order; resumable mid-epoch."""
        return self._loader(self.train_dataset, "train")

    def val_dataloader(self) -> DataLoader | list:
        """Batches of the validation split, in order; ``[]`` when there is none."""
        if self.val_dataset is None and self.train_dataset is not None:
            return []
        return self._loader(self.val_dataset, "val")

    def test_dataloader(self) -> DataLoader:
        """Batches of the test split, in order."""
        return self._loader(self.test_dataset, "test")
