"""DomainAdaptationDataModule: the batch contract (training dicts without target labels,
evaluation labels 0..K with K = unknown), pairing, epochs, seeds, mid-epoch resume, argument checks."""

from __future__ import annotations

import sys

import io
import pickle
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from lightning_sparse.data import DomainAdaptationDataModule
from lightning_sparse.data.domain import (
    OFFICE31_CLASSES,
    FSDDSpeakerDomain,
    ImageListDomain,
    MNISTDomain,
    Office31,
    OfficeHome,
    UCIDigitsDomain,
    VisDA2017,
    build_domain,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import resume_loader_mid_epoch  # noqa: E402

MNIST = Path("/work/shared/data/mnist-10k/mnist10k.npz")
FSDD = Path("/work/shared/data/fsdd")
KEYS = {"source", "source_label", "target"}


def _dm(setting="universal", seed=0, batch_size=16, **kwargs):
    kwargs.setdefault("benchmark", "digits")
    return DomainAdaptationDataModule(UCIDigitsDomain(image_size=8, max_samples=kwargs.pop("n_source", 400)),
                                      UCIDigitsDomain(image_size=8, max_samples=kwargs.pop("n_target", 300), seed=1),
                                      setting=setting, batch_size=batch_size, seed=seed, **kwargs)


def _global(dataset, j):
    """The global label of item ``j`` of a filtered dataset (read from the domain's dataset)."""
    return int(dataset.dataset.labels[dataset.positions[j]])


@pytest.mark.parametrize("setting", ["closed", "partial", "open", "universal"])
def test_evaluation_labels_code_target_private_classes_as_unknown(setting):
    dm = _dm(setting)
    split = dm.split
    assert dm.num_classes == dm.unknown_label == len(split.source_classes) and dm.setting == setting
    dm.setup("fit")
    for data in (dm.val_dataset, dm.test_dataset):
        ys = data.labels
        assert ys.min() >= 0 and ys.max() <= dm.num_classes
        for j in range(len(data)):
            g = _global(data, j)
            assert g in split.target_classes
            assert ys[j] == (dm.num_classes if g in split.target_private else split.source_index[g])
        assert (ys == dm.num_classes).any() == bool(split.target_private)
    x, y = next(iter(dm.val_dataloader()))
    assert x.shape == (16, 1, 8, 8) and y.dtype == torch.int64
    assert sorted(set(dm.source_eval.labels.tolist())) == list(range(dm.num_classes))
    assert len(dm.source_eval) == len(dm.source_train)


def test_training_batches_hold_source_labels_only():
    dm = _dm("universal")
    dm.setup("fit")
    assert set(dm.train_dataset[0]) == KEYS
    for batch in dm.train_dataloader():
        assert set(batch) == KEYS  # no target label anywhere in the batch
        xs, ys, xt = batch["source"], batch["source_label"], batch["target"]
        assert xs.dtype == xt.dtype == torch.float32 and ys.dtype == torch.int64
        assert xs.shape[1:] == xt.shape[1:] == (1, 8, 8) and len(xs) == len(ys) == len(xt)
        assert 0 <= int(ys.min()) and int(ys.max()) < dm.num_classes
    global_source = {_global(dm.source_train, j) for j in range(len(dm.source_train))}
    assert global_source == set(dm.split.source_classes)  # private target classes never in the source


def test_paired_dataset_length_and_indices():
    for setting, larger in (("partial", "source"), ("open", "target")):
        dm = _dm(setting, n_source=400, n_target=400)
        dm.setup("fit")
        ns, nt = len(dm.source_train), len(dm.target_train)
        assert (ns > nt) == (larger == "source")
        paired = dm.train_dataset
        assert len(paired) == max(ns, nt)
        assert sorted(paired.perm.tolist()) == list(range(nt))
        for i in (0, 1, nt - 1, len(paired) - 1):
            item = paired[i]
            xs, ys = dm.source_train[i % ns]
            assert torch.equal(item["source"], xs) and item["source_label"] == ys
            assert torch.equal(item["target"], dm.target_train[int(paired.perm[i % nt])][0])


def _batches(dm, epoch=0):
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_epochs_differ_and_seeds_repeat():
    a, b, c = _dm(seed=3), _dm(seed=3), _dm(seed=4)
    for dm in (a, b, c):
        dm.setup("fit")
    first, again = _batches(a, 0), _batches(b, 0)
    assert all(torch.equal(x["target"], y["target"]) and torch.equal(x["source_label"], y["source_label"])
               for x, y in zip(first, again))
    assert not torch.equal(first[0]["target"], _batches(a, 1)[0]["target"])
    assert not np.array_equal(a.train_dataset.perm, c.train_dataset.perm)


def test_mid_epoch_loader_state_round_trips():
    full, seen, rest = resume_loader_mid_epoch(_dm, epoch=2, seen_batches=3)
    assert len(seen) + len(rest) == len(full)
    for got, want in zip(seen + rest, full):
        assert all(torch.equal(got[k], want[k]) for k in KEYS)


class _Tiny(L.LightningModule):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))
        self.seen_keys: set[str] = set()

    def training_step(self, batch, batch_idx):
        self.seen_keys |= set(batch)
        return nn.functional.cross_entropy(self.net(batch["source"]), batch["source_label"]) + 0 * self.net(
            batch["target"]).sum()

    def validation_step(self, batch, batch_idx):
        x, y = batch
        assert int(y.max()) <= self.trainer.datamodule.unknown_label

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_trainer_fits_on_the_batches(tmp_path):
    dm = _dm("open")
    model = _Tiny(dm.num_classes)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(model, datamodule=dm)
    assert model.seen_keys == KEYS and trainer.global_step == 3


def test_hyperparameters_stay_plain_and_rebuild_the_domains():
    dm = _dm("partial")
    assert dm.hparams["source"]["class_path"].endswith("UCIDigitsDomain")
    buffer = io.BytesIO()
    torch.save({"datamodule_hyper_parameters": dict(dm.hparams)}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["datamodule_hyper_parameters"]
    rebuilt = DomainAdaptationDataModule(**loaded)
    assert rebuilt.num_classes == dm.num_classes and repr(rebuilt.target) == repr(dm.target)
    assert build_domain("source", loaded["target"]).seed == 1
    dm.setup("fit")
    copy = pickle.loads(pickle.dumps(dm))  # DDP spawn and worker processes pickle it
    assert copy.split == dm.split and len(copy.train_dataset) == len(dm.train_dataset)


def test_class_lists_by_name_or_index_and_defaults():
    uci = UCIDigitsDomain(image_size=8, max_samples=100)
    dm = DomainAdaptationDataModule(uci, uci, source_classes=["0", "1", "2"], target_classes=[1, 0])
    assert dm.setting == "partial" and dm.num_classes == 3 and dm.class_names == ["0", "1", "2"]
    assert DomainAdaptationDataModule(uci, uci).setting == "closed"
    assert DomainAdaptationDataModule(uci, uci, source_classes=[4, 1], target_classes=[1, 4, 9],
                                      setting="open").split.source_index == {1: 0, 4: 1}
    dm = DomainAdaptationDataModule(uci, uci, source_split="train", target_split="train", test_split="test")
    dm.setup("test")
    assert len(dm.val_dataset) == 80 and len(dm.test_dataset) == 20


def test_bad_arguments_name_the_argument(tmp_path):
    uci = UCIDigitsDomain(image_size=8, max_samples=100)
    cases = [
        (dict(return_index=True), "`return_index`"),
        (dict(source_classes=range(10), target_classes=range(5), setting="closed"), "`setting` must be 'partial'"),
        (dict(benchmark="digits"), "`setting` must be one of"),
        (dict(benchmark="digits", setting="open", source_classes=[0]), "`source_classes` and `target_classes` must"),
        (dict(benchmark="office31", setting="closed"), "`benchmark` 'office31' uses classes up to 30"),
        (dict(benchmark="office-31", setting="closed"), "`benchmark` must be one of"),
        (dict(setting="semi"), "`setting` must be one of"),
        (dict(source_classes=["0", "ten"]), "`source_classes` must name classes"),
        (dict(target_classes=[0, 10]), r"`target_classes` must hold class indices in 0\.\.9"),
        (dict(target_classes=[0, 0]), "`target_classes` must not repeat"),
        (dict(source_classes="0123"), "`source_classes` must be None or a non-empty list"),
        (dict(source_classes=[0, 1], target_classes=[2, 3]), "must share at least one class"),
        (dict(source_split="validation"), "`source_split` must be one of"),
        (dict(test_split="val"), "`test_split` must be one of"),
        (dict(batch_size=0), "`batch_size`"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            DomainAdaptationDataModule(uci, uci, **kwargs)
    with pytest.raises(ValueError, match="`source` must be a Domain"):
        DomainAdaptationDataModule("uci", uci)
    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "0.png")
    (tmp_path / "list.txt").write_text("a/0.png 2\n")
    with pytest.raises(ValueError, match=r"`source` and `target` must have the same `classes` list, but the source "
                                         r"has 10 classes and the target 3"):
        DomainAdaptationDataModule(uci, ImageListDomain(str(tmp_path), "list.txt"))


@pytest.mark.parametrize("setting", ["partial", "open"])
def test_paper_scale_domains_construct_without_their_data(setting):
    dm = DomainAdaptationDataModule(Office31("/nonexistent", "amazon"), Office31("/nonexistent", "webcam"),
                                    benchmark="office31", setting=setting)
    assert dm.num_classes == (31 if setting == "partial" else 10) and dm.in_channels == 3
    assert dm.class_names == list(OFFICE31_CLASSES[:dm.num_classes]) and dm.source._cache is None
    rebuilt = DomainAdaptationDataModule(**dict(dm.hparams))  # the checkpoint's hyper-parameters, still no data
    assert rebuilt.split == dm.split and repr(rebuilt.source) == repr(dm.source)
    with pytest.raises(FileNotFoundError, match=r"Office-31 'amazon': found neither /nonexistent/image_list/amazon"):
        dm.setup("fit")
    assert dm.train_dataset is None
    copy = pickle.loads(pickle.dumps(dm))
    assert copy.num_classes == dm.num_classes
    for source, target, benchmark, k in (
            (OfficeHome("/nonexistent", "Art"), OfficeHome("/nonexistent", "Real_World"), "officehome", 65),
            (VisDA2017("/nonexistent", "train"), VisDA2017("/nonexistent", "validation"), "visda", 12)):
        other = DomainAdaptationDataModule(source, target, benchmark=benchmark, setting=setting)
        assert other.source.num_classes == k and other.num_classes == len(other.split.source_classes)
        with pytest.raises(FileNotFoundError, match="/nonexistent"):
            other.setup("fit")


def test_image_domains_read_their_files_at_setup(tmp_path):
    for domain in ("amazon", "webcam"):
        for k, c in enumerate(("back_pack", "bike", "mug")):
            folder = tmp_path / domain / "images" / c
            folder.mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (10, 12), (40 * k, 20 * i, 90)).save(folder / f"{i}.jpg")
    source, target = Office31(str(tmp_path), "amazon", 8, 10), Office31(str(tmp_path), "webcam", 8, 10)
    dm = DomainAdaptationDataModule(source, target, source_classes=["back_pack", "bike", "mug"],
                                    target_classes=["bike", "mug"], batch_size=2)
    assert dm.setting == "partial" and source._cache is None and target._cache is None
    with pytest.warns(UserWarning, match="28 of 31 classes have no images"):
        dm.setup("fit")
    assert source._cache is not None and target._cache is not None
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"].shape == batch["target"].shape == (2, 3, 8, 8)
    assert sorted(dm.val_dataset.labels.tolist()) == [1, 1, 2, 2]


def test_mnist_to_uci_digits():
    if not MNIST.is_file():
        pytest.skip(f"{MNIST} is missing")
    dm = DomainAdaptationDataModule(MNISTDomain(str(MNIST), image_size=16, max_samples=600),
                                    UCIDigitsDomain(image_size=16), benchmark="digits", setting="open", batch_size=32)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"].shape == batch["target"].shape == (32, 1, 16, 16)
    assert len(dm.train_dataset) == len(dm.target_train) == 1797 and dm.num_classes == 6
    ys = torch.cat([y for _, y in dm.test_dataloader()])
    assert int(ys.max()) == 6 and int((ys == 6).sum()) == int(np.isin(dm.target_train.labels, [6, 7, 8, 9]).sum())


def test_fsdd_speaker_to_speaker():
    if not (FSDD / "recordings").is_dir():
        pytest.skip(f"{FSDD} is missing")
    dm = DomainAdaptationDataModule(FSDDSpeakerDomain(str(FSDD), ["george"]), FSDDSpeakerDomain(str(FSDD), ["theo"]),
                                    source_split="train", target_split="train", test_split="test",
                                    benchmark="digits", setting="universal", batch_size=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"].shape == batch["target"].shape == (8, 1, 32, 32)
    assert len(dm.test_dataset) == 40 and set(dm.test_dataset.labels.tolist()) == {0, 1, 2, 3, 4, 7}
