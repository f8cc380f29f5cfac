"""Frost strength against the published formula, on real images and the published photos.

The reference is written out here from ``make_imagenet_c.py`` / ``make_cifar_c.py``
(Hendrycks & Dietterich 2019): ``frost = cv2.imread(photo)`` (one of the first five photos),
for CIFAR ``cv2.resize(frost, (0, 0), fx=0.2, fy=0.2)``, a random ``n x n`` crop (``n`` = 224 or
32), and ``np.clip(c0 * x + c1 * crop[..., [2, 1, 0]], 0, 255)``. Our ``frost`` must change
images by the same amount (mean absolute difference from the clean image) within 10% at every
severity. The expectation of the reference is taken over all five photos (equal weight, as
``np.random.randint(5)`` draws them) so only our side carries sampling noise, averaged over
many seeds and images.

CIFAR-10 test images (32x32 JPEG quality 75) exercise the CIFAR-10-C constants; scikit-learn's
``china.jpg`` and ``flower.jpg`` (centre crops resized to 224x224) the ImageNet-C ones.
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_image

from lightning_sparse.data.corruptions import _frost, corrupt

DATA_DIR = Path(os.environ.get("LIGHTNING_SPARSE_DATA_DIR", "/work/shared/data"))
CIFAR_ZIP = DATA_DIR / "cifar10-q75" / "test.zip"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse")

PUBLISHED = {  # severity 1..5 -> (image weight, frost weight), from the two scripts
    "imagenet": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
    "cifar": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
}
SIDE = {"imagenet": 224, "cifar": 32}


@pytest.fixture(scope="module")
def cv2():
    return pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def reference_photos(cv2):
    """The first five published photos as the scripts load them (BGR), per preset."""
    try:
        distribution = importlib.metadata.distribution("imagecorruptions")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the imagecorruptions distribution (published frost photos) is not installed")
    paths = [str(distribution.locate_file(f"imagecorruptions/frost/{name}"))
             for name in _frost.FROST_PHOTOS[:5]]
    photos = [cv2.imread(path) for path in paths]
    return {"imagenet": photos,
            "cifar": [cv2.resize(photo, (0, 0), fx=0.2, fy=0.2) for photo in photos]}


def _cifar_images() -> list[np.ndarray]:
    if not CIFAR_ZIP.exists():
        pytest.skip(f"CIFAR-10 test zip not found at {CIFAR_ZIP} (set LIGHTNING_SPARSE_DATA_DIR)")
    with zipfile.ZipFile(CIFAR_ZIP) as archive:
        return [np.array(Image.open(io.BytesIO(archive.read(f"test/{c}/{k:04d}.jpg"))).convert("RGB"))
                for c in CIFAR_CLASSES for k in (0, 1)]


def _photo_224(name: str) -> np.ndarray:
    image = load_sample_image(name)
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(image[top: top + side, left: left + side])
    return np.array(crop.resize((224, 224), Image.Resampling.BILINEAR))


def _published_change(x: np.ndarray, severity: int, preset: str, photos, crops: int,
                      rs: np.random.RandomState) -> float:
    """E|published frost(x) - x| over the five photos (equal weight) and ``crops`` random crops."""
    c = PUBLISHED[preset][severity - 1]
    n = SIDE[preset]
    x = x.astype(np.float64)
    changes = []
    for frost in photos:
        for _ in range(crops):
            x_start, y_start = rs.randint(0, frost.shape[0] - n), rs.randint(0, frost.shape[1] - n)
            out = np.clip(c[0] * x + c[1] * frost[x_start:x_start + n, y_start:y_start + n][..., [2, 1, 0]],
                          0, 255)
            changes.append(np.abs(out - x).mean())
    return float(np.mean(changes))


def _our_change(x: np.ndarray, severity: int, preset: str, seeds) -> float:
    return float(np.mean([np.abs(corrupt(x, "frost", severity, seed=int(s), params=preset)
                                 .astype(np.float64) - x).mean() for s in seeds]))


@pytest.mark.parametrize("preset", ["cifar", "imagenet"])
def test_frost_strength_matches_the_published_formula(reference_photos, preset):
    assert _frost.frost_source() == "photos"
    if preset == "cifar":
        images, seeds_per_image = _cifar_images(), 60
    else:
        images, seeds_per_image = [_photo_224("china.jpg"), _photo_224("flower.jpg")], 200
    ratios = []
    for severity in range(1, 6):
        ours, published = [], []
        for i, x in enumerate(images):
            seeds = range(10_000 * i, 10_000 * i + seeds_per_image)  # distinct draws per image
            ours.append(_our_change(x, severity, preset, seeds))
            published.append(_published_change(x, severity, preset, reference_photos[preset], 8,
                                               np.random.RandomState(i)))
        ratios.append(np.mean(ours) / np.mean(published))
    assert np.all(np.abs(np.array(ratios) - 1.0) < 0.10), (preset, np.round(ratios, 3))


def test_photos_are_read_as_rgb_and_resized_like_opencv(reference_photos):
    photos = _frost.frost_photos()
    assert photos is not None and len(photos) == _frost.FROST_BANK_SIZE == 5
    for index, (ours, bgr) in enumerate(zip(photos, reference_photos["imagenet"])):
        assert not ours.flags.writeable
        assert np.array_equal(ours, bgr[..., [2, 1, 0]])
        small = _frost.frost_texture(index, 32, 32, 0.2)
        assert np.array_equal(small, reference_photos["cifar"][index][..., [2, 1, 0]])
        assert _frost.frost_texture(index, 224, 224) is ours  # ImageNet: full resolution, cached


def test_photo_is_enlarged_to_cover_large_images(reference_photos):
    for index in range(_frost.FROST_BANK_SIZE):
        layer = _frost.frost_texture(index, 700, 1000)
        assert layer.shape[0] >= 700 and layer.shape[1] >= 1000
    image = np.full((700, 1000, 3), 100, dtype=np.uint8)
    out = corrupt(image, "frost", 3, seed=0)
    assert out.shape == image.shape and np.array_equal(out, corrupt(image, "frost", 3, seed=0))


def test_procedural_fallback_without_the_photos(monkeypatch):
    monkeypatch.setattr(_frost, "frost_photos", lambda: None)
    assert _frost.frost_source() == "procedural"
    a = _frost.frost_texture(2, 224, 224)
    assert a.dtype == np.uint8 and a.shape[0] >= 224 and a.shape[1] >= 224 and a.shape[2] == 3
    assert a is _frost.frost_texture(2, 224, 224)  # cached
    assert np.array_equal(a, _frost._generate(2, a.shape[0]))  # fixed seeds, same bank everywhere
    assert 0.3 < a.mean() / 255 < 0.55 and (a[..., 2] >= a[..., 0]).mean() > 0.99  # cold tint
    small = _frost.frost_texture(0, 32, 32, 0.2)
    assert small.shape[0] >= 32 and np.array_equal(small, _frost.frost_texture(0, 32, 32, 0.2))
    clean = np.full((32, 32, 3), 120, dtype=np.uint8)
    out = corrupt(clean, "frost", 3, seed=0)
    assert out.shape == clean.shape and not np.array_equal(out, clean)
