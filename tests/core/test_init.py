"""Sparsity-aware initialisation (Evci et al. 2022, arXiv:2010.03533): fan-in = actual non-zeros."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_sparse.core import WEIGHT_INITS, density_counts, sparse_fans, sparse_init_


def _mask(shape, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) < density


def test_fans_count_nonzeros_per_unit_with_kernels():
    mask = torch.zeros(3, 2, 2, 2, dtype=torch.bool)
    mask[0, 0] = True  # 4 positions of input channel 0
    mask[2, 1, 0, 0] = True
    fan_in, fan_out = sparse_fans(mask)
    assert fan_in.tolist() == [4, 0, 1]
    assert fan_out.tolist() == [4, 1]


@pytest.mark.parametrize("method", WEIGHT_INITS)
def test_zero_outside_mask_and_nonzero_inside(method):
    weight = nn.Linear(60, 40).weight.detach().clone()
    mask = _mask(weight.shape, 0.2)
    sparse_init_(weight, mask, method, torch.Generator().manual_seed(1))
    assert torch.all(weight[~mask] == 0)
    assert torch.all(weight[mask] != 0)


def test_rescale_restores_dense_variance_per_unit():
    torch.manual_seed(0)
    dense = nn.Linear(400, 64).weight.detach().clone()
    mask = _mask(dense.shape, 0.05, seed=123)  # not the stream that drew `dense`
    weight = dense.clone()
    sparse_init_(weight, mask, "rescale")
    k = mask.sum(1, keepdim=True).float()
    torch.testing.assert_close(weight, dense * mask * (400 / k).sqrt())
    # the sum of squares per unit matches the dense init's (which is ~ 400 * 1 / (3 * 400))
    assert weight.pow(2).sum(1).mean().item() == pytest.approx(dense.pow(2).sum(1).mean().item(), rel=0.1)


@pytest.mark.parametrize(("method", "expected"), [("he", 2.0), ("xavier", None)])
def test_variance_uses_the_actual_fan_in(method, expected):
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(512, 300, dtype=torch.bool)
    k = torch.arange(512) % 30 + 1  # very different fan-ins: 1 ... 30 non-zeros per unit
    for o in range(512):
        mask[o, torch.randperm(300, generator=g)[: k[o]]] = True
    weight = sparse_init_(torch.empty(512, 300), mask, method, g)
    if method == "he":
        # E[sum_j w_oj^2] = k_o * 2 / k_o = 2 for every unit, whatever its fan-in
        per_unit = weight.pow(2).sum(1)
        for lo, hi in [(1, 5), (26, 30)]:
            sel = (k >= lo) & (k <= hi)
            assert per_unit[sel].mean().item() == pytest.approx(expected, rel=0.2)
    else:
        fan_in, fan_out = sparse_fans(mask)
        bound = (6.0 / (fan_in[:, None] + fan_out[None, :]).float()).sqrt()
        assert torch.all(weight.abs() <= bound + 1e-7)
        ratio = weight[mask].abs() / bound[mask]
        assert ratio.mean().item() == pytest.approx(0.5, abs=0.05)  # uniform on [-b, b]


def test_conv_weight_and_exact_counts():
    shape = (16, 8, 3, 3)
    counts = density_counts({"w": 0.1}, {"w": math.prod(shape)})
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(math.prod(shape), dtype=torch.bool)
    mask[torch.randperm(mask.numel(), generator=g)[: counts["w"]]] = True
    mask = mask.view(shape)
    weight = sparse_init_(torch.empty(shape), mask, "he", g)
    assert int((weight != 0).sum()) == counts["w"] == round(0.1 * math.prod(shape))


def test_generator_makes_it_reproducible_and_1d_is_only_masked():
    mask = _mask((10, 20), 0.3)
    a = sparse_init_(torch.empty(10, 20), mask, "xavier", torch.Generator().manual_seed(3))
    b = sparse_init_(torch.empty(10, 20), mask, "xavier", torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    bias = torch.ones(5)
    sparse_init_(bias, torch.tensor([True, False, True, False, True]), "he")
    assert bias.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "kaiming"}, r"`method` must be one of \('keep', 'rescale', 'he', 'xavier'\), got 'kaiming'"),
        ({"mask": torch.ones(3, 4)}, r"`mask` must be a bool tensor of the weight's shape \(3, 4\), got torch.float32"),
        ({"mask": torch.ones(4, 3, dtype=torch.bool)}, r"got torch.bool of shape \(4, 3\)"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"weight": torch.ones(3, 4), "mask": torch.ones(3, 4, dtype=torch.bool), "method": "he", **kwargs}
    with pytest.raises(ValueError, match=match):
        sparse_init_(**args)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        sparse_fans(torch.ones(3, dtype=torch.bool))
