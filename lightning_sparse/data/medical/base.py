"""What the 3D segmentation DataModules share: their arguments, dict batches and loaders.

Batches are dicts (MONAI's convention), collated with ``monai.data.list_data_collate``, which
flattens items that are lists of patches (``num_samples`` patches of one volume) into the
batch axis:

* ``"image"``: float32 ``(B, C, X, Y, Z)``, the spatial axes in RAS order (indices growing
  towards the patient's right, anterior and superior side; MONAI's order), or ``(B, C, Z, Y, X)``
  with ``depth_first=True`` (the slice axis first, nnU-Net's array order: the ``D`` of
  ``(B, C, D, H, W)`` for depth-wise layers such as E2ENet's depth shift); ``C = in_channels``;
* ``"label"``: int64 ``(B, 1, *spatial)``, class ids ``0..num_classes-1`` (0 background);
* ``"index"``: int64 ``(B,)``, training batches only and only with ``return_index=True``:
  each patch's item in ``train_dataset``. An item that yields several patches gives all of them
  its index, so an index may repeat within a batch; the data-pruning callbacks score an item
  by the mean loss of its patches.

The training loader is the base's resumable one (:class:`~lightning_sparse.data.loading.ResumableDataLoader`
over an :class:`~lightning_sparse.data.loading.EpochSampler` of the ``train_dataset`` items,
a sampler from :meth:`~lightning_sparse.data.base.DataModule.set_train_sampler` honoured) with
MONAI's collate and ``worker_init_fn`` (each worker reseeds its random transforms). Mid-epoch
resume restores which items come next; the random patches and augmentations of the resumed
part are new draws. Validation and test loaders hold one whole volume (or region) per batch
(``B = 1``, its own shape), for sliding-window inference.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from monai.data import list_data_collate
from monai.data.utils import worker_init_fn
from torch.utils.data import DataLoader, Dataset

from lightning_sparse._validation import check_bool, check_choice
from lightning_sparse.data.base import DataModule
from lightning_sparse.data.loading import EpochSampler, ResumableDataLoader
from lightning_sparse.data.medical.transforms import (
    INTENSITIES,
    check_patch_size,
    check_spacing,
    check_window,
    resolve_label_map,
)

__all__ = ["IndexedVolumes", "MedicalDataModule"]


class IndexedVolumes(Dataset):
    """A dataset of dict items (or lists of dicts) with ``"index"``, the item's position, added.

    The ``return_index`` wrapper of the dict-batch DataModules (the tuple datasets use
    :class:`~lightning_sparse.data.loading.IndexedDataset`): every patch of item ``i`` carries
    ``index = tensor(i)``. Other attributes are those of the wrapped dataset.

    Examples:
        >>> data = IndexedVolumes([{"image": 0}, [{"image": 1}, {"image": 2}]])
        >>> data[1]
        [{'image': 1, 'index': tensor(1)}, {'image': 2, 'index': tensor(1)}]
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        item = self.dataset[i]
        index = torch.tensor(i, dtype=torch.int64)
        if isinstance(item, list):
            return [{**patch, "index": index} for patch in item]
        return {**item, "index": index}

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)


class MedicalDataModule(DataModule):
    """Arguments, attributes and loaders shared by the 3D segmentation DataModules.

    Attributes set at construction (for a config to link to the model): ``num_classes``
    (background included), ``in_channels``, ``class_names``, ``spatial_dims`` (3) and
    ``patch_size``. The batch contract and loaders are described in
    :mod:`lightning_sparse.data.medical.base`.

    Args:
        patch_size: Training patch in voxels, in the batches' axis order (``(X, Y, Z)``, or
            ``(Z, Y, X)`` with ``depth_first``); also a natural sliding-window size.
        spacing: Resample to this voxel size in mm, RAS ``(x, y, z)`` (``Spacingd``); None keeps
            each file's.
        intensity: ``"ct"`` (HU window ``[a_min, a_max]`` to ``[0, 1]``), ``"zscore"`` (each
            channel over its non-zero voxels, for MR), ``"none"``, or ``"auto"`` (resolved by
            the subclass from the modality).
        a_min: Lower end of the CT window in HU.
        a_max: Upper end of the CT window in HU.
        label_map: Label values to keep: a list (classes ``1..K`` in its order) or a mapping
            ``{value: class}`` (several values may share a class); every other value becomes
            background. None keeps the labels as stored.
        crop_foreground: Crop every volume to the bounding box of its foreground (``image > 0``
            after the CT window, before the z-score).
        augment: Random flips, right-angle rotations and intensity shifts of training patches.
        depth_first: Spatial axes ``(Z, Y, X)`` instead of ``(X, Y, Z)`` (see the module docstring).
        batch_size: Training items per batch (a Decathlon item is ``num_samples`` patches).
        **kwargs: ``num_workers``, ``seed``, ``return_index``: see
            :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: If an argument is out of range.
    """

    spatial_dims = 3

    def __init__(
        self,
        patch_size: Sequence[int] = (96, 96, 96),
        spacing: Sequence[float] | None = None,
        intensity: str = "auto",
        a_min: float = -175.0,
        a_max: float = 250.0,
        label_map: list[int] | dict[int, int] | None = None,
        crop_foreground: bool = True,
        augment: bool = True,
        depth_first: bool = False,
        batch_size: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        self.patch_size = check_patch_size("patch_size", patch_size)
        self.spacing = check_spacing(spacing)
        self.intensity = check_choice("intensity", intensity, INTENSITIES)
        check_window(a_min, a_max)
        self.a_min, self.a_max = float(a_min), float(a_max)
        self.label_map = resolve_label_map(label_map)
        self.crop_foreground = check_bool("crop_foreground", crop_foreground)
        self.augment = check_bool("augment", augment)
        self.depth_first = check_bool("depth_first", depth_first)
        self.num_classes: int = 0
        self.in_channels: int = 1
        self.class_names: tuple[str, ...] = ()

    def _classes(self, names: dict[int, str]) -> None:
        """Set ``num_classes`` / ``class_names`` from the stored label names and ``label_map``."""
        if self.label_map is None:
            top = max(names) if names else 0
            self.class_names = tuple(names.get(i, f"label_{i}") for i in range(top + 1))
        else:
            merged: dict[int, list[str]] = {}
            for src, dst in self.label_map.items():
                merged.setdefault(dst, []).append(names.get(src, f"label_{src}"))
            self.class_names = (names.get(0, "background"), *("+".join(merged[c]) for c in sorted(merged)))
        self.num_classes = len(self.class_names)

    def _loader(self, dataset: Dataset | None, name: str) -> DataLoader:
        """Resumable training loader of dict batches; one volume per evaluation batch."""
        if dataset is None:
            raise self._no_setup(name)
        common = dict(num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                      collate_fn=list_data_collate, worker_init_fn=worker_init_fn)
        if name != "train":
            return DataLoader(dataset, batch_size=1, shuffle=False, **common)
        replicas, rank = self._shards()
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        sampler = EpochSampler(len(dataset), seed, self._train_sampler, replicas, rank)
        data = IndexedVolumes(dataset) if self.return_index else dataset
        return ResumableDataLoader(data, batch_size=self.batch_size, sampler=sampler,
                                   progress=self._batches_trained, **common)
