"""The unrolled lower level and the hypergradients (core/bilevel.py) against finite differences."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_sparse.core.bilevel import functional_forward, hypergradients, unrolled_parameters

torch.set_default_dtype(torch.float64)  # finite differences need double precision
A = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))
B = torch.randn(2, 5, generator=torch.Generator().manual_seed(1))
C = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(2))
E = torch.randn(2, 4, generator=torch.Generator().manual_seed(3))
torch.set_default_dtype(torch.float32)


def _lower(alpha, w):  # sum_k softmax(alpha)_k ||A_k w - b_k||^2
    return (torch.softmax(alpha, 0) * ((A @ w - B) ** 2).sum(1)).sum()


def _uppers(alpha, w0, lr, steps):
    fast = unrolled_parameters({"w": w0}, lambda p: _lower(alpha, p["w"]), lr, steps)
    return ((C @ fast["w"] - E) ** 2).sum(1)  # (2,) one objective per task


@pytest.mark.parametrize("steps", [1, 3])
def test_hypergradients_of_the_unrolled_steps_match_finite_differences(steps):
    alpha = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    w0 = torch.tensor([0.5, -1.0, 0.25], dtype=torch.float64, requires_grad=True)
    got = hypergradients(list(_uppers(alpha, w0, 0.01, steps)), [alpha])  # (2 objectives, 2 alphas)
    eps = 1e-6
    numeric = torch.zeros(2, 2, dtype=torch.float64)
    for j in range(2):
        d = torch.zeros(2, dtype=torch.float64)
        d[j] = eps
        with torch.enable_grad():
            plus = _uppers((alpha + d).detach().requires_grad_(), w0, 0.01, steps).detach()
            minus = _uppers((alpha - d).detach().requires_grad_(), w0, 0.01, steps).detach()
        numeric[:, j] = (plus - minus) / (2 * eps)
    assert torch.allclose(got, numeric, atol=1e-7, rtol=1e-5)
    assert got.abs().max() > 1e-4  # the problem is not trivial


def test_unrolled_step_by_hand_and_the_inputs_stay_untouched():
    alpha = torch.tensor(2.0, requires_grad=True)
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    fast = unrolled_parameters({"w": w}, lambda p: alpha * (p["w"] ** 2).sum(), lr=0.1, steps=2)
    # each step multiplies w by (1 - 0.1 * 2 * alpha) = 0.6
    assert torch.allclose(fast["w"], w.detach() * 0.36)
    assert torch.equal(w.detach(), torch.tensor([1.0, -2.0]))
    no_graph = unrolled_parameters({"w": w}, lambda p: alpha * (p["w"] ** 2).sum(), lr=0.1, create_graph=False)
    assert no_graph["w"].grad_fn is not None  # still a function of w, without second-order terms
    with pytest.raises(ValueError, match="`lr`"):
        unrolled_parameters({"w": w}, lambda p: p["w"].sum(), lr=0.0)
    with pytest.raises(ValueError, match="`steps`"):
        unrolled_parameters({"w": w}, lambda p: p["w"].sum(), lr=0.1, steps=0)


def test_functional_forward_keeps_batch_norm_statistics_off_the_module():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    before = net[1].running_mean.clone()
    params = {n: p * 2 for n, p in net.named_parameters()}
    out = functional_forward(net, params, torch.randn(8, 3))
    assert out.shape == (8, 4) and torch.equal(net[1].running_mean, before)
    assert net[1].num_batches_tracked.item() == 0


def test_hypergradients_zero_for_unused_and_retain_graph():
    a, b = torch.ones(2, requires_grad=True), torch.ones(1, requires_grad=True)
    loss = (a * 3).sum()
    rows = hypergradients([loss, loss * 2], [a, b], retain_graph=True)
    assert rows.tolist() == [[3.0, 3.0, 0.0], [6.0, 6.0, 0.0]]
    loss.backward()  # the graph was kept
    with pytest.raises(ValueError, match="`objectives`"):
        hypergradients([], [a])
