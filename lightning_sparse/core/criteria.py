"""Prune and grow scores for dynamic sparse training. Higher score = keep / grow first.

Prune scores (read on active positions):
- ``magnitude``: ``|w|`` (RigL, Evci et al. 2020, arXiv:1911.11134; GraNet, Liu et al. 2021,
  arXiv:2106.10404).
- ``set``: SET (Mocanu et al. 2018, arXiv:1707.04780) removes the smallest positive and the
  largest negative weights *separately*: the score is a weight's rank within its sign group
  divided by the group's size, so dropping the ``k`` lowest scores takes the same share of each
  group.
- ``mest``: ``|w| + lambda |g|`` (MEST, Yuan et al. 2021, arXiv:2110.14032).

Grow scores (read on inactive positions):
- ``random`` (SET, MEST), ``gradient`` = ``|g|`` of the dense gradient (RigL, GraNet),
  ``momentum`` = ``|m|`` of an exponential moving average of dense gradients (sparse momentum,
  Dettmers & Zettlemoyer 2019, arXiv:1907.04840).

Initial-mask scores (which units the first mask takes; higher first, ties at random):
- ``random``: every allowed unit equally likely.
- ``leftmost``: the lowest indices of the last dimension first, i.e. the first taps of a
  convolution kernel: DSN's ``remain_sort`` initialisation (Xiao et al. 2022, arXiv:2212.09840),
  which fills tap 0 of every kernel, then tap 1, and so on.

Torch only: this module never imports Lightning.
"""

from __future__ import annotations

import torch
from torch import Tensor

PRUNE_CRITERIA = ("magnitude", "set", "mest")
GROW_CRITERIA = ("random", "gradient", "momentum")
INIT_MASKS = ("random", "leftmost")


def magnitude_score(weight: Tensor) -> Tensor:
    """``|w|``.

    Examples:
        >>> magnitude_score(torch.tensor([-2.0, 1.0])).tolist()
        [2.0, 1.0]
    """
    return weight.detach().abs().float()


def set_prune_score(weight: Tensor, mask: Tensor) -> Tensor:
    """SET's sign-separated score: rank within the active positives (by value) or the active
    negatives (by ``|w|``), divided by that group's size; zeros count as positive.

    Examples:
        >>> w = torch.tensor([0.5, 0.1, -0.2, -0.9, 0.3])
        >>> [round(v, 3) for v in set_prune_score(w, torch.ones(5, dtype=torch.bool)).tolist()]
        [1.0, 0.333, 0.5, 1.0, 0.667]
    """
    w = weight.detach().float().flatten()
    m = mask.flatten()
    score = torch.zeros_like(w)
    for group in (m & (w >= 0), m & (w < 0)):
        idx = group.nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        order = w[idx].abs().argsort(stable=True)
        ranks = torch.empty_like(order)
        ranks[order] = torch.arange(1, idx.numel() + 1, device=w.device)
        score[idx] = ranks.float() / idx.numel()
    return score.view_as(weight)


def mest_score(weight: Tensor, grad: Tensor | None, lam: float) -> Tensor:
    """MEST's ``|w| + lambda |g|`` (``|w|`` when no gradient is available).

    Examples:
        >>> mest_score(torch.tensor([1.0, -1.0]), torch.tensor([0.0, 2.0]), 0.5).tolist()
        [1.0, 2.0]
    """
    score = magnitude_score(weight)
    if grad is not None and lam != 0:
        score = score + lam * grad.detach().abs().float()
    return score


def gradient_score(grad: Tensor) -> Tensor:
    """``|g|`` of the dense gradient (RigL's grow criterion)."""
    return grad.detach().abs().float()


def random_score(shape: torch.Size | tuple[int, ...], generator: torch.Generator, device=None) -> Tensor:
    """Uniform random scores from a seeded CPU generator (moved to ``device``)."""
    return torch.rand(tuple(shape), generator=generator).to(device)


def leftmost_score(shape: torch.Size | tuple[int, ...], device=None) -> Tensor:
    """``n - 1 - index`` along the last dimension (of size ``n``): the first taps of a kernel
    score highest.

    Units at the same tap tie, so :func:`~lightning_sparse.core.topology.select_topk` picks among
    them in a seeded random order.

    Examples:
        >>> leftmost_score((2, 3)).tolist()
        [[2.0, 1.0, 0.0], [2.0, 1.0, 0.0]]
    """
    shape = tuple(shape)
    taps = torch.arange(shape[-1] - 1, -1, -1, dtype=torch.float32, device=device)
    return taps.expand(shape).contiguous()
