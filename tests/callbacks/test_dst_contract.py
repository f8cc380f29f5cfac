"""The sparse-training contract of DynamicSparseTraining (docs/dst.md), one test per guarantee."""

from __future__ import annotations

import pytest
import torch
from helpers import TinyConvNet, TinyNet
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.precision import MixedPrecision

from lightning_sparse.callbacks import METHODS, DynamicSparseTraining
from lightning_sparse.core.methods import METHOD_PRESETS


def trainer(tmp_path, callbacks, **kwargs):
    kwargs.setdefault("max_steps", 24)
    return Trainer(
        default_root_dir=tmp_path, callbacks=callbacks, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1, **kwargs
    )


class ContractSpy(Callback):
    """Checks the contract around every optimizer step; placed after the DST callback."""

    def __init__(self, dst: DynamicSparseTraining):
        self.dst = dst
        self.prev: dict | None = None
        self.update_steps: list[int] = []
        self.update_batches: list[int] = []
        self.changed_steps: list[int] = []
        self.batch_idx = -1
        self._n_updates = 0
        self.checked_steps = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.batch_idx = batch_idx

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        params = dict(pl_module.named_parameters())
        masks = {n: m.clone() for n, m in self.dst.masks.items()}
        if self.dst.num_updates != self._n_updates:
            self._n_updates = self.dst.num_updates
            self.update_steps.append(trainer.global_step)
            self.update_batches.append(self.batch_idx)
        for n, m in masks.items():
            p = params[n]
            assert torch.all(p.grad[~m] == 0), f"gradient of inactive weights of {n} not zeroed"
            if self.prev is None:
                continue
            changed, grown = m ^ self.prev[n], m & ~self.prev[n]
            if changed.any():
                self.changed_steps.append(trainer.global_step)
                assert torch.all(p[grown] == 0), f"regrown weights of {n} do not start at zero"
                for key, state in optimizer.state[p].items():
                    if torch.is_tensor(state) and state.shape == p.shape:
                        assert torch.all(state[changed] == 0), f"optimizer state {key} of {n} not reset"
        self.prev = masks

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        params = dict(pl_module.named_parameters())
        for n, m in self.dst.masks.items():
            assert torch.all(params[n][~m] == 0), f"{n} has nonzeros outside its mask"
            if not self.dst.preset.gradual:
                assert self.dst.active_counts[n] == self.dst.target_counts[n], f"count of {n} drifted"
        self.checked_steps += 1


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_contract_holds_at_every_step(tmp_path, method, optimizer):
    seed_everything(0)
    model = TinyNet(optimizer=optimizer)
    dst = DynamicSparseTraining(method=method, sparsity=0.7, update_interval=4, summary=False)
    spy = ContractSpy(dst)
    trainer(tmp_path, [dst, spy], max_steps=24).fit(model)
    assert spy.checked_steps == 24
    preset = METHOD_PRESETS[method]  # updates every 4 steps until `stop` (a share of the 24 steps)
    expected = [] if method == "static" else [4, 8, 12, 16] + ([20] if preset.stop == 1.0 else [])
    if method == "gmp":  # pruning only, on the update grid up to `prune_end_step` (half of training)
        expected = [4, 8, 12]
    assert spy.update_steps == expected
    if method != "static":
        assert spy.changed_steps, "no topology update changed any mask"
    if preset.gradual:
        assert dst.global_density == pytest.approx(0.3, abs=0.01)  # pruned from dense to the target
    else:
        assert sum(int(m.sum()) for m in dst.masks.values()) == round(0.3 * sum(m.numel() for m in dst.masks.values()))


def test_masks_property_and_metrics(tmp_path):
    seed_everything(0)
    model = TinyNet()
    dst = DynamicSparseTraining(method="rigl", sparsity=0.8, update_interval=4, summary=False)
    t = trainer(tmp_path, [dst], max_steps=12)
    t.fit(model)
    params = dict(model.named_parameters())
    assert set(dst.masks) == {"net.0.weight", "net.2.weight", "net.4.weight"}
    for n, m in dst.masks.items():
        assert m.dtype == torch.bool and m.shape == params[n].shape
    for key in ["sparsity/density", "sparsity/churn", "sparsity/exploration_rate", "sparsity/drop_fraction",
                "sparsity/updates", "sparsity/layer/net.0.weight", "sparsity/global_density"]:
        assert key in t.callback_metrics, key
    assert 0 < float(t.callback_metrics["sparsity/churn"]) < 1
    assert dst.exploration_rate > dst.global_density  # regrowth explored new positions


def test_rigl_drop_fraction_decays_with_cosine_and_stops_at_75_percent(tmp_path):
    seed_everything(0)
    dst = DynamicSparseTraining(method="rigl", sparsity=0.5, update_interval=10, summary=False)
    spy = ContractSpy(dst)
    trainer(tmp_path, [dst, spy], max_steps=100).fit(TinyNet())
    assert spy.update_steps == [10, 20, 30, 40, 50, 60, 70]
    assert dst.drop_fraction_at(10) == pytest.approx(0.15 * (1 + torch.cos(torch.tensor(torch.pi * 10 / 75)).item()))


def test_updates_count_optimizer_steps_under_gradient_accumulation(tmp_path):
    seed_everything(0)
    dst = DynamicSparseTraining(method="set", sparsity=0.5, update_interval=3, stop_step=1.0, summary=False)
    spy = ContractSpy(dst)
    trainer(tmp_path, [dst, spy], max_steps=12, accumulate_grad_batches=2).fit(TinyNet(n=192))
    assert spy.update_steps == [3, 6, 9]
    assert spy.update_batches == [7, 13, 19]  # the optimizer step of step t closes micro-batch 2t + 1


def test_update_is_skipped_on_non_finite_gradients_with_grad_scaler(tmp_path):
    seed_everything(0)
    model = TinyNet(inf_at_step=8)
    dst = DynamicSparseTraining(method="rigl", sparsity=0.5, update_interval=4, stop_step=1.0, summary=False)
    spy = ContractSpy(dst)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    trainer(tmp_path, [dst, spy], max_steps=16, plugins=[plugin]).fit(model)
    assert spy.update_steps == [4, 12]  # the update due at step 8 was skipped
    assert 8 not in spy.changed_steps
    assert dst.skipped_updates == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_update_is_skipped_on_non_finite_gradients_in_full_precision(tmp_path):
    seed_everything(0)
    dst = DynamicSparseTraining(method="rigl", sparsity=0.5, update_interval=4, stop_step=1.0, summary=False)
    spy = ContractSpy(dst)
    before = None

    class Snapshot(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            nonlocal before
            if trainer.global_step == 4:
                before = {n: m.clone() for n, m in dst.masks.items()}

    trainer(tmp_path, [dst, spy, Snapshot()], max_steps=5).fit(TinyNet(inf_at_step=4))
    assert spy.update_steps == [] and dst.skipped_updates == 1
    assert all(torch.equal(before[n], m) for n, m in dst.masks.items())


class Crash(Callback):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step:  # the checkpoint of the previous step is on disk
            raise RuntimeError("simulated crash")


def _fit(tmp_path, max_steps, ckpt_path=None, save_every=None, method="rigl", crash_at=None, **dst_kwargs):
    seed_everything(123)
    model = TinyNet(optimizer="sgd")
    dst = DynamicSparseTraining(method=method, sparsity=0.7, update_interval=3, seed=7, summary=False, **dst_kwargs)
    callbacks = [dst] + ([Crash(crash_at)] if crash_at else [])
    if save_every:
        callbacks.append(ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=save_every, save_top_k=-1))
    t = Trainer(default_root_dir=tmp_path, callbacks=callbacks, max_steps=max_steps, logger=False,
                enable_progress_bar=False, enable_model_summary=False, deterministic=True,
                enable_checkpointing=bool(save_every), accelerator="cpu", devices=1)
    t.fit(model, ckpt_path=ckpt_path)
    return model, dst


@pytest.mark.parametrize(("method", "kwargs"), [("rigl", {}), ("set", {}), ("granet", {}),
                                                ("rigl", {"grow": "momentum"})])
def test_exact_resume_from_mid_training_checkpoint(tmp_path, method, kwargs):
    full_model, full_dst = _fit(tmp_path / "full", 32, method=method, **kwargs)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _fit(tmp_path / "first", 32, save_every=4, method=method, crash_at=18, **kwargs)
    # step 16 ends epoch 2 (8 steps per epoch) and sits between two updates (every 3 steps); Lightning
    # restarts a non-stateful dataloader at its epoch start, so mid-epoch resumes replay other batches
    ckpt = next((tmp_path / "first").glob("*step=16*.ckpt"))
    model, dst = _fit(tmp_path / "resumed", 32, ckpt_path=str(ckpt), method=method, **kwargs)
    assert dst.num_updates == full_dst.num_updates
    for n in full_dst.masks:
        assert torch.equal(dst.masks[n], full_dst.masks[n]), n
    for (n, a), (_, b) in zip(full_model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), n
    assert torch.equal(torch.tensor(dst.exploration_rate), torch.tensor(full_dst.exploration_rate))


def test_checkpoint_holds_bit_packed_masks(tmp_path):
    _fit(tmp_path, 6, save_every=6)
    ckpt = torch.load(next(tmp_path.glob("*.ckpt")), weights_only=False)
    (state,) = [v for k, v in ckpt["callbacks"].items() if k.startswith("DynamicSparseTraining")]
    assert all(m.dtype == torch.uint8 for m in state["masks"].values())
    assert state["shapes"]["net.0.weight"] == (32, 16)


def test_kernel_granularity_masks_whole_kernels(tmp_path):
    seed_everything(0)
    model = TinyConvNet()
    dst = DynamicSparseTraining(method="rigl", sparsity=0.6, granularity="kernel", update_interval=4, summary=False)
    trainer(tmp_path, [dst, ContractSpy(dst)], max_steps=12).fit(model)
    m = dst.masks["net.3.weight"]
    assert m.shape == (8, 8, 3, 3)
    per_kernel = m.flatten(2)
    assert torch.all(per_kernel.all(-1) | ~per_kernel.any(-1))  # each kernel all on or all off


def test_allowed_regions_are_never_left(tmp_path):
    seed_everything(0)
    region = torch.zeros(32, 16, dtype=torch.bool)
    region[:, :8] = True
    dst = DynamicSparseTraining(method="rigl", sparsity=0.8, distribution="uniform", update_interval=2,
                                stop_step=1.0, allowed_regions={"net.0.weight": region}, summary=False)
    trainer(tmp_path, [dst, ContractSpy(dst)], max_steps=12).fit(TinyNet())
    assert not (dst.masks["net.0.weight"] & ~region).any()
    assert not (dst.ever_active["net.0.weight"] & ~region).any()


def test_explicit_distribution_mapping(tmp_path):
    seed_everything(0)
    dst = DynamicSparseTraining(method="static", distribution={"net.4.*": 0.0, "*": 0.75}, summary=False)
    trainer(tmp_path, [dst], max_steps=2).fit(TinyNet())
    assert dst.densities == {"net.0.weight": 0.25, "net.2.weight": 0.25, "net.4.weight": 1.0}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sparsity": 1.0}, r"`sparsity` must be a number in \[0, 1\), got 1.0"),
        ({"sparsity": -0.1}, r"`sparsity` must be a number in \[0, 1\)"),
        ({"method": "prune"}, r"`method` must be one of \('static', 'set', 'rigl', 'mest', 'granet', 'dsff', 'slak', 'gmp'\), got 'prune'"),
        ({"distribution": "normal"}, r"`distribution` must be one of \('uniform', 'er', 'erk', 'snip'\)"),
        ({"update_interval": 0}, r"`update_interval` must be an integer >= 1, got 0"),
        ({"drop_fraction": 1.5}, r"`drop_fraction` must be in \[0, 1\]"),
        ({"drop_schedule": "exp"}, r"`drop_schedule` must be one of"),
        ({"grow": "best"}, r"`grow` must be one of \('random', 'gradient', 'momentum'\)"),
        ({"granularity": "row"}, r"`granularity` must be one of"),
        ({"stop_step": 1.5}, r"`stop_step` as a float"),
        ({"method": "granet", "sparsity": 0.5, "initial_sparsity": 0.8}, r"`initial_sparsity` must be in"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynamicSparseTraining(**kwargs)


class NormOnlyNet(TinyNet):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.LayerNorm(16), torch.nn.Flatten())

    def training_step(self, batch, batch_idx):
        return self(batch[0]).pow(2).mean()


@pytest.mark.parametrize(
    ("kwargs", "model", "match"),
    [
        ({"include": ["encoder.*"]}, TinyNet, r"`include` pattern 'encoder.\*' matches no parameter"),
        ({"include": ["*.bias"], "exclude": ["*"]}, TinyNet, "no sparsifiable parameter"),
        ({}, NormOnlyNet, "NormOnlyNet has no sparsifiable parameter"),
    ],
)
def test_model_dependent_errors_come_before_training(tmp_path, kwargs, model, match):
    dst = DynamicSparseTraining(**kwargs)
    spy = ContractSpy(dst)
    t = trainer(tmp_path, [dst, spy], max_steps=4)
    with pytest.raises(ValueError, match=match):
        t.fit(model())
    assert spy.checked_steps == 0 and t.global_step == 0


def test_summary_table_lists_every_layer(tmp_path, capsys):
    seed_everything(0)
    dst = DynamicSparseTraining(method="rigl", sparsity=0.8, update_interval=4)
    trainer(tmp_path, [dst], max_steps=4).fit(TinyNet())
    out = capsys.readouterr().out
    assert "Sparsity after training (rigl)" in out
    for name in dst.masks:
        assert name in out
