import csv

import pytest
import torch
from _robust_helpers import NoisyDataModule
from helpers import TinyNet
from lightning.pytorch import Trainer, seed_everything

from lightning_sparse.callbacks import CorruptionRobustness, DynamicSparseTraining
from lightning_sparse.metrics import read_robustness_csv, summarize_robustness


def accuracy(model, ds):
    x, y = ds.tensors
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())


def fit_and_test(tmp_path, cb, dst=None):
    seed_everything(0)
    model, dm = TinyNet(), NoisyDataModule()
    callbacks = [cb] + ([dst] if dst else [])
    t = Trainer(default_root_dir=tmp_path, max_epochs=8, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    t.fit(model, datamodule=dm)
    t.test(model, datamodule=dm, verbose=False)
    return model, dm, t


def test_end_to_end_numbers_csv_plot_and_logged_metrics(tmp_path):
    cb = CorruptionRobustness(severities=[1, 3, 5], reference_errors={"noise": 0.9, "zero": [0.5, 0.6, 0.7]},
                              reference_clean_error=0.3, output_dir=str(tmp_path / "out"))
    dst = DynamicSparseTraining(method="rigl", sparsity=0.5, update_interval=4, summary=False)
    model, dm, t = fit_and_test(tmp_path, cb, dst)
    model.eval()
    acc = {}
    for name, s, ds in dm.corruption_datasets(severities=[1, 3, 5]):
        acc.setdefault(name, {})[s] = accuracy(model, ds)
    clean = accuracy(model, dm.data)
    s = cb.summary
    assert s.clean_accuracy == pytest.approx(clean)
    assert {(c, v): a for c, per in s.accuracy.items() for v, a in per.items()} == pytest.approx(
        {(c, v): a for c, per in acc.items() for v, a in per.items()})
    ref = summarize_robustness(clean, acc, {"noise": 0.9, "zero": [0.5, 0.6, 0.7]}, 0.3)
    assert s.robust_accuracy == pytest.approx(ref.robust_accuracy)
    assert s.mce == pytest.approx(ref.mce) and s.relative_mce == pytest.approx(ref.relative_mce)
    # noise hurts more with severity
    assert acc["noise"][5] < acc["noise"][1] <= clean + 1e-9
    for key in ["robustness/clean_acc", "robustness/robust_acc", "robustness/acc/noise", "robustness/mCE",
                "robustness/relative_mCE"]:
        assert key in t.callback_metrics, key
    rows = list(csv.DictReader(open(tmp_path / "out" / "robustness.csv")))
    assert rows[0]["corruption"] == "clean" and float(rows[0]["accuracy"]) == pytest.approx(clean)
    assert {(r["corruption"], r["severity"]) for r in rows} >= {("noise", "1"), ("zero", "5"), ("mean_corruption", "mean")}
    back = read_robustness_csv(str(tmp_path / "out" / "robustness.csv"))
    assert back.clean_accuracy == pytest.approx(s.clean_accuracy)
    assert back.robust_accuracy == pytest.approx(s.robust_accuracy)
    png = (tmp_path / "out" / "robustness.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_subset_of_corruptions_and_max_samples(tmp_path):
    cb = CorruptionRobustness(corruptions=["zero"], severities=[2], plot=False, max_samples=10,
                              output_dir=str(tmp_path))
    fit_and_test(tmp_path, cb)
    assert list(cb.summary.accuracy) == ["zero"] and list(cb.summary.accuracy["zero"]) == [2]
    assert cb.summary.mce is None
    assert all(v * 10 == pytest.approx(round(v * 10)) for v in [cb.summary.clean_accuracy])  # 10 samples


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"severities": [0, 1]}, r"`severities` must be a non-empty list of values in 1..5, got \[0, 1\]"),
        ({"corruptions": "fog"}, r"`corruptions` must be a non-empty list"),
        ({"batch_size": 0}, r"`batch_size` must be a positive integer"),
        ({"reference_clean_error": 1.5}, r"`reference_clean_error` must be an error rate"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CorruptionRobustness(**kwargs)


def test_datamodule_checks_happen_before_evaluation(tmp_path):
    seed_everything(0)
    model = TinyNet()
    t = Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                callbacks=[CorruptionRobustness(corruptions=["fog"])])
    with pytest.raises(ValueError, match=r"names \['fog'\] that NoisyDataModule does not offer"):
        t.test(model, datamodule=NoisyDataModule())
    t2 = Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, callbacks=[CorruptionRobustness()])
    with pytest.raises(ValueError, match="needs a DataModule with a `corruption_datasets"):
        t2.test(model, dataloaders=NoisyDataModule().test_dataloader())
