"""DynamicDataPruning: selections, epoch lengths, the contract, weights, resume, composition."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pruning_helpers import PlainModule, RecordBatches, TensorDataModule, classifier  # noqa: E402

from lightning_sparse.callbacks import DynamicDataPruning, DynamicSparseTraining  # noqa: E402


def trainer(callbacks, max_epochs=3, **kwargs):
    kwargs.setdefault("logger", False)
    return Trainer(accelerator="cpu", max_epochs=max_epochs, enable_checkpointing=kwargs.pop("ckpt", False),
                   enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                   deterministic=True, num_sanity_val_steps=0, **kwargs)


def fit(callbacks, module=None, dm=None, **kwargs):
    seed_everything(0)
    module = module if module is not None else classifier()
    dm = dm if dm is not None else (TensorDataModule() if not hasattr(module, "n") else None)
    t = trainer(callbacks, **kwargs)
    t.fit(module, datamodule=dm)
    return t, module


class EpochLengths(Callback):
    def __init__(self):
        self.lengths = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.lengths.append(trainer.num_training_batches)


@pytest.mark.parametrize("policy", ["random", "easy", "hard", "easy2hard"])
def test_each_epoch_trains_on_the_selection(policy):
    cb, rec, lengths = DynamicDataPruning(keep_ratio=0.5, policy=policy, seed=3), RecordBatches(), EpochLengths()
    t, _ = fit([cb, rec, lengths], max_epochs=4)
    assert cb.num_samples == 40 and bool(cb.scored.all())
    for epoch, batches in rec.epochs.items():
        seen = [i for b in batches for i in b]
        assert len(seen) == len(set(seen)) == 20, epoch  # 50% of 40, every sample once
        assert len(batches) == math.ceil(20 / 8)
    assert lengths.lengths == [3, 3, 3, 3]  # Lightning's own count follows the pruned epochs
    assert cb.samples_seen == 4 * 20
    # epoch 0 had no scores: the 20 unscored samples of epoch 1 are kept first
    first = {i for b in rec.epochs[0] for i in b}
    assert {i for b in rec.epochs[1] for i in b} == set(range(40)) - first


def test_hard_policy_keeps_the_highest_scores_of_the_previous_epoch():
    class Check(Callback):
        def __init__(self, cb):
            self.cb, self.ok = cb, []

        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch >= 2:  # every sample scored from epoch 2 on
                kept = set(self.cb.selection(trainer.current_epoch).indices.tolist())
                top = set(torch.argsort(self.before, descending=True)[:20].tolist())
                self.ok.append(kept == top)

        def on_train_epoch_end(self, trainer, pl_module):
            self.before = self.cb.scores.clone()

    cb = DynamicDataPruning(keep_ratio=0.5, policy="hard")
    check = Check(cb)
    fit([cb, check], max_epochs=4)
    assert check.ok == [True, True]


def test_plain_dataloader_of_a_users_module_is_resampled():
    cb, rec = DynamicDataPruning(keep_ratio=0.75), RecordBatches()
    fit([cb, rec], module=PlainModule(n=40), max_epochs=3)
    for epoch, batches in rec.epochs.items():
        seen = sorted(i for b in batches for i in b)
        assert seen == sorted(cb.selection(epoch).indices.tolist()) if epoch == 2 else len(seen) == 30


def test_plain_dataloader_passed_to_fit_is_resampled():
    from _pruning_helpers import IndexLast
    from torch.utils.data import DataLoader

    seed_everything(0)
    cb, rec = DynamicDataPruning(keep_ratio=0.5), RecordBatches()
    t = trainer([cb, rec], max_epochs=2)
    module = PlainModule()
    t.fit(module, train_dataloaders=DataLoader(IndexLast(40), batch_size=5, shuffle=True))
    assert [sum(len(b) for b in bs) for bs in rec.epochs.values()] == [20, 20]


def test_a_module_without_the_contract_fails_at_its_first_batch():
    cb = DynamicDataPruning()
    with pytest.raises(ValueError, match="per-sample contract.*'per_sample_loss'"):
        fit([cb], module=PlainModule(contract=False), max_epochs=1)


def test_a_batch_without_indices_is_named():
    cb = DynamicDataPruning()
    with pytest.raises(ValueError, match="no 'index'.*return_index=True"):
        fit([cb], dm=TensorDataModule(return_index=False), max_epochs=1)


@pytest.mark.parametrize("kwargs, match", [
    ({"keep_ratio": 0.0}, r"`keep_ratio` must be a number in \(0, 1\], got 0.0"),
    ({"keep_ratio": {"schedule": "linear", "final": 1.5}}, r"`keep_ratio\['final'\]` must be a number"),
    ({"policy": "loss"}, r"`policy` must be one of"),
    ({"prune_ratio": 1.0}, r"`prune_ratio` must be a number in \[0, 1\)"),
    ({"stop_fraction": -0.1}, r"`stop_fraction`"),
    ({"momentum": 1.0}, r"`momentum`"),
    ({"time_drop_ratio": 1.0}, r"`time_drop_ratio`"),
    ({"seed": -1}, r"`seed`"),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynamicDataPruning(**kwargs)


def test_arguments_the_trainer_cannot_support_raise_before_training():
    with pytest.raises(ValueError, match="needs `trainer.max_epochs`"):
        fit([DynamicDataPruning(policy="easy2hard")], max_epochs=-1, max_steps=5)
    with pytest.raises(ValueError, match="has none: give the task a `time_drop"):
        fit([DynamicDataPruning(time_drop_ratio=0.2)], max_epochs=1)


def test_infobatch_weights_reach_the_loss_and_final_epochs_use_full_data():
    class CheckLoss(Callback):
        def __init__(self, cb):
            self.cb, self.max_weight, self.checked = cb, [], 0

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            weights = self.cb.selection(trainer.current_epoch).weights
            w = torch.ones(len(batch[2])) if weights is None else weights[batch[2]]
            expected = (w * outputs["per_sample_loss"]).mean()
            assert torch.allclose(outputs["loss"], expected, atol=1e-6)
            self.max_weight.append(float(w.max()))
            self.checked += 1

    cb, rec = DynamicDataPruning(policy="infobatch", prune_ratio=0.5, stop_fraction=0.25), RecordBatches()
    check = CheckLoss(cb)
    fit([cb, rec, check], max_epochs=4)
    sizes = [sum(len(b) for b in rec.epochs[e]) for e in range(4)]
    assert sizes[0] == 40 and sizes[3] == 40  # nothing scored yet / the full-data final epoch
    assert sizes[1] < 40 and sizes[2] < 40
    assert max(check.max_weight[5:15]) == 2.0 and check.max_weight[-1] == 1.0


def test_cosine_schedule_is_sized_by_the_pruned_epochs():
    class LastLR(Callback):
        def on_train_start(self, trainer, pl_module):
            self.lightning_estimate = trainer.estimated_stepping_batches

        def on_train_end(self, trainer, pl_module):
            self.lr = trainer.optimizers[0].param_groups[0]["lr"]
            self.steps = trainer.global_step

    cb, last = DynamicDataPruning(keep_ratio={"schedule": "linear", "initial": 1.0, "final": 0.5}), LastLR()
    t, _ = fit([cb, last], module=classifier(scheduler="cosine"), max_epochs=4)
    # keep 40, 33, 27, 20 samples -> 5 + 5 + 4 + 3 batches of 8
    assert last.steps == 17 == cb.estimated_stepping_batches(t)
    assert last.lr == pytest.approx(0.0, abs=1e-12)  # the cosine ends exactly at the last step
    assert last.lightning_estimate == 20  # Lightning's own estimate counts full epochs


def test_stop_fraction_grows_the_epoch_back_to_full_length():
    cb, lengths, rec = DynamicDataPruning(keep_ratio=0.25, stop_fraction=0.5), EpochLengths(), RecordBatches()
    fit([cb, lengths, rec], max_epochs=4)
    assert lengths.lengths == [2, 2, 5, 5]
    assert [sum(len(b) for b in rec.epochs[e]) for e in range(4)] == [10, 10, 40, 40]


def test_gradient_accumulation_and_bf16_mixed_precision():
    cb, rec = DynamicDataPruning(keep_ratio=0.5, policy="hard"), RecordBatches()
    t, _ = fit([cb, rec], max_epochs=3, accumulate_grad_batches=2, precision="bf16-mixed")
    assert t.global_step == 3 * 2  # 3 batches per epoch, stepping every second and at the end
    assert bool(cb.scored.all()) and torch.isfinite(cb.scores).all()
    assert cb.samples_seen == 60


def test_manual_optimization_with_two_optimizers():
    cb, rec = DynamicDataPruning(keep_ratio=0.5, policy="easy"), RecordBatches()
    fit([cb, rec], module=PlainModule(manual=True), max_epochs=3)
    assert [sum(len(b) for b in rec.epochs[e]) for e in range(3)] == [20, 20, 20]
    assert bool(cb.scored.all())


def test_composes_with_dst_and_truly_sparse():
    """Masks stay exact under pruned data; the random policy's kept sets do not depend on the
    model (only on which samples were scored), so they equal those of a run without DST."""
    from lightning_sparse.callbacks import TrulySparse

    def run(extra):
        cb, rec = DynamicDataPruning(keep_ratio=0.5, policy="random", seed=1), RecordBatches()
        t, module = fit([cb, rec, *extra], max_epochs=3)
        return cb, rec, module

    alone, rec_alone, _ = run([])
    dst = DynamicSparseTraining(method="rigl", sparsity=0.8, update_interval=2, seed=0)
    together, rec_together, module = run([dst, TrulySparse(max_density=0.5)])
    for epoch in range(3):
        assert sorted(i for b in rec_alone.epochs[epoch] for i in b) == sorted(
            i for b in rec_together.epochs[epoch] for i in b), epoch
    assert dst.num_updates > 0
    params = dict(module.named_parameters())
    for name, mask in dst.masks.items():
        assert bool((params[name].detach()[~mask] == 0).all()), name


class Crash(Callback):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.at_step:
            raise RuntimeError("crash")  # before the checkpoint of this step is written


@pytest.mark.parametrize("policy", ["easy2hard", "infobatch"])
def test_crash_and_resume_equals_an_uninterrupted_run(tmp_path, policy):
    def make():
        return DynamicDataPruning(keep_ratio=0.5, policy=policy, stop_fraction=0.2, seed=5), RecordBatches()

    cb_a, rec_a = make()
    _, model_a = fit([cb_a, rec_a], max_epochs=5)

    cb_b, rec_b = make()
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=1, save_top_k=0)
    with pytest.raises(RuntimeError, match="crash"):
        fit([cb_b, rec_b, Crash(at_step=8), ckpt], max_epochs=5, ckpt=True)
    assert (tmp_path / "last.ckpt").exists()
    cb_c, rec_c = make()
    seed_everything(0)
    model_c = classifier()
    t = trainer([cb_c, rec_c], max_epochs=5)
    t.fit(model_c, datamodule=TensorDataModule(), ckpt_path=str(tmp_path / "last.ckpt"))

    # the batches after the checkpoint (step 7) are those of the uninterrupted run
    flat_a = [b for e in sorted(rec_a.epochs) for b in rec_a.epochs[e]]
    flat_c = [b for e in sorted(rec_c.epochs) for b in rec_c.epochs[e]]
    assert flat_c == flat_a[7:]
    assert torch.equal(cb_a.scores, cb_c.scores) and torch.equal(cb_a.scored, cb_c.scored)
    assert cb_a.samples_seen == cb_c.samples_seen
    for (name, pa), pc in zip(model_a.state_dict().items(), model_c.state_dict().values()):
        assert torch.equal(pa, pc), name


def test_the_datamodule_is_unpruned_after_fit():
    dm, cb = TensorDataModule(), DynamicDataPruning(keep_ratio=0.5)
    fit([cb], dm=dm, max_epochs=1)
    assert dm.train_sampler is None
    rec = RecordBatches()
    fit([rec], dm=dm, max_epochs=1)
    assert sum(len(b) for b in rec.epochs[0]) == 40


def test_time_drop_ratio_is_scheduled_on_the_tasks_time_drop_modules():
    from lightning_sparse.data import TimeDrop

    class WithTimeDrop(PlainModule):
        def __init__(self):
            super().__init__()
            self.time_drop = TimeDrop(mode="chunk", ratio=0.0, chunk_length=2)

    class Ratios(Callback):
        def __init__(self):
            self.ratios = []

        def on_train_epoch_start(self, trainer, pl_module):
            self.ratios.append(pl_module.time_drop.ratio)

    cb = DynamicDataPruning(keep_ratio=0.5, time_drop_ratio={"schedule": "linear", "initial": 0.1, "final": 0.3},
                            stop_fraction=0.25)
    ratios = Ratios()
    fit([cb, ratios], module=WithTimeDrop(), max_epochs=4)
    # pruned epochs 0-2 (the last pruned epoch is 2): 0.1 -> 0.3; epoch 3 trains on full data, no drop
    assert ratios.ratios == pytest.approx([0.1, 0.2, 0.3, 0.0])


def test_logs_kept_fraction_and_samples_seen_at_the_loggers_cadence(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    cb = DynamicDataPruning(keep_ratio=0.5)
    t, _ = fit([cb], max_epochs=2, logger=CSVLogger(tmp_path), log_every_n_steps=2)
    assert t.logged_metrics["data_pruning/kept_fraction"] == pytest.approx(0.5)
    assert t.logged_metrics["data_pruning/samples_seen"] == 40  # 2 epochs x 20 samples, the last step logs
    import csv

    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    logged = [r for r in rows if r.get("data_pruning/samples_seen")]
    assert [int(float(r["step"])) for r in logged] == [1, 3, 5]  # every second step (0-based)
