"""The selection rules of dynamic data pruning against hand-made score tables."""

import pytest
import torch

from lightning_sparse.core.data_selection import EpochSchedule, kept_count, select_samples, update_scores_

# ten samples, scores 0.0 .. 0.9 in a shuffled order: sample i has score SCORES[i]
SCORES = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7, 0.0, 0.8, 0.2, 0.6, 0.4])
BY_SCORE = [5, 1, 7, 3, 9, 0, 8, 4, 6, 2]  # samples in ascending score order
ALL = torch.ones(10, dtype=torch.bool)


def kept(policy, keep=0.3, scored=ALL, progress=0.0, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    return select_samples(SCORES, scored, keep, policy, g, progress=progress, **kw)


def test_easy_and_hard_keep_the_lowest_and_highest_scores():
    assert sorted(kept("easy").indices.tolist()) == sorted(BY_SCORE[:3])
    assert sorted(kept("hard").indices.tolist()) == sorted(BY_SCORE[-3:])


@pytest.mark.parametrize("progress, window", [(0.0, slice(0, 3)), (0.5, slice(4, 7)), (1.0, slice(7, 10)),
                                              (0.25, slice(2, 5))])
def test_easy2hard_window_moves_from_easiest_to_hardest(progress, window):
    # m = 10 scored, k' = 3: start = floor(p * 7 + 1/2) -> 0, 4, 7, 2
    assert sorted(kept("easy2hard", progress=progress).indices.tolist()) == sorted(BY_SCORE[window])


def test_random_keeps_k_distinct_samples_and_depends_on_the_seed():
    a, b = kept("random", seed=0).indices, kept("random", seed=1).indices
    assert len(set(a.tolist())) == 3 and len(set(b.tolist())) == 3
    assert {tuple(sorted(kept("random", seed=s).indices.tolist())) for s in range(10)} != {tuple(sorted(a.tolist()))}
    assert torch.equal(kept("random", seed=0).indices, a)  # seeded


def test_unscored_samples_are_kept_first():
    scored = ALL.clone()
    scored[[2, 6]] = False  # the two hardest are unscored
    out = sorted(kept("easy", keep=0.4, scored=scored).indices.tolist())
    assert out == sorted([2, 6, 5, 1])  # both unscored, then the two easiest scored
    many = ~ALL.clone()
    many[:2] = True  # 8 unscored, budget 3: three of the unscored, none of the scored
    out = kept("hard", scored=many).indices.tolist()
    assert len(out) == 3 and not set(out) & {0, 1}


def test_infobatch_prunes_below_the_mean_and_rescales():
    # mean 0.45: samples with 0.0 .. 0.4 (5) are well learned; int(0.5 * 5) = 2 of them kept
    out = kept("infobatch", prune_ratio=0.5)
    above = {i for i in range(10) if SCORES[i] >= 0.45}
    got = set(out.indices.tolist())
    assert above <= got and len(got) == 5 + 2
    well_kept = got - above
    assert out.weights[list(well_kept)].tolist() == [2.0, 2.0]
    assert out.weights[list(set(range(10)) - well_kept)].eq(1.0).all()
    scored = ALL.clone()
    scored[5] = False  # unscored: kept, weight 1, not counted in the mean
    out = kept("infobatch", scored=scored, prune_ratio=0.75)
    assert 5 in out.indices.tolist() and out.weights[5] == 1.0


def test_ties_are_broken_at_random_and_order_is_shuffled():
    scores = torch.zeros(8)
    picks = {tuple(sorted(select_samples(scores, torch.ones(8, dtype=torch.bool), 0.5, "easy",
                                         torch.Generator().manual_seed(s)).indices.tolist())) for s in range(6)}
    assert len(picks) > 1
    order = kept("easy", keep=1.0).indices.tolist()
    assert sorted(order) == list(range(10)) and order != list(range(10))


def test_kept_count_and_bad_arguments():
    assert [kept_count(10, r) for r in (0.05, 0.25, 0.7, 1.0)] == [1, 3, 7, 10]
    with pytest.raises(ValueError, match="`policy` must be one of"):
        kept("hardest")
    with pytest.raises(ValueError, match="`keep_ratio`"):
        kept("easy", keep=1.5)
    with pytest.raises(ValueError, match="`scores` and `scored`"):
        select_samples(SCORES, ALL[:5], 0.5, "easy", torch.Generator())


def test_scores_latest_or_moving_average_and_ranges():
    scores, scored = torch.zeros(3), torch.zeros(3, dtype=torch.bool)
    update_scores_(scores, scored, torch.tensor([0]), torch.tensor([4.0]), momentum=0.9)
    update_scores_(scores, scored, torch.tensor([0]), torch.tensor([2.0]), momentum=0.9)
    assert scores[0].item() == pytest.approx(0.9 * 4 + 0.1 * 2)
    with pytest.raises(ValueError, match=r"`index` must hold dataset indices in \[0, 3\)"):
        update_scores_(scores, scored, torch.tensor([3]), torch.tensor([1.0]))


def test_epoch_schedule():
    s = EpochSchedule.parse("keep_ratio", {"schedule": "cosine", "initial": 1.0, "final": 0.5}, 0.0, 1.0)
    assert s(0, last_epoch=4) == 1.0 and s(4, last_epoch=4) == 0.5 and s(2, last_epoch=4) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="keys must be among"):
        EpochSchedule.parse("keep_ratio", {"start": 1}, 0.0, 1.0)
    with pytest.raises(ValueError, match="a number or a schedule mapping"):
        EpochSchedule.parse("keep_ratio", "0.7", 0.0, 1.0)
