"""TimeSeriesClassifier: fit/test with both batch formats, metrics, model selection, validation."""

import csv
import math

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_sparse.core.per_sample import read_per_sample
from lightning_sparse.tasks import TimeSeriesClassifier

TINY = {"width": 4, "depth": 1, "kernel_size": 6}


def series_data(n=32, channels=2, length=24, classes=3, lengths=False, seed=0):
    """Class c: noise plus a level of 2c on the first channel; lengths vary in [length/2, length]."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, channels, length, generator=g) * 0.5
    x[:, 0] += 2.0 * y[:, None]
    if not lengths:
        return TensorDataset(x, y)
    n_valid = torch.randint(length // 2, length + 1, (n,), generator=g)
    x = x * (torch.arange(length) < n_valid[:, None])[:, None, :]
    return TensorDataset(x, y, n_valid)


def trainer(tmp_path, **kwargs):
    defaults = dict(
        default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    return Trainer(**{**defaults, **kwargs})


@pytest.mark.parametrize("lengths", [False, True])
def test_fit_and_test_log_loss_accuracy_and_macro_f1(tmp_path, lengths):
    torch.manual_seed(0)
    task = TimeSeriesClassifier("dsn", TINY, num_classes=3, in_channels=2, lr=1e-2)
    data = series_data(lengths=lengths)
    t = trainer(tmp_path, max_epochs=2)
    t.fit(task, DataLoader(data, batch_size=8, shuffle=True), DataLoader(data, batch_size=16))
    metrics = t.callback_metrics
    for key in ("train/loss_epoch", "train/acc", "train/f1", "val/loss", "val/acc", "val/f1"):
        assert key in metrics and math.isfinite(float(metrics[key])), key
    results = t.test(task, DataLoader(data, batch_size=16), verbose=False)[0]
    assert set(results) == {"test/loss", "test/acc", "test/f1"}
    assert 0.0 <= results["test/f1"] <= 1.0


def test_learns_an_easy_problem(tmp_path):
    torch.manual_seed(0)
    task = TimeSeriesClassifier("dsn", TINY, num_classes=3, in_channels=2, lr=1e-2, scheduler="none")
    data = series_data(n=48, lengths=True)
    t = trainer(tmp_path, max_epochs=8)
    t.fit(task, DataLoader(data, batch_size=8, shuffle=True))
    assert t.test(task, DataLoader(data, batch_size=48), verbose=False)[0]["test/acc"] > 0.9


def test_lowest_training_loss_checkpoint(tmp_path):
    """The paper keeps the epoch with the lowest training loss: `train/loss_epoch` is that mean,
    and ModelCheckpoint picks it from the logged values."""
    torch.manual_seed(0)
    task = TimeSeriesClassifier("dsn", TINY, num_classes=3, in_channels=2, lr=3e-2)
    data = series_data()
    best = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="train/loss_epoch", mode="min",
                           save_on_train_epoch_end=True)
    t = trainer(tmp_path, max_epochs=3, logger=CSVLogger(tmp_path), callbacks=[best],
                enable_checkpointing=True)
    t.fit(task, DataLoader(data, batch_size=8), DataLoader(data, batch_size=16))
    with open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv") as f:
        losses = [float(r["train/loss_epoch"]) for r in csv.DictReader(f) if r["train/loss_epoch"]]
    assert len(losses) == 3
    assert float(best.best_model_score) == pytest.approx(min(losses))
    assert f"epoch={losses.index(min(losses))}" in best.best_model_path


class Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 3)
        self.seen = []

    def forward(self, x, lengths=None):
        self.seen.append(lengths)
        return self.fc(x.mean(-1))


def test_lengths_reach_the_backbone():
    task = TimeSeriesClassifier(Recorder(), num_classes=3)
    x, y, n = torch.randn(4, 2, 9), torch.tensor([0, 1, 2, 0]), torch.tensor([9, 5, 3, 1])
    task.training_step((x, y, n), 0)
    assert task.model.seen[-1] is n
    task.validation_step((x, y), 0)
    assert task.model.seen[-1] is None
    assert task.predict_step((x, y, n), 0).shape == (4,)
    assert task.predict_step(x, 0).shape == (4,)


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 3)

    def forward(self, x):
        return self.fc(x.mean(-1))


def test_backbone_without_lengths_warns_once_and_ignores_them():
    task = TimeSeriesClassifier(Plain(), num_classes=3)
    x, n = torch.randn(4, 2, 9), torch.tensor([9, 5, 3, 1])
    with pytest.warns(UserWarning, match="takes no `lengths`"):
        out = task(x, n)
    torch.testing.assert_close(out, task(x))
    with pytest.raises(ValueError, match="defines no `allowed_regions"):
        task.allowed_regions()


def test_allowed_regions_use_the_task_parameter_names():
    task = TimeSeriesClassifier("dsn", {"width": 3, "depth": 2}, num_classes=2)
    params = dict(task.named_parameters())
    regions = task.allowed_regions()
    assert list(regions) == ["model.blocks.0.conv.weight", "model.blocks.1.conv.weight"]
    assert all(regions[n].shape == params[n].shape for n in regions)


def test_defaults_follow_the_official_training(tmp_path):
    task = TimeSeriesClassifier("dsn", TINY, num_classes=3, in_channels=2)
    t = trainer(tmp_path, max_epochs=2)
    t.fit(task, DataLoader(series_data(n=16), batch_size=8))  # 4 optimizer steps
    optimizer = t.optimizers[0]
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["weight_decay"] == 0.0
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)  # cosine from 3e-4 to 1e-4
    assert optimizer.param_groups[0]["initial_lr"] == pytest.approx(3e-4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizer": "rmsprop"}, r"`optimizer` must be one of \['adam', 'adamw', 'sgd'\], got 'rmsprop'"),
        ({"scheduler": "step"}, "`scheduler` must be one of"),
        ({"num_classes": 1}, "`num_classes`"),
        ({"in_channels": 0}, "`in_channels`"),
        ({"lr": 0.0}, "`lr`"),
        ({"min_lr": 1.0}, r"`min_lr` must be in \[0, lr=0.0003\], got 1.0"),
        ({"weight_decay": -1.0}, "`weight_decay`"),
        ({"momentum": 1.0}, "`momentum`"),
        ({"label_smoothing": 1.0}, "`label_smoothing`"),
        ({"backbone_kwargs": {"num_classes": 4}}, r"`backbone_kwargs\['num_classes'\]` must match"),
        ({"backbone_kwargs": {"in_channels": 3}}, r"`backbone_kwargs\['in_channels'\]` must match"),
        ({"backbone": "no_such_model"}, "`name` must be one of"),
        ({"backbone": Plain(), "backbone_kwargs": {"width": 3}}, "`backbone_kwargs` must be empty"),
        ({"backbone": 3}, "`backbone` must be a registered model name or an nn.Module"),
    ],
)
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TimeSeriesClassifier(**{"backbone": "dsn", "backbone_kwargs": dict(TINY), **kwargs})


def test_rejects_unknown_batch_format():
    task = TimeSeriesClassifier(Plain(), num_classes=3)
    match = r"`batch` must be a tuple \(x, y\), \(x, y, lengths\) or \(x, y, index, lengths\)"
    with pytest.raises(ValueError, match=match):
        task.training_step((torch.randn(2, 2, 5),), 0)


def test_data_pruning_contract():
    task = TimeSeriesClassifier(Recorder(), num_classes=3)
    x, y, n = torch.randn(4, 2, 9), torch.tensor([0, 1, 2, 0]), torch.tensor([9, 5, 3, 1])
    index = torch.arange(4)
    out = task.training_step((x, y, index, n), 0)
    assert task.model.seen[-1] is n and out["index"] is index
    torch.testing.assert_close(out["per_sample_loss"].mean(), out["loss"].detach())
    losses, no_index = read_per_sample(task.training_step((x, y, n), 0))
    assert no_index is None and losses.shape == (4,)


def test_with_the_time_series_datamodule(tmp_path):
    """The documented batch format end to end: the UEA reader's variable-length JapaneseVowels."""
    from lightning_sparse.data.timeseries import UEADataModule

    dm = UEADataModule("JapaneseVowels", batch_size=16, return_lengths=True, return_index=True)
    task = TimeSeriesClassifier("dsn_uea", TINY, num_classes=dm.num_classes, in_channels=dm.num_channels)
    seen = []

    class Read(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(read_per_sample(outputs))

    t = trainer(tmp_path, max_steps=2, limit_test_batches=2, callbacks=[Read()])
    t.fit(task, datamodule=dm)
    losses, index = seen[-1]
    assert index is not None and losses.shape == index.shape == (16,)
    assert set(t.test(task, datamodule=dm, verbose=False)[0]) == {"test/loss", "test/acc", "test/f1"}
