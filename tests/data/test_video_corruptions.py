"""Video corruptions on a real GRID clip: shapes, frame consistency, severity monotonicity, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lightning_sparse.data.video.corruptions as vc
from lightning_sparse.data.corruptions import corrupt
from lightning_sparse.data.video import read_video_frames
from lightning_sparse.data.video_corruptions import (
    ALL_VIDEO_CORRUPTIONS,
    SPATIAL_CORRUPTIONS,
    TEMPORAL_CORRUPTIONS,
    VIDEO_CORRUPTIONS,
    CorruptedVideoDataset,
    compress_video,
    corrupt_video,
    drop_frames,
    resample_frame_rate,
)

GRID = Path("/work/shared/data/grid-11/GRID/bbaf2n.mpg")
pytestmark = pytest.mark.skipif(not GRID.is_file(), reason="GRID clips not available")


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    """16 consecutive frames from the middle of a real clip, 128 pixels on the short side."""
    return read_video_frames(GRID, 16, start="center", size=128)  # (16, 128, 160, 3)


@pytest.fixture(scope="module")
def small(clip) -> np.ndarray:
    return clip[:4, ::2, ::2].copy()  # (4, 64, 80, 3): cheap enough for every corruption


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b).mean())


def _repeats(x: np.ndarray) -> int:
    return sum(bool(np.array_equal(x[i], x[i - 1])) for i in range(1, len(x)))


def test_registry():
    assert SPATIAL_CORRUPTIONS + TEMPORAL_CORRUPTIONS == ALL_VIDEO_CORRUPTIONS
    assert len(VIDEO_CORRUPTIONS) == 18 and set(VIDEO_CORRUPTIONS) < set(ALL_VIDEO_CORRUPTIONS)
    assert TEMPORAL_CORRUPTIONS == ("frame_drop", "frame_rate", "video_compression")


@pytest.mark.parametrize("name", ALL_VIDEO_CORRUPTIONS)
def test_every_corruption_keeps_shape_and_dtype_and_is_seeded(small, name):
    before = small.copy()
    out = corrupt_video(small, name, 3, seed=5)
    assert out.shape == small.shape and out.dtype == np.uint8
    assert np.array_equal(small, before)  # input untouched
    assert np.array_equal(out, corrupt_video(small, name, 3, seed=5))
    assert not np.array_equal(out, small)


def test_consistent_noise_is_the_same_field_in_every_frame(clip):
    out = corrupt_video(clip, "gaussian_noise", 3, seed=0)
    residual = out.astype(np.int16) - clip
    unclipped = ((out > 0) & (out < 255)).all(axis=0)  # where no frame hit the 8-bit range
    assert unclipped.mean() > 0.8  # the dark background clips some values at 0
    assert (residual[:, unclipped] == residual[0, unclipped]).all()
    assert residual[0, unclipped].std() > 10  # a real noise field, not zero
    independent = corrupt_video(clip, "gaussian_noise", 3, seed=0, temporal="independent")
    res_i = independent.astype(np.int16) - clip
    assert (res_i[1, unclipped] != res_i[0, unclipped]).mean() > 0.9  # fresh noise per frame
    assert np.array_equal(independent, corrupt_video(clip, "gaussian_noise", 3, seed=0, temporal="independent"))


@pytest.mark.parametrize("name", ["snow", "impulse_noise", "glass_blur"])
def test_consistent_frames_equal_the_image_corruption_with_the_same_seed(small, name):
    out = corrupt_video(small, name, 4, seed=11)
    for t in range(len(small)):
        assert np.array_equal(out[t], corrupt(small[t], name, 4, seed=11))


@pytest.mark.parametrize("temporal, agreement", [("consistent", 1.0), ("independent", 0.07)])
def test_unseeded_draws_are_shared_across_frames_only_when_consistent(small, temporal, agreement):
    out = corrupt_video(small, "impulse_noise", 5, temporal=temporal)  # seed=None: fresh entropy
    hit = (out != small) & ((out == 0) | (out == 255))  # (T, H, W, C) salt-and-pepper positions
    overlap = [(hit[0] & hit[t]).sum() / hit[0].sum() for t in range(1, len(small))]
    # independent: the overlap is the noise density, 0.07 (CIFAR-10-C constants at 64 pixels)
    assert np.allclose(overlap, agreement, atol=0.05), overlap


def test_frame_drop_repeats_a_growing_share(clip):
    counts, dropped = [], []
    for severity in range(1, 6):
        out = corrupt_video(clip, "frame_drop", severity, seed=3)
        assert np.array_equal(out[0], clip[0])
        source = [next(i for i in range(16) if np.array_equal(frame, clip[i])) for frame in out]
        assert source == sorted(source)  # every frame is a clean frame, in order
        counts.append(_repeats(out))
        dropped.append({t for t in range(1, 16) if source[t] != t})
    assert counts == [round(s * 15) for s in (0.12, 0.24, 0.36, 0.48, 0.60)] == [2, 4, 5, 7, 9]
    assert all(a <= b for a, b in zip(dropped, dropped[1:]))  # nested: same seed, more drops
    assert _repeats(clip) == 0


def test_frame_rate_loses_more_frames_with_severity(clip):
    distinct, errors = [], []
    for severity in range(1, 6):
        out = corrupt_video(clip, "frame_rate", severity)
        source = [next(i for i in range(16) if np.array_equal(frame, clip[i])) for frame in out]
        assert source == sorted(source) and out.shape == clip.shape
        distinct.append(len(set(source)))
        errors.append(_mae(out, clip))
    assert distinct == sorted(distinct, reverse=True) and distinct[0] > distinct[-1]
    assert distinct == [round(16 * f) for f in (20 / 30, 16 / 30, 12 / 30, 9 / 30, 6 / 30)]  # [11, 9, 6, 5, 3]
    assert all(a < b for a, b in zip(errors, errors[1:]))
    assert np.array_equal(resample_frame_rate(clip, 2.0), clip)  # a higher rate loses nothing
    assert len(resample_frame_rate(clip, 2.0, keep_duration=False)) == 32


def test_video_compression_error_grows_with_severity(clip):
    errors = [_mae(corrupt_video(clip, "video_compression", s), clip) for s in range(1, 6)]
    assert all(a < b for a, b in zip(errors, errors[1:])), errors
    assert errors[0] < 5 and errors[-1] > 2 * errors[0]
    assert np.array_equal(corrupt_video(clip, "video_compression", 3), corrupt_video(clip, "video_compression", 3))


def test_mpeg4_fallback_and_odd_sizes(clip, monkeypatch):
    monkeypatch.setattr(vc, "_default_codec", lambda: "mpeg4")
    errors = [_mae(corrupt_video(clip[:8], "video_compression", s), clip[:8]) for s in range(1, 6)]
    assert all(a < b for a, b in zip(errors, errors[1:])), errors
    odd = clip[:3, :37, :53]
    assert compress_video(odd, 30).shape == odd.shape
    grey = clip[:3, :, :, :1]
    out = compress_video(grey, 23, codec="mpeg4")
    assert out.shape == grey.shape and _mae(out, grey) < 6


def test_drop_frames_edge_cases():
    one = np.zeros((1, 8, 8, 3), np.uint8)
    assert np.array_equal(drop_frames(one, 0.6, np.random.default_rng(0)), one)
    ramp = np.arange(11, dtype=np.uint8).reshape(11, 1, 1, 1)
    out = drop_frames(ramp, 1.0, np.random.default_rng(0)).ravel().tolist()
    assert out == [0] * 11  # everything after the first frame dropped: frozen


def test_corrupted_video_dataset_is_seeded_per_item(small):
    class Clips:
        def __len__(self):
            return 3

        def raw(self, i):
            return np.roll(small, i, axis=0), i

    data = CorruptedVideoDataset(Clips(), "shot_noise", 2, seed=4, transform=lambda c: c[:, :8, :8])
    first = [data[i][0] for i in (2, 0, 1)]
    assert [data[i][1] for i in range(3)] == [0, 1, 2]
    assert all(np.array_equal(a, data[i][0]) for a, i in zip(first, (2, 0, 1)))  # order-independent
    assert first[0].shape == (4, 8, 8, 3)
    assert data.item_seed(0) != data.item_seed(1)
    other = CorruptedVideoDataset(Clips(), "shot_noise", 2, seed=5)
    assert not np.array_equal(other[0][0][:, :8, :8], data[0][0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "rain"}, "`name` must be one of gaussian_noise"),
        ({"severity": 0}, "`severity`"), ({"severity": 6}, "`severity`"),
        ({"severity": True}, "`severity`"), ({"severity": 2.0}, "`severity`"),
        ({"seed": -1}, "`seed`"), ({"temporal": "flicker"}, "`temporal` must be one of consistent, independent"),
        ({"params": "svhn"}, "`params`"),
    ],
)
def test_argument_errors(small, kwargs, match):
    args = {"name": "fog", "severity": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        corrupt_video(small, **args)


def test_clip_and_codec_errors(small):
    with pytest.raises(ValueError, match="`clip` must be a uint8"):
        corrupt_video(small.astype(np.float32), "fog", 1)
    with pytest.raises(ValueError, match="`clip` must have shape"):
        corrupt_video(small[0], "fog", 1)
    with pytest.raises(ValueError, match="`codec`"):
        compress_video(small, 23, codec="vp9")
    with pytest.raises(ValueError, match="`quality` for mpeg4"):
        compress_video(small, 40, codec="mpeg4")
    with pytest.raises(ValueError, match="`dataset` must have a `raw"):
        CorruptedVideoDataset([small], "fog", 1)
    with pytest.raises(ValueError, match="`factor`"):
        resample_frame_rate(small, 0)
