"""Speech data: audio reading and resampling, the four layouts, FSDD's splits, the batch dict,
the feature cache, argument checks. Real recordings from the shared data folder (skipped when it
is absent); LibriSpeech-layout and manifest files are written here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lightning_sparse.core.text import CharTokenizer
from lightning_sparse.data.speech import (
    FSDD_TEST_TAKES,
    FeatureCache,
    LibriSpeechDataModule,
    LibriSpeechDataset,
    LJSpeechDataModule,
    LJSpeechDataset,
    ManifestDataModule,
    ManifestDataset,
    SpeechDataset,
    SpokenDigitsDataModule,
    SpokenDigitsDataset,
    Utterance,
    collate_speech,
    parse_fsdd_name,
    read_audio,
)
from lightning_sparse.models.layers.audio import LogMelFilterbank

DATA_DIR = Path(os.environ.get("LIGHTNING_SPARSE_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))
FSDD = DATA_DIR / "fsdd"
LJ = DATA_DIR / "ljspeech-141"
needs_fsdd = pytest.mark.skipif(not (FSDD / "recordings").is_dir(), reason="shared FSDD recordings absent")
needs_lj = pytest.mark.skipif(not (LJ / "metadata.csv").is_file(), reason="shared LJ Speech files absent")


def tone(n: int, rate: int, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    t = np.arange(n) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, n)
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def make_librispeech(root: Path, split: str, chapters: dict[tuple[str, str], list[tuple[int, str]]],
                     rate: int = 16000) -> None:
    """``chapters``: (speaker, chapter) -> [(samples, transcript)] written as LibriSpeech files."""
    for (speaker, chapter), utts in chapters.items():
        folder = root / split / speaker / chapter
        folder.mkdir(parents=True)
        lines = []
        for k, (n, text) in enumerate(utts):
            utt = f"{speaker}-{chapter}-{k:04d}"
            sf.write(folder / f"{utt}.flac", tone(n, rate, 200 + 50 * k), rate)
            lines.append(f"{utt} {text}")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def libri(tmp_path) -> Path:
    make_librispeech(tmp_path, "train-clean-100", {
        ("19", "198"): [(16000, "HELLO WORLD"), (8000, "IT'S A TEST"), (24000, "THREE")],
        ("26", "495"): [(4000, "FOUR"), (12000, "FIVE SIX"), (20000, "SEVEN")],
    })
    make_librispeech(tmp_path, "dev-clean", {("84", "121"): [(6000, "DEV ONE"), (7000, "DEV TWO")]})
    make_librispeech(tmp_path, "test-clean", {("61", "70"): [(5000, "TEST ONE")]})
    return tmp_path


# ---------------------------------------------------------------------------------------- audio
def test_read_audio_mixes_down_and_resamples(tmp_path):
    stereo = np.stack([tone(8000, 8000), np.zeros(8000, np.float32)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 8000)
    x = read_audio(tmp_path / "s.wav")
    assert x.dtype == torch.float32 and x.shape == (8000,)
    assert torch.allclose(x, torch.from_numpy(stereo[:, 0] / 2), atol=1e-4)  # 16-bit PCM
    up = read_audio(tmp_path / "s.wav", sample_rate=16000)
    down = read_audio(tmp_path / "s.wav", sample_rate=4000)
    assert up.shape == (16000,) and down.shape == (4000,) and up.dtype == torch.float32


@needs_fsdd
def test_fsdd_recording_resampled_to_twice_its_length():
    path = FSDD / "recordings" / "7_theo_12.wav"
    frames = sf.info(str(path)).frames
    assert read_audio(path).shape == (frames,)
    assert read_audio(path, sample_rate=16000).shape == (2 * frames,)


# ---------------------------------------------------------------------------------------- layouts
def test_librispeech_layout_items_and_durations(libri):
    ds = LibriSpeechDataset(libri, ("train-clean-100",), sample_rate=8000)
    assert len(ds) == 6 and [u.speaker for u in ds.utterances] == ["19"] * 3 + ["26"] * 3
    item = ds[1]
    assert item["text"] == "it's a test" and item["index"] == 1
    assert item["targets"].dtype == torch.int64 and item["targets"].tolist() == CharTokenizer().encode("IT'S A TEST")
    assert item["audio"].shape == (4000,)  # 8000 samples at 16 kHz resampled to 8 kHz
    np.testing.assert_allclose(ds.durations, [1.0, 0.5, 1.5, 0.25, 0.75, 1.25])
    nested = libri / "LibriSpeech"  # the extracted archive's folder is found too
    nested.mkdir()
    (libri / "dev-clean").rename(nested / "dev-clean")
    assert [u.text for u in LibriSpeechDataset(libri, ("dev-clean",)).utterances] == ["DEV ONE", "DEV TWO"]
    with pytest.raises(FileNotFoundError, match="train-other-500"):
        LibriSpeechDataset(libri, ("train-other-500",))


def test_manifest_relative_paths_durations_and_bad_lines(tmp_path):
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", tone(8000, 16000), 16000)
    sf.write(tmp_path / "b.flac", tone(4000, 8000), 8000)
    lines = [{"audio_filepath": "audio/a.wav", "text": "Hello there!", "duration": 0.5},
             {"audio_filepath": str(tmp_path / "b.flac"), "text": "second"}]
    manifest = tmp_path / "sub" / "train.jsonl"
    manifest.parent.mkdir()
    (tmp_path / "sub" / "audio").symlink_to(tmp_path / "audio")
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    ds = ManifestDataset(manifest, sample_rate=16000)
    assert [ds[i]["text"] for i in range(2)] == ["hello there", "second"]
    assert ds[0]["audio"].shape == (8000,) and ds[1]["audio"].shape == (8000,)  # b.flac: 8 kHz -> 16 kHz
    assert ds.durations.tolist() == [0.5, 0.5]  # the given one and the header's
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(lines[0]) + "\n{\"text\": \"no audio\"}\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: .*audio_filepath"):
        ManifestDataset(bad)


@needs_lj
def test_ljspeech_uses_the_normalized_column():
    ds = LJSpeechDataset(LJ)
    assert len(ds) == 141 and ds.utterances[0].id == "LJ001-0001"
    raw = {line.split("|")[0]: line.split("|")[2] for line in (LJ / "metadata.csv").read_text().splitlines()}
    assert all(t == CharTokenizer().normalize(raw[u.id]) for u, t in zip(ds.utterances, ds.texts))
    assert not any(c.isdigit() for t in ds.texts for c in t)
    assert abs(ds.durations[0] - sf.info(str(LJ / "wavs" / "LJ001-0001.flac")).duration) < 1e-6


@needs_fsdd
def test_spoken_digits_transcripts_and_filters():
    ds = SpokenDigitsDataset(FSDD, speakers=["theo"], takes=[3])
    assert len(ds) == 10
    for u, text, i in zip(ds.utterances, ds.texts, range(len(ds))):
        digit, speaker, take = parse_fsdd_name(Path(u.path).name)
        assert (speaker, take) == ("theo", 3) and text == ["zero", "one", "two", "three", "four", "five", "six",
                                                           "seven", "eight", "nine"][digit]
        assert ds.labels(i)["targets"].tolist() == CharTokenizer().encode(text)


# ---------------------------------------------------------------------------------------- FSDD splits
def _parts(dataset) -> list[tuple[int, str, int]]:
    inner = getattr(dataset, "dataset", dataset)
    return [parse_fsdd_name(Path(u.path).name) for u in inner.utterances]


@needs_fsdd
def test_fsdd_takes_split_is_the_official_one_with_a_stated_validation_range():
    dm = SpokenDigitsDataModule(FSDD, split="takes", val_takes=(5, 9))
    dm.setup()
    train, val, test = (_parts(d) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset))
    assert (len(train), len(val), len(test)) == (2400, 300, 300)
    assert {t for _, _, t in test} == set(FSDD_TEST_TAKES) and {t for _, _, t in val} == set(range(5, 10))
    assert {t for _, _, t in train} == set(range(10, 50))
    assert {s for _, s, _ in train} == {s for _, s, _ in test} == {s for _, s, _ in val}  # every speaker everywhere
    none = SpokenDigitsDataModule(FSDD, val_takes=None)
    none.setup()
    assert none.val_dataset is None and len(none.train_dataset) == 2700 and none.val_dataloader() == []


@needs_fsdd
def test_fsdd_speakers_split_is_speaker_disjoint():
    dm = SpokenDigitsDataModule(FSDD, split="speakers", val_speakers=["lucas"], test_speakers=["theo", "george"])
    dm.setup()
    speakers = [{s for _, s, _ in _parts(d)} for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]
    assert speakers == [{"jackson", "nicolas", "yweweler"}, {"lucas"}, {"george", "theo"}]
    assert len(dm.test_dataset) == 1000  # every take
    default = SpokenDigitsDataModule(FSDD, split="speakers")
    default.setup()
    assert {s for _, s, _ in _parts(default.test_dataset)} == {"theo"}
    with pytest.raises(ValueError, match=r"`test_speakers` must be one of .*got 'nobody'"):
        SpokenDigitsDataModule(FSDD, split="speakers", test_speakers=["nobody"]).setup()


@needs_fsdd
def test_train_fraction_is_seeded_and_stratified_by_digit():
    a = SpokenDigitsDataModule(FSDD, train_fraction=0.05, seed=1)
    b = SpokenDigitsDataModule(FSDD, train_fraction=0.05, seed=1)
    c = SpokenDigitsDataModule(FSDD, train_fraction=0.05, seed=2)
    for dm in (a, b, c):
        dm.setup()
    ids = [[u.id for u in dm.train_dataset.utterances] for dm in (a, b, c)]
    assert len(ids[0]) == 120 and ids[0] == ids[1] != ids[2]
    assert np.bincount([d for d, _, _ in _parts(a.train_dataset)]).tolist() == [12] * 10
    assert [a.train_dataset[i]["index"] for i in (0, 119)] == [0, 119]  # positions in the subset


@needs_fsdd
def test_max_duration_drops_long_training_utterances():
    dm = SpokenDigitsDataModule(FSDD, max_duration=0.4)
    dm.setup()
    full = SpeechDataset(SpokenDigitsDataset(FSDD, takes=range(10, 50)).utterances)
    assert 0 < len(dm.train_dataset) == int((full.durations <= 0.4).sum()) < len(full)
    assert dm.train_dataset.durations.max() <= 0.4 and len(dm.test_dataset) == 300  # evaluation kept whole


@needs_lj
def test_ljspeech_split_is_seeded_and_disjoint():
    dm = LJSpeechDataModule(LJ, val_fraction=0.1, test_fraction=0.2, seed=3)
    dm.setup()
    ids = [{u.id for u in d.utterances} for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]
    assert [len(i) for i in ids] == [99, 14, 28] and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    again = LJSpeechDataModule(LJ, val_fraction=0.1, test_fraction=0.2, seed=3)
    again.setup()
    assert {u.id for u in again.test_dataset.utterances} == ids[2]


# ---------------------------------------------------------------------------------------- batches
def test_librispeech_batches_keys_shapes_padding(libri):
    dm = LibriSpeechDataModule(libri, batch_size=3, bucketing=False, return_index=True)
    dm.setup()
    assert (len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)) == (6, 2, 1)
    assert dm.vocab_size == 29
    for batch in dm.train_dataloader():
        assert set(batch) == {"audio", "audio_lengths", "targets", "target_lengths", "text", "index"}
        assert batch["audio"].dtype == torch.float32 and batch["targets"].dtype == torch.int64
        assert batch["audio"].shape == (3, int(batch["audio_lengths"].max()))
        assert batch["targets"].shape == (3, int(batch["target_lengths"].max()))
        for row in range(3):
            i, n, s = int(batch["index"][row]), int(batch["audio_lengths"][row]), int(batch["target_lengths"][row])
            item = dm.train_dataset[i]
            assert torch.equal(batch["audio"][row, :n], item["audio"]) and not batch["audio"][row, n:].any()
            assert torch.equal(batch["targets"][row, :s], item["targets"]) and not batch["targets"][row, s:].any()
            assert batch["text"][row] == item["text"]
    val = next(iter(dm.val_dataloader()))
    assert "index" not in val and val["text"] == ["dev one", "dev two"]  # evaluation: in order, no index
    assert next(iter(dm.test_dataloader()))["text"] == ["test one"]
    no_eval = LibriSpeechDataModule(libri, val_splits=(), test_splits=())
    no_eval.setup()
    assert no_eval.val_dataloader() == [] and no_eval.test_dataloader() == []


def test_manifest_datamodule(tmp_path):
    lines = []
    for k in range(5):
        sf.write(tmp_path / f"{k}.wav", tone(1600 * (k + 1), 16000), 16000)
        lines.append(json.dumps({"audio_filepath": f"{k}.wav", "text": f"word {'ab' * (k + 1)}",
                                 "duration": 0.1 * (k + 1)}))
    (tmp_path / "train.jsonl").write_text("\n".join(lines))
    (tmp_path / "val.jsonl").write_text("\n".join(lines[:2]))
    dm = ManifestDataModule(str(tmp_path / "train.jsonl"), val_manifest=str(tmp_path / "val.jsonl"), batch_size=2)
    dm.setup()
    assert len(dm.train_dataset) == 5 and len(dm.val_dataset) == 2 and dm.test_dataloader() == []
    batches = list(dm.train_dataloader())
    assert sorted(t for b in batches for t in b["text"]) == sorted(dm.train_dataset.texts)


def test_collate_features_and_empty_targets():
    items = [{"features": torch.ones(4, 3), "text": "", "targets": torch.zeros(0, dtype=torch.int64), "index": 0},
             {"features": torch.ones(2, 3), "text": "", "targets": torch.zeros(0, dtype=torch.int64), "index": 1}]
    batch = collate_speech(items)
    assert batch["features"].shape == (2, 4, 3) and batch["feature_lengths"].tolist() == [4, 2]
    assert not batch["features"][1, 2:].any() and batch["targets"].shape == (2, 0)
    assert "audio" not in batch and "index" not in batch


# ---------------------------------------------------------------------------------------- feature cache
@needs_fsdd
def test_feature_cache_equals_the_front_end_on_padded_batches(tmp_path):
    settings = {"n_mels": 40, "win_length": 200, "hop_length": 80, "n_fft": 256}
    kwargs = dict(sample_rate=8000, train_fraction=0.01, batch_size=4, bucketing=False, seed=0)
    live = SpokenDigitsDataModule(FSDD, **kwargs)
    cached = SpokenDigitsDataModule(FSDD, feature_cache=True, features=settings, cache_dir=str(tmp_path / "c"),
                                    **kwargs)
    for dm in (live, cached):
        dm.setup()
    assert cached.frontend_settings == {"sample_rate": 8000, **settings}
    frontend = LogMelFilterbank(**cached.frontend_settings)
    for a, b in zip(live.train_dataloader(), cached.train_dataloader()):
        assert set(b) == {"features", "feature_lengths", "targets", "target_lengths", "text"}
        feats, lengths = frontend(a["audio"], a["audio_lengths"])
        assert torch.equal(lengths, b["feature_lengths"]) and feats.shape == b["features"].shape
        torch.testing.assert_close(b["features"], feats, atol=1e-4, rtol=1e-4)
        assert a["text"] == b["text"] and torch.equal(a["targets"], b["targets"])
    files = sorted((tmp_path / "c").rglob("*.npy"))
    assert len(files) == len(cached.train_dataset)
    # a new process (no memory) reads the disk cache and computes nothing
    again = FeatureCache(cached.train_dataset.dataset, settings, tmp_path / "c")
    again.compute = None
    assert torch.equal(again[0]["features"], cached.train_dataset[0]["features"])
    other = FeatureCache(cached.train_dataset.dataset, {**settings, "n_mels": 20}, tmp_path / "c")
    assert other[0]["features"].shape[1] == 20 and other.key(0) != again.key(0)  # settings are in the key


def test_feature_cache_memory_only_computes_once(tmp_path):
    sf.write(tmp_path / "a.wav", tone(3000, 16000), 16000)
    cache = FeatureCache(SpeechDataset([Utterance("a", str(tmp_path / "a.wav"), "a")]))
    calls = []
    compute = cache.compute
    cache.compute = lambda i: calls.append(i) or compute(i)
    first, second = cache[0]["features"], cache[0]["features"]
    assert calls == [0] and first is second and first.shape == (1 + (3000 - 512) // 160, 80)


# ---------------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize("kwargs, name", [
    ({"sample_rate": 0}, "sample_rate"),
    ({"bucket_size": 0}, "bucket_size"),
    ({"bucketing": "yes"}, "bucketing"),
    ({"feature_cache": 1}, "feature_cache"),
    ({"features": {"mels": 40}}, "features"),
    ({"features": {"n_fft": 100}}, "features"),
    ({"cache_dir": "/tmp/x"}, "cache_dir"),
    ({"max_duration": 0}, "max_duration"),
    ({"train_fraction": 0.0}, "train_fraction"),
    ({"train_fraction": 1.5}, "train_fraction"),
    ({"tokenizer": "words"}, "tokenizer"),
    ({"batch_size": 0}, "batch_size"),
    ({"split": "random"}, "split"),
    ({"val_takes": (3, 9)}, "val_takes"),
    ({"val_takes": (9, 5)}, "val_takes"),
    ({"test_speakers": []}, "test_speakers"),
    ({"val_speakers": ["theo"]}, "val_speakers"),
])
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        SpokenDigitsDataModule("nowhere", **kwargs)


def test_bad_arguments_of_the_other_datamodules(tmp_path):
    with pytest.raises(ValueError, match="`train_splits`"):
        LibriSpeechDataModule(tmp_path, train_splits=())
    with pytest.raises(ValueError, match="`val_fraction`"):
        LJSpeechDataModule(tmp_path, val_fraction=1.0)
    with pytest.raises(ValueError, match="`val_fraction` \\+ `test_fraction`"):
        LJSpeechDataModule(tmp_path, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="`train_manifest`"):
        ManifestDataModule(None)
    with pytest.raises(FileNotFoundError, match="metadata.csv"):
        LJSpeechDataModule(tmp_path).setup()


@needs_lj
def test_a_sentencepiece_tokenizer_sets_vocab_size_and_targets(tmp_path):
    from lightning_sparse.core.text import train_sentencepiece

    texts = LJSpeechDataset(LJ).texts
    tok = train_sentencepiece(texts, tmp_path / "sp", vocab_size=60)
    dm = LJSpeechDataModule(LJ, tokenizer=str(tmp_path / "sp.model"), train_fraction=0.05, batch_size=2)
    dm.setup()
    assert dm.vocab_size == tok.vocab_size == 61
    batch = next(iter(dm.train_dataloader()))
    for row, text in enumerate(batch["text"]):
        ids = batch["targets"][row, : batch["target_lengths"][row]]
        assert 0 not in ids.tolist() and tok.decode(ids.tolist()) == text
