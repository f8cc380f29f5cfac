"""Learnable sparse masks regularized toward sparsity: the maths of Continuous Sparsification.

MSRS (Fernandez-Lopez et al., Interspeech 2024, arXiv:2406.17614) optimises a learnable mask at
the start of training and leaves the open choices to Continuous Sparsification (Savarese, Silva,
Maire, NeurIPS 2020, arXiv:1912.04427). This module holds those pieces as pure functions, with
the defaults of the official Continuous Sparsification code (github.com/lolemacs/
continuous-sparsification, ``main.py`` and ``models/layers.py``):

- every masked weight ``w`` has a mask logit ``s``, initialised to ``s0 = -0.01``
  (:data:`CS_INITIAL_LOGIT`);
- the effective weight is ``w * sigmoid(beta * s) / sigmoid(s0)`` (:func:`soft_mask`): the
  scaling makes the initial mask exactly 1, so training starts from the dense network;
- the penalty is ``lambda * sum(mask)`` over all masked weights, the L1 norm of the (scaled)
  soft mask, with ``lambda = 1e-8`` (:data:`CS_PENALTY`, :func:`mask_penalty`);
- the temperature ``beta`` grows exponentially from 1 to 200 (:data:`CS_FINAL_TEMPERATURE`) over
  the epochs of a round: multiplied by ``200 ** (1 / (epochs - 1))`` after every epoch
  (:func:`temperature_at`);
- the binary mask is ``s > 0`` (:func:`hard_mask`); the official code trains the logits with their
  own SGD (same learning rate, momentum 0.9, no weight decay).

Beyond the reference code: :func:`soft_mask_slope` (the derivative of the soft mask in its
logits, for the gradient the MSRS callback hands the logits), :func:`mask_change` (the share of
mask bits that changed since the last check, MSRS's stability measure), :func:`topk_hard_mask`
and :func:`global_topk_hard_masks` (hard masks at an exact target sparsity, from the logits'
ranking in each layer or over all layers).

Torch only: never imports Lightning.

Examples:
    >>> logits = torch.full((2, 2), CS_INITIAL_LOGIT)
    >>> torch.allclose(soft_mask(logits, temperature=1.0), torch.ones(2, 2))  # 1 at the start
    True
    >>> temperature_at(0, 10), round(temperature_at(9, 10), 6)
    (1.0, 200.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from lightning_sparse._validation import check_int, check_number

__all__ = [
    "CS_FINAL_TEMPERATURE",
    "CS_INITIAL_LOGIT",
    "CS_PENALTY",
    "global_topk_hard_masks",
    "hard_mask",
    "mask_change",
    "mask_penalty",
    "mask_scale",
    "soft_mask",
    "soft_mask_slope",
    "temperature_at",
    "topk_hard_mask",
]

CS_INITIAL_LOGIT = -0.01
"""Initial mask logit ``s0`` of the official Continuous Sparsification code (``--mask-initial-value``)."""
CS_PENALTY = 1e-8
"""Weight ``lambda`` of the L1 mask penalty in the official code (``--lmbda``)."""
CS_FINAL_TEMPERATURE = 200.0
"""Temperature ``beta`` at the end of a round in the official code (``--final-temp``)."""


def soft_mask(logits: Tensor, temperature: float, initial_logit: float = CS_INITIAL_LOGIT) -> Tensor:
    """``sigmoid(temperature * logits) / sigmoid(initial_logit)``: the scaled soft mask.

    Examples:
        >>> soft_mask(torch.tensor([-1.0, 0.0, 1.0]), temperature=100.0, initial_logit=0.0)
        tensor([0., 1., 2.])
    """
    check_number("temperature", temperature, 0.0, low_open=True)
    return torch.sigmoid(temperature * logits) * mask_scale(initial_logit)


def mask_scale(initial_logit: float = CS_INITIAL_LOGIT) -> float:
    """``1 / sigmoid(initial_logit)``: the factor that makes the initial soft mask exactly 1.

    Examples:
        >>> mask_scale(0.0)
        2.0
    """
    return 1.0 + math.exp(-initial_logit)


def soft_mask_slope(logits: Tensor, temperature: float, initial_logit: float = CS_INITIAL_LOGIT) -> Tensor:
    """``d soft_mask / d logits = temperature * sigmoid(t s) * (1 - sigmoid(t s)) / sigmoid(s0)``.

    Examples:
        >>> s = torch.tensor([0.3, -0.2], requires_grad=True)
        >>> soft_mask(s, 5.0).sum().backward()
        >>> torch.allclose(s.grad, soft_mask_slope(s.detach(), 5.0))
        True
    """
    check_number("temperature", temperature, 0.0, low_open=True)
    sig = torch.sigmoid(temperature * logits)
    return (temperature * mask_scale(initial_logit)) * sig * (1.0 - sig)


def hard_mask(logits: Tensor) -> Tensor:
    """The binary mask of Continuous Sparsification: ``logits > 0``.

    Examples:
        >>> hard_mask(torch.tensor([-0.5, 0.0, 0.2])).tolist()
        [False, False, True]
    """
    return logits > 0


def topk_hard_mask(logits: Tensor, sparsity: float) -> Tensor:
    """A binary mask keeping the ``round((1 - sparsity) * n)`` highest logits (ties: lower index first).

    Examples:
        >>> topk_hard_mask(torch.tensor([0.3, -0.2, 0.9, 0.1]), sparsity=0.5).tolist()
        [True, False, True, False]
    """
    check_number("sparsity", sparsity, 0.0, 1.0, high_open=True)
    n = logits.numel()
    keep = min(n, max(0, math.floor((1.0 - sparsity) * n + 0.5)))
    order = torch.sort(logits.flatten(), descending=True, stable=True).indices[:keep]
    mask = torch.zeros(n, dtype=torch.bool, device=logits.device)
    mask[order] = True
    return mask.view_as(logits)


def global_topk_hard_masks(
    logits: Mapping[str, Tensor], sparsity: float, unit_sizes: Mapping[str, int] | None = None
) -> dict[str, Tensor]:
    """Hard masks keeping the highest logits over *all* layers, ``round((1 - sparsity) * n)``
    elements in all (a unit of ``unit_sizes[name]`` elements, e.g. a conv kernel, counts that
    many); ties go to the earlier layer, then the lower index. Units are taken in ranking order
    while they fit the budget.

    Examples:
        >>> masks = global_topk_hard_masks({"a": torch.tensor([0.9, -0.5]), "b": torch.tensor([0.2, 0.4])}, 0.5)
        >>> masks["a"].tolist(), masks["b"].tolist()
        ([True, False], [False, True])
    """
    check_number("sparsity", sparsity, 0.0, 1.0, high_open=True)
    names = list(logits)
    if not names:
        raise ValueError("`logits` must hold at least one tensor, got none.")
    sizes = {n: 1 if unit_sizes is None else int(unit_sizes[n]) for n in names}
    flat = torch.cat([logits[n].detach().flatten().float().cpu() for n in names])
    weight = torch.cat([torch.full((logits[n].numel(),), sizes[n], dtype=torch.int64) for n in names])
    total = int(weight.sum())
    budget = min(total, max(0, math.floor((1.0 - sparsity) * total + 0.5)))
    order = torch.sort(flat, descending=True, stable=True).indices
    keep = order[torch.cumsum(weight[order], 0) <= budget]
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[keep] = True
    out, start = {}, 0
    for n in names:
        k = logits[n].numel()
        out[n] = chosen[start:start + k].view(logits[n].shape).to(logits[n].device)
        start += k
    return out


def mask_penalty(masks: Iterable[Tensor], weight: float = CS_PENALTY) -> Tensor:
    """``weight * sum of every soft mask's entries`` (the L1 norm of non-negative masks).

    Examples:
        >>> mask_penalty([torch.ones(3), torch.full((2,), 0.5)], weight=0.1)
        tensor(0.4000)
    """
    check_number("weight", weight, 0.0)
    total = None
    for mask in masks:
        part = mask.sum()
        total = part if total is None else total + part
    if total is None:
        raise ValueError("`masks` must hold at least one mask tensor, got none.")
    return weight * total


def temperature_at(epoch: int, epochs: int, final: float = CS_FINAL_TEMPERATURE, initial: float = 1.0) -> float:
    """``initial * (final / initial) ** (epoch / (epochs - 1))``: Continuous Sparsification's
    exponential schedule (``final`` from the last epoch of the round on).

    Examples:
        >>> [round(temperature_at(e, 3, final=100.0), 6) for e in range(4)]
        [1.0, 10.0, 100.0, 100.0]
    """
    check_int("epoch", epoch, 0)
    check_int("epochs", epochs, 1)
    check_number("initial", initial, 0.0, low_open=True)
    check_number("final", final, initial)
    if epochs == 1:
        return float(final)
    progress = min(1.0, epoch / (epochs - 1))
    return float(initial * (final / initial) ** progress)


def mask_change(previous: Tensor, current: Tensor) -> float:
    """Share of the mask bits that differ between two binary masks of one shape.

    Raises:
        ValueError: If the shapes differ.

    Examples:
        >>> mask_change(torch.tensor([True, True, False, False]), torch.tensor([True, False, False, True]))
        0.5
    """
    if previous.shape != current.shape:
        raise ValueError(f"`previous` and `current` must have one shape, got {tuple(previous.shape)} and "
                         f"{tuple(current.shape)}.")
    if previous.numel() == 0:
        return 0.0
    return float((previous.bool() != current.bool()).sum()) / previous.numel()
