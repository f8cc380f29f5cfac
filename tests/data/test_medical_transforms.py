"""The MONAI transform chains of the 3D segmentation DataModules, the label-subset rule, slabs and grids."""

import numpy as np
import pytest
import torch
from monai import transforms as mt
from monai.data import MetaTensor

from lightning_sparse.data.medical import IndexedVolumes, KeepLabelsd, grid_starts, slab_bounds
from lightning_sparse.data.medical.transforms import (
    augment_transforms,
    check_spacing,
    intensity_transforms,
    load_transforms,
    resolve_label_map,
    tensor_transforms,
)


def test_keep_labels_maps_the_rest_to_background_and_keeps_metadata():
    affine = torch.diag(torch.tensor([3.0, 3.0, 3.0, 1.0]))
    label = MetaTensor(torch.tensor([[[[0.0, 5.0], [1.0, 117.0]], [[2.0, 3.0], [5.0, 86.0]]]]), affine=affine)
    out = KeepLabelsd("label", resolve_label_map([5, 1, 2, 3]))({"label": label})["label"]
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, affine) and out.dtype == label.dtype
    assert out.flatten().tolist() == [0, 1, 2, 0, 3, 4, 1, 0]
    array = KeepLabelsd("label", {2: 1, 3: 1})({"label": np.array([0, 1, 2, 3], np.uint8)})["label"]
    assert isinstance(array, np.ndarray) and array.dtype == np.uint8 and array.tolist() == [0, 0, 1, 1]


@pytest.mark.parametrize("bad", [[0, 1], [1, 1], {1: 0}, "liver", [1.5], [], {1: 2}])
def test_label_map_errors_name_the_argument(bad):
    with pytest.raises(ValueError, match="`label_map` must"):
        resolve_label_map(bad)


def test_spacing_check():
    assert check_spacing(None) is None and check_spacing((1, 2, 3)) == (1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match="`spacing` must be None or three positive"):
        check_spacing((1.0, -1.0, 1.0))


def test_intensity_modes():
    rng = np.random.default_rng(0)
    hu = torch.from_numpy(rng.uniform(-1000, 1000, (1, 6, 6, 6)).astype(np.float32))
    hu[:, :1] = -1000.0  # air: outside the window, cropped away
    ct = mt.Compose(intensity_transforms("ct", -175, 250))({"image": hu, "label": torch.zeros_like(hu)})
    assert 0.0 <= float(ct["image"].min()) and float(ct["image"].max()) <= 1.0 and ct["image"].shape[1] < 6
    assert ct["label"].shape == ct["image"].shape  # cropped together
    mr = torch.zeros(2, 6, 6, 6)
    mr[:, 1:5, 1:5, 1:5] = torch.from_numpy(rng.uniform(10, 500, (2, 4, 4, 4)).astype(np.float32))
    z = mt.Compose(intensity_transforms("zscore"))({"image": mr})["image"]
    assert z.shape == (2, 4, 4, 4)  # cropped to the non-zero box first
    assert torch.allclose(z.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(z.std(dim=(1, 2, 3), unbiased=False), torch.ones(2), atol=1e-4)
    kept = mt.Compose(intensity_transforms("none", crop_foreground=False))({"image": mr})["image"]
    assert torch.equal(torch.as_tensor(kept), mr)


def test_load_chain_from_arrays_orients_to_ras_and_transposes():
    data = torch.arange(24.0).reshape(2, 3, 4)
    lps = torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0]))
    item = {"image": MetaTensor(data, affine=lps), "label": MetaTensor(data, affine=lps)}
    ras = mt.Compose(load_transforms(None, from_files=False))(dict(item))
    assert ras["image"].shape == (1, 2, 3, 4) and torch.equal(ras["image"][0], data.flip(0, 1))
    zyx = mt.Compose(load_transforms(None, from_files=False, depth_first=True))(dict(item))
    assert torch.equal(zyx["label"][0], data.flip(0, 1).permute(2, 1, 0))


def test_augmentations_keep_the_patch_shape_and_pair_image_and_label():
    patch = torch.arange(4 * 4 * 2, dtype=torch.float32).reshape(1, 4, 4, 2)
    chain = mt.Compose(augment_transforms((4, 4, 2)) + tensor_transforms()).set_random_state(seed=0)
    for _ in range(20):
        out = chain({"image": patch.clone(), "label": patch.clone()})
        assert out["image"].shape == (1, 4, 4, 2) and out["label"].dtype == torch.int64
        shift = out["image"] - out["label"].float()  # the intensity shift is one constant
        assert torch.allclose(shift, shift.flatten()[0].expand_as(shift), atol=1e-4)


@pytest.mark.parametrize("length", [7, 20, 30, 95])
@pytest.mark.parametrize("margin", [0, 2])
@pytest.mark.parametrize("order", [("test", "val", "train"), ("train", "val", "test"), ("val", "train", "test")])
def test_slabs_are_disjoint_ordered_and_separated_by_the_margin(length, margin, order):
    bounds = slab_bounds(length, (0.6, 0.2, 0.2), margin, order)
    assert list(bounds) == list(order)
    spans = list(bounds.values())
    assert spans[0][0] == 0 and spans[-1][1] == length
    for (a0, b0), (a1, b1) in zip(spans, spans[1:]):
        assert a0 < b0 and a1 - b0 == margin and a1 < b1
    assert sum(b - a for a, b in spans) == length - 2 * margin


def test_slab_errors_and_an_empty_validation_region():
    assert slab_bounds(10, (0.5, 0.0, 0.5), 1) == {"test": (0, 5), "train": (6, 10)}
    with pytest.raises(ValueError, match="`slab_fractions`.*must leave every region"):
        slab_bounds(4, (0.6, 0.2, 0.2), 2)


def test_grid_starts_cover_the_axis():
    for length, size, stride in [(10, 4, 2), (16, 16, 8), (37, 8, 5), (9, 3, 3)]:
        starts = grid_starts(length, size, stride)
        covered = np.zeros(length, bool)
        for s in starts:
            assert 0 <= s <= length - size
            covered[s : s + size] = True
        assert covered.all() and starts == sorted(set(starts))


def test_indexed_volumes_tags_every_patch():
    data = IndexedVolumes([[{"image": torch.zeros(1)}, {"image": torch.ones(1)}], {"image": torch.ones(1)}])
    assert [p["index"].item() for p in data[0]] == [0, 0] and data[1]["index"].item() == 1
    assert len(data) == 2
