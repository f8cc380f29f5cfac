"""The MSRS callback: its mechanism against autograd, both transitions, the sparse mode's
contract, exact resume on both sides of the transition, accumulation, the grad scaler, manual
optimization with two optimizers and argument checks (DDP: test_msrs_ddp.py)."""

from __future__ import annotations

import pytest
import torch
from helpers import ResumableNet, TinyConvNet, TinyNet, TwoOptimizerNet, make_data
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn
from torch.func import functional_call

from lightning_sparse.callbacks import MSRS, DynamicSparseTraining
from lightning_sparse.core.mask_regularization import soft_mask

WEIGHTS = ("net.0.weight", "net.2.weight", "net.4.weight")


def trainer(tmp_path, callbacks, **kwargs):
    kwargs.setdefault("enable_checkpointing", False)
    return Trainer(default_root_dir=tmp_path, callbacks=callbacks, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, accelerator="cpu", devices=1, **kwargs)


class Invariant(Callback):
    """After every batch of the mask phase: parameter == raw * soft mask (the effective weight)."""

    def __init__(self, msrs):
        self.msrs, self.checked = msrs, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.msrs.phase != "mask":
            return
        params = dict(pl_module.named_parameters())
        raw, logits = self.msrs.raw_weights, self.msrs.logits
        for n in self.msrs.sparse_names:
            mask = torch.sigmoid(self.msrs.temperature * logits[n]) * self.msrs.scale
            expected = raw[n] * self.msrs.targets[n].expand(mask)
            assert torch.allclose(params[n], expected, atol=1e-7), n
        self.checked += 1


# ---------------------------------------------------------------------------------- the mechanism
def reference_run(model: TinyNet, steps: int, temperature: float, penalty: float, scale: bool, s0: float = -0.01):
    """The mask phase written with autograd: effective weights w * m(s), penalty in the loss, one
    SGD for the weights (the task's) and one for the logits (momentum 0.9, same lr, no decay)."""
    w = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters()}
    s = {n: torch.full_like(w[n], s0, requires_grad=True) for n in WEIGHTS}
    opt_w = torch.optim.SGD(list(w.values()), lr=model.hparams.lr, momentum=0.9, weight_decay=5e-4)
    opt_s = torch.optim.SGD(list(s.values()), lr=model.hparams.lr, momentum=0.9)
    loader = model.train_dataloader()
    for step, (x, y) in enumerate(loader):
        if step == steps:
            break
        masks = {n: soft_mask(s[n], temperature, s0) if scale else torch.sigmoid(temperature * s[n]) for n in WEIGHTS}
        eff = {n: w[n] * masks[n] if n in masks else w[n] for n in w}
        loss = nn.functional.cross_entropy(functional_call(model, eff, (x,)), y)
        loss = loss + penalty * sum(m.sum() for m in masks.values())
        opt_w.zero_grad()
        opt_s.zero_grad()
        loss.backward()
        opt_w.step()
        opt_s.step()
    return {n: t.detach() for n, t in w.items()}, {n: t.detach() for n, t in s.items()}


@pytest.mark.parametrize("scale", [False, True])
def test_mask_phase_equals_the_autograd_formulation(tmp_path, scale):
    seed_everything(0)
    model = TinyNet()
    ref_model = TinyNet()
    ref_model.load_state_dict(model.state_dict())
    ref_w, ref_s = reference_run(ref_model, steps=6, temperature=3.0, penalty=1e-3, scale=scale)
    msrs = MSRS(mask_epochs=50, initial_temperature=3.0, penalty=1e-3, scale_mask=scale, summary=False)
    spy = Invariant(msrs)
    trainer(tmp_path, [msrs, spy], max_steps=6).fit(model)  # 8 batches an epoch: one temperature
    assert msrs.phase == "mask" and spy.checked == 6
    raw, logits = msrs.raw_weights, msrs.logits
    for n in WEIGHTS:
        assert torch.allclose(raw[n], ref_w[n], atol=1e-6), n
        assert torch.allclose(logits[n], ref_s[n], atol=1e-6), n
        assert not torch.allclose(logits[n], torch.full_like(logits[n], -0.01))  # the logits learnt
    params = dict(model.named_parameters())
    for n in ("net.0.bias", "net.4.bias"):
        assert torch.allclose(params[n], ref_w[n], atol=1e-6), n


def test_model_checkpoints_stay_plain_and_compute_what_training_computes(tmp_path):
    seed_everything(0)
    model = TinyNet()
    msrs = MSRS(mask_epochs=50, initial_temperature=5.0, summary=False)
    trainer(tmp_path, [msrs], max_steps=3).fit(model)
    plain = TinyNet()
    plain.load_state_dict(model.state_dict())  # same keys: no extra parameters or buffers
    x = make_data(8).tensors[0]
    with torch.no_grad():
        masked = functional_call(TinyNet(), {**dict(model.named_parameters()),
                                             **{n: msrs.raw_weights[n] * torch.sigmoid(msrs.temperature * msrs.logits[n])
                                                for n in WEIGHTS}}, (x,))
        assert torch.allclose(plain(x), masked, atol=1e-6)


# ---------------------------------------------------------------------------------- transitions
class SparseSpy(Callback):
    """After the transition: zeros outside the mask after every step, no gradient and no
    optimizer state there (placed after the MSRS callback)."""

    def __init__(self, msrs):
        self.msrs, self.checked = msrs, 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if self.msrs.phase != "sparse":
            return
        params = dict(pl_module.named_parameters())
        owned = {id(p) for g in optimizer.param_groups for p in g["params"]}
        for n, m in self.msrs.masks.items():
            if id(params[n]) in owned:
                assert torch.all(params[n].grad[~m] == 0), n

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.msrs.phase != "sparse":
            return
        params = dict(pl_module.named_parameters())
        opt = trainer.optimizers[0]
        for n, m in self.msrs.masks.items():
            assert torch.all(params[n][~m] == 0), n
            for key, state in opt.state[params[n]].items():
                if torch.is_tensor(state) and state.shape == m.shape:
                    assert torch.all(state[~m] == 0), (n, key)
        self.checked += 1


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_sparse_mode_keeps_exact_zeros_after_the_transition(tmp_path, optimizer):
    seed_everything(0)
    model = TinyNet(optimizer=optimizer, lr=0.05)
    msrs = MSRS(mode="sparse", sparsity=0.6, mask_steps=8, mask_lr=1.0, summary=False)
    spy = SparseSpy(msrs)
    trainer(tmp_path, [msrs, Invariant(msrs), spy], max_steps=20).fit(model)
    assert msrs.phase == "sparse" and msrs.transition_step == 8
    assert spy.checked == 13  # the batch that ended the mask phase, then 12 more
    assert msrs.global_density == pytest.approx(0.4, abs=1e-3)  # global top-k at exactly 60% sparsity
    masks = msrs.masks
    assert torch.equal(torch.cat([masks[n].flatten() for n in WEIGHTS]),
                       torch.cat([msrs.hard_masks[n].flatten() for n in WEIGHTS]))
    assert not msrs.logits and not msrs.raw_weights  # the mask phase's state is released


def test_dense_mode_removes_the_mask_and_pruned_weights_regrow(tmp_path):
    seed_everything(0)
    model = TinyNet(optimizer="adamw", lr=0.05)
    msrs = MSRS(mode="dense", sparsity=0.7, mask_steps=6, summary=False)
    zeros = {}

    class AtTransition(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 6:
                zeros.update({n: (p == 0) for n, p in pl_module.named_parameters() if n in WEIGHTS})

    trainer(tmp_path, [msrs, AtTransition()], max_steps=12).fit(model)
    assert msrs.phase == "dense" and msrs.transition_step == 6
    hard = msrs.hard_masks
    for n in WEIGHTS:
        assert torch.equal(zeros[n], ~hard[n]), n  # the binary mask was applied at the transition
    params = dict(model.named_parameters())
    regrown = sum(int((params[n][~hard[n]] != 0).sum()) for n in WEIGHTS)
    assert regrown > 0.25 * sum(int((~hard[n]).sum()) for n in WEIGHTS)
    assert msrs.global_density == 1.0 and not msrs._hooks


def test_continuous_sparsification_hard_mask_without_a_target(tmp_path):
    seed_everything(0)
    msrs = MSRS(mode="sparse", mask_epochs=2, summary=False, mask_lr=5.0, initial_logit=0.0)
    trainer(tmp_path, [msrs], max_epochs=3).fit(TinyNet())
    assert msrs.transition_epoch == 1 and msrs.transition_step == 16  # at the end of the second epoch
    assert 0.0 < msrs.global_density < 1.0  # `s > 0`: whatever the logits learnt


def test_stable_mask_triggers_the_transition_early(tmp_path):
    seed_everything(0)
    msrs = MSRS(mode="sparse", sparsity=0.5, mask_epochs=6, stability_threshold=1.0, patience=1,
                min_mask_fraction=0.5, summary=False)
    trainer(tmp_path, [msrs], max_epochs=6).fit(TinyNet())
    assert msrs.transition_epoch == 2  # the first check allowed: after 3 of 6 epochs
    assert len(msrs.mask_changes) == 3
    assert msrs.temperature == pytest.approx(200 ** (2 / 5))


def test_temperature_follows_continuous_sparsification_per_epoch(tmp_path):
    seen = []

    class Temp(Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            seen.append(msrs.temperature)

    msrs = MSRS(mask_epochs=4, stability_threshold=0.0, summary=False)
    trainer(tmp_path, [msrs, Temp()], max_epochs=5).fit(TinyNet())
    assert seen[:4] == pytest.approx([1.0, 200 ** (1 / 3), 200 ** (2 / 3), 200.0])
    assert msrs.transition_epoch == 3


def test_kernel_granularity_masks_whole_kernels(tmp_path):
    seed_everything(0)
    model = TinyConvNet()
    msrs = MSRS(mode="sparse", sparsity=0.5, mask_steps=4, granularity="kernel", summary=False)
    trainer(tmp_path, [msrs], max_steps=6).fit(model)
    conv = dict(model.named_parameters())["net.3.weight"]
    kept = conv.abs().sum((2, 3)) != 0
    assert torch.equal(kept, msrs.masks["net.3.weight"][:, :, 0, 0])
    assert msrs.hard_masks["net.3.weight"].shape == (8, 8)


# ---------------------------------------------------------------------------------- resume
def _fit(tmp_path, mode, schedule, max_steps, ckpt=None, every=None):
    seed_everything(0)
    model = ResumableNet(optimizer="adamw", lr=0.05)
    kwargs = {"mask_steps": 12} if schedule == "steps" else {"mask_epochs": 2, "stability_threshold": 0.0}
    msrs = MSRS(mode=mode, sparsity=0.5, summary=False, mask_lr=0.5, **kwargs)
    callbacks = [msrs]
    if every:
        callbacks.append(ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=every, save_top_k=-1,
                                         filename="{step}"))
    trainer(tmp_path, callbacks, max_steps=max_steps, enable_checkpointing=bool(every)).fit(model, ckpt_path=ckpt)
    return model, msrs


@pytest.mark.parametrize(("mode", "schedule"), [("sparse", "steps"), ("dense", "epochs")])
def test_resume_is_exact_before_and_after_the_transition(tmp_path, mode, schedule):
    full, full_cb = _fit(tmp_path, mode, schedule, 24, every=5)
    assert full_cb.transition_step in (12, 16)
    for step in (10, 20):  # inside the mask phase, after the transition
        model, cb = _fit(tmp_path / f"r{step}", mode, schedule, 24, ckpt=tmp_path / "ckpt" / f"step={step}.ckpt")
        assert cb.transition_step == full_cb.transition_step
        for n, p in full.state_dict().items():
            assert torch.equal(p, model.state_dict()[n]), (step, n)
        for n, m in full_cb.hard_masks.items():
            assert torch.equal(m, cb.hard_masks[n]), (step, n)
        assert cb.mask_changes == full_cb.mask_changes


def test_resume_refuses_another_mode(tmp_path):
    _fit(tmp_path, "sparse", "steps", 5, every=5)
    seed_everything(0)
    msrs = MSRS(mode="dense", sparsity=0.5, mask_steps=12, summary=False)
    with pytest.raises(ValueError, match="mode='sparse'"):
        trainer(tmp_path, [msrs], max_steps=8).fit(ResumableNet(), ckpt_path=tmp_path / "ckpt" / "step=5.ckpt")


# ---------------------------------------------------------------------------------- training modes
def test_gradient_accumulation_equals_the_large_batch(tmp_path):
    runs = {}
    for batch, accumulate in ((8, 1), (4, 2)):
        seed_everything(0)
        model = TinyNet(batch_size=batch)
        msrs = MSRS(mode="sparse", sparsity=0.5, mask_steps=3, summary=False, penalty=1e-3)
        trainer(tmp_path, [msrs], max_steps=5, accumulate_grad_batches=accumulate).fit(model)
        runs[accumulate] = (model, msrs)
    (m1, c1), (m2, c2) = runs[1], runs[2]
    assert c1.transition_step == c2.transition_step == 3
    for n, p in m1.state_dict().items():
        assert torch.allclose(p, m2.state_dict()[n], atol=1e-5), n


def test_a_step_the_grad_scaler_skips_changes_nothing(tmp_path):
    seed_everything(0)
    model = TinyNet(inf_at_step=3)
    msrs = MSRS(mask_steps=50, summary=False)
    snaps = {}

    class Snap(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            snaps[batch_idx] = (msrs.raw_weights, msrs.logits)

    plugin = MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))
    trainer(tmp_path, [msrs, Invariant(msrs), Snap()], max_steps=6, plugins=[plugin]).fit(model)
    raw2, logits2 = snaps[2]
    raw3, logits3 = snaps[3]  # the batch whose loss was infinite
    for n in WEIGHTS:
        assert torch.equal(raw2[n], raw3[n]) and torch.equal(logits2[n], logits3[n]), n
        assert not torch.equal(logits3[n], snaps[5][1][n])  # later steps learn again
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_manual_optimization_with_two_optimizers(tmp_path):
    seed_everything(0)
    model = TwoOptimizerNet()
    msrs = MSRS(mode="sparse", sparsity=0.5, mask_steps=4, summary=False)
    spy = Invariant(msrs)
    logits = {}

    class Grab(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 2:
                logits.update(msrs.logits)

    trainer(tmp_path, [msrs, spy, Grab(), SparseSpy(msrs)], max_steps=16).fit(model)
    assert spy.checked == 3  # batches 0-2 in the mask phase; the 4th ends it
    assert msrs.transition_step == 4  # training steps are batches under manual optimization
    assert all(not torch.allclose(logits[n], torch.full_like(logits[n], -0.01)) for n in WEIGHTS)
    params = dict(model.named_parameters())
    for n, m in msrs.masks.items():
        assert torch.all(params[n][~m] == 0), n


# ---------------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"mode": "frozen"}, "`mode` must be one of"),
    ({"sparsity": 1.0}, "`sparsity` must be a number in"),
    ({"distribution": "best"}, "`distribution` must be one of"),
    ({"check_interval": 5}, "`check_interval` counts training steps"),
    ({"final_temperature": 0.5}, "`final_temperature` must be a number"),
    ({"mask_optimizer": "lion"}, "`mask_optimizer` must be one of"),
    ({"mask_epochs": 0}, "`mask_epochs` must be an integer >= 1"),
    ({"stability_threshold": 2.0}, "`stability_threshold`"),
    ({"granularity": "row"}, "`granularity` must be one of"),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MSRS(**kwargs)


def test_one_owner_per_parameter(tmp_path):
    with pytest.raises(ValueError, match="both claim"):
        trainer(tmp_path, [MSRS(), DynamicSparseTraining(sparsity=0.5)], max_steps=1).fit(TinyNet())
