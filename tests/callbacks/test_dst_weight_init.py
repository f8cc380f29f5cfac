"""`DynamicSparseTraining(weight_init=...)`: sparsity-aware init when the first masks are drawn."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import TinyNet
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_sparse.callbacks import DynamicSparseTraining


class Snapshot(Callback):
    """Weights as training starts (after DST drew its masks)."""

    def on_train_start(self, trainer, pl_module):
        self.weights = {n: p.detach().clone() for n, p in pl_module.named_parameters()}


def _start(tmp_path, weight_init, **kwargs):
    seed_everything(0)
    model = TinyNet(hidden=64)
    initial = copy.deepcopy(model.state_dict())
    dst = DynamicSparseTraining(method="static", sparsity=0.9, distribution="uniform", weight_init=weight_init,
                                summary=False, **kwargs)
    snap = Snapshot()
    Trainer(default_root_dir=tmp_path, callbacks=[dst, snap], max_steps=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu").fit(model)
    return initial, dst, snap.weights


def test_keep_and_rescale(tmp_path):
    initial, dst, kept = _start(tmp_path / "keep", "keep")
    _, dst2, rescaled = _start(tmp_path / "rescale", "rescale")
    for name, mask in dst.masks.items():
        assert torch.equal(mask, dst2.masks[name])  # the init does not change the masks
        assert torch.equal(kept[name], initial[name] * mask)
        k = mask.sum(1, keepdim=True).clamp(min=1).float()
        torch.testing.assert_close(rescaled[name], initial[name] * mask * (mask.shape[1] / k).sqrt())


def test_he_scales_by_actual_fan_in(tmp_path):
    _, dst, weights = _start(tmp_path, "he")
    w, mask = weights["net.2.weight"], dst.masks["net.2.weight"]  # 64 x 64 at 10%: ~6 inputs per unit
    assert torch.all(w[~mask] == 0) and torch.all(w[mask] != 0)
    assert w.pow(2).sum(1).mean().item() == pytest.approx(2.0, rel=0.35)  # dense He at fan-in 64: 2.0 too
    assert w[mask].std().item() > 2 * (2 / 64) ** 0.5  # much wider than dense He at fan-in 64


def test_init_is_not_applied_on_resume(tmp_path):
    seed_everything(0)
    dst = DynamicSparseTraining(method="set", sparsity=0.8, update_interval=2, weight_init="he", summary=False)
    ckpt = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=4, save_top_k=-1)
    kwargs = dict(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    Trainer(default_root_dir=tmp_path, callbacks=[dst, ckpt], max_steps=4, **kwargs).fit(TinyNet())
    path = next(tmp_path.glob("*step=4*.ckpt"))
    saved = torch.load(path, weights_only=False)["state_dict"]
    snap = Snapshot()
    dst2 = DynamicSparseTraining(method="set", sparsity=0.8, update_interval=2, weight_init="he", summary=False)
    Trainer(default_root_dir=tmp_path / "r", callbacks=[dst2, snap], max_steps=5, enable_checkpointing=False,
            **kwargs).fit(TinyNet(), ckpt_path=str(path))
    for name in dst2.masks:
        assert torch.equal(snap.weights[name], saved[name])


def test_bad_weight_init():
    match = r"`weight_init` must be one of \('keep', 'rescale', 'he', 'xavier'\), got 'glorot'"
    with pytest.raises(ValueError, match=match):
        DynamicSparseTraining(weight_init="glorot")
