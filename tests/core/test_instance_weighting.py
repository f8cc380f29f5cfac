"""LIWUDA's loss terms (core/instance_weighting.py), each against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_sparse.core import instance_weighting as iw

PLAN = torch.tensor([[0.5, 0.0], [0.25, 0.25]])
COST = torch.tensor([[0.1, 0.9], [0.8, 0.2]])


def test_separate_and_align_by_hand():
    # <P, C> = 0.05 + 0.2 + 0.05 = 0.3; aligned (C < 0.3): (0,0) and (1,1), mass 0.75, sum P C = 0.1;
    # separated: (1,0) with U = exp(-0.25), so its term is (1 - 0.8) = 0.2
    cost = COST.clone().requires_grad_(True)
    loss = iw.separate_and_align_loss(PLAN, cost)
    assert loss.item() == pytest.approx(5 * 0.1 / 0.75 + 0.2, abs=1e-6)
    loss.backward()
    expected = torch.tensor([[5 * 0.5 / 0.75, 0.0], [-1.0, 5 * 0.25 / 0.75]])
    assert torch.allclose(cost.grad, expected, atol=1e-6)


def test_separate_and_align_ties_are_half_aligned_and_empty_groups_vanish():
    plan = torch.tensor([[0.5, 0.0], [0.0, 0.5]])
    cost = torch.tensor([[0.4, 0.0], [0.0, 0.4]])  # both at the mean 0.4: half aligned, half separated
    sep = math.exp(-0.25)
    assert iw.separate_and_align_loss(plan, cost).item() == pytest.approx(5 * 0.4 + (sep * 0.6 * 2) / (2 * sep))
    zero_cost = torch.zeros(2, 2)  # all aligned (equal to the mean 0 -> half), no push term beyond
    assert iw.separate_and_align_loss(plan, zero_cost).item() == pytest.approx(1.0)


def test_per_sample_cost_and_weight_transport_gradient():
    b = torch.tensor([0.75, 0.25], requires_grad=True)
    per_col = iw.per_sample_transport_cost(PLAN, COST, b, dim=0)  # (0.05 + 0.2) / 0.75, 0.05 / 0.25
    assert torch.allclose(per_col, torch.tensor([0.25 / 0.75, 0.2]))
    per_row = iw.per_sample_transport_cost(PLAN, COST, torch.tensor([0.5, 0.5]), dim=1)
    assert torch.allclose(per_row, torch.tensor([0.1, 0.5]))
    loss = iw.weight_transport_loss(PLAN, COST, b, dim=0)
    loss.backward()
    assert loss.item() == pytest.approx(0.3)
    assert torch.allclose(b.grad, per_col.detach())  # costs are constants: the gradient is the cost
    with pytest.raises(ValueError, match="`dim`"):
        iw.per_sample_transport_cost(PLAN, COST, b, dim=2)


def test_rank_weight_loss_by_hand():
    # ascending scores order the weights (0.2, 0.9, 0.4) -> targets (1, 0.5, 0)
    w = torch.tensor([0.9, 0.2, 0.4], requires_grad=True)
    loss = iw.rank_weight_loss(w, torch.tensor([2.0, 1.0, 3.0]))
    assert loss.item() == pytest.approx(0.8**2 + 0.4**2 + 0.4**2)
    loss.backward()
    assert torch.allclose(w.grad, torch.tensor([2 * (0.9 - 0.5), 2 * (0.2 - 1.0), 2 * (0.4 - 0.0)]))
    assert iw.rank_weight_loss(torch.tensor([0.3]), torch.tensor([1.0])).item() == pytest.approx(0.49)
    with pytest.raises(ValueError, match="`scores`"):
        iw.rank_weight_loss(w, torch.zeros(2))


def test_source_alignment_by_hand():
    # features at 0, 0 and 90 degrees; labels 0, 0, 1: same-label pairs (5 of 9 incl. i == j) all
    # cost 0; different-label pairs (4) cost 0.5 -> 1 - 0.5
    f = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    assert iw.source_alignment_loss(f, torch.tensor([0, 0, 1])).item() == pytest.approx(0.5)
    assert iw.source_alignment_loss(f, torch.tensor([0, 0, 0])).item() == pytest.approx((4 * 0.5) / 9)


def test_confident_pseudo_labels_select_and_weight():
    logits = torch.tensor([[9.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, 9.0]], requires_grad=True)
    w = torch.tensor([0.5, 0.8, 0.9, 0.2])
    ce_all = torch.nn.functional.cross_entropy(logits.detach(), torch.tensor([0, 1, 0, 2]), reduction="none")
    ce, one = iw.confident_pseudo_label_loss(logits, w)  # rows 0, 1, 3 are confident
    assert ce.item() == pytest.approx(ce_all[[0, 1, 3]].mean().item(), rel=1e-5)
    assert one.item() == pytest.approx((0.25 + 0.04 + 0.64) / 3)
    allowed = torch.tensor([True, False, True])
    ce, one = iw.confident_pseudo_label_loss(logits, w, allowed_classes=allowed, min_weight=0.3)  # only row 0
    assert ce.item() == pytest.approx(ce_all[0].item(), rel=1e-5) and one.item() == pytest.approx(0.25)
    ce, _ = iw.confident_pseudo_label_loss(logits, w, weighted=True)
    assert ce.item() == pytest.approx((ce_all[[0, 1, 3]] * w[[0, 1, 3]]).mean().item(), rel=1e-5)
    ce, one = iw.confident_pseudo_label_loss(logits, w, threshold=0.99999)
    assert ce.item() == 0.0 and one.item() == 0.0
    ce.backward()  # a zero that still belongs to the graph


def test_entropy_ramp_and_decay():
    assert iw.entropy(torch.tensor([[0.0, 0.0]])).item() == pytest.approx(math.log(2))
    assert iw.ramp(0.0) == 0.0 and iw.ramp(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert iw.inverse_decay(0.5) == pytest.approx(6 ** -0.75)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="`plan` and `cost`"):
        iw.separate_and_align_loss(PLAN, COST[:1])
    with pytest.raises(ValueError, match="`labels`"):
        iw.source_alignment_loss(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))
