"""The steps of a topology update as pure functions on one target's unit mask.

What a mask-holding callback calls, in order: :func:`initial_mask` when training starts;
:func:`drop_counts`, :func:`prune_score` / :func:`grow_score` and :func:`prune_and_grow_target` at every prune-and-grow
update (DST: SET, RigL, MEST, GraNet); :func:`gradual_prune_masks` for gradual magnitude pruning
towards a scheduled sparsity (GraNet, GMP); :func:`update_moving_average_` for growth by gradient
momentum. The callback only decides *when*; these decide *what*.

Torch only: this module never imports Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from .criteria import (
    GROW_CRITERIA,
    PRUNE_CRITERIA,
    gradient_score,
    leftmost_score,
    magnitude_score,
    mest_score,
    random_score,
    set_prune_score,
)
from .distributions import group_counts
from .targets import SparseTarget
from .topology import (
    drop_lowest,
    global_keep_counts,
    prune_and_grow,
    prune_and_grow_groups,
    select_topk,
    select_topk_groups,
)

__all__ = [
    "gradual_prune_masks",
    "grow_score",
    "initial_mask",
    "interpolate_densities",
    "drop_counts",
    "prune_and_grow_target",
    "prune_score",
    "update_moving_average_",
]


def initial_mask(target: SparseTarget, count: int, generator: torch.Generator, order: str = "random") -> Tensor:
    """The first unit mask of ``target`` with ``count`` active units (CPU bool tensor).

    ``order="random"`` draws the units uniformly inside the allowed region; ``"leftmost"`` fills
    the first kernel taps first (DSN, Xiao et al. 2022, arXiv:2212.09840), ties at random. With
    group labels, ``count`` is shared among the groups by their sizes (:func:`group_counts`).

    Examples:
        >>> from torch import nn
        >>> from lightning_sparse.core.targets import find_targets
        >>> (t,) = find_targets(nn.Linear(4, 2))
        >>> int(initial_mask(t, 3, torch.Generator().manual_seed(0)).sum())
        3
    """
    score = leftmost_score(target.unit_shape) if order == "leftmost" else random_score(target.unit_shape, generator)
    if target.groups is None:
        return select_topk(score, count, generator, candidates=target.allowed)
    return select_topk_groups(score, group_counts(count, target.group_capacities), generator, target.groups)


def prune_score(criterion: str, target: SparseTarget, weight: Tensor, mask: Tensor, mest_lambda: float = 1.0) -> Tensor:
    """Unit-shaped prune score (higher = keep): ``"magnitude"``, ``"set"`` or ``"mest"``.

    Examples:
        >>> from torch import nn
        >>> from lightning_sparse.core.targets import find_targets
        >>> lin = nn.Linear(2, 1)
        >>> (t,) = find_targets(lin)
        >>> prune_score("magnitude", t, torch.tensor([[-2.0, 1.0]]), torch.ones(1, 2, dtype=torch.bool)).tolist()
        [[2.0, 1.0]]
    """
    if criterion == "set":
        return set_prune_score(target.reduce(weight), mask)
    if criterion == "mest":
        return target.reduce(mest_score(weight, weight.grad, mest_lambda))
    if criterion == "magnitude":
        return target.reduce(magnitude_score(weight))
    raise ValueError(f"`prune` criterion must be one of {PRUNE_CRITERIA}, got {criterion!r}.")


def grow_score(
    criterion: str, target: SparseTarget, weight: Tensor, generator: torch.Generator, momentum: Tensor | None = None
) -> Tensor:
    """Unit-shaped grow score (higher = grow first): ``"gradient"`` (the dense gradient's
    magnitude, RigL), ``"momentum"`` (its moving average's magnitude) or ``"random"`` (SET, MEST).

    Falls back to random scores when the gradient (or the moving average) is not there yet.
    """
    if criterion not in GROW_CRITERIA:
        raise ValueError(f"`grow` criterion must be one of {GROW_CRITERIA}, got {criterion!r}.")
    if criterion == "gradient" and weight.grad is not None:
        return target.reduce(gradient_score(weight.grad))
    if criterion == "momentum" and momentum is not None:
        return target.reduce(momentum.abs())
    return random_score(target.unit_shape, generator, device=weight.device)


def drop_counts(target: SparseTarget, mask: Tensor, fraction: float) -> int | dict[int, int]:
    """How many active units an update replaces: ``round(fraction * active)``, or with group
    labels the same per group (every group drops and regrows its own share).

    Examples:
        >>> from torch import nn
        >>> from lightning_sparse.core.targets import find_targets
        >>> (t,) = find_targets(nn.Linear(4, 1))
        >>> drop_counts(t, torch.tensor([[True, True, True, False]]), 0.3)
        1
    """
    if target.groups is None:
        return max(round(fraction * int(mask.sum())), 0)
    labels = target.groups.to(mask.device)
    return {g: round(fraction * int(mask[labels == g].sum())) for g in target.group_capacities}


def prune_and_grow_target(
    target: SparseTarget,
    mask: Tensor,
    n_drop: int | Mapping[int, int],
    prune: Tensor,
    grow: Tensor,
    generator: torch.Generator,
) -> Tensor:
    """One prune-and-grow of ``target`` with counts from :func:`drop_counts`: without group
    labels :func:`prune_and_grow` inside the allowed region, with labels
    :func:`prune_and_grow_groups` (no group's count ever changes).

    Examples:
        >>> from torch import nn
        >>> from lightning_sparse.core.targets import find_targets
        >>> (t,) = find_targets(nn.Linear(4, 1))
        >>> m = torch.tensor([[True, True, False, False]])
        >>> g = torch.Generator().manual_seed(0)
        >>> prune_and_grow_target(t, m, 1, torch.tensor([[2.0, 1.0, 0, 0]]), torch.tensor([[0, 0, 0, 5.0]]), g).tolist()
        [[True, False, False, True]]
    """
    if target.groups is not None:
        return prune_and_grow_groups(mask, prune, grow, dict(n_drop), generator, target.groups.to(mask.device))
    return prune_and_grow(mask, prune, grow, int(n_drop), generator, target.allowed)


def interpolate_densities(
    initial: Mapping[str, float], final: Mapping[str, float], progress: float
) -> dict[str, float]:
    """Layer densities a share ``progress`` (0 to 1) of the way from ``initial`` to ``final``.

    Examples:
        >>> interpolate_densities({"a": 0.5}, {"a": 0.1}, 0.25)
        {'a': 0.4}
    """
    return {n: initial[n] + progress * (final[n] - initial[n]) for n in final}


def gradual_prune_masks(
    masks: Mapping[str, Tensor],
    scores: Mapping[str, Tensor],
    keep: Mapping[str, int] | int,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """Drop the lowest-scoring active units so that layer ``n`` keeps ``keep[n]`` units, or, with
    an int ``keep``, so that the ``keep`` best units over all layers survive (global magnitude
    pruning, GraNet, Liu et al. 2021, arXiv:2106.10404). Never grows.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> m = {"a": torch.ones(3, dtype=torch.bool), "b": torch.ones(2, dtype=torch.bool)}
        >>> s = {"a": torch.tensor([3.0, 1.0, 0.5]), "b": torch.tensor([2.0, 0.1])}
        >>> {n: v.tolist() for n, v in gradual_prune_masks(m, s, 2, g).items()}
        {'a': [True, False, False], 'b': [True, False]}
    """
    if isinstance(keep, int):
        n_keep = min(keep, sum(int(m.sum()) for m in masks.values()))
        keep = global_keep_counts(scores, masks, n_keep, generator)
    out = {}
    for n, mask in masks.items():
        n_active = int(mask.sum())
        k = n_active - min(keep[n], n_active)
        out[n] = drop_lowest(mask, scores[n], k, generator) if k else mask
    return out


@torch.no_grad()
def update_moving_average_(buffers: dict[str, Tensor], grads: Mapping[str, Tensor | None], beta: float) -> None:
    """``m <- beta m + (1 - beta) g`` per name, in place (the first gradient starts the average).

    The gradient momentum of sparse momentum (Dettmers & Zettlemoyer 2019, arXiv:1907.04840).

    Examples:
        >>> buf = {}
        >>> update_moving_average_(buf, {"w": torch.tensor([1.0])}, 0.9)
        >>> update_moving_average_(buf, {"w": torch.tensor([0.0])}, 0.9); buf["w"].tolist()
        [0.8999999761581421]
    """
    for n, grad in grads.items():
        if grad is None:
            continue
        buf = buffers.get(n)
        if buf is None:
            buffers[n] = grad.detach().float().clone()
        else:
            buf.mul_(beta).add_(grad.detach().float(), alpha=1 - beta)
