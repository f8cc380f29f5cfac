import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_sparse.core import (
    drop_lowest,
    global_keep_counts,
    grow_highest,
    leftmost_score,
    prune_and_grow,
    prune_and_grow_groups,
    select_topk,
    select_topk_groups,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(2, 200), frac=st.floats(0.05, 0.95), drop=st.floats(0.0, 1.0), seed=st.integers(0, 10_000))
def test_prune_and_grow_keeps_exact_count_and_grows_only_inactive(n, frac, drop, seed):
    g = gen(seed)
    mask = select_topk(torch.rand(n, generator=g), max(1, int(frac * n)), g)
    k = round(drop * int(mask.sum()))
    prune_s, grow_s = torch.rand(n, generator=g), torch.rand(n, generator=g)
    new = prune_and_grow(mask, prune_s, grow_s, k, g)
    assert int(new.sum()) == int(mask.sum())
    kept = drop_lowest(mask, prune_s, k, g)
    # the dropped ones are the k lowest-scoring active units
    dropped = mask & ~kept
    assert int(dropped.sum()) == k
    if k and int(kept.sum()):
        assert prune_s[dropped].max() <= prune_s[kept].min()
    grown = new & ~kept
    assert not (grown & kept).any()
    # grown units are the best-scoring among the units inactive after the drop
    if int(grown.sum()) and int((~new).sum()):
        assert grow_s[grown].min() >= grow_s[~new].max()


def test_ties_are_broken_by_the_generator_and_reproducibly():
    score = torch.zeros(100)
    a = select_topk(score, 10, gen(1))
    b = select_topk(score, 10, gen(1))
    c = select_topk(score, 10, gen(2))
    assert torch.equal(a, b) and not torch.equal(a, c) and int(a.sum()) == 10


def test_grow_respects_allowed_region_and_nan_ranks_last():
    mask = torch.zeros(6, dtype=torch.bool)
    allowed = torch.tensor([True, True, True, False, False, False])
    score = torch.tensor([float("nan"), 0.1, 0.2, 9.0, 9.0, 9.0])
    out = grow_highest(mask, score, 2, gen(), allowed)
    assert out.tolist() == [False, True, True, False, False, False]
    assert int(grow_highest(mask, score, 10, gen(), allowed).sum()) == 3  # clipped to the region


def test_global_keep_counts_follow_global_threshold():
    scores = {"a": torch.tensor([5.0, 4.0, 0.1]), "b": torch.tensor([3.0, 0.2, 0.3, 2.0])}
    masks = {"a": torch.tensor([True, True, True]), "b": torch.tensor([True, False, True, True])}
    counts = global_keep_counts(scores, masks, 4, gen())
    assert counts == {"a": 2, "b": 2}  # 5, 4 | 3, 2 survive; b's inactive 0.2 is never counted
    assert sum(global_keep_counts(scores, masks, 6, gen()).values()) == 6


@settings(max_examples=60, deadline=None)
@given(n=st.integers(6, 120), n_groups=st.integers(1, 4), frac=st.floats(0.05, 0.9), drop=st.floats(0.0, 1.0),
       seed=st.integers(0, 10_000))
def test_grouped_prune_and_grow_keeps_every_group_exact_and_inside(n, n_groups, frac, drop, seed):
    g = gen(seed)
    groups = torch.randint(0, n_groups + 1, (n,), generator=g)  # 0 = forbidden
    labels = [int(x) for x in groups.unique() if x > 0]
    counts = {lab: int(frac * int((groups == lab).sum())) for lab in labels}
    mask = select_topk_groups(torch.rand(n, generator=g), counts, g, groups)
    assert {lab: int(mask[groups == lab].sum()) for lab in labels} == counts
    assert not mask[groups == 0].any()
    n_drop = {lab: round(drop * c) for lab, c in counts.items()}
    new = prune_and_grow_groups(mask, torch.rand(n, generator=g), torch.rand(n, generator=g), n_drop, g, groups)
    assert {lab: int(new[groups == lab].sum()) for lab in labels} == counts
    assert not new[groups == 0].any()
    for lab in labels:  # a group changes at most by its own drop count
        assert int((mask & ~new)[groups == lab].sum()) <= n_drop[lab]


def test_grouped_drop_follows_the_prune_score_within_each_group():
    groups = torch.tensor([1, 1, 1, 1, 2, 2, 2, 2])
    mask = torch.tensor([True, True, False, False, True, True, False, False])
    prune = torch.tensor([0.9, 0.1, 0, 0, 0.2, 0.8, 0, 0])
    grow = torch.tensor([0, 0, 0.5, 0.7, 0, 0, 0.9, 0.1])
    new = prune_and_grow_groups(mask, prune, grow, {1: 1, 2: 1}, gen(), groups)
    assert new.tolist() == [True, False, False, True, False, True, True, False]
    assert torch.equal(prune_and_grow_groups(mask, prune, grow, {1: 0}, gen(), groups), mask)


def test_leftmost_scores_fill_the_first_taps_first():
    score = leftmost_score((4, 2, 5))
    mask = select_topk(score, 11, gen(), candidates=torch.ones(4, 2, 5, dtype=torch.bool))
    per_tap = mask.sum((0, 1)).tolist()
    assert per_tap == [8, 3, 0, 0, 0]  # tap 0 full, 3 of the 8 kernels get tap 1 (seeded choice)
