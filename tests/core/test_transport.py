"""Weighted optimal transport (core/transport.py) against hand-solved problems and an LP reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from lightning_sparse.core.transport import (
    class_conditional_transport_cost,
    cosine_cost,
    normalize_marginal,
    transport_plan,
    uniform_marginal,
)

# Three points on a line (0, 1, 2), cost |i - j|. Source masses (0.5, 0.3, 0.2), target
# (0.4, 0.4, 0.2). By hand: the diagonal carries min(a_i, b_i) = 0.4 + 0.3 + 0.2 = 0.9 at cost 0;
# the remaining 0.1 goes from point 0 to point 1 at cost 1. Full transport costs 0.1.
A = torch.tensor([0.5, 0.3, 0.2])
B = torch.tensor([0.4, 0.4, 0.2])
C = torch.tensor([[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]])
HAND_PLAN = torch.tensor([[0.4, 0.1, 0.0], [0.0, 0.3, 0.0], [0.0, 0.0, 0.2]])


def test_exact_plan_of_the_hand_solved_3x3_problem():
    plan = transport_plan(A, B, C)
    assert torch.allclose(plan, HAND_PLAN, atol=1e-6)
    assert (plan * C).sum().item() == pytest.approx(0.1, abs=1e-6)
    assert torch.allclose(plan.sum(1), A, atol=1e-6) and torch.allclose(plan.sum(0), B, atol=1e-6)


@pytest.mark.parametrize(("mass", "cost"), [(0.9, 0.0), (0.95, 0.05), (0.5, 0.0)])
def test_partial_transport_moves_only_the_cheapest_mass(mass, cost):
    # moving 0.9 costs nothing (the diagonal); 0.95 needs 0.05 more at cost 1
    plan = transport_plan(A, B, C, mass=mass)
    assert plan.sum().item() == pytest.approx(mass, abs=1e-6)
    assert (plan * C).sum().item() == pytest.approx(cost, abs=1e-6)
    assert (plan.sum(1) <= A + 1e-6).all() and (plan.sum(0) <= B + 1e-6).all()


def test_entropic_solver_approaches_the_exact_cost():
    plan = transport_plan(A, B, C, solver="entropic", reg=0.01, max_iter=5000)
    assert (plan * C).sum().item() == pytest.approx(0.1, abs=0.02)
    assert plan.sum().item() == pytest.approx(1.0, abs=1e-3)


def _lp_cost(a, b, cost):
    n, m = cost.shape
    eq = np.zeros((n + m, n * m))
    for i in range(n):
        eq[i, i * m:(i + 1) * m] = 1
    for j in range(m):
        eq[n + j, j::m] = 1
    res = linprog(cost.reshape(-1), A_eq=eq, b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs")
    return res.fun


@pytest.mark.parametrize("seed", range(4))
def test_full_mass_plan_matches_a_linear_programme(seed):
    g = torch.Generator().manual_seed(seed)
    a = normalize_marginal(torch.rand(5, generator=g) + 0.1)
    b = normalize_marginal(torch.rand(6, generator=g) + 0.1)
    cost = torch.rand(5, 6, generator=g)
    plan = transport_plan(a, b, cost).double()
    ref = _lp_cost(a.double().numpy(), b.double().numpy(), cost.double().numpy())
    assert (plan * cost.double()).sum().item() == pytest.approx(ref, abs=1e-5)


def test_plan_is_constant_and_keeps_device_and_dtype():
    x = torch.randn(4, 3, requires_grad=True)
    cost = cosine_cost(x, x.detach() + 1)
    plan = transport_plan(uniform_marginal(4, cost), uniform_marginal(4, cost), cost)
    assert not plan.requires_grad and plan.dtype == cost.dtype
    (plan * cost).sum().backward()  # the gradient reaches the features through the cost only
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_cosine_cost_and_marginals():
    x = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    assert torch.allclose(cosine_cost(x, x), torch.tensor([[0.0, 0.5], [0.5, 0.0]]))
    assert normalize_marginal(torch.tensor([2.0, 2.0])).sum().item() == pytest.approx(0.9999)
    w = torch.tensor([1.0, 3.0], requires_grad=True)
    normalize_marginal(w)[0].backward()  # d(w0 / (w0 + w1)) / dw = (w1, -w0) / (w0 + w1)^2
    assert torch.allclose(w.grad, 0.9999 * torch.tensor([3.0, -1.0]) / 16)


def test_class_conditional_cost_by_hand():
    # two orthogonal source features of classes 0 / 1, the same as targets with soft predictions;
    # class 0: all source mass on row 0; target masses (0.9, 0.2)/1.1 -> 0.2/1.1 crosses at cost 0.5
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    expected = 0.9999 * 0.5 * (0.2 / 1.1 + 0.1 / 0.9) / 2
    got = class_conditional_transport_cost(s, s.clone(), torch.tensor([0, 1]), p)
    assert got.item() == pytest.approx(expected, rel=1e-4)
    # a class predicted nowhere in the target is skipped: only class 0 remains
    only0 = class_conditional_transport_cost(s, s.clone(), torch.tensor([0, 1]), torch.tensor([[0.9, 0.1], [0.6, 0.4]]))
    assert only0.item() == pytest.approx(0.9999 * 0.5 * 0.6 / 1.5, rel=1e-4)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"solver": "sinkhorn"}, "`solver`"), ({"mass": 0.0}, "`mass`"), ({"mass": 1.5}, "`mass`"),
    ({"reg": 0.0}, "`reg`"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        transport_plan(A, B, C, **kwargs)


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="`cost`"):
        transport_plan(A, B[:2], C)
    with pytest.raises(ValueError, match="`x` and `y`"):
        cosine_cost(torch.zeros(2, 3), torch.zeros(2, 4))
    assert math.isfinite(cosine_cost(torch.zeros(1, 2), torch.ones(1, 2)).item())
