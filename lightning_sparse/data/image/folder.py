"""ImageFolder trees (plain or zipped) and Tiny-ImageNet-200 as LightningDataModules.

The ImageFolder layout of torchvision (``<split>/<class>/**/<image>``, classes are the sorted
folder names) is the common denominator of ImageNet (ILSVRC 2012, Russakovsky et al. 2015,
arXiv:1409.0575) and most image benchmarks. Each split may also be a zip of such a tree
(``<split>.zip``, with or without a leading ``<split>/`` folder inside), read member by member
without extracting: convenient on read-only or network storage.

Tiny-ImageNet-200 (Le & Yang 2015, "Tiny ImageNet Visual Recognition Challenge", CS231N):
200 ImageNet classes at 64x64, 500 training and 50 validation images per class, in its own
layout (``train/<wnid>/images/*.JPEG``; ``val/images/*.JPEG`` labelled by
``val/val_annotations.txt``; ``wnids.txt``), extracted or as the published
``tiny-imagenet-200.zip``. Its labelled validation set serves as the test split, as in the
sparse-training papers that report Tiny-ImageNet.

Both DataModules share :class:`~lightning_sparse.data.image.base.ImageDataModuleBase` (also the
base of the CIFAR DataModules): seeded, stratified validation split and train/test subsets,
``return_index``, corrupted test sets
(:class:`~lightning_sparse.data.image.robustness.SupportsCorruptions`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image  # noqa: F401  (used by the doctest)
from torchvision.datasets.utils import download_url

from lightning_sparse.data.image.base import ImageDataModuleBase
from lightning_sparse.data.image.datasets import Compose, FilePool, ToArray
from lightning_sparse.data.image.files import IMAGE_EXTENSIONS, FileSource, find_split, scan_classes
from lightning_sparse.data.image.transforms import (
    PRESETS,
    center_crop_transform,
    eval_geometry,
    eval_transform,
    normalize_transform,
    resolve_preset,
    train_transform,
)

__all__ = ["ImageFolderDataModule", "TinyImageNetDataModule"]

_SPLITS = ("train", "val", "test")


class ImageFolderDataModule(ImageDataModuleBase):
    """Train/val/test ImageFolder trees in ``data_dir`` (each a folder or a zip), decoded lazily.

    Looks for ``<data_dir>/<split>/<class>/**/<image>`` or ``<data_dir>/<split>.zip`` for
    ``split`` in train, val, test. Classes are the sorted class folders of ``train``; ``val`` and
    ``test`` must use a subset of them. Without a ``test`` split, ``val`` is the test split
    (ImageNet's convention) and the validation split is carved from ``train`` with
    ``val_split``; without ``val`` too, there is no validation unless ``val_split`` is set.

    Items are ``(x, y)``: ``x`` float32 ``(3, image_size, image_size)`` normalised with ``mean``
    and ``std``, ``y`` an int64 label; the training split yields ``(x, y, index)`` with
    ``return_index=True`` (``index`` the position in ``train_dataset``, whose
    ``source_indices[index]`` is the position in the full training split).

    Args:
        data_dir: Directory holding the splits.
        image_size: Output side; default the preset's (32, 64, 224).
        preset: Augmentation preset in ``transforms.PRESETS``: ``"imagenet"`` (random resized
            crop; resize + centre crop for evaluation), ``"cifar"`` or ``"tiny_imagenet"``
            (pad + random crop).
        mean: Per-channel mean, default the preset's (ImageNet's, CIFAR-10's, Tiny-ImageNet's).
        std: Per-channel std, default the preset's.
        batch_size: Samples per batch for every split.
        **kwargs: ``val_split`` (validation images taken from ``train`` when there is no ``val``
            folder besides a ``test`` one, or no ``val`` at all), ``augment`` (the preset's
            training augmentation, else the evaluation transform), ``train_subset``,
            ``test_subset``, ``corrupted_dir``, ``cache_corrupted``, ``corruption_seed``,
            ``corruption_params`` (see
            :class:`~lightning_sparse.data.image.base.ImageDataModuleBase`), ``num_workers``,
            ``seed``, ``return_index`` (see :class:`~lightning_sparse.data.base.DataModule`).

    Raises:
        ValueError: If an argument is out of range (at construction) or a subset is larger than
            its split (in ``setup``).
        FileNotFoundError: In ``setup``, if ``data_dir`` holds no ``train`` or test split.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> for split in ("train", "val"):
        ...     for c in ("cat", "dog"):
        ...         (root / split / c).mkdir(parents=True)
        ...         Image.new("RGB", (48, 40)).save(root / split / c / "0.png")
        >>> dm = ImageFolderDataModule(str(root), image_size=32, batch_size=2)
        >>> dm.num_classes, dm.classes
        (2, ['cat', 'dog'])
        >>> dm.setup("test")  # no `test` folder: `val` is the test split
        >>> x, y = dm.test_dataset[1]
        >>> tuple(x.shape), y
        ((3, 32, 32), 1)
    """

    def __init__(
        self,
        data_dir: str,
        image_size: int | None = None,
        preset: str = "imagenet",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(data_dir, batch_size=batch_size, **kwargs)
        if preset not in PRESETS:
            raise ValueError(f"`preset` must be one of {list(PRESETS)}, got {preset!r}.")
        if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                       or image_size < 1):
            raise ValueError(f"`image_size` must be None or a positive integer, got {image_size!r}.")
        self.preset = preset
        train_transform(preset, image_size, mean, std)  # validates mean/std
        self.image_size = image_size
        self.mean = mean
        self.std = std
        self._pools: dict[str, Any] = {}
        self._sources: dict[str, FileSource | None] | None = None

    def _train_transform(self) -> Callable[[Any], Any]:
        return train_transform(self.preset, self.image_size, self.mean, self.std)

    def _eval_transform(self) -> Callable[[Any], Any]:
        return eval_transform(self.preset, self.image_size, self.mean, self.std)

    def _raw_transform(self) -> Callable[[Any], Any]:
        return Compose(eval_geometry(self.preset, self.image_size), ToArray())

    def _corruption_transform(self) -> Callable[[Any], Any]:
        # ImageNet-C images are already centre crops: resizing/cropping to image_size is a no-op
        size, mean, std = resolve_preset(self.preset, self.image_size, self.mean, self.std)
        return Compose(center_crop_transform(size, size), normalize_transform(mean, std))

    def _splits(self) -> dict[str, FileSource | None]:
        if self._sources is None or any(s is None for s in self._sources.values()):
            self._sources = {split: find_split(self.data_dir, split) for split in _SPLITS}
        return self._sources

    @property
    def num_classes(self) -> int:
        """Number of classes: the class folders of ``train`` (scanned on first access)."""
        if not self.classes:
            sources = self._splits()
            source = sources["train"] or sources["test"] or sources["val"]
            if source is None:
                raise self._missing("training split")
            self.classes = list(scan_classes(source))
        return len(self.classes)

    def _missing(self, what: str) -> FileNotFoundError:
        return FileNotFoundError(
            f"`data_dir` ({self.data_dir}) has no {what}: looked for the ImageFolder layout "
            f"`<split>/<class>/<image>` or `<split>.zip` for splits {list(_SPLITS)}."
        )

    def _pool(self, split: str) -> FilePool | None:
        if split in self._pools:
            return self._pools[split]
        sources = self._splits()
        if split == "train":
            name = "train"
        elif split == "val":  # without a `test` split, `val` is the test split
            name = "val" if sources["test"] is not None else None
        else:
            name = "test" if sources["test"] is not None else "val"
        if name is None or sources[name] is None:
            if split == "val":
                return None
            raise self._missing("training split" if split == "train" else "test split (`test` or `val`)")
        if not self.classes:  # the training split's classes; a test-only tree uses its own
            self.classes = list(scan_classes(sources["train"] or sources[name]))
            if len(self.classes) < 2:
                raise ValueError(f"The training split in {self.data_dir} must hold >= 2 class folders, "
                                 f"got {self.classes}.")
        tree = scan_classes(sources[name])
        unknown = sorted(set(tree) - set(self.classes))
        if unknown:
            raise ValueError(f"{sources[name]} has class folders not in the training split: {unknown[:5]}.")
        index = {c: k for k, c in enumerate(self.classes)}
        files = [f for c in tree for f in tree[c]]
        labels = np.asarray([index[c] for c in tree for _ in tree[c]], dtype=np.int64)
        if not files:
            raise self._missing(f"images in {sources[name]}")
        self._pools[split] = FilePool(sources[name], files, labels)
        return self._pools[split]


class TinyImageNetDataModule(ImageFolderDataModule):
    """Tiny-ImageNet-200 (Le & Yang 2015): 200 classes, 100k training and 10k labelled 64x64 images.

    ``data_dir`` holds ``tiny-imagenet-200/`` (or is it, or holds ``tiny-imagenet-200.zip``):
    ``wnids.txt``, ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG`` with
    ``val/val_annotations.txt`` (``<file>\\t<wnid>\\t<box>``). Classes are the sorted wnids (the
    order of ImageFolder and of Tiny-ImageNet-C's folders). The labelled ``val`` set is the test
    split; validation is carved from training with ``val_split``. ``download=True`` fetches the
    published zip (248 MB) into ``data_dir`` when nothing is found; it is read without extracting.

    Corruptions default to ``corrupt``'s size-based choice, i.e. CIFAR's constants at 64 pixels;
    the published Tiny-ImageNet-C used constants of its own (not in
    ``lightning_sparse.data.corruptions``): point ``corrupted_dir`` at it to use it.

    Args:
        data_dir: See above.
        download: Download the zip when no Tiny-ImageNet layout is found in ``data_dir``.
        **kwargs: Every other argument of :class:`ImageFolderDataModule` (default
            ``preset="tiny_imagenet"``, ``image_size=64``).

    Raises:
        ValueError: As :class:`ImageFolderDataModule`.
        FileNotFoundError: In ``setup``, if no Tiny-ImageNet layout is found (and not downloaded).
    """

    num_classes = 200
    URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
    MD5 = "90528d7ca1a48142e341f4ef8d21d0de"

    def __init__(self, data_dir: str, download: bool = False, preset: str = "tiny_imagenet",
                 image_size: int | None = 64, **kwargs: Any) -> None:
        super().__init__(data_dir, image_size=image_size, preset=preset, **kwargs)
        self.download = download

    def _root(self) -> FileSource | None:
        for candidate in (self.data_dir, self.data_dir / "tiny-imagenet-200"):
            if (candidate / "wnids.txt").is_file():
                return FileSource(candidate)
        archive = self.data_dir / "tiny-imagenet-200.zip"
        if archive.is_file():
            return FileSource(archive, "tiny-imagenet-200/")
        return None

    def prepare_data(self) -> None:
        """Download the published zip if ``download=True`` and no layout is found."""
        if self.download and self._root() is None:
            download_url(self.URL, str(self.data_dir), md5=self.MD5)

    def _pool(self, split: str) -> FilePool | None:
        if split == "val":
            return None
        if split in self._pools:
            return self._pools[split]
        root = self._root()
        if root is None or not root.exists("wnids.txt"):
            raise FileNotFoundError(
                f"`data_dir` ({self.data_dir}) has no Tiny-ImageNet-200: looked for `wnids.txt`, "
                "`train/<wnid>/images/*.JPEG`, `val/images/*.JPEG` + `val/val_annotations.txt` in "
                "`data_dir`, `data_dir/tiny-imagenet-200/` and `data_dir/tiny-imagenet-200.zip` "
                "(set `download=True` to fetch it)."
            )
        if not self.classes:
            self.classes = sorted(root.read("wnids.txt").decode().split())
        index = {c: k for k, c in enumerate(self.classes)}
        if split == "train":
            files = [n for n in root.names() if n.startswith("train/")
                     and n.split("/")[2:3] == ["images"] and n.lower().endswith(IMAGE_EXTENSIONS)]
            wnids = [n.split("/")[1] for n in files]
        else:
            if not root.exists("val/val_annotations.txt"):
                raise FileNotFoundError(
                    f"{root}: `val/val_annotations.txt` is missing (Tiny-ImageNet layout)."
                )
            text = root.read("val/val_annotations.txt").decode()
            rows = [line.split("\t") for line in text.splitlines() if line]
            rows.sort()
            files = [f"val/images/{r[0]}" for r in rows]
            wnids = [r[1] for r in rows]
        unknown = sorted(set(wnids) - set(index))
        if unknown or not files:
            raise ValueError(f"{root} {split}: {len(files)} images, wnids not in wnids.txt: {unknown[:5]}.")
        labels = np.asarray([index[w] for w in wnids], dtype=np.int64)
        self._pools[split] = FilePool(root, files, labels)
        return self._pools[split]
