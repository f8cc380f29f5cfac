"""An in-memory batch loader: whole-tensor data sets, batches by index, augmentation per batch.

Small data sets that fit in memory (CIFAR, the UCI digits, UCR/UEA series) pay, on the
per-sample path, a ``__getitem__``, a per-sample transform and ``default_collate`` for every
sample. :class:`MemoryBatchLoader` keeps the decoded data set as one tensor (``uint8`` images
where possible) and builds each batch with one index gather, then runs the augmentation on the
whole batch as tensor ops (:class:`BatchRandomCrop`, :class:`BatchHorizontalFlip`,
:class:`BatchNormalize`, :class:`BatchCompose`).

It keeps the per-sample path's contract (what :class:`~lightning_sparse.data.base.DataModule`
builds with ``loader="memory"``):

* the order: an :class:`~lightning_sparse.data.loading.EpochSampler` (the same seeded per-epoch
  permutation, a callback's sampler, DDP sharding), batched in its order (``drop_last=False``);
  ``sampler.set_epoch`` is what Lightning calls before every epoch;
* batches ``(x, y)``, ``(x, y, index)`` with ``return_index`` (``index`` int64 ``(B,)``, the
  positions in the tensors), and any extra per-sample tensors appended (``(x, y, lengths)`` or
  ``(x, y, index, lengths)``);
* exact mid-epoch resume: ``state_dict`` / ``load_state_dict`` in the format of
  :class:`~lightning_sparse.data.loading.ResumableDataLoader` (``{"epoch", "batches",
  "sampler"}``), which Lightning's fit loop saves and restores; the skipped batches are never
  built. The augmentation of a batch draws from a generator seeded by ``(sampler seed, epoch,
  rank, batch position)`` only, so a resumed epoch gets the very crops and flips of the
  uninterrupted one, independent of the global RNG.

The random transforms draw the parameters of torchvision's per-sample ones
(``v2.RandomCrop(size, padding)``: zero padding, offsets uniform in ``0..2 * padding`` for each
axis; ``v2.RandomHorizontalFlip(p)``: flip with probability ``p``), so the two paths are equal
in distribution (not sample for sample: the random streams differ).

Batches are built in the main process (``num_workers`` does not apply) on the tensors' device.

Examples:
    >>> import torch
    >>> from lightning_sparse.data.loading import EpochSampler
    >>> x, y = torch.arange(10.0), torch.arange(10) % 3
    >>> loader = MemoryBatchLoader(x, y, 4, EpochSampler(10, seed=0), return_index=True)
    >>> len(loader), [b[2].tolist() for b in loader]
    (3, [[4, 1, 7, 5], [3, 9, 0, 8], [6, 2]])
    >>> it = iter(loader)
    >>> _ = next(it)
    >>> resumed = MemoryBatchLoader(x, y, 4, EpochSampler(10, seed=0), return_index=True)
    >>> resumed.load_state_dict(loader.state_dict())
    >>> [b[2].tolist() for b in resumed]
    [[3, 9, 0, 8], [6, 2]]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lightning_sparse.data.loading import EpochSampler, ResumePosition

__all__ = [
    "BatchCompose",
    "BatchFeatureMajor",
    "BatchHorizontalFlip",
    "BatchNormalize",
    "BatchRandomCrop",
    "BatchTransform",
    "MemoryBatchLoader",
    "batch_generator",
    "feature_major_batch",
    "with_feature_major",
]


def batch_generator(seed: int, epoch: int, rank: int, position: int) -> torch.Generator:
    """The CPU generator of one batch's augmentation, from ``(seed, epoch, rank, position)`` only."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(rank), int(position)]).generate_state(2, np.uint64)
    generator = torch.Generator()
    generator.manual_seed(int(state[0]) & ((1 << 63) - 1))
    return generator


class BatchTransform:
    """A transform of a whole batch ``(B, ...)``: ``transform(x, generator) -> x``.

    ``generator`` (a CPU ``torch.Generator``) is the only source of randomness; deterministic
    transforms ignore it.
    """

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def _draw(generator: torch.Generator | None, kind: str, *args: Any) -> torch.Tensor:
    if generator is None:
        generator = torch.default_generator
    return getattr(torch, kind)(*args, generator=generator)


class BatchRandomCrop(BatchTransform):
    """Zero-pad every image of ``(B, C, H, W)`` by ``padding`` and crop ``size`` at a random offset
    per image: ``v2.RandomCrop(size, padding=padding)`` (constant fill 0) on the whole batch.

    Offsets are uniform in ``0..H + 2 * padding - size`` (rows) and likewise for columns, drawn
    independently per image, as torchvision draws them per sample. Any dtype (``uint8`` is
    cheapest: crop before converting to float).

    Args:
        padding: Zero padding on each side.
        size: Side of the square crop; None: the input's own ``(H, W)``.

    Examples:
        >>> x = torch.ones(2, 1, 4, 4, dtype=torch.uint8)
        >>> BatchRandomCrop(2)(x, torch.Generator().manual_seed(0)).shape
        torch.Size([2, 1, 4, 4])
    """

    def __init__(self, padding: int, size: int | None = None) -> None:
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"`padding` must be a non-negative integer, got {padding!r}.")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"`size` must be None or a positive integer, got {size!r}.")
        self.padding, self.size = padding, size

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.padding
        out_h, out_w = (h, w) if self.size is None else (self.size, self.size)
        padded_h, padded_w = h + 2 * p, w + 2 * p
        if out_h > padded_h or out_w > padded_w:
            raise ValueError(f"Crop size {(out_h, out_w)} is larger than the padded image {(padded_h, padded_w)}.")
        top = _draw(generator, "randint", 0, padded_h - out_h + 1, (n,)).to(x.device)
        left = _draw(generator, "randint", 0, padded_w - out_w + 1, (n,)).to(x.device)
        padded = F.pad(x, (p, p, p, p)) if p else x
        rows = top[:, None] + torch.arange(out_h, device=x.device)  # (B, out_h)
        cols = left[:, None] + torch.arange(out_w, device=x.device)  # (B, out_w)
        flat = (rows[:, :, None] * padded_w + cols[:, None, :]).reshape(n, 1, -1).expand(n, c, -1)
        return padded.reshape(n, c, -1).gather(2, flat).reshape(n, c, out_h, out_w)


class BatchHorizontalFlip(BatchTransform):
    """Flip each image of ``(B, ..., W)`` left-right with probability ``p``, independently
    (``v2.RandomHorizontalFlip(p)`` per sample).

    Examples:
        >>> x = torch.arange(3.0).expand(4, 1, 1, 3)
        >>> BatchHorizontalFlip(p=1.0)(x)[0, 0, 0].tolist()
        [2.0, 1.0, 0.0]
    """

    def __init__(self, p: float = 0.5) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"`p` must be a probability in [0, 1], got {p!r}.")
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        chosen = (_draw(generator, "rand", x.shape[0]) < self.p).nonzero().squeeze(1).to(x.device)
        out = x.clone()  # (cheaper than torch.where over the broadcast mask)
        return out.index_copy_(0, chosen, x.index_select(0, chosen).flip(-1))


class BatchNormalize(BatchTransform):
    """``(B, C, ...)`` to float32, normalised per channel: ``(x / 255 - mean) / std`` for integer
    (``uint8``) input, ``(x - mean) / std`` for float input, as ``v2.ToDtype(float32, scale=True)``
    then ``v2.Normalize(mean, std)`` per sample.

    Args:
        mean: Per-channel mean on the ``[0, 1]`` scale (or one value for every channel).
        std: Per-channel standard deviation, positive.
        feature_major: Return the batch in feature-major memory (see :func:`feature_major_batch`);
            integer input is transposed before the conversion (a quarter of the bytes of float).

    Examples:
        >>> x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
        >>> BatchNormalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))(x).unique().tolist()
        [1.0]
        >>> BatchNormalize(0.5, 0.5, feature_major=True)(torch.zeros(4, 3, 2, 2, dtype=torch.uint8)).stride()
        (1, 16, 8, 4)
    """

    def __init__(self, mean: Sequence[float] | float, std: Sequence[float] | float, feature_major: bool = False) -> None:
        mean_t = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std_t = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean_t.numel() != std_t.numel():
            raise ValueError(f"`mean` and `std` must have the same length, got {mean_t.numel()} and {std_t.numel()}.")
        if not bool((std_t > 0).all()):
            raise ValueError(f"`std` must be positive in every channel, got {tuple(std_t.tolist())}.")
        self.mean, self.std = tuple(mean_t.tolist()), tuple(std_t.tolist())
        self._mean, self._std = mean_t, std_t
        self._affine: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # (device, ndim, max) -> (scale, shift)
        self.feature_major = bool(feature_major)

    def __repr__(self) -> str:
        extra = ", feature_major=True" if self.feature_major else ""
        return f"BatchNormalize(mean={self.mean}, std={self.std}{extra})"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if x.is_floating_point():
            mean = self._mean.to(x.device).view(shape)
            std = self._std.to(x.device).view(shape)
            out = x.to(torch.float32)
            out = out.sub_(mean).div_(std) if out is not x else (out - mean).div_(std)
            return feature_major_batch(out) if self.feature_major else out
        # integer input in two passes: x * (1 / (max * std)) in float32 (the product converts), then
        # + (-mean / std); equal to (x / max - mean) / std up to float32 rounding
        key = (x.device, x.ndim, torch.iinfo(x.dtype).max)
        cached = self._affine.get(key)
        if cached is None:
            scale = (1.0 / (key[2] * self._std.double())).float().to(x.device).view(shape)
            shift = (-self._mean.double() / self._std.double()).float().to(x.device).view(shape)
            cached = self._affine[key] = (scale, shift)
        if not self.feature_major or x.ndim < 2:
            return torch.mul(x, cached[0]).add_(cached[1])
        # transpose the integers, then convert: (C, rest, N) contiguous, seen as (N, C, ...)
        xt = _batch_last(x)  # (C, ..., N)
        affine = (-1,) + (1,) * (x.ndim - 1)  # per channel, the leading dimension now
        return _batch_first_view(torch.mul(xt, cached[0].view(affine)).add_(cached[1].view(affine)))


def _batch_last(x: torch.Tensor) -> torch.Tensor:
    """``(N, *rest)`` -> ``(*rest, N)`` contiguous (the truly sparse layers' blocked transpose on
    CPU, ``t().contiguous()`` elsewhere)."""
    from lightning_sparse.nn import kernels

    n = x.shape[0]
    return kernels.feature_major(x.reshape(n, -1)).view(*x.shape[1:], n)


def _batch_first_view(t: torch.Tensor) -> torch.Tensor:
    """``(*rest, N)`` contiguous seen as ``(N, *rest)``: the batch index fastest in memory."""
    return t.permute(t.ndim - 1, *range(t.ndim - 1))


def feature_major_batch(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``(N, ...)`` with the same values in feature-major memory: the batch index varies
    fastest (strides ``(1, ..., N)``), so ``x.flatten(1)`` is the transpose of a contiguous
    ``(features, N)`` matrix -- what a truly sparse first layer reads without a copy (a
    :class:`~lightning_sparse.nn.SparseLinear` after a flatten). Convolutions run slower on it.

    Examples:
        >>> x = torch.arange(6.0).view(2, 3)
        >>> y = feature_major_batch(x)
        >>> torch.equal(y, x), y.stride()
        (True, (1, 2))
    """
    if x.ndim < 2:
        return x
    return _batch_first_view(_batch_last(x))


class BatchFeatureMajor(BatchTransform):
    """A batch step: :func:`feature_major_batch`.

    Examples:
        >>> BatchFeatureMajor()(torch.zeros(4, 2, 3)).stride()
        (1, 12, 4)
    """

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return feature_major_batch(x)


def with_feature_major(transform: Callable[..., torch.Tensor] | None) -> Callable[..., torch.Tensor]:
    """``transform`` followed by :func:`feature_major_batch`: a :class:`BatchNormalize` at its end
    turned feature-major (it transposes before converting to float), else a
    :class:`BatchFeatureMajor` step appended. ``transform`` itself is not modified.

    Examples:
        >>> with_feature_major(BatchNormalize(0.5, 0.5))
        BatchNormalize(mean=(0.5,), std=(0.5,), feature_major=True)
        >>> type(with_feature_major(None)).__name__
        'BatchFeatureMajor'
    """
    import copy

    if transform is None:
        return BatchFeatureMajor()
    if isinstance(transform, BatchNormalize):
        out = copy.copy(transform)
        out.feature_major, out._affine = True, {}
        return out
    if isinstance(transform, BatchCompose) and transform.steps:
        return BatchCompose(*transform.steps[:-1], with_feature_major(transform.steps[-1]))
    return BatchCompose(transform, BatchFeatureMajor())


class BatchCompose(BatchTransform):
    """Apply ``steps`` in order, all drawing from the batch's one generator.

    Examples:
        >>> t = BatchCompose(BatchRandomCrop(4), BatchHorizontalFlip(), BatchNormalize(0.5, 0.25))
        >>> t(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.Generator().manual_seed(0)).dtype
        torch.float32
    """

    def __init__(self, *steps: Callable[..., torch.Tensor]) -> None:
        self.steps = steps

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for step in self.steps:
            x = step(x, generator)
        return x


class _InOrder:
    """The positions ``0..n-1`` in order (evaluation), with the sampler interface the loader uses."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch, self.seed = n, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.n))

    def __len__(self) -> int:
        return self.n


class MemoryBatchLoader(ResumePosition):
    """Batches of in-memory tensors by index gather, with a per-batch transform; resumable.

    Args:
        x: Inputs ``(N, ...)`` (``uint8`` images ``(N, C, H, W)``, float tensors, ...).
        y: Targets ``(N, ...)``.
        batch_size: Samples per batch (the last one may be shorter).
        sampler: The order: an :class:`~lightning_sparse.data.loading.EpochSampler` (resumable,
            seeded per epoch, sharded) or any iterable of positions with a ``len``; None: the
            positions in order (evaluation).
        transform: A batch transform ``transform(x_batch, generator)`` applied to the gathered
            inputs (see :class:`BatchCompose`); None: the inputs as stored.
        return_index: Batches ``(x, y, index, *extras)`` with ``index`` int64 ``(B,)``.
        extras: More per-sample tensors ``(N, ...)`` appended to every batch (e.g. lengths).
        progress: Returns the batches of the current epoch already trained on, or None (as in
            :class:`~lightning_sparse.data.loading.ResumableDataLoader`: the trainer's count,
            since the fit loop prefetches).
        rank: Mixed into the augmentation seed (DDP ranks draw different augmentations);
            default the sampler's ``rank``.

    Raises:
        ValueError: If ``batch_size`` is not positive or the tensors differ in length.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, sampler: Any = None,
                 transform: Callable[..., torch.Tensor] | None = None, return_index: bool = False,
                 extras: Sequence[torch.Tensor] = (), progress: Callable[[], int | None] | None = None,
                 rank: int | None = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}.")
        extras = tuple(extras)
        for name, t in (("y", y), *((f"extras[{k}]", e) for k, e in enumerate(extras))):
            if t.shape[0] != x.shape[0]:
                raise ValueError(f"`{name}` must have as many rows as `x` ({x.shape[0]}), got {t.shape[0]}.")
        self.x, self.y, self.extras = x, y, extras
        self.batch_size = batch_size
        self.sampler = _InOrder(x.shape[0]) if sampler is None else sampler
        self.transform = transform
        self.return_index = return_index
        self.progress = progress
        self.rank = int(getattr(self.sampler, "rank", 0) if rank is None else rank)
        self.resumable = isinstance(self.sampler, EpochSampler)
        self.num_workers = 0  # batches are built in the main process
        self.batch_sampler = None  # what Lightning's loader inspection expects of a loader with a `sampler`
        self._init_position()

    @property
    def dataset_size(self) -> int:
        """Samples held (``N``)."""
        return int(self.x.shape[0])

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        # a generator: nothing (the resume position included) is consumed until the first next(),
        # so Lightning's iterability check and ``set_epoch`` may come first
        return self._batches()

    def batch(self, positions: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """The batch of ``positions`` (int64 ``(B,)``), transformed with ``generator``'s draws."""
        index = positions.to(self.x.device)
        xb = self.x.index_select(0, index)
        if self.transform is not None:
            xb = self.transform(xb, generator)
        out = [xb, self.y.index_select(0, index.to(self.y.device))]
        if self.return_index:
            out.append(positions)
        out += [e.index_select(0, index.to(e.device)) for e in self.extras]
        return tuple(out)

    def _batches(self) -> Iterator[tuple[torch.Tensor, ...]]:
        epoch = int(getattr(self.sampler, "epoch", 0))
        skip = self._begin_epoch(epoch) if self.resumable else 0
        if self.resumable:
            self.sampler.skip = skip * self.batch_size
        order = torch.as_tensor([int(i) for i in self.sampler], dtype=torch.int64)
        seed = int(getattr(self.sampler, "seed", 0))
        self._epoch, self._done = epoch, skip
        for k, start in enumerate(range(0, len(order), self.batch_size)):
            position = skip + k
            generator = batch_generator(seed, epoch, self.rank, position) if self.transform is not None else None
            batch = self.batch(order[start : start + self.batch_size], generator)
            self._done += 1
            yield batch
