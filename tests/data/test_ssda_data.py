"""SemiSupervisedDADataModule: MME's labelled / validation / unlabelled target parts (exact counts per
class, disjoint, seeded), training batches without labels for the unlabelled part, test = the
unlabelled part with labels, epochs, mid-epoch resume, real digit domains, Office images, argument checks."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_sparse.data import SemiSupervisedDADataModule
from lightning_sparse.data.domain import (
    SSDA_KEYS,
    FSDDSpeakerDomain,
    ImageListDomain,
    MNISTDomain,
    Office31,
    SemiSupervisedPairs,
    UCIDigitsDomain,
)

MNIST = Path("/work/shared/data/mnist-10k/mnist10k.npz")
FSDD = Path("/work/shared/data/fsdd")
KEYS = set(SSDA_KEYS)


def _dm(labeled_per_class=3, val_per_class=3, seed=0, batch_size=16, n_target=200, **kwargs):
    return SemiSupervisedDADataModule(UCIDigitsDomain(image_size=8, max_samples=kwargs.pop("n_source", 300)),
                                      UCIDigitsDomain(image_size=8, max_samples=n_target, seed=1),
                                      labeled_per_class=labeled_per_class, val_per_class=val_per_class,
                                      batch_size=batch_size, seed=seed, **kwargs)


def _check_parts(dm):
    """Exact counts per class, disjoint parts covering the target, labels as the domain's."""
    pos = dm.target_positions
    index = dm.split.source_index  # global label -> label 0..K-1 (the identity for all classes)
    whole = np.asarray([index.get(int(g), -1) for g in dm.test_dataset.dataset.labels])  # the target domain's
    labeled, val, unlabeled = (set(pos[p].tolist()) for p in ("labeled", "val", "unlabeled"))
    assert not (labeled & val) and not (labeled & unlabeled) and not (val & unlabeled)
    assert labeled | val | unlabeled == set(np.flatnonzero(whole >= 0).tolist())
    counts = np.bincount(whole[whole >= 0], minlength=dm.num_classes)
    k = dm.num_classes
    assert np.bincount(whole[pos["labeled"]], minlength=k).tolist() == [dm.labeled_per_class] * k
    assert np.bincount(whole[pos["val"]], minlength=k).tolist() == [dm.val_per_class] * k
    assert np.bincount(whole[pos["unlabeled"]], minlength=k).tolist() == (
        counts - dm.labeled_per_class - dm.val_per_class).tolist()
    parts = ((dm.target_labeled, "labeled"), (dm.target_unlabeled, "unlabeled"), (dm.test_dataset, "unlabeled"))
    for data, part in parts:
        assert np.array_equal(data.positions, pos[part]) and np.array_equal(data.labels, whole[pos[part]])
    if dm.val_per_class:
        assert np.array_equal(dm.val_dataset.positions, pos["val"])


@pytest.mark.parametrize("shots", [1, 3])
def test_exact_counts_per_class_and_disjoint_parts(shots):
    dm = _dm(labeled_per_class=shots)
    assert dm.num_classes == 10 and dm.setting == "closed" and dm.in_channels == 1
    dm.setup("fit")
    _check_parts(dm)
    assert len(dm.target_labeled) == 10 * shots and len(dm.val_dataset) == 30
    assert len(dm.test_dataset) == len(dm.target_unlabeled) == 200 - 10 * shots - 30
    assert len(dm.source_train) == 300


def test_training_batches_carry_no_label_of_the_unlabelled_part():
    dm = _dm(batch_size=8)
    dm.setup("fit")
    paired = dm.train_dataset
    assert isinstance(paired, SemiSupervisedPairs) and set(paired[0]) == KEYS
    assert len(paired) == max(len(dm.source_train), len(dm.target_labeled), len(dm.target_unlabeled)) == 300
    nl, nu = len(dm.target_labeled), len(dm.target_unlabeled)
    assert sorted(paired.perm_labeled.tolist()) == list(range(nl))
    assert sorted(paired.perm_unlabeled.tolist()) == list(range(nu))
    for i in (0, 1, nl, nu - 1, nu, len(paired) - 1):
        item = paired[i]
        xs, ys = dm.source_train[i % len(dm.source_train)]
        xl, yl = dm.target_labeled[int(paired.perm_labeled[i % nl])]
        xu, _ = dm.target_unlabeled[int(paired.perm_unlabeled[i % nu])]
        assert torch.equal(item["source"], xs) and item["source_label"] == ys
        assert torch.equal(item["target"], xl) and item["target_label"] == yl  # cycled labelled target
        assert torch.equal(item["target_unlabeled"], xu)
    for batch in dm.train_dataloader():
        assert set(batch) == KEYS  # no label of the unlabelled target part anywhere
        xs, ys, xt, yt, xu = (batch[k] for k in SSDA_KEYS)
        assert xs.dtype == xt.dtype == xu.dtype == torch.float32 and ys.dtype == yt.dtype == torch.int64
        assert xs.shape[1:] == xt.shape[1:] == xu.shape[1:] == (1, 8, 8)
        assert len(xs) == len(ys) == len(xt) == len(yt) == len(xu)
        assert 0 <= int(torch.cat([ys, yt]).min()) and int(torch.cat([ys, yt]).max()) < dm.num_classes


def test_validation_and_test_batches():
    dm = _dm(batch_size=32)
    dm.setup("fit")
    val = [(x, y) for x, y in dm.val_dataloader()]
    test = [(x, y) for x, y in dm.test_dataloader()]
    assert torch.cat([y for _, y in val]).tolist() == dm.val_dataset.labels.tolist()
    assert torch.cat([y for _, y in test]).tolist() == dm.target_unlabeled.labels.tolist()  # the unlabelled part
    assert torch.cat([x for x, _ in test]).shape == (len(dm.target_unlabeled), 1, 8, 8)
    no_val = _dm(val_per_class=0)
    no_val.setup("fit")
    assert no_val.val_dataset is None and no_val.val_dataloader() == []
    assert len(no_val.test_dataset) == 200 - 30


def test_draws_follow_the_seed():
    a, b, c = _dm(seed=5), _dm(seed=5), _dm(seed=6)
    for dm in (a, b, c):
        dm.setup("fit")
    assert all(np.array_equal(a.target_positions[p], b.target_positions[p]) for p in a.target_positions)
    assert not np.array_equal(a.target_positions["labeled"], c.target_positions["labeled"])
    first, again = list(a.train_dataloader()), list(b.train_dataloader())
    assert all(torch.equal(x[k], y[k]) for x, y in zip(first, again) for k in KEYS)
    loader = a.train_dataloader()
    loader.sampler.set_epoch(1)
    assert not torch.equal(next(iter(loader))["target_unlabeled"], first[0]["target_unlabeled"])


def _batches(dm, epoch):
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_mid_epoch_loader_state_round_trips():
    full = _batches(_dm(), 2)
    first = _dm()
    first.setup("fit")
    loader = first.train_dataloader()
    loader.sampler.set_epoch(2)
    it = iter(loader)
    seen = [next(it) for _ in range(4)]
    state = loader.state_dict()
    assert state["epoch"] == 2 and state["batches"] == 4
    resumed_dm = _dm()
    resumed_dm.setup("fit")
    resumed = resumed_dm.train_dataloader()
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(2)
    rest = list(resumed)
    assert len(seen) + len(rest) == len(full)
    assert all(torch.equal(got[k], want[k]) for got, want in zip(seen + rest, full) for k in KEYS)


def test_hyperparameters_rebuild_the_module():
    dm = _dm(labeled_per_class=1)
    rebuilt = SemiSupervisedDADataModule(**dict(dm.hparams))
    assert rebuilt.labeled_per_class == 1 and rebuilt.val_per_class == 3 and repr(rebuilt.target) == repr(dm.target)
    rebuilt.setup("fit")
    dm.setup("fit")
    assert np.array_equal(rebuilt.target_positions["labeled"], dm.target_positions["labeled"])
    assert pickle.loads(pickle.dumps(dm)).num_classes == 10


def test_office_images_with_a_class_subset(tmp_path):
    classes = ("back_pack", "bike", "mug")
    for domain, per_class in (("amazon", 3), ("webcam", 6)):
        for k, c in enumerate(classes):
            folder = tmp_path / domain / "images" / c
            folder.mkdir(parents=True)
            for i in range(per_class + k):
                Image.new("RGB", (10, 12 + i), (40 * k, 20 * i, 90)).save(folder / f"{i}.jpg")
    (tmp_path / "webcam" / "images" / "pen").mkdir()  # a target class left out: filtered away
    Image.new("RGB", (10, 12)).save(tmp_path / "webcam" / "images" / "pen" / "0.jpg")
    source, target = Office31(str(tmp_path), "amazon", 8, 10), Office31(str(tmp_path), "webcam", 8, 10)
    dm = SemiSupervisedDADataModule(source, target, labeled_per_class=1, val_per_class=2, batch_size=4,
                                    source_classes=list(classes), target_classes=list(classes))
    assert dm.num_classes == 3 and dm.class_names == list(classes) and target._cache is None
    with pytest.warns(UserWarning, match="classes have no images"):
        dm.setup("fit")
    _check_parts(dm)
    assert 19 in dm.test_dataset.dataset.labels and len(dm.test_dataset.dataset.labels) == 22  # pen is there
    assert np.bincount(dm.test_dataset.labels).tolist() == [3, 4, 5]  # 6, 7, 8 images minus 1 + 2
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == KEYS and batch["target"].shape == batch["target_unlabeled"].shape == (4, 3, 8, 8)
    assert int(batch["target_label"].max()) < 3 and len(dm.train_dataset) == 12


def test_mnist_to_uci_digits_three_shot():
    if not MNIST.is_file():
        pytest.skip(f"{MNIST} is missing")
    dm = SemiSupervisedDADataModule(MNISTDomain(str(MNIST), image_size=16, max_samples=600),
                                    UCIDigitsDomain(image_size=16), labeled_per_class=3, batch_size=32)
    dm.setup("fit")
    _check_parts(dm)
    assert len(dm.test_dataset) == 1797 - 60 and len(dm.train_dataset) == 1737
    batch = next(iter(dm.train_dataloader()))
    assert batch["source"].shape == batch["target"].shape == batch["target_unlabeled"].shape == (32, 1, 16, 16)


def test_fsdd_speaker_to_speaker_one_shot():
    if not (FSDD / "recordings").is_dir():
        pytest.skip(f"{FSDD} is missing")
    dm = SemiSupervisedDADataModule(FSDDSpeakerDomain(str(FSDD), ["george"], n_mels=16, frames=16),
                                    FSDDSpeakerDomain(str(FSDD), ["theo"], n_mels=16, frames=16),
                                    labeled_per_class=1, target_split="train", batch_size=8)
    dm.setup("fit")
    _check_parts(dm)
    assert len(dm.target_labeled) == 10 and len(dm.test_dataset) == 450 - 40  # 45 training takes per digit
    assert next(iter(dm.train_dataloader()))["target"].shape == (8, 1, 16, 16)


def test_bad_arguments_name_the_argument(tmp_path):
    uci = UCIDigitsDomain(image_size=8, max_samples=100)
    cases = [
        (dict(labeled_per_class=0), "`labeled_per_class` must be a positive integer, got 0"),
        (dict(labeled_per_class="3"), "`labeled_per_class` must be a positive integer"),
        (dict(val_per_class=-1), "`val_per_class` must be a non-negative integer, got -1"),
        (dict(source_classes=[0, 1, 2], target_classes=[0, 1]), "must be the same classes .* 'partial' setting"),
        (dict(benchmark="digits", setting="open"), "must be the same classes .* 'open' setting"),
        (dict(test_split="test"), "`test_split` must be None"),
        (dict(return_index=True), "`return_index` must be False"),
        (dict(target_split="validation"), "`target_split` must be one of"),
        (dict(batch_size=0), "`batch_size`"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            SemiSupervisedDADataModule(uci, uci, **kwargs)
    (tmp_path / "a").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "a" / "0.png")
    (tmp_path / "list.txt").write_text("a/0.png 2\n")
    with pytest.raises(ValueError, match="`source` and `target` must have the same `classes` list"):
        SemiSupervisedDADataModule(uci, ImageListDomain(str(tmp_path), "list.txt"))
    few = SemiSupervisedDADataModule(uci, UCIDigitsDomain(image_size=8, max_samples=50), labeled_per_class=3,
                                     val_per_class=3)  # 5 images per class
    with pytest.raises(ValueError, match=r"`labeled_per_class` \+ `val_per_class` \(3 \+ 3\) must not exceed .* "
                                         r"10 classes have fewer"):
        few.setup("fit")
    exact = SemiSupervisedDADataModule(uci, UCIDigitsDomain(image_size=8, max_samples=50), labeled_per_class=3,
                                       val_per_class=2)
    with pytest.raises(ValueError, match="leave no unlabelled target images"):
        exact.setup("fit")
    assert exact.train_dataset is None
