"""Audio-visual spoken digits on the real FSDD recordings and MNIST images of the shared data folder:
splits, disjoint image pools, the pairing's determinism, the batch contract, modality, errors."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_sparse.data.avsr import AVDigitsDataModule, MNIST_MEAN, MNIST_STD, pair_images, read_mnist_npz
from lightning_sparse.data.speech import DIGIT_WORDS, parse_fsdd_name

DATA_DIR = Path(os.environ.get("LIGHTNING_SPARSE_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))
FSDD = DATA_DIR / "fsdd"
MNIST = DATA_DIR / "mnist-10k" / "mnist10k.npz"
needs_data = pytest.mark.skipif(not (FSDD / "recordings").is_dir() or not MNIST.is_file(),
                                reason="shared FSDD recordings or MNIST images absent")


@pytest.fixture(scope="module")
def dm() -> AVDigitsDataModule:
    module = AVDigitsDataModule(str(FSDD), str(MNIST), batch_size=4, return_index=True, seed=0)
    module.setup()
    return module


@needs_data
def test_splits_follow_the_spoken_digits_takes(dm):
    sizes = len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)
    assert sizes == (2400, 300, 300)
    takes = {name: {parse_fsdd_name(Path(u.path).name)[2] for u in ds.utterances}
             for name, ds in (("train", dm.train_dataset), ("val", dm.val_dataset), ("test", dm.test_dataset))}
    assert takes == {"train": set(range(10, 50)), "val": set(range(5, 10)), "test": set(range(5))}
    assert dm.vocab_size == 29


@needs_data
def test_images_match_the_digit_and_never_cross_splits(dm):
    images, labels = read_mnist_npz(MNIST)
    rows = {}
    for name, ds in (("train", dm.train_dataset), ("val", dm.val_dataset), ("test", dm.test_dataset)):
        digits = [DIGIT_WORDS.index(u.text) for u in ds.utterances]
        assert (labels[ds.image_rows] == digits).all()
        assert np.array_equal(ds.images, images[ds.image_rows])
        rows[name] = set(ds.image_rows.tolist())
    assert not rows["train"] & rows["val"] and not rows["train"] & rows["test"] and not rows["val"] & rows["test"]
    for digit in range(10):  # per digit: the first 80 % of its images for training, then 10 %, then 10 %
        of_digit = np.flatnonzero(labels == digit)
        train_rows, val_rows, test_rows = (sorted(r for r in rows[name] if labels[r] == digit)
                                           for name in ("train", "val", "test"))
        cut = round(0.8 * len(of_digit))
        assert set(train_rows) <= set(of_digit[:cut]) and set(val_rows) | set(test_rows) <= set(of_digit[cut:])
        assert max(val_rows) < min(test_rows)
    assert len(rows["train"]) == 2400 and len(rows["test"]) == 300  # each image once: the pools are large enough
    pixels = {name: {ds.images[k].tobytes() for k in range(len(ds))}
              for name, ds in (("train", dm.train_dataset), ("test", dm.test_dataset))}
    assert not pixels["train"] & pixels["test"]


@needs_data
def test_pairing_is_deterministic_under_the_seed(dm):
    again = AVDigitsDataModule(str(FSDD), str(MNIST), seed=0)
    again.setup()
    other = AVDigitsDataModule(str(FSDD), str(MNIST), seed=1)
    other.setup()
    assert np.array_equal(again.train_dataset.image_rows, dm.train_dataset.image_rows)
    assert np.array_equal(again.test_dataset.image_rows, dm.test_dataset.image_rows)
    assert not np.array_equal(other.train_dataset.image_rows, dm.train_dataset.image_rows)
    assert [u.path for u in other.train_dataset.utterances] == [u.path for u in dm.train_dataset.utterances]


@needs_data
def test_batches_follow_the_contract(dm):
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape[:2] == (4, int(batch["video_lengths"].max())) and batch["video"].shape[2:] == (28, 28)
    assert batch["video"].dtype == torch.float32 and batch["audio"].dtype == torch.float32
    assert (batch["audio_lengths"] == 640 * batch["video_lengths"]).all()
    assert batch["index"].dtype == torch.int64 and batch["index"].shape == (4,)
    for k in range(4):
        i = int(batch["index"][k])
        utterance = dm.train_dataset.utterances[i]
        assert batch["text"][k] == utterance.text
        assert dm.tokenizer.decode(batch["targets"][k, : batch["target_lengths"][k]].tolist()) == utterance.text
        n16 = dm.train_dataset.samples(i)
        assert batch["video_lengths"][k] == math.ceil(n16 / 640)
        frames = batch["video"][k, : batch["video_lengths"][k]]
        image = (torch.from_numpy(dm.train_dataset.images[i]).float() / 255 - MNIST_MEAN) / MNIST_STD
        assert torch.allclose(frames, image.expand_as(frames), atol=1e-5)  # a still image
        assert batch["audio"][k, n16:].abs().sum() == 0 and float(batch["audio"][k, :n16].abs().max()) > 0.01
        assert batch["video"][k, batch["video_lengths"][k] :].abs().sum() == 0  # zero-padded in time


@needs_data
def test_training_order_comes_from_an_installed_sampler(dm):
    dm.set_train_sampler([7, 3, 11])
    try:
        batches = list(dm.train_dataloader())
    finally:
        dm.set_train_sampler(None)
    assert sorted(i for b in batches for i in b["index"].tolist()) == [3, 7, 11]


@needs_data
def test_modality_jitter_and_sizes():
    audio = AVDigitsDataModule(str(FSDD), str(MNIST), modality="audio", val_takes=None, batch_size=2)
    audio.setup()
    assert audio.val_dataset is None and audio.val_dataloader() == []
    batch = next(iter(audio.test_dataloader()))
    assert "video" not in batch and "audio" in batch
    video = AVDigitsDataModule(str(FSDD), str(MNIST), modality="video", jitter=2, image_size=32, crop_size=28,
                               batch_size=2)
    video.setup()
    batch = next(iter(video.test_dataloader()))
    assert "audio" not in batch and batch["video"].shape[2:] == (28, 28)
    first = video.test_dataset[0]["video"]
    assert torch.equal(first, video.test_dataset[0]["video"])  # jitter is seeded: the same every time
    assert not torch.equal(first[0], first[1]) or not torch.equal(first[1], first[2])  # frames shift
    speakers = AVDigitsDataModule(str(FSDD), str(MNIST), split="speakers", test_speakers=("theo",),
                                  val_speakers=("nicolas",))
    speakers.setup()
    assert {u.speaker for u in speakers.test_dataset.utterances} == {"theo"}


def test_arguments_fail_early(tmp_path):
    for kwargs, message in (
        (dict(split="digits"), "`split` must be one of \\('takes', 'speakers'\\)"),
        (dict(val_takes=(2, 4)), "`val_takes` must be None or \\(first, last\\)"),
        (dict(image_fractions=(0.8, 0.3, 0.1)), "`image_fractions` must be three shares"),
        (dict(image_fractions=(0.0, 0.5, 0.5)), "`image_fractions` must be three shares"),
        (dict(jitter=-1), "`jitter` must be an integer >= 0"),
        (dict(modality="lips"), "`modality` must be one of"),
        (dict(std=-1.0), "`std` must be a number > 0"),
        (dict(mnist_path=""), "`mnist_path` must be the path of an .npz file"),
    ):
        args = {"data_dir": str(tmp_path), "mnist_path": str(tmp_path / "m.npz"), **kwargs}
        with pytest.raises(ValueError, match=message):
            AVDigitsDataModule(**args)
    with pytest.raises(FileNotFoundError, match="`mnist_path` must be an .npz file"):
        AVDigitsDataModule(str(FSDD), str(tmp_path / "m.npz")).setup()
    np.savez(tmp_path / "m.npz", images=np.zeros((10, 28, 28), np.uint8), labels=np.zeros(10))
    with pytest.raises(FileNotFoundError, match="No Free Spoken Digit Dataset recordings"):
        AVDigitsDataModule(str(tmp_path), str(tmp_path / "m.npz")).setup()
    np.savez(tmp_path / "bad.npz", pictures=np.zeros((10, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="must hold arrays 'images' and 'labels'"):
        read_mnist_npz(tmp_path / "bad.npz")


def test_pairing_needs_every_digit_in_the_pool():
    with pytest.raises(ValueError, match="leave the test split no image of digit 1"):
        pair_images([0, 1], np.array([0, 0, 1]), np.array([0, 1]), seed=0, split="test")


@needs_data
def test_training_loader_resumes_mid_epoch():
    def module() -> AVDigitsDataModule:
        out = AVDigitsDataModule(str(FSDD), str(MNIST), modality="audio", batch_size=4, return_index=True)
        out.setup()
        out.set_train_sampler(list(range(0, 480, 24)))  # 20 items: 5 batches
        return out

    loader = module().train_dataloader()
    it = iter(loader)
    seen = [next(it)["index"].tolist() for _ in range(2)]
    state = loader.state_dict()
    rest = [b["index"].tolist() for b in it]
    resumed = module().train_dataloader()
    resumed.load_state_dict(state)
    assert [b["index"].tolist() for b in resumed] == rest and len(seen) + len(rest) == 5
