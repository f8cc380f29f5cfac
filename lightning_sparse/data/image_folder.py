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

Both DataModules share :class:`ImageDataModuleBase` (also the base of the CIFAR DataModules):
seeded, stratified validation split and train/test subsets, ``return_index``, corrupted test
sets (:class:`~lightning_sparse.data.robustness.SupportsCorruptions`).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets.utils import download_url
from torchvision.io import ImageReadMode, decode_image

from lightning_sparse.data.corruptions import PARAMS
from lightning_sparse.data.robustness import IMAGE_EXTENSIONS, CorruptionsMixin
from lightning_sparse.data.transforms import (
    PRESETS,
    center_crop_transform,
    eval_geometry,
    eval_transform,
    normalize_transform,
    resolve_preset,
    train_transform,
)

__all__ = ["ImageDataModuleBase", "ImageFolderDataModule", "TinyImageNetDataModule"]

_SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- files and decoding
def decode_rgb(data: bytes) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, ...) to a ``uint8`` RGB array ``(H, W, 3)``."""
    try:  # libjpeg-turbo / libpng through torchvision: about 3x faster than PIL on small JPEGs
        tensor = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        return np.ascontiguousarray(tensor.permute(1, 2, 0).numpy())  # (C, H, W) -> (H, W, C)
    except (RuntimeError, ValueError):
        import io

        with Image.open(io.BytesIO(data)) as image:
            return np.array(image.convert("RGB"))


_ZIP_HANDLES: dict[tuple[str, int, int], zipfile.ZipFile] = {}


def _zip_handle(path: Path) -> zipfile.ZipFile:
    """One open ``ZipFile`` per (file, version, process): parsing the directory of a 50k-member
    zip takes half a second, and DataLoader workers need handles of their own."""
    key = (str(path.resolve()), path.stat().st_mtime_ns, os.getpid())
    if key not in _ZIP_HANDLES:
        _ZIP_HANDLES[key] = zipfile.ZipFile(path)
    return _ZIP_HANDLES[key]


class FileSource:
    """Files under a directory or inside a zip (below ``prefix``), readable in any process.

    With ``optional_prefix=True`` (zips only), ``prefix`` applies only if every member lies
    below it (decided when the zip is first read, so that a cache check never opens it).
    """

    def __init__(self, path: str | os.PathLike, prefix: str = "", optional_prefix: bool = False) -> None:
        self.path = Path(path)
        self.is_zip = self.path.is_file()
        self._prefix = self._requested = prefix
        self._optional = optional_prefix and self.is_zip
        self._names: list[str] | None = None

    @property
    def prefix(self) -> str:
        if self._optional:
            names = [n for n in self._zipfile().namelist() if not n.endswith("/")]
            if not all(n.startswith(self._prefix) for n in names):
                self._prefix = ""
            self._optional = False
        return self._prefix

    def __repr__(self) -> str:
        return f"{self.path}" + (f"!{self.prefix}" if self.prefix else "")

    def _zipfile(self) -> zipfile.ZipFile:
        return _zip_handle(self.path)

    def names(self) -> list[str]:
        """Every file below ``prefix``, as sorted posix paths relative to it (hidden ones skipped)."""
        if self._names is None:
            if self.is_zip:
                raw = [n[len(self.prefix):] for n in self._zipfile().namelist()
                       if n.startswith(self.prefix) and not n.endswith("/")]
            else:
                root = self.path / self.prefix
                raw = [(Path(d) / f).relative_to(root).as_posix()
                       for d, _, files in os.walk(root, followlinks=True) for f in files]
            self._names = sorted(n for n in raw if "/." not in f"/{n}" and not n.startswith("__MACOSX/"))
        return self._names

    def read(self, name: str) -> bytes:
        """The bytes of file ``name`` (relative to ``prefix``)."""
        if self.is_zip:
            return self._zipfile().read(self.prefix + name)
        return (self.path / self.prefix / name).read_bytes()

    def sub(self, folder: str) -> FileSource:
        """The same source restricted to ``folder`` (a sub-directory of ``prefix``)."""
        folder = f"{folder.rstrip('/')}/"
        out = FileSource(self.path, self.prefix + folder)
        if self._names is not None:
            out._names = [n[len(folder):] for n in self._names if n.startswith(folder)]
        return out

    def exists(self, name: str) -> bool:
        if self.is_zip:
            try:
                self._zipfile().getinfo(self.prefix + name)
                return True
            except KeyError:
                return False
        return (self.path / self.prefix / name).is_file()

    def fingerprint(self) -> str:
        """A string that changes when the files change (path, size, modification time)."""
        if self.is_zip:
            st = self.path.stat()
            return f"zip|{self.path.resolve()}|{self._requested}|{st.st_size}|{st.st_mtime_ns}"
        stats = [(self.path / self.prefix / n).stat() for n in self.names()]
        return (f"dir|{(self.path / self.prefix).resolve()}|{len(stats)}|"
                f"{sum(s.st_size for s in stats)}|{max((s.st_mtime_ns for s in stats), default=0)}")


def find_split(data_dir: Path, split: str) -> FileSource | None:
    """``<data_dir>/<split>/`` or ``<data_dir>/<split>.zip`` (inner ``<split>/`` folder optional)."""
    if (data_dir / split).is_dir():
        return FileSource(data_dir / split)
    archive = data_dir / f"{split}.zip"
    if archive.is_file():
        return FileSource(archive, f"{split}/", optional_prefix=True)
    return None


def scan_classes(source: FileSource) -> dict[str, list[str]]:
    """``{class: [image paths]}`` of an ImageFolder tree: ``<class>/**/<image>``, sorted."""
    tree: dict[str, list[str]] = {}
    for name in source.names():
        parts = name.split("/")
        if len(parts) >= 2 and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
            tree.setdefault(parts[0], []).append(name)
    return dict(sorted(tree.items()))


# --------------------------------------------------------------------------- splits
def stratified_take(labels: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Choose ``n`` positions with class shares as in ``labels`` (largest remainder, seeded ties).

    Returns:
        ``(taken, rest)``, both sorted positions into ``labels``.
    """
    classes, counts = np.unique(labels, return_counts=True)
    exact = n * counts / counts.sum()
    take = np.floor(exact).astype(np.int64)
    short = n - int(take.sum())
    if short:  # largest fractional parts first, random among (near-)ties
        order = np.lexsort((rng.random(len(classes)), -np.round(exact - take, 9)))
        take[order[:short]] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
    taken = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)
    return taken, np.setdiff1d(np.arange(len(labels)), taken)


class ArrayImages(Dataset):
    """In-memory ``uint8`` images ``(N, H, W, C)`` and labels; item ``(transform(image), label[, i])``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, source_indices: np.ndarray,
                 transform: Callable[[Any], Any] | None = None, return_index: bool = False) -> None:
        self.images = images  # (N, H, W, C) uint8
        self.labels = labels  # (N,) int64
        self.source_indices = source_indices  # (N,) positions in the full split
        self.transform = transform
        self.return_index = return_index

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        image = self.images[i]
        if self.transform is not None:
            image = self.transform(image)
        if self.return_index:
            return image, int(self.labels[i]), i
        return image, int(self.labels[i])


class FileImages(Dataset):
    """Images decoded from a :class:`FileSource` on access; item ``(transform(image), label[, i])``."""

    def __init__(self, source: FileSource, files: Sequence[str], labels: np.ndarray,
                 source_indices: np.ndarray, transform: Callable[[Any], Any] | None = None,
                 return_index: bool = False) -> None:
        self.source = source
        self.files = list(files)
        self.labels = labels  # (N,) int64
        self.source_indices = source_indices
        self.transform = transform
        self.return_index = return_index

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        image = decode_rgb(self.source.read(self.files[i]))  # (H, W, 3) uint8
        if self.transform is not None:
            image = self.transform(image)
        if self.return_index:
            return image, int(self.labels[i]), i
        return image, int(self.labels[i])


class _ToArray:
    """``uint8`` tensor ``(C, H, W)`` -> numpy ``(H, W, C)`` (the raw pixels corruptions expect)."""

    def __call__(self, image: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(image.permute(1, 2, 0).numpy())


class _Compose:
    def __init__(self, *steps: Callable[[Any], Any]) -> None:
        self.steps = steps

    def __call__(self, x: Any) -> Any:
        for step in self.steps:
            x = step(x)
        return x


class ImageDataModuleBase(CorruptionsMixin, L.LightningDataModule):
    """Shared argument checks, splits, loaders and corruption hooks of the image DataModules.

    Subclasses implement ``_pool(split)`` returning a pool (``labels`` and ``subset(indices,
    transform, return_index)``) for ``"train"``, ``"val"`` (or None: carve it from train with
    ``val_split``) and ``"test"``, and the transforms ``_train_transform``,
    ``_eval_transform``, ``_raw_transform`` (to ``uint8`` ``(H, W, C)`` before normalising)
    and ``_corruption_transform``. See :class:`ImageFolderDataModule` for the arguments.
    """

    in_channels = 3

    def __init__(
        self,
        data_dir: str,
        batch_size: int = 128,
        num_workers: int = 0,
        val_split: int | float = 0,
        augment: bool = True,
        seed: int = 0,
        train_subset: int | None = None,
        test_subset: int | None = None,
        return_index: bool = False,
        corrupted_dir: str | None = None,
        cache_corrupted: bool = True,
        corruption_seed: int = 0,
        corruption_params: str | None = None,
    ) -> None:
        super().__init__()
        for arg, value, low in (("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                                ("seed", seed, 0), ("corruption_seed", corruption_seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                kind = "a positive" if low else "a non-negative"
                raise ValueError(f"`{arg}` must be {kind} integer, got {value!r}.")
        if isinstance(val_split, bool) or not isinstance(val_split, (int, float)) or val_split < 0 \
                or (isinstance(val_split, float) and val_split >= 1):
            raise ValueError(
                "`val_split` must be a sample count (int >= 0) or a fraction of the training split "
                f"in [0, 1), got {val_split!r}."
            )
        for arg, value in (("train_subset", train_subset), ("test_subset", test_subset)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{arg}` must be None or a positive integer, got {value!r}.")
        if corruption_params is not None and corruption_params not in PARAMS:
            raise ValueError(
                f"`corruption_params` must be None (by image size) or one of {list(PARAMS)}, got "
                f"{corruption_params!r}."
            )
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_split = val_split
        self.augment = augment
        self.seed = seed
        self.train_subset = train_subset
        self.test_subset = test_subset
        self.return_index = return_index
        self.corrupted_dir = corrupted_dir
        self.cache_corrupted = cache_corrupted
        self.corruption_seed = corruption_seed
        self.corruption_params = corruption_params
        self.classes: list[str] = []
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        self._test_indices: np.ndarray | None = None
        self._test_pool: Any = None

    # subclass hooks
    def _pool(self, split: str) -> Any:
        raise NotImplementedError

    def _train_transform(self) -> Callable[[Any], Any]:
        raise NotImplementedError

    def _eval_transform(self) -> Callable[[Any], Any]:
        raise NotImplementedError

    def _raw_transform(self) -> Callable[[Any], Any] | None:
        return None

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def _subset(self, labels: np.ndarray, n: int | None, arg: str, tag: int) -> np.ndarray:
        if n is None:
            return np.arange(len(labels))
        if n > len(labels):
            raise ValueError(f"`{arg}` must be at most the split's {len(labels)} images, got {n}.")
        return stratified_take(labels, n, np.random.default_rng([self.seed, tag]))[0]

    def setup(self, stage: str | None = None) -> None:
        """Read the data and build the splits that ``stage`` needs (all of them for None)."""
        if self.trainer is None:  # used outside a Trainer: nobody called prepare_data
            self.prepare_data()
        if stage in (None, "fit", "validate") and self.train_dataset is None:
            train = self._pool("train")
            val = self._pool("val")
            pool_idx = np.arange(len(train.labels))
            if val is None and self.val_split:
                n_val = (self.val_split if isinstance(self.val_split, int)
                         else round(self.val_split * len(pool_idx)))
                if n_val >= len(pool_idx):
                    raise ValueError(
                        f"`val_split` must leave training images: the training split has {len(pool_idx)}, "
                        f"got {self.val_split!r} ({n_val} images)."
                    )
                rng = np.random.default_rng([self.seed, 0])
                val_idx, pool_idx = stratified_take(train.labels, n_val, rng)
                self.val_dataset = train.subset(val_idx, self._eval_transform(), False)
            elif val is not None:
                self.val_dataset = val.subset(np.arange(len(val.labels)), self._eval_transform(), False)
            keep = pool_idx[self._subset(train.labels[pool_idx], self.train_subset, "train_subset", 1)]
            transform = self._train_transform() if self.augment else self._eval_transform()
            self.train_dataset = train.subset(keep, transform, self.return_index)
        if stage in (None, "test", "predict") and self.test_dataset is None:
            test = self._pool("test")
            self._test_pool = test
            self._test_indices = self._subset(test.labels, self.test_subset, "test_subset", 2)
            self.test_dataset = test.subset(self._test_indices, self._eval_transform(), False)

    # SupportsCorruptions hooks
    def _corruption_base(self) -> tuple[Any, np.ndarray | None]:
        if self.test_dataset is None:
            self.setup("test")
        return self._test_pool.subset(self._test_indices, self._raw_transform(), False), self._test_indices

    def _loader(self, dataset: Dataset | None, shuffle: bool, name: str) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"`{type(self).__name__}.setup()` must run before `{name}_dataloader()`.")
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """Shuffled batches ``(x, y)`` (``(x, y, index)`` with ``return_index``) of the training split."""
        return self._loader(self.train_dataset, True, "train")

    def val_dataloader(self) -> DataLoader | list:
        """Batches of the validation split, in order; an empty list when there is none."""
        if self.val_dataset is None and self.train_dataset is not None:
            return []
        return self._loader(self.val_dataset, False, "val")

    def test_dataloader(self) -> DataLoader:
        """Batches of the test split, in order."""
        return self._loader(self.test_dataset, False, "test")


class _FilePool:
    def __init__(self, source: FileSource, files: list[str], labels: np.ndarray) -> None:
        self.source, self.files, self.labels = source, files, labels

    def subset(self, idx: np.ndarray, transform: Any, return_index: bool) -> FileImages:
        files = [self.files[i] for i in idx]
        return FileImages(self.source, files, self.labels[idx], idx, transform, return_index)


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
        num_workers: DataLoader worker processes (0 loads in the main process).
        val_split: Validation images taken from ``train`` when there is no ``val`` folder
            besides a ``test`` one (or no ``val`` at all): a count or a fraction in [0, 1);
            stratified, seeded.
        augment: Use the preset's training augmentation (else the evaluation transform).
        seed: Seed of the validation split and the subsets.
        train_subset: Keep a stratified, seeded subset of this many training images.
        test_subset: Keep a stratified, seeded subset of this many test images.
        return_index: The training split also yields each item's index.
        corrupted_dir: Directory of corrupted test sets (see ``corruption_datasets``): published
            ImageNet-C / CIFAR-C files, or where ``cache_corrupted`` writes them; None corrupts
            on the fly.
        cache_corrupted: Write missing corrupted sets into ``corrupted_dir`` once.
        corruption_seed: Seed of the per-item corruptions.
        corruption_params: Constants of ``corrupt``: ``"cifar"``, ``"imagenet"`` or None (by
            image size: CIFAR's up to 64 pixels).

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
        num_workers: int = 0,
        val_split: int | float = 0,
        augment: bool = True,
        seed: int = 0,
        train_subset: int | None = None,
        test_subset: int | None = None,
        return_index: bool = False,
        corrupted_dir: str | None = None,
        cache_corrupted: bool = True,
        corruption_seed: int = 0,
        corruption_params: str | None = None,
    ) -> None:
        super().__init__(data_dir, batch_size, num_workers, val_split, augment, seed, train_subset,
                         test_subset, return_index, corrupted_dir, cache_corrupted, corruption_seed,
                         corruption_params)
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
        self.save_hyperparameters()
        self._pools: dict[str, Any] = {}
        self._sources: dict[str, FileSource | None] | None = None

    def _train_transform(self) -> Callable[[Any], Any]:
        return train_transform(self.preset, self.image_size, self.mean, self.std)

    def _eval_transform(self) -> Callable[[Any], Any]:
        return eval_transform(self.preset, self.image_size, self.mean, self.std)

    def _raw_transform(self) -> Callable[[Any], Any]:
        return _Compose(eval_geometry(self.preset, self.image_size), _ToArray())

    def _corruption_transform(self) -> Callable[[Any], Any]:
        # ImageNet-C images are already centre crops: resizing/cropping to image_size is a no-op
        size, mean, std = resolve_preset(self.preset, self.image_size, self.mean, self.std)
        return _Compose(center_crop_transform(size, size), normalize_transform(mean, std))

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

    def _pool(self, split: str) -> _FilePool | None:
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
        self._pools[split] = _FilePool(sources[name], files, labels)
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

    def _pool(self, split: str) -> _FilePool | None:
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
        self._pools[split] = _FilePool(root, files, labels)
        return self._pools[split]
