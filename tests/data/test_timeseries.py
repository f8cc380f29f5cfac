"""UCR/UEA readers and TimeSeriesDataModule: hand-written files, aeon's bundled problems, batches."""

from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_sparse.data import TimeSeriesDataModule, UCRDataModule, UEADataModule
from lightning_sparse.data.timeseries import (
    BUNDLED_DATASETS,
    dsn_batch_size,
    read_arff,
    read_series_file,
    read_ts,
    read_tsv,
    znormalize,
)
from lightning_sparse.data.timeseries.datamodule import _aeon_data_dir

AEON_DATA = _aeon_data_dir()
NAN = float("nan")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _assert_series(actual: np.ndarray, expected: list) -> None:
    np.testing.assert_array_equal(actual, np.asarray(expected, dtype=np.float32))  # NaN == NaN here


# ----------------------------------------------------------------------------- .ts
TS_MULTI = """# a comment
@problemName Toy
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength false
@classLabel true walk run sit

@data
1.5,?,3:4,5,6:run
7,8:9,10:sit

11,12,13,14:15,16,17:walk
"""


def test_read_ts_multivariate_missing_unequal_string_labels(tmp_path):
    data = read_ts(_write(tmp_path / "Toy_TRAIN.ts", TS_MULTI))
    assert data.series.dtype == np.float32 and data.series.shape == (3, 2, 4)
    assert data.class_names == ("walk", "run", "sit")  # header order, not sorted
    assert data.labels.tolist() == [1, 2, 0] and data.labels.dtype == np.int64
    assert data.lengths.tolist() == [3, 2, 4]  # a channel shorter than its case's longest is NaN-padded
    _assert_series(data.series[0], [[1.5, NAN, 3, NAN], [4, 5, 6, NAN]])
    _assert_series(data.series[1], [[7, 8, NAN, NAN], [9, 10, NAN, NAN]])
    _assert_series(data.series[2], [[11, 12, 13, 14], [15, 16, 17, NAN]])


def test_read_ts_timestamps_keep_the_values(tmp_path):
    text = ("@problemName T\n@timeStamps true\n@classLabel true 1 2\n@data\n"
            "(2007-01-01 00:00:00,1.5),(2007-01-01 00:01:00,?):(0,3),(1,4):2\n")
    data = read_ts(_write(tmp_path / "T_TRAIN.ts", text))
    _assert_series(data.series, [[[1.5, NAN], [3, 4]]])
    assert data.labels.tolist() == [1]


def test_read_ts_is_case_insensitive_and_reads_percent_comments(tmp_path):
    text = "% comment\n@PROBLEMNAME x\n@equallength TRUE\n@CLASSLABEL TRUE A B\n@DATA\n1,2:B\n"
    data = read_ts(_write(tmp_path / "X_TRAIN.ts", text))
    assert data.class_names == ("A", "B") and data.labels.tolist() == [1]


@pytest.mark.parametrize(
    "text, match",
    [
        ("@classLabel true a b\n@data\n1,x,3:a\n", r"line 3: cannot read 'x' as a number"),
        ("@classLabel true a b\n@data\n1,2:a\n1,2:c\n", r"line 4: class label 'c' is not one of .*\['a', 'b'\]"),
        ("@classLabel true a b\n1,2:a\n", r"line 2: expected a header tag or `@data`"),
        ("@classLabel true a b\n", r"no `@data` line"),
        ("@problemName x\n@data\n1,2:a\n", r"no `@classLabel true"),
        ("@classLabel false\n@data\n1,2\n", r"line 1: `@classLabel false`"),
        ("@targetLabel true\n@data\n1,2:0.5\n", r"line 1: `@targetLabel true` marks a regression"),
        ("@classLabel true a a\n@data\n1:a\n", r"line 1: the class labels repeat a name"),
        ("@classLabel maybe a\n@data\n1:a\n", r"line 1: `@classlabel` must be followed by true or false"),
        ("@classLabel true a b\n@data\n1,2:3,4:a\n1,2:b\n", r"line 4: 1 channels, but the first series has 2"),
        ("@univariate true\n@classLabel true a\n@data\n1,2:3,4:a\n", r"line 4: `@univariate true` but"),
        ("@equalLength true\n@classLabel true a\n@data\n1,2:a\n1,2,3:a\n", r"line 5: `@equalLength true`"),
        ("@classLabel true a\n@data\na\n", r"line 3: expected values and a class label"),
        ("@classLabel true a\n@data\n\n", r"holds no series"),
    ],
)
def test_read_ts_errors_name_file_and_line(tmp_path, text, match):
    path = _write(tmp_path / "Bad_TRAIN.ts", text)
    with pytest.raises(ValueError, match=match) as err:
        read_ts(path)
    assert "Bad_TRAIN.ts" in str(err.value)


# ----------------------------------------------------------------------------- .tsv / UCR text
def test_read_tsv_nan_padding_and_numeric_class_order(tmp_path):
    text = "10\t1\t2\t3\n2\t4\tNaN\tNaN\n-1\t5\tNaN\t6\n2\t7\t8\t9\n"
    data = read_tsv(_write(tmp_path / "A_TRAIN.tsv", text))
    assert data.class_names == ("-1", "2", "10")  # numeric, not lexicographic
    assert data.labels.tolist() == [2, 1, 0, 1]
    assert data.lengths.tolist() == [3, 1, 3, 3]  # trailing NaN are padding, inner NaN missing
    _assert_series(data.series[:, 0], [[1, 2, 3], [4, NAN, NAN], [5, NAN, 6], [7, 8, 9]])


def test_read_tsv_string_labels_and_given_class_order(tmp_path):
    path = _write(tmp_path / "B_TEST.tsv", "dog\t1\t2\ncat\t3\t4\n")
    assert read_tsv(path).class_names == ("cat", "dog")
    data = read_tsv(path, class_names=["dog", "cat", "cow"])
    assert data.class_names == ("dog", "cat", "cow") and data.labels.tolist() == [0, 1]


@pytest.mark.parametrize("name, text", [
    ("C_TRAIN", "1,0.5,1.5\n2,2.5,3.5\n"),  # UCR 2015: comma-separated, no suffix
    ("C_TRAIN.txt", "  1.0000000e+00  5.0000000e-01  1.5e+00\n  2.0000000e+00  2.5  3.5\n"),  # spaces
])
def test_read_tsv_reads_the_ucr_2015_text_files(tmp_path, name, text):
    data = read_series_file(_write(tmp_path / name, text))
    assert data.class_names == ("1", "2") and data.labels.tolist() == [0, 1]
    _assert_series(data.series[:, 0], [[0.5, 1.5], [2.5, 3.5]])


@pytest.mark.parametrize("text, kwargs, match", [
    ("1\t2\t?x\n", {}, r"line 1: cannot read '\?x'"),
    ("1\t2\n3\t4\n", {"class_names": ["1"]}, r"line 2: class label '3' is not one of"),
    ("1\t2\n5\n", {}, r"line 2: expected a label and values"),
    ("\n\n", {}, r"holds no series"),
])
def test_read_tsv_errors(tmp_path, text, kwargs, match):
    with pytest.raises(ValueError, match=match):
        read_tsv(_write(tmp_path / "D_TRAIN.tsv", text), **kwargs)


# ----------------------------------------------------------------------------- .arff
ARFF_UNI = """% comment
@RELATION Toy
@ATTRIBUTE t0 NUMERIC
@attribute 't 1' numeric
@attribute t2 real
@attribute class {'b', 'a'}

@data
1,?,3,a
4,5,?,'b'
"""
ARFF_MULTI = """@relation 'M'
@attribute relationalAtt relational
@attribute att0 numeric
@attribute att1 numeric
@attribute att2 numeric
@end relationalAtt
@attribute activity {Walk,Run}
@data
'1,2,3\\n4,5,6',Run
"7,?,?\\n8,9,?",'Walk'
"""


def test_read_arff_univariate(tmp_path):
    data = read_arff(_write(tmp_path / "U_TRAIN.arff", ARFF_UNI))
    assert data.class_names == ("b", "a") and data.labels.tolist() == [1, 0]
    assert data.lengths.tolist() == [3, 2]  # trailing '?' is padding, inner '?' missing
    _assert_series(data.series, [[[1, NAN, 3]], [[4, 5, NAN]]])


def test_read_arff_relational_multivariate(tmp_path):
    data = read_arff(_write(tmp_path / "M_TRAIN.arff", ARFF_MULTI))
    assert data.class_names == ("Walk", "Run") and data.labels.tolist() == [1, 0]
    assert data.series.shape == (2, 2, 3) and data.lengths.tolist() == [3, 2]
    _assert_series(data.series[1], [[7, NAN, NAN], [8, 9, NAN]])


@pytest.mark.parametrize("text, match", [
    ("@attribute t0 numeric\n@attribute c {a}\n@data\n1,2,a\n", r"line 4: 3 values, but the header declares 2"),
    ("@attribute t0 numeric\n@attribute c numeric\n@data\n1,2\n", r"numeric ones .* followed by a nominal class"),
    ("@attribute t0 numeric\n@attribute c string\n@data\n1,a\n", r"line 2: attribute type 'string'"),
    ("@attribute t0 numeric\n@attribute c {a}\n@data\n1,b\n", r"line 4: class label 'b'"),
    ("@attribute t0 numeric\n@attribute c {a}\n1,a\n", r"no `@data` line"),
    ("@attribute r relational\n@attribute t numeric\n@end r\n@attribute c {a}\n@data\n1,2,a\n",
     r"line 6: expected 'ch1\\nch2\\n...',label"),
    ("@attribute r relational\n@attribute t numeric\n@end r\n@attribute c {a}\n@data\n'1,2\\n3',a\n",
     r"line 6: the channels have different numbers of values"),
])
def test_read_arff_errors(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        read_arff(_write(tmp_path / "E_TRAIN.arff", text))


def test_read_series_file_checks_the_header_classes(tmp_path):
    path = _write(tmp_path / "Toy_TEST.ts", TS_MULTI)
    assert read_series_file(path, ("walk", "run", "sit")).class_names == ("walk", "run", "sit")
    with pytest.raises(ValueError, match=r"declares the classes \['walk', 'run', 'sit'\], expected \['run'"):
        read_series_file(path, ("run", "walk", "sit"))


# ----------------------------------------------------------------------------- aeon's bundled problems
@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("name", BUNDLED_DATASETS)
def test_bundled_problems_match_aeon(name, split):
    from aeon.datasets import load_classification

    X, y, meta = load_classification(name, split=split, extract_path=str(AEON_DATA), return_metadata=True)
    base = name.removesuffix("_eq")
    data = read_ts(AEON_DATA / base / f"{name}_{split.upper()}.ts")
    assert [c.lower() for c in data.class_names] == meta["class_values"]  # aeon lower-cases labels
    assert data.labels.max() < len(data.class_names) == len(set(y))
    np.testing.assert_array_equal(np.asarray([c.lower() for c in data.class_names])[data.labels], y)
    cases = list(X)  # (C, L_i) each; aeon gives a 3-D array or a list for unequal lengths
    assert len(cases) == data.series.shape[0] and data.num_channels == cases[0].shape[0]
    assert data.lengths.tolist() == [c.shape[1] for c in cases]
    assert data.series_length == max(c.shape[1] for c in cases)
    for i, case in enumerate(cases):
        np.testing.assert_allclose(data.series[i, :, : case.shape[1]], case, rtol=1e-6, atol=1e-6)
        assert np.isnan(data.series[i, :, case.shape[1]:]).all()


@pytest.mark.parametrize("name, suffix", [
    ("GunPoint", ".tsv"), ("ArrowHead", ".tsv"), ("GunPoint", ".arff"), ("ArrowHead", ".arff"),
    ("BasicMotions", ".arff"),
])
def test_bundled_tsv_and_arff_match_aeon_and_the_ts_file(name, suffix):
    from aeon.datasets import load_from_arff_file, load_from_tsv_file

    path = AEON_DATA / name / f"{name}_TRAIN{suffix}"
    data = read_series_file(path)
    X, y = (load_from_tsv_file if suffix == ".tsv" else load_from_arff_file)(str(path))
    np.testing.assert_allclose(data.series, X, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(data.class_names)[data.labels], y.astype(str))
    ts = read_ts(AEON_DATA / name / f"{name}_TRAIN.ts")  # the same problem in the .ts format
    assert data.class_names == ts.class_names
    np.testing.assert_array_equal(data.labels, ts.labels)
    np.testing.assert_allclose(data.series, ts.series, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- normalisation, batch size
def test_znormalize_per_series_and_channel_over_valid_points():
    raw = read_ts(AEON_DATA / "JapaneseVowels" / "JapaneseVowels_TRAIN.ts").series  # unequal lengths
    raw = raw.copy()
    raw[0, 0, 3] = np.nan  # a missing value inside a series
    z = znormalize(raw)
    assert z.dtype == np.float32 and np.array_equal(np.isnan(z), np.isnan(raw))
    np.testing.assert_allclose(np.nanmean(z, axis=-1), 0, atol=1e-5)
    np.testing.assert_allclose(np.nanstd(z, axis=-1), 1, atol=1e-4)
    constant = znormalize(np.array([[2.0, 2.0, np.nan]]))
    np.testing.assert_array_equal(constant, [[0, 0, NAN]])


def test_dsn_batch_size_rule():
    assert [dsn_batch_size(n) for n in (1, 19, 20, 50, 67, 159, 160, 5000)] == [2, 2, 2, 5, 6, 15, 16, 16]
    assert dsn_batch_size(5000, cap=64) == 64


# ----------------------------------------------------------------------------- DataModule
def test_attributes_known_at_construction():
    dm = TimeSeriesDataModule("JapaneseVowels")
    assert (dm.num_classes, dm.num_channels, dm.in_channels) == (9, 12, 12)
    assert dm.series_length == 29  # the longest series of both files (train 26, test 29)
    assert dm.class_names == tuple(str(k) for k in range(1, 10))
    assert dm.batch_size == 16 and dm.hparams.batch_size is None  # 270 training series
    assert dm.train_dataset is None and dm.train_file.name == "JapaneseVowels_TRAIN.ts"
    assert UCRDataModule("GunPoint").batch_size == 5
    assert UEADataModule("JapaneseVowels_eq").series_length == 25  # found in JapaneseVowels/


def test_default_batches_are_x_y_zero_padded_and_normalised():
    dm = TimeSeriesDataModule("PickupGestureWiimoteZ", batch_size=7)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (7, 1, 361) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert dm.val_dataloader() == []  # the archive split: no validation set
    data = dm.train_dataset
    assert len(data) == 50 and len(dm.test_dataset) == 50
    valid = torch.arange(361) < data.lengths[:, None, None]  # (N, 1, L)
    assert torch.all(data.series[~valid] == 0)
    for i in range(len(data)):
        values = data.series[i, 0, : data.lengths[i]].double()
        assert abs(values.mean()) < 1e-5 and abs(values.std(unbiased=False) - 1) < 1e-4
    xt, yt = next(iter(dm.test_dataloader()))
    assert xt.shape == (7, 1, 361)  # test series (at most 324 long) padded to the common length
    assert torch.equal(yt, torch.from_numpy(dm.test_raw.labels[:7]))


def test_normalize_none_keeps_the_stored_values_and_zeros_nan(tmp_path):
    _write(tmp_path / "Toy" / "Toy_TRAIN.ts", TS_MULTI)
    _write(tmp_path / "Toy" / "Toy_TEST.ts", TS_MULTI)
    dm = TimeSeriesDataModule("Toy", data_dir=str(tmp_path), normalize="none", batch_size=3)
    dm.setup()
    x, y = next(iter(dm.test_dataloader()))
    assert torch.equal(x, torch.from_numpy(np.nan_to_num(dm.test_raw.series, nan=0.0)))
    assert y.tolist() == [1, 2, 0] and dm.class_names == ("walk", "run", "sit")


def test_return_index_and_lengths():
    dm = TimeSeriesDataModule("JapaneseVowels", batch_size=16, return_index=True, return_lengths=True)
    dm.setup("fit")
    x, y, index, lengths = next(iter(dm.train_dataloader()))
    assert index.dtype == lengths.dtype == torch.int64 and index.shape == lengths.shape == (16,)
    assert torch.equal(dm.train_dataset.series[index], x)
    assert torch.equal(dm.train_dataset.labels[index], y)
    assert lengths.tolist() == dm.train_raw.lengths[dm.train_dataset.source_indices[index]].tolist()
    x, y, lengths = next(iter(dm.test_dataloader()))  # evaluation batches carry no index
    assert lengths.tolist() == dm.test_raw.lengths[:16].tolist()
    dm = TimeSeriesDataModule("GunPoint", return_index=True)
    dm.setup("fit")
    assert len(next(iter(dm.train_dataloader()))) == 3 and len(next(iter(dm.test_dataloader()))) == 2


def test_val_split_is_stratified_seeded_and_disjoint():
    dm = TimeSeriesDataModule("OSULeaf", val_split=0.25, seed=1)
    dm.setup("fit")
    train, val = dm.train_dataset.source_indices, dm.val_dataset.source_indices
    assert len(val) == 50 and len(train) == 150 and dm.batch_size == 15  # the DSN rule on 150
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(200))
    share = np.bincount(dm.train_raw.labels, minlength=6) / 200
    assert np.abs(np.bincount(dm.val_dataset.labels.numpy(), minlength=6) - share * 50).max() <= 1
    again = TimeSeriesDataModule("OSULeaf", val_split=0.25, seed=1)
    other = TimeSeriesDataModule("OSULeaf", val_split=0.25, seed=2)
    assert np.array_equal(again._val_idx, val) and not np.array_equal(other._val_idx, val)
    assert len(TimeSeriesDataModule("GunPoint", val_split=10)._val_idx) == 10


def test_validate_on_test_and_pad_to():
    dm = TimeSeriesDataModule("ItalyPowerDemand", validate_on_test=True, pad_to=32)
    dm.setup("fit")
    assert dm.val_dataset is dm.test_dataset and len(dm.val_dataloader().dataset) == 1029
    x, _ = next(iter(dm.val_dataloader()))
    assert x.shape == (dm.batch_size, 1, 32) and torch.all(x[..., 24:] == 0)


def test_data_dir_layouts_and_formats(tmp_path):
    _write(tmp_path / "Toy" / "Toy_TRAIN.tsv", "2\t1\t2\t3\n1\t4\t5\t6\n")
    _write(tmp_path / "Toy" / "Toy_TEST.tsv", "1\t7\t8\tNaN\n")
    _write(tmp_path / "Toy" / "Toy_TRAIN", "1,0,0,0,0\n2,1,1,1,1\n")  # UCR 2015 text, longer
    _write(tmp_path / "Toy" / "Toy_TEST", "2,1,2,3,4\n")
    dm = TimeSeriesDataModule("Toy", data_dir=str(tmp_path))  # .tsv before UCR 2015 text
    assert dm.series_length == 3 and dm.class_names == ("1", "2") and dm.test_raw.labels.tolist() == [0]
    assert TimeSeriesDataModule("Toy", data_dir=str(tmp_path), file_format="txt").series_length == 4
    _write(tmp_path / "Toy" / "Toy_nmv_TRAIN.ts", TS_MULTI)  # a variant in its base name's folder
    _write(tmp_path / "Toy" / "Toy_nmv_TEST.ts", TS_MULTI)
    assert TimeSeriesDataModule("Toy_nmv", data_dir=str(tmp_path)).num_channels == 2


def test_fit_and_test_with_the_classifier():
    import lightning as L

    from lightning_sparse.tasks import ImageClassifier

    dm = TimeSeriesDataModule("GunPoint", batch_size=10)
    model = ImageClassifier("mlp", {"in_features": dm.num_channels * dm.series_length, "hidden_sizes": [16]},
                            num_classes=dm.num_classes, optimizer="adamw", lr=1e-2, weight_decay=0.0)
    trainer = L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, datamodule=dm)  # no validation loader
    (result,) = trainer.test(model, datamodule=dm, verbose=False)
    assert result["test/acc"] > 0.6  # GunPoint is easy: an MLP beats chance (0.5) in 3 epochs


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, match", [
    ({"dataset": ""}, r"`dataset` must be a problem name"),
    ({"dataset": "a/b"}, r"`dataset` must be a problem name"),
    ({"batch_size": 0}, r"`batch_size` must be a positive integer or None"),
    ({"normalize": "minmax"}, r"`normalize` must be one of \['zscore', 'none'\], got 'minmax'"),
    ({"val_split": -1}, r"`val_split` must be a count >= 0 or a fraction in \[0, 1\), got -1"),
    ({"val_split": 1.0}, r"`val_split`"),
    ({"val_split": True}, r"`val_split`"),
    ({"val_split": 50}, r"`val_split` must leave training series \(50 in GunPoint_TRAIN.ts\)"),
    ({"val_split": 0.1, "validate_on_test": True}, r"`validate_on_test=True` needs `val_split=0`"),
    ({"pad_to": 0}, r"`pad_to` must be a positive integer"),
    ({"pad_to": 149}, r"`pad_to` must be at least the longest series of GunPoint \(150\), got 149"),
    ({"file_format": "csv"}, r"`file_format` must be one of \['ts', 'tsv', 'arff', 'txt'\] or None, got 'csv'"),
    ({"num_workers": -1}, r"`num_workers`"),
    ({"dataset": "Adiac"}, r"`dataset` must be one of the problems bundled with aeon \['ACSF1'.*got 'Adiac'.*`data_dir`"),
])
def test_argument_errors(kwargs, match):
    kwargs = {"dataset": "GunPoint", **kwargs}
    with pytest.raises(ValueError, match=match):
        TimeSeriesDataModule(**kwargs)


def test_file_errors_surface_at_construction(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not a directory"):
        TimeSeriesDataModule("Toy", data_dir=str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match=r"holds no files of `dataset` 'Toy': looked for Toy_TRAIN.ts"):
        TimeSeriesDataModule("Toy", data_dir=str(tmp_path))
    _write(tmp_path / "Toy" / "Toy_TRAIN.ts", TS_MULTI)
    _write(tmp_path / "Toy" / "Toy_TEST.ts", TS_MULTI.replace("run,sit:", "sit:").replace("3:4,5,6:run", "3:run"))
    with pytest.raises(ValueError, match=r"Toy_TEST.ts, line 12: 2 channels, but the first series has 1"):
        TimeSeriesDataModule("Toy", data_dir=str(tmp_path))
    _write(tmp_path / "Toy" / "Toy_TEST.ts", TS_MULTI.replace("walk run sit", "run walk sit"))
    with pytest.raises(ValueError, match=r"Toy_TEST.ts: declares the classes"):
        TimeSeriesDataModule("Toy", data_dir=str(tmp_path))
    _write(tmp_path / "Toy" / "Toy_TEST.ts", "@classLabel true walk run sit\n@data\n1,2:sit\n")
    with pytest.raises(ValueError, match=r"Toy_TEST.ts: 1 channels, but the training file has 2"):
        TimeSeriesDataModule("Toy", data_dir=str(tmp_path))


def test_loaders_need_setup():
    with pytest.raises(RuntimeError, match=r"`TimeSeriesDataModule.setup\(\)` must run"):
        TimeSeriesDataModule("GunPoint").train_dataloader()
