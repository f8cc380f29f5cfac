"""A seed reaches the initial weights and the DST mask generator (TimeSeriesClassifier + DST)."""

import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from torch.utils.data import DataLoader, TensorDataset

from lightning_sparse.callbacks import DynamicSparseTraining
from lightning_sparse.tasks import TimeSeriesClassifier

TINY = {"width": 4, "depth": 1, "kernel_size": 6}


class _GrabMasks(Callback):
    def __init__(self, dst):
        self.dst, self.masks = dst, {}

    def on_train_batch_end(self, *args):
        self.masks = {k: m.detach().clone() for k, m in self.dst.masks.items()}


def _run(seed, tmp_path):
    seed_everything(seed)
    task = TimeSeriesClassifier("dsn", TINY, num_classes=2, in_channels=1)
    initial = {k: v.detach().clone() for k, v in task.state_dict().items()}
    dst = DynamicSparseTraining(sparsity=0.5, include=["model.blocks.*.conv.weight"], seed=seed,
                                summary=False, log_per_layer=False)
    g = torch.Generator().manual_seed(0)  # the same data for both seeds
    data = TensorDataset(torch.randn(8, 1, 16, generator=g), torch.arange(8) % 2)
    trainer = Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                      callbacks=[dst, grab := _GrabMasks(dst)])
    trainer.fit(task, DataLoader(data, batch_size=4))
    return initial, grab.masks


def test_two_seeds_give_different_initial_weights_and_masks(tmp_path):
    w0, m0 = _run(0, tmp_path)
    w1, m1 = _run(1, tmp_path)
    weights = [k for k, v in w0.items() if k.endswith("weight") and v.dim() >= 2]  # convolutions, linear
    assert weights and all(not torch.equal(w0[k], w1[k]) for k in weights)
    assert m0 and m0.keys() == m1.keys()
    assert any(not torch.equal(m0[k], m1[k]) for k in m0)
    # the same seed again gives the same weights and masks
    w0b, m0b = _run(0, tmp_path)
    assert all(torch.equal(w0[k], w0b[k]) for k in w0)
    assert all(torch.equal(m0[k], m0b[k]) for k in m0)
