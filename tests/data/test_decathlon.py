"""DecathlonDataModule on small Medical Segmentation Decathlon trees written with nibabel in tmp_path:
batches, folds, label maps, caches, axis order, errors, the resumable loader and a Lightning run."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import CacheDataset, PersistentDataset

from lightning_sparse.data import DecathlonDataModule
from lightning_sparse.data.loading import ResumableDataLoader
from lightning_sparse.data.medical import kfold_split, write_decathlon

SHAPE = (24, 22, 20)


def _case(rng, shape=SHAPE):
    """A CT-like volume: soft tissue (40 HU) with a bright organ (label 1) and a dark one (label 2)."""
    label = np.zeros(shape, np.uint8)
    label[4:12, 5:13, 3:10] = 1
    label[14:20, 10:18, 8:16] = 2
    image = 40.0 + rng.normal(0, 10, shape) + 150.0 * (label == 1) - 60.0 * (label == 2)
    return image, label


@pytest.fixture
def tree(tmp_path):
    rng = np.random.default_rng(0)
    cases = [_case(rng) for _ in range(4)]
    root = write_decathlon(tmp_path / "Task00_Toy", [c[0] for c in cases], [c[1] for c in cases],
                           test_images=[cases[0][0]], label_names=["background", "bright", "dark"],
                           spacing=(1.5, 1.5, 2.0))
    return root


def _dm(root, **kwargs):
    defaults = dict(patch_size=(16, 16, 8), num_folds=2, batch_size=2, num_samples=2)
    return DecathlonDataModule(str(root), **{**defaults, **kwargs})


def test_attributes_and_one_training_batch(tree):
    dm = _dm(tree, return_index=True)
    assert (dm.num_classes, dm.in_channels, dm.class_names) == (3, 1, ("background", "bright", "dark"))
    assert dm.intensity == "ct" and dm.spatial_dims == 3 and dm.patch_size == (16, 16, 8)
    assert len(dm.train_files) == 2 and len(dm.val_files) == 2
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader, ResumableDataLoader) and loader.resumable
    batch = next(iter(loader))
    assert set(batch) == {"image", "label", "index"}
    image, label, index = batch["image"], batch["label"], batch["index"]
    assert type(image) is torch.Tensor and type(label) is torch.Tensor  # no MetaTensor
    assert image.shape == (4, 1, 16, 16, 8) and image.dtype == torch.float32
    assert label.shape == (4, 1, 16, 16, 8) and label.dtype == torch.int64
    assert -0.1 <= image.min() and image.max() <= 1.1  # the CT window maps to [0, 1]; shifts of 0.1
    assert set(label.unique().tolist()) <= {0, 1, 2}
    # num_samples patches per volume, each carrying its volume's index in train_dataset
    assert index.dtype == torch.int64 and index.shape == (4,)
    assert index.tolist()[0::2] == index.tolist()[1::2] and sorted(set(index.tolist())) == [0, 1]
    val = next(iter(dm.val_dataloader()))
    assert set(val) == {"image", "label"} and val["image"].shape == (1, 1, *SHAPE)


def test_positive_patches_hold_foreground(tree):
    dm = _dm(tree, pos=1.0, neg=0.0, augment=False, seed=3)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert all((patch > 0).any() for patch in batch["label"])


def test_set_train_sampler_orders_the_volumes(tree):
    dm = _dm(tree, return_index=True, batch_size=1, num_samples=1)
    dm.setup("fit")
    dm.set_train_sampler([1, 1, 0])
    assert [b["index"].tolist() for b in dm.train_dataloader()] == [[1], [1], [0]]


def test_folds_are_disjoint_and_cover_the_training_list(tree):
    every = json.loads((tree / "dataset.json").read_text())["training"]
    names = {e["image"].split("/")[-1] for e in every}
    held = []
    for fold in range(4):
        dm = _dm(tree, fold=fold, num_folds=4, seed=7)
        train = {p["image"].split("/")[-1] for p in dm.train_files}
        val = {p["image"].split("/")[-1] for p in dm.val_files}
        assert not train & val and train | val == names
        held.append(val)
    assert sorted(n for v in held for n in v) == sorted(names)  # each case held out exactly once
    assert _dm(tree, fold=1, seed=7).val_files == _dm(tree, fold=1, seed=7).val_files
    train, val = kfold_split(10, 3, 2, seed=1)
    assert len(val) == 3 and not set(train) & set(val)


def test_validation_list_with_fold_none(tree):
    meta = json.loads((tree / "dataset.json").read_text())
    meta["validation"], meta["training"] = meta["training"][:1], meta["training"][1:]
    (tree / "dataset.json").write_text(json.dumps(meta))
    dm = _dm(tree, fold=None)
    assert len(dm.train_files) == 3 and [p["image"] for p in dm.val_files] == [str(tree / "imagesTr/toy_000.nii.gz")]


def test_label_map_keeps_a_subset_and_merges(tree):
    dm = _dm(tree, label_map=[2])
    assert dm.num_classes == 2 and dm.class_names == ("background", "dark")
    dm.setup("fit")
    val = next(iter(dm.val_dataloader()))
    source = np.asanyarray(nib.load(dm.val_files[0]["label"]).dataobj)
    assert int((val["label"] == 1).sum()) == int((source == 2).sum())  # dark kept as 1, bright -> 0
    assert set(val["label"].unique().tolist()) == {0, 1}
    merged = _dm(tree, label_map={1: 1, 2: 1})
    assert merged.num_classes == 2 and merged.class_names == ("background", "bright+dark")
    with pytest.raises(ValueError, match=r"`label_map` must name label values listed in .*\[7\]"):
        _dm(tree, label_map=[7])


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_caches_give_the_same_volumes(tree, tmp_path, cache):
    plain = _dm(tree)
    plain.setup("fit")
    dm = _dm(tree, cache=cache, cache_dir=str(tmp_path / "cache"))
    dm.setup("fit")
    assert isinstance(dm.train_dataset, CacheDataset if cache == "memory" else PersistentDataset)
    reference = list(plain.val_dataloader())
    for _ in range(2):  # disk: the first pass writes the cache, the second reads it
        for cached, ref in zip(dm.val_dataloader(), reference, strict=True):
            assert torch.equal(cached["image"], ref["image"]) and torch.equal(cached["label"], ref["label"])
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 1, 16, 16, 8)
    if cache == "disk":
        folders = sorted(p.name.split("-")[0] for p in (tmp_path / "cache").iterdir())
        assert folders == ["eval", "train"]
        assert len(list((tmp_path / "cache").glob("*/*.pt"))) == 2 + 2  # 2 validation + 2 training volumes
        other = _dm(tree, cache="disk", cache_dir=str(tmp_path / "cache"), spacing=(3.0, 3.0, 4.0))
        assert other._cache_folder("eval") != dm._cache_folder("eval")  # other preprocessing, other folder


def test_spacing_orientation_and_depth_first(tree, tmp_path):
    # one case stored in LPS orientation: RAS reorientation must undo the flips
    image, label = _case(np.random.default_rng(1))
    flipped = np.diag([-1.5, -1.5, 2.0, 1.0])
    nib.save(nib.Nifti1Image(image[::-1, ::-1].astype(np.float32), flipped), tree / "imagesTr/toy_000.nii.gz")
    nib.save(nib.Nifti1Image(label[::-1, ::-1].copy(), flipped), tree / "labelsTr/toy_000.nii.gz")
    meta = json.loads((tree / "dataset.json").read_text())
    meta["validation"] = meta["training"][:1]
    (tree / "dataset.json").write_text(json.dumps(meta))
    dm = _dm(tree, fold=None)
    dm.setup("validate")
    val = next(iter(dm.val_dataloader()))
    assert torch.equal(val["label"][0, 0], torch.from_numpy(label.astype(np.int64)))
    coarse = _dm(tree, fold=None, spacing=(3.0, 3.0, 4.0))
    coarse.setup("validate")
    assert next(iter(coarse.val_dataloader()))["image"].shape == (1, 1, 12, 12, 10)  # MONAI: corner to corner
    deep = _dm(tree, fold=None, depth_first=True, patch_size=(8, 16, 16))
    deep.setup("fit")
    assert next(iter(deep.val_dataloader()))["label"].shape == (1, 1, *SHAPE[::-1])
    assert torch.equal(next(iter(deep.val_dataloader()))["label"][0, 0], val["label"][0, 0].permute(2, 1, 0))
    assert next(iter(deep.train_dataloader()))["image"].shape == (4, 1, 8, 16, 16)


def test_multimodal_mr_and_unlabelled_test_images(tmp_path):
    rng = np.random.default_rng(2)
    cases = [_case(rng) for _ in range(3)]
    images = [np.stack([im, 2 * im], -1) for im, _ in cases]  # (X, Y, Z, 2): two modalities
    root = write_decathlon(tmp_path / "mr", images, [lab for _, lab in cases], test_images=[images[0]],
                           modality=["T1w", "T2w"])
    dm = DecathlonDataModule(str(root), patch_size=(16, 16, 8), num_folds=3, crop_foreground=False)
    assert dm.in_channels == 2 and dm.intensity == "zscore"
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["image"].shape == (4, 2, 16, 16, 8)
    val = next(iter(dm.val_dataloader()))["image"][0]
    assert torch.allclose(val.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-4)  # z-score per channel
    dm.setup("test")
    test = next(iter(dm.test_dataloader()))
    assert set(test) == {"image"} and test["image"].shape == (1, 2, *SHAPE)


def test_errors(tree, tmp_path):
    missing = DecathlonDataModule(str(tmp_path / "nowhere"))  # a recipe may name a data set not on this machine
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        missing.setup("fit")
    with pytest.raises(ValueError, match=r"`fold` must be an integer in \[0, 1\], got 2"):
        _dm(tree, fold=2)
    with pytest.raises(ValueError, match=r"`num_folds` must be an integer in \[2, 4\], got 5"):
        _dm(tree, num_folds=5)
    with pytest.raises(ValueError, match="no 'validation' list"):
        _dm(tree, fold=None)
    with pytest.raises(ValueError, match="`cache` must be one of"):
        _dm(tree, cache="ram")
    with pytest.raises(ValueError, match="`cache_dir` must be a folder"):
        _dm(tree, cache="disk")
    with pytest.raises(ValueError, match="`intensity` must be one of"):
        _dm(tree, intensity="minmax")
    with pytest.raises(ValueError, match="`patch_size` must be three positive integers"):
        _dm(tree, patch_size=(16, 16))
    with pytest.raises(ValueError, match="`a_min` must be below `a_max`"):
        _dm(tree, a_min=100, a_max=-100)
    dm = _dm(tree, patch_size=(32, 16, 8))
    with pytest.raises(ValueError, match=r"`patch_size` \(32, 16, 8\) must fit in every training .*\(24, 22, 20\)"):
        dm.setup("fit")


def test_lightning_fit_on_dict_batches(tree):
    import lightning as L
    from monai.losses import DiceCELoss

    class Seg(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Conv3d(1, 3, 3, padding=1)
            self.loss = DiceCELoss(to_onehot_y=True, softmax=True)
            self.seen = []

        def training_step(self, batch, batch_idx):
            self.seen += batch["index"].tolist()
            return self.loss(self.net(batch["image"]), batch["label"])

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", self.loss(self.net(batch["image"]), batch["label"]), batch_size=1)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    dm = _dm(tree, return_index=True, batch_size=1, num_samples=1)
    model = Seg()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    assert sorted(model.seen) == [0, 1] and "val_loss" in trainer.callback_metrics


def test_resumed_loader_continues_with_the_next_volumes(tree):
    dm = _dm(tree, return_index=True, batch_size=1, num_samples=1, num_folds=4)
    dm.setup("fit")
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it)
    state = loader.state_dict()
    rest = [b["index"].tolist() for b in it]
    resumed = dm.train_dataloader()
    resumed.load_state_dict(state)
    assert [b["index"].tolist() for b in resumed] == rest and len(rest) == 2


def test_print_config_shows_the_arguments(tree, tmp_path, monkeypatch, capsys):
    import sys
    from pathlib import Path

    import yaml

    from lightning_sparse.cli import main

    recipe = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"
    monkeypatch.setattr(sys, "argv", ["lightning-sparse"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(recipe), "--data", "lightning_sparse.data.DecathlonDataModule",
              "--data.data_dir", str(tree), "--data.label_map", "{1: 1, 2: 1}", "--print_config"])
    assert exit_info.value.code in (0, None)
    data = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]
    assert {"batch_size", "num_workers", "seed", "return_index", "patch_size", "intensity", "depth_first",
            "fold", "cache", "cache_dir"} <= set(data)
    assert data["data_dir"] == str(tree)
    assert _dm(tree, label_map=data["label_map"]).label_map == {1: 1, 2: 1}  # the dump's string keys read back
