"""Video decoding, clip sampling, UCF101 / folder-tree DataModules on the real GRID clips.

The 11 GRID clips (MPEG-1, 360x288, 25 fps, 3 s, MP2 audio) are real recordings; the UCF101
tree is built in ``tmp_path`` from them, one class per GRID command word (bin, lay, place, set),
with split files in the official format (CRLF line ends, 1-based labels, test lists without
labels) and one clip transcoded to an MPEG-4 ``.avi`` like UCF101's Xvid files.
"""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from lightning_sparse.data import UCF101DataModule, VideoFolderDataModule, read_video_frames
from lightning_sparse.data.video import KINETICS_MEAN, KINETICS_STD, VideoTransform, clip_indices, read_ucf101_split
from lightning_sparse.data.video_corruptions import VIDEO_CORRUPTIONS

GRID = Path("/work/shared/data/grid-11")
CLIPS = sorted(GRID.glob("GRID/*.mpg")) + [GRID / "id2_vcd_swwp2s.mpg"]
COMMANDS = {"b": "Bin", "l": "Lay", "p": "Place", "s": "Set"}  # GRID grammar: first word of the sentence
pytestmark = pytest.mark.skipif(not GRID.is_dir(), reason="GRID clips not available")


def _sentence(path: Path) -> str:
    return path.stem.split("_")[-1]  # id2_vcd_swwp2s -> swwp2s


@pytest.fixture(scope="module")
def full_clip() -> np.ndarray:
    return read_video_frames(CLIPS[0])


def _transcode_avi(src: Path, dst: Path) -> None:
    """MPEG-1 -> MPEG-4 Part 2 in AVI (UCF101's container and codec family), same size and rate."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream("mpeg4", rate=25, options={"qmin": "2", "qmax": "4"})
        stream.width, stream.height, stream.pix_fmt = 360, 288, "yuv420p"
        for frame in inp.decode(video=0):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")))
        out.mux(stream.encode())


@pytest.fixture(scope="module")
def ucf_tree(tmp_path_factory) -> tuple[Path, Path, dict]:
    """``UCF-101/<Class>/v_<Class>_gNN_c01.{mpg,avi}`` + ``ucfTrainTestlist`` with 3 folds."""
    root = tmp_path_factory.mktemp("ucf")
    data, lists = root / "UCF-101", root / "ucfTrainTestlist"
    lists.mkdir()
    classes = sorted(set(COMMANDS.values()))
    entries = []  # (relative path, class, group)
    for group, clip in enumerate(CLIPS, 1):
        cls = COMMANDS[_sentence(clip)[0]]
        (data / cls).mkdir(parents=True, exist_ok=True)
        avi = clip.name.startswith("id2")
        rel = f"{cls}/v_{cls}_g{group:02d}_c01.{'avi' if avi else 'mpg'}"
        if avi:
            _transcode_avi(clip, data / rel)
        else:
            (data / rel).symlink_to(clip)
        entries.append((rel, cls, group))
    crlf = "\r\n"
    (lists / "classInd.txt").write_text(crlf.join(f"{i} {c}" for i, c in enumerate(classes, 1)) + crlf)
    folds = {}
    for fold in (1, 2, 3):
        test = [e for e in entries if e[2] % 3 == fold - 1]
        train = [e for e in entries if e[2] % 3 != fold - 1]
        (lists / f"trainlist0{fold}.txt").write_text(
            crlf.join(f"{rel} {classes.index(c) + 1}" for rel, c, _ in train) + crlf)
        (lists / f"testlist0{fold}.txt").write_text(crlf.join(rel for rel, _, _ in test) + crlf)
        folds[fold] = ([e[0] for e in train], [e[0] for e in test])
    return data, lists, {"classes": classes, "folds": folds, "entries": entries}


def _dm(ucf_tree, **kwargs) -> UCF101DataModule:
    data, lists, _ = ucf_tree
    args = dict(frames_per_clip=8, frame_stride=2, image_size=56, batch_size=2)
    dm = UCF101DataModule(str(data), split_dir=str(lists), **{**args, **kwargs})
    dm.setup("fit")
    return dm


# --- decoding ---------------------------------------------------------------------------------


def test_every_grid_clip_decodes_to_75_frames_of_360x288():
    for path in CLIPS:
        clip = read_video_frames(path)
        assert clip.dtype == np.uint8 and clip.shape[1:] == (288, 360, 3), path
        assert abs(clip.shape[0] - 75) <= 2, (path, clip.shape)  # 3 s at 25 fps
        assert 30 < clip.mean() < 220  # a lit face, not a black or blank frame
        assert np.abs(np.diff(clip.astype(np.int16), axis=0)).mean(axis=(1, 2, 3)).min() > 0  # it moves


def test_decoding_is_deterministic(full_clip):
    assert np.array_equal(read_video_frames(CLIPS[0]), full_clip)
    a = read_video_frames(CLIPS[0], 16, stride=2, start="random", seed=7, size=64)
    b = read_video_frames(CLIPS[0], 16, stride=2, start="random", seed=7, size=64)
    assert np.array_equal(a, b)


def test_clip_sampling_matches_the_full_decode(full_clip):
    assert np.array_equal(read_video_frames(CLIPS[0], 16, stride=2, start=5), full_clip[5:37:2])
    center = read_video_frames(CLIPS[0], 16, stride=3, start="center")
    first = (75 - 1 - 45) // 2
    assert np.array_equal(center, full_clip[first : first + 46 : 3])
    assert np.array_equal(read_video_frames(CLIPS[0], 8, fps=12.5), full_clip[0:16:2])  # 25 fps -> 12.5
    uniform = read_video_frames(CLIPS[0], 5, start="uniform")
    assert np.array_equal(uniform, full_clip[[7, 22, 37, 52, 67]])
    starts = set()
    for seed in range(8):
        clip = read_video_frames(CLIPS[0], 16, start="random", seed=seed)
        matches = [s for s in range(60) if np.array_equal(clip, full_clip[s : s + 16])]
        assert len(matches) == 1
        starts.add(matches[0])
    assert len(starts) > 1 and max(starts) <= 59


def test_resize_short_side_and_exact_size(full_clip):
    small = read_video_frames(CLIPS[0], 4, size=144)
    assert small.shape == (4, 144, 180, 3)  # 288x360 halved, aspect kept
    ref = full_clip[:4].astype(np.float32).reshape(4, 144, 2, 180, 2, 3).mean(axis=(2, 4))
    assert np.abs(small - ref).mean() < 4  # the same picture, smoothly downsampled
    assert read_video_frames(CLIPS[0], 2, size=(100, 50)).shape == (2, 100, 50, 3)


@pytest.mark.parametrize("pad", ["loop", "edge", "zeros"])
def test_files_shorter_than_the_clip_are_padded(full_clip, pad):
    clip = read_video_frames(CLIPS[0], 100, pad=pad)
    assert clip.shape == (100, 288, 360, 3)
    assert np.array_equal(clip[:75], full_clip)
    expected = {"loop": full_clip[:25], "edge": np.repeat(full_clip[-1:], 25, 0),
                "zeros": np.zeros_like(full_clip[:25])}
    assert np.array_equal(clip[75:], expected[pad])


def test_clip_indices_rules():
    assert clip_indices(10, 4, 3.0, "center").tolist() == [0, 3, 6, 9]
    assert clip_indices(10, None, 3.0, 2).tolist() == [2, 5, 8]
    assert clip_indices(10, 3, 2.5, 0).tolist() == [0, 3, 5]  # nearest frames for fractional steps
    assert clip_indices(3, 5, 1.0, 0, "zeros").tolist() == [0, 1, 2, -1, -1]
    draws = {int(clip_indices(20, 5, 1.0, "random", rng=np.random.default_rng(s))[0]) for s in range(200)}
    assert draws == set(range(16))  # every start that keeps the clip inside


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_video_frames(tmp_path / "missing.avi")
    audio = tmp_path / "tone.wav"
    with wave.open(str(audio), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(800, np.int16).tobytes())
    with pytest.raises(ValueError, match="no video stream"):
        read_video_frames(audio)
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video" * 100)
    with pytest.raises(ValueError):
        read_video_frames(bad)
    for kwargs, match in [
        ({"num_frames": 0}, "`num_frames`"), ({"stride": 0}, "`stride`"), ({"fps": -1}, "`fps`"),
        ({"fps": 10, "stride": 2}, "either `stride` or `fps`"), ({"start": "middle"}, "`start`.*center"),
        ({"start": -1}, "`start`"), ({"start": "uniform"}, "needs `num_frames`"), ({"size": 0}, "`size`"),
        ({"size": (1, 2, 3)}, "`size`"), ({"pad": "wrap"}, "`pad`.*loop, edge, zeros"), ({"seed": -3}, "`seed`"),
    ]:
        with pytest.raises(ValueError, match=match):
            read_video_frames(CLIPS[0], **kwargs)


# --- transform --------------------------------------------------------------------------------


def test_transform_layout_and_normalisation():
    clip = np.random.default_rng(0).integers(0, 256, (4, 64, 80, 3), dtype=np.uint8)
    x = VideoTransform(crop_size=48, resize_size=64)(clip)
    assert x.shape == (3, 4, 48, 48) and x.dtype == torch.float32
    mean, std = torch.tensor(KINETICS_MEAN).view(3, 1, 1, 1), torch.tensor(KINETICS_STD).view(3, 1, 1, 1)
    expected = torch.from_numpy(clip[:, 8:56, 16:64]).permute(3, 0, 1, 2).float() / 255  # centre crop
    torch.testing.assert_close(x * std + mean, expected)
    train = VideoTransform(crop_size=48, resize_size=64, train=True)
    a, b = train(clip, torch.Generator().manual_seed(1)), train(clip, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    resized = VideoTransform(crop_size=32, resize_size=32)(clip)  # 64x80 -> 32x40 -> 32x32
    assert resized.shape == (3, 4, 32, 32)
    with pytest.raises(ValueError, match="`resize_size` must be at least `crop_size`"):
        VideoTransform(crop_size=64, resize_size=32)


# --- UCF101 -----------------------------------------------------------------------------------


def test_ucf101_split_files_labels_and_folds(ucf_tree):
    data, lists, meta = ucf_tree
    for fold in (1, 2, 3):
        train, classes = read_ucf101_split(lists, fold, "train")
        test, _ = read_ucf101_split(lists, fold, "test")
        assert classes == meta["classes"] == ["Bin", "Lay", "Place", "Set"]
        assert ([rel for rel, _ in train], [rel for rel, _ in test]) == meta["folds"][fold]
        assert sorted(r for r, _ in train + test) == sorted(e[0] for e in meta["entries"])  # a partition
        for rel, label in train + test:
            assert classes[label] == rel.split("/")[0]
    assert read_ucf101_split(lists, 1, "test")[0] != read_ucf101_split(lists, 2, "test")[0]


def test_ucf101_datamodule_shapes_labels_and_normalisation(ucf_tree):
    dm = _dm(ucf_tree, fold=1)
    _, _, meta = ucf_tree
    assert dm.num_classes == 4 and dm.classes == meta["classes"]
    assert len(dm.train_dataset) + len(dm.test_dataset) == 11 and dm.val_dataset is dm.test_dataset
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (2, 3, 8, 56, 56) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert y.tolist() == [dm.test_dataset.samples[i][1] for i in range(2)]
    raw, label = dm.test_dataset.raw(0)
    assert raw.dtype == np.uint8 and raw.shape == (8, 64, 80, 3)  # short side 64 = round(56 * 8 / 7)
    mean, std = torch.tensor(KINETICS_MEAN).view(3, 1, 1, 1), torch.tensor(KINETICS_STD).view(3, 1, 1, 1)
    pixels = x[0] * std + mean
    expected = torch.from_numpy(raw[:, 4:60, 12:68]).permute(3, 0, 1, 2).float() / 255
    torch.testing.assert_close(pixels, expected)
    assert x.mean().abs() < 1.5 and 0.3 < x.std() < 3  # normalised scale
    xt, yt = next(iter(dm.train_dataloader()))
    assert xt.shape == (2, 3, 8, 56, 56)


def test_ucf101_eval_is_deterministic_and_train_is_seeded(ucf_tree):
    dm = _dm(ucf_tree)
    assert torch.equal(dm.test_dataset[1][0], dm.test_dataset[1][0])
    torch.manual_seed(3)
    a = dm.train_dataset[0][0]
    torch.manual_seed(3)
    b = dm.train_dataset[0][0]
    c = [dm.train_dataset[0][0] for _ in range(3)]
    assert torch.equal(a, b) and any(not torch.equal(a, ci) for ci in c)


def test_ucf101_avi_file_decodes_like_its_source(ucf_tree):
    dm = _dm(ucf_tree, fold=3)  # group 11 (the .avi) is in test fold 3
    dataset = dm.test_dataset
    (index,) = [i for i, (p, _) in enumerate(dataset.samples) if p.endswith(".avi")]
    clip, label = dataset.raw(index)
    assert dm.classes[label] == "Set" and clip.shape == (8, 64, 80, 3)
    source = read_video_frames(CLIPS[-1], 8, stride=2, start="center", size=64)
    assert np.abs(clip.astype(int) - source).mean() < 4  # the same frames, re-encoded


def test_return_index_and_subsets(ucf_tree):
    dm = _dm(ucf_tree, return_index=True, train_subset=4, test_subset=0.5, seed=1)
    x, y, index = next(iter(dm.train_dataloader()))
    assert index.dtype == torch.int64 and len(dm.train_dataset) == 4
    assert y.tolist() == [dm.train_dataset.samples[i][1] for i in index.tolist()]
    assert len(set(dm.train_dataset.targets)) == 4  # class-balanced: one clip of each command
    assert len(dm.test_dataset) == 2 and len(next(iter(dm.test_dataloader()))) == 2
    again = _dm(ucf_tree, return_index=True, train_subset=4, test_subset=0.5, seed=1)
    assert again.train_dataset.samples == dm.train_dataset.samples


def test_forward_through_r3d18(ucf_tree):
    from torchvision.models.video import r3d_18

    dm = _dm(ucf_tree, frames_per_clip=4, image_size=32)
    x, y = next(iter(dm.test_dataloader()))
    logits = r3d_18(num_classes=dm.num_classes).eval()(x)
    assert logits.shape == (2, 4)


def test_ucf101_errors(ucf_tree, tmp_path):
    data, lists, _ = ucf_tree
    for kwargs, match in [
        ({"fold": 4}, "`fold` must be 1, 2 or 3"), ({"frames_per_clip": 0}, "`frames_per_clip`"),
        ({"image_size": 112, "resize_size": 100}, "`resize_size`"), ({"batch_size": 0}, "`batch_size`"),
        ({"num_workers": -1}, "`num_workers`"), ({"train_subset": 1.5}, "`train_subset`"),
        ({"test_subset": 0}, "`test_subset`"), ({"seed": -1}, "`seed`"),
        ({"corruption_temporal": "flicker"}, "`corruption_temporal`"), ({"corruption_params": "svhn"}, "`params`"),
    ]:
        with pytest.raises(ValueError, match=match):
            UCF101DataModule(str(data), split_dir=str(lists), **kwargs)
    with pytest.raises(FileNotFoundError, match="classInd.txt"):
        UCF101DataModule(str(data), split_dir=str(tmp_path)).setup()
    bad = tmp_path / "lists"
    bad.mkdir()
    (bad / "classInd.txt").write_text((lists / "classInd.txt").read_text())
    (bad / "testlist01.txt").write_text("Bin/v_Bin_g99_c01.avi\n")
    (bad / "trainlist01.txt").write_text("Bin/v_Bin_g01_c01.mpg 2\n")
    with pytest.raises(ValueError, match="label 2 disagrees"):
        UCF101DataModule(str(data), split_dir=str(bad)).setup()
    (bad / "trainlist01.txt").write_text("Bin/v_Bin_g01_c01.mpg 1\n")
    with pytest.raises(FileNotFoundError, match="missing"):
        UCF101DataModule(str(data), split_dir=str(bad)).setup()
    with pytest.raises(ValueError, match="`train_subset` asks for 9"):
        _dm(ucf_tree, train_subset=9)


# --- corrupted test sets ------------------------------------------------------------------------


def test_corruption_datasets_are_deterministic_and_follow_the_clean_set(ucf_tree):
    dm = _dm(ucf_tree, frames_per_clip=4, image_size=32)
    sets = list(dm.corruption_datasets(["gaussian_noise", "frame_drop"], [1, 5]))
    assert [(n, s) for n, s, _ in sets] == [("gaussian_noise", 1), ("gaussian_noise", 5), ("frame_drop", 1),
                                             ("frame_drop", 5)]
    clean = dm.test_dataset
    errors = []
    for _, _, dataset in sets[:2]:
        assert len(dataset) == len(clean)
        x, y = dataset[1]
        assert x.shape == clean[1][0].shape and y == clean[1][1]
        assert torch.equal(x, dataset[1][0])  # the same item always gets the same corruption
        errors.append((x - clean[1][0]).abs().mean().item())
    assert 0 < errors[0] < errors[1]
    loader = torch.utils.data.DataLoader(sets[1][2], batch_size=2, num_workers=2)
    batch = next(iter(loader))[0]
    assert torch.equal(batch[1], sets[1][2][1][0])  # independent of worker processes
    assert dm.available_corruptions[-3:] == ("frame_drop", "frame_rate", "video_compression")
    assert [n for n, _, _ in dm.corruption_datasets(severities=[3])] == list(VIDEO_CORRUPTIONS)
    with pytest.raises(ValueError, match="`corruptions`"):
        dm.corruption_datasets(["gaussian_noise", "rain"])
    with pytest.raises(ValueError, match="`severities`"):
        dm.corruption_datasets(["fog"], [0, 6])


# --- generic folder tree ------------------------------------------------------------------------


def test_video_folder_datamodule(tmp_path):
    for split, clips in (("train", CLIPS[:8]), ("test", CLIPS[8:])):
        for clip in clips:
            cls = COMMANDS[_sentence(clip)[0]]
            (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
            (tmp_path / split / cls / clip.name).symlink_to(clip)
    (tmp_path / "train" / "Bin" / "notes.txt").write_text("not a video")
    dm = VideoFolderDataModule(str(tmp_path), frames_per_clip=4, image_size=32, batch_size=3)
    dm.setup("fit")
    assert dm.classes == ["Bin", "Lay", "Place", "Set"]
    assert len(dm.train_dataset) == 8 and len(dm.test_dataset) == 3 and dm.val_dataset is dm.test_dataset
    assert {dm.classes[y] for y in dm.test_dataset.targets} == {"Set"}
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (3, 3, 4, 32, 32) and y.tolist() == [3, 3, 3]
    with pytest.raises(FileNotFoundError, match="split folder"):
        VideoFolderDataModule(str(tmp_path), val_split="val").setup()
    (tmp_path / "test" / "Jump").mkdir()
    (tmp_path / "test" / "Jump" / "a.mpg").symlink_to(CLIPS[0])
    with pytest.raises(ValueError, match="classes the training split lacks: \\['Jump'\\]"):
        VideoFolderDataModule(str(tmp_path)).setup()
