"""Single-subject 3D segmentation: disjoint regions of one real volume for training, validation and test.

One labelled volume, split along one axis into non-overlapping slabs (train / val / test, in
the order ``slab_order`` along the axis) with ``slab_margin`` voxels left out between
neighbours, so no voxel (and no patch) is shared between the regions. Training items are the
patches of a fixed grid inside the training slab; validation and test are the whole slabs.
This is a single-subject setup: the regions are different anatomy of the same person, not
different people, so the scores measure fitting and local generalisation, not generalisation
across patients.

Sources (nothing is downloaded):

* ``"totalseg_ct"`` / ``"totalseg_mr"``: the example volumes of TotalSegmentator (Wasserthal
  et al. 2023, Radiology: AI, arXiv:2208.05868; CC BY 4.0): ``example_ct_sm.nii.gz`` +
  ``example_seg.nii.gz`` (abdominal CT, 122x101x30 at 3 mm, 41 structures) and
  ``example_mr_sm.nii.gz`` + ``example_seg_mr.nii.gz`` (MR, 117x91x20 at 3 mm, 23 structures)
  in ``data_dir``. The label maps are the model's reference output, not manual annotations.
  The default ``label_map`` keeps liver, spleen, right and left kidney: ids 5, 1, 2, 3, the
  same in the CT (``total``, v2) and MR (``total_mr``) class maps (:data:`TOTALSEG_ORGANS`),
  as classes 1..4.
* ``"mni152"``: the MNI152 2009 template shipped inside nilearn
  (``nilearn.datasets.load_mni152_template``) with a background / grey matter / white matter
  label map from ``load_mni152_gm_mask`` / ``load_mni152_wm_mask`` (:func:`mni152_segmentation`):
  one averaged brain, not a subject.
* ``"files"``: any image + label pair (``image_file``, ``label_file`` in ``data_dir``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai import transforms as mt
from monai.data import MetaTensor
from torch.utils.data import Dataset

from lightning_sparse._validation import check_choice, check_int
from lightning_sparse.data.base import check_count
from lightning_sparse.data.medical.base import MedicalDataModule
from lightning_sparse.data.medical.transforms import (
    KEYS,
    KeepLabelsd,
    augment_transforms,
    check_patch_size,
    intensity_transforms,
    load_transforms,
    tensor_transforms,
)

__all__ = [
    "SOURCES",
    "TOTALSEG_ORGANS",
    "SingleSubjectDataModule",
    "grid_starts",
    "mni152_segmentation",
    "slab_bounds",
]

SOURCES = ("totalseg_ct", "totalseg_mr", "mni152", "files")
"""Values of ``SingleSubjectDataModule(source=...)``."""

TOTALSEG_ORGANS: dict[int, str] = {
    1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "liver", 6: "stomach", 7: "pancreas",
    8: "adrenal_gland_right", 9: "adrenal_gland_left",
}
"""TotalSegmentator label ids 1..9, the same in its CT v2 (``total``) and MR (``total_mr``) class maps."""

_PRESETS: dict[str, dict[str, Any]] = {
    "totalseg_ct": dict(image="example_ct_sm.nii.gz", label="example_seg.nii.gz", intensity="ct",
                        label_map=[5, 1, 2, 3], patch_size=(48, 48, 16)),
    "totalseg_mr": dict(image="example_mr_sm.nii.gz", label="example_seg_mr.nii.gz", intensity="zscore",
                        label_map=[5, 1, 2, 3], patch_size=(48, 48, 8)),
    "mni152": dict(image=None, label=None, intensity="zscore", label_map=None, patch_size=(32, 32, 32)),
    "files": dict(image=None, label=None, intensity="zscore", label_map=None, patch_size=(48, 48, 16)),
}
_REGIONS = ("train", "val", "test")


def mni152_segmentation(resolution: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The MNI152 template with a 3-class tissue map, from the files shipped inside nilearn.

    Grey matter (1) is ``load_mni152_gm_mask``, white matter (2) ``load_mni152_wm_mask`` (both at
    their default threshold 0.2); where the two masks overlap the class with the higher
    probability in ``load_mni152_gm_template`` / ``load_mni152_wm_template`` wins (white on a
    strict majority); every other voxel is background (0). Resampling (``resolution`` > 1) leaves
    values below 1e-9 outside the brain; they are set to 0, so the background is exactly 0.

    Args:
        resolution: Voxel size in mm (1 is the file's own grid, 197x233x189; 2 gives 99x117x95).

    Returns:
        ``(image, label, affine)``: float32 ``(X, Y, Z)`` T1 intensities, uint8 ``(X, Y, Z)``
        classes, the ``(4, 4)`` RAS affine.

    Examples:
        >>> image, label, affine = mni152_segmentation(resolution=4)
        >>> image.shape == label.shape, np.unique(label).tolist(), float(affine[0, 0])
        (True, [0, 1, 2], 4.0)
    """
    from nilearn import datasets

    check_int("resolution", resolution, 1)
    template = datasets.load_mni152_template(resolution=resolution)
    grey = datasets.load_mni152_gm_mask(resolution=resolution).get_fdata() > 0
    white = datasets.load_mni152_wm_mask(resolution=resolution).get_fdata() > 0
    grey_p = datasets.load_mni152_gm_template(resolution=resolution).get_fdata()
    white_p = datasets.load_mni152_wm_template(resolution=resolution).get_fdata()
    label = np.zeros(template.shape, np.uint8)
    label[grey] = 1
    label[white & (~grey | (white_p > grey_p))] = 2
    image = template.get_fdata().astype(np.float32)
    image[np.abs(image) < 1e-6] = 0.0
    return image, label, np.asarray(template.affine, np.float64)


def slab_bounds(length: int, fractions: Sequence[float], margin: int,
                order: Sequence[str] = ("test", "val", "train")) -> dict[str, tuple[int, int]]:
    """``{region: (start, stop)}`` of consecutive, disjoint slabs along an axis of ``length`` voxels.

    ``fractions`` are the ``(train, val, test)`` shares of the voxels left after the margins
    (a region with share 0 is left out); sizes are rounded by largest remainder, at least one
    voxel each (taken from the largest region where rounding leaves one empty). The regions
    follow ``order`` from index 0 on, with ``margin`` unused voxels between neighbours.

    Examples:
        >>> slab_bounds(30, (0.6, 0.2, 0.2), margin=2)
        {'test': (0, 5), 'val': (7, 12), 'train': (14, 30)}
        >>> slab_bounds(10, (1, 0, 1), margin=0, order=("train", "val", "test"))
        {'train': (0, 5), 'test': (5, 10)}
    """
    share = dict(zip(_REGIONS, (float(f) for f in fractions)))
    names = [n for n in order if share[n] > 0]
    usable = length - margin * (len(names) - 1)
    total = sum(share[n] for n in names)
    exact = np.array([usable * share[n] / total for n in names]) if usable > 0 else np.zeros(len(names))
    sizes = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - sizes), kind="stable")[: max(usable - int(sizes.sum()), 0)]:
        sizes[i] += 1
    while usable >= len(names) and (sizes < 1).any():  # a region rounded to nothing takes from the largest
        sizes[np.argmax(sizes)] -= 1
        sizes[np.argmin(sizes)] += 1
    if usable <= 0 or (sizes < 1).any():
        raise ValueError(f"`slab_fractions` {tuple(fractions)} with `slab_margin` {margin} must leave every region at "
                         f"least one voxel of an axis of {length}, got sizes {dict(zip(names, sizes.tolist()))}.")
    bounds, start = {}, 0
    for name, size in zip(names, sizes):
        bounds[name] = (start, start + int(size))
        start += int(size) + margin
    return bounds


def grid_starts(length: int, size: int, stride: int) -> list[int]:
    """Starts of patches of ``size`` every ``stride`` voxels covering ``[0, length)`` (the last flush with the end).

    Examples:
        >>> grid_starts(10, 4, 3), grid_starts(4, 4, 2)
        ([0, 3, 6], [0])
        >>> grid_starts(11, 4, 3)
        [0, 3, 6, 7]
    """
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


class _Patches(Dataset):
    """Fixed patches of one preprocessed volume: item ``i`` is the patch at ``starts[i]``."""

    def __init__(self, volume: dict[str, torch.Tensor], starts: np.ndarray, size: tuple[int, int, int],
                 transform: mt.Compose) -> None:
        self.volume = volume
        self.starts = starts  # (N, 3) int64 corners in the preprocessed volume
        self.size = size
        self.transform = transform

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        start = self.starts[i].tolist()
        end = [s + p for s, p in zip(start, self.size)]
        item = mt.SpatialCropd(KEYS, roi_start=start, roi_end=end)(self.volume)
        return self.transform(item)


class SingleSubjectDataModule(MedicalDataModule):
    """Disjoint slabs of one labelled volume: grid patches to train, whole slabs to validate and test.

    A single-subject setup (see :mod:`lightning_sparse.data.medical.volumes`): train, val and
    test are different regions of the same volume. ``setup`` loads and preprocesses the
    volume (``LoadImaged``, ``EnsureChannelFirstd``, ``Orientationd`` RAS, ``Spacingd`` with
    ``spacing``, the ``label_map`` subset, the intensity mode, ``CropForegroundd``: all
    ``monai.transforms``), cuts it along ``split_axis`` into the slabs of :func:`slab_bounds`
    (``regions``: ``{name: (start, stop)}`` along that axis of the preprocessed volume,
    ``volume_shape`` its shape) and
    tiles the training slab with ``patch_size`` patches every ``stride`` voxels
    (:func:`grid_starts`; ``train_dataset.starts`` holds their corners). Every patch lies inside
    the training slab, so none shares a voxel with the validation or test slab, and the
    ``slab_margin`` voxels between slabs are used by none. ``class_voxels[region]`` counts each
    class's voxels per region (a structure may be missing from a region: along the body axis
    the kidneys end before the spleen does).

    TotalSegmentator label ids kept by default (``label_map=[5, 1, 2, 3]``): 5 liver, 1 spleen,
    2 right kidney, 3 left kidney (classes 1..4); any ids of the volume can be chosen, and
    ``setup`` raises if a chosen id is not in it. MNI152: classes background / grey matter /
    white matter.

    Batches (dicts; see :mod:`lightning_sparse.data.medical.base`):

    * training: ``"image"`` float32 ``(B, C, *patch_size)``, ``"label"`` int64
      ``(B, 1, *patch_size)``; with ``return_index=True`` ``"index"`` int64 ``(B,)``, the patch's
      position in ``train_dataset`` (a fixed place of the grid: ``train_dataset.starts[index]``).
    * validation / test: the whole slab, ``"image"`` ``(1, C, *spatial)``, ``"label"``
      ``(1, 1, *spatial)``, for sliding-window inference.

    Args:
        source: ``"totalseg_ct"``, ``"totalseg_mr"``, ``"mni152"`` or ``"files"``.
        data_dir: Folder of the volumes (the TotalSegmentator examples, or ``image_file`` /
            ``label_file``); unused for ``"mni152"``.
        image_file: Image file name in ``data_dir`` (default: the source's).
        label_file: Label file name in ``data_dir`` (default: the source's).
        label_map: Label values to keep (list: classes 1..K in order; mapping: ``{value: class}``);
            None: the source's default (TotalSegmentator: ``[5, 1, 2, 3]``), or the labels as
            stored (``"mni152"``, ``"files"``).
        patch_size: Training patch in the batches' axis order; None: the source's default
            ``(X, Y, Z)`` (``(48, 48, 16)`` CT, ``(48, 48, 8)`` MR, ``(32, 32, 32)`` MNI152),
            reversed with ``depth_first``.
        stride: Grid step of the training patches per axis; None: half the patch.
        split_axis: RAS axis of the slabs: ``"x"`` (left-right), ``"y"`` (posterior-anterior) or
            ``"z"`` (inferior-superior, the default: stacks of axial slices), whatever the
            batches' axis order.
        slab_fractions: ``(train, val, test)`` shares of the axis after the margins; val may be 0.
        slab_order: The regions' order along the axis from its low end (inferior for ``"z"``).
        slab_margin: Voxels between neighbouring slabs, used by no region.
        resolution: Voxel size in mm of the MNI152 template (``"mni152"`` only).
        intensity: ``"auto"`` (``"ct"`` for ``"totalseg_ct"``, else ``"zscore"``), ``"ct"``,
            ``"zscore"`` or ``"none"``.
        batch_size: Training patches per batch.
        **kwargs: ``spacing``, ``a_min``, ``a_max``, ``crop_foreground``, ``augment``,
            ``depth_first``: see
            :class:`~lightning_sparse.data.medical.base.MedicalDataModule`; ``num_workers``,
            ``seed``, ``return_index``: see :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: If an argument is out of range, or in ``setup`` a ``label_map`` value is not
            in the volume or ``patch_size`` does not fit in the training slab.
        FileNotFoundError: If ``data_dir`` lacks the volume's files.

    Examples:
        >>> dm = SingleSubjectDataModule("mni152", resolution=4, patch_size=(16, 16, 8), return_index=True)
        >>> dm.num_classes, dm.class_names
        (3, ('background', 'grey_matter', 'white_matter'))
        >>> dm.setup("fit")
        >>> dm.volume_shape, dm.regions  # the brain's bounding box at 4 mm; axial slabs
        ((36, 45, 39), {'test': (0, 7), 'val': (9, 16), 'train': (18, 39)})
        >>> batch = next(iter(dm.train_dataloader()))
        >>> tuple(batch["image"].shape), tuple(batch["label"].shape), batch["index"].shape
        ((4, 1, 16, 16, 8), (4, 1, 16, 16, 8), torch.Size([4]))
    """

    def __init__(
        self,
        source: str = "totalseg_ct",
        data_dir: str | None = None,
        image_file: str | None = None,
        label_file: str | None = None,
        label_map: list[int] | dict[int, int] | None = None,
        patch_size: Sequence[int] | None = None,
        stride: Sequence[int] | None = None,
        split_axis: str = "z",
        slab_fractions: Sequence[float] = (0.6, 0.2, 0.2),
        slab_order: Sequence[str] = ("test", "val", "train"),
        slab_margin: int = 2,
        resolution: int = 2,
        intensity: str = "auto",
        batch_size: int = 4,
        **kwargs: Any,
    ) -> None:
        check_choice("source", source, SOURCES)
        preset = _PRESETS[source]
        if label_map is None:
            label_map = preset["label_map"]
        if patch_size is None:
            patch_size = preset["patch_size"][::-1] if kwargs.get("depth_first") else preset["patch_size"]
        super().__init__(patch_size=patch_size, label_map=label_map, intensity=intensity, batch_size=batch_size,
                         **kwargs)
        self.source = source
        self.stride = tuple(max(1, p // 2) for p in self.patch_size) if stride is None else check_patch_size(
            "stride", stride)
        self.split_axis = check_choice("split_axis", split_axis, ("x", "y", "z"))
        fractions = tuple(slab_fractions) if isinstance(slab_fractions, Sequence) else ()
        if len(fractions) != 3 or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and f >= 0
                                          for f in fractions) or fractions[0] <= 0:
            raise ValueError("`slab_fractions` must be three shares (train, val, test) >= 0 with train > 0, "
                             f"got {slab_fractions!r}.")
        self.slab_fractions = tuple(float(f) for f in fractions)
        if isinstance(slab_order, str) or sorted(slab_order) != sorted(_REGIONS):
            raise ValueError(f"`slab_order` must be an order of {_REGIONS}, got {slab_order!r}.")
        self.slab_order = tuple(slab_order)
        self.slab_margin = check_count("slab_margin", slab_margin, 0)
        self.resolution = check_int("resolution", resolution, 1)
        if self.intensity == "auto":
            self.intensity = preset["intensity"]
        self.data_dir = data_dir
        self.image_path: Path | None = None
        self.label_path: Path | None = None
        names: dict[int, str] = {0: "background"}
        if source == "mni152":
            names.update({1: "grey_matter", 2: "white_matter"})
        else:
            self.image_path, self.label_path = self._files(image_file or preset["image"], label_file or preset["label"])
            if source.startswith("totalseg"):
                names.update(TOTALSEG_ORGANS)
            elif self.label_map is None:  # the labels as stored: their largest value sets num_classes
                import nibabel as nib

                top = int(np.max(np.asanyarray(nib.load(self.label_path).dataobj)))
                names.update({i: f"label_{i}" for i in range(1, top + 1)})
        self._classes(names)
        self.regions: dict[str, tuple[int, int]] = {}
        self.class_voxels: dict[str, list[int]] = {}
        self.volume_shape: tuple[int, int, int] | None = None

    def _files(self, image: str | None, label: str | None) -> tuple[Path, Path]:
        if self.data_dir is None or image is None or label is None:
            raise ValueError(f"`data_dir`, `image_file` and `label_file` must be given for source={self.source!r}, "
                             f"got data_dir={self.data_dir!r}, image_file={image!r}, label_file={label!r}.")
        root = Path(str(self.data_dir)).expanduser()
        paths = root / image, root / label
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"`data_dir` ({root}) must hold the volume of source={self.source!r}: "
                                    f"{' and '.join(missing)} not found.")
        return paths

    # ------------------------------------------------------------------ the volume
    def _load(self) -> dict[str, torch.Tensor]:
        """The preprocessed volume: ``{"image": (C, *spatial) float32, "label": (1, *spatial) int64}``."""
        if self.source == "mni152":
            image, label, affine = mni152_segmentation(self.resolution)
            item: dict[str, Any] = {"image": MetaTensor(image, affine=affine),
                                    "label": MetaTensor(label, affine=affine)}
            item = mt.Compose(load_transforms(self.spacing, from_files=False, depth_first=self.depth_first))(item)
        else:
            paths = {"image": str(self.image_path), "label": str(self.label_path)}
            item = mt.Compose(load_transforms(self.spacing, depth_first=self.depth_first))(paths)
        if self.label_map is not None:
            present = set(torch.unique(item["label"]).long().tolist())
            absent = sorted(set(self.label_map) - present)
            if absent:
                raise ValueError(f"`label_map` must name label values of the volume, got {absent} not in "
                                 f"{self.label_path or 'the MNI152 label map'} (it holds {sorted(present)}).")
            item = KeepLabelsd("label", self.label_map)(item)
        chain = intensity_transforms(self.intensity, self.a_min, self.a_max, self.crop_foreground)
        return mt.Compose(chain + tensor_transforms())(item)

    def setup(self, stage: str | None = None) -> None:
        """Load the volume, cut the slabs and build the three datasets (any stage)."""
        if self.train_dataset is not None:
            return
        volume = self._load()
        shape = tuple(int(s) for s in volume["image"].shape[1:])
        self.volume_shape = shape  # type: ignore[assignment]
        axis = "xyz".index(self.split_axis)
        axis = 2 - axis if self.depth_first else axis
        self.regions = slab_bounds(shape[axis], self.slab_fractions, self.slab_margin, self.slab_order)
        start, stop = self.regions["train"]
        extent = list(shape)
        extent[axis] = stop - start
        if any(p > e for p, e in zip(self.patch_size, extent)):
            raise ValueError(f"`patch_size` {self.patch_size} must fit in the training slab, got a slab of "
                             f"{tuple(extent)} voxels (volume {shape}, {self.split_axis} from {start} to {stop}).")
        grids = [grid_starts(e, p, s) for e, p, s in zip(extent, self.patch_size, self.stride)]
        grids[axis] = [start + g for g in grids[axis]]
        starts = np.stack(np.meshgrid(*grids, indexing="ij"), -1).reshape(-1, 3).astype(np.int64)
        augment = augment_transforms(self.patch_size) if self.augment else []
        transform = mt.Compose(augment + tensor_transforms()).set_random_state(seed=self.seed)
        self.train_dataset = _Patches(volume, starts, self.patch_size, transform)
        plain = mt.Compose(tensor_transforms())
        slabs = {}
        for name, (a, b) in self.regions.items():
            lo, hi = [0, 0, 0], list(shape)
            lo[axis], hi[axis] = a, b
            slabs[name] = _Patches(volume, np.asarray([lo], np.int64), tuple(h - l for h, l in zip(hi, lo)), plain)
            counts = torch.bincount(slabs[name][0]["label"].flatten(), minlength=self.num_classes)
            self.class_voxels[name] = counts.tolist()
        self.val_dataset = slabs.get("val")
        self.test_dataset = slabs.get("test")
