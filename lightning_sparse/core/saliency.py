"""Pruning-at-initialization saliency scores and the masks they give. Higher score = keep.

Scores are per-parameter tensors of the weight's shape, computed for a ``name -> parameter``
mapping and returned under the same names:

- ``magnitude``: ``|w|``.
- SNIP (Lee, Ajanthan, Torr 2019, "SNIP: Single-shot Network Pruning based on Connection
  Sensitivity", arXiv:1810.02340): ``|g * w|``.
- GraSP (Wang, Zhang, Grosse 2020, "Picking Winning Tickets Before Training by Preserving
  Gradient Flow", arXiv:2002.07376): ``w * Hg``, the *negation* of the paper's
  ``S(-w) = -w * Hg`` (see :func:`grasp_scores`).
- SynFlow (Tanaka, Kunin, Yamins, Ganguli 2020, "Pruning neural networks without any data by
  iteratively conserving synaptic flow", arXiv:2006.05467): ``|dR/dw * w|`` of the linearised
  network, pruned iteratively by :func:`iterative_masks` / :func:`synflow_masks`.

Deviations from the reference (github.com/ganguli-lab/Synaptic-Flow, ``Pruners/pruners.py``,
``prune.py``): no normalisation by the scores' sum (a positive factor: same ranking); gradients
via ``torch.autograd.grad`` on the listed parameters, so no ``.grad`` is touched; SynFlow restores
the model bit for bit; the reference's ``prune_loop`` puts the model in eval mode for every
pruner, which SNIP and GraSP leave to the caller's closures; masks keep exactly
``round(density * n)`` positions, ties broken by a seeded random choice (the reference's
``kthvalue`` threshold may keep more on ties).

Torch only: this module never imports Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from lightning_sparse._validation import check_choice, check_int, check_number
from lightning_sparse.core.targets import SparseTarget
from lightning_sparse.core.topology import select_topk

__all__ = [
    "SALIENCY_SCHEDULES",
    "SALIENCY_SCOPES",
    "grasp_scores",
    "iterative_masks",
    "magnitude_scores",
    "schedule_densities",
    "snip_scores",
    "synflow_masks",
    "synflow_scores",
    "topk_masks",
]

SALIENCY_SCOPES = ("global", "layer")
SALIENCY_SCHEDULES = ("exponential", "linear")

Closure = Callable[[], Tensor]


def _check_params(params: Mapping[str, Tensor], name: str = "params") -> dict[str, Tensor]:
    if not isinstance(params, Mapping) or not params:
        raise ValueError(f"`{name}` must be a non-empty mapping of name -> tensor, got {params!r}.")
    for key, value in params.items():
        if not isinstance(value, Tensor):
            raise ValueError(f"`{name}[{key!r}]` must be a tensor, got {type(value).__name__}.")
    return dict(params)


def _check_closures(closures: Closure | Iterable[Closure]) -> list[Closure]:
    out = [closures] if callable(closures) else list(closures)
    if not out or not all(callable(c) for c in out):
        raise ValueError(f"`closures` must be a callable or a non-empty list of callables, got {closures!r}.")
    return out


def _loss(closure: Closure) -> Tensor:
    loss = closure()
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError(f"every closure in `closures` must return a scalar loss tensor, got {loss!r}.")
    return loss.reshape(())


@contextmanager
def _grad_guard(params: Mapping[str, Tensor]):
    """Enable grad on ``params`` for the duration; restore their ``requires_grad`` and ``.grad``."""
    flags = {n: p.requires_grad for n, p in params.items()}
    grads = {n: (p.grad, None if p.grad is None else p.grad.detach().clone()) for n, p in params.items()}
    try:
        for p in params.values():
            p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for n, p in params.items():
            grad, saved = grads[n]
            if grad is not None:  # the same tensor object, with its old values
                with torch.no_grad():
                    grad.copy_(saved)
            p.grad = grad
            p.requires_grad_(flags[n])


def _grads(output: Tensor, params: Mapping[str, Tensor], create_graph: bool = False) -> list[Tensor]:
    """``d output / d p`` for every parameter (zeros where ``output`` does not depend on it)."""
    tensors = list(params.values())
    if not output.requires_grad:
        return [torch.zeros_like(p) for p in tensors]
    grads = torch.autograd.grad(output, tensors, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, tensors)]


def magnitude_scores(params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``|w|`` for every parameter.

    Examples:
        >>> magnitude_scores({"w": torch.tensor([-2.0, 1.0])})["w"].tolist()
        [2.0, 1.0]
    """
    return {n: p.detach().abs() for n, p in _check_params(params).items()}


def snip_scores(params: Mapping[str, Tensor], closures: Closure | Iterable[Closure]) -> dict[str, Tensor]:
    """SNIP's connection sensitivity ``|g * w|``, ``g`` the gradient of the summed closure losses.

    From "SNIP: Single-shot Network Pruning based on Connection Sensitivity" (Lee et al., 2019,
    arXiv:1810.02340). Each closure computes the loss of one batch (it must not call
    ``backward``); ``.grad`` and the values of the parameters are left as they were.

    Args:
        params: name -> parameter to score.
        closures: zero-argument callables, each returning a scalar loss (or one such callable).

    Returns:
        name -> detached score of the parameter's shape.

    Raises:
        ValueError: empty ``params`` or ``closures``, or a closure that returns no scalar.

    Examples:
        >>> w = torch.nn.Parameter(torch.tensor([2.0, -3.0]))
        >>> snip_scores({"w": w}, [lambda: (w ** 2).sum()])["w"].tolist()  # |2w * w|
        [8.0, 18.0]
    """
    params, closures = _check_params(params), _check_closures(closures)
    total = [torch.zeros_like(p) for p in params.values()]
    with _grad_guard(params):
        for closure in closures:
            for acc, g in zip(total, _grads(_loss(closure), params)):
                acc.add_(g.detach())
    return {n: (g * p.detach()).abs() for (n, p), g in zip(params.items(), total)}


def grasp_scores(params: Mapping[str, Tensor], closures: Closure | Iterable[Closure]) -> dict[str, Tensor]:
    """GraSP's gradient-flow score ``w * Hg``, signed so that the highest scores are kept.

    From "Picking Winning Tickets Before Training by Preserving Gradient Flow" (Wang et al., 2020,
    arXiv:2002.07376). ``g`` is the gradient of the losses summed over the closures (taken with no
    graph); a second pass per closure takes ``g'`` with a graph and accumulates
    ``Hg = d(sum(g * g')) / dw``.

    Sign: the paper scores ``S(-w) = -w * Hg`` and *removes* the largest ``S`` (the official
    alecwangcq/GraSP code keeps ``-w * Hg <= threshold``); Synaptic-Flow stores ``w * Hg`` ("negate
    to remove top percent") and keeps the largest. Both keep the largest ``w * Hg``, which is what
    this function returns, so ``topk_masks`` keeps what GraSP keeps.

    Temperature: the reference divides the logits by ``T = 200`` before the cross entropy. The
    closures return the task's loss, so the temperature is the caller's business (divide the
    logits inside the closure to reproduce the reference); nothing here exposes it.

    Args:
        params: name -> parameter to score.
        closures: as in :func:`snip_scores`; each is called twice.

    Raises:
        ValueError: as :func:`snip_scores`.

    Examples:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
        >>> grasp_scores({"w": w}, [lambda: (w ** 4).sum() / 4])["w"].tolist()  # w * 3w^2 * w^3
        [3.0, 192.0]
    """
    params, closures = _check_params(params), _check_closures(closures)
    stopped = [torch.zeros_like(p) for p in params.values()]
    hg = [torch.zeros_like(p) for p in params.values()]
    with _grad_guard(params):
        for closure in closures:
            for acc, g in zip(stopped, _grads(_loss(closure), params)):
                acc.add_(g.detach())
        for closure in closures:
            grads = _grads(_loss(closure), params, create_graph=True)
            z = sum((s * g).sum() for s, g in zip(stopped, grads))
            for acc, h in zip(hg, _grads(z, params)):
                acc.add_(h.detach())
    return {n: p.detach() * h for (n, p), h in zip(params.items(), hg)}


def synflow_scores(model: nn.Module, params: Mapping[str, Tensor], input_shape: Sequence[int]) -> dict[str, Tensor]:
    """SynFlow's ``|dR/dw * w|`` with ``R = sum(f(1))`` of the linearised network ``|W|``.

    From "Pruning neural networks without any data by iteratively conserving synaptic flow"
    (Tanaka et al., 2020, arXiv:2006.05467). Every floating state-dict entry of ``model`` (weights,
    biases and buffers such as BatchNorm statistics) is replaced by its absolute value, an
    all-ones input of shape ``(1, *input_shape)`` is forwarded in eval mode (the reference's
    ``prune_loop`` calls ``model.eval()``) in the model's own precision (the reference's
    ``model.double()`` and ``float64`` input are commented out; call ``model.double()`` first to
    avoid overflow in very deep nets), and the signs are restored afterwards: the state dict is
    bit-identical (zeros and NaNs keep their sign bit), every module's training flag and every
    ``.grad`` are as before.

    Args:
        model: the network; ``params`` are some of its parameters.
        params: name -> parameter to score.
        input_shape: the shape of one input sample, without the batch dimension.

    Raises:
        ValueError: empty ``params`` or an ``input_shape`` that is not a sequence of positive ints.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 1, bias=False))
        >>> with torch.no_grad():
        ...     _ = net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
        ...     _ = net[1].weight.copy_(torch.tensor([[-1.0, 2.0]]))
        >>> synflow_scores(net, dict(net.named_parameters()), (2,))["0.weight"].tolist()
        [[1.0, 2.0], [6.0, 1.0]]
    """
    params = _check_params(params)
    shape = tuple(input_shape) if isinstance(input_shape, Sequence) else None
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"`input_shape` must be a non-empty sequence of positive ints, got {input_shape!r}.")
    ref = next((p for p in params.values() if p.is_floating_point()), next(iter(params.values())))
    flags = {m: m.training for m in model.modules()}
    entries, seen = [], set()
    for t in model.state_dict(keep_vars=True).values():
        if isinstance(t, Tensor) and t.is_floating_point() and id(t) not in seen:
            seen.add(id(t))
            entries.append(t)
    negative = []
    try:
        with torch.no_grad():
            for t in entries:
                negative.append(torch.signbit(t))
                t.abs_()
        model.eval()
        with _grad_guard(params):
            output = model(torch.ones((1, *shape), dtype=ref.dtype, device=ref.device))
            grads = _grads(output.sum(), params)
            scores = {n: (g.detach() * p.detach()).abs() for (n, p), g in zip(params.items(), grads)}
    finally:
        with torch.no_grad():
            for t, neg in zip(entries, negative):
                t.copy_(torch.where(neg, t.neg(), t))
        for m, flag in flags.items():
            m.training = flag
    return scores


def _keep(density: float, n: int) -> int:
    return min(n, math.floor(density * n + 0.5))


def _topk(
    scores: Mapping[str, Tensor],
    density: float,
    scope: str,
    generator: torch.Generator | None,
    candidates: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(0) if generator is None else generator
    names = list(scores)
    if scope == "layer":
        return {n: select_topk(scores[n], _keep(density, scores[n].numel()), gen,
                               None if candidates is None else candidates[n]) for n in names}
    flat = torch.cat([scores[n].detach().flatten().float().cpu() for n in names])
    cand = None if candidates is None else torch.cat([candidates[n].flatten().cpu() for n in names])
    chosen = select_topk(flat, _keep(density, flat.numel()), gen, cand)
    out, start = {}, 0
    for n in names:
        k = scores[n].numel()
        out[n] = chosen[start:start + k].view(scores[n].shape).to(scores[n].device)
        start += k
    return out


def topk_masks(
    scores: Mapping[str, Tensor], density: float, scope: str = "global", generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Bool masks keeping the ``round(density * n)`` highest scores, over all tensors or per tensor.

    ``scope="global"`` ranks all tensors together (``n`` is their total size); ``"layer"`` keeps
    ``round(density * n_l)`` of every tensor. Counts are exact; ties are broken by a seeded random
    choice (``generator``, default a fresh generator seeded with 0) and NaN scores rank last.

    Args:
        scores: name -> score tensor (higher = keep).
        density: share of positions kept, in ``(0, 1]``.
        scope: ``"global"`` or ``"layer"``.
        generator: CPU random generator for ties.

    Raises:
        ValueError: empty ``scores``, ``density`` outside ``(0, 1]`` or an unknown ``scope``.

    Examples:
        >>> s = {"a": torch.tensor([3.0, 1.0]), "b": torch.tensor([2.0, 0.5])}
        >>> {n: m.tolist() for n, m in topk_masks(s, 0.5).items()}
        {'a': [True, False], 'b': [True, False]}
        >>> topk_masks(s, 0.5, scope="layer")["a"].tolist()
        [True, False]
    """
    scores = _check_params(scores, "scores")
    check_number("density", density, 0.0, 1.0, low_open=True)
    check_choice("scope", scope, SALIENCY_SCOPES)
    return _topk(scores, density, scope, generator)


def schedule_densities(density: float, iterations: int, schedule: str = "exponential") -> list[float]:
    """The density kept after each of ``iterations`` pruning rounds, ending exactly at ``density``.

    ``exponential``: ``density ** (k / iterations)`` (SynFlow's choice); ``linear``:
    ``density + (1 - density) * (1 - k / iterations)``, for ``k = 1 .. iterations``.

    Raises:
        ValueError: ``density`` outside ``(0, 1]``, ``iterations < 1`` or an unknown ``schedule``.

    Examples:
        >>> schedule_densities(0.01, 2)
        [0.1, 0.01]
        >>> [round(d, 6) for d in schedule_densities(0.4, 3, "linear")]
        [0.8, 0.6, 0.4]
    """
    check_number("density", density, 0.0, 1.0, low_open=True)
    check_int("iterations", iterations, 1)
    check_choice("schedule", schedule, SALIENCY_SCHEDULES)
    if schedule == "exponential":
        return [density ** (k / iterations) for k in range(1, iterations + 1)]
    return [density + (1.0 - density) * (1.0 - k / iterations) for k in range(1, iterations + 1)]


def iterative_masks(
    score_fn: Callable[[], Mapping[str, Tensor]],
    params: Mapping[str, Tensor],
    density: float,
    iterations: int = 100,
    schedule: str = "exponential",
    scope: str = "global",
    generator: torch.Generator | None = None,
    targets: Mapping[str, SparseTarget] | None = None,
) -> dict[str, Tensor]:
    """Prune iteratively: mask the weights, score the masked network, keep the top ``density_k``.

    SynFlow's loop (``prune_loop`` of the reference): starting from all-True masks, round ``k``
    multiplies the weights by the current masks (in place), calls ``score_fn()``, sets the scores
    of pruned positions to ``-inf`` and keeps the top ``schedule_densities(...)[k - 1]`` among the
    surviving positions, so a pruned position never comes back. The original weights are
    restored at the end (also on error); the caller applies the returned masks.

    Args:
        score_fn: zero-argument callable returning name -> score for (at least) every name of
            ``params``, read from the currently masked weights.
        params: name -> parameter to prune.
        density: final share of positions kept, in ``(0, 1]``.
        iterations: number of rounds, >= 1.
        schedule: ``"exponential"`` or ``"linear"``.
        scope: ``"global"`` or ``"layer"``.
        generator: random generator for ties (default seeded with 0).
        targets: name -> :class:`~lightning_sparse.core.targets.SparseTarget` to prune whole
            units (``granularity="kernel"``: a unit's score is the sum of its elements'; the
            masks are unit-shaped and start from the target's allowed region); None: elements.

    Returns:
        name -> bool mask (unit-shaped with ``targets``); exactly ``round(density * n)`` positions are kept (``n`` the total or
        per-tensor size, following ``scope``).

    Raises:
        ValueError: bad ``density``, ``iterations``, ``schedule`` or ``scope``, empty ``params``,
            or a ``score_fn`` result that misses a name.

    Examples:
        >>> w = torch.nn.Parameter(torch.tensor([0.5, -2.0, 1.0, 0.25]))
        >>> masks = iterative_masks(lambda: magnitude_scores({"w": w}), {"w": w}, 0.5, iterations=3)
        >>> masks["w"].tolist(), w.tolist()  # the weights are restored
        ([False, True, True, False], [0.5, -2.0, 1.0, 0.25])
    """
    params = _check_params(params)
    check_choice("scope", scope, SALIENCY_SCOPES)
    densities = schedule_densities(density, iterations, schedule)
    gen = torch.Generator().manual_seed(0) if generator is None else generator
    units = {n: (targets[n] if targets is not None else None) for n in params}
    masks = {n: _start_mask(p, units[n]) for n, p in params.items()}
    originals = {n: p.detach().clone() for n, p in params.items()}
    try:
        for density_k in densities:
            with torch.no_grad():
                for n, p in params.items():
                    full = masks[n] if units[n] is None else units[n].expand(masks[n].to(p.device))
                    p.copy_(originals[n] * full)
            scores = score_fn()
            missing = [n for n in params if n not in scores]
            if missing:
                raise ValueError(f"`score_fn` must return a score for every parameter, missing {missing}.")
            scores = {n: (scores[n] if units[n] is None else units[n].reduce(scores[n])).detach()
                      .masked_fill(~masks[n].to(scores[n].device), -math.inf) for n in params}
            masks = _topk(scores, density_k, scope, gen, candidates=masks)
    finally:
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(originals[n])
    return masks


def _start_mask(p: Tensor, target: SparseTarget | None) -> Tensor:
    if target is None:
        return torch.ones(p.shape, dtype=torch.bool, device=p.device)
    if target.allowed is not None:
        return target.allowed.clone().bool()
    return torch.ones(target.unit_shape, dtype=torch.bool)


def synflow_masks(
    model: nn.Module,
    params: Mapping[str, Tensor],
    density: float,
    input_shape: Sequence[int],
    iterations: int = 100,
    scope: str = "global",
) -> dict[str, Tensor]:
    """SynFlow masks: :func:`iterative_masks` over :func:`synflow_scores` (exponential schedule).

    From "Pruning neural networks without any data by iteratively conserving synaptic flow"
    (Tanaka et al., 2020, arXiv:2006.05467), which uses 100 iterations. The model is restored
    exactly; the caller applies the masks.

    Raises:
        ValueError: as :func:`iterative_masks` and :func:`synflow_scores`.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> params = {n: p for n, p in net.named_parameters() if n.endswith("weight")}
        >>> masks = synflow_masks(net, params, 0.25, (4,), iterations=10)
        >>> sum(int(m.sum()) for m in masks.values())  # round(0.25 * 48)
        12
    """
    return iterative_masks(lambda: synflow_scores(model, params, input_shape), params, density,
                           iterations=iterations, schedule="exponential", scope=scope)
