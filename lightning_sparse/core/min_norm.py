"""MGDA's min-norm solver: the convex combination of objectives' gradients with the smallest norm.

The multiple-gradient descent algorithm (MGDA; Désidéri 2012, "Multiple-gradient descent algorithm
(MGDA) for multiobjective optimization", C. R. Math. 350) steps along ``-sum_i lambda_i g_i`` with
``lambda`` on the simplex minimising ``||sum_i lambda_i g_i||^2``: a descent direction of every
objective unless the minimum is 0 (a Pareto-stationary point). Sener & Koltun ("Multi-Task
Learning as Multi-Objective Optimization", NeurIPS 2018, arXiv:1810.04650; code
isl-org/MultiObjectiveOptimization, ``min_norm_solvers.py``) solve it on the gradients' inner
products, and MOML (Ye, Lin, Yang, Zhang, "Multi-Objective Meta Learning", NeurIPS 2021,
arXiv:2102.07121; code Baijiong-Lin/MOML, ``min_norm_solvers.py``) uses the same solver on its
hypergradients:

- :func:`gradient_normalizers`: the scale each gradient is divided by first (``"none"``, ``"l2"``,
  ``"loss"``, ``"loss+"``, the reference's ``gradient_normalizers``);
- :func:`min_norm_weights`: ``lambda`` of the normalised gradients;
- :func:`min_norm_direction`: ``sum_i w_i g_i``;
- :func:`pareto_stationarity`: ``||sum_i lambda*_i g~_i||`` (0 at a Pareto-stationary point).

Everything works on the Gram matrix ``M = G G^T`` (``m x m``), computed once in float64 on the
gradients' device, so ``d`` can be millions; the small solver then runs on the CPU in NumPy.

How ``lambda`` is found: one objective gets ``[1]``; two get the exact closed form
``gamma = clamp(<g2 - g1, g2> / ||g1 - g2||^2, 0, 1)`` (``gamma`` on ``g1``); three or more start,
as the reference's ``_min_norm_2d``, from the best pair (the closed form on every pair) and then
run, by default (``solver="wolfe"``), Wolfe's min-norm-point algorithm (Wolfe 1976, "Finding the
nearest point in a polytope", Math. Programming 11): each major cycle adds the vertex a
Frank-Wolfe step would move to (the smallest ``(M lambda)_j``), each minor cycle jumps to the
minimiser over the affine hull of the current vertices (a small KKT solve) or, when that leaves
the simplex, moves as far towards it as the simplex allows and drops the vertices that reach 0.
It ends, exactly up to rounding, after finitely many steps (a handful for ``m <= 10``).
``solver="frank_wolfe"`` runs the reference's ``find_min_norm_element_FW`` instead (Frank-Wolfe
with the exact line search between the current point and the best vertex); it converges only as
``O(1/t)`` and is left a few percent above the optimum after its 250 steps on some instances.

Deviations from the reference code:

- Wolfe's algorithm is the default for ``m >= 3`` (above); Frank-Wolfe stays available.
- The two-point closed form clamps to exactly 0 / 1 where the reference returns 0.001 / 0.999,
  so a dominated gradient gets weight 0; gradients that agree to about ``1e-6`` relative
  (``||g1 - g2||^2 <= 1e-12 (||g1||^2 + ||g2||^2)``) are treated as identical and split
  0.5 / 0.5 (the reference gives 0.999 to the first).
- Scales are floored at float32's smallest normal number, so a zero gradient (or a zero loss)
  never divides by 0; the normalised Gram matrix is formed from cosines and log-scales, so an
  extreme scale neither overflows nor gives NaN.
- ``"loss"`` / ``"loss+"`` divide by ``|loss_i|``: the reference divides by the signed loss, which
  flips the gradient of a negative objective (e.g. MME's entropy term).
- Frank-Wolfe returns its last iterate (the reference returns the one before the final step).

Torch + NumPy only: this module never imports Lightning.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import reduce
from typing import Union

import numpy as np
import torch
from torch import Tensor

from lightning_sparse._validation import check_choice, check_int, check_number

__all__ = [
    "MIN_NORM_SOLVERS",
    "NORMALIZATIONS",
    "gradient_normalizers",
    "min_norm_direction",
    "min_norm_weights",
    "pareto_stationarity",
]

NORMALIZATIONS = ("none", "l2", "loss", "loss+")
"""Gradient normalisations of :func:`gradient_normalizers`: by 1, ``||g_i||``, ``|loss_i|`` or both."""

MIN_NORM_SOLVERS = ("wolfe", "frank_wolfe")
"""Solvers of :func:`min_norm_weights` for three or more objectives."""

Grads = Union[Tensor, Sequence[Union[Tensor, Sequence[Tensor]]]]

_FLOOR = torch.finfo(torch.float32).tiny  # the smallest scale any gradient is divided by
_SAME = 1e-12  # ||g1 - g2||^2 <= _SAME * (||g1||^2 + ||g2||^2): the two gradients are one point
_ZERO = 1e-12  # weights at or below this are 0 (on the Gram matrix scaled to a largest diagonal of 1)
_GAP = 1e-15  # absolute duality gap (same scale) that ends Wolfe's algorithm whatever ``tol``


# ------------------------------------------------------------------ inputs
def _objectives(grads: Grads) -> Tensor | list[list[Tensor]]:
    """An ``(m, d)`` tensor as is, or the list forms as ``m`` lists of tensors (checked)."""
    if isinstance(grads, Tensor):
        if grads.dim() != 2 or grads.shape[0] < 1:
            raise ValueError(
                f"`grads` must be an (m, d) tensor with m >= 1 (one row per objective) or a list, "
                f"got shape {tuple(grads.shape)}."
            )
        return grads
    if not isinstance(grads, (list, tuple)) or not grads:
        raise ValueError(
            f"`grads` must be an (m, d) tensor or a non-empty list of m tensors (or of m lists of tensors), "
            f"got {type(grads).__name__}."
        )
    parts = []
    for i, g in enumerate(grads):
        if isinstance(g, Tensor):
            parts.append([g])
        elif isinstance(g, (list, tuple)) and g and all(isinstance(p, Tensor) for p in g):
            parts.append(list(g))
        else:
            raise ValueError(f"`grads[{i}]` must be a tensor or a non-empty list of tensors, got {g!r}.")
    sizes = [sum(p.numel() for p in ps) for ps in parts]
    if len(set(sizes)) != 1:
        raise ValueError(f"every objective in `grads` must have the same number of elements, got {sizes}.")
    return parts


def _float_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype.is_floating_point else torch.float32


def _device(obj: Tensor | list[list[Tensor]]) -> torch.device:
    return obj.device if isinstance(obj, Tensor) else obj[0][0].device


def _stack(obj: Tensor | list[list[Tensor]], dtype: torch.dtype | None = None) -> Tensor:
    """The ``(m, d)`` stack (flattened, concatenated parts), in ``dtype`` (default: promoted)."""
    if isinstance(obj, Tensor):
        return obj if dtype is None else obj.to(dtype)
    if dtype is None:
        dtype = _float_dtype(reduce(torch.promote_types, (p.dtype for ps in obj for p in ps)))
    return torch.stack([torch.cat([p.reshape(-1).to(dtype) for p in ps]) for ps in obj])


def _gram(obj: Tensor | list[list[Tensor]]) -> np.ndarray:
    """``G G^T`` in float64 (computed on the gradients' device), as a symmetric NumPy array."""
    with torch.no_grad():
        g = _stack(obj.detach() if isinstance(obj, Tensor) else [[p.detach() for p in ps] for ps in obj],
                   torch.float64)
        gram = (g @ g.T).cpu().numpy()
    gram = (gram + gram.T) / 2.0
    if not np.isfinite(gram).all():
        raise ValueError("`grads` must be finite, got inf or NaN (in their inner products).")
    return gram


def _losses(losses: object, m: int) -> np.ndarray | None:
    if losses is None:
        return None
    try:
        if isinstance(losses, Tensor):
            arr = losses.detach().to("cpu", torch.float64).reshape(-1).numpy()
        else:
            arr = np.asarray(losses, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`losses` must be {m} numbers (one per objective), got {losses!r}.") from err
    if arr.size != m or not np.isfinite(arr).all():
        raise ValueError(f"`losses` must be {m} finite numbers (one per objective), got {losses!r}.")
    return arr


def _log_scales(norms: np.ndarray, losses: object, normalization: str) -> np.ndarray:
    """``log`` of the floored scales ``max(s_i, floor)`` (float64)."""
    check_choice("normalization", normalization, NORMALIZATIONS)
    m = norms.size
    losses = _losses(losses, m)
    if normalization in ("loss", "loss+") and losses is None:
        raise ValueError(f"`losses` (one per objective) are needed for normalization {normalization!r}, got None.")
    with np.errstate(divide="ignore"):
        log_norms = np.log(norms)
        log_raw = {
            "none": np.zeros(m),
            "l2": log_norms,
            "loss": np.log(np.abs(losses)) if losses is not None else None,
            "loss+": np.log(np.abs(losses)) + log_norms if losses is not None else None,
        }[normalization]
    return np.maximum(log_raw, math.log(_FLOOR))


def _norms(obj: Tensor | list[list[Tensor]]) -> np.ndarray:
    with torch.no_grad():
        if isinstance(obj, Tensor):
            sq = obj.detach().to(torch.float64).pow(2).sum(1)
        else:
            sq = torch.stack([sum(p.detach().to(torch.float64).pow(2).sum() for p in ps) for ps in obj])
        return sq.cpu().numpy() ** 0.5


def _normalized_gram(obj: Tensor | list[list[Tensor]], losses: object, normalization: str) -> tuple[np.ndarray, float]:
    """``(K, log_c)`` with ``K`` the Gram matrix of ``g_i / s_i`` divided by ``c^2`` (largest
    diagonal 1, or all 0 when every gradient is 0)."""
    gram = _gram(obj)
    norms = np.sqrt(np.maximum(np.diag(gram), 0.0))
    log_s = _log_scales(norms, losses, normalization)
    safe = np.maximum(norms, np.finfo(np.float64).tiny)
    cosines = gram / safe[:, None] / safe[None, :]  # rows of zero gradients are 0
    with np.errstate(divide="ignore"):
        log_r = np.log(norms) - log_s  # log ||g_i / s_i||; -inf for a zero gradient
    if not np.isfinite(log_r).any():
        return np.zeros_like(gram), -math.inf
    log_c = float(log_r.max())
    r = np.exp(log_r - log_c)
    return r[:, None] * r[None, :] * cosines, log_c


# ------------------------------------------------------------------ solvers on K
def _pair(a: float, b: float, c: float) -> float:
    """The weight of point 1 in ``min_gamma ||gamma p1 + (1 - gamma) p2||^2``, ``a = <p1, p1>``,
    ``b = <p1, p2>``, ``c = <p2, p2>``."""
    den = a + c - 2.0 * b
    if den <= _SAME * (a + c):
        return 0.5
    return min(max((c - b) / den, 0.0), 1.0)


def _best_pair(gram: np.ndarray) -> np.ndarray:
    """Sener & Koltun's ``_min_norm_2d``: the closed form on every pair, the best one kept."""
    m = gram.shape[0]
    best = (math.inf, 0, 1, 0.5)
    for i, j in itertools.combinations(range(m), 2):
        a, b, c = gram[i, i], gram[i, j], gram[j, j]
        gamma = _pair(a, b, c)
        cost = gamma * gamma * a + 2.0 * gamma * (1.0 - gamma) * b + (1.0 - gamma) ** 2 * c
        if cost < best[0]:
            best = (cost, i, j, gamma)
    lam = np.zeros(m)
    lam[best[1]] += best[3]
    lam[best[2]] += 1.0 - best[3]
    return lam


def _affine_minimizer(sub: np.ndarray) -> np.ndarray:
    """``argmin mu^T sub mu`` subject to ``sum mu = 1`` (the KKT system, least squares)."""
    k = sub.shape[0]
    kkt = np.zeros((k + 1, k + 1))
    kkt[:k, :k] = sub
    kkt[:k, k] = 1.0
    kkt[k, :k] = 1.0
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0
    return np.linalg.lstsq(kkt, rhs, rcond=None)[0][:k]


def _wolfe(gram: np.ndarray, max_iter: int, tol: float) -> np.ndarray:
    """Wolfe's min-norm-point algorithm on the Gram matrix, started from the best pair."""
    m = gram.shape[0]
    lam = _best_pair(gram)
    support = [int(i) for i in np.flatnonzero(lam > 0)]
    if len(support) == 2:
        i, j = support
        if gram[i, i] + gram[j, j] - 2.0 * gram[i, j] <= _SAME * (gram[i, i] + gram[j, j]):
            lam = np.zeros(m)  # one point twice: keep the corral affinely independent
            lam[i] = 1.0
            support = [i]
    steps = 0
    while steps < max_iter:
        g = gram @ lam
        f = float(lam @ g)
        j = int(np.argmin(g))
        if 2.0 * (f - g[j]) <= max(tol * f, _GAP) or j in support:  # the duality gap bounds f - f*
            break
        support.append(j)
        while steps < max_iter:  # minor cycles
            steps += 1
            mu = _affine_minimizer(gram[np.ix_(support, support)])
            cur = lam[support]
            if mu.min() > _ZERO:
                lam = np.zeros(m)
                lam[support] = mu
                break
            low = mu <= _ZERO
            theta = min(1.0, float(np.min(cur[low] / (cur[low] - mu[low]))))
            new = cur + theta * (mu - cur)
            keep = new > _ZERO
            if not keep.any():
                keep[int(np.argmax(new))] = True
            support = [s for s, k in zip(support, keep) if k]
            lam = np.zeros(m)
            lam[support] = new[keep] / new[keep].sum()
    return lam


def _frank_wolfe(gram: np.ndarray, max_iter: int, tol: float) -> np.ndarray:
    """Sener & Koltun's ``find_min_norm_element_FW``: exact line search towards the best vertex."""
    lam = _best_pair(gram)
    for _ in range(max_iter):
        g = gram @ lam
        t = int(np.argmin(g))
        keep = _pair(float(lam @ g), float(g[t]), float(gram[t, t]))  # weight of the current point
        new = keep * lam
        new[t] += 1.0 - keep
        change = float(np.abs(new - lam).sum())
        lam = new
        if change < tol:
            break
    return lam


def _solve(gram: np.ndarray, max_iter: int, tol: float, solver: str) -> np.ndarray:
    m = gram.shape[0]
    if m == 1:
        return np.ones(1)
    top = float(np.max(np.diag(gram)))
    if top <= 0.0:  # every gradient is 0: every point is optimal
        return np.full(m, 1.0 / m)
    gram = gram / top
    if m == 2:
        gamma = _pair(gram[0, 0], gram[0, 1], gram[1, 1])
        return np.array([gamma, 1.0 - gamma])
    lam = (_wolfe if solver == "wolfe" else _frank_wolfe)(gram, max_iter, tol)
    lam = np.maximum(lam, 0.0)
    lam /= lam.sum()
    start = _best_pair(gram)
    return start if start @ gram @ start < lam @ gram @ lam else lam


def _check_solver_args(max_iter: int, tol: float, solver: str) -> None:
    check_int("max_iter", max_iter, 1)
    check_number("tol", tol, 0.0)
    check_choice("solver", solver, MIN_NORM_SOLVERS)


# ------------------------------------------------------------------ public API
def gradient_normalizers(grads: Grads, losses: Tensor | Sequence[float] | None, normalization: str) -> Tensor:
    """The scale ``s_i`` each objective's gradient is divided by before the min-norm solver, ``(m,)``.

    ``"none"``: 1; ``"l2"``: ``||g_i||``; ``"loss"``: ``|loss_i|``; ``"loss+"``:
    ``|loss_i| * ||g_i||`` (the reference's ``gradient_normalizers``, on magnitudes of the losses).
    Every scale is floored at float32's smallest normal number (about ``1.2e-38``), so dividing a
    zero gradient by its scale gives 0, never NaN.

    Args:
        grads: An ``(m, d)`` tensor, or a list of ``m`` tensors (any shapes, flattened), or a list
            of ``m`` lists of tensors (each objective's parts, flattened and concatenated).
        losses: The ``m`` objectives' values; needed by ``"loss"`` and ``"loss+"``, else may be ``None``.
        normalization: One of :data:`NORMALIZATIONS`.

    Returns:
        Float32 scales on the gradients' device.

    Raises:
        ValueError: On an unknown ``normalization``, missing or malformed ``losses``, or malformed ``grads``.

    Examples:
        >>> g = torch.tensor([[3.0, 4.0], [0.0, 0.5]])
        >>> gradient_normalizers(g, None, "l2").tolist()
        [5.0, 0.5]
        >>> gradient_normalizers(g, torch.tensor([2.0, -1.0]), "loss+").tolist()
        [10.0, 0.5]
    """
    obj = _objectives(grads)
    log_s = _log_scales(_norms(obj), losses, normalization)
    scales = torch.as_tensor(np.exp(log_s), dtype=torch.float32).clamp_min(_FLOOR)
    return scales.to(_device(obj))


def min_norm_weights(
    grads: Grads, normalization: str = "none", losses: Tensor | Sequence[float] | None = None, max_iter: int = 250,
    tol: float = 1e-5, solver: str = "wolfe",
) -> Tensor:
    """MGDA's weights: ``lambda`` on the simplex minimising ``||sum_i lambda_i g_i / s_i||^2``.

    ``s_i`` are the :func:`gradient_normalizers`. One objective gets ``[1]``, two the exact closed
    form (identical gradients: 0.5 / 0.5), three or more the solver named by ``solver`` started
    from the best pair (see the module docstring). Everything after one float64 Gram matrix
    ``G G^T`` is ``m x m`` work on the CPU, so ``d`` may be millions. The weights are constants
    (no gradient flows through the solver).

    Args:
        grads: An ``(m, d)`` tensor (one flattened gradient per objective), or a list of ``m``
            tensors of any shapes, or a list of ``m`` lists of tensors (e.g. per-parameter
            gradient tuples, flattened and concatenated per objective).
        normalization: One of :data:`NORMALIZATIONS` (``"none"``, ``"l2"``, ``"loss"``, ``"loss+"``).
        losses: The ``m`` objectives' values (a tensor or numbers); needed by ``"loss"`` / ``"loss+"``.
        max_iter: At most this many steps of the solver for ``m >= 3`` (affine solves for
            ``"wolfe"``, line searches for ``"frank_wolfe"``), at least 1.
        tol: ``"wolfe"`` stops once the Frank-Wolfe duality gap ``2 (f - min_j (M lambda)_j)``, an
            upper bound of ``f - f*``, is at most ``tol * f`` (so ``f`` is within about ``tol``
            relative of the optimum; it is usually exact by then); ``"frank_wolfe"`` stops once
            a step changes ``lambda`` by less than ``tol`` in L1 (the reference's ``STOP_CRIT``).
        solver: ``"wolfe"`` (Wolfe's exact min-norm-point algorithm) or ``"frank_wolfe"`` (the
            reference's ``find_min_norm_element_FW``); only used for ``m >= 3``.

    Returns:
        ``lambda``, shape ``(m,)``, float32 on the gradients' device: non-negative, summing to 1.

    Raises:
        ValueError: If an argument is malformed or out of range, ``losses`` are missing for a
            loss normalisation, or ``grads`` are not finite.

    Examples:
        >>> min_norm_weights(torch.tensor([[1.0, 0.0], [0.0, 2.0]])).tolist()  # gamma = 4 / 5
        [0.800000011920929, 0.20000000298023224]
        >>> min_norm_weights(torch.tensor([[2.0, 0.0], [1.0, 1.0]])).tolist()  # (1, 1) is the nearest point
        [0.0, 1.0]
        >>> [round(w, 4) for w in min_norm_weights(torch.eye(3)).tolist()]
        [0.3333, 0.3333, 0.3333]
        >>> min_norm_weights(torch.eye(2), normalization="loss")
        Traceback (most recent call last):
        ...
        ValueError: `losses` (one per objective) are needed for normalization 'loss', got None.
    """
    _check_solver_args(max_iter, tol, solver)
    obj = _objectives(grads)
    gram, _ = _normalized_gram(obj, losses, normalization)
    lam = _solve(gram, max_iter, tol, solver)
    return torch.as_tensor(lam, dtype=torch.float32).to(_device(obj))


def min_norm_direction(grads: Grads, weights: Tensor | Sequence[float]) -> Tensor | list[Tensor]:
    """``sum_i w_i g_i``: the combined gradient of the objectives.

    Args:
        grads: As in :func:`min_norm_weights` (divide by :func:`gradient_normalizers` first for
            the normalised direction).
        weights: ``m`` weights (e.g. from :func:`min_norm_weights`), cast to the gradients' dtype.

    Returns:
        For an ``(m, d)`` tensor, a ``(d,)`` tensor; for a list of ``m`` tensors of one shape, a
        tensor of that shape; for a list of ``m`` lists of tensors whose parts have the same shapes
        for every objective, a list of tensors shaped as the parts; otherwise the flattened ``(d,)``
        sum. Differentiable with respect to ``grads``.

    Raises:
        ValueError: If ``weights`` do not hold ``m`` finite numbers or ``grads`` are malformed.

    Examples:
        >>> min_norm_direction(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0.8, 0.2])).tolist()
        [0.800000011920929, 0.4000000059604645]
        >>> parts = [[torch.ones(2), torch.ones(1)], [torch.zeros(2), 2 * torch.ones(1)]]
        >>> [p.tolist() for p in min_norm_direction(parts, [0.5, 0.5])]
        [[0.5, 0.5], [1.5]]
    """
    obj = _objectives(grads)
    m = obj.shape[0] if isinstance(obj, Tensor) else len(obj)
    try:
        w = weights.detach() if isinstance(weights, Tensor) else torch.as_tensor(weights, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"`weights` must be {m} numbers (one per objective), got {weights!r}.") from err
    w = w.reshape(-1)
    if w.numel() != m or not bool(torch.isfinite(w).all()):
        raise ValueError(f"`weights` must be {m} finite numbers (one per objective), got {weights!r}.")
    if isinstance(obj, Tensor):
        dtype = _float_dtype(obj.dtype)
        return w.to(dtype=dtype, device=obj.device) @ obj.to(dtype)
    device = _device(obj)
    shapes = [[p.shape for p in ps] for ps in obj]
    if all(s == shapes[0] for s in shapes):  # the same layout for every objective: keep it
        out = []
        for k in range(len(obj[0])):
            dtype = _float_dtype(reduce(torch.promote_types, (ps[k].dtype for ps in obj)))
            wk = w.to(dtype=dtype, device=device)
            out.append(sum(wk[i] * ps[k].to(dtype) for i, ps in enumerate(obj)))
        single = isinstance(grads, (list, tuple)) and all(isinstance(g, Tensor) for g in grads)
        return out[0] if single else out
    stack = _stack(obj)
    return w.to(dtype=stack.dtype, device=device) @ stack


def pareto_stationarity(
    grads: Grads, normalization: str = "none", losses: Tensor | Sequence[float] | None = None,
) -> Tensor:
    """``||sum_i lambda*_i g_i / s_i||`` at the min-norm weights: 0 at a Pareto-stationary point.

    Args:
        grads: As in :func:`min_norm_weights`.
        normalization: One of :data:`NORMALIZATIONS`.
        losses: The ``m`` objectives' values; needed by ``"loss"`` / ``"loss+"``.

    Returns:
        A float32 scalar tensor on the gradients' device (computed from the float64 Gram matrix).

    Examples:
        >>> pareto_stationarity(torch.tensor([[1.0, 2.0], [-1.0, -2.0]])).item()  # opposite: stationary
        0.0
        >>> round(pareto_stationarity(torch.tensor([[1.0, 0.0], [0.0, 2.0]])).item(), 4)  # sqrt(0.8)
        0.8944
    """
    obj = _objectives(grads)
    gram, log_c = _normalized_gram(obj, losses, normalization)
    lam = _solve(gram, 250, 1e-5, "wolfe")
    value = 0.0 if log_c == -math.inf else math.exp(log_c) * math.sqrt(max(float(lam @ gram @ lam), 0.0))
    return torch.tensor(value, dtype=torch.float32, device=_device(obj))
