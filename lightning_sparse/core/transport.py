"""Weighted optimal transport between mini-batches, on POT.

Weighted Optimal Transport (WOT) as LIWUDA uses it (Zhu et al. 2023, "Learning Instance Weighting
for Unsupervised Domain Adaptation", arXiv:2312.05024): the two marginals are the instances'
weights (each normalised to sum 1), the ground cost is the cosine cost ``(1 - cos) / 2`` of their
features, and the plan is POT's exact partial Wasserstein solution
(``ot.partial.partial_wasserstein``, Chapel et al. 2020, arXiv:2002.08276) or its entropic
version (``ot.partial.entropic_partial_wasserstein``, Benamou et al. 2015) for speed. The plan is
a constant (no gradient flows through the solver); losses are linear in the cost, so gradients
reach the features through the cost and the weights through the marginals.

Where the official code (JinjingZhu/LIWUDA, ``mmd.py``) scales both marginals by ``0.9999`` and
transports the smaller total, this does the same by default (``mass=1.0`` of the scaled total):
the full mass is moved; ``mass < 1`` transports only that share (true partial transport).

Everything is torch + NumPy; the solver runs on the CPU in float64 and the plan comes back on the
cost's device and dtype.
"""

from __future__ import annotations

import numpy as np
import ot
import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_sparse._validation import check_number

__all__ = [
    "SOLVERS",
    "class_conditional_transport_cost",
    "cosine_cost",
    "normalize_marginal",
    "transport_plan",
    "uniform_marginal",
]

SOLVERS = ("exact", "entropic")
"""Solvers of :func:`transport_plan`: POT's exact partial Wasserstein or its entropic version."""

_SCALE = 1.0 - 1e-4  # the official marginals' total (0.9999): keeps m <= min(|a|, |b|) in float


def cosine_cost(x: Tensor, y: Tensor) -> Tensor:
    """The cosine cost ``(1 - cos(x_i, y_j)) / 2`` in ``[0, 1]``, shape ``(N, M)``.

    Examples:
        >>> c = cosine_cost(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]]))
        >>> c.tolist()
        [[0.0, 0.5, 1.0]]
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"`x` and `y` must be (N, D) and (M, D) features, got {tuple(x.shape)} and {tuple(y.shape)}.")
    cos = F.normalize(x.float(), dim=1) @ F.normalize(y.float(), dim=1).t()  # (N, M)
    return (1.0 - cos) / 2.0


def uniform_marginal(n: int, like: Tensor) -> Tensor:
    """``n`` equal masses summing to the official total ``0.9999``.

    Examples:
        >>> round(uniform_marginal(4, torch.zeros(1)).sum().item(), 6)
        0.9999
    """
    return torch.full((n,), _SCALE / n, dtype=like.dtype, device=like.device)


def normalize_marginal(weights: Tensor) -> Tensor:
    """Weights ``(N,)`` or ``(N, 1)`` as a marginal summing to ``0.9999`` (differentiable).

    Examples:
        >>> [round(v, 6) for v in normalize_marginal(torch.tensor([[1.0], [3.0]])).tolist()]
        [0.249975, 0.749925]
    """
    w = weights.reshape(-1).float()
    if (w < 0).any():
        raise ValueError("`weights` must be non-negative.")
    return _SCALE * w / w.sum().clamp_min(torch.finfo(w.dtype).tiny)


def transport_plan(
    a: Tensor, b: Tensor, cost: Tensor, solver: str = "exact", mass: float = 1.0, reg: float = 0.05,
    max_iter: int = 1000,
) -> Tensor:
    """The (partial) transport plan between marginals ``a`` ``(N,)`` and ``b`` ``(M,)``, ``(N, M)``.

    Args:
        a: Source masses (non-negative), e.g. from :func:`normalize_marginal`.
        b: Target masses.
        cost: Ground cost ``(N, M)``.
        solver: ``"exact"`` (``ot.partial.partial_wasserstein``, a network-flow LP) or
            ``"entropic"`` (``ot.partial.entropic_partial_wasserstein`` with ``reg``).
        mass: Share of ``min(a.sum(), b.sum())`` to transport, in ``(0, 1]``.
        reg: Entropic regularisation (``"entropic"`` only), positive; relative to costs in ``[0, 1]``.
        max_iter: Iterations of the entropic solver.

    Returns:
        The plan, detached, on ``cost``'s device and dtype; its total is the transported mass.

    Raises:
        ValueError: If an argument is out of range or the shapes do not match.

    Examples:
        >>> a = torch.tensor([0.5, 0.5]); b = torch.tensor([0.5, 0.5])
        >>> transport_plan(a, b, torch.tensor([[0.0, 1.0], [1.0, 0.0]])).tolist()
        [[0.5, 0.0], [0.0, 0.5]]
    """
    if solver not in SOLVERS:
        raise ValueError(f"`solver` must be one of {list(SOLVERS)}, got {solver!r}.")
    check_number("mass", mass, 0.0, 1.0, low_open=True)
    check_number("reg", reg, 0.0, low_open=True)
    if cost.dim() != 2 or cost.shape != (a.numel(), b.numel()):
        raise ValueError(
            f"`cost` must have shape (len(a), len(b)) = ({a.numel()}, {b.numel()}), got {tuple(cost.shape)}."
        )
    a_np = a.detach().reshape(-1).to("cpu", torch.float64).numpy()
    b_np = b.detach().reshape(-1).to("cpu", torch.float64).numpy()
    m_np = np.ascontiguousarray(cost.detach().to("cpu", torch.float64).numpy())
    m = mass * min(a_np.sum(), b_np.sum())
    if solver == "exact":
        plan = ot.partial.partial_wasserstein(a_np, b_np, m_np, m=m)
    else:
        plan = ot.partial.entropic_partial_wasserstein(a_np, b_np, m_np, reg, m=m, numItermax=max_iter)
    return torch.as_tensor(np.asarray(plan), dtype=cost.dtype, device=cost.device)


def class_conditional_transport_cost(
    source: Tensor, target: Tensor, source_labels: Tensor, target_probs: Tensor, solver: str = "exact",
    reg: float = 0.05,
) -> Tensor:
    """LIWUDA's closed-set WOT: the mean over classes of ``<plan_k, cost>`` between class-k masses.

    For every class ``k`` present among the source labels and among the target argmax predictions,
    the source marginal is the one-hot column of ``k`` normalised over the batch and the target
    marginal the predicted probability of ``k`` normalised over the batch (the official
    ``cal_loss`` / ``lwot``); the loss is the average of the transport costs. Gradients reach both
    feature sets through the cosine cost.

    Examples:
        >>> s = torch.tensor([[1.0, 0.0], [0.0, 1.0]]); y = torch.tensor([0, 1])
        >>> p = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
        >>> round(class_conditional_transport_cost(s, s.clone(), y, p).item(), 4)  # (0.1818 + 0.1111) / 2 * 0.5
        0.0732
    """
    if target_probs.shape != (target.shape[0], target_probs.shape[1]) or source_labels.shape != (source.shape[0],):
        raise ValueError(
            "`source_labels` must be (N,) and `target_probs` (M, K) for features (N, D) and (M, D), got "
            f"{tuple(source_labels.shape)} and {tuple(target_probs.shape)}."
        )
    cost = cosine_cost(source, target)  # (N, M)
    predicted = target_probs.argmax(dim=1)
    probs = target_probs.detach().float()
    terms = []
    for k in sorted(set(source_labels.tolist()) & set(predicted.tolist())):
        a = normalize_marginal((source_labels == k).float())
        b = normalize_marginal(probs[:, k])
        terms.append((transport_plan(a, b, cost, solver, reg=reg) * cost).sum())
    if not terms:
        return cost.sum() * 0.0
    return torch.stack(terms).mean()
