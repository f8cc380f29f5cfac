"""SparseTask and the per-sample contract: outputs reach callbacks, weights hook, RNG states."""

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lightning_sparse.core.per_sample import (
    INDEX,
    LOSS,
    PER_SAMPLE_LOSS,
    per_sample_output,
    read_per_sample,
    weighted_mean,
)
from lightning_sparse.tasks import ImageClassifier
from lightning_sparse.tasks.base import Batch, SparseTask

_MLP = {"in_features": 16, "hidden_sizes": [8]}


class _Indexed(Dataset):
    def __init__(self, n=32):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 1, 4, 4, generator=g), torch.arange(n) % 4

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i], i


def _trainer(tmp_path, **kwargs):
    defaults = dict(default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_checkpointing=False,
                    enable_progress_bar=False, enable_model_summary=False, max_steps=2)
    return L.Trainer(**{**defaults, **kwargs})


def test_key_names_and_reader_errors():
    assert (LOSS, PER_SAMPLE_LOSS, INDEX) == ("loss", "per_sample_loss", "index")
    assert read_per_sample(None) is None and read_per_sample({"loss": torch.tensor(1.0)}) is None
    with pytest.raises(ValueError, match="`per_sample_loss` must be a 1-D tensor"):
        read_per_sample({PER_SAMPLE_LOSS: torch.ones(2, 2)})
    with pytest.raises(ValueError, match=r"`index` must have one entry per sample \(2\)"):
        read_per_sample({PER_SAMPLE_LOSS: torch.ones(2), INDEX: torch.arange(3)})
    with pytest.raises(ValueError, match="`index` must have one entry per sample"):
        per_sample_output(torch.ones(2), index=torch.arange(3))
    with pytest.raises(ValueError, match="`reduction` must be 'mean', 'sum' or a callable"):
        per_sample_output(torch.ones(2), reduction="max")
    with pytest.raises(ValueError, match="`reduction` must return a scalar"):
        per_sample_output(torch.ones(2), reduction=lambda t: t)


def test_outputs_reach_callbacks_and_weights_apply_to_their_batch_only(tmp_path):
    """A pruning-style callback sets weights in on_train_batch_start and reads the losses back."""
    seen = []

    class _Pruner(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:
                pl_module.set_sample_weights(torch.zeros(len(batch[1])))  # a zero loss for batch 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append((outputs["loss"], *read_per_sample(outputs)))

    task = ImageClassifier("mlp", _MLP, num_classes=4, scheduler="none")
    _trainer(tmp_path, callbacks=[_Pruner()]).fit(task, DataLoader(_Indexed(), batch_size=8))
    (loss0, losses0, index0), (loss1, losses1, index1) = seen
    assert loss0 == 0.0 and (losses0 > 0).all()  # weights reduce `loss`, not the per-sample losses
    assert loss1 == pytest.approx(losses1.mean().item()) and loss1 > 0  # cleared after one batch
    assert index0.tolist() == list(range(8)) and index1.tolist() == list(range(8, 16))
    assert not losses0.requires_grad


def test_weights_are_checked():
    task = ImageClassifier("mlp", _MLP, num_classes=4)
    with pytest.raises(ValueError, match="`weights` must be a 1-D tensor"):
        task.set_sample_weights(torch.ones(2, 2))
    task.set_sample_weights(torch.ones(3))
    with pytest.raises(ValueError, match=r"`weights` must have one entry per sample \(4\)"):
        task.reduce_loss(torch.ones(4))
    assert weighted_mean(torch.tensor([2.0, 4.0]), torch.tensor([1.0, 0.5])) == 2.0


class _MSETask(SparseTask):
    """A new task overrides only its loss and layout; optimizer, logging and contract are shared."""

    batch_layouts = (("x", "y"),)

    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.hparams.update(optimizer="sgd", momentum=0.0, weight_decay=0.0, scheduler="none")
        self.model = nn.Linear(3, 1)

    def forward(self, x):
        return self.model(x).squeeze(-1)

    def per_sample_losses(self, prediction, y):
        return (prediction - y) ** 2


def test_a_minimal_subclass(tmp_path):
    task = _MSETask()
    x = torch.randn(16, 3)
    loader = DataLoader(list(zip(x, x.sum(-1))), batch_size=8)
    trainer = _trainer(tmp_path, max_steps=4)
    trainer.fit(task, loader, loader)
    assert {"train/loss", "val/loss"} <= set(trainer.callback_metrics)
    assert isinstance(trainer.optimizers[0], torch.optim.SGD)
    assert task.predict_step(x, 0).shape == () and task.unpack_batch((x, x)) == Batch(x, x)
    with pytest.raises(ValueError, match=r"`batch` must be a tuple \(x, y\), got a tuple of length 3"):
        task.unpack_batch((x, x, x))


def test_rng_states_saved_and_restored_before_the_next_training_batch(tmp_path):
    """Lightning's checkpoints hold no RNG states; the task's do, and a resumed fit restores them
    right before its first training batch (dropout continues where the interrupted run was)."""
    import random

    import numpy as np

    draws = {}

    class _Draw(L.Callback):
        def on_before_backward(self, trainer, pl_module, loss):
            draws.setdefault(trainer.global_step, (torch.rand(1).item(), np.random.rand(), random.random()))

    def loader():
        return DataLoader(_Indexed(), batch_size=8, shuffle=True)

    L.seed_everything(0)
    task = ImageClassifier("mlp", _MLP, num_classes=4, scheduler="none")
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1)
    full = _trainer(tmp_path, max_steps=4, callbacks=[_Draw(), ckpt], enable_checkpointing=True)
    full.fit(task, loader())
    uninterrupted = dict(draws)
    saved = torch.load(tmp_path / "ckpt" / "epoch=0-step=2.ckpt", weights_only=True)
    assert "lightning_sparse_rng_states" in saved

    draws.clear()
    torch.manual_seed(123)  # as in a fresh process: other global states
    np.random.seed(123)
    random.seed(123)
    resumed = _trainer(tmp_path, max_steps=4, callbacks=[_Draw()])
    resumed.fit(ImageClassifier("mlp", _MLP, num_classes=4, scheduler="none"), loader(),
                ckpt_path=tmp_path / "ckpt" / "epoch=0-step=2.ckpt")
    assert draws[2] == uninterrupted[2] and draws[3] == uninterrupted[3]

    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "ckpt" / "epoch=0-step=2.ckpt")
    assert loaded._pending_rng_states is None  # loading weights alone touches no global state


def test_the_logged_training_accuracy_is_the_epoch_accuracy(tmp_path):
    """Training metrics are updated every batch (no per-batch compute) and logged as the epoch's value."""
    task = ImageClassifier("mlp", _MLP, num_classes=4, scheduler="none", lr=1e-12, momentum=0.0, weight_decay=0.0)
    data = _Indexed(40)
    expected = (task(data.x).argmax(1) == data.y).float().mean().item()  # the weights barely move (lr 1e-12)
    trainer = _trainer(tmp_path, max_steps=-1, max_epochs=1, log_every_n_steps=4)
    trainer.fit(task, DataLoader(data, batch_size=4))
    assert trainer.callback_metrics["train/acc"].item() == pytest.approx(expected, abs=1e-6)
    assert "train/loss" in trainer.callback_metrics


def test_step_values_at_the_logging_cadence_epoch_values_exact(tmp_path):
    """`train/loss` is logged every `log_every_n_steps` steps, on each epoch's first batch and on the
    last one; metric objects once per epoch; the epoch values (val/loss, train/loss_epoch) are the
    exact sample-weighted means over all batches."""
    calls = []

    class _Spy(ImageClassifier):
        train_loss_on_epoch = True

        def log(self, name, value, *args, **kwargs):
            if self.trainer.training:
                calls.append((self.trainer.current_epoch, self.trainer.global_step, name))
            return super().log(name, value, *args, **kwargs)

    task = _Spy("mlp", _MLP, num_classes=4, scheduler="none", lr=1e-12, momentum=0.0, weight_decay=0.0)
    data = _Indexed(28)  # 7 batches of 4 per epoch
    trainer = _trainer(tmp_path, max_steps=-1, max_epochs=2, log_every_n_steps=3, limit_val_batches=3)
    trainer.fit(task, DataLoader(data, batch_size=4), DataLoader(data, batch_size=6))
    steps = [(e, s) for e, s, n in calls if n == "train/loss"]
    # global steps 0..13: first batch of each epoch (0, 7), every third (2, 5, 8, 11), last batches (6, 13)
    assert steps == [(0, 0), (0, 2), (0, 5), (0, 6), (1, 7), (1, 8), (1, 11), (1, 13)]
    for name in ("train/acc", "train/loss_epoch"):
        assert [(e, s) for e, s, n in calls if n == name] == [(0, 0), (1, 7)]
    # the weights barely move (lr 1e-12): the logged epoch means are the means over the samples seen
    with torch.no_grad():
        losses = nn.functional.cross_entropy(task(data.x), data.y, reduction="none")
    assert trainer.callback_metrics["train/loss_epoch"].item() == pytest.approx(losses.mean().item(), rel=1e-5)
    assert trainer.callback_metrics["val/loss"].item() == pytest.approx(losses[:18].mean().item(), rel=1e-5)


@pytest.mark.parametrize("max_steps", [-1, 10])  # whole epochs; a stop in the middle of the second epoch
def test_buffered_training_metrics_equal_per_sample_accuracy(tmp_path, monkeypatch, max_steps):
    """The training metrics get their update in chunks (here every 3 batches of 4 samples x 4
    logits) and at the epoch's last batch; the epoch accuracy a callback reads at epoch end is the
    accuracy over every sample the epoch trained on."""
    import lightning_sparse.tasks._bookkeeping as bookkeeping

    monkeypatch.setattr(bookkeeping, "METRIC_BUFFER_ELEMENTS", 48)
    updates, seen = [], []

    class _Count(ImageClassifier):
        def flush_train_metrics(self):
            if self._metric_buffer:
                updates.append(sum(len(y) for _, y in self._metric_buffer))
            super().flush_train_metrics()

    class _Read(L.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen.append(trainer.callback_metrics["train/acc"].item())

    task = _Count("mlp", _MLP, num_classes=4, scheduler="none", lr=1e-12, momentum=0.0, weight_decay=0.0)
    data = _Indexed(28)  # 7 batches of 4 per epoch
    trainer = _trainer(tmp_path, max_steps=max_steps, max_epochs=2, limit_val_batches=0, callbacks=[_Read()])
    trainer.fit(task, DataLoader(data, batch_size=4))
    with torch.no_grad():
        correct = (task(data.x).argmax(-1) == data.y).float()  # lr 1e-12: the predictions do not move
    # per epoch: 12 + 12 samples at the buffer's limit, the last 4 at the epoch's end
    assert updates == ([12, 12, 4, 12, 12, 4] if max_steps == -1 else [12, 12, 4, 12])
    assert seen[0] == pytest.approx(correct.mean().item())
    assert seen[1] == pytest.approx(correct.mean().item() if max_steps == -1 else correct[:12].mean().item())
    assert task._metric_buffer == []
