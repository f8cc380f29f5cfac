"""The mask-holding base: several optimizers, the engine's edges, the provider protocol, the summary."""

from __future__ import annotations

import pytest
import torch
from helpers import TinyNet, TwoOptimizerNet
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_sparse.callbacks import DynamicSparseTraining, MaskProvider, SparseMaskCallback, TrulySparse


def trainer(tmp_path, callbacks, **kwargs):
    kwargs.setdefault("max_steps", 24)
    kwargs.setdefault("enable_checkpointing", False)
    return Trainer(
        default_root_dir=tmp_path, callbacks=callbacks, logger=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", devices=1, **kwargs
    )


def _changes(dst, fit):
    """Per parameter: the batches after which its mask differs from before."""
    seen, changes = {}, {}

    class Spy(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            for n, m in dst.masks.items():
                if n in seen and not torch.equal(seen[n], m):
                    changes.setdefault(n, []).append(trainer.fit_loop.total_batch_idx)
                seen[n] = m.clone()

    fit(Spy())
    return changes


@pytest.mark.parametrize("interval", [2, 100])
def test_two_optimizers_update_both_parameter_groups(tmp_path, interval):
    seed_everything(0)
    n_batches = 2 * interval + 1 if interval == 2 else 210
    dst = DynamicSparseTraining(method="set", sparsity=0.8, update_interval=interval, summary=False)
    model = TwoOptimizerNet(n=8 * n_batches if interval == 2 else 8 * 30)
    steps = n_batches if interval == 2 else 210
    changes = _changes(dst, lambda spy: trainer(tmp_path, [dst, spy], max_epochs=100, max_steps=2 * steps).fit(model))
    expected = [t for t in range(1, steps) if t % interval == 0]  # SET updates until the end
    assert dst.num_updates == len(expected) > 0
    for name in ("net.0.weight", "net.2.weight", "net.4.weight"):  # encoder optimizer and head optimizer
        assert changes[name] == expected, name
    assert dst.interval == interval


def test_two_optimizers_schedule_sized_in_training_batches(tmp_path):
    """`max_steps` counts optimizer steps (two per batch): RigL's stop at 75% is 75% of the batches."""
    seed_everything(0)
    dst = DynamicSparseTraining(method="rigl", sparsity=0.8, update_interval=2, summary=False)
    model = TwoOptimizerNet(n=8 * 40)
    changes = _changes(dst, lambda spy: trainer(tmp_path, [dst, spy], max_steps=2 * 40).fit(model))
    last = max(max(v) for v in changes.values())
    assert last < 30 and dst.num_updates == len(range(2, 30, 2))  # stop = 0.75 * 40 batches


def test_warns_when_an_optimizer_steps_outside_lightning(tmp_path):
    seed_everything(0)
    dst = DynamicSparseTraining(method="set", sparsity=0.8, update_interval=2, summary=False)
    with pytest.warns(UserWarning, match="stepped without Lightning's hooks"):
        trainer(tmp_path, [dst], max_steps=8).fit(TwoOptimizerNet(raw_step=True))


def test_two_optimizers_exact_resume(tmp_path):
    def run(max_steps, ckpt=None, callbacks=()):
        seed_everything(0)
        dst = DynamicSparseTraining(method="rigl", sparsity=0.8, update_interval=2, stop_step=14, summary=False)
        model = TwoOptimizerNet(n=64)  # 8 batches an epoch
        trainer(tmp_path, [dst, *callbacks], max_steps=max_steps, enable_checkpointing=bool(callbacks)).fit(
            model, ckpt_path=ckpt
        )
        return dst, model

    class Crash(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.fit_loop.total_batch_idx == 13:
                raise RuntimeError("crash")

    full_dst, full = run(2 * 16)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=10, save_last=True)  # 5 batches
    with pytest.raises(RuntimeError, match="crash"):
        run(2 * 16, callbacks=[Crash(), ckpt])
    resumed_dst, resumed = run(2 * 16, ckpt=str(tmp_path / "ck" / "last.ckpt"))  # from batch 10, mid-epoch
    assert resumed_dst.num_updates == full_dst.num_updates
    for n, m in full_dst.masks.items():
        assert torch.equal(m, resumed_dst.masks[n])
    for (n, p), q in zip(full.named_parameters(), resumed.parameters()):
        assert torch.equal(p, q), n


# ---------------------------------------------------------------------------------- engine edges
def test_frozen_parameters_stay_dense_unless_allowed(tmp_path):
    def fit(**kwargs):
        seed_everything(0)
        model = TinyNet()
        model.net[0].requires_grad_(False)
        dst = DynamicSparseTraining(method="rigl", sparsity=0.9, update_interval=4, summary=False, **kwargs)
        trainer(tmp_path, [dst], max_steps=8).fit(model)
        return dst, model

    dst, model = fit()
    assert "net.0.weight" not in dst.sparse_names and bool((model.net[0].weight != 0).all())
    dst, model = fit(include_frozen=True)
    assert "net.0.weight" in dst.sparse_names and dst.densities["net.0.weight"] < 0.5


def test_string_include_and_exclude_are_one_pattern(tmp_path):
    dst = DynamicSparseTraining(method="static", include="net.0.weight", summary=False)
    assert dst.include == ["net.0.weight"]
    trainer(tmp_path, [dst], max_steps=1).fit(TinyNet())
    assert dst.sparse_names == {"net.0.weight"}
    dst = DynamicSparseTraining(method="static", exclude="net.4.weight", summary=False)
    trainer(tmp_path, [dst], max_steps=1).fit(TinyNet())
    assert dst.sparse_names == {"net.0.weight", "net.2.weight"}
    with pytest.raises(ValueError, match=r"`exclude` must be a glob string or a list of glob strings, got 3"):
        DynamicSparseTraining(exclude=3)


def test_distribution_key_matching_nothing_raises_before_training(tmp_path):
    dst = DynamicSparseTraining(method="static", distribution={"net.9.weight": 0.5, "*": 0.8})
    with pytest.raises(ValueError, match=r"`distribution` keys \['net.9.weight'\] match no sparsified parameter"):
        trainer(tmp_path, [dst], max_steps=1).fit(TinyNet())


def test_two_mask_holders_claiming_one_parameter_are_refused(tmp_path):
    a = DynamicSparseTraining(method="static", include=["net.0.weight", "net.2.weight"])
    b = DynamicSparseTraining(method="set", include=["net.2.weight"])
    with pytest.raises(ValueError, match=r"both claim \['net.2.weight'\]"):
        trainer(tmp_path, [a, b], max_steps=1).fit(TinyNet())
    a = DynamicSparseTraining(method="static", include=["net.0.weight"], summary=False)
    b = DynamicSparseTraining(method="set", include=["net.2.weight"], summary=False)
    trainer(tmp_path, [a, b], max_steps=1).fit(TinyNet())  # disjoint claims are fine
    assert a.sparse_names == {"net.0.weight"} and b.sparse_names == {"net.2.weight"}


def test_warns_when_no_topology_update_can_happen(tmp_path):
    dst = DynamicSparseTraining(method="rigl", update_interval=25, summary=False)  # stops at 0.75 * 20 = 15
    with pytest.warns(UserWarning, match=r"no topology update will happen: updates every 25 steps in \(0, 15\)"):
        trainer(tmp_path, [dst], max_steps=20).fit(TinyNet())
    assert dst.num_updates == 0


def test_static_says_static(tmp_path, caplog):
    dst = DynamicSparseTraining(method="static", summary=False)
    with caplog.at_level("INFO"):
        trainer(tmp_path, [dst], max_steps=2).fit(TinyNet())
    assert "static masks (no topology update)" in caplog.text and "updates every" not in caplog.text


def test_summary_shows_active_and_real_nonzeros_apart(tmp_path, capsys):
    seed_everything(0)
    dst = DynamicSparseTraining(method="set", sparsity=0.8, update_interval=4, stop_step=1.0)
    t = trainer(tmp_path, [dst], max_steps=6)
    model = TinyNet()
    t.fit(model)
    with torch.no_grad():  # active positions that hold an exact zero (as a just-regrown weight does)
        model.net[2].weight[dst.masks["net.2.weight"]][:5] = 0
        w = model.net[2].weight
        w.view(-1)[dst.masks["net.2.weight"].view(-1).nonzero()[:5, 0]] = 0
    capsys.readouterr()
    dst.on_train_end(t, model)
    out = capsys.readouterr().out
    active = sum(dst.active_counts.values())
    nonzero = sum(int((p != 0).sum()) for n, p in model.named_parameters() if n in dst.sparse_names)
    assert nonzero <= active - 5
    footer = next(line for line in out.splitlines() if "total" in line)
    assert f"{active:,}" in footer and f"{nonzero:,}" in footer
    assert "active" in out and "nonzero" in out


def test_granet_summary_target_is_the_gradual_one(tmp_path):
    seed_everything(0)
    dst = DynamicSparseTraining(method="granet", sparsity=0.9, update_interval=4, prune_end_step=1.0,
                                prune_scope="layer")
    trainer(tmp_path, [dst], max_steps=10).fit(TinyNet())  # pruning half way: target between 0.5 and 0.9
    targets, _, _ = dst.summary_targets()
    assert all(t > d_final for t, d_final in zip(targets.values(), dst.target_densities.values()))
    dst = DynamicSparseTraining(method="granet", sparsity=0.9, update_interval=4, prune_end_step=1.0)
    trainer(tmp_path, [dst], max_steps=10).fit(TinyNet())
    targets, total, _ = dst.summary_targets()
    assert set(targets.values()) == {None} and 0.1 < total < 0.5  # one global budget


# ---------------------------------------------------------------------------------- the protocol
def test_every_mask_holder_is_a_provider_and_truly_sparse_uses_any(tmp_path):
    """The base alone is a static mask provider; TrulySparse converts its layers without knowing it."""
    assert isinstance(DynamicSparseTraining(), MaskProvider) and isinstance(SparseMaskCallback(), MaskProvider)
    assert not isinstance(TrulySparse(), MaskProvider)
    seed_everything(0)
    holder = SparseMaskCallback(sparsity=0.95, distribution="uniform", summary=False)
    ts = TrulySparse(max_density=0.2)
    seen = []

    class Spy(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(sorted(ts.sparse_layers))

    model = TinyNet()
    trainer(tmp_path, [holder, ts, Spy()], max_steps=4).fit(model)
    assert seen[-1] == ["net.0.weight", "net.2.weight", "net.4.weight"]
    assert holder.held == frozenset()  # handed back after fit
    for n, m in holder.masks.items():  # the dense layers are back, zero outside the masks
        assert not dict(model.named_parameters())[n][~m].any()


def test_a_new_method_is_one_preset(tmp_path):
    """Registering a preset is all a new prune-and-grow method needs."""
    from lightning_sparse.core.methods import METHOD_PRESETS, MethodPreset, register_method

    register_method(MethodPreset("magnitude_random", "magnitude", "random", 0.2, "linear", 1.0))
    try:
        seed_everything(0)
        dst = DynamicSparseTraining(method="magnitude_random", sparsity=0.8, update_interval=4, summary=False)
        assert (dst.drop_fraction, dst.drop_schedule, dst.grow_criterion) == (0.2, "linear", "random")
        trainer(tmp_path, [dst], max_steps=12).fit(TinyNet())
        assert dst.num_updates == 2  # steps 4 and 8 (12 is the end)
        assert dst.active_counts == dst.target_counts
    finally:
        del METHOD_PRESETS["magnitude_random"]
    with pytest.raises(ValueError, match=r"`method` must be one of .* got 'magnitude_random'"):
        DynamicSparseTraining(method="magnitude_random")
