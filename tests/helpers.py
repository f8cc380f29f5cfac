"""Tiny deterministic models and data shared by the tests."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_sparse.data.loading import EpochSampler, ResumableDataLoader


def make_data(n: int = 64, features: int = 16, classes: int = 4, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    w = torch.randn(features, classes, generator=g)
    return TensorDataset(x, (x @ w).argmax(1))


class TinyNet(LightningModule):
    """An MLP with a conv-free path; ``lr`` and optimizer configurable for the contract tests."""

    def __init__(self, features: int = 16, hidden: int = 32, classes: int = 4, optimizer: str = "sgd",
                 lr: float = 0.1, batch_size: int = 8, n: int = 64, inf_at_step: int | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, classes))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        if self.hparams.inf_at_step is not None and self.global_step == self.hparams.inf_at_step:
            loss = loss * float("inf")
        return loss

    def test_step(self, batch, batch_idx):
        x, y = batch[0], batch[1]
        self.log("test/acc", (self(x).argmax(-1) == y).float().mean())

    def configure_optimizers(self):
        if self.hparams.optimizer == "adamw":
            return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=0.01)
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9, weight_decay=5e-4)

    def train_dataloader(self):
        return DataLoader(make_data(self.hparams.n, self.hparams.features, self.hparams.classes),
                          batch_size=self.hparams.batch_size, shuffle=False)


class TinyConvNet(TinyNet):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.net = nn.Sequential(nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(128, 4))


def run_worker(worker, *args):
    """Run a DDP worker script (it starts its own 2 CPU processes) and fail with its stderr."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(worker), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


class ResumableNet(TinyNet):
    """TinyNet whose loader resumes mid-epoch at the next unseen batch (a plain loader replays an
    epoch's start)."""

    def train_dataloader(self):
        data = make_data(self.hparams.n, self.hparams.features, self.hparams.classes)
        return ResumableDataLoader(data, batch_size=self.hparams.batch_size, sampler=EpochSampler(len(data), seed=0))


class TwoOptimizerNet(ResumableNet):
    """Manual optimization: an encoder optimizer and a head optimizer step in every batch (as a
    domain-adaptation or meta-learning task does), so ``global_step`` advances twice per batch."""

    def __init__(self, raw_step: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.automatic_optimization = False
        self.raw_step = raw_step

    def training_step(self, batch, batch_idx):
        enc_opt, head_opt = self.optimizers()
        x, y = batch
        loss = nn.functional.cross_entropy(self(x), y)
        enc_opt.zero_grad()
        head_opt.zero_grad()
        self.manual_backward(loss)
        enc_opt.step()
        (head_opt.optimizer if self.raw_step else head_opt).step()
        return loss

    def configure_optimizers(self):
        enc = [p for n, p in self.named_parameters() if not n.startswith("net.4")]
        head = list(self.net[4].parameters())
        return torch.optim.SGD(enc, lr=0.1, momentum=0.9), torch.optim.Adam(head, lr=0.01)


class Blobs(Dataset):
    """Volumes with a bright cube (class 1) and a dark one (class 2) at random places."""

    def __init__(self, n=4, size=(12, 16, 16), seed=0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for i in range(n):
            image = torch.randn(1, *size, generator=g) * 0.1
            label = torch.zeros(1, *size, dtype=torch.long)
            for cls, value in ((1, 2.0), (2, -2.0)):
                d, h, w = (int(torch.randint(0, s - 5, (1,), generator=g)) for s in size)
                image[:, d:d + 5, h:h + 5, w:w + 5] += value
                label[:, d:d + 5, h:h + 5, w:w + 5] = cls
            self.items.append({"image": image, "label": label, "index": torch.tensor(i)})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def resume_loader_mid_epoch(make_dm, epoch: int = 2, seen_batches: int = 3):
    """An epoch of a data module's training loader, once whole and once cut after ``seen_batches``
    and resumed from the loader's state in a fresh module: ``(full, seen, rest)`` batch lists."""
    def batches(dm):
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return loader

    full = list(batches(make_dm()))
    loader = batches(make_dm())
    it = iter(loader)
    seen = [next(it) for _ in range(seen_batches)]
    state = loader.state_dict()
    assert state["epoch"] == epoch and state["batches"] == seen_batches
    resumed_dm = make_dm()
    resumed_dm.setup("fit")
    resumed = resumed_dm.train_dataloader()
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(epoch)  # what Lightning does before iterating the resumed epoch
    return full, seen, list(resumed)


class StopAfterFirstEpoch(Callback):
    """Stop a fit after its first epoch: an interrupted run with the uninterrupted run's schedule."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def assert_resume_matches_uninterrupted(fit, tmp_path) -> None:
    """``fit(root, callbacks=..., ckpt_path=...)`` returns the fitted module of a 2-epoch run: a run
    stopped after its first epoch and resumed from that epoch's checkpoint ends where the
    uninterrupted run ends (every state-dict entry)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    full = fit(tmp_path / "full")
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1, every_n_epochs=1)
    fit(tmp_path / "first", callbacks=[ckpt, StopAfterFirstEpoch()])
    path = next((tmp_path / "ckpt").glob("epoch=0*.ckpt"))
    resumed = fit(tmp_path / "resumed", ckpt_path=str(path))
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
