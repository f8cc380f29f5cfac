"""Which training samples an epoch keeps: the selection rules of dynamic data pruning.

Pure functions over one score per sample (its latest per-sample loss, or a moving average of
it) and a flag telling which samples were ever scored. The data-pruning callback
(:class:`~lightning_sparse.callbacks.DynamicDataPruning`) calls :func:`select_samples` at the
start of every epoch with its own seeded generator, so the same state always gives the same
selection (on every DDP rank, and after a resume).

The policies, for a budget of ``k = kept_count(n, keep_ratio)`` samples:

- **Unscored first** (every policy): samples that were never scored are kept before any scored
  one (at random among them when there are more than ``k``); the rest of the budget, ``k'``,
  comes from the scored samples by the policy.
- ``"random"``: ``k'`` scored samples uniformly at random (DDP-ASR's random pruning).
- ``"easy"`` / ``"hard"``: the ``k'`` lowest / highest scores.
- ``"easy2hard"``: a window of ``k'`` consecutive samples in the ascending score order (easiest
  first) whose start moves linearly from the easiest end to the hardest end over the pruned
  epochs: with the ``m`` scored samples sorted ascending and ``progress`` ``p`` in ``[0, 1]``
  (0 at the first pruned epoch, 1 at the last), the window is positions
  ``[s, s + k')`` with ``s = floor(p * (m - k') + 1/2)``. At ``p = 0`` it keeps the easiest samples,
  at ``p = 1`` the hardest, half-way the middle of the ranking.
- ``"infobatch"``: InfoBatch (Qin et al., ICLR 2024, arXiv:2303.04947): the scored samples
  below the mean score of the scored samples are "well learned"; a random share ``prune_ratio``
  of them is dropped (``int((1 - r) * w)`` of the ``w`` well-learned samples are kept, as the
  reference code), every other sample is kept, and the kept well-learned samples' losses are
  weighted by ``1 / (1 - r)`` so the expected gradient is unbiased. ``keep_ratio`` is not used:
  the kept share follows from the scores.

Ties in the scores are broken at random (a seeded permutation, then a stable sort). The kept
samples are returned in a random order (the epoch's training order).

Torch only: never imports Lightning.

Examples:
    >>> g = torch.Generator().manual_seed(0)
    >>> scores = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.7])
    >>> scored = torch.ones(5, dtype=torch.bool)
    >>> sorted(select_samples(scores, scored, 0.4, "hard", g).indices.tolist())
    [1, 4]
    >>> sorted(select_samples(scores, scored, 0.4, "easy2hard", g, progress=0.5).indices.tolist())
    [2, 4]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from lightning_sparse._validation import check_choice, check_int, check_number
from lightning_sparse.core.schedules import SCHEDULES, schedule_value

__all__ = ["POLICIES", "EpochSchedule", "Selection", "kept_count", "select_samples", "update_scores_"]

POLICIES = ("random", "easy", "hard", "easy2hard", "infobatch")
"""The selection policies of :func:`select_samples`."""


class Selection(NamedTuple):
    """An epoch's kept samples in training order, and their loss weights (``None``: all 1)."""

    indices: Tensor
    weights: Tensor | None


def kept_count(num_samples: int, keep_ratio: float) -> int:
    """Samples kept of ``num_samples`` at ``keep_ratio``: ``round(keep_ratio * n)``, at least 1.

    Examples:
        >>> kept_count(10, 0.7), kept_count(3, 0.01), kept_count(5, 0.5)
        (7, 1, 3)
    """
    return min(num_samples, max(1, math.floor(keep_ratio * num_samples + 0.5)))


def _tie_broken_order(scores: Tensor, generator: torch.Generator, descending: bool) -> Tensor:
    """Positions of ``scores`` sorted, ties in a random order (a permutation, then a stable sort)."""
    perm = torch.randperm(scores.numel(), generator=generator)
    order = torch.sort(scores[perm], descending=descending, stable=True).indices
    return perm[order]


def _random_subset(pool: Tensor, count: int, generator: torch.Generator) -> Tensor:
    return pool[torch.randperm(pool.numel(), generator=generator)[:count]]


def select_samples(
    scores: Tensor,
    scored: Tensor,
    keep_ratio: float,
    policy: str,
    generator: torch.Generator,
    progress: float = 0.0,
    prune_ratio: float = 0.5,
) -> Selection:
    """The samples an epoch keeps, in a random order, and their weights (see the module docstring).

    Args:
        scores: One score per sample, ``(N,)`` (higher is harder); ignored where not ``scored``.
        scored: ``(N,)`` bool, whether a sample has a score yet.
        keep_ratio: Share of the samples to keep, in ``(0, 1]`` (not used by ``"infobatch"``).
        policy: One of :data:`POLICIES`.
        generator: The source of every random choice (advanced by the call).
        progress: Position in the pruned epochs, in ``[0, 1]``, for ``"easy2hard"``.
        prune_ratio: InfoBatch's share ``r`` of well-learned samples dropped, in ``[0, 1)``.

    Returns:
        ``Selection(indices, weights)``: ``indices`` int64 in training order; ``weights`` a
        float ``(N,)`` table of loss weights per sample (``"infobatch"``), else ``None``.

    Raises:
        ValueError: If an argument is out of range or the shapes do not match.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> s = select_samples(torch.tensor([1.0, 2.0, 6.0, 3.0]), torch.ones(4, dtype=torch.bool),
        ...                    1.0, "infobatch", g, prune_ratio=0.5)
        >>> sorted(s.indices.tolist()), s.weights.tolist()   # mean 3: 0 and 1 are well learned
        ([0, 2, 3], [2.0, 1.0, 1.0, 1.0])
    """
    check_choice("policy", policy, POLICIES)
    check_number("keep_ratio", keep_ratio, 0.0, 1.0, low_open=True)
    check_number("progress", progress, 0.0, 1.0)
    check_number("prune_ratio", prune_ratio, 0.0, 1.0, high_open=True)
    if scores.dim() != 1 or scored.shape != scores.shape or scored.dtype != torch.bool:
        raise ValueError(f"`scores` and `scored` must be (N,) float and (N,) bool, got {tuple(scores.shape)} "
                         f"and {tuple(scored.shape)} {scored.dtype}.")
    n = scores.numel()
    scores = scores.float()
    unscored = torch.nonzero(~scored).flatten()
    have = torch.nonzero(scored).flatten()
    weights = None
    if policy == "infobatch":
        if have.numel():
            mean = scores[have].mean()
            well = have[scores[have] < mean]
            rest = have[scores[have] >= mean]
            kept_well = _random_subset(well, int((1.0 - prune_ratio) * well.numel()), generator)
            weights = torch.ones(n)
            weights[kept_well] = 1.0 / (1.0 - prune_ratio)
            kept = torch.cat([unscored, rest, kept_well])
        else:
            kept = unscored
    else:
        budget = kept_count(n, keep_ratio)
        first = _random_subset(unscored, budget, generator) if unscored.numel() > budget else unscored
        left = budget - first.numel()
        if left == 0 or have.numel() == 0:
            chosen = have[:0]
        elif policy == "random":
            chosen = _random_subset(have, left, generator)
        else:
            ranked = have[_tie_broken_order(scores[have], generator, descending=policy == "hard")]
            start = math.floor(progress * (ranked.numel() - left) + 0.5) if policy == "easy2hard" else 0
            chosen = ranked[start:start + left]
        kept = torch.cat([first, chosen])
    order = kept[torch.randperm(kept.numel(), generator=generator)]
    return Selection(order.to(torch.int64), weights)


def update_scores_(scores: Tensor, scored: Tensor, index: Tensor, losses: Tensor, momentum: float = 0.0) -> int:
    """Record ``losses`` of the samples ``index`` in ``scores`` in place; returns how many were used.

    The latest loss (``momentum=0``) or an exponential moving average
    ``s <- momentum * s + (1 - momentum) * loss`` (a sample's first loss is taken as is).
    Non-finite losses are skipped (the sample keeps its score). A sample listed twice (DDP pads
    the last shard with repeated samples) takes the mean of its losses.

    Examples:
        >>> scores, scored = torch.zeros(4), torch.zeros(4, dtype=torch.bool)
        >>> update_scores_(scores, scored, torch.tensor([1, 3, 3]), torch.tensor([2.0, 1.0, 3.0]))
        3
        >>> scores.tolist(), scored.tolist()
        ([0.0, 2.0, 0.0, 2.0], [False, True, False, True])
        >>> update_scores_(scores, scored, torch.tensor([1, 2]), torch.tensor([4.0, float("nan")]), momentum=0.5)
        1
        >>> scores.tolist()
        [0.0, 3.0, 0.0, 2.0]
    """
    index = index.to(device=scores.device, dtype=torch.int64).flatten()
    losses = losses.detach().to(device=scores.device, dtype=torch.float32).flatten()
    finite = torch.isfinite(losses)
    index, losses = index[finite], losses[finite]
    if index.numel() == 0:
        return 0
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= scores.numel()):
        raise ValueError(f"`index` must hold dataset indices in [0, {scores.numel()}), got values from "
                         f"{int(index.min())} to {int(index.max())}.")
    unique, inverse = torch.unique(index, return_inverse=True)
    total = torch.zeros(unique.numel()).index_add_(0, inverse, losses)
    count = torch.zeros(unique.numel()).index_add_(0, inverse, torch.ones_like(losses))
    mean = total / count
    if momentum > 0:
        old = scores[unique]
        mean = torch.where(scored[unique], momentum * old + (1.0 - momentum) * mean, mean)
    scores[unique] = mean
    scored[unique] = True
    return int(losses.numel())


@dataclass(frozen=True)
class EpochSchedule:
    """A value per epoch: a constant, or ``initial`` -> ``final`` between two epochs.

    Built by :meth:`parse` from a number or a mapping ``{"schedule": "linear" | "cosine" |
    "cubic" | "constant", "initial": a, "final": b, "start_epoch": 0, "stop_epoch": None}``
    (``stop_epoch`` ``None``: the last pruned epoch), the form a YAML recipe writes.

    Examples:
        >>> s = EpochSchedule.parse("keep_ratio", {"schedule": "linear", "initial": 1.0, "final": 0.5,
        ...                                        "stop_epoch": 4}, 0.0, 1.0)
        >>> [s(e, last_epoch=9) for e in (0, 2, 4, 8)]
        [1.0, 0.75, 0.5, 0.5]
        >>> EpochSchedule.parse("keep_ratio", 0.7, 0.0, 1.0)(3, last_epoch=9)
        0.7
        >>> EpochSchedule.parse("keep_ratio", {"schedule": "step"}, 0.0, 1.0)
        Traceback (most recent call last):
        ...
        ValueError: `keep_ratio['schedule']` must be one of ('constant', 'linear', 'cosine', 'cubic'), got 'step'.
    """

    kind: str = "constant"
    initial: float = 0.0
    final: float = 0.0
    start_epoch: int = 0
    stop_epoch: int | None = None

    @property
    def is_constant(self) -> bool:
        """Whether the value never changes."""
        return self.kind == "constant" or self.initial == self.final

    def __call__(self, epoch: int, last_epoch: int | None = None) -> float:
        if self.kind == "constant":
            return self.initial
        stop = self.stop_epoch if self.stop_epoch is not None else last_epoch
        if stop is None:
            raise ValueError("an epoch schedule without `stop_epoch` needs the last epoch (`trainer.max_epochs`).")
        return schedule_value(self.kind, epoch, self.start_epoch, max(stop, self.start_epoch), self.initial, self.final)

    @classmethod
    def parse(cls, name: str, value: Any, low: float, high: float, low_open: bool = False) -> EpochSchedule:
        """A schedule from a number or a mapping; values checked against ``[low, high]``."""
        if isinstance(value, Mapping):
            known = ("schedule", "initial", "final", "start_epoch", "stop_epoch")
            unknown = sorted(set(value) - set(known))
            if unknown:
                raise ValueError(f"`{name}` keys must be among {known}, got {unknown}.")
            kind = check_choice(f"{name}['schedule']", value.get("schedule", "linear"), SCHEDULES)
            initial = check_number(f"{name}['initial']", value.get("initial", high), low, high, low_open=low_open)
            final = check_number(f"{name}['final']", value.get("final", initial), low, high, low_open=low_open)
            start = check_int(f"{name}['start_epoch']", value.get("start_epoch", 0), 0)
            stop = check_int(f"{name}['stop_epoch']", value.get("stop_epoch"), start, allow_none=True)
            return cls(kind, float(initial), float(final), start, stop)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"`{name}` must be a number or a schedule mapping, got {value!r}.")
        check_number(name, value, low, high, low_open=low_open)
        return cls("constant", float(value), float(value))
