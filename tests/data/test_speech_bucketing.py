"""Length-bucketed training batches of the speech DataModules: sorted within batches, exactly the
EpochSampler's shard, DDP shards of equal batch counts, a callback's sampler, exact mid-epoch
resume with and without bucketing (also through a Lightning fit)."""

from __future__ import annotations

import json
import math

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from lightning_sparse.data.loading import BucketBatchSampler, EpochSampler, ResumableDataLoader
from lightning_sparse.data.speech import ManifestDataModule


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> str:
    """23 short utterances of distinct lengths (8 kHz) in a manifest with durations."""
    root = tmp_path_factory.mktemp("speech")
    rng = np.random.default_rng(0)
    lengths = rng.permutation(np.arange(23) * 40 + 200)
    lines = []
    for k, n in enumerate(lengths):
        sf.write(root / f"{k}.wav", rng.uniform(-0.3, 0.3, n).astype(np.float32), 8000)
        lines.append(json.dumps({"audio_filepath": f"{k}.wav", "text": "ab" * (k % 4 + 1), "duration": n / 8000}))
    (root / "train.jsonl").write_text("\n".join(lines))
    return str(root / "train.jsonl")


def _dm(manifest, **kwargs) -> ManifestDataModule:
    dm = ManifestDataModule(manifest, **{"sample_rate": 8000, "batch_size": 3, "bucket_size": 2,
                                         "return_index": True, **kwargs})
    dm.setup()
    return dm


def _batches(loader) -> list[list[int]]:
    return [b["index"].tolist() for b in loader]


def test_batches_are_sorted_chunks_of_the_shard_and_cover_it_exactly(manifest):
    dm = _dm(manifest)
    durations = dm.train_dataset.durations
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(2)
    batches = _batches(loader)
    order = list(loader.sampler)  # this epoch's EpochSampler order
    assert len(batches) == len(loader) == math.ceil(23 / 3)
    assert sorted(sum(batches, [])) == sorted(order) == list(range(23))
    chunks = [set(order[i : i + 6]) for i in range(0, 23, 6)]  # bucket_size * batch_size
    for batch in batches:
        assert list(durations[batch]) == sorted(durations[batch])
        assert any(set(batch) <= chunk for chunk in chunks)
    assert [len(b) for b in batches].count(3) == 7  # only the last chunk's last batch is short
    loader.sampler.set_epoch(3)
    assert _batches(loader) != batches  # a new epoch, a new order


def test_bucketing_pads_less_than_the_epoch_order(manifest):
    def padding(bucketing):
        dm = _dm(manifest, bucketing=bucketing, bucket_size=8, batch_size=4)
        return sum(int((b["audio_lengths"].max() - b["audio_lengths"]).sum()) for b in dm.train_dataloader())

    assert padding(True) < padding(False) / 2


@pytest.mark.parametrize("n", [22, 23])
def test_ddp_ranks_get_disjoint_shards_and_equal_batch_counts(n):
    lengths = np.random.default_rng(1).random(n)
    shards = []
    for rank in (0, 1):
        sampler = EpochSampler(n, seed=5, num_replicas=2, rank=rank)
        sampler.set_epoch(1)
        batches = list(BucketBatchSampler(sampler, 4, lengths=lengths, bucket_size=2))
        assert sorted(sum(batches, [])) == sorted(sampler)  # exactly this rank's shard
        shards.append(batches)
    assert len(shards[0]) == len(shards[1]) == math.ceil(math.ceil(n / 2) / 4)
    a, b = (set(sum(s, [])) for s in shards)
    assert a | b == set(range(n))
    if n % 2 == 0:
        assert not a & b
    else:
        assert len(a & b) == 1  # the EpochSampler's own padding, nothing more


def test_ddp_shards_through_the_datamodule(manifest):
    loaders = []
    for rank in (0, 1):
        dm = _dm(manifest)
        dm._shards = lambda rank=rank: (2, rank)  # what a DDP trainer reports
        loaders.append(dm.train_dataloader())
    batches = [_batches(loader) for loader in loaders]
    assert len(batches[0]) == len(batches[1]) == 4  # 12 items per rank
    assert set(sum(batches[0], [])) | set(sum(batches[1], [])) == set(range(23))
    assert all(isinstance(loader.sampler, EpochSampler) for loader in loaders)  # what Lightning looks for


class Evens(torch.utils.data.Sampler):
    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(range(self.epoch % 2, self.n, 2))

    def __len__(self) -> int:
        return len(range(self.epoch % 2, self.n, 2))


@pytest.mark.parametrize("bucketing", [True, False])
def test_set_train_sampler_is_honoured(manifest, bucketing):
    dm = _dm(manifest, bucketing=bucketing)
    dm.set_train_sampler(Evens(23))
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    assert sorted(sum(_batches(loader), [])) == list(range(0, 23, 2))
    loader.sampler.set_epoch(1)
    assert sorted(sum(_batches(loader), [])) == list(range(1, 23, 2))


@pytest.mark.parametrize("bucketing", [True, False])
def test_mid_epoch_resume_is_exact_and_skips_without_loading(manifest, bucketing):
    dm = _dm(manifest, bucketing=bucketing)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(4)
    full = _batches(loader)
    it = iter(loader)
    seen = [next(it)["index"].tolist() for _ in range(3)]
    state = loader.state_dict()
    assert seen == full[:3] and set(state) == {"epoch", "batches", "sampler"} and state["batches"] == 3

    fresh = _dm(manifest, bucketing=bucketing)
    loaded = []
    get = fresh.train_dataset.audio
    fresh.train_dataset.audio = lambda i: loaded.append(i) or get(i)
    resumed = fresh.train_dataloader()
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(4)  # what Lightning does before the resumed epoch
    assert _batches(resumed) == full[3:]
    assert sorted(loaded) == sorted(sum(full[3:], []))  # the skipped batches were never read
    assert _batches(resumed) == full  # the next iteration is whole again


def test_mid_epoch_resume_with_workers(manifest):
    dm = _dm(manifest, num_workers=2)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    full = _batches(loader)
    it = iter(loader)
    next(it), next(it)
    resumed = _dm(manifest, num_workers=2).train_dataloader()
    resumed.load_state_dict(loader.state_dict())
    resumed.sampler.set_epoch(1)
    assert _batches(resumed) == full[2:]
    # free the persistent workers now: a loader left to the cyclic GC (Lightning's
    # save_hyperparameters keeps the calling frames alive) waits 5 s per worker to shut down
    del it, loader, resumed


class IndexRecorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(1, 1)
        self.seen: list[list[int]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch["index"].tolist())
        x = batch["audio"].mean(dim=1, keepdim=True)
        return self.net(x).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_lightning_resumes_a_bucketed_epoch_at_the_next_batch(manifest, tmp_path):
    def fit(max_steps, ckpt_path=None, callbacks=()):
        L.seed_everything(0)
        dm = ManifestDataModule(manifest, sample_rate=8000, batch_size=3, bucket_size=2, return_index=True)
        model = IndexRecorder()
        trainer = L.Trainer(max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                            accelerator="cpu", default_root_dir=tmp_path, limit_val_batches=0,
                            callbacks=list(callbacks), enable_checkpointing=bool(callbacks))
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        assert isinstance(trainer.train_dataloader, ResumableDataLoader)
        return model.seen

    whole = fit(12)  # 8 batches per epoch: epoch 0 and 4 batches of epoch 1
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=10, save_top_k=-1)
    fit(10, callbacks=[ckpt])
    resumed = fit(12, ckpt_path=str(tmp_path / "ckpt" / "epoch=1-step=10.ckpt"))
    assert resumed == whole[10:]  # batches 3 and 4 of epoch 1: none lost, none replayed
    assert sorted(sum(whole[:8], [])) == list(range(23))
