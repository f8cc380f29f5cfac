"""HardnessScores: the scores file of a tiny ImageClassifier fit equals EL2N / GraNd of the model on
the un-augmented training set, written when asked, and drives ``subset=`` of a second DataModule."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from lightning_sparse.callbacks.hardness import HardnessScores, read_scores
from lightning_sparse.data.cifar import CIFAR10_CLASSES, CIFAR10DataModule
from lightning_sparse.data.transforms import cifar_eval_transform
from lightning_sparse.metrics.hardness import el2n_scores
from lightning_sparse.tasks.classification import ImageClassifier


def write_cifar10(root, n_train=100, n_test=20):
    """The published pickle layout (``cifar-10-batches-py``), random images and labels."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n_train + n_test, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n_train + n_test)]
    per = n_train // 5
    for k in range(5):
        part = slice(k * per, (k + 1) * per)
        with open(folder / f"data_batch_{k + 1}", "wb") as f:
            pickle.dump({b"data": images[part], b"labels": labels[part]}, f, protocol=2)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": images[n_train:], b"labels": labels[n_train:]}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES]}, f, protocol=2)
    return images[:n_train].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(labels[:n_train])


def _task(backbone="mlp"):
    torch.manual_seed(0)
    kwargs = {"in_features": 3 * 32 * 32, "hidden_sizes": [16]} if backbone == "mlp" else {"in_channels": 3, "width": 4}
    return ImageClassifier(backbone, kwargs, num_classes=10, lr=0.05)


def _fit(task, dm, tmp_path, callbacks, ckpt_path=None, **kwargs):
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path, callbacks=callbacks, **{"max_epochs": 2, **kwargs})
    trainer.fit(task, datamodule=dm, ckpt_path=ckpt_path)
    return trainer


def _el2n(task, train_x, train_y, positions):
    x = torch.stack([cifar_eval_transform()(train_x[p]) for p in positions])
    task.eval()
    with torch.no_grad():
        return el2n_scores(task(x), torch.as_tensor(train_y[positions]))


def test_el2n_file_equals_the_model_on_the_unaugmented_training_set_and_drives_subset(tmp_path):
    train_x, train_y = write_cifar10(tmp_path / "data")
    dm = CIFAR10DataModule(str(tmp_path / "data"), batch_size=16, val_split=20, augment=True)
    task, path = _task(), tmp_path / "scores" / "run0.pt"
    trainer = _fit(task, dm, tmp_path, [HardnessScores(str(path))])
    stored = torch.load(path, weights_only=True)
    assert stored["score"] == "el2n" and stored["epoch"] == trainer.current_epoch == 2
    positions = dm.train_dataset.source_indices
    np.testing.assert_array_equal(stored["indices"].numpy(), positions)
    assert len(positions) == 80 and stored["scores"].shape == (80,)
    torch.testing.assert_close(stored["scores"], _el2n(task, train_x, train_y, positions))
    # the file picks the 30% hardest of the same pool in a second DataModule
    hard = CIFAR10DataModule(str(tmp_path / "data"), val_split=20, subset="hardest:0.3", scores_file=str(path))
    hard.setup("fit")
    order = np.argsort(-stored["scores"].numpy(), kind="stable")
    np.testing.assert_array_equal(hard.train_dataset.source_indices, np.sort(positions[order[:24]]))
    scores, indices = read_scores([path, path])
    np.testing.assert_array_equal(indices.numpy(), np.sort(positions))


def test_scores_are_taken_at_the_end_of_the_asked_epoch_and_training_mode_comes_back(tmp_path):
    train_x, train_y = write_cifar10(tmp_path / "data")
    dm = CIFAR10DataModule(str(tmp_path / "data"), batch_size=16, augment=False)
    seen = {}

    class Snapshot(L.Callback):  # runs after HardnessScores in the same hook
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 0:
                seen["training"] = pl_module.training
                seen["el2n"] = _el2n(pl_module, train_x, train_y, dm.train_dataset.source_indices)
                pl_module.train()

    path = tmp_path / "e1.pt"
    callback = HardnessScores(str(path), epoch=1)
    _fit(_task(), dm, tmp_path, [callback, Snapshot()], max_epochs=3)
    stored = torch.load(path, weights_only=True)
    assert stored["epoch"] == 1 and callback.scored_epoch == 1 and seen["training"] is True
    torch.testing.assert_close(stored["scores"], seen["el2n"])
    torch.testing.assert_close(callback.scores, seen["el2n"])


def test_grand_file_equals_per_sample_gradient_norms_in_eval_mode(tmp_path):
    train_x, train_y = write_cifar10(tmp_path / "data", n_train=40)
    dm = CIFAR10DataModule(str(tmp_path / "data"), batch_size=8, augment=True)
    task, path = _task("small_cnn"), tmp_path / "grand.pt"  # BatchNorm: scored in eval mode
    _fit(task, dm, tmp_path, [HardnessScores(str(path), score="grand", batch_size=16, chunk_size=5)], max_epochs=1)
    stored = torch.load(path, weights_only=True)
    assert stored["score"] == "grand"
    task.eval()
    expected = []
    for p in stored["indices"][:6].tolist():
        x = cifar_eval_transform()(train_x[p]).unsqueeze(0)
        loss = nn.functional.cross_entropy(task(x), torch.tensor([int(train_y[p])]))
        grads = torch.autograd.grad(loss, [q for q in task.parameters() if q.requires_grad])
        expected.append(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
    torch.testing.assert_close(stored["scores"][:6], torch.stack(expected), rtol=1e-4, atol=1e-6)


def test_no_file_and_a_warning_when_training_stops_before_the_epoch(tmp_path):
    write_cifar10(tmp_path / "data")
    dm = CIFAR10DataModule(str(tmp_path / "data"), batch_size=16)
    with pytest.warns(UserWarning, match="training stopped before epoch 2"):
        _fit(_task(), dm, tmp_path, [HardnessScores(str(tmp_path / "s.pt"), epoch=2)], max_steps=3)
    assert not (tmp_path / "s.pt").exists()


def test_gather_puts_every_rank_shard_back_in_dataset_order():
    n, world = 7, 3  # rank r scored samples r, r + 3, ...
    shards = [torch.arange(r, n, world, dtype=torch.float32) * 10 for r in range(world)]

    class Strategy:
        root_device = torch.device("cpu")

        def all_gather(self, tensor):
            padded = [torch.cat([s, torch.full((3 - len(s),), float("nan"))]) for s in shards]
            assert torch.equal(tensor[: len(shards[1])], shards[1])  # this process is rank 1
            return torch.stack(padded)

    trainer = SimpleNamespace(world_size=world, strategy=Strategy())
    torch.testing.assert_close(HardnessScores._gather(trainer, shards[1], n), torch.arange(n) * 10.0)


def test_setup_refuses_a_datamodule_without_train_eval_dataset_and_a_late_epoch(tmp_path):
    write_cifar10(tmp_path / "data")

    class Plain(L.LightningDataModule):
        def train_dataloader(self):
            return DataLoader([(torch.zeros(3, 32, 32), 0)] * 4, batch_size=2)

    with pytest.raises(ValueError, match="needs a DataModule with `train_eval_dataset\\(\\)`.*got Plain"):
        _fit(_task(), Plain(), tmp_path, [HardnessScores(str(tmp_path / "s.pt"))])
    dm = CIFAR10DataModule(str(tmp_path / "data"), batch_size=16)
    with pytest.raises(ValueError, match="`epoch` must be at most the Trainer's max_epochs \\(2\\), got 5"):
        _fit(_task(), dm, tmp_path, [HardnessScores(str(tmp_path / "s.pt"), epoch=5)])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"score": "forgetting"}, r"`score` must be one of \('el2n', 'grand'\), got 'forgetting'"),
    ({"epoch": 0}, r"`epoch` must be an integer >= 1 or None, got 0"),
    ({"batch_size": 0}, r"`batch_size` must be an integer >= 1 or None"),
    ({"num_workers": -1}, r"`num_workers` must be an integer >= 0"),
    ({"path": ""}, r"`path` must be a file path"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HardnessScores(**{"path": "s.pt", **kwargs})


def test_a_run_resumed_before_the_scoring_epoch_writes_the_same_scores(tmp_path):
    """Crash-free resume: checkpoint after epoch 1, resume to score after epoch 2; the file equals
    the uninterrupted run's (the callback keeps no state but its target epoch)."""
    write_cifar10(tmp_path / "data")

    def dm():
        return CIFAR10DataModule(str(tmp_path / "data"), batch_size=16, augment=False)

    L.seed_everything(0)
    _fit(_task(), dm(), tmp_path / "full", [HardnessScores(str(tmp_path / "full.pt"), epoch=2)], max_epochs=2,
         deterministic=True)
    class Crash(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:  # epoch 1's checkpoint is on disk
                raise RuntimeError("simulated crash")

    L.seed_everything(0)
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, max_epochs=2,
                        default_root_dir=tmp_path, deterministic=True,
                        callbacks=[HardnessScores(str(tmp_path / "early.pt"), epoch=2), ckpt, Crash()])
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.fit(_task(), datamodule=dm())
    assert not (tmp_path / "early.pt").exists()
    L.seed_everything(0)
    _fit(_task(), dm(), tmp_path / "resumed", [HardnessScores(str(tmp_path / "resumed.pt"), epoch=2)], max_epochs=2,
         deterministic=True, ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"))
    full, resumed = (torch.load(tmp_path / f, weights_only=True) for f in ("full.pt", "resumed.pt"))
    assert resumed["epoch"] == full["epoch"] == 2
    torch.testing.assert_close(resumed["scores"], full["scores"])
