import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_sparse.core import drop_lowest, global_keep_counts, grow_highest, prune_and_grow, select_topk


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
