"""Region-constrained DST (DSN, arXiv:2212.09840): regions from the model, per-group exact counts,
density inside the regions, leftmost initial masks, update intervals in epochs."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import TinyNet
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_sparse.callbacks import DynamicSparseTraining
from lightning_sparse.core import group_counts
from lightning_sparse.tasks import TimeSeriesClassifier

BACKBONE = {"width": 4, "depth": 2, "kernel_size": 9}  # groups of 3, 6 and 9 taps
CONVS = ["model.blocks.0.conv.weight", "model.blocks.1.conv.weight"]
DSN_SETTINGS = {
    "method": "rigl", "grow": "random", "drop_fraction": 0.5, "drop_schedule": "cosine", "stop_step": 0.8,
    "sparsity": 0.8, "distribution": "uniform", "include": ["model.blocks.*.conv.weight"], "allowed_regions": "model",
    "density_within_regions": True, "init_mask": "leftmost", "update_interval_epochs": 1, "summary": False,
}


def task(**kwargs) -> TimeSeriesClassifier:
    torch.manual_seed(0)
    return TimeSeriesClassifier("dsn", {**BACKBONE, **kwargs}, num_classes=3, lr=1e-2, min_lr=1e-3)


def loader(n: int = 16, batch_size: int = 4, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    data = TensorDataset(torch.randn(n, 1, 32, generator=g), torch.randint(0, 3, (n,), generator=g))
    return DataLoader(data, batch_size=batch_size)


def trainer(tmp_path, callbacks, **kwargs) -> Trainer:
    kwargs.setdefault("max_epochs", 10)
    return Trainer(
        default_root_dir=tmp_path, callbacks=callbacks, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1, **kwargs
    )


def group_sizes(mask: torch.Tensor, labels: torch.Tensor) -> dict[int, int]:
    return {int(g): int(mask[labels == g].sum()) for g in labels.unique() if g > 0}


class RegionSpy(Callback):
    """After every optimizer step: nothing active or nonzero outside the regions, every group's
    count as at the start; records the first masks and the steps whose update changed them."""

    def __init__(self, dst: DynamicSparseTraining):
        self.dst = dst
        self.labels: dict[str, torch.Tensor] = {}
        self.first: dict[str, torch.Tensor] = {}
        self.counts: dict[str, dict[int, int]] = {}
        self.prev: dict[str, torch.Tensor] = {}
        self.changed_steps: list[int] = []
        self.checked = 0

    def on_train_start(self, trainer, pl_module):
        self.labels = pl_module.allowed_regions()
        self.first = {n: m.clone() for n, m in self.dst.masks.items()}
        self.counts = {n: group_sizes(self.first[n], self.labels[n]) for n in self.labels}
        self.prev = {n: m.clone() for n, m in self.first.items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        params = dict(pl_module.named_parameters())
        masks = self.dst.masks
        for n, labels in self.labels.items():
            region = labels > 0
            assert not (masks[n] & ~region).any(), f"{n}: a unit is active outside its region"
            assert not params[n][~region].any(), f"{n}: a weight is nonzero outside its region"
            assert not params[n][~masks[n]].any(), f"{n}: a weight is nonzero outside its mask"
            assert group_sizes(masks[n], labels) == self.counts[n], f"{n}: a group's count changed"
        if any(not torch.equal(masks[n], self.prev[n]) for n in masks):
            self.changed_steps.append(trainer.global_step - 1)  # the step that just ran
        self.prev = {n: m.clone() for n, m in masks.items()}
        self.checked += 1


def test_dsn_settings_keep_every_group_exact_and_inside_its_region(tmp_path):
    seed_everything(0)
    model = task()
    dst = DynamicSparseTraining(**DSN_SETTINGS)
    spy = RegionSpy(dst)
    t = trainer(tmp_path, [dst, spy])
    t.fit(model, loader())  # 4 steps per epoch, 40 steps
    assert spy.checked == 40
    # updates every epoch (4 steps) strictly before 80% of training (step 32); each one changed masks
    assert spy.changed_steps == [4, 8, 12, 16, 20, 24, 28]
    assert dst.interval == 4 and dst.allowed_regions == "model"
    assert set(dst.masks) == set(CONVS)
    labels = model.allowed_regions()
    for n in CONVS:
        capacities = {g: int((labels[n] == g).sum()) for g in (1, 2, 3)}
        assert spy.counts[n] == group_counts(dst.target_counts[n], capacities)  # shared by size
        assert dst.target_counts[n] == sum(spy.counts[n].values())
    # 20% of each region: 14.4 -> 14 and 57.6 -> 58 units (largest remainder, global budget 72)
    assert [dst.target_counts[n] for n in CONVS] == [14, 58]
    assert dst.region_densities == pytest.approx({CONVS[0]: 14 / 72, CONVS[1]: 58 / 288})
    assert dst.region_density == 0.2 and float(t.callback_metrics["sparsity/region_density"]) == pytest.approx(0.2)
    assert dst.target_densities == pytest.approx({CONVS[0]: 0.2 * 72 / 108, CONVS[1]: 0.2 * 288 / 432})
    assert dst.exploration_rate > dst.global_density  # random regrowth explored the regions


def test_density_within_regions_is_exact_per_layer(tmp_path):
    seed_everything(0)
    model = task(width=5)  # regions of 5*1*(3+6+9) = 90 and 5*5*18 = 450 units: 20% is 18 and 90
    dst = DynamicSparseTraining(**{**DSN_SETTINGS, "init_mask": "random"})
    trainer(tmp_path, [dst], max_epochs=1).fit(model, loader())
    assert [dst.active_counts[n] for n in CONVS] == [18, 90]
    plain = DynamicSparseTraining(**{**DSN_SETTINGS, "density_within_regions": False, "sparsity": 1 - 0.2 * 2 / 3})
    trainer(tmp_path, [plain], max_epochs=1).fit(task(width=5), loader())
    assert [plain.active_counts[n] for n in CONVS] == [18, 90]  # the same, converted by hand


def test_density_within_regions_with_a_mapping_and_bool_regions(tmp_path):
    seed_everything(0)
    region = torch.zeros(32, 16, dtype=torch.bool)
    region[:, :4] = True  # 128 of 512 positions
    dst = DynamicSparseTraining(
        method="static", distribution={"*": 0.75}, include=["net.0.weight"], density_within_regions=True,
        allowed_regions={"net.0.weight": region}, summary=False,
    )
    trainer(tmp_path, [dst], max_steps=2).fit(TinyNet())
    assert dst.active_counts["net.0.weight"] == 32  # a quarter of the region, not of the weight
    assert dst.densities["net.0.weight"] == pytest.approx(32 / 512)


def test_leftmost_init_fills_the_first_taps_of_each_group_first(tmp_path):
    seed_everything(0)
    model = task(width=6)
    dst = DynamicSparseTraining(**{**DSN_SETTINGS, "method": "static"})
    spy = RegionSpy(dst)
    trainer(tmp_path, [dst, spy], max_steps=1).fit(model, loader())
    labels = model.allowed_regions()
    for n in CONVS:
        for g in (1, 2, 3):
            rows = spy.first[n][labels[n][:, 0, 0] == g]  # (width, in, K): the group's channels
            per_tap = rows.sum((0, 1))  # active units per tap
            full = rows.shape[0] * rows.shape[1]
            used = int((per_tap > 0).sum())
            assert per_tap[: used - 1].eq(full).all(), f"{n} group {g}: a tap is used before the ones left of it are full"
            assert not per_tap[used:].any()
            # the partly filled tap is spread over the kernels at random, not taken in raster order
            last = rows[..., used - 1].flatten()
            if 0 < int(last.sum()) < last.numel():
                assert not last[: int(last.sum())].all()


def test_every_group_keeps_its_count_without_density_within_regions(tmp_path):
    seed_everything(0)
    dst = DynamicSparseTraining(**{**DSN_SETTINGS, "density_within_regions": False, "sparsity": 0.9,
                                   "method": "set", "init_mask": "random"})
    spy = RegionSpy(dst)
    trainer(tmp_path, [dst, spy], max_epochs=3).fit(task(), loader())
    assert spy.checked == 12 and spy.changed_steps == [4]  # update at 4; stop 0.8 * 12 = step 9; 8 is not due
    assert sum(dst.target_counts.values()) == round(0.1 * (108 + 432))


def test_granet_inside_groups_prunes_to_the_region_target(tmp_path):
    seed_everything(0)
    settings = {**DSN_SETTINGS, "method": "granet", "grow": None, "init_mask": "random", "update_interval_epochs": 1,
                "prune_end_step": 0.5}
    dst = DynamicSparseTraining(**settings)
    trainer(tmp_path, [dst], max_epochs=10).fit(task(), loader())
    labels = task().allowed_regions()
    # pruned from 50% to 20% of the regions (global magnitude pruning shares it among the layers)
    assert sum(dst.active_counts[n] for n in CONVS) == round(0.2 * (72 + 288))
    for n in CONVS:
        assert not (dst.masks[n] & ~(labels[n] > 0)).any()


def test_update_interval_epochs_counts_optimizer_steps(tmp_path):
    seed_everything(0)
    dst = DynamicSparseTraining(method="set", sparsity=0.5, update_interval_epochs=2, stop_step=1.0, summary=False)
    changed = []

    class Watch(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.n = dst.num_updates

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if dst.num_updates != self.n:
                changed.append(trainer.global_step)

    # 5 batches per epoch, 2 per optimizer step: ceil(5 / 2) = 3 steps per epoch, updates every 6
    trainer(tmp_path, [dst, Watch()], max_epochs=6, accumulate_grad_batches=2).fit(TinyNet(n=40))
    assert dst.interval == 6
    assert changed == [7, 13]  # the update before step 6 (12) is seen after it, at global_step 7 (13)


def test_model_regions_are_resolved_at_every_setup(tmp_path):
    seed_everything(0)
    dst = DynamicSparseTraining(**{**DSN_SETTINGS, "include": None})
    trainer(tmp_path, [dst], max_steps=1).fit(task(), loader())
    first = {n: t.capacity for n, t in dst.targets.items()}
    trainer(tmp_path, [dst], max_steps=1).fit(task(width=5), loader())
    assert dst.allowed_regions == "model"
    assert dst.targets[CONVS[1]].capacity == 5 * 5 * 18 != first[CONVS[1]]
    # without `include`, layers without a region (1x1 convolutions) are sparse over their whole weight
    assert dst.targets["model.head_conv.weight"].allowed is None


def test_missing_model_regions_raise_before_training(tmp_path):
    dst = DynamicSparseTraining(allowed_regions="model", summary=False)
    t = trainer(tmp_path, [dst], max_steps=2)
    with pytest.raises(ValueError, match=r"`allowed_regions='model'`.*TinyNet defines none"):
        t.fit(TinyNet())
    assert t.global_step == 0


class Crash(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 14:
            raise RuntimeError("simulated crash")


def _fit(root, ckpt_path=None, save=False, crash=False):
    seed_everything(3)
    model = task()
    dst = DynamicSparseTraining(**{**DSN_SETTINGS, "seed": 5})
    callbacks = [dst] + ([Crash()] if crash else [])
    if save:
        callbacks.append(ModelCheckpoint(dirpath=root, every_n_train_steps=4, save_top_k=-1))
    Trainer(default_root_dir=root, callbacks=callbacks, max_epochs=6, logger=False, enable_progress_bar=False,
            enable_model_summary=False, deterministic=True, enable_checkpointing=save, accelerator="cpu",
            devices=1).fit(model, loader(), ckpt_path=ckpt_path)
    return model, dst


def test_exact_resume_with_groups(tmp_path):
    full_model, full_dst = _fit(tmp_path / "full")
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(tmp_path / "first", save=True, crash=True)
    ckpt = next((tmp_path / "first").glob("*step=12*.ckpt"))  # end of epoch 2, before the update due at step 12
    model, dst = _fit(tmp_path / "resumed", ckpt_path=str(ckpt))
    assert dst.num_updates == full_dst.num_updates > 0
    for n in full_dst.masks:
        assert torch.equal(dst.masks[n], full_dst.masks[n]), n
    for (n, a), (_, b) in zip(full_model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), n


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"allowed_regions": "module"}, r"`allowed_regions` must be one of \('model',\), a mapping .* got 'module'"),
        ({"allowed_regions": 3}, r"`allowed_regions` must be a mapping \{name: region\}, 'model' or None, got int"),
        ({"init_mask": "sorted"}, r"`init_mask` must be one of \('random', 'leftmost'\), got 'sorted'"),
        ({"init_mask": "leftmost", "granularity": "kernel"}, r"`init_mask='leftmost'` .* needs `granularity='element'`"),
        ({"update_interval_epochs": 0}, r"`update_interval_epochs` must be an integer >= 1 or None, got 0"),
        ({"update_interval_epochs": 1.5}, r"`update_interval_epochs` must be an integer >= 1 or None, got 1.5"),
        ({"density_within_regions": "yes"}, r"`density_within_regions` must be True or False, got 'yes'"),
    ],
)
def test_bad_region_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynamicSparseTraining(**kwargs)


def test_group_counts_match_the_official_per_group_rule_within_one():
    # the official code keeps int(d * size) units per group; the shares here differ by at most one
    for width, k in [(47, 39), (59, 39), (8, 9)]:
        sizes = {g: width * width * k * g // 3 for g in (1, 2, 3)}
        count = round(0.2 * sum(sizes.values()))
        shares = group_counts(count, sizes)
        assert sum(shares.values()) == count
        assert all(abs(shares[g] - math.floor(0.2 * sizes[g])) <= 1 for g in sizes)
