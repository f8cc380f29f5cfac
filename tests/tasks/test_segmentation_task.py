"""The segmentation task: MONAI's Dice + CE per sample, deep supervision, sliding windows, metrics."""

import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from monai.losses import DiceCELoss
from torch.utils.data import DataLoader

from lightning_sparse.tasks.segmentation import Segmenter, deep_supervision_weights

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import Blobs  # noqa: E402


def test_per_sample_loss_is_monai_dice_ce():
    torch.manual_seed(0)
    task = Segmenter("e2enet_tiny", num_classes=3, loss_include_background=True)
    logits, label = torch.randn(3, 3, 6, 8, 8), torch.randint(0, 3, (3, 1, 6, 8, 8))
    per_sample = task.per_sample_losses(logits, label)
    assert per_sample.shape == (3,)
    assert torch.allclose(per_sample.mean(), DiceCELoss(to_onehot_y=True, softmax=True)(logits, label), atol=1e-6)


def test_deep_supervision_weights_and_resized_labels():
    assert deep_supervision_weights(3) == pytest.approx([2 / 3, 1 / 3, 0.0])
    task = Segmenter("e2enet_tiny", num_classes=3)
    assert task.model.deep_supervision_weights == pytest.approx([w for w in task.model.deep_supervision_weights])
    label = torch.randint(0, 3, (2, 1, 8, 8, 8))
    full, half = torch.randn(2, 3, 8, 8, 8), torch.randn(2, 3, 4, 4, 4)
    task.hparams.deep_supervision_weights = [1.0, 0.0]
    assert torch.allclose(task.per_sample_losses([full, half], label), task.per_sample_losses(full, label))
    task.hparams.deep_supervision_weights = [0.0, 1.0]
    small = torch.nn.functional.interpolate(label.float(), size=(4, 4, 4), mode="nearest").long()
    assert torch.allclose(task.per_sample_losses([full, half], label), task.per_sample_losses(half, small))
    with pytest.raises(ValueError, match="entries for 2 backbone outputs"):
        task.hparams.deep_supervision_weights = [1.0, 1.0, 1.0]
        task.per_sample_losses([full, half], label)


def test_training_step_follows_the_per_sample_contract():
    task = Segmenter("e2enet_tiny", num_classes=3, roi_size=(8, 8, 8))
    batch = next(iter(DataLoader(Blobs(n=2, size=(8, 8, 8)), batch_size=2)))
    out = task.training_step(batch, 0)
    assert set(out) == {"loss", "per_sample_loss", "index"} and out["index"].tolist() == [0, 1]
    task.set_index_weights(torch.tensor([0.0, 1.0]))
    weighted = task.training_step(batch, 0)
    assert torch.allclose(weighted["loss"], weighted["per_sample_loss"][1] / 2, atol=1e-6)  # the weighted batch mean


@pytest.mark.parametrize("hd95", [False, True])
def test_fit_validate_with_sliding_windows_and_per_class_metrics(tmp_path, hd95):
    seed_everything(0)
    task = Segmenter("e2enet_tiny", num_classes=3, class_names=["bright", "dark"], roi_size=(8, 8, 8),
                     hd95=hd95, optimizer="adamw", lr=1e-2, momentum=0.9, nesterov=False, weight_decay=0.0)
    train = DataLoader(Blobs(n=4, size=(8, 8, 8)), batch_size=2)
    val = DataLoader(Blobs(n=2, size=(12, 16, 16), seed=1), batch_size=1)  # larger than the window
    trainer = Trainer(default_root_dir=tmp_path, max_steps=6, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                      num_sanity_val_steps=0, check_val_every_n_epoch=1)
    trainer.fit(task, train_dataloaders=train, val_dataloaders=val)
    metrics = trainer.callback_metrics
    for key in ("val/loss", "val/dice", "val/dice/bright", "val/dice/dark"):
        assert key in metrics, key
    assert 0.0 <= float(metrics["val/dice"]) <= 1.0
    assert ("val/hd95/bright" in metrics) == hd95
    (result,) = trainer.test(task, dataloaders=val, verbose=False)
    assert "test/dice/dark" in result
    pred = task.eval().predict_step(next(iter(val)), 0)
    assert pred.shape == (1, 1, 12, 16, 16) and pred.dtype == torch.int64


def test_poly_schedule_and_bad_arguments():
    task = Segmenter("e2enet_tiny", num_classes=2)
    opt = torch.optim.SGD(task.parameters(), lr=1.0)
    sched = task.build_scheduler(opt, total_steps=10)
    factors = []
    for _ in range(10):
        factors.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert factors[0] == 1.0 and factors[5] == pytest.approx(0.5 ** 0.9)
    for kwargs, match in [({"class_names": ["a", "b"]}, "name the 1 foreground"),
                          ({"roi_size": (8, 0, 8)}, "`roi_size`"),
                          ({"overlap": 1.0}, "`overlap`"),
                          ({"optimizer": "adamw"}, "`nesterov=True` needs"),
                          ({"scheduler": "step"}, "`scheduler`"),
                          ({"deep_supervision_weights": [-1.0]}, "`deep_supervision_weights`"),
                          ({"backbone": "mlp"}, "")]:
        with pytest.raises(ValueError, match=match):
            Segmenter(num_classes=2, **{"backbone": "e2enet_tiny", **kwargs})


def test_end_to_end_tiny_fit_on_the_real_ct_volume(tmp_path):
    """E2ENet-tiny on the real TotalSegmentator CT (liver, spleen, kidneys): 3 steps, then a sliding-
    window validation of the held-out slab with per-organ Dice."""
    from lightning_sparse.data import SingleSubjectDataModule

    root = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "totalseg-examples"
    if not (root / "example_ct_sm.nii.gz").exists():
        pytest.skip("the shared TotalSegmentator example is not here")
    seed_everything(0)
    dm = SingleSubjectDataModule(source="totalseg_ct", data_dir=str(root), depth_first=True, patch_size=(8, 32, 32),
                                 batch_size=2, return_index=True)
    task = Segmenter("e2enet_tiny", num_classes=dm.num_classes, class_names=list(dm.class_names[1:]),
                     roi_size=(8, 32, 32))
    trainer = Trainer(default_root_dir=tmp_path, max_steps=3, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                      num_sanity_val_steps=0, limit_train_batches=3)
    trainer.fit(task, datamodule=dm)
    metrics = trainer.callback_metrics
    assert {"val/dice/liver", "val/dice/spleen", "train/loss"} <= set(metrics)
    assert torch.isfinite(metrics["train/loss"])
