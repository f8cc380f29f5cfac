"""SingleSubjectDataModule on real volumes: the TotalSegmentator CT / MR examples of the shared data
folder (skipped when absent) and nilearn's MNI152 template (ships with nilearn, loaded offline)."""

import os
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from lightning_sparse.data import SingleSubjectDataModule
from lightning_sparse.data.medical import TOTALSEG_ORGANS, mni152_segmentation

DATA_DIR = Path(os.environ.get("LIGHTNING_SPARSE_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))
TOTALSEG = DATA_DIR / "totalseg-examples"
needs_totalseg = pytest.mark.skipif(not (TOTALSEG / "example_seg.nii.gz").is_file(),
                                    reason="shared TotalSegmentator examples absent")


def _occupied(dm):
    """Boolean map of the preprocessed volume's voxels that some training patch covers."""
    covered = np.zeros(dm.volume_shape, bool)
    for start in dm.train_dataset.starts:
        covered[tuple(slice(s, s + p) for s, p in zip(start, dm.patch_size))] = True
    return covered


def _region(dm, name):
    mask = np.zeros(dm.volume_shape, bool)
    axis = "xyz".index(dm.split_axis)
    axis = 2 - axis if dm.depth_first else axis
    index = [slice(None)] * 3
    index[axis] = slice(*dm.regions[name])
    mask[tuple(index)] = True
    return mask


@needs_totalseg
def test_totalsegmentator_label_ids_exist_in_the_volumes():
    """The default label map's ids (v2 ``total`` / ``total_mr``: 5 liver, 1 spleen, 2/3 kidneys) are
    large structures of both example label maps."""
    for name in ("example_seg.nii.gz", "example_seg_mr.nii.gz"):
        seg = np.asanyarray(nib.load(TOTALSEG / name).dataobj)
        counts = np.bincount(seg.ravel().astype(np.int64))
        assert {i: TOTALSEG_ORGANS[i] for i in (5, 1, 2, 3)} == {5: "liver", 1: "spleen", 2: "kidney_right",
                                                                 3: "kidney_left"}
        assert all(counts[i] > 1000 for i in (5, 1, 2, 3)), counts[[5, 1, 2, 3]]
        assert counts[5] == counts[1:].max()  # the liver is the largest structure
    ct = np.bincount(np.asanyarray(nib.load(TOTALSEG / "example_seg.nii.gz").dataobj).ravel().astype(np.int64))
    assert ct[[5, 1, 2, 3]].tolist() == [38634, 9452, 3947, 3676]
    assert (ct[1:] > 0).sum() == 41  # the 41 structures of the CT example


@needs_totalseg
def test_totalsegmentator_ct_end_to_end():
    dm = SingleSubjectDataModule("totalseg_ct", data_dir=str(TOTALSEG), return_index=True, seed=0)
    assert dm.num_classes == 5 and dm.class_names == ("background", "liver", "spleen", "kidney_right", "kidney_left")
    assert dm.intensity == "ct" and dm.patch_size == (48, 48, 16)
    dm.setup("fit")
    assert dm.regions == {"test": (0, 5), "val": (7, 12), "train": (14, 30)}  # 30 axial slices, margin 2
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "label", "index"}
    assert batch["image"].shape == (4, 1, 48, 48, 16) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (4, 1, 48, 48, 16) and batch["label"].dtype == torch.int64
    assert -0.1 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1.1  # window [0, 1], shift 0.1
    assert set(batch["label"].unique().tolist()) <= set(range(5)) and batch["index"].shape == (4,)
    val, test = next(iter(dm.val_dataloader())), next(iter(dm.test_dataloader()))
    x, y, _ = dm.volume_shape
    assert val["image"].shape == (1, 1, x, y, 5) and test["label"].shape == (1, 1, x, y, 5)
    for region in ("train", "val", "test"):  # every kept structure is present in every region of this CT
        assert all(c > 0 for c in dm.class_voxels[region]), dm.class_voxels
    # the regions' labels are the volume's: no voxel lost or added by the split apart from the margins
    total = np.bincount(np.asanyarray(nib.load(TOTALSEG / "example_seg.nii.gz").dataobj).ravel().astype(np.int64))
    kept = sum(dm.class_voxels[r][1] for r in dm.regions)
    assert kept <= total[5] and kept > 0.9 * total[5]


@needs_totalseg
def test_train_patches_share_no_voxel_with_validation_or_test():
    dm = SingleSubjectDataModule("totalseg_ct", data_dir=str(TOTALSEG), stride=(16, 16, 4))
    dm.setup("fit")
    covered = _occupied(dm)
    assert covered.any() and not (covered & _region(dm, "test")).any() and not (covered & _region(dm, "val")).any()
    assert not (_region(dm, "train") & _region(dm, "test")).any()
    gap = dm.regions["train"][0] - dm.regions["val"][1]
    assert gap == dm.slab_margin == 2
    # the patches hold the training slab's voxels: patch i is the volume at starts[i]
    volume = dm.train_dataset.volume["label"][0]
    item = dm.train_dataset[3]
    (a, b, c), (p, q, r) = dm.train_dataset.starts[3], dm.patch_size
    assert torch.equal(item["label"][0], volume[a : a + p, b : b + q, c : c + r])


@needs_totalseg
def test_totalsegmentator_mr_and_depth_first():
    dm = SingleSubjectDataModule("totalseg_mr", data_dir=str(TOTALSEG), depth_first=True, augment=False)
    assert dm.intensity == "zscore" and dm.patch_size == (8, 48, 48)
    dm.setup("fit")
    assert dm.volume_shape[0] == 20  # the 20 axial slices come first
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 8, 48, 48)
    assert next(iter(dm.test_dataloader()))["image"].shape[2] == dm.regions["test"][1] - dm.regions["test"][0]
    covered = _occupied(dm)
    assert not (covered & _region(dm, "test")).any()


@needs_totalseg
def test_label_map_ids_must_be_in_the_volume_and_other_errors(tmp_path):
    dm = SingleSubjectDataModule("totalseg_ct", data_dir=str(TOTALSEG), label_map=[5, 12])
    with pytest.raises(ValueError, match=r"`label_map` must name label values of the volume, got \[12\]"):
        dm.setup("fit")
    dm = SingleSubjectDataModule("totalseg_ct", data_dir=str(TOTALSEG), patch_size=(48, 48, 24))
    with pytest.raises(ValueError, match=r"`patch_size` \(48, 48, 24\) must fit in the training slab"):
        dm.setup("fit")
    with pytest.raises(FileNotFoundError, match="example_ct_sm.nii.gz"):
        SingleSubjectDataModule("totalseg_ct", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="`data_dir`, `image_file` and `label_file` must be given"):
        SingleSubjectDataModule("totalseg_ct")
    with pytest.raises(ValueError, match="`source` must be one of"):
        SingleSubjectDataModule("amos", data_dir=str(TOTALSEG))
    with pytest.raises(ValueError, match="`split_axis` must be one of"):
        SingleSubjectDataModule("totalseg_ct", data_dir=str(TOTALSEG), split_axis=2)
    with pytest.raises(ValueError, match="`slab_order` must be an order of"):
        SingleSubjectDataModule("totalseg_ct", data_dir=str(TOTALSEG), slab_order=("train", "test"))
    with pytest.raises(ValueError, match="`slab_fractions` must be three shares"):
        SingleSubjectDataModule("totalseg_ct", data_dir=str(TOTALSEG), slab_fractions=(0.0, 0.5, 0.5))


@needs_totalseg
def test_files_source_keeps_the_stored_labels(tmp_path):
    seg = nib.load(TOTALSEG / "example_seg.nii.gz")
    small = np.isin(np.asanyarray(seg.dataobj), [5]).astype(np.uint8) * 2  # liver stored as 2
    nib.save(nib.Nifti1Image(small, seg.affine), tmp_path / "liver.nii.gz")
    dm = SingleSubjectDataModule("files", data_dir=str(TOTALSEG), image_file="example_ct_sm.nii.gz",
                                 label_file=str(tmp_path / "liver.nii.gz"), intensity="ct", split_axis="y",
                                 patch_size=(32, 16, 16), slab_order=("train", "val", "test"))
    assert dm.num_classes == 3 and dm.class_names == ("background", "label_1", "label_2")
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["image"].shape == (4, 1, 32, 16, 16)
    assert dm.regions["train"][0] == 0 and dm.class_voxels["train"][1] == 0


def test_mni152_offline_three_classes(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    image, label, affine = mni152_segmentation(resolution=2)
    assert image.shape == label.shape == (99, 117, 95) and np.allclose(np.diag(affine)[:3], 2.0)
    counts = np.bincount(label.ravel())
    assert counts.shape == (3,) and (counts > 10_000).all()  # background, grey and white matter
    assert image[label == 0].mean() < image[label == 1].mean() < image[label == 2].mean()  # T1: WM brightest
    dm = SingleSubjectDataModule("mni152", resolution=3, patch_size=(24, 24, 16), return_index=True)
    assert dm.num_classes == 3 and dm.intensity == "zscore"
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 24, 24, 16) and set(batch["label"].unique().tolist()) <= {0, 1, 2}
    assert all(c > 0 for c in dm.class_voxels["train"])
    assert not (_occupied(dm) & _region(dm, "test")).any()
