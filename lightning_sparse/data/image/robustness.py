"""What ``CorruptionRobustness`` asks of a DataModule, and its implementation for the image ones.

:class:`SupportsCorruptions` is what ``lightning_sparse.callbacks.CorruptionRobustness`` asks of a
DataModule (the video DataModules implement it too); :class:`CorruptionsMixin` implements it for
the image DataModules of this package (``CIFAR10DataModule``, ``CIFAR100DataModule``,
``ImageFolderDataModule``, ``TinyImageNetDataModule``) from the corrupted test sets of
:mod:`lightning_sparse.data.image.corrupted` (Hendrycks & Dietterich 2019, arXiv:1903.12261).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from torch.utils.data import Dataset, Subset

from lightning_sparse.data.corruptions import ALL_CORRUPTIONS, CORRUPTIONS, CorruptedDataset
from lightning_sparse.data.image.corrupted import (
    _SEVERITIES,
    CIFARCDataset,
    ImageNetCFolder,
    _check_severity,
    _fingerprint,
    _gather,
    stale_corruptions,
    write_cifar_c,
)

__all__ = ["CorruptionsMixin", "SupportsCorruptions"]


@runtime_checkable
class SupportsCorruptions(Protocol):
    """A DataModule that offers corrupted copies of its test split (``CorruptionRobustness``).

    ``corruption_datasets`` yields ``(name, severity, dataset)`` where ``dataset`` yields
    ``(x, y)`` exactly like the clean test set (same evaluation transform, same label order);
    ``corruption_params`` is the constant set of ``corrupt`` in use (``"cifar"``, ``"imagenet"``
    or ``None`` for "by image size").
    """

    corruption_params: str | None

    def corruption_datasets(
        self, corruptions: Sequence[str] | None = None, severities: Sequence[int] = _SEVERITIES
    ) -> Iterator[tuple[str, int, Dataset]]:
        ...


class CorruptionsMixin:
    """Implements :class:`SupportsCorruptions` for a DataModule with a fixed clean test split.

    The host class sets ``corrupted_dir``, ``cache_corrupted``, ``corruption_seed``,
    ``corruption_params`` and ``classes`` in ``__init__``, and implements
    ``_corruption_base()`` -> ``(raw, source_indices)``: ``raw`` yields the test split as
    ``(uint8 (H, W, C), label)`` after any resize/crop and before normalisation, with a ``labels``
    array; ``source_indices`` are the positions of its items in the full test set (or None);
    and ``_corruption_transform()``: the ``uint8`` -> normalised tensor transform.

    Sources, per corruption, in order: ``<corrupted_dir>/<name>.npy`` (CIFAR-C layout, published
    or cached; a published full-size file is indexed with ``source_indices`` when the test split
    is a subset), ``<corrupted_dir>/<name>/<severity>/`` (ImageNet-C layout), else, with
    ``cache_corrupted``, :func:`write_cifar_c` into ``corrupted_dir`` first; without
    ``corrupted_dir``, :class:`CorruptedDataset` on the fly.
    """

    corrupted_dir: str | None
    cache_corrupted: bool
    corruption_seed: int
    corruption_params: str | None
    classes: list[str]

    @property
    def available_corruptions(self) -> tuple[str, ...]:
        """Every corruption this DataModule can yield (all of ``ALL_CORRUPTIONS``)."""
        return ALL_CORRUPTIONS

    def _corruption_base(self) -> tuple[Any, np.ndarray | None]:
        raise NotImplementedError

    def _corruption_transform(self) -> Callable[[Any], Any]:
        raise NotImplementedError

    def corruption_datasets(
        self, corruptions: Sequence[str] | None = None, severities: Sequence[int] = _SEVERITIES
    ) -> Iterator[tuple[str, int, Dataset]]:
        """Yield ``(name, severity, dataset)`` for the test split, with the evaluation transform.

        Args:
            corruptions: Names in ``ALL_CORRUPTIONS``; default the 15 benchmark ``CORRUPTIONS``.
            severities: Integers from 1 to 5.

        Raises:
            ValueError: If a name or severity is not allowed (raised at the call, not when
                iterating), or a file in ``corrupted_dir`` belongs to another test set.
        """
        names = tuple(CORRUPTIONS if corruptions is None else corruptions)
        if isinstance(corruptions, str) or not names:
            raise ValueError(f"`corruptions` must be a non-empty list of names or None, got {corruptions!r}.")
        for name in names:
            if name not in ALL_CORRUPTIONS:
                raise ValueError(
                    f"`corruptions` must name corruptions in {list(ALL_CORRUPTIONS)}, got {name!r}."
                )
        if isinstance(severities, (int, str)) or not len(severities):
            raise ValueError(f"`severities` must be a non-empty list of integers 1-5, got {severities!r}.")
        levels = tuple(_check_severity(s, "severities") for s in severities)
        return self._iter_corruptions(names, levels)

    def _iter_corruptions(self, names: tuple[str, ...], levels: tuple[int, ...]
                          ) -> Iterator[tuple[str, int, Dataset]]:
        raw, source_indices = self._corruption_base()
        transform = self._corruption_transform()
        if self.corrupted_dir is None:
            for name in names:
                for s in levels:
                    yield name, s, CorruptedDataset(raw, name, s, seed=self.corruption_seed,
                                                    params=self.corruption_params, transform=transform)
            return
        root = Path(self.corrupted_dir)
        self._write_missing(root, names, raw)
        for name in names:
            for s in levels:
                if (root / f"{name}.npy").is_file():
                    yield name, s, self._match(CIFARCDataset(root, name, s, transform), raw, source_indices)
                else:
                    yield name, s, ImageNetCFolder(root, name, s, transform, classes=self.classes)

    def _write_missing(self, root: Path, names: tuple[str, ...], raw: Any) -> None:
        """Write the corruptions missing from ``root`` once: on global rank 0, the others wait."""
        missing = [n for n in names if not (root / f"{n}.npy").is_file() and not (root / n).is_dir()]
        if self.cache_corrupted:  # our own cache, written by an older implementation of a corruption
            missing += [n for n in stale_corruptions(root, names) if n not in missing]
        trainer = getattr(self, "trainer", None)
        distributed = trainer is not None and trainer.world_size > 1
        if distributed:  # rank 0 decides, so that every rank reaches the same barrier
            missing = trainer.strategy.broadcast(missing, src=0)
        if not missing:
            return
        if not self.cache_corrupted:
            raise FileNotFoundError(
                f"`corrupted_dir` ({root}) holds neither `{missing[0]}.npy` (CIFAR-C layout) nor "
                f"`{missing[0]}/<severity>/<wnid>/` (ImageNet-C layout), and `cache_corrupted` is False."
            )
        if not distributed or trainer.is_global_zero:
            write_cifar_c(raw, root, missing, seed=self.corruption_seed, params=self.corruption_params)
        if distributed:
            trainer.strategy.barrier("write_cifar_c")

    @staticmethod
    def _match(data: CIFARCDataset, raw: Any, source_indices: np.ndarray | None) -> Dataset:
        """The CIFAR-C set as is when it is the test split, else its ``source_indices`` subset."""
        labels = np.asarray(raw.labels)
        source = Path(data.path).with_name("source.npy")  # written by write_cifar_c, not published
        stored = np.load(source) if source.is_file() else None
        current = _fingerprint(_gather(raw)[0]) if stored is not None else None
        if len(data) == len(labels) and np.array_equal(data.labels, labels) and (
            stored is None or np.array_equal(stored, current)
        ):
            return data
        if source_indices is not None and len(data) > int(source_indices.max()) \
                and np.array_equal(data.labels[source_indices], labels) \
                and (stored is None or np.array_equal(stored[source_indices], current)):
            return Subset(data, source_indices.tolist())
        if stored is not None:
            raise ValueError(
                f"{data.path} was generated from other test images than this DataModule's test split "
                f"({len(labels)} images; another subset, seed or source). Point `corrupted_dir` at an "
                "empty directory (or the published files)."
            )
        raise ValueError(
            f"{data.path} ({len(data)} images per severity) does not match the test split "
            f"({len(labels)} images; labels differ): it was written for another split, subset or "
            "class order. Point `corrupted_dir` at an empty directory or the published files."
        )
