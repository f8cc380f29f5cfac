"""AVSR transforms and batches: grey frames, mouth crops that follow the landmarks, the normalisation,
the train / eval crops, audio alignment, collation (padding, lengths, missing streams), units vocabularies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_sparse.data.avsr import (
    AVSR_MEAN,
    AVSR_STD,
    AVSRVideoTransform,
    UnitsTokenizer,
    align_audio,
    build_avsr_tokenizer,
    collate_av,
    crop_box,
    crop_mouth,
    mouth_centers,
    normalize_frames,
    resize_frames,
    to_grayscale,
)


def blob_video(centers: list[tuple[int, int]], size: int = 64) -> torch.Tensor:
    """Grey frames, black but a 5 x 5 white square at each frame's ``(x, y)``."""
    frames = torch.zeros(len(centers), size, size)
    for t, (x, y) in enumerate(centers):
        frames[t, y - 2 : y + 3, x - 2 : x + 3] = 255.0
    return frames


def landmarks_at(centers: list[tuple[int, int]]) -> np.ndarray:
    """68-point landmarks whose mouth points (48-67) ring ``(x, y)``; the other points far away."""
    points = np.full((len(centers), 68, 2), 1000.0)
    ring = np.stack([np.cos(np.linspace(0, 2 * np.pi, 20, endpoint=False)),
                     np.sin(np.linspace(0, 2 * np.pi, 20, endpoint=False))], axis=1) * 4
    for t, (x, y) in enumerate(centers):
        points[t, 48:68] = ring + [x, y]
    return points


def test_mouth_crop_follows_the_landmarks():
    path = [(20 + 2 * t, 30 + t) for t in range(8)]  # the mouth moves right and down
    frames, points = blob_video(path), landmarks_at(path)
    centers = mouth_centers(points, window=0)
    np.testing.assert_allclose(centers, np.array(path, dtype=float), atol=1e-9)
    crops = crop_mouth(frames, centers, size=16)
    assert crops.shape == (8, 16, 16)
    for t in range(8):  # the blob sits at the centre of every crop
        assert crops[t, 6:11, 6:11].min() == 255.0 and crops[t].sum() == 25 * 255.0
    # smoothing: a linear path is unchanged inside, a one-frame jump is spread out
    np.testing.assert_allclose(mouth_centers(points, window=4), centers, atol=1e-9)
    jumpy = landmarks_at([(20, 30)] * 4 + [(40, 30)] + [(20, 30)] * 4)
    smooth = mouth_centers(jumpy, window=4)
    assert 20 < smooth[4, 0] < 40 and smooth[3, 0] > 20 and smooth[0, 0] == pytest.approx(20)


def test_mouth_centers_fill_frames_without_landmarks_and_few_point_layouts():
    points = [None, np.array([[10.0, 10.0], [14.0, 10.0]]), np.full((2, 2), np.nan), np.array([[20.0, 30.0]]), None]
    centers = mouth_centers(points, window=0)
    assert centers.tolist() == [[12.0, 10.0], [12.0, 10.0], [16.0, 20.0], [20.0, 30.0], [20.0, 30.0]]
    with pytest.raises(ValueError, match="`landmarks` must give the mouth in at least one frame"):
        mouth_centers([None, None])
    with pytest.raises(ValueError, match=r"`landmarks` must hold \(K, 2\)"):
        mouth_centers([np.zeros((68, 3))])
    with pytest.raises(ValueError, match="`window` must be an integer >= 0"):
        mouth_centers([np.zeros((1, 2))], window=-1)


def test_crop_box_pads_outside_the_frame():
    frames = torch.arange(2 * 4 * 4, dtype=torch.float32).view(2, 4, 4)
    out = crop_box(frames, (-1, 2, 3, 3))
    assert out.shape == (2, 3, 3) and out[:, 0].abs().sum() == 0 and out[:, :, 2].abs().sum() == 0
    assert out[0, 1, :2].tolist() == [2.0, 3.0]
    with pytest.raises(ValueError, match=r"`crop_box` must be \(top, left, height, width\)"):
        crop_box(frames, (0, 0, 3))


def test_grayscale_resize_and_normalisation_values():
    rgb = np.zeros((1, 2, 2, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 255, 255
    assert torch.allclose(to_grayscale(rgb), torch.full((1, 2, 2), 255.0))
    red = np.zeros((1, 1, 1, 3), np.uint8)
    red[..., 0] = 100
    assert to_grayscale(red).item() == pytest.approx(29.9)
    assert resize_frames(torch.ones(2, 10, 20), 5).shape == (2, 5, 5)
    x = normalize_frames(torch.tensor([0.0, 0.421 * 255, 255.0]))
    assert x.tolist() == pytest.approx([-AVSR_MEAN / AVSR_STD, 0.0, (1 - AVSR_MEAN) / AVSR_STD], abs=1e-5)
    assert (AVSR_MEAN, AVSR_STD) == (0.421, 0.165)  # auto_avsr's datamodule/transforms.py


def test_video_transform_centre_and_random_crops():
    frames = torch.arange(96.0).repeat(3, 96, 1)  # value = column index
    centre = AVSRVideoTransform(crop_size=88)(frames)
    assert centre.shape == (3, 88, 88)
    assert centre[0, 0, 0].item() == pytest.approx(normalize_frames(torch.tensor(4.0)).item())  # (96 - 88) / 2
    train = AVSRVideoTransform(crop_size=88, train=True, flip=True, time_mask=True)
    a = train(frames, generator=torch.Generator().manual_seed(0))
    b = train(frames, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (3, 88, 88)
    lefts = set()
    for seed in range(20):
        out = AVSRVideoTransform(crop_size=88, train=True)(frames, generator=torch.Generator().manual_seed(seed))
        lefts.add(round(out[0, 0, 0].item() * AVSR_STD * 255 + AVSR_MEAN * 255))
    assert len(lefts) > 1 and lefts <= set(range(9))
    flipped = AVSRVideoTransform(crop_size=None, train=True, flip=True)
    middle = normalize_frames(torch.tensor(50.0)).item()
    outs = {flipped(frames, generator=torch.Generator().manual_seed(s))[0, 0, 0].item() > middle for s in range(10)}
    assert outs == {True, False}  # some clips flipped, some not
    with pytest.raises(ValueError, match="`crop_size` must be a positive int"):
        AVSRVideoTransform(crop_size=-3)
    with pytest.raises(ValueError, match="`std` must be a number > 0"):
        AVSRVideoTransform(std=0.0)
    with pytest.raises(ValueError, match="`flip` must be True or False"):
        AVSRVideoTransform(flip="yes")


def test_time_mask_blackens_stretches_in_training_only():
    frames = torch.full((50, 8, 8), 200.0)
    masked = AVSRVideoTransform(crop_size=None, train=True, time_mask=True)
    black = normalize_frames(torch.tensor(0.0)).item()
    counts = [int((masked(frames, generator=torch.Generator().manual_seed(s))[:, 0, 0] == black).sum())
              for s in range(10)]
    assert max(counts) > 0 and max(counts) <= 2 * 9  # two seconds, at most 9 frames each
    assert (AVSRVideoTransform(crop_size=None, time_mask=True)(frames)[:, 0, 0] != black).all()


def test_align_audio_trims_and_pads():
    assert align_audio(torch.ones(2000), 3).shape == (1920,)
    padded = align_audio(torch.ones(100), 1)
    assert padded.shape == (640,) and padded[:100].sum() == 100 and padded[100:].abs().sum() == 0


def item(frames: int, samples: int | None, targets: list[int], index: int, size: int = 4) -> dict:
    out = {"text": "x" * len(targets), "targets": torch.tensor(targets), "index": index}
    if frames:
        out["video"] = torch.ones(frames, size, size)
    if samples is not None:
        out["audio"] = torch.ones(samples)
    return out


def test_collate_pads_every_stream_and_reports_lengths():
    batch = collate_av([item(3, 1920, [5, 6, 7], 4), item(1, 640, [8], 9), item(2, 1280, [], 0)], return_index=True)
    assert batch["video"].shape == (3, 3, 4, 4) and batch["video"].dtype == torch.float32
    assert batch["video_lengths"].tolist() == [3, 1, 2] and batch["video_lengths"].dtype == torch.int64
    assert batch["video"][1, 1:].abs().sum() == 0 and batch["video"][1, 0].sum() == 16
    assert batch["audio"].shape == (3, 1920) and batch["audio_lengths"].tolist() == [1920, 640, 1280]
    assert batch["audio"][1, 640:].abs().sum() == 0
    assert batch["targets"].tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert batch["target_lengths"].tolist() == [3, 1, 0] and batch["index"].tolist() == [4, 9, 0]
    assert "index" not in collate_av([item(1, 640, [3], 0)])


def test_collate_single_stream_and_errors():
    audio_only = collate_av([item(0, 10, [3], 0), item(0, 7, [3], 1)])
    assert "video" not in audio_only and "video_lengths" not in audio_only and audio_only["audio"].shape == (2, 10)
    video_only = collate_av([item(2, None, [3], 0)])
    assert "audio" not in video_only and video_only["video"].shape == (1, 2, 4, 4)
    with pytest.raises(ValueError, match="every item must carry 'audio' when one does"):
        collate_av([item(1, 640, [3], 0), item(1, None, [3], 1)])
    with pytest.raises(ValueError, match="'video' must be"):
        collate_av([item(1, 640, [3], 0, size=4), item(1, 640, [3], 1, size=5)])
    with pytest.raises(ValueError, match="carry 'video' or 'audio'"):
        collate_av([{"text": "", "targets": torch.zeros(0), "index": 0}])


def test_units_tokenizer(tmp_path):
    units = tmp_path / "units.txt"
    units.write_text("<unk> 1\n\u2581THE 2\n\u2581CAT 3\nS 4\n")
    tok = build_avsr_tokenizer(str(units))
    assert isinstance(tok, UnitsTokenizer) and tok.vocab_size == 5
    assert tok.decode([2, 0, 3, 4]) == "the cats"
    with pytest.raises(ValueError, match="only decodes token ids"):
        tok.encode("the cat")
    units.write_text("<unk> 1\nA 3\n")
    with pytest.raises(ValueError, match=r"units.txt:2: a units line must be '<piece> 2'"):
        UnitsTokenizer(units)
    with pytest.raises(ValueError, match="`tokenizer` must be 'char', a SentencePiece .model or a units .txt"):
        build_avsr_tokenizer(str(tmp_path / "missing.txt"))
