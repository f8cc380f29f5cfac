"""Domains of unsupervised domain adaptation: image readers on tiny fake trees, the digit domains
(real MNIST and UCI digits), FSDD speakers (real recordings) and the class-setting bookkeeping."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lightning_sparse.data.domain import (
    BENCHMARKS,
    OFFICE31_CLASSES,
    OFFICEHOME_CLASSES,
    SETTINGS,
    VISDA2017_CLASSES,
    DomainNet,
    FSDDSpeakerDomain,
    ImageListDomain,
    MNISTDomain,
    Office31,
    OfficeHome,
    UCIDigitsDomain,
    VisDA2017,
    build_domain,
    class_split,
    image_transform,
    infer_setting,
    standard_split,
)

MNIST = Path("/work/shared/data/mnist-10k/mnist10k.npz")
FSDD = Path("/work/shared/data/fsdd")
SMALL = dict(image_size=8, resize_size=10)


def _image(path: Path, value: int = 128, size=(8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 255 - value, value // 2)).save(path)


def _tree(root: Path, classes, files=("0.jpg", "1.png")) -> None:
    for k, c in enumerate(classes):
        for f in files:
            _image(root / c / f, 20 * k % 256, size=(8 + k, 9))


def _check_items(domain, split="all"):
    for train in (True, False):
        ds = domain.dataset(split, train=train)
        x, y = ds[0]
        assert x.dtype == torch.float32 and tuple(x.shape) == (3, 8, 8) and isinstance(y, int)
        assert y == int(ds.labels[0])
    return domain.dataset(split)


# ---------------------------------------------------------------------------------------- readers
@pytest.mark.filterwarnings("ignore:.*classes have no images")
def test_office31_archive_layout(tmp_path):
    _tree(tmp_path / "amazon" / "images", ["back_pack", "bike", "trash_can"])
    domain = Office31(str(tmp_path), "amazon", **SMALL)
    assert domain.classes == list(OFFICE31_CLASSES) and len(OFFICE31_CLASSES) == 31
    ds = _check_items(domain)
    assert len(ds) == 6 and sorted(ds.labels.tolist()) == [0, 0, 1, 1, 30, 30]
    with pytest.raises(ValueError, match=r"`domain` must be one of \('amazon', 'dslr', 'webcam'\), got 'Amazon'"):
        Office31(str(tmp_path), "Amazon")
    dslr = Office31(str(tmp_path), "dslr")  # construction reads no file
    with pytest.raises(FileNotFoundError, match="dslr"):
        dslr.dataset()
    _tree(tmp_path / "webcam" / "images", ["bike", "chair"])
    with pytest.raises(ValueError, match="chair"):
        Office31(str(tmp_path), "webcam").dataset()
    with pytest.raises(ValueError, match="`split` must be one of"):
        domain.dataset("train")


def test_office31_image_list_layout(tmp_path):
    _tree(tmp_path / "dslr" / "images", ["bike", "mug"])
    lists = tmp_path / "image_list"
    lists.mkdir()
    (lists / "dslr.txt").write_text("dslr/images/bike/0.jpg 1\n\ndslr/images/mug/1.png 17\n")
    domain = Office31(str(tmp_path), "dslr", **SMALL)
    ds = _check_items(domain)
    assert ds.labels.tolist() == [1, 17] and ds.files == ["dslr/images/bike/0.jpg", "dslr/images/mug/1.png"]
    (lists / "dslr.txt").write_text("dslr/images/bike/0.jpg 1\n\ndslr/images/mug/1.png\n")
    with pytest.raises(ValueError, match=r"dslr\.txt, line 3: expected `<relative/path/to/image> <integer label>`"):
        Office31(str(tmp_path), "dslr").dataset()
    (lists / "dslr.txt").write_text("dslr/images/bike/0.jpg 31\n")
    with pytest.raises(ValueError, match=r"line 1: expected a label in 0\.\.30, got 31"):
        Office31(str(tmp_path), "dslr").entries()
    (lists / "dslr.txt").write_text("dslr/images/bike/missing.jpg 1\n")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        Office31(str(tmp_path), "dslr").dataset()


def test_office_home_domains_and_real_world_names(tmp_path):
    assert len(OFFICEHOME_CLASSES) == 65 and list(OFFICEHOME_CLASSES) == sorted(OFFICEHOME_CLASSES)
    _tree(tmp_path / "Real World", ["Alarm_Clock", "Webcam"])
    domain = OfficeHome(str(tmp_path), "RealWorld", **SMALL)
    assert domain.classes == list(OFFICEHOME_CLASSES)
    with pytest.warns(UserWarning, match="63 of 65 classes have no images"):  # at the scan, once
        ds = domain.dataset()
    assert sorted(ds.labels.tolist()) == [0, 0, 64, 64]
    assert sorted(_check_items(domain).labels.tolist()) == [0, 0, 64, 64]
    with pytest.warns(UserWarning):
        assert len(OfficeHome(str(tmp_path), "Real_World").dataset()) == 4
    with pytest.raises(ValueError, match=r"`domain` must be one of \('Art', 'Clipart', 'Product', 'Real_World', "
                                         r"'RealWorld'\), got 'art'"):
        OfficeHome(str(tmp_path), "art")
    with pytest.raises(FileNotFoundError, match="Clipart"):
        OfficeHome(str(tmp_path), "Clipart").dataset()
    _tree(tmp_path / "Art", ["Alarm_Clock", "Spaceship"])
    with pytest.raises(ValueError, match="Spaceship"):
        OfficeHome(str(tmp_path), "Art").dataset()


@pytest.mark.filterwarnings("ignore:.*classes have no images")
def test_visda2017_image_list_and_folders(tmp_path):
    _tree(tmp_path / "train", ["aeroplane", "truck"])
    (tmp_path / "train" / "image_list.txt").write_text("aeroplane/0.jpg 0\ntruck/0.jpg 11\ntruck/1.png 11\n")
    domain = VisDA2017(str(tmp_path), "train", **SMALL)
    assert domain.classes == list(VISDA2017_CLASSES) and len(VISDA2017_CLASSES) == 12
    assert _check_items(domain).labels.tolist() == [0, 11, 11]
    _tree(tmp_path / "validation", ["bus", "car"])  # no list: the class folders
    assert sorted(VisDA2017(str(tmp_path), "validation", **SMALL).dataset().labels.tolist()) == [2, 2, 3, 3]
    with pytest.raises(ValueError, match=r"`split` must be one of \('train', 'validation'\), got 'test'"):
        VisDA2017(str(tmp_path), "test")
    with pytest.raises(FileNotFoundError, match="image_list.txt"):
        VisDA2017(str(tmp_path / "nowhere"), "train").dataset()
    (tmp_path / "train" / "image_list.txt").write_text("aeroplane/0.jpg zero\n")
    with pytest.raises(ValueError, match=r"image_list\.txt, line 1"):
        VisDA2017(str(tmp_path), "train").dataset()


def test_domainnet_split_lists(tmp_path):
    classes = ["aircraft_carrier", "bear", "zigzag"]
    _tree(tmp_path / "clipart", classes, files=("a.jpg", "b.jpg", "c.jpg"))
    (tmp_path / "clipart_train.txt").write_text(
        "clipart/aircraft_carrier/a.jpg 0\nclipart/bear/a.jpg 1\nclipart/zigzag/a.jpg 2\nclipart/zigzag/b.jpg 2\n")
    (tmp_path / "clipart_test.txt").write_text("clipart/bear/c.jpg 1\n")
    domain = DomainNet(str(tmp_path), "clipart", **SMALL)
    assert domain._cache is None
    assert domain.classes == classes and domain.splits == ("all", "train", "test")
    assert domain._cache is not None  # the class list comes from the data: `classes` reads it
    assert _check_items(domain, "train").labels.tolist() == [0, 1, 2, 2]
    assert _check_items(domain, "test").labels.tolist() == [1]
    assert len(domain.dataset("all")) == 5
    with pytest.raises(ValueError, match=r"`domain` must be one of .*got 'Clipart'"):
        DomainNet(str(tmp_path), "Clipart")
    real = DomainNet(str(tmp_path), "real")
    assert repr(real) == f"DomainNet(root={str(tmp_path)!r}, domain='real', image_size=224, resize_size=256, " \
                         "transform='imagenet')"
    with pytest.raises(FileNotFoundError, match="real_train.txt"):
        real.classes
    with pytest.raises(FileNotFoundError, match="real_train.txt"):
        real.dataset("train")
    (tmp_path / "clipart_test.txt").write_text("clipart/bear/c.jpg 2\n")
    with pytest.raises(ValueError, match="label 2 is class 'zigzag'"):
        DomainNet(str(tmp_path), "clipart").dataset()


def test_image_list_domain(tmp_path):
    _tree(tmp_path / "imgs", ["a", "b"])
    (tmp_path / "list.txt").write_text("imgs/a/0.jpg 0\n\n  \nimgs/b/1.png 2\n")
    domain = ImageListDomain(str(tmp_path), "list.txt", **SMALL)  # found in root
    assert domain.config()["init_args"]["classes"] is None and domain._cache is None  # config reads no file
    assert domain.classes == ["0", "1", "2"]  # the class count comes from the list: `classes` reads it
    assert domain._cache is not None
    assert _check_items(domain).labels.tolist() == [0, 2]
    assert build_domain("source", domain.config()).classes == domain.classes
    named = ImageListDomain(str(tmp_path), str(tmp_path / "list.txt"), classes=["x", "y", "z", "w"])
    assert named.classes == ["x", "y", "z", "w"] and named._cache is None
    assert build_domain("source", named.config()).classes == named.classes
    with pytest.raises(ValueError, match=r"line 1: expected a label in 0\.\.1, got 2|line 4: expected a label"):
        ImageListDomain(str(tmp_path), "list.txt", classes=["x", "y"]).dataset()
    (tmp_path / "bad.txt").write_text("imgs/a/0.jpg 0\nimgs/b/1.png 1.5\n")
    with pytest.raises(ValueError, match=r"bad\.txt, line 2"):
        ImageListDomain(str(tmp_path), "bad.txt").dataset()
    missing = ImageListDomain(str(tmp_path), "nothing.txt")
    with pytest.raises(FileNotFoundError, match="nothing.txt"):
        missing.dataset()
    with pytest.raises(FileNotFoundError, match="nothing.txt"):
        missing.classes
    with pytest.raises(ValueError, match="`classes` must be None or a list of distinct"):
        ImageListDomain(str(tmp_path), "list.txt", classes=["x", "x", "y"])
    with pytest.raises(ValueError, match="`list_file` must be the path"):
        ImageListDomain(str(tmp_path), "")


@pytest.mark.parametrize("make, num_classes", [
    (lambda root: Office31(root, "amazon"), 31), (lambda root: OfficeHome(root, "Product"), 65),
    (lambda root: VisDA2017(root, "validation"), 12), (lambda root: DomainNet(root, "sketch"), None),
    (lambda root: ImageListDomain(root, "list.txt", classes=["a", "b"]), 2),
    (lambda root: ImageListDomain(root, "list.txt"), None),
], ids=["office31", "officehome", "visda", "domainnet", "list-named", "list"])
def test_construction_reads_no_file_and_the_first_dataset_call_names_the_path(tmp_path, make, num_classes,
                                                                              monkeypatch):
    root = str(tmp_path / "no" / "such" / "root")
    touched = []
    for name in ("is_file", "is_dir", "exists", "iterdir", "stat"):
        original = getattr(Path, name)
        monkeypatch.setattr(Path, name, lambda self, *a, _o=original, _n=name, **k: touched.append(_n)
                            or _o(self, *a, **k))
    domain = make(root)
    config = domain.config()
    assert repr(domain).startswith(type(domain).__name__) and config["init_args"]["root"] == root
    if num_classes is not None:  # a constant class list (or `classes` given): no file needed
        assert domain.num_classes == num_classes and domain.classes[0] in ("back_pack", "Alarm_Clock", "aeroplane", "a")
    assert touched == [] and domain._cache is None
    with pytest.raises(FileNotFoundError, match="root"):
        domain.dataset()
    assert touched  # the instrumentation sees the index being read
    monkeypatch.undo()
    assert domain._cache is None  # a failed index is not cached: it raises again
    with pytest.raises(FileNotFoundError, match="root"):
        domain.dataset()
    assert build_domain("source", pickle.loads(pickle.dumps(domain)).config()).config() == config


@pytest.mark.filterwarnings("ignore:.*classes have no images")
def test_the_index_is_read_once_cached_and_not_pickled(tmp_path, monkeypatch):
    from lightning_sparse.data.domain import readers

    _tree(tmp_path / "amazon" / "images", ["back_pack", "bike"])
    calls = []
    scan = readers._scan
    monkeypatch.setattr(readers, "_scan", lambda *a, **k: calls.append(a[0]) or scan(*a, **k))
    domain = Office31(str(tmp_path), "amazon", **SMALL)
    assert calls == [] and domain.num_classes == 31 and calls == []
    first = domain.dataset(train=True)
    domain.dataset(train=False), domain.entries(), domain.classes
    assert calls == [tmp_path / "amazon" / "images"] and domain._cache is not None
    assert len(first) == 4 and domain.entries()["all"][1] == first.files
    copied = pickle.loads(pickle.dumps(domain))
    assert copied._cache is None and copy.deepcopy(domain)._cache is None and domain._cache is not None
    assert copied.dataset().files == first.files and len(calls) == 2  # a copy indexes again, once
    copied.dataset()
    assert len(calls) == 2


def test_image_transforms():
    image = np.zeros((30, 20, 3), np.uint8)
    for preset in ("imagenet", "imagenet_rrc"):
        for train in (True, False):
            assert tuple(image_transform(preset, 8, 10, train)(image).shape) == (3, 8, 8)
    with pytest.raises(ValueError, match="`transform` must be one of"):
        image_transform("cifar")
    with pytest.raises(ValueError, match="`resize_size` must be an integer >= 8"):
        image_transform("imagenet", 8, 6)


# ---------------------------------------------------------------------------------------- digits
def test_uci_digits_domain_splits_and_scale():
    domain = UCIDigitsDomain(image_size=16, max_samples=300, seed=1)
    all_ = domain.dataset("all")
    train, test = domain.dataset("train"), domain.dataset("test")
    assert len(all_) == 300 and len(train) == 240 and len(test) == 60
    counts = np.bincount(all_.labels)
    assert counts.sum() == 300 and counts.min() >= 29 and counts.max() <= 31  # stratified (UCI is near-balanced)
    x, _ = all_[0]
    assert tuple(x.shape) == (1, 16, 16) and float(all_.images.min()) == -1.0 and float(all_.images.max()) <= 1.0
    assert domain.in_channels == 1 and domain.classes == [str(d) for d in range(10)]
    shifted = UCIDigitsDomain(image_size=16, augment=True)
    torch.manual_seed(0)
    a, b = shifted.dataset("train", train=True), shifted.dataset("train", train=False)
    assert any(not torch.equal(a[i][0], b[i][0]) for i in range(10))
    assert all(torch.equal(b[i][0], b[i][0]) for i in range(3))
    same = UCIDigitsDomain(image_size=16, max_samples=300, seed=1).dataset("test")
    assert torch.equal(same.images, test.images)
    assert pickle.loads(pickle.dumps(domain))._cache is None and copy.deepcopy(domain)._cache is None
    for kwargs, name in (({"test_fraction": 1.0}, "test_fraction"), ({"max_samples": 5}, "max_samples"),
                         ({"image_size": 0}, "image_size"), ({"augment": 1}, "augment")):
        with pytest.raises(ValueError, match=f"`{name}`"):
            UCIDigitsDomain(**kwargs)


def test_mnist_domain_from_the_real_file_on_the_uci_scale():
    if not MNIST.is_file():
        pytest.skip(f"{MNIST} is missing")
    mnist = MNISTDomain(str(MNIST), max_samples=500, seed=0)
    ds = mnist.dataset("all")
    assert len(ds) == 500 and set(np.unique(ds.labels)) == set(range(10))
    counts = np.bincount(ds.labels)
    assert counts.min() >= 40 and counts.max() <= 60  # proportional to MNIST's class sizes
    assert len(mnist.dataset("train")) == 400 and len(mnist.dataset("test")) == 100
    uci = UCIDigitsDomain(image_size=28).dataset("all")
    assert ds.images.shape[1:] == uci.images.shape[1:] == (1, 28, 28)
    for images in (ds.images, uci.images):  # one scale: background -1, strokes up to 1
        assert float(images.min()) == -1.0 and 0.9 <= float(images.max()) <= 1.0
        assert float(images[:, 0, 0, 0].median()) == -1.0  # the corners are background
    assert float(uci.images.mean()) > float(ds.images.mean())  # UCI digits fill their frame: a real shift
    assert tuple(MNISTDomain(str(MNIST), image_size=16, max_samples=100).dataset("test")[0][0].shape) == (1, 16, 16)
    with pytest.raises(FileNotFoundError, match="`mnist_path`"):
        MNISTDomain(str(MNIST.parent / "nothing.npz"))


# ---------------------------------------------------------------------------------------- FSDD
def test_fsdd_speaker_domain_from_the_real_recordings():
    if not (FSDD / "recordings").is_dir():
        pytest.skip(f"{FSDD} is missing")
    domain = FSDDSpeakerDomain(str(FSDD), ["george", "jackson"], n_mels=24, frames=28)
    train, test = domain.dataset("train", train=True), domain.dataset("test")
    assert len(train) == 900 and len(test) == 100 and len(domain.dataset("all")) == 1000
    assert np.bincount(test.labels).tolist() == [10] * 10 and np.bincount(train.labels).tolist() == [90] * 10
    x, y = test[0]
    assert tuple(x.shape) == (1, 24, 28) and x.dtype == torch.float32 and 0 <= y <= 9
    assert torch.equal(test[5][0], test[5][0])  # evaluation: centred, deterministic
    assert torch.isfinite(torch.stack([train[i][0] for i in range(50)])).all()
    assert domain.in_channels == 1 and domain.classes[y] == str(y)
    with pytest.raises(ValueError, match=r"`speakers` must be among the speakers found in .*'george'.*got 'bob'"):
        FSDDSpeakerDomain(str(FSDD), ["george", "bob"])
    with pytest.raises(ValueError, match="`speakers` must be a non-empty list"):
        FSDDSpeakerDomain(str(FSDD), "george")
    with pytest.raises(FileNotFoundError):
        FSDDSpeakerDomain(str(FSDD / "nowhere"), ["george"])


# ---------------------------------------------------------------------------------------- settings
def test_infer_setting_and_class_split():
    assert infer_setting(range(5), [4, 3, 2, 1, 0]) == "closed"
    assert infer_setting(range(10), range(4)) == "partial"
    assert infer_setting(range(4), range(10)) == "open"
    assert infer_setting(range(6), [0, 1, 7]) == "universal"
    with pytest.raises(ValueError, match="must share at least one class"):
        infer_setting([0, 1], [2])
    with pytest.raises(ValueError, match="`target_classes` must name at least one class"):
        infer_setting([0], [])
    split = class_split(range(20), list(range(10)) + list(range(20, 31)))
    assert (len(split.shared), len(split.source_private), len(split.target_private)) == (10, 10, 11)
    assert split.num_known == split.unknown_label == 20 and split.source_index[19] == 19
    assert split.target_label(3) == 3 and split.target_label(25) == 20
    with pytest.raises(ValueError, match="`global_label`"):
        split.target_label(15)  # source-private: never a target label


def test_standard_splits_match_their_settings():
    for benchmark in BENCHMARKS:
        for setting in SETTINGS:
            source, target = standard_split(benchmark, setting)
            assert infer_setting(source, target) == setting, (benchmark, setting)
    counts = {}
    for benchmark in BENCHMARKS:
        s = class_split(*standard_split(benchmark, "universal"))
        counts[benchmark] = (len(s.shared), len(s.source_private), len(s.target_private))
    assert counts == {"office31": (10, 10, 11), "officehome": (10, 5, 50), "visda": (6, 3, 3), "digits": (5, 2, 3)}
    assert [len(c) for c in standard_split("office31", "partial")] == [31, 10]
    assert [len(c) for c in standard_split("office31", "open")] == [10, 21]
    assert [len(c) for c in standard_split("officehome", "partial")] == [65, 25]
    assert [len(c) for c in standard_split("officehome", "open")] == [25, 65]
    assert [len(c) for c in standard_split("visda", "open")] == [6, 12]
    assert standard_split("digits", "open") == (list(range(6)), list(range(10)))
    with pytest.raises(ValueError, match=r"`benchmark` must be one of \('office31', 'officehome', 'visda', 'digits'\)"):
        standard_split("office-31", "closed")
    with pytest.raises(ValueError, match=r"`setting` must be one of \('closed', 'partial', 'open', 'universal'\)"):
        standard_split("office31", "openset")
