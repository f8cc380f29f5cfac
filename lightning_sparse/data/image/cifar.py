"""CIFAR-10 and CIFAR-100 as LightningDataModules, from the published pickles or image trees.

Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images" (tech. report, Univ. of
Toronto): 50,000 training and 10,000 test 32x32 RGB images in 10 or 100 classes. Three layouts
are found in ``data_dir`` (first match wins):

1. The python pickles of the published archives (``cifar-10-python.tar.gz``,
   ``cifar-100-python.tar.gz``): ``cifar-10-batches-py/data_batch_1..5``, ``test_batch``,
   ``batches.meta``; ``cifar-100-python/train``, ``test``, ``meta`` (fine labels). Each batch is a
   pickled dict with ``data`` ``uint8 (N, 3072)`` (row-major 32x32 planes R, G, B) and
   ``labels`` / ``fine_labels``. Read by a restricted unpickler that only builds numpy arrays.
2. An ImageFolder tree ``train/<class>/*.png|jpg`` and ``test/<class>/*``.
3. Zips ``train.zip`` / ``test.zip`` of such a tree (e.g. ``/work/shared/data/cifar10-q75``:
   CIFAR-10 re-encoded as JPEG quality 75, so clean images carry mild JPEG artefacts).

Images stay in memory as ``uint8 (N, 32, 32, 3)`` with ``int64`` labels (150 MB for CIFAR's
training split), so corruptions apply to the raw pixels. Trees and zips are decoded lazily: only
the images of the requested splits and subsets (``train_subset=2000`` decodes the validation
images and those 2000, not all 50,000). With ``cache_dir`` every decoded image is stored once in
an ``.npz`` per split in ``cache_dir`` (never in ``data_dir``, which may be read-only) under its
position in the full split; the file's name fingerprints the source files (path, size,
modification time), so it is reused while they are unchanged, by runs with any subset or seed,
which decode only the images no earlier run decoded. ``download=True`` fetches the published archive when no layout is
found.

CIFAR-10's classes are always airplane, automobile, bird, cat, deer, dog, frog, horse, ship,
truck (labels 0-9), whatever the source; CIFAR-100's are the 100 fine classes in the published
(alphabetical) order, i.e. the sorted folder names of a tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.datasets.utils import download_and_extract_archive

from lightning_sparse.data.image.base import ImageDataModuleBase
from lightning_sparse.data.image.cifar_files import ArrayPool, _names, read_cifar_pickle
from lightning_sparse.data.image.files import FileSource, find_split, scan_classes
from lightning_sparse.data.image.transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    cifar_eval_transform,
    cifar_train_transform,
)
from lightning_sparse.data.memory import BatchCompose, BatchHorizontalFlip, BatchNormalize, BatchRandomCrop

__all__ = ["CIFAR10_CLASSES", "CIFAR100DataModule", "CIFAR10DataModule", "read_cifar_pickle"]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
_CACHE_VERSION = 2  # 2: only the decoded images, with their positions


class _CIFARDataModule(ImageDataModuleBase):
    """CIFAR-10/100 base: layouts, download, cache. See :class:`CIFAR10DataModule` for arguments."""

    num_classes: int
    _name: str
    _pickle_dir: str
    _pickle_files: dict[str, tuple[str, ...]]
    _meta: tuple[str, str]  # (file, key)
    _label_key: str
    _url: str
    _md5: str
    _mean: tuple[float, ...]
    _std: tuple[float, ...]
    _memory_loader = True  # loader="memory": uint8 (N, 3, 32, 32) tensors, pad-crop-flip per batch

    def __init__(
        self,
        data_dir: str,
        batch_size: int = 128,
        download: bool = False,
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(data_dir, batch_size=batch_size, corruption_params="cifar", **kwargs)
        self.download = download
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        if self.cache_dir is not None and self.cache_dir.resolve() == self.data_dir.resolve():
            raise ValueError(f"`cache_dir` must not be `data_dir` (it may be read-only), got {cache_dir!r}.")
        self._pools: dict[str, ArrayPool] = {}
        self._found: tuple[str, Any] | None = None
        if self.num_classes == 10:
            self.classes = list(CIFAR10_CLASSES)

    # layouts
    def _pickle_root(self) -> Path | None:
        for root in (self.data_dir / self._pickle_dir, self.data_dir):
            if all((root / f).is_file() for files in self._pickle_files.values() for f in files):
                return root
        return None

    def _layout(self) -> tuple[str, Any] | None:
        if self._found is None:
            root = self._pickle_root()
            sources = {split: find_split(self.data_dir, split) for split in ("train", "test")}
            if root is not None:
                self._found = "pickle", root
            elif all(s is not None for s in sources.values()):
                self._found = "tree", sources
        return self._found

    def _missing(self) -> FileNotFoundError:
        pickles = ", ".join(f for files in self._pickle_files.values() for f in files)
        return FileNotFoundError(
            f"`data_dir` ({self.data_dir}) holds no {type(self).__name__[:-10]} data: looked for the "
            f"python pickles `{self._pickle_dir}/{{{pickles}}}` (in `data_dir` or directly in it), an "
            "ImageFolder tree `train/<class>/*` + `test/<class>/*`, and zips `train.zip` + `test.zip` "
            f"of such a tree. Set `download=True` to fetch {self._url}."
        )

    def prepare_data(self) -> None:
        """Download the published archive if ``download=True`` and no layout is found; with
        ``cache_dir``, decode the images the splits and subsets use into the cache."""
        if self._layout() is None and self.download:
            download_and_extract_archive(self._url, str(self.data_dir), md5=self._md5)
        if self.cache_dir is not None and self._layout() is not None:
            train, _, val_idx, keep = self._train_plan()
            train.ensure(keep if val_idx is None else np.concatenate([val_idx, keep]))
            test, test_idx = self._test_plan()
            test.ensure(test_idx)

    # loading
    def _check_classes(self, names: list[str], where: Any) -> list[str]:
        """The class names in label order; CIFAR-10's must be its 10 standard ones."""
        if self.num_classes == 10:
            if sorted(names) != sorted(CIFAR10_CLASSES):
                raise ValueError(
                    f"{where} must hold the 10 CIFAR-10 classes {list(CIFAR10_CLASSES)}, got {names}."
                )
            return list(CIFAR10_CLASSES)
        if len(set(names)) != self.num_classes:
            raise ValueError(f"{where} must hold {self.num_classes} classes, got {len(set(names))}.")
        return list(names)

    def _set_classes(self, classes: list[str]) -> None:
        if self.classes and self.classes != classes:
            raise ValueError(f"Class names differ between splits: {self.classes[:5]}... and {classes[:5]}...")
        self.classes = classes

    def _pool(self, split: str) -> ArrayPool | None:
        if split == "val":
            return None  # validation is carved from the training split
        if split in self._pools:
            return self._pools[split]
        layout = self._layout()
        if layout is None:
            raise self._missing()
        kind, where = layout
        pool = self._read_pickles(split, where) if kind == "pickle" else self._read_tree(split, where[split])
        self._pools[split] = pool
        return pool

    def _read_pickles(self, split: str, root: Path) -> ArrayPool:
        meta_file, meta_key = self._meta
        if (root / meta_file).is_file():
            self._set_classes(self._check_classes(_names(read_cifar_pickle(root / meta_file)[meta_key]),
                                                  root / meta_file))
        elif self.num_classes == 10:
            self._set_classes(list(CIFAR10_CLASSES))
        images, labels = [], []
        for name in self._pickle_files[split]:
            batch = read_cifar_pickle(root / name)
            data = np.asarray(batch["data"], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3072:
                raise ValueError(f"{root / name}: `data` must have shape (N, 3072), got {data.shape}.")
            images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # planes -> (N, H, W, C)
            labels.append(np.asarray(batch[self._label_key], dtype=np.int64))
        labels_all = np.concatenate(labels)
        if labels_all.min() < 0 or labels_all.max() >= self.num_classes:
            raise ValueError(f"{root}: labels must be in [0, {self.num_classes}), got [{labels_all.min()}, "
                             f"{labels_all.max()}].")
        if not self.classes:
            self._set_classes([str(k) for k in range(self.num_classes)])
        return ArrayPool(labels_all, np.ascontiguousarray(np.concatenate(images)))

    def _cache_path(self, split: str, source: FileSource) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha1(f"{_CACHE_VERSION}|{source.fingerprint()}".encode()).hexdigest()[:16]
        return self.cache_dir / f"{self._name}-{split}-{key}.npz"

    def _read_tree(self, split: str, source: FileSource) -> ArrayPool:
        cache = self._cache_path(split, source)
        stored = None if cache is None else ArrayPool.read_cache(cache)
        if stored is not None:  # labels and classes from the cache: no scan of the files yet
            classes, labels = [str(c) for c in stored["classes"]], stored["labels"]
            self._set_classes(classes)
        else:
            tree = scan_classes(source)
            classes = self._check_classes(list(tree), source)
            self._set_classes(classes)
            index = {c: k for k, c in enumerate(classes)}
            labels = np.asarray([index[c] for c in sorted(tree, key=index.__getitem__) for _ in tree[c]],
                                dtype=np.int64)

        def files() -> list[str]:
            tree = scan_classes(source)
            index = {c: k for k, c in enumerate(classes)}
            return [f for c in sorted(tree, key=index.__getitem__) for f in tree[c]]

        return ArrayPool(labels, source=source, files=files, cache=cache, classes=classes)

    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean the images are normalised with (what attacks need to undo it)."""
        return self._mean

    @property
    def std(self) -> tuple[float, ...]:
        """Per-channel standard deviation the images are normalised with."""
        return self._std

    # transforms
    def _train_transform(self) -> Callable[[Any], Any]:
        return cifar_train_transform(self._mean, self._std)

    def _eval_transform(self) -> Callable[[Any], Any]:
        return cifar_eval_transform(self._mean, self._std)

    def _corruption_transform(self) -> Callable[[Any], Any]:
        return cifar_eval_transform(self._mean, self._std)

    def _memory_train_transform(self) -> BatchCompose:
        # cifar_train_transform per batch: 4-pixel zero padding + random 32x32 crop, flip, normalise
        return BatchCompose(BatchRandomCrop(4), BatchHorizontalFlip(), BatchNormalize(self._mean, self._std))

    def _memory_eval_transform(self) -> BatchNormalize:
        return BatchNormalize(self._mean, self._std)


class CIFAR10DataModule(_CIFARDataModule):
    """CIFAR-10 (Krizhevsky 2009): 50k/10k 32x32 images in 10 classes, from pickles, trees or zips.

    Items are ``(x, y)``: ``x`` float32 ``(3, 32, 32)`` normalised with ``CIFAR10_MEAN`` /
    ``CIFAR10_STD`` after (training, ``augment=True``) 4-pixel padding, random crop and flip;
    ``y`` an int64 label. With ``return_index=True`` the training split yields ``(x, y, index)``,
    ``index`` being the position in ``train_dataset`` (``train_dataset.source_indices[index]``
    is the position in the full training split), the key of data-pruning callbacks.

    Splits: validation (``val_split`` images, stratified, seeded) is carved from the 50k
    training images first; ``train_subset`` then keeps a stratified, seeded subset of the rest
    and ``test_subset`` one of the test set. Order within a split: the source's (pickle order,
    or class then file name for trees). Corrupted test sets: ``corruption_datasets`` (see
    :class:`~lightning_sparse.data.image.robustness.CorruptionsMixin`), CIFAR constants; published
    CIFAR-10-C files match the pickle test order only (a tree source is ordered by class, and
    the label check refuses the mismatch).

    Args:
        data_dir: Directory holding one of the layouts (see the module docstring).
        batch_size: Samples per batch for every split.
        download: Fetch and extract the published archive into ``data_dir`` when no layout is
            found (in ``prepare_data``).
        cache_dir: Directory for the decoded images of tree/zip sources, an ``.npz`` per split
            holding every image decoded so far (None: decode the needed images at every
            ``setup``); never ``data_dir``.
        **kwargs: ``val_split`` (validation images taken from the training split: a count or a
            fraction in [0, 1); 0: none, ``val_dataloader`` returns ``[]``), ``augment``
            (pad-crop-flip for training, else normalisation only), ``train_subset`` and
            ``test_subset`` (stratified, seeded, e.g. for CPU-sized benchmarks),
            ``corrupted_dir`` (CIFAR-10-C files, published or written there once when
            ``cache_corrupted``), ``cache_corrupted``, ``corruption_seed``: see
            :class:`~lightning_sparse.data.image.base.ImageDataModuleBase`; ``num_workers``,
            ``seed`` (of the validation split and the subsets), ``return_index``, ``loader``
            (``"memory"``: the splits as ``uint8 (N, 3, 32, 32)`` tensors, pad-crop-flip and
            normalisation per batch; not with ``train_corruption``): see
            :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: If an argument is out of range (at construction), a subset is larger than
            its split or the classes are not CIFAR-10's (in ``setup``).
        FileNotFoundError: In ``setup``, if ``data_dir`` holds no layout (and none was downloaded).

    Examples:
        >>> dm = CIFAR10DataModule("/nonexistent", batch_size=32, val_split=0.1, train_subset=1000)
        >>> dm.num_classes, dm.classes[:3]
        (10, ['airplane', 'automobile', 'bird'])
    """

    num_classes = 10
    _name = "cifar10"
    _pickle_dir = "cifar-10-batches-py"
    _pickle_files = {"train": tuple(f"data_batch_{k}" for k in range(1, 6)), "test": ("test_batch",)}
    _meta = ("batches.meta", "label_names")
    _label_key = "labels"
    _url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    _md5 = "c58f30108f718f92721af3b95e74349a"
    _mean, _std = CIFAR10_MEAN, CIFAR10_STD


class CIFAR100DataModule(_CIFARDataModule):
    """CIFAR-100 (Krizhevsky 2009): 50k/10k 32x32 images in 100 fine classes.

    The same arguments, splits and items as :class:`CIFAR10DataModule`, with CIFAR-100's
    ``fine_labels``, normalisation constants (``CIFAR100_MEAN`` / ``CIFAR100_STD``) and layouts
    ``cifar-100-python/{train,test,meta}``, trees or zips of 100 class folders. ``classes`` is
    known after ``setup``.
    """

    num_classes = 100
    _name = "cifar100"
    _pickle_dir = "cifar-100-python"
    _pickle_files = {"train": ("train",), "test": ("test",)}
    _meta = ("meta", "fine_label_names")
    _label_key = "fine_labels"
    _url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    _md5 = "eb9058c3a382ffc7106e4002c42a8d85"
    _mean, _std = CIFAR100_MEAN, CIFAR100_STD
