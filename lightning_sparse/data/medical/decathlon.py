"""3D segmentation data in the Medical Segmentation Decathlon layout, on MONAI transforms.

The layout (Antonelli et al. 2022, "The Medical Segmentation Decathlon", Nat. Commun.,
arXiv:1902.09063), in which the MSD tasks (BraTS as ``Task01_BrainTumour``, ...), BTCV and AMOS
ship and which E2ENet (Wu et al., NeurIPS 2024, arXiv:2312.04727) trains on::

    <data_dir>/dataset.json
    <data_dir>/imagesTr/<case>.nii.gz    (3D, or 4D with the modalities on the last axis)
    <data_dir>/labelsTr/<case>.nii.gz
    <data_dir>/imagesTs/<case>.nii.gz

``dataset.json`` holds ``"training"``: ``[{"image": "./imagesTr/x.nii.gz", "label":
"./labelsTr/x.nii.gz"}, ...]``, ``"test"``: ``["./imagesTs/y.nii.gz", ...]`` (or dicts, with a
``"label"`` where the data set has them), ``"labels"``: ``{"0": "background", "1": "liver",
...}``, ``"modality"``: ``{"0": "CT"}``, ``"numTraining"``; an optional ``"validation"`` list
(AMOS, the MONAI BTCV list) in the format of ``"training"``. Lists are read with
``monai.data.load_decathlon_datalist`` (paths relative to ``data_dir``). nnU-Net v2's
``"channel_names"`` and ``{"name": id}`` labels are read too.

Nothing is downloaded: unpack a task (``Task09_Spleen.tar``, ...) and pass its folder.
:func:`write_decathlon` writes arrays in this layout.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from monai import transforms as mt
from monai.data import CacheDataset, Dataset, PersistentDataset, load_decathlon_datalist
from torch.utils.data import DataLoader

from lightning_sparse._validation import check_choice, check_int, check_number
from lightning_sparse.data.base import check_count
from lightning_sparse.data.medical.base import MedicalDataModule
from lightning_sparse.data.medical.transforms import (
    KEYS,
    KeepLabelsd,
    augment_transforms,
    intensity_transforms,
    load_transforms,
    tensor_transforms,
)

__all__ = ["CACHE_MODES", "DecathlonDataModule", "kfold_split", "read_label_names", "write_decathlon"]

CACHE_MODES = ("none", "memory", "disk")
"""Values of ``cache``: no cache, MONAI ``CacheDataset`` (RAM), ``PersistentDataset`` (``cache_dir``)."""


def kfold_split(num_items: int, num_folds: int, fold: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded k-fold split of ``num_items`` positions: ``(train, held-out fold)``, both sorted.

    A permutation from ``numpy.random.default_rng(seed)`` cut into ``num_folds`` parts whose
    sizes differ by at most one (``numpy.array_split``); the folds are disjoint and cover
    every position.

    Examples:
        >>> train, val = kfold_split(7, 3, 0, seed=0)
        >>> len(train), len(val), sorted(set(train) | set(val)) == list(range(7))
        (4, 3, True)
    """
    check_int("num_folds", num_folds, 2, num_items)
    check_int("fold", fold, 0, num_folds - 1)
    folds = np.array_split(np.random.default_rng(seed).permutation(num_items), num_folds)
    held = np.sort(folds[fold]).astype(np.int64)
    return np.setdiff1d(np.arange(num_items), held).astype(np.int64), held


def read_label_names(labels: Any) -> dict[int, str]:
    """``dataset.json``'s ``"labels"`` as ``{id: name}``: MSD ``{"1": "liver"}`` or nnU-Net v2 ``{"liver": 1}``.

    Examples:
        >>> read_label_names({"0": "background", "1": "spleen"})
        {0: 'background', 1: 'spleen'}
        >>> read_label_names({"background": 0, "liver": 1})
        {0: 'background', 1: 'liver'}
    """
    if not isinstance(labels, dict):
        return {}
    if all(str(k).isdigit() for k in labels):
        return {int(k): str(v) for k, v in labels.items()}
    return {int(v): str(k) for k, v in labels.items() if isinstance(v, int) and not isinstance(v, bool)}


def write_decathlon(
    root: str | Path,
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    test_images: Sequence[np.ndarray] = (),
    modality: Sequence[str] = ("CT",),
    label_names: Sequence[str] | None = None,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    name: str = "toy",
) -> Path:
    """Write arrays as a Medical Segmentation Decathlon tree (NIfTI through nibabel); returns ``root``.

    Args:
        root: Folder to write (created).
        images: One ``(X, Y, Z)`` array per training case, or ``(X, Y, Z, C)`` with several modalities.
        labels: One integer ``(X, Y, Z)`` label map per training case.
        test_images: Unlabelled test images (``imagesTs``).
        modality: Name of each image channel (``dataset.json``'s ``"modality"``).
        label_names: Name of each label value ``0..K-1``; default ``background, label_1, ...``.
        spacing: Voxel size in mm (a diagonal RAS affine).
        name: ``dataset.json``'s ``"name"``; the cases are ``<name>_<NNN>.nii.gz``.

    Examples:
        >>> import tempfile
        >>> rng = np.random.default_rng(0)
        >>> root = write_decathlon(tempfile.mkdtemp(), [rng.random((8, 8, 8))], [np.ones((8, 8, 8), np.uint8)])
        >>> json.loads((root / "dataset.json").read_text())["training"]
        [{'image': './imagesTr/toy_000.nii.gz', 'label': './labelsTr/toy_000.nii.gz'}]
    """
    root = Path(root)
    if len(images) != len(labels):
        raise ValueError(f"`labels` must hold one label map per image ({len(images)}), got {len(labels)}.")
    affine = np.diag([*map(float, spacing), 1.0])
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    training, test = [], []
    for i, (image, label) in enumerate(zip(images, labels)):
        case = f"{name}_{i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(image, np.float32), affine), root / "imagesTr" / case)
        nib.save(nib.Nifti1Image(np.asarray(label, np.uint8), affine), root / "labelsTr" / case)
        training.append({"image": f"./imagesTr/{case}", "label": f"./labelsTr/{case}"})
    for i, image in enumerate(test_images):
        case = f"{name}_{len(images) + i:03d}.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(image, np.float32), affine), root / "imagesTs" / case)
        test.append(f"./imagesTs/{case}")
    top = int(max((np.max(label) for label in labels), default=0))
    names = list(label_names) if label_names is not None else ["background"] + [f"label_{i}" for i in range(1, top + 1)]
    meta = {
        "name": name, "tensorImageSize": "4D" if np.ndim(images[0]) == 4 else "3D",
        "modality": {str(i): m for i, m in enumerate(modality)},
        "labels": {str(i): n for i, n in enumerate(names)},
        "numTraining": len(training), "numTest": len(test), "training": training, "test": test,
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root


def _ras_shape(path: str, spacing: tuple[float, float, float] | None) -> tuple[int, ...]:
    """Spatial shape of a NIfTI file after reorientation to RAS and resampling, from its header
    (``Spacingd`` may give one voxel more: it spans the corners' extent)."""
    image = nib.load(path)
    shape = np.asarray(image.shape[:3], dtype=np.float64)
    zooms = np.asarray(image.header.get_zooms()[:3], dtype=np.float64)
    axes = nib.io_orientation(image.affine)[:, 0].astype(int)  # output axis of each file axis
    ras_shape, ras_zooms = np.empty(3), np.empty(3)
    ras_shape[axes], ras_zooms[axes] = shape, zooms
    if spacing is not None:
        ras_shape = np.round(ras_shape * ras_zooms / np.asarray(spacing))
    return tuple(int(v) for v in ras_shape)


class DecathlonDataModule(MedicalDataModule):
    """A Medical Segmentation Decathlon task (or BTCV / AMOS in its layout): patches to train, volumes to validate.

    ``dataset.json`` is read at construction when it exists (otherwise at ``setup``, which then
    raises: a recipe may name a data set that is not on this machine), so ``num_classes`` (background included; from
    ``"labels"``, or ``label_map``), ``in_channels`` (the ``"modality"`` entries),
    ``class_names``, ``train_files`` and ``val_files`` are known before training. ``setup`` builds
    the MONAI datasets (and the caches).

    Splits: with ``fold`` an int, the ``"training"`` list is cut into ``num_folds`` seeded folds
    (:func:`kfold_split`, seed ``seed``): validation is fold ``fold``, training the others (the
    nnU-Net five-fold protocol). ``fold=None`` validates on the ``"validation"`` list of
    ``dataset.json`` (AMOS, MONAI's BTCV list) and trains on the whole ``"training"`` list. The
    test split is the ``"test"`` list; MSD test images have no labels, so its batches may hold
    ``"image"`` only (also ``predict_dataloader``).

    Transforms (all ``monai.transforms``, see :mod:`lightning_sparse.data.medical.transforms`):
    ``LoadImaged``, ``EnsureChannelFirstd``, ``Orientationd`` (RAS), ``Spacingd`` (with
    ``spacing``), ``Transposed`` (with ``depth_first``), the ``label_map`` subset, the intensity
    mode (CT window or z-score) with ``CropForegroundd``, then for training ``SpatialPadd`` to
    ``patch_size`` and ``RandCropByPosNegLabeld`` (``num_samples`` patches per volume, centred
    on foreground with odds ``pos : neg``; CT negatives come from voxels inside the window) and,
    with ``augment``,
    random flips / right-angle rotations / intensity shifts. The deterministic part (up to the
    random crop) is what ``cache`` keeps: ``"memory"`` (``CacheDataset``, built in ``setup``) or
    ``"disk"`` (``PersistentDataset`` under ``cache_dir/<train|eval>-<hash of the preprocessing
    arguments>``, filled on first use, reused across runs).

    Batches (dicts; see :mod:`lightning_sparse.data.medical.base`):

    * training: ``"image"`` float32 ``(B, C, *patch_size)``, ``"label"`` int64
      ``(B, 1, *patch_size)`` with ``B = batch_size * num_samples`` (MONAI's
      ``list_data_collate`` flattens each volume's patches), and with ``return_index=True``
      ``"index"`` int64 ``(B,)``: the volume's position in ``train_dataset`` (= in
      ``train_files``), the same for its ``num_samples`` patches. An item is a volume: the
      data-pruning callbacks score, keep and drop whole volumes, by the mean loss of the
      patches drawn from it.
    * validation / test: one whole preprocessed volume per batch, ``"image"``
      ``(1, C, *spatial)``, ``"label"`` ``(1, 1, *spatial)`` (absent for unlabelled test images),
      for sliding-window inference with a ``patch_size`` window.

    Args:
        data_dir: The task folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``, ``imagesTs/``).
        patch_size: Training patch in voxels (``(X, Y, Z)``, or ``(Z, Y, X)`` with
            ``depth_first``); every training volume must be at least this large (after
            reorientation and ``spacing``).
        num_samples: Patches drawn per training volume and visit.
        pos: Weight of patches centred on a foreground voxel (label > 0) ...
        neg: ... against patches centred on a background voxel: a patch is centred on
            foreground with probability ``pos / (pos + neg)`` (``RandCropByPosNegLabeld``).
        fold: Held-out fold ``0..num_folds-1`` for validation; None: ``dataset.json``'s
            ``"validation"`` list.
        num_folds: Folds of the training list (at least 2, at most its length).
        cache: ``"none"``, ``"memory"`` or ``"disk"`` (needs ``cache_dir``).
        cache_dir: Folder of the disk cache (``cache="disk"`` only).
        **kwargs: ``spacing``, ``intensity`` (``"auto"``: ``"ct"`` when every modality is CT,
            else ``"zscore"``), ``a_min``, ``a_max``, ``label_map``, ``crop_foreground``,
            ``augment``, ``depth_first``, ``batch_size`` (default 2 volumes): see
            :class:`~lightning_sparse.data.medical.base.MedicalDataModule`; ``num_workers``,
            ``seed`` (of the folds and the random transforms), ``return_index``: see
            :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        FileNotFoundError: At ``setup``, if ``data_dir`` holds no ``dataset.json``.
        ValueError: If an argument is out of range, a ``label_map`` value is not among
            ``dataset.json``'s ``"labels"``, ``dataset.json`` lacks what is needed
            (``"training"``; ``"validation"`` with ``fold=None``), or (in ``setup``)
            ``patch_size`` exceeds a training volume.

    Examples:
        >>> import tempfile
        >>> rng = np.random.default_rng(0)
        >>> labels = [(rng.random((16, 16, 16)) > 0.7).astype(np.uint8) for _ in range(3)]
        >>> images = [label * 200.0 + rng.normal(0, 20, (16, 16, 16)) for label in labels]
        >>> root = write_decathlon(tempfile.mkdtemp(), images, labels, label_names=["background", "organ"])
        >>> dm = DecathlonDataModule(str(root), patch_size=(8, 8, 8), num_folds=3, batch_size=2, return_index=True)
        >>> dm.num_classes, dm.in_channels, dm.class_names, len(dm.train_files), len(dm.val_files)
        (2, 1, ('background', 'organ'), 2, 1)
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch["image"].shape), batch["label"].dtype, batch["index"].tolist()
        ((4, 1, 8, 8, 8), torch.int64, [0, 0, 1, 1])
        >>> tuple(next(iter(dm.val_dataloader()))["image"].shape)
        (1, 1, 16, 16, 16)
    """

    def __init__(
        self,
        data_dir: str,
        patch_size: Sequence[int] = (96, 96, 96),
        num_samples: int = 2,
        pos: float = 1.0,
        neg: float = 1.0,
        fold: int | None = 0,
        num_folds: int = 5,
        cache: str = "none",
        cache_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(patch_size=patch_size, **kwargs)
        check_count("num_samples", num_samples, 1)
        check_number("pos", pos, 0.0)
        check_number("neg", neg, 0.0)
        if pos + neg <= 0:
            raise ValueError(f"`pos` + `neg` must be positive, got pos={pos!r}, neg={neg!r}.")
        check_choice("cache", cache, CACHE_MODES)
        if cache == "disk" and not cache_dir:
            raise ValueError(f"`cache_dir` must be a folder when `cache='disk'`, got {cache_dir!r}.")
        self.num_samples, self.pos, self.neg = num_samples, float(pos), float(neg)
        self.fold, self.num_folds, self.cache, self.cache_dir = fold, num_folds, cache, cache_dir

        self.root = Path(str(data_dir)).expanduser()
        self.dataset_json = self.root / "dataset.json"
        self.meta: dict | None = None
        if self.dataset_json.is_file():
            self._read_dataset_json()
        # else: a recipe may name a data set that is not on this machine; `setup` says it is missing

    def _read_dataset_json(self) -> None:
        """Read ``dataset.json``: channels, classes, folds and the test list (checked here)."""
        fold, num_folds = self.fold, self.num_folds
        if not self.dataset_json.is_file():
            raise FileNotFoundError(
                f"`data_dir` must be a folder of the Medical Segmentation Decathlon layout holding dataset.json, "
                f"imagesTr/ and labelsTr/, got {str(self.root)!r} (no {self.dataset_json}).")
        meta = json.loads(self.dataset_json.read_text())
        if not isinstance(meta, dict) or not meta.get("training"):
            raise ValueError(f"{self.dataset_json} must hold a non-empty 'training' list of "
                             "{'image': ..., 'label': ...} entries.")
        self.meta = meta
        training = self._datalist("training")
        modality = meta.get("modality") or meta.get("channel_names") or {"0": "unknown"}
        self.modalities: tuple[str, ...] = tuple(str(modality[k]) for k in sorted(modality, key=int))
        self.in_channels = len(self.modalities)
        if self.intensity == "auto":
            self.intensity = "ct" if all(m.strip().upper() == "CT" for m in self.modalities) else "zscore"
        self._label_names = read_label_names(meta.get("labels"))
        if self.label_map is not None and self._label_names:
            unknown = sorted(set(self.label_map) - set(self._label_names))
            if unknown:
                raise ValueError(f"`label_map` must name label values listed in {self.dataset_json} "
                                 f"{sorted(self._label_names)}, got {unknown} among {sorted(self.label_map)}.")
        self._classes(self._label_names)

        if fold is None:
            if not meta.get("validation"):
                raise ValueError(f"`fold` must be an integer in [0, {num_folds - 1}] when {self.dataset_json} has "
                                 "no 'validation' list, got None.")
            self.train_files, self.val_files = training, self._datalist("validation")
        else:
            if len(training) < 2:
                raise ValueError(f"`fold` needs at least 2 training cases to split, {self.dataset_json} lists "
                                 f"{len(training)}; pass fold=None with a 'validation' list.")
            check_int("num_folds", num_folds, 2, len(training))
            check_int("fold", fold, 0, num_folds - 1)
            train_idx, val_idx = kfold_split(len(training), num_folds, fold, self.seed)
            self.train_files = [training[i] for i in train_idx]
            self.val_files = [training[i] for i in val_idx]
        self.test_files: list[dict] = self._datalist("test") if meta.get("test") else []

    def _datalist(self, key: str) -> list[dict]:
        return load_decathlon_datalist(self.dataset_json, is_segmentation=True, data_list_key=key,
                                       base_dir=self.root)

    # ------------------------------------------------------------------ transforms
    def _preprocess(self, labelled: bool) -> list[mt.Transform]:
        chain = load_transforms(self.spacing, labelled=labelled, depth_first=self.depth_first)
        if self.label_map is not None:
            chain.append(KeepLabelsd("label", self.label_map, allow_missing_keys=True))
        return chain + intensity_transforms(self.intensity, self.a_min, self.a_max, self.crop_foreground)

    def train_transform(self) -> mt.Compose:
        """The training chain: preprocessing, padding, ``RandCropByPosNegLabeld``, augmentation."""
        chain = self._preprocess(labelled=True) + [mt.SpatialPadd(KEYS, self.patch_size)]
        chain.append(mt.RandCropByPosNegLabeld(
            KEYS, label_key="label", spatial_size=self.patch_size, pos=self.pos, neg=self.neg,
            num_samples=self.num_samples, image_key="image" if self.intensity == "ct" else None,
            image_threshold=0.0))
        if self.augment:
            chain += augment_transforms(self.patch_size)
        compose = mt.Compose(chain + tensor_transforms())
        compose.set_random_state(seed=self.seed)
        return compose

    def eval_transform(self, labelled: bool = True) -> mt.Compose:
        """The validation / test chain: preprocessing of whole volumes."""
        return mt.Compose(self._preprocess(labelled) + tensor_transforms())

    def _cache_folder(self, kind: str) -> Path:
        config = {"spacing": self.spacing, "intensity": self.intensity, "a_min": self.a_min, "a_max": self.a_max,
                  "label_map": sorted((self.label_map or {}).items()), "crop_foreground": self.crop_foreground,
                  "pad": self.patch_size if kind == "train" else None}
        digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
        return Path(str(self.cache_dir)).expanduser() / f"{kind}-{digest}"

    def _dataset(self, files: list[dict], transform: mt.Compose, kind: str) -> Dataset:
        if self.cache == "memory":
            return CacheDataset(files, transform, num_workers=max(1, self.num_workers), progress=False)
        if self.cache == "disk":
            return PersistentDataset(files, transform, cache_dir=self._cache_folder(kind))
        return Dataset(files, transform)

    # ------------------------------------------------------------------ setup and loaders
    def _check_volumes(self) -> None:
        for item in self.train_files:
            shape = _ras_shape(item["image"], self.spacing)
            shape = shape[::-1] if self.depth_first else shape
            if any(p > s for p, s in zip(self.patch_size, shape)):
                raise ValueError(f"`patch_size` {self.patch_size} must fit in every training volume, got "
                                 f"{Path(item['image']).name} of {shape} voxels (after reorientation and `spacing`).")

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of ``stage`` (``"fit"``: training and validation; ``"test"``, ``"predict"``)."""
        if self.meta is None:
            self._read_dataset_json()
        if stage in (None, "fit") and self.train_dataset is None:
            self._check_volumes()
            self.train_dataset = self._dataset(self.train_files, self.train_transform(), "train")
        if stage in (None, "fit", "validate") and self.val_dataset is None and self.val_files:
            self.val_dataset = self._dataset(self.val_files, self.eval_transform(), "eval")
        if stage in (None, "test", "predict") and self.test_dataset is None and self.test_files:
            labelled = all("label" in item for item in self.test_files)
            self.test_dataset = self._dataset(self.test_files, self.eval_transform(labelled), "eval")

    def test_dataloader(self) -> DataLoader:
        """One test volume per batch (``"image"``, and ``"label"`` where ``dataset.json`` gives one)."""
        if self.test_dataset is None and not self.test_files:
            raise RuntimeError(f"{self.dataset_json} lists no 'test' images.")
        return self._loader(self.test_dataset, "test")

    def predict_dataloader(self) -> DataLoader:
        """The test volumes, for prediction."""
        return self.test_dataloader()
