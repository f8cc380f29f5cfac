"""MONAI dictionary-transform chains of the 3D segmentation DataModules, and the label-subset rule.

Every step is a ``monai.transforms`` dictionary transform on the keys ``"image"`` and
``"label"``; the chains differ only in which steps they hold:

* :func:`load_transforms`: ``LoadImaged`` (NIfTI through nibabel), ``EnsureChannelFirstd``
  (a 4D file's last axis becomes the channel axis, as in the Decathlon's multi-modal MR),
  ``Orientationd`` to RAS, with ``spacing`` ``Spacingd`` (bilinear for the image, nearest for
  the label) and, with ``depth_first``, ``Transposed`` from ``(C, X, Y, Z)`` to ``(C, Z, Y, X)``:
  the slice axis first, the array order of nnU-Net (SimpleITK) and the depth ``D`` of
  ``(B, C, D, H, W)`` that depth-wise layers (E2ENet's depth shift, 1x3x3 kernels) act on.
* :func:`intensity_transforms`: ``"ct"`` windows Hounsfield units with ``ScaleIntensityRanged``
  (``[a_min, a_max]`` to ``[0, 1]``, clipped; -175..250 is the abdominal window of the MONAI
  BTCV tutorials), ``"zscore"`` normalises each channel over its non-zero voxels with
  ``NormalizeIntensityd`` (MR), ``"none"`` keeps the values. ``CropForegroundd`` (optional) crops
  to the bounding box of ``image > 0``: after the CT window (voxels above ``a_min``), before
  the z-score (MR background is 0).
* :class:`KeepLabelsd`: keeps a subset of the label values, renumbered ``1..K``, and maps every
  other value to background 0 (``MapLabelValued`` leaves unlisted values unchanged, which a
  label map of 41 TotalSegmentator structures reduced to four cannot use).
* :func:`augment_transforms`: the training augmentations of the MONAI BTCV tutorial:
  ``RandFlipd`` along each axis (p = 0.1), ``RandRotate90d`` (p = 0.1) in the planes where the
  patch is square (a rotation must not change the patch's shape) and ``RandShiftIntensityd``
  (offsets 0.1, p = 0.5).
* :func:`tensor_transforms`: ``EnsureTyped`` to plain tensors (no ``MetaTensor``), the image
  ``float32`` and the label ``int64``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai import transforms as mt

from lightning_sparse._validation import check_choice, check_number

__all__ = [
    "INTENSITIES",
    "KeepLabelsd",
    "augment_transforms",
    "check_patch_size",
    "check_spacing",
    "check_window",
    "intensity_transforms",
    "load_transforms",
    "resolve_label_map",
    "tensor_transforms",
]

KEYS = ("image", "label")
INTENSITIES = ("auto", "ct", "zscore", "none")
"""Values of the ``intensity`` argument; ``"auto"`` resolves from the modality."""


class KeepLabelsd(mt.MapTransform):
    """Map label values ``src`` to ``mapping[src]`` and every value not in ``mapping`` to 0.

    Works on tensors (``MetaTensor`` included, its metadata kept) and NumPy arrays; the output
    has the input's type and dtype.

    Args:
        keys: Keys of the label maps to remap.
        mapping: ``{source value: new value}``; sources and targets are positive integers.
        allow_missing_keys: Skip keys absent from the data (an unlabelled test image).

    Examples:
        >>> out = KeepLabelsd("label", {5: 1, 2: 2, 3: 2})({"label": torch.tensor([0, 2, 3, 5, 7])})
        >>> out["label"].tolist()
        [0, 2, 2, 1, 0]
    """

    def __init__(self, keys: Any, mapping: Mapping[int, int], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mapping = {int(k): int(v) for k, v in mapping.items()}

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            as_numpy = isinstance(label, np.ndarray)
            values = torch.as_tensor(label) if as_numpy else label
            out = torch.zeros_like(values)
            for src, dst in self.mapping.items():
                out[values == src] = dst
            d[key] = out.numpy() if as_numpy else out
        return d


def check_patch_size(name: str, value: Any) -> tuple[int, int, int]:
    """Three positive integers (a patch or window size); returns them as a tuple.

    Examples:
        >>> check_patch_size("patch_size", [96, 96, 96])
        (96, 96, 96)
        >>> check_patch_size("patch_size", 96)
        Traceback (most recent call last):
        ...
        ValueError: `patch_size` must be three positive integers (X, Y, Z), got 96.
    """
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3 and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    if not ok:
        raise ValueError(f"`{name}` must be three positive integers (X, Y, Z), got {value!r}.")
    return tuple(int(v) for v in value)  # type: ignore[return-value]


def check_spacing(value: Any) -> tuple[float, float, float] | None:
    """``None`` (keep each file's voxel size) or three positive voxel sizes in mm.

    Examples:
        >>> check_spacing([1.5, 1.5, 2])
        (1.5, 1.5, 2.0)
        >>> check_spacing([1.5, 0])
        Traceback (most recent call last):
        ...
        ValueError: `spacing` must be None or three positive voxel sizes in mm, got [1.5, 0].
    """
    if value is None:
        return None
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and v > 0 for v in value)
    if not ok:
        raise ValueError(f"`spacing` must be None or three positive voxel sizes in mm, got {value!r}.")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def resolve_label_map(label_map: Any) -> dict[int, int] | None:
    """The ``label_map`` argument as ``{source value: class}``, checked.

    A sequence of source values keeps them as classes ``1..K`` in its order; a mapping gives each
    kept source value its class (several sources may share one: merged structures; keys may be
    digit strings, as JSON writes them). Classes
    must be ``1..K`` without gaps; background (0) is every other value.

    Examples:
        >>> resolve_label_map([5, 1, 2, 3])
        {5: 1, 1: 2, 2: 3, 3: 4}
        >>> resolve_label_map({2: 1, "3": 1})
        {2: 1, 3: 1}
        >>> resolve_label_map({2: 1, 3: 3})
        Traceback (most recent call last):
        ...
        ValueError: `label_map` must give the classes 1..K without gaps, got classes [1, 3].
    """
    if label_map is None:
        return None
    if isinstance(label_map, Mapping):  # JSON / YAML dumps write the keys as strings: "5" is 5
        pairs = [(int(k) if isinstance(k, str) and k.strip().isdigit() else k, v) for k, v in label_map.items()]
    elif isinstance(label_map, Sequence) and not isinstance(label_map, str):
        pairs = [(v, i + 1) for i, v in enumerate(label_map)]
    else:
        pairs = None

    def positive(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1

    if not pairs or not all(positive(k) and positive(v) for k, v in pairs):
        raise ValueError("`label_map` must be None, a list of positive label values or a mapping "
                         f"{{label value: class >= 1}}, got {label_map!r}.")
    sources = [int(k) for k, _ in pairs]
    if len(set(sources)) != len(sources):
        raise ValueError(f"`label_map` must list each label value once, got {label_map!r}.")
    classes = sorted({int(v) for _, v in pairs})
    if classes != list(range(1, len(classes) + 1)):
        raise ValueError(f"`label_map` must give the classes 1..K without gaps, got classes {classes}.")
    return {int(k): int(v) for k, v in pairs}


def load_transforms(spacing: tuple[float, float, float] | None, labelled: bool = True,
                    from_files: bool = True, depth_first: bool = False) -> list[mt.Transform]:
    """Load (optionally), channel first, RAS orientation, resampling and the axis order.

    Args:
        spacing: Target voxel size in mm (RAS ``x, y, z``); None keeps each file's.
        labelled: Whether items carry a ``"label"`` (else it is optional: unlabelled test images).
        from_files: Items hold file paths (``LoadImaged`` first); False: arrays with
            ``MetaTensor`` metadata and no channel axis.
        depth_first: Transpose the spatial axes to ``(Z, Y, X)`` (after resampling, which reads
            the affine; ``Transposed`` does not update it).

    Examples:
        >>> [type(t).__name__ for t in load_transforms((1.5, 1.5, 2.0), depth_first=True)]
        ['LoadImaged', 'EnsureChannelFirstd', 'Orientationd', 'Spacingd', 'Transposed']
    """
    missing = not labelled
    chain: list[mt.Transform] = []
    if from_files:
        chain.append(mt.LoadImaged(KEYS, image_only=True, allow_missing_keys=missing))
    chain += [
        mt.EnsureChannelFirstd(KEYS, channel_dim=None if from_files else "no_channel", allow_missing_keys=missing),
        mt.Orientationd(KEYS, axcodes="RAS", labels=None, allow_missing_keys=missing),
    ]
    if spacing is not None:
        chain.append(mt.Spacingd(KEYS, pixdim=spacing, mode=("bilinear", "nearest"), allow_missing_keys=missing))
    if depth_first:
        chain.append(mt.Transposed(KEYS, indices=(0, 3, 2, 1), allow_missing_keys=missing))
    return chain


def intensity_transforms(intensity: str, a_min: float = -175.0, a_max: float = 250.0,
                         crop_foreground: bool = True, margin: int = 0) -> list[mt.Transform]:
    """Intensity normalisation and the foreground crop, in the order the mode needs.

    Args:
        intensity: ``"ct"``, ``"zscore"`` or ``"none"`` (``"auto"`` is resolved by the caller).
        a_min: Lower end of the CT window (HU), mapped to 0.
        a_max: Upper end of the CT window (HU), mapped to 1.
        crop_foreground: Crop image and label to the bounding box of ``image > 0``.
        margin: Voxels kept around that box.

    Examples:
        >>> [type(t).__name__ for t in intensity_transforms("ct")]
        ['ScaleIntensityRanged', 'CropForegroundd']
        >>> [type(t).__name__ for t in intensity_transforms("zscore")]
        ['CropForegroundd', 'NormalizeIntensityd']
    """
    check_choice("intensity", intensity, INTENSITIES[1:])
    crop = [mt.CropForegroundd(KEYS, source_key="image", margin=margin, allow_smaller=True, start_coord_key=None,
                               end_coord_key=None, allow_missing_keys=True)] if crop_foreground else []
    if intensity == "ct":
        return [mt.ScaleIntensityRanged("image", a_min=a_min, a_max=a_max, b_min=0.0, b_max=1.0, clip=True), *crop]
    if intensity == "zscore":
        return [*crop, mt.NormalizeIntensityd("image", nonzero=True, channel_wise=True)]
    return crop


def augment_transforms(patch_size: tuple[int, int, int]) -> list[mt.Transform]:
    """Random flips, right-angle rotations (square planes only) and an intensity shift.

    Examples:
        >>> [type(t).__name__ for t in augment_transforms((32, 32, 16))]
        ['RandFlipd', 'RandFlipd', 'RandFlipd', 'RandRotate90d', 'RandShiftIntensityd']
        >>> len(augment_transforms((32, 24, 16)))  # no square plane: no rotation
        4
    """
    chain: list[mt.Transform] = [mt.RandFlipd(KEYS, prob=0.1, spatial_axis=axis) for axis in range(3)]
    for axes in ((0, 1), (0, 2), (1, 2)):
        if patch_size[axes[0]] == patch_size[axes[1]]:
            chain.append(mt.RandRotate90d(KEYS, prob=0.1, max_k=3, spatial_axes=axes))
            break
    chain.append(mt.RandShiftIntensityd("image", offsets=0.1, prob=0.5))
    return chain


def tensor_transforms() -> list[mt.Transform]:
    """Plain tensors: the image ``float32``, the label ``int64`` (absent labels are skipped).

    Examples:
        >>> out = mt.Compose(tensor_transforms())({"image": np.zeros((1, 2, 2, 2)), "label": np.ones((1, 2, 2, 2))})
        >>> out["image"].dtype, out["label"].dtype
        (torch.float32, torch.int64)
    """
    return [mt.EnsureTyped("image", dtype=torch.float32, track_meta=False),
            mt.EnsureTyped("label", dtype=torch.int64, track_meta=False, allow_missing_keys=True)]


def check_window(a_min: Any, a_max: Any) -> None:
    """Raise unless ``a_min < a_max`` are finite numbers (the CT window).

    Examples:
        >>> check_window(250, -175)
        Traceback (most recent call last):
        ...
        ValueError: `a_min` must be below `a_max`, got a_min=250, a_max=-175.
    """
    check_number("a_min", a_min)
    check_number("a_max", a_max)
    if not a_min < a_max:
        raise ValueError(f"`a_min` must be below `a_max`, got a_min={a_min!r}, a_max={a_max!r}.")
