"""Tiny data and tasks for the data-pruning tests (shared with the DDP worker)."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_sparse.core.per_sample import per_sample_output
from lightning_sparse.data.base import DataModule
from lightning_sparse.tasks import ImageClassifier


def tensors(n: int = 40, features: int = 8, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    w = torch.randn(features, classes, generator=g)
    return x, (x @ w).argmax(1)


class TensorDataModule(DataModule):
    def __init__(self, n: int = 40, batch_size: int = 8, return_index: bool = True, seed: int = 0):
        super().__init__(batch_size=batch_size, return_index=return_index, seed=seed)
        self.n = n

    def setup(self, stage: str) -> None:
        x, y = tensors(self.n)
        self.train_dataset = TensorDataset(x, y)
        self.val_dataset = TensorDataset(x[:8], y[:8])


def classifier(**kwargs) -> ImageClassifier:
    return ImageClassifier("mlp", {"in_features": 8, "hidden_sizes": [16]}, num_classes=3, lr=0.1,
                           scheduler=kwargs.pop("scheduler", "none"), weight_decay=0.0, **kwargs)


class IndexLast(Dataset):
    """A plain dataset whose items are ``(x, y, index)``, the index last."""

    def __init__(self, n: int = 40):
        self.x, self.y = tensors(n)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i], i


class PlainModule(LightningModule):
    """A user's own module: its own train_dataloader, the contract by hand."""

    def __init__(self, n: int = 40, batch_size: int = 8, contract: bool = True, manual: bool = False):
        super().__init__()
        self.n, self.batch_size, self.contract = n, batch_size, contract
        self.net = nn.Linear(8, 3)
        self.head2 = nn.Linear(3, 3)
        self.automatic_optimization = not manual

    def forward(self, x):
        return self.head2(self.net(x))

    def train_dataloader(self):
        return DataLoader(IndexLast(self.n), batch_size=self.batch_size, shuffle=True)

    def training_step(self, batch, batch_idx):
        x, y, index = batch
        losses = nn.functional.cross_entropy(self(x), y, reduction="none")
        if not self.automatic_optimization:
            opt_a, opt_b = self.optimizers()
            loss = losses.mean()
            for opt in (opt_a, opt_b):
                opt.zero_grad()
            self.manual_backward(loss)
            opt_a.step()
            opt_b.step()
        if not self.contract:
            return losses.mean()
        return per_sample_output(losses, index)

    def configure_optimizers(self):
        if self.automatic_optimization:
            return torch.optim.SGD(self.parameters(), lr=0.1)
        return (torch.optim.SGD(self.net.parameters(), lr=0.1), torch.optim.SGD(self.head2.parameters(), lr=0.1))


class RecordBatches(Callback):
    """Per epoch: the dataset indices of every training batch this rank saw."""

    def __init__(self):
        self.epochs: dict[int, list[list[int]]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        index = batch["index"] if isinstance(batch, dict) else batch[2]
        self.epochs.setdefault(trainer.current_epoch, []).append([int(i) for i in index])
