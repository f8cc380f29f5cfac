"""ImageFolderDataModule and TinyImageNetDataModule: folder and zip trees, split rules, presets,
Tiny-ImageNet-200's own layout (folder and published zip), download guard, errors."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lightning_sparse.data.image.folder as folder_module
import lightning_sparse.data.image_folder as image_folder_module
from lightning_sparse.data.image_folder import FileSource, ImageFolderDataModule, TinyImageNetDataModule
from lightning_sparse.data.transforms import TINY_IMAGENET_MEAN, TINY_IMAGENET_STD

REAL = Path("/work/shared/data/cifar10-q75")
CLASSES = ("airplane", "cat", "ship")


def real_pixels(per_class: int = 3) -> dict[str, list[np.ndarray]]:
    """A few real CIFAR-10 test images per class (uint8 (32, 32, 3)), read from the shared zip."""
    if not (REAL / "test.zip").is_file():
        pytest.skip(f"{REAL} is absent")
    out = {}
    with zipfile.ZipFile(REAL / "test.zip") as z:
        for c in CLASSES:
            out[c] = []
            for k in range(per_class):
                with Image.open(io.BytesIO(z.read(f"test/{c}/{k:04d}.jpg"))) as im:
                    out[c].append(np.asarray(im.convert("RGB")))
    return out


def write_tree(root: Path, pixels: dict[str, list[np.ndarray]], splits=("train", "val", "test")) -> None:
    """``<split>/<class>/<k>.png`` (lossless), with a nested sub-folder for the last image."""
    for split in splits:
        for c, images in pixels.items():
            for k, image in enumerate(images):
                path = root / split / c / ("sub" if k == len(images) - 1 else "") / f"{k}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(path)


def zip_tree(src: Path, dst: Path, inner: bool) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for split_dir in src.iterdir():
        with zipfile.ZipFile(dst / f"{split_dir.name}.zip", "w") as z:
            for f in sorted(split_dir.rglob("*.png")):
                rel = f.relative_to(src if inner else split_dir).as_posix()
                z.write(f, rel)


def expected(pixels, split_order=CLASSES):
    return [img for c in split_order for img in pixels[c]], np.repeat(np.arange(len(split_order)), 3)


def raw(dm: ImageFolderDataModule, dataset) -> list[np.ndarray]:
    return [image_folder_module.decode_rgb(dataset.source.read(f)) for f in dataset.files]


def test_folder_and_zip_trees_read_identical_pixels_and_labels(tmp_path):
    pixels = real_pixels()
    write_tree(tmp_path / "tree", pixels)
    zip_tree(tmp_path / "tree", tmp_path / "zip", inner=True)
    zip_tree(tmp_path / "tree", tmp_path / "flat", inner=False)
    images, labels = expected(pixels)
    for where in ("tree", "zip", "flat"):
        dm = ImageFolderDataModule(str(tmp_path / where), preset="cifar", augment=False, batch_size=4)
        dm.setup()
        assert dm.classes == list(CLASSES) and dm.num_classes == 3
        for dataset in (dm.train_dataset, dm.val_dataset, dm.test_dataset):
            np.testing.assert_array_equal(dataset.labels, labels)
            for got, want in zip(raw(dm, dataset), images):
                np.testing.assert_array_equal(got, want)
        x, y = next(iter(dm.test_dataloader()))
        assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.tolist() == [0, 0, 0, 1]


def test_split_rules_imagenet_style_and_val_split(tmp_path):
    pixels = real_pixels()
    write_tree(tmp_path, pixels, splits=("train", "val"))  # ImageNet: no test folder
    dm = ImageFolderDataModule(str(tmp_path), preset="imagenet", image_size=24, val_split=3, seed=5)
    dm.setup()
    assert dm.test_dataset.files[0].startswith("airplane/") and len(dm.test_dataset) == 9  # val is the test split
    assert len(dm.val_dataset) == 3 and np.bincount(dm.val_dataset.labels).tolist() == [1, 1, 1]
    assert len(dm.train_dataset) == 6
    assert not set(dm.val_dataset.source_indices) & set(dm.train_dataset.source_indices)
    x, y = dm.train_dataset[0]
    assert x.shape == (3, 24, 24)  # RandomResizedCrop
    assert dm.test_dataset[0][0].shape == (3, 24, 24)  # resize to 27 + centre crop
    no_val = ImageFolderDataModule(str(tmp_path), preset="cifar")
    no_val.setup("fit")
    assert no_val.val_dataset is None and no_val.val_dataloader() == []


def test_return_index_and_pickled_sources_for_workers(tmp_path):
    pixels = real_pixels(2)
    write_tree(tmp_path / "tree", pixels, splits=("train", "test"))
    zip_tree(tmp_path / "tree", tmp_path / "zip", inner=True)
    dm = ImageFolderDataModule(str(tmp_path / "zip"), preset="cifar", return_index=True, batch_size=6)
    dm.setup()
    x, y, index = next(iter(dm.train_dataloader()))
    assert x.shape == (6, 3, 32, 32) and [dm.train_dataset.labels[i] for i in index] == y.tolist()
    clone = pickle.loads(pickle.dumps(dm.train_dataset))  # what a spawned worker receives
    assert isinstance(clone.source, FileSource)
    np.testing.assert_array_equal(image_folder_module.decode_rgb(clone.source.read(clone.files[1])), pixels["airplane"][1])


def test_errors_missing_layout_unknown_class_and_bad_arguments(tmp_path):
    dm = ImageFolderDataModule(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError) as err:
        dm.setup()
    assert str(tmp_path / "missing") in str(err.value) and "<split>/<class>/<image>" in str(err.value)
    pixels = real_pixels(1)
    write_tree(tmp_path / "a", pixels, splits=("train",))
    write_tree(tmp_path / "a", {"dog": pixels["cat"]}, splits=("test",))
    with pytest.raises(ValueError, match=r"class folders not in the training split: \['dog'\]"):
        ImageFolderDataModule(str(tmp_path / "a")).setup()
    with pytest.raises(ValueError, match=r"`preset` must be one of \['cifar', 'tiny_imagenet', 'imagenet'\]"):
        ImageFolderDataModule(str(tmp_path), preset="mnist")
    with pytest.raises(ValueError, match="`image_size` must be None or a positive integer, got 0"):
        ImageFolderDataModule(str(tmp_path), image_size=0)
    with pytest.raises(ValueError, match="`std` must be positive"):
        ImageFolderDataModule(str(tmp_path), std=(0.2, 0.0, 0.2))
    with pytest.raises(ValueError, match="`corruption_params` must be None"):
        ImageFolderDataModule(str(tmp_path), corruption_params="tiny")


# --------------------------------------------------------------------------- Tiny-ImageNet
WNIDS = ("n01443537", "n02094433", "n01629819")  # deliberately not sorted in wnids.txt


def write_tiny(root: Path) -> dict[str, np.ndarray]:
    """A 3-class Tiny-ImageNet-200 tree with 64x64 JPEGs; returns pixels by relative path."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (root / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in WNIDS))
    pixels, rows = {}, []
    for w in WNIDS:
        (root / "train" / w / "images").mkdir(parents=True)
        (root / "train" / w / f"{w}_boxes.txt").write_text("")
        for k in range(4):
            pixels[f"train/{w}/images/{w}_{k}.JPEG"] = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    (root / "val" / "images").mkdir(parents=True)
    for k in range(6):
        w = WNIDS[(k * 2) % 3]
        pixels[f"val/images/val_{k}.JPEG"] = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        rows.append(f"val_{k}.JPEG\t{w}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(rows) + "\n")
    (root / "test" / "images").mkdir(parents=True)  # unlabelled; ignored
    for rel, image in pixels.items():
        Image.fromarray(image).save(root / rel, format="JPEG", quality=95)
    Image.fromarray(pixels["val/images/val_0.JPEG"]).save(root / "test/images/test_0.JPEG")
    return {rel: np.array(Image.open(root / rel).convert("RGB")) for rel in pixels}  # decoded JPEGs


def test_tiny_imagenet_folder_and_published_zip(tmp_path):
    decoded = write_tiny(tmp_path / "tiny-imagenet-200")
    (tmp_path / "zipped").mkdir()
    with zipfile.ZipFile(tmp_path / "zipped" / "tiny-imagenet-200.zip", "w") as z:
        for f in sorted((tmp_path / "tiny-imagenet-200").rglob("*")):
            z.write(f, f.relative_to(tmp_path).as_posix())
    classes = sorted(WNIDS)
    for data_dir in (tmp_path, tmp_path / "tiny-imagenet-200", tmp_path / "zipped"):
        dm = TinyImageNetDataModule(str(data_dir), val_split=3, augment=False, batch_size=5)
        dm.setup()
        assert dm.classes == classes and dm.num_classes == 200
        assert len(dm.train_dataset) == 9 and len(dm.val_dataset) == 3 and len(dm.test_dataset) == 6
        assert dm.test_dataset.files[0] == "val/images/val_0.JPEG"
        assert dm.test_dataset.labels.tolist() == [classes.index(WNIDS[(k * 2) % 3]) for k in range(6)]
        for f, label in zip(dm.train_dataset.files, dm.train_dataset.labels):
            assert classes[label] == f.split("/")[1]
            got = image_folder_module.decode_rgb(dm.train_dataset.source.read(f))
            assert np.abs(got.astype(int) - decoded[f].astype(int)).max() <= 2  # libjpeg-turbo vs PIL
        x, y = dm.test_dataset[0]
        assert x.shape == (3, 64, 64)
        mean, std = torch.tensor(TINY_IMAGENET_MEAN)[:, None, None], torch.tensor(TINY_IMAGENET_STD)[:, None, None]
        back = (x * std + mean) * 255
        assert (back - torch.from_numpy(decoded["val/images/val_0.JPEG"]).permute(2, 0, 1)).abs().max() <= 2.5


def test_tiny_imagenet_download_guard_and_missing_layout(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(folder_module, "download_url",
                        lambda url, root, md5=None: calls.append((url, root, md5)))
    dm = TinyImageNetDataModule(str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        dm.setup()
    for part in (str(tmp_path), "wnids.txt", "val/val_annotations.txt", "tiny-imagenet-200.zip", "download=True"):
        assert part in str(err.value)
    assert calls == []
    with pytest.raises(FileNotFoundError):
        TinyImageNetDataModule(str(tmp_path), download=True).setup()  # the fake download wrote nothing
    assert calls == [(TinyImageNetDataModule.URL, str(tmp_path), TinyImageNetDataModule.MD5)]
    write_tiny(tmp_path / "tiny-imagenet-200")
    TinyImageNetDataModule(str(tmp_path), download=True).setup("test")
    assert len(calls) == 1
