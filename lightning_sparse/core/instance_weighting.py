"""LIWUDA's loss terms as pure functions: separate-and-align, weight losses, alignment, pseudo-labels.

Zhu et al. 2023, "Learning Instance Weighting for Unsupervised Domain Adaptation"
(arXiv:2312.05024; official code JinjingZhu/LIWUDA, ``mmd.py`` and the four training scripts). A
weight network gives every instance ``w in (0, 1)``, its probability of belonging to the classes
that source and target share. With a transport plan ``P`` between the weighted batches
(:mod:`lightning_sparse.core.transport`) and the cosine cost ``C``:

- :func:`separate_and_align_loss` (SA): pairs whose cost is below the plan's mean cost
  ``<P, C>`` are pulled together (``5 * sum(P_k * C) / sum(P_k)``), the others pushed apart
  (``sum(U * (1 - C)) / sum(U)`` with ``U = exp(-P)`` on their support);
- :func:`per_sample_transport_cost`: how much it costs to move each instance's mass
  (``sum_i P_ij C_ij / b_j``): high for instances of private classes;
- :func:`weight_transport_loss`: those costs (constants) times the normalised weights, so the
  weight network lowers the weights of expensive instances; with a plan *inside* one domain
  (uniform to weighted) it is the intra-domain OT term (IOT) that keeps the weights of the common
  classes even;
- :func:`rank_weight_loss`: the weights of instances ranked by a score (transport cost, entropy)
  regressed onto ``1 .. 0`` by rank (the official ``FL_weight_loss``);
- :func:`source_alignment_loss`: same-class source pairs together, different classes apart;
- :func:`confident_pseudo_label_loss`: cross-entropy on confident target predictions of
  shared classes (optionally weighted by the instance weights), and ``(1 - w)^2`` on them;
- :func:`ramp` and :func:`inverse_decay`: the ``2 / (1 + exp(-10 p)) - 1`` loss ramp and the
  ``(1 + 10 p)^-0.75`` learning-rate decay (Ganin & Lempitsky 2015, arXiv:1409.7495).

Torch only; every function takes and returns tensors and is differentiable where its docstring
says so.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_sparse.core.transport import cosine_cost

__all__ = [
    "confident_pseudo_label_loss",
    "entropy",
    "inverse_decay",
    "per_sample_transport_cost",
    "ramp",
    "rank_weight_loss",
    "separate_and_align_loss",
    "source_alignment_loss",
    "weight_transport_loss",
]

_TINY = 1e-12


def _check_pair(plan: Tensor, cost: Tensor) -> None:
    if plan.shape != cost.shape or plan.dim() != 2:
        raise ValueError(f"`plan` and `cost` must be (N, M) of one shape, got {tuple(plan.shape)} and {tuple(cost.shape)}.")


def separate_and_align_loss(plan: Tensor, cost: Tensor, align_weight: float = 5.0) -> Tensor:
    """The SA loss: align the pairs the plan moves cheaply, separate the others (grad: ``cost``).

    A pair ``(i, j)`` with ``P_ij > 0`` is *aligned* when ``C_ij < <P, C>`` (half of it when equal,
    as the official ``1 - (1 + sign(C - L)) / 2``), else *separated*; the loss is
    ``align_weight * sum(P_al * C) / sum(P_al) + sum(U * (1 - C)) / sum(U)`` with
    ``U = exp(-P_sep)`` on the separated pairs' support. An empty group contributes 0.

    Examples:
        >>> plan = torch.tensor([[0.5, 0.0], [0.25, 0.25]])
        >>> cost = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
        >>> round(separate_and_align_loss(plan, cost).item(), 4)  # mean cost 0.3: 5 * 0.1 / 0.75 + 0.2
        0.8667
    """
    _check_pair(plan, cost)
    plan = plan.detach()
    mean_cost = (plan * cost).sum().detach()
    aligned = plan * (1.0 - 0.5 * (1.0 + torch.sign(cost.detach() - mean_cost)))  # (N, M)
    separated = plan - aligned
    separated = torch.where(separated != 0, torch.exp(-separated), torch.zeros_like(separated))
    loss = cost.sum() * 0.0
    if aligned.sum() > 0:
        loss = loss + align_weight * (aligned * cost).sum() / aligned.sum()
    if separated.sum() > 0:
        loss = loss + (separated * (1.0 - cost)).sum() / separated.sum()
    return loss


def per_sample_transport_cost(plan: Tensor, cost: Tensor, marginal: Tensor, dim: int) -> Tensor:
    """Cost of moving each instance's mass, ``sum(P * C, dim) / marginal`` (instances on the other axis).

    ``dim=0`` gives one value per column (the ``b`` side), ``dim=1`` per row (the ``a`` side).

    Examples:
        >>> plan = torch.tensor([[0.5, 0.0], [0.25, 0.25]]); cost = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
        >>> per_sample_transport_cost(plan, cost, torch.tensor([0.75, 0.25]), dim=0).tolist()
        [0.3333333432674408, 0.20000000298023224]
    """
    _check_pair(plan, cost)
    if dim not in (0, 1):
        raise ValueError(f"`dim` must be 0 or 1, got {dim!r}.")
    return (plan * cost).sum(dim=dim) / marginal.reshape(-1).clamp_min(_TINY)


def weight_transport_loss(plan: Tensor, cost: Tensor, marginal: Tensor, dim: int) -> Tensor:
    """``sum_j c_j * b_j`` with the per-instance costs ``c`` constant (grad: the marginal ``b``).

    ``marginal`` is the normalised weights (:func:`~lightning_sparse.core.transport.normalize_marginal`
    of the weight network's outputs): the gradient moves mass away from expensive instances. With
    an intra-domain plan (uniform -> weighted, the same domain on both axes) this is the IOT term.

    Examples:
        >>> plan = torch.tensor([[0.5, 0.0], [0.25, 0.25]]); cost = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
        >>> b = torch.tensor([0.75, 0.25], requires_grad=True)
        >>> loss = weight_transport_loss(plan, cost, b, dim=0); loss.backward()
        >>> round(loss.item(), 4), [round(g, 4) for g in b.grad.tolist()]
        (0.3, [0.3333, 0.2])
    """
    costs = per_sample_transport_cost(plan.detach(), cost.detach(), marginal.detach(), dim)
    return (costs * marginal.reshape(-1)).sum()


def rank_weight_loss(weights: Tensor, scores: Tensor) -> Tensor:
    """Weights of the instances sorted by ``scores`` (ascending) regressed onto ``1, ..., 0``.

    ``sum_r (t_r - w_(r))^2`` with ``t_r = 1 - r / (B - 1)``: the instance with the lowest score
    (cheapest transport, lowest entropy: most likely shared) should weigh 1, the highest 0 (the
    official ``FL_weight_loss``, a sum over the batch). Grad: ``weights``.

    Examples:
        >>> rank_weight_loss(torch.tensor([0.0, 1.0, 0.5]), torch.tensor([3.0, 1.0, 2.0])).item()
        0.0
    """
    w = weights.reshape(-1)
    if scores.reshape(-1).shape != w.shape:
        raise ValueError(f"`scores` must have one value per weight ({w.numel()}), got {tuple(scores.shape)}.")
    n = w.numel()
    targets = torch.linspace(1.0, 0.0, n, device=w.device, dtype=w.dtype) if n > 1 else torch.ones_like(w)
    order = torch.argsort(scores.reshape(-1).detach(), stable=True)
    return ((targets - w[order]) ** 2).sum()


def source_alignment_loss(features: Tensor, labels: Tensor) -> Tensor:
    """Mean cosine cost of same-label pairs plus mean ``1 - cost`` of different-label pairs.

    Pairs include ``(i, i)``, as in the official ``align_source``; a batch of one class has no
    different-label term. Grad: ``features``.

    Examples:
        >>> f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> round(source_alignment_loss(f, torch.tensor([0, 0, 1])).item(), 4)
        0.5
    """
    if labels.shape != (features.shape[0],):
        raise ValueError(f"`labels` must be (N,) for features {tuple(features.shape)}, got {tuple(labels.shape)}.")
    cost = cosine_cost(features, features)  # (N, N)
    same = (labels[:, None] == labels[None, :]).float()
    loss = (cost * same).sum() / same.sum()
    diff = 1.0 - same
    if diff.sum() > 0:
        loss = loss + ((1.0 - cost) * diff).sum() / diff.sum()
    return loss


def entropy(logits: Tensor) -> Tensor:
    """Entropy of the softmax of each row, ``(N,)``.

    Examples:
        >>> round(entropy(torch.zeros(1, 4)).item(), 4) == round(math.log(4), 4)
        True
    """
    return -(F.softmax(logits, dim=1) * F.log_softmax(logits, dim=1)).sum(dim=1)


def confident_pseudo_label_loss(
    logits: Tensor, weights: Tensor | None = None, threshold: float = 0.9,
    allowed_classes: Tensor | None = None, min_weight: float | None = None, weighted: bool = False,
) -> tuple[Tensor, Tensor]:
    """Cross-entropy on confident target predictions, and ``(1 - w)^2`` on the same instances.

    An instance counts when its top softmax probability exceeds ``threshold``, its predicted class
    is allowed (``allowed_classes``, a bool ``(K,)``: the shared classes) and, with ``min_weight``,
    its weight exceeds it (the open-set script's ``0.3``). With ``weighted=True`` each cross-entropy
    is multiplied by the instance's weight (the open-set script). Both terms are means over the
    counted instances, 0 when there are none. Grad: ``logits`` and ``weights``.

    Returns:
        ``(pseudo_label_loss, weight_to_one_loss)``.

    Examples:
        >>> logits = torch.tensor([[9.0, 0.0], [0.2, 0.0]])
        >>> ce, one = confident_pseudo_label_loss(logits, torch.tensor([0.5, 0.9]))
        >>> round(ce.item(), 4), round(one.item(), 4)  # only the first is confident
        (0.0001, 0.25)
    """
    probs = F.softmax(logits.detach(), dim=1)
    top, predicted = probs.max(dim=1)
    keep = top > threshold
    if allowed_classes is not None:
        keep &= allowed_classes.to(logits.device)[predicted]
    w = weights.reshape(-1) if weights is not None else None
    if min_weight is not None and w is not None:
        keep &= w.detach() > min_weight
    zero = logits.sum() * 0.0
    if not keep.any():
        return zero, zero if w is None else zero + w.sum() * 0.0
    ce = F.cross_entropy(logits[keep], predicted[keep], reduction="none")
    if weighted and w is not None:
        ce = ce * w[keep]
    one = ((1.0 - w[keep]) ** 2).mean() if w is not None else zero
    return ce.mean(), one


def ramp(progress: float, gamma: float = 10.0) -> float:
    """The adaptation ramp ``2 / (1 + exp(-gamma p)) - 1``, 0 at ``p=0`` rising to ~1.

    Examples:
        >>> ramp(0.0), round(ramp(1.0), 4)
        (0.0, 0.9999)
    """
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


def inverse_decay(progress: float, gamma: float = 10.0, power: float = 0.75) -> float:
    """The learning-rate factor ``(1 + gamma p)^-power`` of DANN and the LIWUDA scripts.

    Examples:
        >>> inverse_decay(0.0), round(inverse_decay(1.0), 4)
        (1.0, 0.1656)
    """
    return (1.0 + gamma * progress) ** (-power)
