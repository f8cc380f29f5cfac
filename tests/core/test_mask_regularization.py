"""Continuous Sparsification's mask maths (the pieces MSRS builds on) against hand computations."""

import math

import pytest
import torch

from lightning_sparse.core.mask_regularization import (
    CS_FINAL_TEMPERATURE,
    CS_INITIAL_LOGIT,
    hard_mask,
    mask_change,
    mask_penalty,
    soft_mask,
    temperature_at,
    topk_hard_mask,
)


def test_soft_mask_by_hand_and_its_gradient():
    s = torch.tensor([CS_INITIAL_LOGIT, 0.5, -0.5], requires_grad=True)
    m = soft_mask(s, temperature=4.0)
    scale = 1 + math.exp(-CS_INITIAL_LOGIT)  # 1 / sigmoid(s0)
    expected = [scale / (1 + math.exp(-4.0 * v)) for v in (CS_INITIAL_LOGIT, 0.5, -0.5)]
    assert m.tolist() == pytest.approx(expected, rel=1e-6)
    m.sum().backward()
    sig = torch.sigmoid(4.0 * s.detach())
    assert s.grad.tolist() == pytest.approx((scale * 4.0 * sig * (1 - sig)).tolist(), rel=1e-5)


def test_high_temperature_soft_mask_approaches_the_hard_mask():
    s = torch.tensor([-0.3, -0.02, 0.02, 0.4])
    soft = soft_mask(s, temperature=CS_FINAL_TEMPERATURE * 10, initial_logit=0.0) / 2.0
    assert torch.allclose(soft, hard_mask(s).float(), atol=1e-3)


def test_exponential_temperature_schedule_matches_the_reference_update():
    epochs = 5
    factor = CS_FINAL_TEMPERATURE ** (1 / (epochs - 1))  # the reference multiplies after every epoch
    beta, expected = 1.0, []
    for epoch in range(epochs):
        if epoch > 0:
            beta *= factor
        expected.append(beta)
    assert [temperature_at(e, epochs) for e in range(epochs)] == pytest.approx(expected)
    with pytest.raises(ValueError, match="`final` must be a number >= 1"):
        temperature_at(0, 5, final=0.5)


def test_penalty_topk_and_change():
    assert float(mask_penalty([torch.ones(2, 2)], weight=1e-8)) == pytest.approx(4e-8)
    with pytest.raises(ValueError, match="at least one mask"):
        mask_penalty([])
    mask = topk_hard_mask(torch.tensor([[0.1, 0.5], [0.4, -1.0]]), sparsity=0.75)
    assert mask.tolist() == [[False, True], [False, False]]
    assert topk_hard_mask(torch.zeros(4), sparsity=0.5).tolist() == [True, True, False, False]
    assert mask_change(torch.zeros(4, dtype=torch.bool), torch.tensor([1, 0, 0, 1]).bool()) == 0.5
    with pytest.raises(ValueError, match="one shape"):
        mask_change(torch.zeros(2), torch.zeros(3))
