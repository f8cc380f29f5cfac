"""DST training + corruption-robustness evaluation end to end on real CIFAR-10 images (tiny budget)."""

import csv
from pathlib import Path

import pytest
from lightning.pytorch import Trainer, seed_everything

from lightning_sparse.callbacks import CorruptionRobustness, DynamicSparseTraining
from lightning_sparse.data import CIFAR10DataModule
from lightning_sparse.tasks import ImageClassifier

CIFAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-q75"


@pytest.mark.skipif(not (CIFAR / "test.zip").is_file(), reason="needs ../shared/data/cifar10-q75")
def test_dst_then_corrupted_evaluation_on_real_cifar10(tmp_path):
    seed_everything(0)
    dm = CIFAR10DataModule(str(CIFAR), batch_size=32, train_subset=128, test_subset=40,
                           corrupted_dir=str(tmp_path / "c10c"))
    model = ImageClassifier(backbone="fast_resnet", backbone_kwargs={"width": 0.125}, num_classes=10,
                            optimizer="sgd", lr=0.05, momentum=0.9, scheduler="none")
    dst = DynamicSparseTraining(method="rigl", sparsity=0.5, update_interval=2, stop_step=1.0, summary=False)
    robust = CorruptionRobustness(corruptions=["gaussian_noise", "fog", "jpeg_compression"], severities=[1, 5],
                                  output_dir=str(tmp_path / "out"))
    trainer = Trainer(default_root_dir=tmp_path, max_epochs=2, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[dst, robust],
                      limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    assert dst.num_updates >= 2 and dst.global_density == pytest.approx(0.5, abs=0.01)
    s = robust.summary
    assert set(s.accuracy) == {"gaussian_noise", "fog", "jpeg_compression"}
    assert all(set(per) == {1, 5} for per in s.accuracy.values())
    assert all(round(a * 40) == pytest.approx(a * 40) for per in s.accuracy.values() for a in per.values())
    # the corrupted sets were cached once in the CIFAR-10-C layout (5 severities x 40 images)
    import numpy as np

    arr = np.load(tmp_path / "c10c" / "fog.npy", mmap_mode="r")
    assert arr.shape == (200, 32, 32, 3) and (tmp_path / "c10c" / "labels.npy").is_file()
    rows = list(csv.DictReader(open(tmp_path / "out" / "robustness.csv")))
    assert len([r for r in rows if r["severity"] in ("1", "5")]) == 6
    assert (tmp_path / "out" / "robustness.png").stat().st_size > 5000
