"""Resumable training loaders: exact mid-epoch resume (workers or not), epochs, DDP shards,
callback-owned samplers, and a Lightning fit resumed from a mid-epoch checkpoint."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from lightning_sparse.data import DigitsDataModule, EpochSampler, IndexedDataset, ResumableDataLoader
from lightning_sparse.data.loading import BucketBatchSampler


class Recorded(Dataset):
    """``range(n)`` as ``(x, y)`` items; remembers which items were loaded (main process only)."""

    def __init__(self, n: int = 23) -> None:
        self.n, self.loaded = n, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        self.loaded.append(i)
        return torch.tensor(float(i)), i % 3


def _loader(dataset, num_workers=0, epoch=0, **sampler_kwargs):
    sampler = EpochSampler(len(dataset), **{"seed": 7, **sampler_kwargs})
    sampler.set_epoch(epoch)
    return ResumableDataLoader(IndexedDataset(dataset), batch_size=4, sampler=sampler, num_workers=num_workers,
                               persistent_workers=num_workers > 0)


def _indices(batches) -> list[list[int]]:
    return [b[2].tolist() for b in batches]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_state_dict_mid_epoch_resumes_exactly_the_remaining_batches(num_workers):
    full = _indices(_loader(Recorded(), num_workers, epoch=3))
    assert len(full) == 6 and sorted(sum(full, [])) == list(range(23))
    first = _loader(Recorded(), num_workers, epoch=3)
    it = iter(first)
    seen = [next(it)[2].tolist() for _ in range(2)]
    state = first.state_dict()
    assert state["epoch"] == 3 and state["batches"] == 2 and seen == full[:2]
    data = Recorded()
    resumed = _loader(data, num_workers)  # a fresh process: epoch 0 until the state says otherwise
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(3)  # what Lightning does before iterating the resumed epoch
    rest = _indices(resumed)
    assert rest == full[2:]
    if num_workers == 0:
        assert sorted(data.loaded) == sorted(sum(full[2:], []))  # the skipped batches were never loaded
    assert _indices(resumed) == full  # the next iteration of the epoch is whole again


def test_resuming_twice_in_one_epoch_and_at_an_epoch_end():
    full = _indices(_loader(Recorded(), epoch=1))
    a = _loader(Recorded(), epoch=1)
    it = iter(a)
    next(it)
    b = _loader(Recorded())
    b.load_state_dict(a.state_dict())
    assert b.state_dict()["batches"] == 1  # restored, not iterated yet
    b.sampler.set_epoch(1)
    it = iter(b)
    next(it), next(it)
    assert b.state_dict()["batches"] == 3  # counted from the epoch's start, skipped ones included
    c = _loader(Recorded())
    c.load_state_dict(b.state_dict())
    c.sampler.set_epoch(1)
    assert _indices(c) == full[3:]
    done = _loader(Recorded(), epoch=1)
    list(done)
    d = _loader(Recorded())
    d.load_state_dict(done.state_dict())  # taken at the end of epoch 1
    d.sampler.set_epoch(2)  # Lightning moves on: the new epoch is whole
    assert _indices(d) == _indices(_loader(Recorded(), epoch=2)) and _indices(d) != full


def test_epochs_differ_and_follow_the_seed_with_workers():
    orders = {e: _indices(_loader(Recorded(), 2, epoch=e)) for e in (0, 1)}
    assert orders[0] != orders[1]
    assert orders[0] == _indices(_loader(Recorded(), 0, epoch=0))
    assert _indices(_loader(Recorded(), epoch=0, seed=8)) != orders[0]


def test_ddp_shards_share_one_order_and_are_disjoint():
    for n in (10, 11):
        shards = [list(EpochSampler(n, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
        assert len(shards[0]) == len(shards[1]) == len(EpochSampler(n, seed=3, num_replicas=2, rank=0))
        order = EpochSampler(n, seed=3).order()
        assert shards[0] == order[0::2][: len(shards[0])] and sorted(set(shards[0]) | set(shards[1])) == list(range(n))
        if n % 2 == 0:
            assert not set(shards[0]) & set(shards[1])
    # each rank resumes its own shard after the same number of batches
    for rank in (0, 1):
        full = _indices(_loader(Recorded(), num_replicas=2, rank=rank))
        a = _loader(Recorded(), num_replicas=2, rank=rank)
        it = iter(a)
        next(it)
        b = _loader(Recorded(), num_replicas=2, rank=rank)
        b.load_state_dict(a.state_dict())
        assert _indices(b) == full[1:]



def _bucketed(dataset, num_workers=0, epoch=0, **sampler_kwargs):
    sampler = EpochSampler(len(dataset), **{"seed": 7, **sampler_kwargs})
    sampler.set_epoch(epoch)
    lengths = [(i * 7) % 11 for i in range(len(dataset))]
    batches = BucketBatchSampler(sampler, 4, lengths=lengths, bucket_size=2)
    return ResumableDataLoader(IndexedDataset(dataset), batch_sampler=batches, num_workers=num_workers,
                               persistent_workers=num_workers > 0)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_bucketed_loader_resumes_by_whole_batches(num_workers):
    full = _indices(_bucketed(Recorded(), num_workers, epoch=3))
    assert len(full) == 6 and sorted(sum(full, [])) == list(range(23))
    first = _bucketed(Recorded(), num_workers, epoch=3)
    assert first.resumable and first.sampler is first.batch_sampler.sampler  # Lightning sees the EpochSampler
    it = iter(first)
    seen = [next(it)[2].tolist() for _ in range(2)]
    state = first.state_dict()
    assert seen == full[:2] and state == _loader(Recorded(), epoch=3).state_dict() | {"batches": 2}  # one format
    data = Recorded()
    resumed = _bucketed(data, num_workers)
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(3)
    assert _indices(resumed) == full[2:]
    if num_workers == 0:
        assert sorted(data.loaded) == sorted(sum(full[2:], []))  # skipped batches never loaded
    assert _indices(resumed) == full
    shards = [_indices(_bucketed(Recorded(), num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == 3

class EvenFirst(torch.utils.data.Sampler):
    """A callback's sampler: the even items, in an order that depends on the epoch; stateful."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch, self.version = n, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        items = list(range(0, self.n, 2))
        return iter(items[self.epoch % len(items):] + items[: self.epoch % len(items)])

    def __len__(self) -> int:
        return len(range(0, self.n, 2))

    def state_dict(self):
        return {"version": self.version}

    def load_state_dict(self, state):
        self.version = state["version"]


def test_callback_sampler_is_used_resumed_and_sharded():
    dm = DigitsDataModule(image_size=8, batch_size=5, return_index=True)
    dm.setup("fit")
    n = len(dm.train_dataset)
    owned = EvenFirst(n)
    owned.version = 4
    dm.set_train_sampler(owned)
    assert dm.train_sampler is owned
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(2)
    batches = _indices(loader)
    assert sum(batches, []) == list(range(4, n, 2)) + [0, 2]  # the callback's order of epoch 2
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    assert state["sampler"]["source"] == {"version": 4}
    other = EvenFirst(n)
    dm.set_train_sampler(other)
    resumed = dm.train_dataloader()
    resumed.load_state_dict(state)
    assert other.version == 4 and other.epoch == 2
    assert _indices(resumed) == batches[1:]
    dm.set_train_sampler(None)
    assert len(dm.train_dataloader().sampler) == n


class Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(64, 10)
        self.seen: list[int] = []

    def training_step(self, batch, batch_idx):
        x, y, index = batch
        self.seen += index.tolist()
        return nn.functional.cross_entropy(self.net(x.flatten(1)), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_lightning_resumes_a_mid_epoch_checkpoint_at_the_next_batch(tmp_path, num_workers):
    def fit(max_steps, ckpt_path=None, callbacks=()):
        L.seed_everything(0)
        dm = DigitsDataModule(image_size=8, batch_size=200, return_index=True, num_workers=num_workers)
        model = Recorder()
        trainer = L.Trainer(max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                            accelerator="cpu", default_root_dir=tmp_path, limit_val_batches=0,
                            callbacks=list(callbacks), enable_checkpointing=bool(callbacks))
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        return model.seen

    whole = fit(16)  # 7 batches per epoch (1258 / 200): epochs 0, 1 and two batches of epoch 2
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=10, save_top_k=-1)
    fit(12, callbacks=[ckpt])
    resumed = fit(16, ckpt_path=str(tmp_path / "ckpt" / "epoch=1-step=10.ckpt"))
    assert len(whole) - len(resumed) == 1258 + 3 * 200  # epoch 0, then 3 batches of epoch 1 before the checkpoint
    assert resumed == whole[1258 + 3 * 200:]  # no batch lost, none replayed
