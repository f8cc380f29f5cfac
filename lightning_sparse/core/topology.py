"""Topology updates: exact-count prune and grow on bool masks.

``prune_and_grow`` drops the ``k`` lowest-scoring active units and grows the ``k`` highest-scoring
units that are inactive after the drop (so a just-dropped unit may come straight back, as in RigL,
Evci et al. 2020, arXiv:1911.11134). Counts are exact; ties are broken by a seeded random
choice, so the same generator state gives the same topology on every rank.

Grouped regions (DSN, Xiao et al. 2022, arXiv:2212.09840): :func:`select_topk_groups` and
:func:`prune_and_grow_groups` do the same inside each group of an integer label tensor, so every
group keeps its own exact count and no unit ever moves to another group.

Torch only: this module never imports Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


def select_topk(score: Tensor, k: int, generator: torch.Generator, candidates: Tensor | None = None) -> Tensor:
    """Bool mask of the ``k`` highest-scoring candidates (ties in a seeded random order).

    ``k`` is clipped to the number of candidates; NaN scores rank last. Runs in linear time: one
    ``topk`` finds the k-th largest value, every candidate above it is taken, and the remaining
    places go to a seeded random choice among the candidates equal to it.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> select_topk(torch.tensor([0.1, 0.9, 0.5, 0.7]), 2, g).tolist()
        [False, True, False, True]
    """
    flat = score.detach().flatten()
    out = torch.zeros(flat.shape, dtype=torch.bool, device=flat.device)
    if candidates is None:
        idx = torch.arange(flat.numel(), device=flat.device)
    else:
        idx = candidates.flatten().to(flat.device).nonzero().squeeze(1)
    k = max(0, min(int(k), idx.numel()))
    if k == 0:
        return out.view(score.shape)
    if k == idx.numel():
        out[idx] = True
        return out.view(score.shape)
    values = torch.nan_to_num(flat[idx].float(), nan=-float("inf"))
    threshold = torch.topk(values, k, sorted=False).values.min()
    above = values > threshold
    out[idx[above]] = True
    tied = idx[values == threshold]
    need = k - int(above.sum())
    if need > 0:
        pick = torch.randperm(tied.numel(), generator=generator)[:need].to(flat.device)
        out[tied[pick]] = True
    return out.view(score.shape)


def drop_lowest(mask: Tensor, score: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Deactivate the ``k`` lowest-scoring active units of ``mask`` (a new mask is returned)."""
    n_active = int(mask.sum())
    return select_topk(score, n_active - min(int(k), n_active), generator, candidates=mask)


def grow_highest(
    mask: Tensor, score: Tensor, k: int, generator: torch.Generator, allowed: Tensor | None = None
) -> Tensor:
    """Activate the ``k`` highest-scoring inactive (and allowed) units of ``mask``."""
    candidates = ~mask if allowed is None else (~mask & allowed.to(mask.device))
    return mask | select_topk(score, k, generator, candidates=candidates)


def prune_and_grow(
    mask: Tensor,
    prune_score: Tensor,
    grow_score: Tensor,
    n_drop: int,
    generator: torch.Generator,
    allowed: Tensor | None = None,
) -> Tensor:
    """Drop ``n_drop`` active units by ``prune_score`` and grow as many by ``grow_score``.

    The number of active units is unchanged unless the allowed region has no room left.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> m = torch.tensor([True, True, False, False])
        >>> prune_and_grow(m, torch.tensor([0.1, 0.9, 0, 0]), torch.tensor([0, 0, 0.2, 0.8]), 1, g).tolist()
        [False, True, False, True]
    """
    kept = drop_lowest(mask, prune_score, n_drop, generator)
    return grow_highest(kept, grow_score, int(mask.sum()) - int(kept.sum()), generator, allowed)


def select_topk_groups(
    score: Tensor, counts: Mapping[int, int], generator: torch.Generator, groups: Tensor
) -> Tensor:
    """Bool mask of the ``counts[g]`` highest-scoring units of every group ``g`` of ``groups``.

    Groups are visited in increasing label order (ties inside a group in a seeded random order,
    as :func:`select_topk`); units of label 0 and of groups missing from ``counts`` stay off.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> groups = torch.tensor([1, 1, 1, 2, 2, 0])
        >>> select_topk_groups(torch.tensor([0.1, 0.9, 0.5, 0.2, 0.7, 9.0]), {1: 2, 2: 1}, g, groups).tolist()
        [False, True, True, False, True, False]
    """
    groups = groups.to(score.device)
    out = torch.zeros(score.shape, dtype=torch.bool, device=score.device)
    for label in sorted(counts):
        out |= select_topk(score, counts[label], generator, candidates=groups == label)
    return out


def prune_and_grow_groups(
    mask: Tensor,
    prune_score: Tensor,
    grow_score: Tensor,
    n_drop: Mapping[int, int],
    generator: torch.Generator,
    groups: Tensor,
) -> Tensor:
    """:func:`prune_and_grow` inside every group: drop ``n_drop[g]`` active units of group ``g``
    by ``prune_score`` and grow as many inactive units of the same group by ``grow_score``.

    Every group keeps its number of active units (unless it has no room left) and units never
    leave their group; groups missing from ``n_drop`` are left as they are.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> groups = torch.tensor([1, 1, 1, 2, 2, 2])
        >>> m = torch.tensor([True, False, False, True, False, False])
        >>> grow = torch.tensor([0.0, 0.1, 0.9, 0.0, 0.8, 0.2])
        >>> prune_and_grow_groups(m, torch.ones(6), grow, {1: 1, 2: 1}, g, groups).tolist()
        [False, False, True, False, True, False]
    """
    groups = groups.to(mask.device)
    out = mask.clone()
    for label in sorted(n_drop):
        if n_drop[label] <= 0:
            continue
        region = groups == label
        new = prune_and_grow(mask & region, prune_score, grow_score, n_drop[label], generator, region)
        out = (out & ~region) | new
    return out


def global_keep_counts(
    scores: Mapping[str, Tensor], masks: Mapping[str, Tensor], n_keep: int, generator: torch.Generator,
    sizes: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """How many active units each layer keeps when the ``n_keep`` highest scores over all layers
    survive (global magnitude pruning, as in GraNet, Liu et al. 2021, arXiv:2106.10404).

    With ``sizes`` (elements per unit of each layer, e.g. whole kernels beside single weights)
    ``n_keep`` counts elements: units are taken in decreasing score (ties at random) while the
    elements kept stay within ``n_keep``.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> s = {"a": torch.tensor([3.0, 1.0]), "b": torch.tensor([2.0, 0.5])}
        >>> global_keep_counts(s, {k: torch.ones(2, dtype=torch.bool) for k in s}, 2, g)
        {'a': 1, 'b': 1}
        >>> global_keep_counts(s, {k: torch.ones(2, dtype=torch.bool) for k in s}, 9, g, sizes={"a": 9, "b": 1})
        {'a': 1, 'b': 0}
    """
    names = list(scores)
    active = [scores[n].detach().flatten()[masks[n].flatten()].float().cpu() for n in names]
    owner = torch.cat([torch.full((a.numel(),), i, dtype=torch.long) for i, a in enumerate(active)])
    if sizes is not None:
        flat = torch.cat(active)
        perm = torch.randperm(flat.numel(), generator=generator)  # random order among ties
        order = perm[torch.argsort(flat[perm], descending=True, stable=True)]
        unit = torch.tensor([sizes[n] for n in names], dtype=torch.long)[owner[order]]
        taken = order[torch.cumsum(unit, 0) <= n_keep]
        counts = torch.bincount(owner[taken], minlength=len(names))
        return {n: int(c) for n, c in zip(names, counts)}
    chosen = select_topk(torch.cat(active), n_keep, generator)
    counts = torch.bincount(owner[chosen], minlength=len(names))
    return {n: int(c) for n, c in zip(names, counts)}
