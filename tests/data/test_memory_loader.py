"""The in-memory batch loader (``loader="memory"``): the per-sample path's order, indices, DDP
shards and callback samplers; exact mid-epoch resume (augmentation included); augmentation equal
in distribution to torchvision's per-sample one; evaluation batches equal to the per-sample ones;
a Lightning fit (and a resumed one) on the digits; argument errors."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from test_cifar import write_cifar10_pickles
from torch import nn
from torchvision.transforms.v2 import functional as TF

from lightning_sparse.data import DigitsDataModule
from lightning_sparse.data.base import DataModule
from lightning_sparse.data.cifar import CIFAR10DataModule
from lightning_sparse.data.loading import EpochSampler
from lightning_sparse.data.memory import (
    BatchCompose,
    BatchHorizontalFlip,
    BatchNormalize,
    BatchRandomCrop,
    MemoryBatchLoader,
)
from lightning_sparse.data.timeseries import TimeSeriesDataModule
from lightning_sparse.data.transforms import CIFAR10_MEAN, CIFAR10_STD, cifar_eval_transform, cifar_train_transform


def _digits(loader: str, **kwargs) -> DigitsDataModule:
    dm = DigitsDataModule(image_size=8, batch_size=kwargs.pop("batch_size", 100), loader=loader, **kwargs)
    dm.setup("fit")
    return dm


def _cifar(root, loader: str, **kwargs) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(str(root), batch_size=kwargs.pop("batch_size", 16), loader=loader, **kwargs)
    dm.setup()
    return dm


def _epoch(loader, epoch: int) -> list[tuple[torch.Tensor, ...]]:
    loader.sampler.set_epoch(epoch)  # what Lightning does before every epoch
    return list(loader)


def _indices(batches) -> list[list[int]]:
    return [b[2].tolist() for b in batches]


# --------------------------------------------------------------------------- order, indices, shards
def test_every_sample_once_in_the_per_sample_order_with_indices(monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "5")
    memory, plain = _digits("memory", return_index=True), _digits("dataset", return_index=True)
    a, b = memory.train_dataloader(), plain.train_dataloader()
    assert isinstance(a, MemoryBatchLoader) and len(a) == len(b) == 13
    n = len(memory.train_dataset)
    orders = []
    for epoch in (0, 1, 3):
        got, want = _epoch(a, epoch), _epoch(b, epoch)
        assert _indices(got) == _indices(want)
        assert sorted(sum(_indices(got), [])) == list(range(n))  # each sample exactly once
        for (x, y, i), (x0, y0, i0) in zip(got, want):
            assert x.dtype == x0.dtype and i.dtype == torch.int64
            assert torch.equal(x, x0) and torch.equal(y, y0)  # no augmentation: the very items
        orders.append(sum(_indices(got), []))
    assert orders[0] != orders[1] != orders[2]  # a new permutation every epoch
    monkeypatch.setenv("PL_GLOBAL_SEED", "6")
    assert sum(_indices(_epoch(memory.train_dataloader(), 0)), []) != orders[0]  # follows the seed
    plain_batch = next(iter(_digits("memory").train_dataloader()))
    assert len(plain_batch) == 2  # (x, y) without return_index


def test_ddp_shards_are_the_per_sample_shards():
    shards = []
    for rank in (0, 1):
        memory, plain = _digits("memory", return_index=True), _digits("dataset", return_index=True)
        for dm in (memory, plain):
            dm._shards = lambda rank=rank: (2, rank)
        got = _indices(_epoch(memory.train_dataloader(), 2))
        assert got == _indices(_epoch(plain.train_dataloader(), 2))
        assert len(memory.train_dataloader()) == len(got) == 7  # ceil(629 / 100)
        shards.append(sum(got, []))
    n = len(memory.train_dataset)
    assert len(shards[0]) == len(shards[1]) == (n + 1) // 2
    assert set(shards[0]) | set(shards[1]) == set(range(n))
    assert len(set(shards[0]) & set(shards[1])) == 2 * ((n + 1) // 2) - n  # only the padding repeats
    # evaluation splits shard in order, as Lightning's DistributedSampler(shuffle=False)
    dm = _digits("memory")
    dm._shards = lambda: (2, 1)
    y = torch.cat([b[1] for b in dm.val_dataloader()])
    assert torch.equal(y, dm.val_dataset.labels[1::2])


class EvenFirst:
    """A callback's order: the even positions from ``2 * epoch``, then the first even ones."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch, self.version = n, 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        evens = list(range(0, self.n, 2))
        k = self.epoch
        return iter(evens[k:] + evens[:k])

    def __len__(self) -> int:
        return len(range(0, self.n, 2))

    def state_dict(self):
        return {"version": self.version}

    def load_state_dict(self, state):
        self.version = state["version"]


def test_a_callback_sampler_is_honoured_and_resumed():
    memory, plain = _digits("memory", return_index=True, batch_size=64), _digits("dataset", return_index=True,
                                                                                 batch_size=64)
    n = len(memory.train_dataset)
    owned = EvenFirst(n)
    owned.version = 3
    memory.set_train_sampler(owned)
    plain.set_train_sampler(EvenFirst(n))
    loader = memory.train_dataloader()
    batches = _indices(_epoch(loader, 2))
    assert batches == _indices(_epoch(plain.train_dataloader(), 2))
    assert sum(batches, []) == list(range(4, n, 2)) + [0, 2]
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    assert state["batches"] == 1 and state["sampler"]["source"] == {"version": 3}
    other = EvenFirst(n)
    memory.set_train_sampler(other)
    resumed = memory.train_dataloader()
    resumed.load_state_dict(state)
    assert other.version == 3 and other.epoch == 2
    assert _indices(resumed) == batches[1:]
    memory.set_train_sampler(None)
    assert len(memory.train_dataloader()) == 20  # ceil(1258 / 64): the permutation again


def test_time_series_batches_equal_the_per_sample_ones_with_index_and_lengths():
    kw = dict(batch_size=8, return_index=True, return_lengths=True)
    memory = TimeSeriesDataModule("JapaneseVowels", loader="memory", **kw)
    plain = TimeSeriesDataModule("JapaneseVowels", **kw)
    memory.setup("fit")
    plain.setup("fit")
    for got, want in zip(_epoch(memory.train_dataloader(), 1), _epoch(plain.train_dataloader(), 1), strict=True):
        assert len(got) == 4  # (x, y, index, lengths)
        for a, b in zip(got, want):
            assert torch.equal(a, b)
    for got, want in zip(memory.test_dataloader(), plain.test_dataloader(), strict=True):
        assert len(got) == 3 and all(torch.equal(a, b) for a, b in zip(got, want))


# --------------------------------------------------------------------------- resume
def test_mid_epoch_resume_is_exact_augmentation_included(tmp_path):
    write_cifar10_pickles(tmp_path)  # 100 training images
    first = _cifar(tmp_path, "memory", return_index=True).train_dataloader()
    first.sampler.set_epoch(4)
    it = iter(first)
    seen = [next(it) for _ in range(3)]
    state = first.state_dict()
    assert state["epoch"] == 4 and state["batches"] == 3
    rest = list(it)
    torch.manual_seed(123)  # the global RNG plays no part
    resumed = _cifar(tmp_path, "memory", return_index=True).train_dataloader()
    resumed.load_state_dict(state)
    assert resumed.state_dict()["batches"] == 3  # restored, not iterated yet
    resumed.sampler.set_epoch(4)
    again = list(resumed)
    assert len(again) == len(rest) == len(first) - 3 == 4
    for a, b in zip(again, rest, strict=True):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    whole = list(resumed)  # the next iteration of the epoch is whole again, with the same draws
    assert all(torch.equal(u, v) for a, b in zip(whole, seen + rest) for u, v in zip(a, b))
    resumed.sampler.set_epoch(5)
    other = next(iter(resumed))
    assert not torch.equal(other[0], whole[0][0])  # another epoch: another order and other draws


# --------------------------------------------------------------------------- augmentation
def _coordinate_image() -> np.ndarray:
    """``uint8 (32, 32, 3)``: channel 0 = row + 1, channel 1 = column + 1 (crop and flip readable),
    channel 2 random."""
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    noise = np.random.default_rng(0).integers(0, 256, (32, 32))
    return np.stack([rows + 1, cols + 1, noise], -1).astype(np.uint8)


def _params(views: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(top, left, flipped) of pad-4 crops of :func:`_coordinate_image` (normalised views)."""
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    raw = (views * std + mean).mul(255).round().to(torch.int64)
    top = raw[:, 0, 16, 16] - 13  # source row 16 + top - 4, stored as row + 1
    flipped = raw[:, 1, 16, 16] < raw[:, 1, 16, 15]
    left = torch.where(flipped, raw[:, 1, 16, 16] - 12, raw[:, 1, 16, 16] - 13)
    return top.numpy(), left.numpy(), flipped.numpy()


def _reference(image: np.ndarray, top: int, left: int, flipped: bool) -> torch.Tensor:
    """torchvision's per-sample pipeline at given crop and flip parameters."""
    x = TF.crop(TF.pad(torch.from_numpy(image).permute(2, 0, 1), [4]), top, left, 32, 32)
    return cifar_eval_transform()(TF.horizontal_flip(x) if flipped else x)


def test_batch_augmentation_is_distributed_as_the_per_sample_one():
    image, n = _coordinate_image(), 3000
    transform = BatchCompose(BatchRandomCrop(4), BatchHorizontalFlip(), BatchNormalize(CIFAR10_MEAN, CIFAR10_STD))
    batch = torch.from_numpy(image).permute(2, 0, 1).expand(n, 3, 32, 32).contiguous()
    memory = transform(batch, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    per_sample = torch.stack([cifar_train_transform()(image) for _ in range(n)])
    assert memory.shape == per_sample.shape and memory.dtype == per_sample.dtype == torch.float32
    pm, ps = _params(memory), _params(per_sample)
    for a, b in zip(pm[:2], ps[:2]):  # crop offsets: uniform on 0..8, as torchvision's
        assert a.min() == b.min() == 0 and a.max() == b.max() == 8
        fa, fb = np.bincount(a, minlength=9) / n, np.bincount(b, minlength=9) / n
        assert np.abs(fa - 1 / 9).max() < 0.03 and np.abs(fb - 1 / 9).max() < 0.03
    assert abs(pm[2].mean() - 0.5) < 0.04 and abs(ps[2].mean() - 0.5) < 0.04  # flip rate
    # every view is exactly torchvision's output at its parameters (zero padding included)
    for k in range(0, n, 97):
        torch.testing.assert_close(memory[k], _reference(image, int(pm[0][k]), int(pm[1][k]), bool(pm[2][k])))
    # per-pixel means: both paths within sampling error of the exact mean over the 162 outcomes
    outcomes = torch.stack([_reference(image, t, l, f) for t in range(9) for l in range(9) for f in (False, True)])
    exact, spread = outcomes.mean(0), outcomes.std(0)
    bound = 6 * spread / n**0.5 + 1e-5
    assert ((memory.mean(0) - exact).abs() <= bound).all()
    assert ((per_sample.mean(0) - exact).abs() <= bound).all()


def test_batch_transforms_check_their_arguments():
    with pytest.raises(ValueError, match="`padding`"):
        BatchRandomCrop(-1)
    with pytest.raises(ValueError, match="`p`"):
        BatchHorizontalFlip(1.5)
    with pytest.raises(ValueError, match="`std`"):
        BatchNormalize((0.5,), (0.0,))
    with pytest.raises(ValueError, match="`batch_size`"):
        MemoryBatchLoader(torch.zeros(3), torch.zeros(3), 0)
    with pytest.raises(ValueError, match="`y`"):
        MemoryBatchLoader(torch.zeros(3), torch.zeros(2), 1)
    float_input = torch.rand(2, 3, 4, 4)
    assert torch.equal(BatchNormalize(0.0, 1.0)(float_input), float_input)  # float input is not rescaled
    loader = MemoryBatchLoader(torch.arange(5), torch.arange(5), 2, EpochSampler(5, seed=0))
    assert sorted(torch.cat([b[0] for b in loader]).tolist()) == list(range(5))


def test_eval_batches_equal_the_per_sample_path(tmp_path):
    write_cifar10_pickles(tmp_path, per_batch=40, n_test=50)
    kw = dict(val_split=40, train_subset=60, test_subset=30)
    memory, plain = _cifar(tmp_path, "memory", **kw), _cifar(tmp_path, "dataset", **kw)
    for name in ("val", "test"):
        got = list(getattr(memory, f"{name}_dataloader")())
        want = list(getattr(plain, f"{name}_dataloader")())
        assert isinstance(getattr(memory, f"{name}_dataloader")(), MemoryBatchLoader)
        assert len(got) == len(want)
        for (x, y), (x0, y0) in zip(got, want, strict=True):
            assert x.shape == x0.shape and x.dtype == torch.float32 and y.dtype == y0.dtype == torch.int64
            torch.testing.assert_close(x, x0, rtol=0, atol=1e-6)
            assert torch.equal(y, y0)
    # augment=False: the training batches are the evaluation transform of the same images, in order
    memory, plain = _cifar(tmp_path, "memory", augment=False, **kw), _cifar(tmp_path, "dataset", augment=False, **kw)
    for (x, y), (x0, y0) in zip(_epoch(memory.train_dataloader(), 1), _epoch(plain.train_dataloader(), 1),
                                strict=True):
        torch.testing.assert_close(x, x0, rtol=0, atol=1e-6)
        assert torch.equal(y, y0)
    # with augmentation: same images and labels in the same order, views of them
    memory = _cifar(tmp_path, "memory", return_index=True, **kw)
    x, y, index = next(iter(memory.train_dataloader()))
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32
    assert y.tolist() == [memory.train_dataset[int(i)][1] for i in index]


# --------------------------------------------------------------------------- Lightning
class Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(64, 10)
        self.seen: list[int] = []

    def training_step(self, batch, batch_idx):
        x, y, index = batch
        self.seen += index.tolist()
        return nn.functional.cross_entropy(self.net(x.flatten(1)), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x.flatten(1)), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_trainer_fit_and_a_mid_epoch_resume_on_the_digits(tmp_path):
    def fit(max_steps, ckpt_path=None, callbacks=(), loader="memory"):
        L.seed_everything(0)
        dm = DigitsDataModule(image_size=8, batch_size=200, return_index=True, loader=loader)
        model = Recorder()
        trainer = L.Trainer(max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                            accelerator="cpu", default_root_dir=tmp_path, limit_val_batches=1,
                            callbacks=list(callbacks), enable_checkpointing=bool(callbacks))
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        assert isinstance(trainer.train_dataloader, MemoryBatchLoader) == (loader == "memory")
        return model.seen, trainer

    whole, trainer = fit(16)  # 7 batches per epoch (1258 / 200): epochs 0, 1 and two batches of epoch 2
    assert trainer.global_step == 16 and sorted(whole[:1258]) == list(range(1258))
    assert whole == fit(16, loader="dataset")[0]  # the per-sample path's order
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=10, save_top_k=-1)
    fit(12, callbacks=[ckpt])
    resumed, _ = fit(16, ckpt_path=str(tmp_path / "ckpt" / "epoch=1-step=10.ckpt"))
    assert resumed == whole[1258 + 3 * 200:]  # no batch lost, none replayed


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("value", ["memroy", "", None, 1])
def test_a_bad_loader_value_names_the_argument(value):
    with pytest.raises(ValueError, match=r"`loader` must be one of \['dataset', 'memory'\]"):
        DigitsDataModule(loader=value)


def test_memory_is_refused_where_unsupported(tmp_path):
    with pytest.raises(ValueError, match="`loader='memory'` is not supported by DataModule"):
        DataModule(loader="memory")
    with pytest.raises(ValueError, match="`train_corruption`.*`loader='memory'`"):
        CIFAR10DataModule(str(tmp_path), train_corruption="gaussian_noise:3", loader="memory")


def test_a_corrupted_test_set_keeps_the_per_sample_loader(tmp_path):
    write_cifar10_pickles(tmp_path, n_test=20)
    dm = _cifar(tmp_path, "memory", test_corruption="gaussian_noise:1")
    assert isinstance(dm.train_dataloader(), MemoryBatchLoader)
    test = dm.test_dataloader()
    assert isinstance(test, torch.utils.data.DataLoader)
    x, y = next(iter(test))
    assert x.shape == (16, 3, 32, 32)


# --------------------------------------------------------------------------- batch layout
@pytest.mark.parametrize("augment", [False, True])
def test_feature_major_batches_hold_the_same_values(tmp_path, augment):
    """`batch_layout="feature_major"`: every batch equals the batch-major one (same seed, so the
    same crops and flips), in memory with the batch index fastest, and a SparseLinear after the
    flatten reads it without a copy."""
    from lightning_sparse.nn import kernels

    write_cifar10_pickles(tmp_path, per_batch=40, n_test=50)
    kw = dict(val_split=40, train_subset=60, test_subset=30, augment=augment, return_index=True)
    batch_major, feature_major = _cifar(tmp_path, "memory", **kw), _cifar(tmp_path, "memory", batch_layout="feature_major", **kw)
    for name in ("train", "val", "test"):
        got = list(getattr(feature_major, f"{name}_dataloader")())
        want = list(getattr(batch_major, f"{name}_dataloader")())
        assert len(got) == len(want) > 0
        for b, b0 in zip(got, want, strict=True):
            x, x0 = b[0], b0[0]
            assert torch.equal(x, x0) and all(torch.equal(u, v) for u, v in zip(b[1:], b0[1:]))
            n = x.shape[0]
            assert x.stride() == (1, 1024 * n, 32 * n, n) and x0.is_contiguous()
            flat = x.flatten(1)
            assert flat.stride() == (1, n) and kernels.feature_major(flat).data_ptr() == x.data_ptr()


def test_a_bad_batch_layout_names_the_argument(tmp_path):
    with pytest.raises(ValueError, match=r"`batch_layout` must be one of \['batch_major', 'feature_major'\], got 'rows'"):
        DigitsDataModule(loader="memory", batch_layout="rows")
    with pytest.raises(ValueError, match=r"`batch_layout='feature_major'` needs `loader='memory'`.*got loader='dataset'"):
        DigitsDataModule(batch_layout="feature_major")


def test_feature_major_of_any_transform_keeps_the_values():
    from lightning_sparse.data.memory import BatchFeatureMajor, feature_major_batch, with_feature_major

    x = torch.randint(0, 256, (5, 2, 3, 4), dtype=torch.uint8)
    for t in (None, BatchNormalize(0.5, 0.25), BatchCompose(BatchHorizontalFlip(), BatchNormalize((0.1, 0.2), (0.3, 0.4))),
              BatchHorizontalFlip()):
        fm = with_feature_major(t)
        want = x if t is None else t(x, torch.Generator().manual_seed(1))
        got = fm(x, torch.Generator().manual_seed(1))
        assert torch.equal(got, want) and got.stride() == (1, 12 * 5, 4 * 5, 5)
        if isinstance(t, BatchNormalize):
            assert not t.feature_major  # the given transform is left as it was
    assert isinstance(with_feature_major(BatchHorizontalFlip()).steps[-1], BatchFeatureMajor)
    assert torch.equal(feature_major_batch(torch.arange(3)), torch.arange(3))  # 1-D: as it is
