"""LRS3: transcript and landmark files, the published layout (mp4 + txt, mouth crops from landmarks)
and auto_avsr's pre-processed layout (mouth-crop mp4 + wav + label list), on tiny files written here
in the same formats (LRS3 itself cannot be had offline)."""

from __future__ import annotations

import pickle
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from lightning_sparse.data.avsr import (
    LRS3DataModule,
    LRS3Dataset,
    read_label_list,
    read_landmarks,
    read_lrs3_text,
    read_lrs3_words,
)

RATE = 16000


def tone(samples: int, freq: float = 300.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(samples) / RATE)).astype(np.float32)


def mouth_frames(path: list[tuple[int, int]], size: int = 64) -> np.ndarray:
    """RGB frames, grey background with a white 8 x 8 square ("the mouth") at each ``(x, y)``."""
    frames = np.full((len(path), size, size, 3), 60, np.uint8)
    for t, (x, y) in enumerate(path):
        frames[t, y - 4 : y + 4, x - 4 : x + 4] = 255
    return frames


def write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray | None = None) -> None:
    """An MP4 at 25 fps (MPEG-4 part 2 video) with an optional AAC mono track at 16 kHz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream("mpeg4", rate=25, options={"qmin": "1", "qmax": "3"})
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        sound = None
        if audio is not None:
            sound = out.add_stream("aac", rate=RATE)
            sound.layout = "mono"
        for frame in frames:
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(video.encode())
        if sound is not None:
            n = sound.codec_context.frame_size or 1024
            for k in range(0, len(audio), n):
                chunk = np.pad(audio[k : k + n], (0, max(0, k + n - len(audio))))
                frame = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = RATE, k
                out.mux(sound.encode(frame))
            out.mux(sound.encode())


def lrs3_txt(text: str, words: list[tuple[str, float, float]]) -> str:
    lines = [f"Text:  {text}", "Conf:  4", "", "WORD START END ASDSCORE"]
    return "\n".join(lines + [f"{w} {s:.2f} {e:.2f} 6.1" for w, s, e in words]) + "\n"


PATH = [(20 + 2 * t, 24 + t) for t in range(10)]  # the mouth drifts right and down


@pytest.fixture
def raw_lrs3(tmp_path) -> Path:
    """trainval/ with two speakers (one with .npy landmarks, one with a .pkl), test/ with one."""
    root = tmp_path / "lrs3"
    clips = {("trainval", "spkA", "00001"): "HELLO THERE", ("trainval", "spkA", "00002"): "THANK {LG} YOU",
             ("trainval", "spkB", "00001"): "IT'S GOOD", ("test", "spkC", "00001"): "GOOD MORNING"}
    for k, ((split, speaker, utt), text) in enumerate(clips.items()):
        base = root / split / speaker / utt
        write_mp4(base.with_suffix(".mp4"), mouth_frames(PATH), tone(6400, 200 + 100 * k))
        base.with_suffix(".txt").write_text(lrs3_txt(text, [(w, 0.1 * i, 0.1 * i + 0.08)
                                                            for i, w in enumerate(text.split())]))
    centres = np.array(PATH, dtype=float)
    points = np.full((10, 68, 2), 500.0)
    points[:, 48:68] = centres[:, None, :]
    landmarks = tmp_path / "landmarks" / "trainval"
    (landmarks / "spkA").mkdir(parents=True)
    (landmarks / "spkB").mkdir(parents=True)
    np.save(landmarks / "spkA" / "00001.npy", points)
    np.save(landmarks / "spkA" / "00002.npy", points)
    (landmarks.parent / "test" / "spkC").mkdir(parents=True)
    np.save(landmarks.parent / "test" / "spkC" / "00001.npy", points)
    frames = [None if t == 3 else points[t] for t in range(10)]  # auto_avsr's .pkl: None where undetected
    with open(landmarks / "spkB" / "00001.pkl", "wb") as handle:
        pickle.dump(frames, handle)
    return root


def test_transcript_and_word_timings(tmp_path):
    path = tmp_path / "00001.txt"
    path.write_text(lrs3_txt("SO {NS} WE BEGAN", [("SO", 0.12, 0.3), ("WE", 0.5, 0.61)]))
    assert read_lrs3_text(path) == "SO NS WE BEGAN"  # braces dropped as auto_avsr does
    assert read_lrs3_words(path) == [("SO", 0.12, 0.3), ("WE", 0.5, 0.61)]
    path.write_text("Conf: 3\n")
    with pytest.raises(ValueError, match="must have a 'Text:  TRANSCRIPT' line"):
        read_lrs3_text(path)
    path.write_text(lrs3_txt("A", []) + "A x 0.2 1.0\n")
    with pytest.raises(ValueError, match="a word line must be 'WORD START END SCORE'"):
        read_lrs3_words(path)


def test_landmark_files(tmp_path):
    points = np.ones((4, 68, 2))
    with open(tmp_path / "a.pkl", "wb") as handle:
        pickle.dump([points[0], None, points[2], points[3]], handle)
    assert [f is None for f in read_landmarks(tmp_path / "a.pkl")] == [False, True, False, False]
    np.save(tmp_path / "bad.npy", np.ones((4, 68)))
    with pytest.raises(ValueError, match=r"landmarks must be a \(T, K, 2\) array"):
        read_landmarks(tmp_path / "bad.npy")
    with pytest.raises(ValueError, match="must be .pkl or .npy"):
        read_landmarks(tmp_path / "a.json")


def test_raw_layout_decodes_crops_and_aligns(raw_lrs3, tmp_path):
    dm = LRS3DataModule(str(raw_lrs3), landmarks_dir=str(tmp_path / "landmarks"), mouth_size=16, image_size=16,
                        crop_size=None, batch_size=3, return_index=True)
    dm.setup()
    assert len(dm.train_dataset) == 3 and len(dm.test_dataset) == 1 and dm.val_dataset is None
    assert dm.train_dataset.texts == ["hello there", "thank lg you", "it's good"]
    assert [p.suffix for p in dm.train_dataset.landmark_files] == [".npy", ".npy", ".pkl"]
    assert dm.train_dataset.lengths.tolist() == [10, 10, 10]
    item = dm.train_dataset[2]
    assert item["video"].shape == (10, 16, 16) and item["audio"].shape == (6400,)
    # the white square sits in the middle of every crop although it moves across the frame
    bright = item["video"] > 0
    assert bright[:, 6:10, 6:10].all() and not bright[:, :2].any() and not bright[:, :, -2:].any()
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (3, 10, 16, 16) and batch["audio"].shape == (3, 6400)
    assert batch["audio_lengths"].tolist() == [6400] * 3 and sorted(batch["index"].tolist()) == [0, 1, 2]
    assert float(batch["audio"].abs().max()) > 0.1  # the tone survived AAC and resampling
    test = next(iter(dm.test_dataloader()))
    assert test["text"] == ["good morning"] and "index" not in test


def test_raw_layout_without_landmarks_uses_the_box_or_the_whole_frame(raw_lrs3):
    whole = LRS3DataModule(str(raw_lrs3), image_size=32, crop_size=24, val_fraction=0.34, seed=1)
    whole.setup()
    assert (len(whole.train_dataset), len(whole.val_dataset)) == (2, 1)
    assert set(whole.train_dataset.videos).isdisjoint(whole.val_dataset.videos)
    assert whole.val_dataset[0]["video"].shape == (10, 24, 24) and not whole.val_dataset.video_transform.train
    boxed = LRS3DataModule(str(raw_lrs3), crop_box=(0, 0, 20, 30), image_size=None, crop_size=None,
                           modality="video")
    boxed.setup()
    assert set(boxed.test_dataset[0]) == {"video", "text", "targets", "index"}
    assert boxed.test_dataset[0]["video"].shape == (10, 20, 30)


def test_raw_layout_errors(raw_lrs3, tmp_path):
    with pytest.raises(FileNotFoundError, match="LRS3 split folder .*pretrain does not exist"):
        LRS3DataModule(str(raw_lrs3), train_splits=("pretrain",)).setup()
    with pytest.raises(FileNotFoundError, match="no landmarks for"):
        LRS3DataModule(str(raw_lrs3), landmarks_dir=str(tmp_path / "nowhere")).setup()
    for kwargs, message in (
        (dict(layout="mp4"), "`layout` must be one of \\('raw', 'preprocessed'\\)"),
        (dict(val_splits=("trainval",), val_fraction=0.1), "`val_fraction` must be 0 when a validation split"),
        (dict(train_splits=()), "`train_splits` must name at least one split folder"),
        (dict(labels="ids"), "`labels` must be one of"),
        (dict(mouth_size=0), "`mouth_size` must be a positive int"),
        (dict(landmarks_dir=3), "`landmarks_dir` must be a file path or None"),
    ):
        with pytest.raises(ValueError, match=message):
            LRS3DataModule(str(raw_lrs3), **kwargs)


# ---------------------------------------------------------------------------------------- pre-processed
UNITS = ["<unk>", "\u2581HELLO", "\u2581THERE", "\u2581GOOD", "\u2581MORN", "ING"]


@pytest.fixture
def preprocessed(tmp_path) -> Path:
    """auto_avsr's output: labels/*.csv, lrs3/lrs3_video_seg24s/<split>/<spk>/<utt>.mp4 + .wav, text files."""
    root = tmp_path / "root"
    rows = {"train": [("trainval/spkA/00001", 8, "HELLO THERE", [2, 3]), ("trainval/spkB/00003", 12, "GOOD MORNING",
                                                                          [4, 5, 6])],
            "test": [("test/spkC/00001", 6, "HELLO", [2])]}
    (root / "labels").mkdir(parents=True)
    for split, entries in rows.items():
        lines = []
        for k, (rel, frames, text, ids) in enumerate(entries):
            video = root / "lrs3" / "lrs3_video_seg24s" / f"{rel}.mp4"
            write_mp4(video, mouth_frames([(48, 48)] * frames, size=96))
            sf.write(video.with_suffix(".wav"), tone(frames * 640 + 100, 250 + 50 * k), RATE)
            text_file = root / "lrs3" / "lrs3_text_seg24s" / f"{rel}.txt"
            text_file.parent.mkdir(parents=True, exist_ok=True)
            text_file.write_text(text)
            lines.append(f"lrs3,lrs3_video_seg24s/{rel}.mp4,{frames},{' '.join(map(str, ids))}")
        (root / "labels" / f"lrs3_{split}_transcript_lengths_seg24s.csv").write_text("\n".join(lines) + "\n")
    (root / "units.txt").write_text("".join(f"{u} {i}\n" for i, u in enumerate(UNITS, 1)))
    return root


def test_label_lists(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("lrs3,a/b.mp4,10,5 6 7\nlrs3,a/c.mp4,4,\n")
    rows = read_label_list(path)
    assert [r.token_ids for r in rows] == [(5, 6, 7), ()] and rows[0].frames == 10
    path.write_text("lrs3,a/b.mp4,10,HELLO, THERE\n")
    assert read_label_list(path)[0].text == "HELLO, THERE" and read_label_list(path)[0].token_ids is None
    with pytest.raises(ValueError, match="the label must be token ids"):
        read_label_list(path, labels="token_ids")
    path.write_text("lrs3,a/b.mp4,ten,5\n")
    with pytest.raises(ValueError, match=r"list.csv:1: a label line must be 'dataset,rel_path,frames,label'"):
        read_label_list(path)
    with pytest.raises(FileNotFoundError, match="label list .* does not exist"):
        read_label_list(tmp_path / "missing.csv")


def test_preprocessed_layout_with_token_ids(preprocessed):
    dm = LRS3DataModule(str(preprocessed), layout="preprocessed", tokenizer=str(preprocessed / "units.txt"),
                        batch_size=2, time_mask=True)
    dm.setup()
    assert dm.vocab_size == len(UNITS) + 1
    train = dm.train_dataset
    assert train.texts == ["hello there", "good morning"] and train.lengths.tolist() == [8, 12]
    assert train.targets(1).tolist() == [4, 5, 6]  # the label list's ids, as they are
    assert dm.tokenizer.decode(train.targets(1).tolist()) == "good morning"
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (2, 12, 88, 88) and sorted(batch["video_lengths"].tolist()) == [8, 12]
    assert sorted(batch["audio_lengths"].tolist()) == [8 * 640, 12 * 640]  # the wav trimmed to 640 per frame
    assert sorted(batch["target_lengths"].tolist()) == [2, 3]
    test = next(iter(dm.test_dataloader()))
    assert test["text"] == ["hello"] and test["targets"].tolist() == [[2]] and test["video"].shape == (1, 6, 88, 88)
    centre = test["video"][0, 0, 40:48, 40:48]  # the white square of the 96 x 96 crop, kept by the centre crop
    assert float(centre.mean()) > 2.5


def test_preprocessed_layout_needs_the_matching_units(preprocessed, tmp_path):
    with pytest.raises(ValueError, match="`tokenizer` must be the units .txt file the token ids"):
        LRS3DataModule(str(preprocessed), layout="preprocessed").setup()
    small = tmp_path / "small_units.txt"
    small.write_text("<unk> 1\n\u2581A 2\n")
    with pytest.raises(ValueError, match="token id 6 is outside the 3 ids"):
        LRS3DataModule(str(preprocessed), layout="preprocessed", tokenizer=str(small)).setup()
    with pytest.raises(FileNotFoundError, match="label list 'nope.csv' not found"):
        LRS3DataModule(str(preprocessed), layout="preprocessed", train_list="nope.csv",
                       tokenizer=str(preprocessed / "units.txt")).setup()


def test_preprocessed_layout_with_text_labels(preprocessed):
    lines = (preprocessed / "labels" / "lrs3_train_transcript_lengths_seg24s.csv").read_text().splitlines()
    texts = ["HELLO THERE", "GOOD MORNING"]
    (preprocessed / "labels" / "text.csv").write_text(
        "\n".join(",".join(line.split(",")[:3] + [t]) for line, t in zip(lines, texts)) + "\n")
    dm = LRS3DataModule(str(preprocessed), layout="preprocessed", train_list="text.csv", test_list=None,
                        modality="audio", batch_size=2)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert "video" not in batch and sorted(batch["text"]) == ["good morning", "hello there"]
    assert sorted(batch["audio_lengths"].tolist()) == [8 * 640 + 100, 12 * 640 + 100]  # audio only: whole wav
    assert dm.tokenizer.decode(batch["targets"][0, : batch["target_lengths"][0]].tolist()) == batch["text"][0]
    assert dm.test_dataloader() == []


def test_subset_keeps_items_in_step(raw_lrs3):
    ds = LRS3Dataset(sorted(raw_lrs3.glob("*/*/*.mp4")), modality="audio")
    part = ds.subset([2, 0])
    assert [p.name for p in part.videos] == [ds.videos[2].name, ds.videos[0].name]
    assert part.texts == [ds.texts[2], ds.texts[0]] and torch.equal(part.targets(0), ds.targets(2))
    assert part[1]["text"] == ds.texts[0] and part[1]["index"] == 1
