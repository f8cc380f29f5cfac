"""SparseLinear on CUDA (torch's sparse CSR kernels); skipped where no GPU is present."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_sparse.nn import SparseLinear, to_masked, to_truly_sparse

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta"),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("density", [0.01, 0.3, 1.0])
def test_cuda_matches_masked_dense(density: float, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    dense = nn.Linear(64, 48, dtype=dtype, device="cuda")
    mask = torch.rand(48, 64, device="cuda") < density
    layer = SparseLinear.from_dense(dense, mask)
    assert not layer.uses_kernels() and layer.values.is_cuda
    x = torch.randn(2, 5, 64, dtype=dtype, device="cuda", requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    weight = dense.weight.detach().clone().requires_grad_(True)
    y, y_ref = layer(x), F.linear(x_ref, weight * mask, dense.bias)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {}
    torch.testing.assert_close(y, y_ref, **tol)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, **tol)
    torch.testing.assert_close(layer.values.grad, weight.grad[mask], **tol)


def test_cuda_training_and_round_trip() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4)).cuda()
    masks = {"0.weight": torch.rand(16, 32, device="cuda") < 0.2}
    with torch.no_grad():
        model[0].weight.mul_(masks["0.weight"])
    x = torch.randn(8, 32, device="cuda")
    before = model(x)
    to_truly_sparse(model, masks)
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for _ in range(3):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    after = model(x)
    to_masked(model)
    torch.testing.assert_close(model(x), after, rtol=1e-5, atol=1e-5)
