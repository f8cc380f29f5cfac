"""CIFAR10/100DataModule: the three layouts (pickles, trees, zips), exact pixels, class order,
splits, subsets, augmentation, indices, cache, download guard and argument errors."""

from __future__ import annotations

import io
import pickle
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lightning_sparse.data.image.cifar as cifar_module
import lightning_sparse.data.image.cifar_files as cifar_files
from lightning_sparse.data.cifar import (
    CIFAR10_CLASSES,
    CIFAR100DataModule,
    CIFAR10DataModule,
    read_cifar_pickle,
)
from lightning_sparse.data.transforms import CIFAR10_MEAN, CIFAR10_STD, cifar_eval_transform

REAL = Path("/work/shared/data/cifar10-q75")


# --------------------------------------------------------------------------- writers (real formats)
def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the published files are Python 2 cPickle, protocol 2


def _rows(images: np.ndarray) -> np.ndarray:  # (N, 32, 32, 3) -> (N, 3072): R plane, G plane, B plane
    return images.transpose(0, 3, 1, 2).reshape(len(images), 3072)


def write_cifar10_pickles(root: Path, per_batch: int = 20, n_test: int = 30):
    """The ``cifar-10-batches-py`` layout; returns (train images, train labels, test images, test labels)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for k in range(1, 6):
        x = _images(per_batch, k)
        y = [(i + k) % 10 for i in range(per_batch)]
        _dump(folder / f"data_batch_{k}", {b"batch_label": f"training batch {k} of 5".encode(), b"labels": y,
                                           b"data": _rows(x), b"filenames": [b"f.png"] * per_batch})
        train_x.append(x)
        train_y += y
    test_x, test_y = _images(n_test, 99), [i % 10 for i in range(n_test)]
    _dump(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": test_y, b"data": _rows(test_x)})
    _dump(folder / "batches.meta", {b"num_cases_per_batch": per_batch,
                                    b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072})
    return np.concatenate(train_x), np.asarray(train_y), test_x, np.asarray(test_y)


def write_cifar100_pickles(root: Path):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    names = [f"class{k:03d}" for k in range(100)]
    out = []
    for split, n, seed in (("train", 200, 1), ("test", 100, 2)):
        x, y = _images(n, seed), [(7 * i) % 100 for i in range(n)]
        _dump(folder / split, {b"filenames": [b"x.png"] * n, b"fine_labels": y,
                               b"coarse_labels": [v // 5 for v in y], b"data": _rows(x)})
        out += [x, np.asarray(y)]
    _dump(folder / "meta", {b"fine_label_names": [c.encode() for c in names],
                            b"coarse_label_names": [f"super{k}".encode() for k in range(20)]})
    return names, out


def real_jpegs(per_class: int = 2) -> dict[str, list[bytes]]:
    """A few real CIFAR-10 test images (JPEG bytes) per class, read from the shared zip."""
    if not (REAL / "test.zip").is_file():
        pytest.skip(f"{REAL} is absent")
    with zipfile.ZipFile(REAL / "test.zip") as z:
        names = z.namelist()
        return {c: [z.read(f"test/{c}/{k:04d}.jpg") for k in range(per_class)] for c in CIFAR10_CLASSES
                if f"test/{c}/0000.jpg" in names}


def pil_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def write_png_tree(root: Path, jpegs: dict[str, list[bytes]]) -> dict[str, list[np.ndarray]]:
    """``train/<class>/NNNN.png`` and ``test/<class>/NNNN.png`` (lossless) from real images."""
    pixels = {c: [pil_rgb(b) for b in blobs] for c, blobs in jpegs.items()}
    for split in ("train", "test"):
        for c, images in pixels.items():
            (root / split / c).mkdir(parents=True)
            for k, image in enumerate(images):
                Image.fromarray(image).save(root / split / c / f"{k:04d}.png")
    return pixels


def write_zip_tree(root: Path, jpegs: dict[str, list[bytes]], inner_folder: bool = True) -> None:
    """``train.zip`` / ``test.zip`` (stored) of ``<split>/<class>/NNNN.jpg``, like cifar10-q75."""
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        with zipfile.ZipFile(root / f"{split}.zip", "w", compression=zipfile.ZIP_STORED) as z:
            for c, blobs in jpegs.items():
                for k, blob in enumerate(blobs):
                    z.writestr(f"{split}/{c}/{k:04d}.jpg" if inner_folder else f"{c}/{k:04d}.jpg", blob)


# --------------------------------------------------------------------------- pickles
def test_pickle_layout_decodes_exact_pixels_labels_and_order(tmp_path):
    train_x, train_y, test_x, test_y = write_cifar10_pickles(tmp_path)
    dm = CIFAR10DataModule(str(tmp_path), augment=False)
    dm.setup()
    assert dm.classes == list(CIFAR10_CLASSES) and dm.num_classes == 10
    assert len(dm.train_dataset) == 100 and len(dm.test_dataset) == 30
    np.testing.assert_array_equal(dm.train_dataset.images, train_x)  # batches 1..5 in order
    np.testing.assert_array_equal(dm.train_dataset.labels, train_y)
    np.testing.assert_array_equal(dm.test_dataset.images, test_x)
    np.testing.assert_array_equal(dm.test_dataset.labels, test_y)
    x, y = dm.test_dataset[3]
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32) and y == test_y[3]
    mean, std = torch.tensor(CIFAR10_MEAN)[:, None, None], torch.tensor(CIFAR10_STD)[:, None, None]
    torch.testing.assert_close(x * std + mean, torch.from_numpy(test_x[3]).permute(2, 0, 1) / 255.0)
    batch = next(iter(dm.test_dataloader()))
    assert batch[0].shape == (30, 3, 32, 32) and batch[1].dtype == torch.int64


def test_pickle_layout_directly_in_data_dir_and_cifar100_fine_labels(tmp_path):
    write_cifar10_pickles(tmp_path)
    dm = CIFAR10DataModule(str(tmp_path / "cifar-10-batches-py"))
    dm.setup("test")
    assert len(dm.test_dataset) == 30 and dm.train_dataset is None
    names, (train_x, train_y, test_x, test_y) = write_cifar100_pickles(tmp_path / "c100")
    dm = CIFAR100DataModule(str(tmp_path / "c100"), augment=False)
    dm.setup()
    assert dm.classes == names and dm.num_classes == 100
    np.testing.assert_array_equal(dm.train_dataset.images, train_x)
    np.testing.assert_array_equal(dm.train_dataset.labels, train_y)
    np.testing.assert_array_equal(dm.test_dataset.labels, test_y)


def test_pickle_reader_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "evil", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing builtins.print"):
        read_cifar_pickle(tmp_path / "evil")
    _dump(tmp_path / "ok", {b"data": np.arange(3, dtype=np.uint8)})
    with open(tmp_path / "ok5", "wb") as f:  # numpy 2 / protocol 5 pickles load too
        pickle.dump({"data": np.arange(3, dtype=np.uint8)}, f, protocol=5)
    for name in ("ok", "ok5"):
        np.testing.assert_array_equal(read_cifar_pickle(tmp_path / name)["data"], [0, 1, 2])


# --------------------------------------------------------------------------- trees and zips
def test_png_tree_and_zip_trees_give_the_standard_class_order_and_exact_pixels(tmp_path):
    jpegs = real_jpegs()
    pixels = write_png_tree(tmp_path / "tree", jpegs)
    write_zip_tree(tmp_path / "zip", jpegs)
    write_zip_tree(tmp_path / "flatzip", jpegs, inner_folder=False)
    expected = np.stack([p for c in CIFAR10_CLASSES for p in pixels[c]])
    labels = np.repeat(np.arange(10), 2)
    for where in ("tree", "zip", "flatzip"):
        dm = CIFAR10DataModule(str(tmp_path / where), augment=False)
        dm.setup()
        assert dm.classes == list(CIFAR10_CLASSES)
        np.testing.assert_array_equal(dm.train_dataset.labels, labels)
        np.testing.assert_array_equal(dm.test_dataset.labels, labels)
        if where == "tree":  # PNG: lossless
            np.testing.assert_array_equal(dm.test_dataset.images, expected)
        else:  # JPEG: libjpeg-turbo (torchvision) vs PIL's libjpeg, same IDCT up to rounding
            diff = np.abs(dm.test_dataset.images.astype(int) - expected.astype(int))
            assert diff.max() <= 2 and diff.mean() < 0.05


def test_tree_with_foreign_classes_is_refused(tmp_path):
    jpegs = real_jpegs(1)
    jpegs["cow"] = jpegs.pop("truck")
    write_zip_tree(tmp_path, jpegs)
    dm = CIFAR10DataModule(str(tmp_path))
    with pytest.raises(ValueError, match="10 CIFAR-10 classes.*cow"):
        dm.setup()


def test_cache_is_written_outside_data_dir_and_reused(tmp_path, monkeypatch):
    write_zip_tree(tmp_path / "data", real_jpegs())
    cache = tmp_path / "cache"
    first = CIFAR10DataModule(str(tmp_path / "data"), cache_dir=str(cache), augment=False)
    first.setup()
    names = sorted(p.name for p in cache.glob("*.npz"))
    assert [n.split("-")[:2] for n in names] == [["cifar10", "test"], ["cifar10", "train"]]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["test.zip", "train.zip"]

    def no_decoding(_):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(cifar_files, "decode_rgb", no_decoding)
    second = CIFAR10DataModule(str(tmp_path / "data"), cache_dir=str(cache), augment=False)
    second.setup()
    np.testing.assert_array_equal(second.train_dataset.images, first.train_dataset.images)
    np.testing.assert_array_equal(second.test_dataset.labels, first.test_dataset.labels)
    with pytest.raises(ValueError, match="`cache_dir` must not be `data_dir`"):
        CIFAR10DataModule(str(tmp_path / "data"), cache_dir=str(tmp_path / "data"))


def test_real_cifar10_q75_zips(tmp_path, monkeypatch):
    if not (REAL / "train.zip").is_file():
        pytest.skip(f"{REAL} is absent")
    lazy = CIFAR10DataModule(str(REAL), train_subset=500, test_subset=200, val_split=100, augment=False)
    lazy.setup()  # decodes only the 800 images it keeps
    assert lazy.classes == list(CIFAR10_CLASSES)
    assert lazy.train_dataset.images.shape == (500, 32, 32, 3) and lazy.train_dataset.images.dtype == np.uint8
    assert np.bincount(lazy.train_dataset.labels).tolist() == [50] * 10
    assert np.bincount(lazy.test_dataset.labels).tolist() == [20] * 10
    assert np.bincount(lazy.val_dataset.labels).tolist() == [10] * 10
    x, y = next(iter(lazy.train_dataloader()))
    assert x.shape == (128, 3, 32, 32) and y.dtype == torch.int64

    decoded = []
    real_decode = cifar_files.decode_rgb

    def counting(data):
        decoded.append(1)
        return real_decode(data)

    monkeypatch.setattr(cifar_files, "decode_rgb", counting)
    kwargs = dict(train_subset=500, test_subset=200, val_split=100, augment=False)
    full = CIFAR10DataModule(str(REAL), cache_dir=str(tmp_path), **kwargs)
    full.setup()  # decodes (and caches) only the 800 images it uses, not all 60k
    assert len(decoded) == 800 and len(list(tmp_path.glob("cifar10-*.npz"))) == 2
    np.testing.assert_array_equal(full.train_dataset.images, lazy.train_dataset.images)
    np.testing.assert_array_equal(full.test_dataset.source_indices, lazy.test_dataset.source_indices)
    (train_cache,) = tmp_path.glob("cifar10-train-*.npz")
    with np.load(train_cache) as f:
        assert len(f["indices"]) == 600 and len(f["labels"]) == 50000
        assert set(f["indices"]) == set(full.train_dataset.source_indices) | set(full.val_dataset.source_indices)

    decoded.clear()
    again = CIFAR10DataModule(str(REAL), cache_dir=str(tmp_path), **kwargs)
    again.setup()
    assert not decoded  # all from the cache
    np.testing.assert_array_equal(again.val_dataset.images, full.val_dataset.images)

    # another seed: other images, and only those no earlier run decoded are decoded now
    other = CIFAR10DataModule(str(REAL), cache_dir=str(tmp_path), seed=1, **kwargs)
    other.setup()
    used = lambda dm: {("train", i) for d in (dm.train_dataset, dm.val_dataset) for i in d.source_indices} | {
        ("test", i) for i in dm.test_dataset.source_indices}
    assert len(decoded) == len(used(other) - used(full)) > 0
    uncached = CIFAR10DataModule(str(REAL), seed=1, **kwargs)
    uncached.setup()
    for split in ("train_dataset", "val_dataset", "test_dataset"):
        np.testing.assert_array_equal(getattr(other, split).images, getattr(uncached, split).images)
        np.testing.assert_array_equal(getattr(other, split).labels, getattr(uncached, split).labels)

    start = time.perf_counter()
    whole = CIFAR10DataModule(str(REAL), cache_dir=str(tmp_path))
    whole.setup()  # decodes the rest once
    decode_s = time.perf_counter() - start
    monkeypatch.setattr(cifar_files, "decode_rgb", lambda _: pytest.fail("decoded although cached"))
    start = time.perf_counter()
    cached = CIFAR10DataModule(str(REAL), cache_dir=str(tmp_path))
    cached.setup()
    assert time.perf_counter() - start < decode_s
    assert cached.train_dataset.images.shape == (50000, 32, 32, 3)
    np.testing.assert_array_equal(cached.train_dataset.images[:: 997], whole.train_dataset.images[:: 997])
    assert np.bincount(cached.test_dataset.labels).tolist() == [1000] * 10


# --------------------------------------------------------------------------- splits and items
def _dm(root: Path, **kwargs) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(str(root), **kwargs)
    dm.setup()
    return dm


def test_splits_are_seeded_stratified_and_disjoint(tmp_path):
    write_cifar10_pickles(tmp_path, per_batch=40, n_test=50)  # 200 train, 20 per class
    a = _dm(tmp_path, val_split=0.25, train_subset=60, test_subset=20, seed=1)
    b = _dm(tmp_path, val_split=50, train_subset=60, test_subset=20, seed=1)
    c = _dm(tmp_path, val_split=0.25, train_subset=60, test_subset=20, seed=2)
    for x, y in ((a.train_dataset, b.train_dataset), (a.val_dataset, b.val_dataset), (a.test_dataset, b.test_dataset)):
        np.testing.assert_array_equal(x.source_indices, y.source_indices)
    assert not np.array_equal(a.val_dataset.source_indices, c.val_dataset.source_indices)
    assert not np.array_equal(a.train_dataset.source_indices, c.train_dataset.source_indices)
    assert len(a.val_dataset) == 50 and len(a.train_dataset) == 60 and len(a.test_dataset) == 20
    assert not set(a.val_dataset.source_indices) & set(a.train_dataset.source_indices)
    assert np.bincount(a.val_dataset.labels).tolist() == [5] * 10
    assert np.bincount(a.train_dataset.labels).tolist() == [6] * 10
    assert np.bincount(a.test_dataset.labels).tolist() == [2] * 10
    odd = _dm(tmp_path, train_subset=15)  # 15 of 10 balanced classes: five classes get 2
    assert sorted(np.bincount(odd.train_dataset.labels).tolist()) == [1] * 5 + [2] * 5
    assert odd.val_dataloader() == []


def test_augment_on_off_and_return_index(tmp_path):
    write_cifar10_pickles(tmp_path)
    plain = _dm(tmp_path, augment=False)
    raw = plain.train_dataset.images
    torch.testing.assert_close(plain.train_dataset[4][0], cifar_eval_transform()(raw[4]))
    aug = _dm(tmp_path, augment=True, return_index=True, batch_size=8)
    torch.manual_seed(0)
    views = torch.stack([aug.train_dataset[4][0] for _ in range(12)])
    assert views.shape == (12, 3, 32, 32)
    assert (views != plain.train_dataset[4][0]).flatten(1).any(1).sum() >= 6  # crops/flips vary
    x, y, index = next(iter(aug.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and index.dtype == torch.int64
    assert [aug.train_dataset[int(i)][1] for i in index] == y.tolist()
    assert len(next(iter(aug.test_dataloader()))) == 2  # only the training split carries indices


def test_fits_with_the_image_classifier(tmp_path):
    import lightning as L

    from lightning_sparse.tasks.classification import ImageClassifier

    write_cifar10_pickles(tmp_path)
    dm = CIFAR10DataModule(str(tmp_path), batch_size=16, val_split=20, return_index=True)
    task = ImageClassifier("mlp", {"in_features": 3 * 32 * 32, "hidden_sizes": [16]}, num_classes=10)
    seen = []

    class Indices(L.Callback):  # the task's training_step returns the batch's indices (per-sample contract)
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(outputs["index"])

    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, callbacks=[Indices()])
    trainer.fit(task, datamodule=dm)
    assert trainer.global_step == 5 and seen[-1].shape == (16,)


# --------------------------------------------------------------------------- download and errors
def test_download_only_when_asked_and_missing(tmp_path, monkeypatch):
    calls = []

    def fake_download(url, download_root, md5=None):
        calls.append((url, md5))
        write_cifar10_pickles(Path(download_root))

    monkeypatch.setattr(cifar_module, "download_and_extract_archive", fake_download)
    with pytest.raises(FileNotFoundError) as err:
        _dm(tmp_path / "none")
    message = str(err.value)
    for part in (str(tmp_path / "none"), "cifar-10-batches-py", "train/<class>", "train.zip", "download=True"):
        assert part in message
    assert calls == []
    dm = _dm(tmp_path / "none", download=True)
    assert calls == [(CIFAR10DataModule._url, "c58f30108f718f92721af3b95e74349a")] and len(dm.test_dataset) == 30
    _dm(tmp_path / "none", download=True)
    assert len(calls) == 1  # present now: no second download


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "`batch_size` must be a positive integer"),
        ({"num_workers": -1}, "`num_workers` must be a non-negative integer"),
        ({"val_split": 1.0}, r"`val_split` must be a sample count .* got 1.0"),
        ({"val_split": -3}, "`val_split` must be"),
        ({"val_split": True}, "`val_split` must be"),
        ({"train_subset": 0}, "`train_subset` must be None or a positive integer, got 0"),
        ({"test_subset": 2.5}, "`test_subset` must be None or a positive integer"),
        ({"corruption_seed": -1}, "`corruption_seed` must be a non-negative integer"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CIFAR10DataModule("/nonexistent", **kwargs)


def test_subsets_larger_than_their_split_fail_in_setup(tmp_path):
    write_cifar10_pickles(tmp_path)
    with pytest.raises(ValueError, match="`train_subset` must be at most the split's 100 images, got 101"):
        _dm(tmp_path, train_subset=101)
    with pytest.raises(ValueError, match="`val_split` must leave training images"):
        _dm(tmp_path, val_split=100)
    with pytest.raises(ValueError, match="`test_subset` must be at most"):
        _dm(tmp_path, test_subset=31)
