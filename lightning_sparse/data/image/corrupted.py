"""Corrupted test sets: published CIFAR-10-C / ImageNet-C files, cached copies, on-the-fly.

Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR, arXiv:1903.12261). The benchmark evaluates a classifier on its clean test
set corrupted by 15 corruptions at 5 severities. Three sources of corrupted images, all yielding
``(image, label)`` like the clean test set:

* :class:`CIFARCDataset` reads the published CIFAR-10-C / CIFAR-100-C layout: ``<root>/<name>.npy``
  ``uint8 (5 * N, 32, 32, 3)`` holding severities 1-5 stacked in order (block ``s - 1`` is the
  test set at severity ``s``, in test-set order) and ``<root>/labels.npy`` ``(5 * N,)``;
  memory-mapped, so a 10k-image set costs no RAM until read.
* :class:`ImageNetCFolder` reads the ImageNet-C / Tiny-ImageNet-C layout
  ``<root>/<name>/<severity>/<wnid>/*.JPEG``.
* :class:`CorruptedDataset` (from :mod:`lightning_sparse.data.corruptions`) corrupts a dataset of
  clean ``uint8`` images on the fly, with a fixed seed per item; :func:`write_cifar_c` stores
  exactly those pixels once in the CIFAR-10-C layout, so that :class:`CIFARCDataset` reads them
  back (a fixed, fast test set for repeated evaluations).

:class:`~lightning_sparse.data.image.robustness.CorruptionsMixin` serves them to
``lightning_sparse.callbacks.CorruptionRobustness`` from the image DataModules.

Examples:
    >>> import numpy as np, tempfile
    >>> clean = [(np.full((32, 32, 3), 60 * i, np.uint8), i) for i in range(3)]
    >>> root = write_cifar_c(clean, tempfile.mkdtemp(), ["contrast"], progress=False)
    >>> data = CIFARCDataset(root, "contrast", severity=5)
    >>> len(data), data[2][1], bool((data[2][0] == CorruptedDataset(clean, "contrast", 5)[2][0]).all())
    (3, 2, True)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image
from torch.utils.data import Dataset

from lightning_sparse.data.corruptions import (
    ALL_CORRUPTIONS,
    CORRUPTIONS,
    Corrupt,
    CorruptedDataset,
    corruption_revision,
)
from lightning_sparse.data.image.files import IMAGE_EXTENSIONS

__all__ = [
    "CIFARCDataset", "CorruptedDataset", "IMAGE_EXTENSIONS", "ImageNetCFolder", "stale_corruptions", "write_cifar_c"]

_SEVERITIES = (1, 2, 3, 4, 5)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or name not in ALL_CORRUPTIONS:
        raise ValueError(f"`name` must be one of {list(ALL_CORRUPTIONS)}, got {name!r}.")
    return name


def _check_severity(severity: object, arg: str = "severity") -> int:
    if isinstance(severity, (bool, np.bool_)) or not isinstance(severity, (int, np.integer)) \
            or not 1 <= severity <= 5:
        raise ValueError(f"`{arg}` must be an integer from 1 to 5, got {severity!r}.")
    return int(severity)


class CIFARCDataset(Dataset):
    """One (corruption, severity) of a CIFAR-10-C / CIFAR-100-C directory, memory-mapped.

    Hendrycks & Dietterich 2019 (arXiv:1903.12261), published at doi:10.5281/zenodo.2535967
    (CIFAR-10-C) and doi:10.5281/zenodo.3555552 (CIFAR-100-C). Item ``i`` is
    ``(transform(image), label)`` with ``image = <name>.npy[(severity - 1) * N + i]`` a ``uint8``
    array ``(32, 32, 3)`` (returned as is when ``transform`` is None) and ``label`` an int.

    Args:
        root: Directory holding ``<name>.npy`` and ``labels.npy``.
        name: A corruption in ``ALL_CORRUPTIONS`` (the published files use the same names).
        severity: 1 to 5.
        transform: Optional callable applied to the ``uint8`` ``(H, W, C)`` array.

    Raises:
        ValueError: If ``name`` or ``severity`` is not allowed, or the files have the wrong shape.
        FileNotFoundError: If ``<root>/<name>.npy`` or ``<root>/labels.npy`` is missing.
    """

    def __init__(self, root: str | os.PathLike, name: str, severity: int,
                 transform: Callable[[Any], Any] | None = None) -> None:
        self.root = Path(root)
        self.name = _check_name(name)
        self.severity = _check_severity(severity)
        self.transform = transform
        self.path = self.root / f"{name}.npy"
        label_path = self.root / "labels.npy"
        for path in (self.path, label_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"CIFAR-C file {path} not found: `root` ({self.root}) must hold the CIFAR-10-C "
                    "layout `<name>.npy` (uint8, (5 * N, H, W, 3), severities 1-5 stacked) and "
                    "`labels.npy` ((5 * N,))."
                )
        images = self._images = np.load(self.path, mmap_mode="r")
        labels = np.load(label_path, mmap_mode="r")
        if images.ndim != 4 or images.dtype != np.uint8 or images.shape[0] % 5 \
                or images.shape[-1] not in (1, 3):
            raise ValueError(
                f"{self.path} must hold uint8 images of shape (5 * N, H, W, 3), got "
                f"{images.dtype} {images.shape}."
            )
        if labels.shape != images.shape[:1]:
            raise ValueError(
                f"{label_path} must have shape ({images.shape[0]},) to match {self.path}, got {labels.shape}."
            )
        self.n = images.shape[0] // 5
        self.offset = (self.severity - 1) * self.n
        self.labels = np.asarray(labels[self.offset:self.offset + self.n], dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers re-open the memory map
        state = self.__dict__.copy()
        state["_images"] = None
        return state

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[Any, int]:
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} images.")
        if self._images is None:
            self._images = np.load(self.path, mmap_mode="r")
        image = np.array(self._images[self.offset + index % self.n])  # copy out of the map
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


class ImageNetCFolder(Dataset):
    """One (corruption, severity) of an ImageNet-C / Tiny-ImageNet-C tree.

    Hendrycks & Dietterich 2019 (arXiv:1903.12261), doi:10.5281/zenodo.2235448. Layout
    ``<root>/<name>/<severity>/<wnid>/*.JPEG``; the published ImageNet-C images are the
    224x224 centre crops (Tiny-ImageNet-C: 64x64). Item ``i`` is ``(transform(image), label)``,
    ``image`` a ``uint8`` RGB array ``(H, W, 3)``, files in sorted order.

    Args:
        root: The corruption tree's root.
        name: A corruption in ``ALL_CORRUPTIONS``.
        severity: 1 to 5.
        transform: Optional callable applied to the ``uint8`` ``(H, W, 3)`` array.
        classes: Class names (wnids) in label order, e.g. the clean DataModule's ``classes``;
            default: the sorted sub-folders found (the ImageFolder convention).

    Raises:
        ValueError: If an argument is not allowed or a class folder is not in ``classes``.
        FileNotFoundError: If ``<root>/<name>/<severity>`` is missing or holds no images.
    """

    def __init__(self, root: str | os.PathLike, name: str, severity: int,
                 transform: Callable[[Any], Any] | None = None,
                 classes: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        self.name = _check_name(name)
        self.severity = _check_severity(severity)
        self.transform = transform
        folder = self.root / name / str(self.severity)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"ImageNet-C folder {folder} not found: `root` ({self.root}) must hold the layout "
                "`<name>/<severity>/<wnid>/*.JPEG`."
            )
        found = sorted(d.name for d in folder.iterdir() if d.is_dir())
        self.classes = list(found if classes is None else classes)
        index = {c: k for k, c in enumerate(self.classes)}
        unknown = [c for c in found if c not in index]
        if unknown:
            raise ValueError(f"`classes` must include every class folder of {folder}; missing {unknown[:5]}.")
        self.files: list[Path] = []
        labels: list[int] = []
        for wnid in found:
            files = sorted(p for p in (folder / wnid).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
            self.files += files
            labels += [index[wnid]] * len(files)
        if not self.files:
            raise FileNotFoundError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}/<wnid>/.")
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        with Image.open(self.files[index]) as im:
            image = np.array(im.convert("RGB"))  # writable: torch.from_numpy warns otherwise
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


def _corrupt_block(images: np.ndarray, name: str, severity: int, seed: int,
                   params: str | None, start: int) -> np.ndarray:
    """Corrupt ``images`` (items ``start, start + 1, ...``) exactly as ``CorruptedDataset`` does."""
    transform = Corrupt(name, severity, seed=seed, params=params)
    return np.stack([transform(image, index=start + k) for k, image in enumerate(images)])


def _gather(base: Any) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for i in range(len(base)):
        image, label = base[i][:2]
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
            raise ValueError(
                f"`base` must yield (uint8 array (H, W, C), label) items, got item {i} of dtype "
                f"{image.dtype} and shape {image.shape}."
            )
        if images and image.shape != images[0].shape:
            raise ValueError(
                f"`base` images must all have one shape for the CIFAR-C layout, got {images[0].shape} "
                f"(item 0) and {image.shape} (item {i})."
            )
        images.append(image)
        labels.append(int(label))
    if not images:
        raise ValueError("`base` must hold at least one image, got an empty dataset.")
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _fingerprint(images: np.ndarray) -> np.ndarray:
    """One int64 per image (a position-weighted pixel sum): tells two test sets apart even when
    their labels agree, e.g. two stratified subsets of the same size."""
    flat = images.reshape(len(images), -1).astype(np.int64)
    return flat @ (np.arange(flat.shape[1], dtype=np.int64) % 251 + 1)


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


_REVISIONS = "revisions.json"


def _read_revisions(root: Path) -> dict[str, str]:
    """Corruption name -> implementation revision of the files in ``root`` (none recorded: ``{}``)."""
    path = root / _REVISIONS
    return json.loads(path.read_text()) if path.is_file() else {}


def stale_corruptions(root: str | Path, names: Sequence[str]) -> list[str]:
    """The names whose cached ``<root>/<name>.npy`` was written by :func:`write_cifar_c` with an
    older implementation of the corruption (:func:`corruption_revision`); published files (no
    ``source.npy`` beside them) are never stale.

    Examples:
        >>> stale_corruptions("no/such/dir", ["frost"])
        []
    """
    root = Path(root)
    if not (root / "source.npy").is_file():
        return []
    revisions = _read_revisions(root)
    return [n for n in names if (root / f"{n}.npy").is_file() and revisions.get(n, "1") != corruption_revision(n)]


def write_cifar_c(
    base: Any,
    out_dir: str | os.PathLike,
    corruptions: Sequence[str] | None = None,
    seed: int = 0,
    params: str | None = None,
    progress: bool = True,
    num_workers: int = 0,
) -> Path:
    """Corrupt ``base`` at severities 1-5 and store it in the CIFAR-10-C layout, once.

    Hendrycks & Dietterich 2019 (arXiv:1903.12261). Writes ``<out_dir>/labels.npy``
    (``int64 (5 * N,)``) and ``<out_dir>/<name>.npy`` (``uint8 (5 * N, H, W, C)``, severity
    blocks in order) for every name; pixel ``i`` of block ``s - 1`` is exactly
    ``CorruptedDataset(base, name, s, seed=seed, params=params)[i][0]``. Files already complete
    (right shape) are skipped, so an interrupted run resumes; each file is written under a
    temporary name and renamed, so a file that exists is complete. All five severities are
    always written: the layout has no room for fewer.

    Args:
        base: Map-style dataset of ``(uint8 array (H, W, C), label, ...)``, all of one shape.
        out_dir: Output directory (created).
        corruptions: Names in ``ALL_CORRUPTIONS``; default the 15 benchmark ``CORRUPTIONS``.
        seed: Non-negative seed of :class:`CorruptedDataset`.
        params: ``"cifar"``, ``"imagenet"`` or ``None`` (by image size), as in ``corrupt``.
        progress: Log one line per corruption through ``rank_zero_info``.
        num_workers: Worker processes (0: in this process), started the platform's default way
            (fork on Linux up to Python 3.13, like DataLoader workers).

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ValueError: If an argument is not allowed, ``base`` yields images of mixed shapes, or
            ``out_dir`` already holds a different set (other labels or image shape).
    """
    names = tuple(CORRUPTIONS if corruptions is None else corruptions)
    if isinstance(corruptions, str) or not names:
        raise ValueError(f"`corruptions` must be a non-empty list of names or None, got {corruptions!r}.")
    for name in names:
        if name not in ALL_CORRUPTIONS:
            raise ValueError(f"`corruptions` must name corruptions in {list(ALL_CORRUPTIONS)}, got {name!r}.")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"`num_workers` must be a non-negative integer, got {num_workers!r}.")
    Corrupt(names[0], 1, seed=seed, params=params)  # validates `seed` and `params`
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images, labels = _gather(base)  # (N, H, W, C), (N,)
    n = len(images)
    all_labels = np.tile(labels, 5)
    label_path = out / "labels.npy"
    if label_path.is_file():
        existing = np.load(label_path)
        if not np.array_equal(existing, all_labels):
            raise ValueError(
                f"`out_dir` ({out}) already holds a CIFAR-C set of {len(existing) // 5} images with "
                f"other labels than `base` ({n} images): choose an empty directory."
            )
    else:
        _save_atomic(label_path, all_labels)
    source_path = out / "source.npy"  # fingerprints of the clean images (not in published sets)
    if source_path.is_file():
        if not np.array_equal(np.load(source_path), _fingerprint(images)):
            raise ValueError(
                f"`out_dir` ({out}) already holds a CIFAR-C set made from other images than `base` "
                "(same labels, other pixels: another subset or seed): choose an empty directory."
            )
    else:
        _save_atomic(source_path, _fingerprint(images))
    shape = (5 * n, *images.shape[1:])
    revisions_path = out / _REVISIONS  # implementation revision per corruption (not in published sets)
    revisions = _read_revisions(out)
    chunk = max(1, -(-n // max(1, 4 * num_workers)))
    pool = ProcessPoolExecutor(num_workers, mp_context=get_context()) if num_workers > 0 else None
    try:
        for name in names:
            path = out / f"{name}.npy"
            current = corruption_revision(name)
            if path.is_file():
                existing = np.load(path, mmap_mode="r")
                stale = revisions.get(name, "1") != current  # written by an older implementation
                if existing.shape == shape and existing.dtype == np.uint8 and not stale:
                    continue
                if stale and existing.shape == shape:
                    del existing
                    path.unlink()
                    rank_zero_info(f"write_cifar_c: {path.name} was written by an older {name}; regenerating.")
                else:
                    raise ValueError(
                        f"`out_dir` ({out}) holds {path.name} of {existing.dtype} {existing.shape}, not "
                        f"uint8 {shape}: it was written for another set; choose an empty directory."
                    )
            start = time.perf_counter()
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            for severity in _SEVERITIES:
                jobs = [(images[a:a + chunk], name, severity, seed, params, a) for a in range(0, n, chunk)]
                blocks = (pool.map(_corrupt_block, *zip(*jobs)) if pool is not None
                          else (_corrupt_block(*job) for job in jobs))
                offset = (severity - 1) * n
                for (_, _, _, _, _, a), block in zip(jobs, blocks):
                    array[offset + a:offset + a + len(block)] = block
            array.flush()
            del array
            os.replace(tmp, path)
            revisions[name] = current
            revisions_path.write_text(json.dumps(revisions, sort_keys=True))
            if progress:
                rank_zero_info(
                    f"write_cifar_c: {name} x 5 severities x {n} images in "
                    f"{time.perf_counter() - start:.1f} s -> {path}"
                )
    finally:
        if pool is not None:
            pool.shutdown()
    return out
