"""MGDA's min-norm solver (core/min_norm.py) against hand-solved cases and an exact QP reference."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from lightning_sparse.core.min_norm import (
    MIN_NORM_SOLVERS,
    NORMALIZATIONS,
    gradient_normalizers,
    min_norm_direction,
    min_norm_weights,
    pareto_stationarity,
)


def objective(lam, g):
    """``||sum_i lam_i g_i||^2`` in float64."""
    g = torch.as_tensor(g, dtype=torch.float64)
    lam = torch.as_tensor(lam, dtype=torch.float64)
    return float((lam @ g).pow(2).sum())


def on_simplex(lam, atol=1e-6):
    return bool((lam >= 0).all()) and abs(float(lam.sum()) - 1.0) <= atol


def exact_min_norm(g: np.ndarray) -> float:
    """The exact optimum of ``min ||G^T lam||^2`` on the simplex, two ways, the better kept.

    (1) Brute force over active sets: for every support S the minimiser over the affine hull of
    {g_i, i in S} (the KKT system [[M_SS, 1], [1^T, 0]]); the best one with non-negative weights
    is the optimum, since the optimum is that minimiser for its own support. (2) SLSQP with the
    simplex constraints, ftol 1e-16, from the barycentre, every vertex and random points.
    """
    gram = g @ g.T
    scale = np.diag(gram).max()
    gram = gram / scale
    m = gram.shape[0]
    best = math.inf
    for k in range(1, m + 1):
        for support in itertools.combinations(range(m), k):
            s = list(support)
            kkt = np.zeros((k + 1, k + 1))
            kkt[:k, :k] = gram[np.ix_(s, s)]
            kkt[:k, k] = kkt[k, :k] = 1.0
            rhs = np.zeros(k + 1)
            rhs[k] = 1.0
            mu = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:k]
            if mu.min() >= -1e-9:
                lam = np.zeros(m)
                lam[s] = np.clip(mu, 0.0, None) / np.clip(mu, 0.0, None).sum()
                best = min(best, lam @ gram @ lam)
    rng = np.random.default_rng(1)
    cons = [{"type": "eq", "fun": lambda x: x.sum() - 1.0, "jac": lambda x: np.ones_like(x)}]
    for x0 in [np.full(m, 1.0 / m), *np.eye(m), *rng.dirichlet(np.ones(m), size=3)]:
        res = minimize(lambda x: x @ gram @ x, x0, jac=lambda x: 2.0 * gram @ x, bounds=[(0.0, 1.0)] * m,
                       constraints=cons, method="SLSQP", options={"ftol": 1e-16, "maxiter": 1000})
        lam = np.clip(res.x, 0.0, None)
        lam /= lam.sum()
        best = min(best, lam @ gram @ lam)
    return max(best, 0.0) * scale


# --- two objectives: the closed form -------------------------------------------------------------

def test_two_gradients_closed_form_by_hand():
    # g1 = (1, 0), g2 = (0, 2): <g2 - g1, g2> = <(-1, 2), (0, 2)> = 4, ||g1 - g2||^2 = 1 + 4 = 5,
    # gamma = 4 / 5 = 0.8 on g1, 0.2 on g2; the point 0.8 g1 + 0.2 g2 = (0.8, 0.4), norm^2 = 0.8.
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    lam = min_norm_weights(g)
    assert lam.dtype == torch.float32 and lam.shape == (2,)
    assert lam.tolist() == pytest.approx([0.8, 0.2], abs=1e-7)
    assert objective(lam, g) == pytest.approx(0.8, abs=1e-6)
    assert pareto_stationarity(g).item() == pytest.approx(math.sqrt(0.8), rel=1e-6)
    assert min_norm_direction(g, lam).tolist() == pytest.approx([0.8, 0.4], abs=1e-6)


@pytest.mark.parametrize(
    ("g", "expected"),
    [
        # g1 = (2, 0), g2 = (1, 1): <g2 - g1, g2> = <(-1, 1), (1, 1)> = 0 -> gamma = 0: g2 is the nearest point
        ([[2.0, 0.0], [1.0, 1.0]], [0.0, 1.0]),
        ([[1.0, 1.0], [2.0, 0.0]], [1.0, 0.0]),
        # g1 = (1, 0), g2 = (3, 0): <g2 - g1, g2> = 6, ||g1 - g2||^2 = 4 -> 1.5, clamped to 1
        ([[1.0, 0.0], [3.0, 0.0]], [1.0, 0.0]),
        # g1 = (3, 1), g2 = (0.5, 0.1): g2 is the shorter and the segment moves away from 0 -> gamma < 0 -> 0
        ([[3.0, 1.0], [0.5, 0.1]], [0.0, 1.0]),
    ],
)
def test_two_gradients_dominated_one_gets_weight_zero(g, expected):
    assert min_norm_weights(torch.tensor(g)).tolist() == expected


@pytest.mark.parametrize("g", [[[1.5, -2.0, 0.25]] * 2, [[0.0, 0.0]] * 2])
def test_identical_gradients_split_evenly(g):
    assert min_norm_weights(torch.tensor(g)).tolist() == [0.5, 0.5]


def test_one_objective():
    assert min_norm_weights(torch.tensor([[1.0, 2.0]])).tolist() == [1.0]
    assert pareto_stationarity(torch.tensor([[3.0, 4.0]])).item() == pytest.approx(5.0)


# --- random instances against the exact QP --------------------------------------------------------

def _instance(m, d, kind, seed):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(m, d, generator=gen, dtype=torch.float64)
    if kind == "colinear":  # one shared direction, small spread
        g = torch.randn(d, generator=gen, dtype=torch.float64) + 1e-2 * g
    elif kind == "nearly_colinear":
        g = torch.randn(d, generator=gen, dtype=torch.float64) + 1e-4 * g
    elif kind == "shifted":  # gradients that mostly agree (interior optimum far from 0)
        g = g + 3.0 * torch.randn(d, generator=gen, dtype=torch.float64)
    return g * 10.0 ** (seed % 5 - 2)  # scales from 1e-2 to 1e2


@pytest.mark.parametrize("kind", ["gaussian", "shifted", "colinear", "nearly_colinear"])
@pytest.mark.parametrize("d", [3, 10, 50])
@pytest.mark.parametrize("m", range(2, 9))
def test_random_instances_match_the_exact_qp(m, d, kind):
    seed = 100 * m + d + 7 * len(kind)
    g = _instance(m, d, kind, seed)
    lam = min_norm_weights(g)
    assert lam.shape == (m,) and on_simplex(lam)
    value, exact = objective(lam, g), exact_min_norm(g.numpy())
    scale = float(g.pow(2).sum(1).max())
    # 1e-5 relative; the absolute 1e-12 * max ||g_i||^2 covers an optimum of 0 (d < m: 0 in the hull)
    assert abs(value - exact) <= 1e-5 * exact + 1e-12 * scale, (value, exact)
    if m >= 3:  # the reference's Frank-Wolfe: feasible, never worse than its start, never below the optimum
        fw = min_norm_weights(g, solver="frank_wolfe")
        assert on_simplex(fw)
        assert objective(fw, g) >= exact * (1 - 1e-6) - 1e-12 * scale


def test_optimum_zero_when_the_origin_is_in_the_hull():
    # d = 2 < m = 5: random vectors around the origin; the optimum is 0
    g = torch.tensor([[1.0, 0.2], [-0.7, 0.9], [-0.4, -1.1], [0.3, -0.5], [2.0, 2.0]], dtype=torch.float64)
    lam = min_norm_weights(g)
    assert on_simplex(lam) and objective(lam, g) <= 1e-12
    assert pareto_stationarity(g).item() <= 1e-6


def test_many_coordinates_stay_on_the_gram_matrix():
    gen = torch.Generator().manual_seed(3)
    g = torch.randn(4, 300_000, generator=gen) + 0.5
    lam = min_norm_weights(g)
    assert on_simplex(lam)
    exact = exact_min_norm(np.linalg.cholesky((g.double() @ g.double().T).numpy()))  # same Gram matrix
    assert objective(lam, g) == pytest.approx(exact, rel=1e-5)


# --- three objectives with known answers ----------------------------------------------------------

@pytest.mark.parametrize("solver", MIN_NORM_SOLVERS)
def test_three_unit_vectors_at_120_degrees(solver):
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=torch.float64)
    g = torch.stack([angles.cos(), angles.sin()], dim=1)  # they sum to 0
    lam = min_norm_weights(g, solver=solver)
    assert lam.tolist() == pytest.approx([1 / 3] * 3, abs=1e-4 if solver == "frank_wolfe" else 1e-6)
    assert pareto_stationarity(g).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("solver", MIN_NORM_SOLVERS)
def test_standard_basis(solver):
    # e1, e2, e3: the nearest point of their hull is (1, 1, 1) / 3, norm 1 / sqrt(3)
    lam = min_norm_weights(torch.eye(3), solver=solver)
    assert lam.tolist() == pytest.approx([1 / 3] * 3, abs=1e-4 if solver == "frank_wolfe" else 1e-6)
    assert pareto_stationarity(torch.eye(3)).item() == pytest.approx(1 / math.sqrt(3), rel=1e-6)


def test_three_objectives_one_dominated():
    # e1, e2 and (2, 2): the third is farther along the same side, the optimum is (0.5, 0.5, 0)
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    assert min_norm_weights(g).tolist() == pytest.approx([0.5, 0.5, 0.0], abs=1e-7)


# --- normalisations -----------------------------------------------------------------------------

G3 = torch.tensor([[1.0, 2.0, 0.5], [-1.0, 0.5, 1.0], [0.3, -0.2, 2.0]], dtype=torch.float64)
LOSSES = torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64)


def test_l2_weights_are_invariant_to_rescaling_one_gradient():
    scaled = G3.clone()
    scaled[1] *= 1000.0
    a = min_norm_weights(G3, normalization="l2")
    b = min_norm_weights(scaled, normalization="l2")
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(min_norm_weights(G3), min_norm_weights(scaled), atol=1e-3)  # "none" is not


@pytest.mark.parametrize("normalization", ["loss", "loss+"])
def test_loss_normalisations_divide_by_the_losses(normalization):
    norms = G3.norm(dim=1)
    scales = LOSSES if normalization == "loss" else LOSSES * norms
    expected = min_norm_weights(G3 / scales[:, None])
    assert torch.allclose(min_norm_weights(G3, normalization, losses=LOSSES), expected, atol=1e-6)
    assert torch.allclose(min_norm_weights(G3, normalization, losses=LOSSES.tolist()), expected, atol=1e-6)
    assert torch.allclose(gradient_normalizers(G3, LOSSES, normalization), scales.float(), rtol=1e-6)
    direct = (expected.double() @ (G3 / scales[:, None])).norm().item()
    assert pareto_stationarity(G3, normalization, LOSSES).item() == pytest.approx(direct, rel=1e-5)


def test_gradient_normalizers_values():
    g = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert gradient_normalizers(g, None, "none").tolist() == [1.0, 1.0]
    l2 = gradient_normalizers(g, None, "l2")
    assert l2[0].item() == 5.0 and 0 < l2[1].item() < 1e-30  # floored, not 0
    assert gradient_normalizers(g, [-2.0, 0.0], "loss")[0].item() == 2.0  # |loss|
    assert gradient_normalizers(g, [-2.0, 0.0], "loss")[1].item() > 0
    assert torch.isfinite(g / gradient_normalizers(g, [1.0, 1.0], "loss+")[:, None]).all()
    assert gradient_normalizers(g, None, "l2").dtype == torch.float32


@pytest.mark.parametrize("normalization", ["loss", "loss+"])
def test_missing_losses_raise(normalization):
    with pytest.raises(ValueError, match="`losses`"):
        min_norm_weights(G3, normalization)
    with pytest.raises(ValueError, match="`losses`"):
        gradient_normalizers(G3, None, normalization)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match=r"`normalization` must be one of \('none', 'l2', 'loss', 'loss\+'\), got 'L2'"):
        min_norm_weights(G3, "L2")
    assert NORMALIZATIONS == ("none", "l2", "loss", "loss+")
    with pytest.raises(ValueError, match="`losses` must be 3 finite numbers"):
        min_norm_weights(G3, "loss", losses=[1.0, 2.0])
    with pytest.raises(ValueError, match="`losses` must be 3 finite numbers"):
        min_norm_weights(G3, "loss", losses=[1.0, 2.0, float("nan")])
    with pytest.raises(ValueError, match="`max_iter` must be an integer >= 1, got 0"):
        min_norm_weights(G3, max_iter=0)
    with pytest.raises(ValueError, match="`tol` must be a number >= 0, got -1"):
        min_norm_weights(G3, tol=-1.0)
    with pytest.raises(ValueError, match="`solver` must be one of"):
        min_norm_weights(G3, solver="pgd")
    with pytest.raises(ValueError, match=r"`grads` must be an \(m, d\) tensor"):
        min_norm_weights(torch.ones(3))
    with pytest.raises(ValueError, match="same number of elements"):
        min_norm_weights([torch.ones(3), torch.ones(4)])
    with pytest.raises(ValueError, match=r"`grads\[1\]` must be a tensor"):
        min_norm_weights([torch.ones(3), [1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="`grads` must be finite"):
        min_norm_weights(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="`weights` must be 3 finite numbers"):
        min_norm_direction(G3, [0.5, 0.5])


# --- list inputs ---------------------------------------------------------------------------------

def _per_parameter(seed, m=4):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(3, 2, generator=gen), torch.randn(5, generator=gen), torch.randn(1, 1, 2, generator=gen))
            for _ in range(m)]


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
def test_list_of_tuples_equals_the_stacked_input(normalization):
    parts = _per_parameter(0)
    stacked = torch.stack([torch.cat([p.reshape(-1) for p in ps]) for ps in parts])
    losses = torch.tensor([0.3, 1.0, 2.0, 0.7])
    a = min_norm_weights(parts, normalization, losses=losses)
    b = min_norm_weights(stacked, normalization, losses=losses)
    assert torch.equal(a, b)
    assert torch.allclose(gradient_normalizers(parts, losses, normalization),
                          gradient_normalizers(stacked, losses, normalization))
    assert pareto_stationarity(parts, normalization, losses).item() == pytest.approx(
        pareto_stationarity(stacked, normalization, losses).item(), rel=1e-6)
    # the direction keeps the per-parameter layout
    direction = min_norm_direction(parts, a)
    assert [d.shape for d in direction] == [p.shape for p in parts[0]]
    flat = torch.cat([d.reshape(-1) for d in direction])
    assert torch.allclose(flat, min_norm_direction(stacked, a), atol=1e-6)


def test_list_of_tensors_of_any_shape():
    gen = torch.Generator().manual_seed(1)
    same = [torch.randn(2, 3, generator=gen) for _ in range(3)]
    stacked = torch.stack([g.reshape(-1) for g in same])
    assert torch.equal(min_norm_weights(same), min_norm_weights(stacked))
    direction = min_norm_direction(same, [0.2, 0.3, 0.5])
    assert direction.shape == (2, 3)
    assert torch.allclose(direction, 0.2 * same[0] + 0.3 * same[1] + 0.5 * same[2])
    mixed = [torch.randn(6, generator=gen), torch.randn(2, 3, generator=gen), torch.randn(3, 2, generator=gen)]
    flat = torch.stack([g.reshape(-1) for g in mixed])
    assert torch.equal(min_norm_weights(mixed), min_norm_weights(flat))
    assert min_norm_direction(mixed, [1.0, 0.0, 0.0]).shape == (6,)  # layouts differ: flattened


def test_direction_is_differentiable():
    g = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    min_norm_direction(g, min_norm_weights(g)).sum().backward()
    assert torch.allclose(g.grad, torch.tensor([[0.8, 0.8], [0.2, 0.2]]), atol=1e-6)


# --- Pareto stationarity -------------------------------------------------------------------------

@pytest.mark.parametrize("normalization", ["none", "l2"])
def test_pareto_stationarity_zero_for_opposite_gradients(normalization):
    g = torch.tensor([[1.0, -2.0, 0.5], [-3.0, 6.0, -1.5]], dtype=torch.float64)  # g2 = -3 g1
    assert pareto_stationarity(g, normalization).item() == pytest.approx(0.0, abs=1e-6)
    if normalization == "none":  # the zero point: 3/4 g1 + 1/4 g2 = 0
        assert min_norm_weights(g).tolist() == pytest.approx([0.75, 0.25], abs=1e-6)


def test_pareto_stationarity_positive_when_gradients_agree():
    g = torch.tensor([[1.0, 1.0], [2.0, 0.5], [0.5, 3.0]])
    value = pareto_stationarity(g).item()
    assert value > 0.5  # every point of the hull has both coordinates >= 0.5
    assert value == pytest.approx(min_norm_direction(g, min_norm_weights(g)).norm().item(), rel=1e-5)


# --- dtypes and zero gradients -------------------------------------------------------------------

def test_float32_and_float64_agree():
    g64 = _instance(5, 10, "shifted", 11)
    a, b = min_norm_weights(g64), min_norm_weights(g64.float())
    assert a.dtype == b.dtype == torch.float32
    assert torch.allclose(a, b, atol=1e-5)
    assert min_norm_direction(g64, a).dtype == torch.float64
    assert min_norm_direction(g64.float(), a).dtype == torch.float32
    assert pareto_stationarity(g64).dtype == torch.float32
    half = min_norm_weights(g64.to(torch.bfloat16))
    assert on_simplex(half)


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("m", [2, 3, 5])
def test_a_zero_gradient_gives_no_nan(normalization, m):
    g = _instance(m, 4, "gaussian", 5)
    g[1] = 0.0
    losses = torch.linspace(0.0, 1.0, m)  # a zero loss too
    lam = min_norm_weights(g, normalization, losses=losses)
    assert torch.isfinite(lam).all() and on_simplex(lam)
    if normalization in ("none", "loss"):  # the zero gradient (scaled or not) is the min-norm point
        assert lam[1].item() == pytest.approx(1.0)
    assert torch.isfinite(pareto_stationarity(g, normalization, losses))
    assert torch.isfinite(g / gradient_normalizers(g, losses, normalization).double()[:, None]).all()


@pytest.mark.parametrize("m", [2, 4])
def test_all_zero_gradients_give_uniform_weights(m):
    for normalization in NORMALIZATIONS:
        lam = min_norm_weights(torch.zeros(m, 3), normalization, losses=torch.ones(m))
        assert lam.tolist() == pytest.approx([1 / m] * m)
        assert pareto_stationarity(torch.zeros(m, 3), normalization, torch.ones(m)).item() == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_the_gpu():
    g = _instance(4, 50, "shifted", 2).cuda()
    lam = min_norm_weights(g, "l2")
    assert lam.device.type == "cuda" and lam.dtype == torch.float32
    assert torch.allclose(lam.cpu(), min_norm_weights(g.cpu(), "l2"), atol=1e-6)
    assert min_norm_direction(g, lam).device.type == "cuda"
    assert gradient_normalizers(g, None, "l2").device.type == "cuda"
    assert pareto_stationarity(g).device.type == "cuda"
