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

Beyond the reference code: :func:`mask_change` (the share of mask bits that changed since the
last check, MSRS's stability measure) and :func:`topk_hard_mask` (a hard mask at an exact target
sparsity, from the logits' ranking).

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
from collections.abc import Iterable

import torch
from torch import Tensor

from lightning_sparse._validation import check_int, check_number

__all__ = [
    "CS_FINAL_TEMPERATURE",
    "CS_INITIAL_LOGIT",
    "CS_PENALTY",
    "hard_mask",
    "mask_change",
    "mask_penalty",
    "soft_mask",
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
    scale = 1.0 / (1.0 / (1.0 + math.exp(-initial_logit)))
    return torch.sigmoid(temperature * logits) * scale


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
