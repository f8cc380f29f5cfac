"""Time-wise pruning of sequences: drop a share of each utterance's frames, then close the gaps.

Data pruning usually removes whole samples; for speech the same budget can be spent *inside*
each sample by removing frames. :func:`time_drop` removes ``round(ratio * length)`` frames of
every sequence's valid part and packs the kept frames to the left, in their original order, so
the sequence gets shorter (and the model cheaper), unlike SpecAugment's time masks (Park et al.
2019, arXiv:1904.08779), which zero frames and keep the length. Labels are untouched.

Two modes:

- ``"point"``: isolated frames, chosen uniformly without replacement;
- ``"chunk"``: contiguous, non-overlapping spans of ``chunk_length`` frames; when
  ``chunk_length`` does not divide the number to drop, one span (at a random place among the
  spans) is shorter, so exactly ``round(ratio * length)`` frames go.

At least one frame of a non-empty sequence is always kept. :class:`TimeDrop` wraps the function
as an ``nn.Module`` without parameters, active in training mode only, whose ``ratio`` a
data-pruning callback may change between epochs (it finds the module among
``pl_module.modules()``).

Torch only: no Lightning import here.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from lightning_sparse._validation import check_choice, check_int, check_number
from lightning_sparse.core.lengths import batch_lengths

__all__ = ["TIME_DROP_MODES", "TimeDrop", "time_drop"]

TIME_DROP_MODES = ("point", "chunk")
"""The allowed values of ``mode``."""


def _check_args(mode: Any, ratio: Any, chunk_length: Any) -> None:
    check_choice("mode", mode, TIME_DROP_MODES)
    check_number("ratio", ratio, 0.0, 1.0, high_open=True)
    check_int("chunk_length", chunk_length, 1)


def _drop_positions(length: int, count: int, mode: str, chunk_length: int,
                    generator: torch.Generator | None) -> Tensor:
    """Indices (sorted, CPU int64) of the ``count`` frames of ``[0, length)`` to drop."""
    if mode == "point":
        return torch.randperm(length, generator=generator)[:count].sort().values
    num_chunks = math.ceil(count / chunk_length)
    sizes = torch.full((num_chunks,), chunk_length, dtype=torch.int64)
    short = int(torch.randint(num_chunks, (1,), generator=generator))
    sizes[short] -= num_chunks * chunk_length - count
    # The kept frames and the chunks as length - count + num_chunks items in a row: choosing the
    # items that are chunks places the chunks, non-overlapping, anywhere in the sequence.
    slots = torch.randperm(length - count + num_chunks, generator=generator)[:num_chunks].sort().values
    starts = slots - torch.arange(num_chunks) + torch.cumsum(sizes, 0) - sizes  # (num_chunks,)
    return torch.cat([torch.arange(int(s), int(s) + int(n)) for s, n in zip(starts, sizes)])


def time_drop(
    features: Tensor,
    lengths: Tensor | int | None = None,
    mode: str = "chunk",
    ratio: float = 0.2,
    chunk_length: int = 10,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor | int]:
    """Drop ``round(ratio * length)`` frames of each sequence and left-pack the rest.

    Args:
        features: One utterance's features ``(T, F)``, a zero-padded batch ``(B, T, F)`` or a
            batch of waveforms ``(B, T)``. A 2-D input is read as ``(T, F)`` unless ``lengths``
            is a 1-D tensor, then as waveforms ``(B, T)``.
        lengths: Valid frames of each sequence: an int (or ``None``, all ``T``) for ``(T, F)``,
            a ``(B,)`` integer tensor (or ``None``, all ``T``) for batches.
        mode: ``"point"`` (isolated frames) or ``"chunk"`` (spans of ``chunk_length``).
        ratio: Share of each sequence's valid frames to drop, in ``[0, 1)``; the count is
            ``round(ratio * length)`` (half to even), at most ``length - 1``.
        chunk_length: Frames per span in ``"chunk"`` mode (the last one may be shorter).
        generator: Random source (CPU); ``None`` uses the global RNG.

    Returns:
        ``(features, lengths)``: the kept frames in their order, left-packed and zero-padded to
        the longest new length (the time dimension shrinks to it), and the new lengths (an int
        for ``(T, F)`` input, a ``(B,)`` int64 tensor otherwise). With ``ratio == 0`` the inputs
        are returned as given.

    Raises:
        ValueError: If an argument is out of range or the shapes do not fit.

    Examples:
        >>> g = torch.Generator().manual_seed(1)
        >>> x = torch.arange(10.0).reshape(10, 1)  # one utterance, T = 10, F = 1
        >>> y, n = time_drop(x, mode="chunk", ratio=0.3, chunk_length=3, generator=g)
        >>> n, y.flatten().tolist()
        (7, [0.0, 1.0, 2.0, 6.0, 7.0, 8.0, 9.0])
        >>> batch = torch.ones(2, 8, 4)
        >>> y, n = time_drop(batch, torch.tensor([8, 5]), mode="point", ratio=0.5, generator=g)
        >>> y.shape, n.tolist(), bool((y[1, 3:] == 0).all())  # round(2.5) = 2 frames of 5 dropped
        (torch.Size([2, 4, 4]), [4, 3], True)
    """
    _check_args(mode, ratio, chunk_length)
    if not isinstance(features, Tensor) or features.dim() not in (2, 3):
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"`features` must be a tensor (T, F), (B, T, F) or (B, T), got {shape}.")
    single = features.dim() == 2 and not (isinstance(lengths, Tensor) and lengths.dim() == 1)
    if ratio == 0:
        return features, lengths
    x = features.unsqueeze(0) if single else features  # (B, T, ...)
    batch, steps = x.shape[:2]
    if single:
        if lengths is None:
            lengths = steps
        check_int("lengths", lengths, 0, steps)
        lens = torch.tensor([lengths], dtype=torch.int64)
    else:
        lens = batch_lengths(lengths, batch, steps)
    counts = torch.minimum(torch.round(lens.double() * ratio).long(), (lens - 1).clamp_min(0))
    keep = torch.arange(steps)[None, :] < lens[:, None]  # (B, T) on the CPU
    for b in range(batch):
        if counts[b] > 0:
            keep[b, _drop_positions(int(lens[b]), int(counts[b]), mode, chunk_length, generator)] = False
    new_lens = keep.sum(1)
    new_steps = int(new_lens.max()) if batch else 0
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :new_steps]  # kept first, in order
    order = order.to(x.device)
    index = order.view(batch, new_steps, *([1] * (x.dim() - 2))).expand(batch, new_steps, *x.shape[2:])
    valid = (torch.arange(new_steps)[None, :] < new_lens[:, None]).to(x.device)
    out = x.gather(1, index) * valid.view(batch, new_steps, *([1] * (x.dim() - 2))).to(x.dtype)
    if single:
        return out[0], int(new_lens[0])
    return out, new_lens.to(lengths.device if isinstance(lengths, Tensor) else x.device)


class TimeDrop(nn.Module):
    """:func:`time_drop` as a module: active in training mode, the identity in eval mode.

    Has no parameters, so the model's parameters (and the sparse-training callbacks' view of
    them) are unchanged; a data-pruning callback may set :attr:`ratio` between epochs.

    Args:
        mode: ``"point"`` or ``"chunk"`` (see :func:`time_drop`).
        ratio: Share of each sequence's valid frames to drop, in ``[0, 1)``.
        chunk_length: Frames per span in ``"chunk"`` mode.
        seed: Seed of the module's own ``torch.Generator``; ``None`` uses the global RNG.

    Raises:
        ValueError: If an argument is out of range (also when :attr:`ratio` is set later).

    Examples:
        >>> drop = TimeDrop(mode="point", ratio=0.25, seed=0)
        >>> y, n = drop(torch.randn(3, 12, 80), torch.tensor([12, 8, 4]))
        >>> y.shape, n.tolist()
        (torch.Size([3, 9, 80]), [9, 6, 3])
        >>> drop.eval()(torch.randn(3, 12, 80))[0].shape  # identity in eval mode
        torch.Size([3, 12, 80])
        >>> drop.ratio = 1.0
        Traceback (most recent call last):
        ...
        ValueError: `ratio` must be a number in [0, 1), got 1.0.
    """

    def __init__(self, mode: str = "chunk", ratio: float = 0.2, chunk_length: int = 10, seed: int | None = None) -> None:
        super().__init__()
        _check_args(mode, ratio, chunk_length)
        check_int("seed", seed, 0, allow_none=True)
        self.mode, self._ratio, self.chunk_length, self.seed = mode, float(ratio), chunk_length, seed
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    @property
    def ratio(self) -> float:
        """Share of frames dropped per sequence in training, in ``[0, 1)``; settable."""
        return self._ratio

    @ratio.setter
    def ratio(self, value: float) -> None:
        self._ratio = float(check_number("ratio", value, 0.0, 1.0, high_open=True))

    def forward(self, features: Tensor, lengths: Tensor | int | None = None) -> tuple[Tensor, Tensor | int | None]:
        """``(features, lengths)`` shortened in training mode, as given in eval mode or at ratio 0."""
        if not self.training or self._ratio == 0:
            return features, lengths
        return time_drop(features, lengths, self.mode, self._ratio, self.chunk_length, self.generator)

    def rng_state(self) -> Tensor | None:
        """State of the module's own generator (``None`` without a ``seed``), for checkpoints."""
        return None if self.generator is None else self.generator.get_state()

    def set_rng_state(self, state: Tensor | None) -> None:
        """Restore a state from :meth:`rng_state`; ``None`` or no own generator: nothing to do."""
        if state is not None and self.generator is not None:
            self.generator.set_state(state)

    def extra_repr(self) -> str:
        chunk = f", chunk_length={self.chunk_length}" if self.mode == "chunk" else ""
        return f"mode={self.mode!r}, ratio={self._ratio:g}{chunk}, seed={self.seed}"
