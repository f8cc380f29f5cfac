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

:class:`BucketBatchSampler` batches an :class:`EpochSampler`'s order by length (variable-length
items such as utterances: less padding per batch): it cuts this rank's order into chunks of
``bucket_size`` batches, sorts each chunk by length, cuts it into batches and shuffles the
batches from ``(seed, epoch)``. A :class:`ResumableDataLoader` over it resumes by whole batches.

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
from collections.abc import Callable, Iterator, Sequence, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, Sampler

from lightning_sparse._validation import check_int

__all__ = ["BucketBatchSampler", "EpochSampler", "IndexedDataset", "ResumableDataLoader"]


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


class BucketBatchSampler(BatchSampler):
    """Length-bucketed batches of a sampler's order: batches of similar lengths, shuffled.

    At each iteration: take the order ``sampler`` yields (an :class:`EpochSampler`: this rank's
    shard of the epoch's order, a callback's order included), cut it into chunks of
    ``bucket_size * batch_size`` positions, sort each chunk by ``lengths`` (stable), cut the
    sorted chunks into batches of ``batch_size`` (the last batch of the last chunk may be
    shorter, unless ``drop_last``), and shuffle the batches with a generator seeded by
    ``(seed, epoch)`` (the sampler's ``seed`` and ``epoch`` when it has them). So the batches
    hold exactly the sampler's positions, every DDP rank yields ``len(self)`` batches (its
    :class:`EpochSampler` shard has the same length on every rank), and an epoch's batches
    depend only on the seed, the epoch and the sampler's order.

    ``bucket_size=1`` sorts within each batch only (the batches are the sampler's order);
    a large ``bucket_size`` gives the least padding and the least random batches.

    Resume: ``skip`` (set by :class:`ResumableDataLoader`) drops the first ``skip`` batches of
    the next iteration; their items are never loaded. ``set_epoch`` is passed on to the sampler.

    Args:
        sampler: The order to batch (an :class:`EpochSampler` for resumable training loaders).
        batch_size: Items per batch.
        drop_last: Drop the shorter last batch.
        lengths: Length of every item of the dataset (any unit: seconds, samples), indexed by the
            sampler's indices.
        bucket_size: Batches per sorted chunk.
        seed: Seed of the batch shuffle when the sampler has no ``seed``.

    Raises:
        ValueError: If ``batch_size`` or ``bucket_size`` is not a positive integer.

    Examples:
        >>> lengths = [5, 1, 4, 2, 8, 3, 7, 6]
        >>> batches = list(BucketBatchSampler(EpochSampler(8, seed=0), 2, lengths=lengths, bucket_size=2))
        >>> [[lengths[i] for i in b] for b in batches]  # sorted within each batch
        [[1, 3], [2, 5], [6, 8], [4, 7]]
        >>> sorted(sum(batches, [])) == list(range(8))
        True
    """

    def __init__(self, sampler: Sampler | Sequence[int], batch_size: int, drop_last: bool = False, *,
                 lengths: Sequence[float], bucket_size: int = 100, seed: int = 0) -> None:
        check_int("batch_size", batch_size, 1)
        check_int("bucket_size", bucket_size, 1)
        super().__init__(sampler, batch_size, drop_last)
        self.lengths = np.asarray(lengths, dtype=np.float64)
        self.bucket_size = bucket_size
        self.seed = seed
        self.skip = 0  # batches of the next iteration to drop (resume)

    def set_epoch(self, epoch: int) -> None:
        """Pass ``epoch`` on to the sampler."""
        if callable(getattr(self.sampler, "set_epoch", None)):
            self.sampler.set_epoch(epoch)

    def batches(self) -> list[list[int]]:
        """All batches of the current epoch, in the order they are yielded (ignores ``skip``)."""
        order = np.fromiter((int(i) for i in self.sampler), dtype=np.int64)
        chunk = self.bucket_size * self.batch_size
        batches: list[list[int]] = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")].tolist()
            batches += [part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        seed = int(getattr(self.sampler, "seed", self.seed))
        epoch = int(getattr(self.sampler, "epoch", 0))
        permutation = np.random.default_rng([seed, epoch]).permutation(len(batches))
        return [batches[i] for i in permutation]

    def __iter__(self) -> Iterator[list[int]]:
        # a generator: `skip` is read at the first batch, not at `iter()` (the DataLoader's
        # worker iterator calls `iter()` on its batch sampler twice and uses the second)
        skip, self.skip = self.skip, 0
        yield from self.batches()[skip:]


class ResumePosition:
    """The mid-epoch position of a resumable loader over an :class:`EpochSampler`, in checkpoints.

    Shared by :class:`ResumableDataLoader` and the in-memory
    :class:`~lightning_sparse.data.memory.MemoryBatchLoader`: the subclass sets ``resumable``,
    ``sampler`` and ``progress``, calls :meth:`_init_position` once and :meth:`_begin_epoch`
    when an iteration starts (it returns the batches to skip), and counts ``self._done``.
    """

    resumable: bool
    sampler: Any
    progress: Callable[[], int | None] | None

    def _init_position(self) -> None:
        self._epoch: int | None = None  # epoch of the current (or last) iteration
        self._done = 0  # batches of that epoch used so far, skipped ones included
        self._resume: tuple[int, int] | None = None  # (epoch, batches) to skip in the next iteration

    def _begin_epoch(self, epoch: int) -> int:
        """Start iterating ``epoch``: the batches a restored position skips (0 otherwise)."""
        skip = self._resume[1] if self._resume is not None and self._resume[0] == epoch else 0
        self._resume = None
        self._epoch, self._done = epoch, skip
        return skip

    def state_dict(self) -> dict[str, Any]:
        """Where the current epoch stands: ``{"epoch", "batches", "sampler"}`` (empty if not resumable)."""
        if not self.resumable:
            return {}
        if self._resume is not None:  # restored but not iterated yet: keep the restored position
            return {"epoch": self._resume[0], "batches": self._resume[1], "sampler": self.sampler.state_dict()}
        done = self.progress() if self.progress is not None else None
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


class ResumableDataLoader(ResumePosition, DataLoader):
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

    Instead of ``sampler`` and ``batch_size`` it may get a ``batch_sampler`` over an
    :class:`EpochSampler` (``batch_sampler.sampler``) that has a ``skip`` attribute, the batches
    to drop from its next iteration (:class:`BucketBatchSampler`): it then resumes by whole
    batches, with the same state format. The :class:`EpochSampler` is also its ``sampler``, so
    Lightning sees a ``DistributedSampler`` and keeps the loader under DDP.

    With another sampler (Lightning swaps in a sequential one for ``overfit_batches``) it is a
    plain ``DataLoader`` with an empty state.

    Args:
        *args: As ``DataLoader``, with ``sampler`` an :class:`EpochSampler` (or ``batch_sampler``
            a :class:`BucketBatchSampler` over one).
        progress: Returns the batches of the current epoch already trained on, or None.
        **kwargs: As ``DataLoader``.
    """

    def __init__(self, *args: Any, progress: Callable[[], int | None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = getattr(self.batch_sampler, "sampler", None)
        self._skips_batches = (self.batch_size is None and isinstance(inner, EpochSampler)
                               and hasattr(self.batch_sampler, "skip"))
        if self._skips_batches and self.sampler is not inner:
            # DataLoader forbids `sampler` with `batch_sampler` (and setting it afterwards); it is
            # unused for iteration then, and exposing the EpochSampler keeps Lightning from
            # replacing the loader under DDP (it looks for a DistributedSampler there).
            object.__setattr__(self, "sampler", inner)
        self.resumable = isinstance(self.sampler, EpochSampler) and (self.batch_size is not None or self._skips_batches)
        self.progress = progress
        self._init_position()

    def __iter__(self) -> Iterator[Any]:
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        if not self.resumable:
            yield from super().__iter__()
            return
        skip = self._begin_epoch(self.sampler.epoch)
        if self._skips_batches:
            self.batch_sampler.skip = skip
        else:
            self.sampler.skip = skip * self.batch_size
        for batch in super().__iter__():
            self._done += 1
            yield batch


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
