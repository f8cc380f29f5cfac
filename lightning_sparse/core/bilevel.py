"""The bilevel pieces of gradient-based meta learning, on ``torch.func.functional_call``.

MOML (Ye, Lin, Yang, Zhang, "Multi-Objective Meta Learning", NeurIPS 2021, arXiv:2102.07121; code
Baijiong-Lin/MOML) solves ``min_alpha F(omega*(alpha), alpha)`` for a vector of upper-level
objectives ``F = (f_1, ..., f_m)`` with ``omega*(alpha) = argmin_omega L(omega, alpha)``; like
DARTS and MAML it approximates ``omega*`` by ``T`` unrolled gradient steps (``T = 1`` in the
official code) and differentiates through them:

- :func:`unrolled_parameters`: ``omega_T = omega_0 - eta * sum_t grad L(omega_t, alpha)`` as new
  tensors (``create_graph=True``), the module itself untouched: no deep copy of the model (the
  official scripts build a fresh network and load the state dict every step);
- :func:`functional_forward`: the module run with given parameters and *copies* of its buffers,
  so batch-norm statistics of the look-ahead never leak into the real model;
- :func:`hypergradients`: the gradient of every objective with respect to the meta-parameters,
  one row per objective, for the min-norm solver (:mod:`lightning_sparse.core.min_norm`).

Torch only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["functional_forward", "hypergradients", "unrolled_parameters"]


def functional_forward(module: nn.Module, params: Mapping[str, Tensor], *args: Any, **kwargs: Any) -> Any:
    """``module(*args, **kwargs)`` with ``params`` in place of its parameters and fresh copies of its
    buffers (running statistics updated on the copies, not on the module).

    Examples:
        >>> lin = nn.Linear(2, 1, bias=False)
        >>> functional_forward(lin, {"weight": torch.ones(1, 2)}, torch.tensor([[1.0, 2.0]])).item()
        3.0
    """
    buffers = {name: b.clone() for name, b in module.named_buffers()}
    return functional_call(module, ({**buffers, **params}), args, kwargs, strict=False)


def unrolled_parameters(
    params: Mapping[str, Tensor], loss_fn: Callable[[dict[str, Tensor]], Tensor], lr: float | Mapping[str, float],
    steps: int = 1, create_graph: bool = True,
) -> dict[str, Tensor]:
    """``steps`` plain gradient steps of ``loss_fn`` from ``params``, differentiable with respect to
    everything ``loss_fn`` depends on (the meta-parameters) when ``create_graph``.

    Args:
        params: Name -> tensor (e.g. ``dict(model.named_parameters())``); not modified.
        loss_fn: The lower-level loss of a parameter dict.
        lr: Step size ``eta`` (positive), or one per parameter name (e.g. the optimizer groups' rates).
        steps: Unrolled steps ``T`` (at least 1).
        create_graph: Keep the graph of the steps (needed for hypergradients).

    Returns:
        The parameters after the steps, a new dict of the same names.

    Raises:
        ValueError: If ``lr`` or ``steps`` is out of range.

    Examples:
        >>> alpha = torch.tensor(2.0, requires_grad=True)
        >>> fast = unrolled_parameters({"w": torch.tensor(1.0, requires_grad=True)},
        ...                            lambda p: alpha * p["w"] ** 2, lr=0.1)
        >>> fast["w"].item(), torch.autograd.grad(fast["w"], alpha)[0].item()  # w - 0.1 * 2 a w
        (0.6000000238418579, -0.20000000298023224)
    """
    rates = dict(lr) if isinstance(lr, Mapping) else {n: lr for n in params}
    if set(rates) != set(params) or not all(isinstance(r, (int, float)) and r > 0 for r in rates.values()):
        raise ValueError(f"`lr` must be positive (one value, or one per parameter name), got {lr!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"`steps` must be an integer >= 1, got {steps!r}.")
    names = list(params)
    fast = dict(params)
    for _ in range(steps):
        loss = loss_fn(fast)
        tensors = [fast[n] for n in names]
        grads = torch.autograd.grad(loss, tensors, create_graph=create_graph, allow_unused=True)
        fast = {n: t if g is None else t - rates[n] * g for n, t, g in zip(names, tensors, grads)}
    return fast


def hypergradients(objectives: Sequence[Tensor], wrt: Sequence[Tensor], retain_graph: bool = False) -> Tensor:
    """The gradient of each objective with respect to ``wrt``, flattened: ``(m, d)``.

    Objectives that do not depend on a tensor get zeros there. The graph is kept until the last
    objective, and after it with ``retain_graph`` (to backpropagate a combination afterwards).

    Examples:
        >>> a = torch.tensor([1.0, 2.0], requires_grad=True)
        >>> hypergradients([a.sum(), (a ** 2).sum()], [a]).tolist()
        [[1.0, 1.0], [2.0, 4.0]]
    """
    wrt = list(wrt)
    if not objectives:
        raise ValueError("`objectives` must hold at least one loss, got none.")
    rows = []
    for i, objective in enumerate(objectives):
        keep = retain_graph or i < len(objectives) - 1
        grads = torch.autograd.grad(objective, wrt, retain_graph=keep, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(t) if g is None else g).reshape(-1) for t, g in zip(wrt, grads)]))
    return torch.stack(rows)
