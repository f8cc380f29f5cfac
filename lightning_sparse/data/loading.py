"""Resumable training loaders: a seeded, sharded per-epoch sampler and a stateful DataLoader.

Lightning (2.x) saves the ``state_dict()`` of every training loader that has one into each
checkpoint and hands it back to ``load_state_dict()`` on resume, before the resumed epoch is
iterated. :class:`ResumableDataLoader` records there the sampler's epoch and seed and the number
of batches of that epoch already trained on; after ``load_state_dict`` its next iteration of the
same epoch starts right after them (the skipped batches' indices are dropped in the sampler, their
data are never loaded), so a run resumed from a mid-epoch checkpoint sees exactly the batches an
uninterrupted run would have seen, with ``num_workers=0`` or more.

:class:`EpochSampler` draws the order of an epoch from ``(seed, epoch)`` alone (a permutation as
``torch.utils.data.DistributedSampler`` draws it) or takes it from another sampler (for instance
one a data-pruning callback installs), and shards it over the DDP ranks: every rank computes the
same order and keeps positions ``rank, rank + world_size, ...`` (the order padded with its first
items to a multiple of ``world_size``, as ``DistributedSampler``). It subclasses
``DistributedSampler``, so Lightning leaves it in place under DDP instead of wrapping it.

Examples:
    >>> loader = ResumableDataLoader(list(range(10)), batch_size=3, sampler=EpochSampler(10, seed=0))
    >>> it = iter(loader)
    >>> first = next(it).tolist()
    >>> state = loader.state_dict()
    >>> resumed = ResumableDataLoader(list(range(10)), batch_size=3, sampler=EpochSampler(10, seed=0))
    >>> resumed.load_state_dict(state)
    >>> [b.tolist() for b in resumed] == [b.tolist() for b in it]
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

__all__ = ["EpochSampler", "IndexedDataset", "ResumableDataLoader"]


class EpochSampler(DistributedSampler):
    """The training order of one epoch, from ``(seed, epoch)`` or from ``source``, sharded over ranks.

    Args:
        num_items: Items in the dataset (used when ``source`` is None).
        seed: Seed of the permutation; epoch ``e`` uses ``seed + e`` as ``DistributedSampler``.
        source: A sampler whose order to use instead of the seeded permutation; its ``set_epoch``
            (if any) is called with each epoch, and its order must be the same on every rank
            (sharding happens here). Its ``state_dict`` / ``load_state_dict`` (if any) travel
            with this sampler's state.
        num_replicas: DDP world size (1 outside DDP).
        rank: This process's global rank.
        shuffle: Permute (else the items in order); ignored with ``source``.

    Examples:
        >>> a, b = EpochSampler(5, seed=3, num_replicas=2, rank=0), EpochSampler(5, seed=3, num_replicas=2, rank=1)
        >>> len(a), sorted(set(a) | set(b))
        (3, [0, 1, 2, 3, 4])
    """

    def __init__(self, num_items: int, seed: int = 0, source: Sampler | None = None, num_replicas: int = 1,
                 rank: int = 0, shuffle: bool = True) -> None:
        super().__init__(range(num_items), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=False)
        self.source = source
        self.skip = 0  # positions of this rank's order to drop in the next iteration (resume)

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` (Lightning calls this before every epoch)."""
        self.epoch = epoch
        if self.source is not None and callable(getattr(self.source, "set_epoch", None)):
            self.source.set_epoch(epoch)

    def order(self) -> list[int]:
        """The full order of the current epoch (every rank's positions), before sharding."""
        if self.source is not None:
            return [int(i) for i in self.source]
        if not self.shuffle:
            return list(range(len(self.dataset)))
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return torch.randperm(len(self.dataset), generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        if self.num_replicas > 1 and order:
            total = math.ceil(len(order) / self.num_replicas) * self.num_replicas
            order = (order * math.ceil(total / len(order)))[:total]
            order = order[self.rank :: self.num_replicas]
        skip, self.skip = self.skip, 0
        return iter(order[skip:])

    def __len__(self) -> int:
        n = len(self.source) if isinstance(self.source, Sized) else len(self.dataset)
        return math.ceil(n / self.num_replicas)

    def state_dict(self) -> dict[str, Any]:
        """``epoch``, ``seed`` and the ``source`` sampler's state (if it has one)."""
        state: dict[str, Any] = {"epoch": self.epoch, "seed": self.seed}
        if self.source is not None and callable(getattr(self.source, "state_dict", None)):
            state["source"] = self.source.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.seed = int(state["seed"])
        self.set_epoch(int(state["epoch"]))
        if "source" in state and callable(getattr(self.source, "load_state_dict", None)):
            self.source.load_state_dict(state["source"])


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over an :class:`EpochSampler` whose state resumes mid-epoch.

    ``state_dict()`` is ``{"epoch", "batches", "sampler"}``: the epoch being iterated, the
    batches of it already used, the sampler's state. ``batches`` counts the batches this loader
    yielded, unless ``progress`` (a callable) returns a count: the training loop prefetches
    batches, so the DataModules pass the trainer's count of batches handed to ``training_step``.
    After ``load_state_dict(state)`` the next iteration of epoch ``state["epoch"]`` skips its
    first ``state["batches"]`` batches without loading them; an iteration of another epoch (the
    checkpoint was taken at the end of one) starts from its beginning.

    The underlying iterator (and with ``num_workers > 0`` the first requests to the workers) is
    only created at the first ``next()``, after Lightning's ``set_epoch``.

    With another sampler (Lightning swaps in a sequential one for ``overfit_batches``) it is a
    plain ``DataLoader`` with an empty state.

    Args:
        *args: As ``DataLoader``, with ``sampler`` an :class:`EpochSampler`.
        progress: Returns the batches of the current epoch already trained on, or None.
        **kwargs: As ``DataLoader``.
    """

    def __init__(self, *args: Any, progress: Callable[[], int | None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.resumable = isinstance(self.sampler, EpochSampler) and self.batch_size is not None
        self.progress = progress
        self._epoch: int | None = None  # epoch of the current (or last) iteration
        self._done = 0  # batches of that epoch used so far, skipped ones included
        self._resume: tuple[int, int] | None = None  # (epoch, batches) to skip in the next iteration

    def __iter__(self) -> Iterator[Any]:
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        if not self.resumable:
            yield from super().__iter__()
            return
        epoch, skip = self.sampler.epoch, 0
        if self._resume is not None and self._resume[0] == epoch:
            skip = self._resume[1]
        self._resume = None
        self.sampler.skip = skip * self.batch_size
        self._epoch, self._done = epoch, skip
        for batch in super().__iter__():
            self._done += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Where the current epoch stands: ``{"epoch", "batches", "sampler"}``."""
        if not self.resumable:
            return {}
        done = self.progress() if self.progress is not None else None
        if self._resume is not None:  # restored but not iterated yet: keep the restored position
            return {"epoch": self._resume[0], "batches": self._resume[1], "sampler": self.sampler.state_dict()}
        return {
            "epoch": self.sampler.epoch if self._epoch is None else self._epoch,
            "batches": self._done if done is None else int(done),
            "sampler": self.sampler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next iteration of ``state["epoch"]`` continue after ``state["batches"]`` batches."""
        if not state or not self.resumable:
            return
        self.sampler.load_state_dict(state["sampler"])
        self._resume = int(state["epoch"]), int(state["batches"])


class IndexedDataset(Dataset):
    """Items ``(x, y, index, *rest)``: a dataset's items with their position inserted third.

    The one ``return_index`` wrapper of the DataModules: ``(x, y)`` becomes ``(x, y, index)`` and
    ``(x, y, lengths)`` becomes ``(x, y, index, lengths)``, ``index`` an int64 scalar tensor (a
    ``(B,)`` tensor after collation), the key data-pruning callbacks score samples by. Other
    attributes are those of the wrapped dataset.

    Examples:
        >>> IndexedDataset([("a", 0), ("b", 1)])[1]
        ('b', 1, tensor(1))
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        item = tuple(self.dataset[i])
        return (*item[:2], torch.tensor(i, dtype=torch.int64), *item[2:])

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)
