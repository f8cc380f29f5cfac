"""time_drop / TimeDrop: exact frames for a fixed generator, counts, order, padding, input kinds, args."""

import pytest
import torch

from lightning_sparse.core.time_drop import TimeDrop, time_drop


def frames(length: int, features: int = 1) -> torch.Tensor:
    """(length, features) features whose values name their frame: frame t holds t + 1."""
    return (torch.arange(length, dtype=torch.float32) + 1)[:, None].repeat(1, features)


def kept(x: torch.Tensor, length: int) -> list[int]:
    return [int(v) - 1 for v in x[:length, 0]]


def test_point_mode_drops_the_frames_of_the_generator_in_order():
    out, n = time_drop(frames(10), mode="point", ratio=0.3, generator=torch.Generator().manual_seed(0))
    dropped = sorted(torch.randperm(10, generator=torch.Generator().manual_seed(0))[:3].tolist())
    assert n == 7 and out.shape == (7, 1)
    assert kept(out, n) == [t for t in range(10) if t not in dropped]
    assert kept(out, n) == [0, 2, 3, 5, 6, 8, 9]  # pinned: the draw order is part of exact resume


def test_chunk_mode_exact_frames_for_a_fixed_generator():
    out, n = time_drop(frames(20), mode="chunk", ratio=0.25, chunk_length=2, generator=torch.Generator().manual_seed(3))
    assert n == 15
    # By hand: 5 frames in spans (2, 2, 2) with the short one at randint(3) = 1: (2, 1, 2); the
    # 15 kept frames and 3 spans are 18 items, the spans at items randperm(18)[:3] = [4, 5, 14].
    g = torch.Generator().manual_seed(3)
    assert int(torch.randint(3, (1,), generator=g)) == 1
    assert torch.randperm(18, generator=g)[:3].sort().values.tolist() == [4, 5, 14]
    # Items 0-3 keep frames 0-3, item 4 drops 4-5, item 5 drops 6, items 6-13 keep 7-14, item 14
    # drops 15-16, items 15-17 keep 17-19.
    assert kept(out, n) == [0, 1, 2, 3, 7, 8, 9, 10, 11, 12, 13, 14, 17, 18, 19]


@pytest.mark.parametrize("mode", ["point", "chunk"])
@pytest.mark.parametrize("length", [1, 2, 5, 13, 40])
@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5, 0.9])
def test_count_order_and_values(mode, length, ratio):
    g = torch.Generator().manual_seed(length)
    out, n = time_drop(frames(length, 3), mode=mode, ratio=ratio, chunk_length=3, generator=g)
    assert n == length - min(round(ratio * length), length - 1)  # half to even, one frame always kept
    order = kept(out, n)
    assert order == sorted(set(order)) and all(0 <= t < length for t in order)  # kept in order, no repeats
    assert torch.equal(out, frames(length, 3)[torch.tensor(order)])


@pytest.mark.parametrize("seed", range(8))
def test_chunks_are_spans_of_chunk_length_with_one_shorter(seed):
    out, n = time_drop(frames(50), mode="chunk", ratio=0.3, chunk_length=4, generator=torch.Generator().manual_seed(seed))
    dropped = sorted(set(range(50)) - set(kept(out, n)))
    assert len(dropped) == 15
    runs, start = [], dropped[0]  # maximal runs of dropped frames: sums of spans (4, 4, 4, 3)
    for a, b in zip(dropped, dropped[1:] + [None]):
        if b != a + 1:
            runs.append(a - start + 1)
            start = b
    assert sum(runs) == 15 and all(r % 4 in (0, 3) for r in runs)


def test_one_chunk_is_contiguous_and_can_sit_anywhere():
    starts = set()
    for seed in range(60):
        out, n = time_drop(frames(8), mode="chunk", ratio=0.25, chunk_length=5, generator=torch.Generator().manual_seed(seed))
        gone = sorted(set(range(8)) - set(kept(out, n)))
        assert len(gone) == 2 and gone[1] == gone[0] + 1
        starts.add(gone[0])
    assert starts == set(range(7))


def test_batch_shapes_padding_and_lengths():
    x = torch.stack([frames(12, 4), frames(12, 4), frames(12, 4)])
    x[1, 8:] = 0
    x[2, 4:] = 0
    out, n = time_drop(x, torch.tensor([12, 8, 4]), mode="point", ratio=0.25, generator=torch.Generator().manual_seed(1))
    assert n.tolist() == [9, 6, 3] and n.dtype == torch.int64
    assert out.shape == (3, 9, 4)  # the time dimension shrinks to the longest new length
    for b, length in enumerate([12, 8, 4]):
        order = kept(out[b], int(n[b]))
        assert order == sorted(order) and max(order) < length  # never a padded frame
        assert (out[b, n[b]:] == 0).all()


def test_waveforms_and_lengths_none():
    wave = torch.arange(1.0, 101.0).repeat(2, 1)  # (B, T) with a 1-D lengths tensor
    out, n = time_drop(wave, torch.tensor([100, 60]), mode="chunk", ratio=0.1, chunk_length=4)
    assert out.shape == (2, 90) and n.tolist() == [90, 54]
    assert (out[1, 54:] == 0).all() and (out[1, :54] <= 60).all()
    out, n = time_drop(torch.randn(2, 10, 3), None, mode="point", ratio=0.5)  # None: all frames valid
    assert out.shape == (2, 5, 3) and n.tolist() == [5, 5]
    out, n = time_drop(frames(10, 2), 6, mode="point", ratio=0.5)  # (T, F) with an int length
    assert out.shape == (3, 2) and n == 3


def test_ratio_zero_is_the_identity():
    x, lengths = torch.randn(2, 7, 3), torch.tensor([7, 5])
    out, n = time_drop(x, lengths, ratio=0.0)
    assert out is x and n is lengths


def test_module_train_only_seeded_and_no_parameters():
    drop = TimeDrop(mode="point", ratio=0.5, seed=7)
    assert list(drop.parameters()) == [] and list(drop.buffers()) == []
    x, lengths = torch.randn(2, 10, 3), torch.tensor([10, 6])
    first, n = drop(x, lengths)
    again, m = TimeDrop(mode="point", ratio=0.5, seed=7)(x, lengths)
    assert torch.equal(first, again) and torch.equal(n, m)
    assert drop.eval()(x, lengths) == (x, lengths)
    drop.train().ratio = 0.0
    assert drop(x, lengths)[0] is x
    state = TimeDrop(seed=1).rng_state()
    drop.ratio = 0.5
    drop.set_rng_state(torch.Generator().manual_seed(7).get_state())
    assert torch.equal(drop(x, lengths)[0], first)  # the restored state replays the draws
    assert state is not None and TimeDrop().rng_state() is None


def test_module_without_seed_uses_the_global_rng():
    x = torch.randn(1, 30, 2)
    torch.manual_seed(0)
    a = TimeDrop(mode="point", ratio=0.3)(x)[0]
    torch.manual_seed(0)
    assert torch.equal(TimeDrop(mode="point", ratio=0.3)(x)[0], a)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mode": "frames"}, "`mode` must be one of \\('point', 'chunk'\\), got 'frames'"),
    ({"ratio": 1.0}, "`ratio` must be a number in \\[0, 1\\), got 1.0"),
    ({"ratio": -0.1}, "`ratio`"),
    ({"chunk_length": 0}, "`chunk_length` must be an integer >= 1, got 0"),
    ({"seed": -1}, "`seed`"),
])
def test_bad_module_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TimeDrop(**kwargs)


def test_bad_inputs_and_ratio_setter():
    with pytest.raises(ValueError, match="`ratio`"):
        TimeDrop().ratio = 1.5
    with pytest.raises(ValueError, match="`features`"):
        time_drop(torch.randn(2, 3, 4, 5), ratio=0.5)
    with pytest.raises(ValueError, match="`lengths` must be an integer tensor of shape \\(2,\\)"):
        time_drop(torch.randn(2, 8, 3), torch.tensor([8, 8, 8]), ratio=0.5)
    with pytest.raises(ValueError, match="`lengths` must be in \\[0, 8\\]"):
        time_drop(torch.randn(2, 8, 3), torch.tensor([9, 8]), ratio=0.5)
    with pytest.raises(ValueError, match="`lengths`"):
        time_drop(torch.randn(8, 3), 9, ratio=0.5)
