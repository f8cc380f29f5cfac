"""GRID: grammar, .align files and audio-visual clips decoded from the real corpus files."""

from pathlib import Path

import pytest
import torch

from lightning_sparse.data.avsr import GRIDDataset, grid_transcript, read_align, read_audio_track

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
