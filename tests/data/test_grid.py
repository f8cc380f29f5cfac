"""GRID: grammar, .align files and audio-visual clips decoded from the real corpus files."""

from pathlib import Path

import pytest
import torch

from lightning_sparse.data.avsr import (
    GRID_GRAMMAR,
    GRIDDataModule,
    GRIDDataset,
    grid_transcript,
    read_align,
    read_audio_track,
    read_mouth_crops,
)

GRID = Path(__file__).resolve().parents[3] / "shared" / "data" / "grid-11"
needs_grid = pytest.mark.skipif(not GRID.is_dir(), reason="../shared/data/grid-11 is not present")


def test_grammar_spells_every_position():
    assert grid_transcript("lwbsza") == "lay white by s zero again"
    assert grid_transcript("PRIV9P") == "place red in v nine please"
    for bad in ("bbaf2", "xbaf2n", "bbaf0n", 7):
        with pytest.raises(ValueError, match="`sentence_id` must be 6 characters"):
            grid_transcript(bad)


def test_align_files(tmp_path):
    path = tmp_path / "a.align"
    path.write_text("0 12250 sil\n12250 19250 set\n19250 27250 sp\n27250 30500 with\n")
    assert read_align(path) == [(0.49, 0.77, "set"), (1.09, 1.22, "with")]
    assert len(read_align(path, keep_silence=True)) == 4
    path.write_text("0 12250\n")
    with pytest.raises(ValueError, match="a.align:1: an .align line must be 'start end word'"):
        read_align(path)


@needs_grid
def test_real_clips_decode_with_their_transcripts():
    ds = GRIDDataset(GRID, sample_rate=16000)
    assert len(ds) == 11
    by_name = dict(zip([p.stem for p in ds.paths], ds.texts))
    assert by_name["bbaf2n"] == "bin blue at f two now"
    assert by_name["id2_vcd_swwp2s"] == "set white with p two soon"  # from swwp2s.align
    item = ds[ds.paths.index(GRID / "GRID" / "bbaf2n.mpg")]
    assert item["video"].shape == (75, 288, 360, 3) and item["video"].dtype == torch.uint8
    assert abs(item["audio"].numel() / 16000 - 3.0) < 0.05  # 3 s clips
    assert float(item["audio"].abs().max()) > 0.05  # real speech, not silence
    assert ds.tokenizer.decode(item["targets"].tolist()) == item["text"]


@needs_grid
def test_audio_track_resamples():
    clip = GRID / "GRID" / "bbaf2n.mpg"
    a16, a8 = read_audio_track(clip, 16000), read_audio_track(clip, 8000)
    assert abs(a16.numel() - 2 * a8.numel()) <= 2


def test_missing_clips_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no GRID clips"):
        GRIDDataset(tmp_path)


# ---------------------------------------------------------------------------------------- the DataModule
GRID_WORDS = set().union(*(table.values() for table in GRID_GRAMMAR))


@needs_grid
def test_datamodule_trains_on_the_real_clips():
    dm = GRIDDataModule(str(GRID), batch_size=2, return_index=True, image_size=48, crop_size=44, seed=3)
    dm.setup()
    sizes = len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)
    assert sizes == (9, 1, 1) and dm.vocab_size == 29
    split_paths = [set(map(str, d.paths)) for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]
    assert not (split_paths[0] & split_paths[1]) and not (split_paths[0] & split_paths[2])
    batch = next(iter(dm.train_dataloader()))
    assert batch["video"].shape == (2, 75, 44, 44) and batch["video"].dtype == torch.float32
    assert batch["video_lengths"].tolist() == [75, 75] and batch["video_lengths"].dtype == torch.int64
    assert batch["audio"].shape == (2, 75 * 640) and batch["audio_lengths"].tolist() == [48000, 48000]
    assert float(batch["audio"].abs().max()) > 0.05
    assert batch["index"].dtype == torch.int64 and batch["index"].shape == (2,)
    for row, text, length in zip(batch["targets"], batch["text"], batch["target_lengths"]):
        assert len(text.split()) == 6 and set(text.split()) <= GRID_WORDS
        assert dm.tokenizer.decode(row[:length].tolist()) == text and (row[length:] == 0).all()
    assert -3 < float(batch["video"].mean()) < 3 and float(batch["video"].std()) > 0.1  # normalised frames


@needs_grid
def test_datamodule_splits_by_ids_and_reads_mouth_crops():
    dm = GRIDDataModule(str(GRID), batch_size=2, train_ids=["GRID/bbaf2n", "lbax*"], val_ids=["id2_vcd_swwp2s"],
                        test_ids=[], image_size=(25, 50), crop_size=None, modality="video")
    dm.setup()
    assert [p.stem for p in dm.train_dataset.paths] == ["bbaf2n", "lbax4n"]
    assert [p.stem for p in dm.val_dataset.paths] == ["id2_vcd_swwp2s"] and dm.test_dataset is None
    assert dm.train_dataset.mouth_folders[0] == GRID / "bbaf2n" and dm.train_dataset.mouth_folders[1] is None
    assert read_mouth_crops(GRID / "bbaf2n").shape == (75, 50, 100, 3)
    batch = next(iter(dm.val_dataloader()))
    assert "audio" not in batch and batch["video"].shape == (1, 75, 25, 50)
    assert batch["text"] == ["set white with p two soon"] and dm.test_dataloader() == []
    crops = dm.train_dataset[0]["video"]  # the mouth-crop folder, not the clip's frames
    assert crops.shape == (75, 25, 50)
    audio_only = GRIDDataModule(str(GRID), train_ids=["bbaf2n"], modality="audio")
    audio_only.setup()
    assert set(audio_only.train_dataset[0]) == {"audio", "text", "targets", "index"}


def test_datamodule_arguments_fail_early(tmp_path):
    for kwargs, message in (
        (dict(val_fraction=1.0), "`val_fraction` must be a number in"),
        (dict(val_fraction=0.6, test_fraction=0.5), "`val_fraction` \\+ `test_fraction` must be < 1"),
        (dict(crop_box=(0, 0, 10)), "`crop_box` must be \\(top, left, height, width\\)"),
        (dict(image_size=0), "`image_size` must be a positive int"),
        (dict(image_size=40, crop_size=44), "`crop_size` must fit inside `image_size`"),
        (dict(modality="lips"), "`modality` must be one of \\('audiovisual', 'audio', 'video'\\)"),
        (dict(test_ids=[3]), "`test_ids` must be None, a clip id"),
        (dict(tokenizer="words"), "`tokenizer` must be 'char'"),
        (dict(batch_size=0), "`batch_size` must be a positive integer"),
    ):
        with pytest.raises(ValueError, match=message):
            GRIDDataModule(str(tmp_path), **kwargs)
    with pytest.raises(FileNotFoundError, match="no GRID clips"):
        GRIDDataModule(str(tmp_path)).setup()
    with pytest.raises(FileNotFoundError, match="`data_dir` must be a folder of GRID clips"):
        GRIDDataModule(str(tmp_path / "missing")).setup()


@needs_grid
def test_id_lists_must_match_and_not_overlap():
    with pytest.raises(ValueError, match="`test_ids` entry 'zzzzzz' matches no clip"):
        GRIDDataModule(str(GRID), test_ids=["zzzzzz"]).setup()
    with pytest.raises(ValueError, match="`val_ids` and `test_ids` must not share clips"):
        GRIDDataModule(str(GRID), val_ids=["bbaf2n"], test_ids=["bb*"]).setup()
