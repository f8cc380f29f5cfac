import math

import pytest
import torch

from lightning_sparse.core import (
    Schedule,
    drop_lowest,
    mest_score,
    schedule_value,
    set_prune_score,
)


def test_set_drops_the_same_share_of_positive_and_negative_weights():
    g = torch.Generator().manual_seed(0)
    w = torch.cat([torch.rand(600, generator=g) + 0.01, -(torch.rand(400, generator=g) + 0.01)])
    mask = torch.ones_like(w, dtype=torch.bool)
    kept = drop_lowest(mask, set_prune_score(w, mask), 300, g)  # 30%
    dropped = ~kept
    pos, neg = w > 0, w < 0
    assert int((dropped & pos).sum()) == pytest.approx(180, abs=1)
    assert int((dropped & neg).sum()) == pytest.approx(120, abs=1)
    # within each sign group the dropped are the closest to zero
    assert w[dropped & pos].max() <= w[kept & pos].min()
    assert w[dropped & neg].min() >= w[kept & neg].max()


def test_set_score_ignores_inactive_positions():
    w = torch.tensor([1.0, 2.0, -1.0, 5.0])
    mask = torch.tensor([True, True, True, False])
    s = set_prune_score(w, mask)
    assert s.tolist() == [0.5, 1.0, 1.0, 0.0]


def test_mest_score_combines_magnitude_and_gradient():
    w, g = torch.tensor([0.1, -0.2]), torch.tensor([1.0, 0.0])
    assert mest_score(w, g, 0.5).tolist() == pytest.approx([0.6, 0.2])
    assert mest_score(w, None, 0.5).tolist() == pytest.approx([0.1, 0.2])


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("constant", 0.3),
        ("linear", 0.15),
        ("cosine", 0.3 * 0.5 * (1 + math.cos(math.pi * 0.5))),
        ("cubic", 0.3 * 0.125),
    ],
)
def test_schedule_midpoint(kind, expected):
    assert schedule_value(kind, 50, 0, 100, 0.3, 0.0) == pytest.approx(expected)
    assert schedule_value(kind, 0, 0, 100, 0.3, 0.0) == pytest.approx(0.3)
    end = 0.3 if kind == "constant" else 0.0
    assert schedule_value(kind, 100, 0, 100, 0.3, 0.0) == pytest.approx(end)


@pytest.mark.parametrize("kind", ["linear", "cosine", "cubic"])
def test_decaying_schedules_are_monotone(kind):
    values = [schedule_value(kind, t, 10, 90, 0.5, 0.0) for t in range(0, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_schedule_update_steps_and_validation():
    s = Schedule("cosine", 0.3, 0.0, start=0, stop=75, interval=25)
    assert [t for t in range(100) if s.is_update_step(t)] == [25, 50]
    with pytest.raises(ValueError, match="`update_interval` must be >= 1"):
        Schedule(interval=0)
    with pytest.raises(ValueError, match="schedule must be one of"):
        Schedule("exp")
