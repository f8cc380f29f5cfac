"""MultiTaskDataModule: per-task train / val / trval / test splits (stratified, seeded, disjoint),
MOML's bilevel training batches, one evaluation loader per task, epochs, seeds, mid-epoch resume,
the real digit task set (MNIST, UCI digits, FSDD spectrograms), Office-style image tasks, argument checks."""

from __future__ import annotations

import sys

import pickle
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lightning_sparse.data import MultiTaskDataModule
from lightning_sparse.data.domain import (
    MULTITASK_SPLITS,
    OFFICE31_DOMAINS,
    FSDDSpeakerDomain,
    MNISTDomain,
    MultiTaskPairs,
    Office31,
    OfficeHome,
    TaskSample,
    UCIDigitsDomain,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import resume_loader_mid_epoch  # noqa: E402

MNIST = Path("/work/shared/data/mnist-10k/mnist10k.npz")
FSDD = Path("/work/shared/data/fsdd")
SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
TRAINING = ("train", "val", "trval")


def _dm(seed=0, batch_size=16, sizes=(150, 250), **kwargs):
    tasks = [UCIDigitsDomain(image_size=8, max_samples=n, seed=k) for k, n in enumerate(sizes)]
    return MultiTaskDataModule(tasks, task_names=[f"uci{k}" for k in range(len(sizes))], batch_size=batch_size,
                               seed=seed, **kwargs)


def _check_splits(dm, fractions=(0.2, 0.2)):
    """Disjoint, stratified splits; trval = train + val; labels of each split are the domain's."""
    val_fraction, test_fraction = fractions
    for k in range(dm.num_tasks):
        pos = dm.task_positions[k]
        train, val, test, trval = (set(pos[s].tolist()) for s in ("train", "val", "test", "trval"))
        assert not (train & val) and not (train & test) and not (val & test)
        assert trval == train | val
        whole = dm.task_splits[k]["test"].dataset.labels  # the domain's labels (evaluation dataset)
        assert train | val | test == set(range(len(whole)))
        for s in MULTITASK_SPLITS:
            data = dm.task_splits[k][s]
            assert len(data) == len(pos[s]) and np.array_equal(data.positions, pos[s])
            assert np.array_equal(data.labels, whole[pos[s]])
        counts = np.bincount(whole, minlength=dm.num_classes_per_task[k])
        for s, share in (("test", test_fraction), ("val", val_fraction), ("train", 1 - val_fraction - test_fraction)):
            got = np.bincount(whole[pos[s]], minlength=len(counts))
            assert np.all(np.abs(got - share * counts) <= 2), (k, s, got, share * counts)
        assert len(pos["test"]) == round(test_fraction * len(whole))
        assert len(pos["val"]) == round(val_fraction * len(whole))


def _check_training_batch(dm, batch, batch_size=None):
    assert set(batch) == set(TRAINING)
    for s in TRAINING:
        assert isinstance(batch[s], list) and len(batch[s]) == dm.num_tasks
        for k, pair in enumerate(batch[s]):
            assert isinstance(pair, tuple)
            x, y = pair
            assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.ndim == 4 and x.shape[1] == dm.in_channels
            assert len(x) == len(y) and (batch_size is None or len(x) == batch_size)
            assert 0 <= int(y.min()) and int(y.max()) < dm.num_classes_per_task[k]


# ---------------------------------------------------------------------------------------- splits and batches
def test_splits_are_disjoint_stratified_and_trval_is_train_plus_val():
    dm = _dm()
    assert dm.num_tasks == 2 and dm.task_names == ["uci0", "uci1"] and dm.num_classes_per_task == [10, 10]
    assert dm.in_channels == 1 and dm.class_names[0] == [str(d) for d in range(10)]
    dm.setup("fit")
    _check_splits(dm)
    assert [len(dm.task_splits[k]["trval"]) for k in range(2)] == [120, 200]
    other = _dm(val_fraction=0.1, test_fraction=0.3)
    other.setup("fit")
    _check_splits(other, (0.1, 0.3))
    assert [len(other.task_splits[k]["train"]) for k in range(2)] == [90, 150]


def test_training_batches_hold_every_task_and_split():
    dm = _dm(batch_size=8)
    dm.setup("fit")
    paired = dm.train_dataset
    assert isinstance(paired, MultiTaskPairs) and len(paired) == max(len(t["trval"]) for t in dm.task_splits)
    item = paired[3]
    assert isinstance(item["train"][0], TaskSample) and isinstance(item["val"][1].y, int)
    for k in range(2):
        for s in TRAINING:
            data, perm = dm.task_splits[k][s], paired.perm[k][s]
            assert sorted(perm.tolist()) == list(range(len(data)))
            for i in (0, 1, len(data) - 1, len(data), len(paired) - 1):
                x, y = paired[i][s][k]
                want_x, want_y = data[int(perm[i % len(data)])]
                assert torch.equal(x, want_x) and y == want_y
    batches = list(dm.train_dataloader())
    assert len(batches) == -(-len(paired) // 8)
    for batch in batches:
        _check_training_batch(dm, batch)
    x, y = batches[0]["trval"][1]
    assert x.shape == (8, 1, 8, 8) and isinstance(batches[0]["train"][1], TaskSample)


def test_training_and_evaluation_transforms():
    """train / trval items use the training transform, val / test items the evaluation one."""
    dm = MultiTaskDataModule([UCIDigitsDomain(image_size=8, max_samples=100, augment=True)], batch_size=4)
    dm.setup("fit")
    splits = dm.task_splits[0]
    for s, train in (("train", True), ("trval", True), ("val", False), ("test", False)):
        assert (splits[s].dataset.augment is not None) == train, s


def test_val_and_test_loaders_are_one_per_task():
    dm = _dm(batch_size=32)
    dm.setup("fit")
    for loaders, name in ((dm.val_dataloader(), "val"), (dm.test_dataloader(), "test")):
        assert isinstance(loaders, list) and len(loaders) == dm.num_tasks
        for k, loader in enumerate(loaders):
            xs, ys = zip(*[(x, y) for x, y in loader])
            y = torch.cat(ys)
            assert torch.cat(xs).shape[1:] == (1, 8, 8) and y.dtype == torch.int64
            assert y.tolist() == dm.task_splits[k][name].labels.tolist()  # in order, the whole split
    fresh = _dm()
    with pytest.raises(RuntimeError, match=r"setup\(\)` must run before `val_dataloader"):
        fresh.val_dataloader()


def _batches(dm, epoch=0):
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


def _equal(a, b):
    return all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for s in TRAINING for p, q in zip(a[s], b[s]))


def test_epochs_differ_and_seeds_repeat():
    a, b, c = _dm(seed=3), _dm(seed=3), _dm(seed=4)
    first, again = _batches(a, 0), _batches(b, 0)
    assert len(first) == len(again) and all(_equal(x, y) for x, y in zip(first, again))
    assert not _equal(first[0], _batches(a, 1)[0])
    c.setup("fit")
    assert not np.array_equal(a.task_positions[0]["test"], c.task_positions[0]["test"])
    assert not np.array_equal(a.train_dataset.perm[1]["val"], c.train_dataset.perm[1]["val"])


def test_mid_epoch_loader_state_round_trips():
    full, seen, rest = resume_loader_mid_epoch(_dm, epoch=2, seen_batches=3)
    assert len(seen) + len(rest) == len(full)
    assert all(_equal(got, want) for got, want in zip(seen + rest, full))


class _Heads(L.LightningModule):
    def __init__(self, num_classes_per_task) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Sequential(nn.Flatten(), nn.Linear(64, k)) for k in num_classes_per_task)
        self.val_tasks: set[int] = set()

    def training_step(self, batch, batch_idx):
        return sum(nn.functional.cross_entropy(head(x), y) for s in TRAINING
                   for head, (x, y) in zip(self.heads, batch[s]))

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        x, y = batch
        self.val_tasks.add(dataloader_idx)
        self.log("val_loss", nn.functional.cross_entropy(self.heads[dataloader_idx](x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_trainer_fits_with_one_val_loader_per_task(tmp_path):
    dm = _dm()
    model = _Heads(dm.num_classes_per_task)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path, accelerator="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few workers, few batches
        trainer.fit(model, datamodule=dm)
    assert model.val_tasks == {0, 1} and trainer.global_step == 3


def test_hyperparameters_stay_plain_and_rebuild_the_tasks():
    dm = _dm(sizes=(100, 120, 140))
    tasks = dict(dm.hparams)["tasks"]
    assert [t["init_args"]["max_samples"] for t in tasks] == [100, 120, 140]
    rebuilt = MultiTaskDataModule(**dict(dm.hparams))
    assert rebuilt.task_names == dm.task_names and [repr(t) for t in rebuilt.tasks] == [repr(t) for t in dm.tasks]
    rebuilt.setup("fit")
    dm.setup("fit")
    assert all(np.array_equal(a["test"], b["test"]) for a, b in zip(rebuilt.task_positions, dm.task_positions))
    assert pickle.loads(pickle.dumps(dm)).num_tasks == 3


# ---------------------------------------------------------------------------------------- image tasks
def _office31_tree(root: Path, classes=("back_pack", "bike", "mug"), per_class=5) -> None:
    for d, domain in enumerate(OFFICE31_DOMAINS):
        for k, c in enumerate(classes):
            folder = root / domain / "images" / c
            folder.mkdir(parents=True)
            for i in range(per_class + d):  # a different size per domain
                Image.new("RGB", (10 + i, 12), (40 * k, 20 * i, 30 * d)).save(folder / f"{i}.jpg")


def test_office31_domains_as_three_tasks(tmp_path):
    _office31_tree(tmp_path)
    tasks = [Office31(str(tmp_path), d, image_size=8, resize_size=10) for d in OFFICE31_DOMAINS]
    dm = MultiTaskDataModule(tasks, batch_size=4)  # names default to the domains'
    assert dm.task_names == ["amazon", "dslr", "webcam"] and dm.num_classes_per_task == [31, 31, 31]
    assert dm.in_channels == 3 and all(t._cache is None for t in tasks)  # nothing read at construction
    with pytest.warns(UserWarning, match="28 of 31 classes have no images"):
        dm.setup("fit")
    assert [len(dm.task_splits[k]["test"]) for k in range(3)] == [3, 4, 4]  # round(0.2 * 15 / 18 / 21)
    assert len(dm.train_dataset) == max(len(t["trval"]) for t in dm.task_splits) == 17
    for k in range(3):
        assert set(dm.task_splits[k]["test"].labels.tolist()) == {0, 1, 17}  # back_pack, bike, mug
    _check_splits(dm)
    batch = next(iter(dm.train_dataloader()))
    _check_training_batch(dm, batch, 4)
    assert batch["val"][2][0].shape == (4, 3, 8, 8)
    assert [len(list(loader)) for loader in dm.test_dataloader()] == [1, 1, 1]


@pytest.mark.filterwarnings("ignore:.*classes have no images")
def test_tasks_with_different_class_counts(tmp_path):
    _office31_tree(tmp_path)
    for k, c in enumerate(("Alarm_Clock", "Webcam")):
        for i in range(6):
            (tmp_path / "home" / "Art" / c).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (9, 9), (20 * i, 90, 40 * k)).save(tmp_path / "home" / "Art" / c / f"{i}.png")
    dm = MultiTaskDataModule([Office31(str(tmp_path), "dslr", 8, 10), OfficeHome(str(tmp_path / "home"), "Art", 8, 10)],
                             batch_size=3)
    assert dm.task_names == ["dslr", "Art"] and dm.num_classes_per_task == [31, 65]
    dm.setup("fit")
    assert sorted(set(dm.task_splits[1]["trval"].labels.tolist())) == [0, 64]
    for batch in dm.train_dataloader():
        _check_training_batch(dm, batch)


def test_paper_scale_tasks_construct_without_their_data():
    dm = MultiTaskDataModule([OfficeHome("/nonexistent", d) for d in ("Art", "Clipart", "Product", "Real_World")])
    assert dm.num_tasks == 4 and dm.num_classes_per_task == [65] * 4 and dm.in_channels == 3
    assert MultiTaskDataModule(**dict(dm.hparams)).task_names == ["Art", "Clipart", "Product", "Real_World"]
    with pytest.raises(FileNotFoundError, match="/nonexistent"):
        dm.setup("fit")


# ---------------------------------------------------------------------------------------- the real digit task set
@pytest.fixture(scope="module")
def digit_tasks():
    if not MNIST.is_file() or not (FSDD / "recordings").is_dir():
        pytest.skip(f"{MNIST} or {FSDD}/recordings is missing")
    return [MNISTDomain(str(MNIST), image_size=16, max_samples=500), UCIDigitsDomain(image_size=16, max_samples=400),
            FSDDSpeakerDomain(str(FSDD), speakers=SPEAKERS, n_mels=16, frames=16)]


def test_the_digit_task_set_from_the_real_files(digit_tasks):
    dm = MultiTaskDataModule(digit_tasks, task_names=["mnist", "uci", "fsdd"], batch_size=16)
    assert dm.num_tasks == 3 and dm.num_classes_per_task == [10, 10, 10] and dm.in_channels == 1
    dm.setup("fit")
    sizes = [len(dm.task_splits[k]["trval"]) + len(dm.task_splits[k]["test"]) for k in range(3)]
    assert sizes == [500, 400, 3000]
    assert len(dm.train_dataset) == 2400  # the largest trval split: FSDD's 80 %
    _check_splits(dm)
    fsdd_counts = np.bincount(dm.task_splits[2]["test"].labels, minlength=10)
    assert fsdd_counts.tolist() == [60] * 10  # 300 recordings per digit, stratified exactly
    loader = dm.train_dataloader()
    for b, batch in enumerate(loader):
        _check_training_batch(dm, batch, 16)
        for s in TRAINING:
            assert all(x.shape[1:] == (1, 16, 16) for x, _ in batch[s])  # FSDD images too
        if b == 2:
            break
    x, y = dm.task_splits[2]["val"][0]
    assert x.shape == (1, 16, 16) and 0 <= y <= 9
    for loaders in (dm.val_dataloader(), dm.test_dataloader()):
        assert len(loaders) == 3
        for loader in loaders:
            x, y = next(iter(loader))
            assert x.shape == (16, 1, 16, 16) and y.dtype == torch.int64


# ---------------------------------------------------------------------------------------- arguments
def test_bad_arguments_name_the_argument():
    uci = UCIDigitsDomain(image_size=8, max_samples=100)
    cases = [
        (dict(tasks=[]), "`tasks` must be a non-empty list"),
        (dict(tasks=uci), "`tasks` must be a non-empty list"),
        (dict(tasks=[uci, "uci"]), r"`tasks\[1\]` must be a Domain"),
        (dict(task_names=["a"]), "`task_names` must name each of the 2 tasks once, got 1 names"),
        (dict(task_names=["a", "a"]), "`task_names` must be distinct"),
        (dict(task_names="ab"), "`task_names` must be None or a list of non-empty strings"),
        (dict(task_names=["a", ""]), "`task_names` must be None or a list of non-empty strings"),
        (dict(split="validation"), "`split` must be one of"),
        (dict(val_fraction=0.0), r"`val_fraction` must be a number in \(0, 1\)"),
        (dict(test_fraction=1.0), r"`test_fraction` must be a number in \(0, 1\)"),
        (dict(val_fraction=0.5, test_fraction=0.5), "`val_fraction` \\+ `test_fraction` must be < 1"),
        (dict(batch_size=0), "`batch_size`"),
        (dict(return_index=True), "`return_index` must be False"),
    ]
    for kwargs, message in cases:
        kwargs = {"tasks": [uci, uci], **kwargs}
        with pytest.raises(ValueError, match=message):
            MultiTaskDataModule(**kwargs)
    fsdd_like = UCIDigitsDomain(image_size=8)
    fsdd_like.in_channels = 3
    with pytest.raises(ValueError, match=r"`tasks` must all have the same `in_channels`.*\[1, 3\]"):
        MultiTaskDataModule([uci, fsdd_like])
    tiny = MultiTaskDataModule([UCIDigitsDomain(image_size=8, max_samples=10)], val_fraction=0.01)
    with pytest.raises(ValueError, match="`val_fraction` leaves the val split of task 'task0' empty"):
        tiny.setup("fit")
