"""Corrupted test sets: CIFARCDataset, ImageNetCFolder, write_cifar_c round trips and the
SupportsCorruptions protocol of the image DataModules (on the fly, cached, published files)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

import lightning_sparse.data.image.corrupted as corrupted_module
import lightning_sparse.data.image.robustness as robustness_module
from lightning_sparse.data import DigitsDataModule
from lightning_sparse.data.cifar import CIFAR10_CLASSES, CIFAR10DataModule
from lightning_sparse.data.corruptions import Corrupt, corrupt
from lightning_sparse.data.image_folder import ImageFolderDataModule, TinyImageNetDataModule
from lightning_sparse.data.robustness import (
    CIFARCDataset,
    CorruptedDataset,
    ImageNetCFolder,
    SupportsCorruptions,
    write_cifar_c,
)
from lightning_sparse.data.transforms import cifar_eval_transform


def _clean(n: int = 6, seed: int = 0, side: int = 32) -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), i % 3) for i in range(n)]


def _write_cifar10(root: Path, n_train: int = 40, n_test: int = 20) -> np.ndarray:
    """The python-pickle layout (see test_cifar.py for the full checks); returns the test images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)

    def dump(name, x, y):
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": x.transpose(0, 3, 1, 2).reshape(len(x), 3072), b"labels": y}, f, protocol=2)

    for k in range(1, 6):
        dump(f"data_batch_{k}", rng.integers(0, 256, (n_train // 5, 32, 32, 3), dtype=np.uint8),
             [i % 10 for i in range(n_train // 5)])
    test = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    dump("test_batch", test, [i % 10 for i in range(n_test)])
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES]}, f, protocol=2)
    return test


# --------------------------------------------------------------------------- readers
def test_cifar_c_dataset_reads_severity_blocks_from_a_memory_map(tmp_path):
    n = 4
    images = np.zeros((5 * n, 32, 32, 3), np.uint8)
    for s in range(5):
        for i in range(n):
            images[s * n + i] = 10 * (s + 1) + i
    np.save(tmp_path / "fog.npy", images)
    np.save(tmp_path / "labels.npy", np.tile(np.arange(n) % 2, 5).astype(np.int64))
    data = CIFARCDataset(tmp_path, "fog", severity=3)
    assert len(data) == n and isinstance(data._images, np.memmap)
    image, label = data[2]
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and (image == 32).all() and label == 0
    assert data[-1][0][0, 0, 0] == 33 and data.labels.tolist() == [0, 1, 0, 1]
    clone = pickle.loads(pickle.dumps(data))  # workers re-open the map
    assert clone._images is None and (clone[1][0] == 31).all()
    x, _ = CIFARCDataset(tmp_path, "fog", 5, transform=cifar_eval_transform())[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    with pytest.raises(IndexError):
        data[n]


def test_cifar_c_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}.*`<name>.npy`.*`labels.npy`"):
        CIFARCDataset(tmp_path, "fog", 1)
    np.save(tmp_path / "fog.npy", np.zeros((7, 32, 32, 3), np.uint8))
    np.save(tmp_path / "labels.npy", np.zeros(7, np.int64))
    with pytest.raises(ValueError, match=r"must hold uint8 images of shape \(5 \* N, H, W, 3\)"):
        CIFARCDataset(tmp_path, "fog", 1)
    with pytest.raises(ValueError, match="`severity` must be an integer from 1 to 5, got 6"):
        CIFARCDataset(tmp_path, "fog", 6)
    with pytest.raises(ValueError, match="`name` must be one of"):
        CIFARCDataset(tmp_path, "rain", 1)


def test_imagenet_c_folder(tmp_path):
    rng = np.random.default_rng(0)
    pixels = {}
    for wnid in ("n02", "n01"):
        folder = tmp_path / "snow" / "3" / wnid
        folder.mkdir(parents=True)
        for k in range(2):
            image = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(image).save(folder / f"ILSVRC2012_val_{wnid}_{k}.JPEG", quality=90)
            pixels[(wnid, k)] = np.array(Image.open(folder / f"ILSVRC2012_val_{wnid}_{k}.JPEG").convert("RGB"))
    data = ImageNetCFolder(tmp_path, "snow", 3)
    assert data.classes == ["n01", "n02"] and data.labels.tolist() == [0, 0, 1, 1]
    np.testing.assert_array_equal(data[3][0], pixels[("n02", 1)])
    ordered = ImageNetCFolder(tmp_path, "snow", 3, classes=["n02", "x", "n01"])  # the clean set's order
    assert ordered.labels.tolist() == [2, 2, 0, 0]
    with pytest.raises(ValueError, match=r"must include every class folder.*\['n02'\]"):
        ImageNetCFolder(tmp_path, "snow", 3, classes=["n01"])
    with pytest.raises(FileNotFoundError, match=r"`<name>/<severity>/<wnid>/\*.JPEG`"):
        ImageNetCFolder(tmp_path, "snow", 2)


def test_corrupted_dataset_is_fixed_per_index():
    clean = _clean()
    data = CorruptedDataset(clean, "gaussian_noise", 4, seed=7)
    first = [data[i][0] for i in range(len(clean))]
    assert all((data[i][0] == first[i]).all() for i in reversed(range(len(clean))))
    seed_2 = Corrupt("gaussian_noise", 4, seed=7).item_seed(2)
    np.testing.assert_array_equal(first[2], corrupt(clean[2][0], "gaussian_noise", 4, seed=seed_2))
    assert not (first[2] == CorruptedDataset(clean, "gaussian_noise", 4, seed=8)[2][0]).all()
    assert data[5][1] == clean[5][1]


# --------------------------------------------------------------------------- write_cifar_c
def test_write_cifar_c_round_trip_and_resume(tmp_path, monkeypatch):
    clean = _clean()
    names = ["gaussian_noise", "pixelate"]
    out = write_cifar_c(clean, tmp_path / "c", names, seed=3, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "gaussian_noise.npy", "labels.npy", "pixelate.npy", "revisions.json", "source.npy"
    ]
    assert np.load(out / "labels.npy").tolist() == [c[1] for c in clean] * 5
    for name in names:
        assert np.load(out / f"{name}.npy", mmap_mode="r").shape == (30, 32, 32, 3)
        for s in range(1, 6):
            stored, fly = CIFARCDataset(out, name, s), CorruptedDataset(clean, name, s, seed=3)
            for i in range(len(clean)):
                np.testing.assert_array_equal(stored[i][0], fly[i][0])
                assert stored[i][1] == fly[i][1]
    monkeypatch.setattr(corrupted_module, "_corrupt_block", lambda *a: pytest.fail("rewrote a complete file"))
    write_cifar_c(clean, out, names, seed=3, progress=False)


def test_write_cifar_c_regenerates_what_an_older_implementation_wrote(tmp_path, monkeypatch):
    """A cached file is reused only when its corruption's implementation revision is unchanged (a
    frost written with the old procedural textures must not survive the switch to the photos)."""
    clean = _clean(4)
    out = write_cifar_c(clean, tmp_path, ["gaussian_noise", "frost"], seed=1, progress=False)
    frost = np.load(out / "frost.npy")
    np.save(out / "gaussian_noise.npy", np.zeros_like(frost))  # marks the file: kept if reused
    np.save(out / "frost.npy", np.zeros_like(frost))
    revision = corrupted_module.corruption_revision
    monkeypatch.setattr(corrupted_module, "corruption_revision", lambda n: "9" if n == "frost" else revision(n))
    write_cifar_c(clean, out, ["gaussian_noise", "frost"], seed=1, progress=False)
    assert not np.load(out / "gaussian_noise.npy").any()  # same revision: reused as it is
    np.testing.assert_array_equal(np.load(out / "frost.npy"), frost)  # new revision: written again
    (out / "revisions.json").unlink()  # a cache from before revisions were recorded: revision "1"
    monkeypatch.setattr(corrupted_module, "corruption_revision", revision)
    np.save(out / "frost.npy", np.zeros_like(frost))
    write_cifar_c(clean, out, ["frost"], seed=1, progress=False)
    assert revision("frost") != "1" and np.load(out / "frost.npy").any()


def test_datamodule_regenerates_a_stale_cached_corruption(tmp_path, monkeypatch):
    _write_cifar10(tmp_path / "data")
    cache = tmp_path / "cache"
    dm = CIFAR10DataModule(str(tmp_path / "data"), test_subset=10, corrupted_dir=str(cache))
    list(dm.corruption_datasets(["contrast", "frost"], [1]))
    np.save(cache / "frost.npy", np.zeros_like(np.load(cache / "frost.npy")))
    assert corrupted_module.stale_corruptions(cache, ["contrast", "frost"]) == []
    revision = corrupted_module.corruption_revision
    monkeypatch.setattr(corrupted_module, "corruption_revision", lambda n: "9" if n == "frost" else revision(n))
    assert corrupted_module.stale_corruptions(cache, ["contrast", "frost"]) == ["frost"]
    list(dm.corruption_datasets(["contrast", "frost"], [1]))
    assert np.load(cache / "frost.npy").any() and corrupted_module.stale_corruptions(cache, ["frost"]) == []


def test_write_cifar_c_in_worker_processes_matches(tmp_path):
    clean = _clean(5)
    out = write_cifar_c(clean, tmp_path, ["shot_noise"], num_workers=2, progress=False)
    fly = CorruptedDataset(clean, "shot_noise", 2)
    np.testing.assert_array_equal(CIFARCDataset(out, "shot_noise", 2)[4][0], fly[4][0])


def test_write_cifar_c_errors(tmp_path):
    write_cifar_c(_clean(4), tmp_path, ["contrast"], progress=False)
    with pytest.raises(ValueError, match="already holds a CIFAR-C set of 4 images with other labels"):
        write_cifar_c(_clean(5), tmp_path, ["contrast"], progress=False)
    mixed = _clean(2) + _clean(1, side=16)
    with pytest.raises(ValueError, match="must all have one shape"):
        write_cifar_c(mixed, tmp_path / "m", ["contrast"], progress=False)
    with pytest.raises(ValueError, match="`corruptions` must name corruptions in"):
        write_cifar_c(_clean(2), tmp_path / "n", ["rain"], progress=False)
    with pytest.raises(ValueError, match="`corruptions` must be a non-empty list"):
        write_cifar_c(_clean(2), tmp_path / "n", "fog", progress=False)


# --------------------------------------------------------------------------- the protocol
def test_image_datamodules_support_corruptions(tmp_path):
    for dm in (CIFAR10DataModule(str(tmp_path)), ImageFolderDataModule(str(tmp_path)),
               TinyImageNetDataModule(str(tmp_path))):
        assert isinstance(dm, SupportsCorruptions)
    assert CIFAR10DataModule(str(tmp_path)).corruption_params == "cifar"
    assert not isinstance(DigitsDataModule(), SupportsCorruptions)


def test_on_the_fly_datasets_match_the_clean_test_pipeline(tmp_path):
    test = _write_cifar10(tmp_path)
    dm = CIFAR10DataModule(str(tmp_path), corruption_seed=4)
    with pytest.raises(ValueError, match="`corruptions` must name corruptions in"):
        dm.corruption_datasets(["rain"])  # at the call, before iterating
    with pytest.raises(ValueError, match="`severities` must be an integer from 1 to 5, got 0"):
        dm.corruption_datasets(severities=[0])
    items = list(dm.corruption_datasets(["contrast", "gaussian_noise"], [1, 5]))
    assert [(n, s) for n, s, _ in items] == [("contrast", 1), ("contrast", 5), ("gaussian_noise", 1),
                                             ("gaussian_noise", 5)]
    assert len(list(dm.corruption_datasets())) == 15 * 5
    _, _, data = items[3]
    x, y = data[7]
    seed = Corrupt("gaussian_noise", 5, seed=4).item_seed(7)
    want = cifar_eval_transform()(corrupt(test[7], "gaussian_noise", 5, seed=seed, params="cifar"))
    torch.testing.assert_close(x, want)
    assert y == dm.test_dataset[7][1] == 7


def test_cached_and_published_files(tmp_path):
    _write_cifar10(tmp_path / "data")
    cache = tmp_path / "cache"
    dm = CIFAR10DataModule(str(tmp_path / "data"), test_subset=10, corrupted_dir=str(cache))
    fly = CIFAR10DataModule(str(tmp_path / "data"), test_subset=10)
    cached = list(dm.corruption_datasets(["contrast", "shot_noise"], [2, 4]))
    assert sorted(p.name for p in cache.iterdir()) == [
        "contrast.npy", "labels.npy", "revisions.json", "shot_noise.npy", "source.npy"
    ]
    for (name, s, a), (_, _, b) in zip(cached, fly.corruption_datasets(["contrast", "shot_noise"], [2, 4])):
        assert isinstance(a, CIFARCDataset) and len(a) == 10
        for i in range(10):
            torch.testing.assert_close(a[i][0], b[i][0])
            assert a[i][1] == b[i][1]

    published = tmp_path / "CIFAR-10-C"  # full-size files (as published) and a subset test split
    full = CIFAR10DataModule(str(tmp_path / "data"))
    full.setup("test")
    write_cifar_c(full._corruption_base()[0], published, ["fog"], progress=False)
    sub = CIFAR10DataModule(str(tmp_path / "data"), test_subset=10, corrupted_dir=str(published),
                            cache_corrupted=False)
    (_, _, data), = sub.corruption_datasets(["fog"], [3])
    assert isinstance(data, Subset) and len(data) == 10
    indices = sub.test_dataset.source_indices
    whole = CIFARCDataset(published, "fog", 3)
    for i in (0, 9):
        assert data[i][1] == whole[int(indices[i])][1] == sub.test_dataset[i][1]
    with pytest.raises(FileNotFoundError, match="neither `contrast.npy`.*`cache_corrupted` is False"):
        list(sub.corruption_datasets(["contrast"]))
    np.save(published / "labels.npy", np.zeros(100, np.int64))  # another test set's files
    with pytest.raises(ValueError, match="generated from other test images"):
        list(sub.corruption_datasets(["fog"], [1]))
    (published / "source.npy").unlink()  # as published: labels are all there is to check
    with pytest.raises(ValueError, match="does not match the test split"):
        list(sub.corruption_datasets(["fog"], [1]))


def test_a_cache_made_from_another_subset_is_refused(tmp_path):
    """Two stratified subsets of one size share their labels: the pixels must decide."""
    _write_cifar10(tmp_path / "data", n_test=40)
    cache = str(tmp_path / "cache")
    a = CIFAR10DataModule(str(tmp_path / "data"), test_subset=10, seed=0, corrupted_dir=cache)
    list(a.corruption_datasets(["contrast"], [1]))
    b = CIFAR10DataModule(str(tmp_path / "data"), test_subset=10, seed=1, corrupted_dir=cache)
    b.setup("test")
    assert np.array_equal(np.sort(a.test_dataset.labels), np.sort(b.test_dataset.labels))
    with pytest.raises(ValueError, match="generated from other test images"):
        list(b.corruption_datasets(["contrast"], [1]))
    with pytest.raises(ValueError, match="already holds a CIFAR-C set .*choose an empty directory"):
        write_cifar_c(b._corruption_base()[0], cache, ["fog"], progress=False)


def test_image_folder_reads_imagenet_c_folders_in_its_class_order(tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for k in range(2):
                Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(
                    tmp_path / "data" / split / c / f"{k}.png")
    folder = tmp_path / "imagenet-c" / "fog" / "2" / "dog"
    folder.mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "a.JPEG")
    dm = ImageFolderDataModule(str(tmp_path / "data"), image_size=32, corrupted_dir=str(tmp_path / "imagenet-c"))
    (name, s, data), = dm.corruption_datasets(["fog"], [2])
    assert isinstance(data, ImageNetCFolder) and data.classes == ["cat", "dog"]
    x, y = data[0]
    assert x.shape == (3, 32, 32) and y == 1
    fly = ImageFolderDataModule(str(tmp_path / "data"), image_size=32)  # on the fly: crop, corrupt, normalise
    (_, _, data), = fly.corruption_datasets(["fog"], [2])
    assert data[3][0].shape == (3, 32, 32) and data[3][1] == 1
    assert data.dataset[0][0].shape == (32, 32, 3)  # the raw base is the uint8 centre crop


def test_with_the_robustness_callback(tmp_path):
    import lightning as L

    from lightning_sparse.callbacks import CorruptionRobustness
    from lightning_sparse.tasks.classification import ImageClassifier

    _write_cifar10(tmp_path / "data")
    dm = CIFAR10DataModule(str(tmp_path / "data"), batch_size=10)
    task = ImageClassifier("mlp", {"in_features": 3 * 32 * 32, "hidden_sizes": [8]}, num_classes=10)
    cb = CorruptionRobustness(corruptions=["contrast", "impulse_noise"], severities=[1, 5], plot=False,
                              output_dir=str(tmp_path / "out"))
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[cb], default_root_dir=tmp_path)
    trainer.test(task, datamodule=dm, verbose=False)
    assert set(cb.summary.corruption_accuracy) == {"contrast", "impulse_noise"}
    assert (tmp_path / "out" / "robustness.csv").is_file()


def test_under_ddp_only_global_rank_zero_writes(tmp_path, monkeypatch):
    from types import SimpleNamespace

    _write_cifar10(tmp_path / "data")
    cache = tmp_path / "cache"
    events = []
    rank0 = CIFAR10DataModule(str(tmp_path / "data"), corrupted_dir=str(cache))

    def barrier(name):  # rank 0 finishes its files while rank 1 waits here
        events.append(("barrier", name))
        write_cifar_c(rank0._corruption_base()[0], cache, ["contrast"], progress=False)

    strategy = SimpleNamespace(broadcast=lambda obj, src: events.append(("broadcast", obj)) or obj, barrier=barrier)
    rank1 = CIFAR10DataModule(str(tmp_path / "data"), corrupted_dir=str(cache))
    rank1.trainer = SimpleNamespace(world_size=2, is_global_zero=False, strategy=strategy)
    monkeypatch.setattr(robustness_module, "write_cifar_c", lambda *a, **k: pytest.fail("rank 1 wrote"))
    rank1.setup("test")
    (_, _, data), = rank1.corruption_datasets(["contrast"], [1])
    assert events == [("broadcast", ["contrast"]), ("barrier", "write_cifar_c")]
    assert isinstance(data, CIFARCDataset) and len(data) == 20
