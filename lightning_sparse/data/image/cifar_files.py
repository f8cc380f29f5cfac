"""CIFAR's files: the published python pickles (read safely) and the decoded-image pool with its cache.

:func:`read_cifar_pickle` reads one batch or meta file of the published archives with an
unpickler that only builds numpy arrays. :class:`ArrayPool` holds every image of one split as
``uint8 (N, 32, 32, 3)``; for an image tree (or zip) it decodes images only when a split or
subset first needs them and, with a cache file, stores each decoded image under its position in
the full split, so later runs (any subset, any seed) decode only what no run decoded before.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from lightning_sparse.data.image.datasets import ArrayImages
from lightning_sparse.data.image.files import FileSource, decode_rgb

__all__ = ["ArrayPool", "read_cifar_pickle"]

IMAGE_SHAPE = (32, 32, 3)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays; refuses every other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"CIFAR pickles hold numpy arrays only; refusing {module}.{name}.")
        if module.startswith("numpy.core") and importlib.util.find_spec("numpy._core") is not None:
            module = "numpy._core" + module[len("numpy.core"):]  # numpy 2 renamed numpy.core
        return getattr(importlib.import_module(module), name)


def read_cifar_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Read one batch or meta file of the published python CIFAR archives (keys as ``str``).

    The files were written by Python 2's cPickle: byte-string keys and values, decoded here as
    ``encoding="bytes"``; keys are turned into ``str``, values are left as stored.

    Raises:
        pickle.UnpicklingError: If the file builds anything but numpy arrays and builtins.
    """
    with open(path, "rb") as f:
        raw = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}


def _names(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _names(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


class ArrayPool:
    """All images of one split, in memory; tree sources decode on demand (:meth:`ensure`).

    Args:
        labels: ``(N,)`` labels of the whole split.
        images: The decoded images ``(N, 32, 32, 3)`` (pickles), or None (a tree: decode lazily).
        source: The tree's files (with ``images=None``).
        files: Callable returning the ``N`` file names in split order (called when the first
            image must be decoded, so a complete cache never scans a zip).
        cache: ``.npz`` file of the images decoded so far (with their positions); read at
            construction, rewritten (atomically, merged with what other processes added) after
            :meth:`ensure` decoded anything new. Its name must fingerprint the source files.
        classes: Class names, stored in the cache.
    """

    def __init__(self, labels: np.ndarray, images: np.ndarray | None = None, source: FileSource | None = None,
                 files: Callable[[], list[str]] | None = None, cache: Path | None = None,
                 classes: list[str] | None = None) -> None:
        self.labels = labels
        self.source, self._files, self._file_list = source, files, None
        self.cache, self.classes = cache, classes
        if images is None:
            self.images = np.empty((len(labels), *IMAGE_SHAPE), dtype=np.uint8)
            self.decoded = np.zeros(len(labels), dtype=bool)
            self._load_cache()
        else:
            self.images, self.decoded = images, np.ones(len(labels), dtype=bool)

    @staticmethod
    def read_cache(cache: Path) -> dict[str, np.ndarray] | None:
        """The arrays of a cache file (``indices``, ``images``, ``labels``, ``classes``), or None."""
        if not cache.is_file():
            return None
        try:
            with np.load(cache, allow_pickle=False) as f:
                return {k: f[k] for k in ("indices", "images", "labels", "classes")}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None  # unreadable or of an older layout: decode again

    def _load_cache(self) -> None:
        stored = None if self.cache is None else self.read_cache(self.cache)
        if stored is None or not np.array_equal(stored["labels"], self.labels):
            return
        idx = stored["indices"]
        fresh = ~self.decoded[idx]
        self.images[idx[fresh]] = stored["images"][fresh]
        self.decoded[idx[fresh]] = True

    def _store(self) -> None:
        self._load_cache()  # keep what another process stored meanwhile
        idx = np.flatnonzero(self.decoded)
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache.with_name(f".{self.cache.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, indices=idx, images=self.images[idx], labels=self.labels,
                 classes=np.asarray(self.classes or []))
        os.replace(tmp, self.cache)

    def ensure(self, idx: np.ndarray) -> None:
        """Decode the images at positions ``idx`` that are not decoded yet (and cache them)."""
        idx = np.asarray(idx, dtype=np.int64)
        missing = np.unique(idx[~self.decoded[idx]])
        if not len(missing):
            return
        if self._file_list is None:
            self._file_list = self._files()
        for i in missing:
            image = decode_rgb(self.source.read(self._file_list[i]))
            if image.shape != IMAGE_SHAPE:
                raise ValueError(
                    f"{self.source}/{self._file_list[i]} must be a 32x32 RGB image, got shape {image.shape}."
                )
            self.images[i] = image
        self.decoded[missing] = True
        if self.cache is not None:
            self._store()
            rank_zero_info(f"decoded {len(missing)} images of {self.source} into {self.cache} "
                           f"({int(self.decoded.sum())} of {len(self.labels)} cached)")

    def subset(self, idx: np.ndarray, transform: Any) -> ArrayImages:
        """The images at positions ``idx`` (decoded first) as a dataset."""
        self.ensure(idx)
        whole = len(idx) == len(self.labels) and bool((idx == np.arange(len(idx))).all())
        images = self.images if whole else self.images[idx]  # no 150 MB copy for the full split
        return ArrayImages(images, self.labels[idx], idx, transform)
