"""ImageClassifier: trains with SGD and AdamW, schedules the learning rate, validates arguments."""

import math

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_sparse.core.per_sample import read_per_sample
from lightning_sparse.tasks import ImageClassifier

_MLP = {"in_features": 16, "hidden_sizes": [32]}


class _Blobs(Dataset):
    """Four linearly separable classes of 4x4 'images', optionally yielding the index."""

    def __init__(self, n: int = 64, return_index: bool = False) -> None:
        g = torch.Generator().manual_seed(0)
        self.y = torch.arange(n) % 4
        centers = torch.randn(4, 1, 4, 4, generator=g) * 3
        self.x = centers[self.y] + 0.3 * torch.randn(n, 1, 4, 4, generator=g)
        self.return_index = return_index

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return (self.x[i], self.y[i], i) if self.return_index else (self.x[i], self.y[i])


def _trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = dict(
        default_root_dir=tmp_path,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=4,
    )
    return L.Trainer(**{**defaults, **kwargs})


@pytest.mark.parametrize(
    "optimizer, lr, warmup", [("sgd", 0.05, 0), ("sgd", 0.05, 3), ("adamw", 0.01, 0)]
)
def test_fit_learns_and_follows_the_schedule(tmp_path, optimizer, lr, warmup):
    L.seed_everything(0)
    task = ImageClassifier(
        "mlp", _MLP, num_classes=4, optimizer=optimizer, lr=lr, warmup_steps=warmup
    )
    lrs = []

    class _RecordLR(L.Callback):
        def on_train_batch_start(self, trainer, *args):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    loader = DataLoader(_Blobs(), batch_size=16, shuffle=True)
    trainer = _trainer(tmp_path, callbacks=[_RecordLR()])
    trainer.fit(task, loader, DataLoader(_Blobs(), batch_size=32))
    assert trainer.global_step == 16 and len(lrs) == 16
    metrics = trainer.callback_metrics
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= set(metrics)
    assert metrics["val/acc"] == 1.0 and metrics["val/loss"] < 0.5
    expected_type = torch.optim.SGD if optimizer == "sgd" else torch.optim.AdamW
    assert isinstance(trainer.optimizers[0], expected_type)
    if warmup:
        assert lrs[:warmup] == pytest.approx([lr * (s + 1) / warmup for s in range(warmup)])
    else:
        assert lrs[0] == pytest.approx(lr)
    expected_last = lr * 0.5 * (1 + math.cos(math.pi * (15 - warmup) / (16 - warmup)))
    assert lrs[-1] == pytest.approx(expected_last)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    result = trainer.test(task, DataLoader(_Blobs(), batch_size=32), verbose=False)[0]
    assert result["test/acc"] == 1.0 and "test/loss" in result


def test_constant_lr_and_indexed_batches(tmp_path):
    task = ImageClassifier("mlp", _MLP, num_classes=4, scheduler="none", lr=0.05, momentum=0.0)
    loader = DataLoader(_Blobs(return_index=True), batch_size=16)
    seen = []

    class _Read(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(read_per_sample(outputs))

    trainer = _trainer(tmp_path, max_steps=3, callbacks=[_Read()])
    trainer.fit(task, loader)
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.05
    assert trainer.lr_scheduler_configs == []
    losses, index = seen[-1]
    assert torch.equal(index, torch.arange(32, 48))
    assert losses.shape == (16,) and not losses.requires_grad and (losses >= 0).all()


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_per_sample_loss_matches_the_mean():
    task = ImageClassifier("mlp", _MLP, num_classes=4, label_smoothing=0.1)
    data = _Blobs(8)
    out = task.training_step((data.x, data.y), 0)
    loss = out["loss"]
    assert "index" not in out and read_per_sample(out)[1] is None
    assert loss.item() == pytest.approx(out["per_sample_loss"].mean().item())
    expected = torch.nn.functional.cross_entropy(task(data.x), data.y, label_smoothing=0.1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert all(name.startswith("model.") for name, _ in task.named_parameters())


def test_cosine_needs_a_finite_run(tmp_path):
    task = ImageClassifier("mlp", _MLP, num_classes=4)
    trainer = _trainer(tmp_path, max_epochs=-1, max_steps=-1)
    with pytest.raises(ValueError, match="`scheduler='cosine'` needs a finite training length"):
        trainer.fit(task, DataLoader(_Blobs(), batch_size=16))


def test_bad_batch_structure():
    task = ImageClassifier("mlp", _MLP, num_classes=4)
    with pytest.raises(ValueError, match="`batch` must be a tuple"):
        task.training_step(torch.zeros(2, 16), 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"backbone": "no_such_net"}, "`name` must be one of"),
        ({"num_classes": 1}, "`num_classes`"),
        ({"optimizer": "adam"}, "`optimizer` must be one of \\['sgd', 'adamw'\\], got 'adam'"),
        ({"scheduler": "step"}, "`scheduler` must be one of \\['cosine', 'none'\\], got 'step'"),
        ({"lr": 0.0}, "`lr`"),
        ({"momentum": 1.0}, "`momentum`"),
        ({"weight_decay": -1e-4}, "`weight_decay`"),
        ({"nesterov": True, "optimizer": "adamw"}, "`nesterov=True`"),
        ({"nesterov": True, "momentum": 0.0}, "`nesterov=True`"),
        ({"warmup_steps": -1}, "`warmup_steps`"),
        ({"warmup_steps": 5, "scheduler": "none"}, "`warmup_steps` needs"),
        ({"label_smoothing": 1.0}, "`label_smoothing`"),
        ({"backbone_kwargs": {**_MLP, "num_classes": 3}}, "`backbone_kwargs\\['num_classes'\\]`"),
    ],
)
def test_invalid_arguments(kwargs, match):
    args = {"backbone": "mlp", "backbone_kwargs": _MLP, "num_classes": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        ImageClassifier(**args)


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_mixup_and_cutmix_train_against_soft_targets(mixup, cutmix):
    """The step's per-sample losses are the cross-entropy against torchvision's mixed soft targets."""
    from torchvision.transforms import v2

    task = ImageClassifier("mlp", {"in_features": 3 * 8 * 8, "hidden_sizes": [16]}, num_classes=5,
                           mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=0.1)
    x, y, index = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 4, 0]), torch.arange(6)
    torch.manual_seed(3)
    out = task.training_step((x, y, index), 0)
    torch.manual_seed(3)
    mix = [v2.MixUp(alpha=mixup, num_classes=5)] if mixup else []
    mix += [v2.CutMix(alpha=cutmix, num_classes=5)] if cutmix else []
    xm, soft = (mix[0] if len(mix) == 1 else v2.RandomChoice(mix))(x, y)
    assert not torch.equal(xm, x) and soft.shape == (6, 5) and torch.allclose(soft.sum(-1), torch.ones(6))
    expected = nn.functional.cross_entropy(task(xm), soft, reduction="none", label_smoothing=0.1)
    torch.testing.assert_close(out["per_sample_loss"], expected)
    assert out["index"].tolist() == list(range(6)) and torch.isclose(out["loss"], expected.mean())


def test_mixup_is_off_by_default_and_validated():
    task = ImageClassifier("mlp", {"in_features": 12, "hidden_sizes": [4]}, num_classes=3)
    assert task._mix is None
    with pytest.raises(ValueError, match="`mixup_alpha`"):
        ImageClassifier("mlp", {"in_features": 12}, num_classes=3, mixup_alpha=-1.0)
