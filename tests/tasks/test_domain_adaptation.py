"""The DomainAdaptation task: loss composition per setting, inference rules, fits, resume, checkpoints."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything
from torch.utils.data import DataLoader, Dataset

from lightning_sparse.core import instance_weighting as iw
from lightning_sparse.tasks.domain_adaptation import LOSS_PRESETS, DomainAdaptation

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import assert_resume_matches_uninterrupted  # noqa: E402

MLP = {"in_features": 16, "hidden_sizes": [16]}
K = 3  # source classes


class _Pairs(Dataset):
    """Gaussian blobs of K source classes and a shifted target with one private class (label K)."""

    def __init__(self, n: int = 24, seed: int = 0, target_classes: int = K + 1) -> None:
        g = torch.Generator().manual_seed(seed)
        centers = torch.randn(K + 1, 16, generator=g) * 3
        self.ys = torch.arange(n) % K
        self.yt = torch.arange(n) % target_classes
        self.xs = (centers[self.ys] + torch.randn(n, 16, generator=g)).view(n, 1, 4, 4)
        self.xt = (centers[self.yt] + 0.5 + torch.randn(n, 16, generator=g)).view(n, 1, 4, 4)

    def __len__(self) -> int:
        return len(self.ys)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"source": self.xs[i], "source_label": self.ys[i], "target": self.xt[i]}


class _Targets(_Pairs):
    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.xt[i], self.yt[i]


def _task(setting: str = "universal", method: str = "liwuda", **kwargs) -> DomainAdaptation:
    return DomainAdaptation("mlp", MLP, num_classes=K, setting=setting, method=method, bottleneck_dim=8, **kwargs)


def _batch(n: int = 8) -> dict[str, torch.Tensor]:
    return next(iter(DataLoader(_Pairs(n), batch_size=n)))


EXPECTED_TERMS = {
    "closed": {"cls", "class_wot"},
    "partial": {"cls", "sa", "wot", "rank", "align", "iot", "pseudo", "weight_one"},
    "open": {"cls", "sa", "wot", "rank", "align", "iot", "pseudo", "weight_one"},
    "universal": {"cls", "sa", "wot", "rank", "align", "pseudo", "weight_one"},
}


@pytest.mark.parametrize("setting", list(EXPECTED_TERMS))
def test_loss_is_the_ramped_weighted_sum_of_the_terms(setting):
    torch.manual_seed(0)
    task = _task(setting)
    losses = task.compute_losses(_batch(), progress=0.3)
    assert set(losses) - {"loss"} == EXPECTED_TERMS[setting]
    c, ramp = LOSS_PRESETS[setting], iw.ramp(0.3)
    expected = sum(c.get(k, 0.0) * (v if k in ("cls", "pseudo") else ramp * v) for k, v in losses.items() if k != "loss")
    assert losses["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert (task.weight_net is None) == (setting == "closed")
    losses["loss"].backward()
    assert task.net.backbone.fc is not None and task.net.bottleneck.weight.grad.abs().sum() > 0
    if task.weight_net is not None:  # the weight losses train the weight network
        assert task.weight_net.linear.weight.grad.abs().sum() > 0


def test_baselines_and_overrides():
    assert _task("open", "source_only").coefficients == {"cls": 1.0}
    ot = _task("partial", "ot")
    assert ot.coefficients == {"cls": 1.0, "ot": 1.0} and ot.weight_net is None
    losses = ot.compute_losses(_batch(), progress=1.0)
    assert set(losses) == {"loss", "cls", "ot"} and losses["ot"].item() > 0
    assert losses["loss"].item() == pytest.approx((losses["cls"] + iw.ramp(1.0) * losses["ot"]).item(), rel=1e-6)
    assert _task("open", loss_weights={"sa": 0.0, "pseudo": 2}).coefficients["pseudo"] == 2.0
    at_start = _task("universal").compute_losses(_batch(), progress=0.0)  # the ramp is 0: cls and pseudo only
    assert at_start["loss"].item() == pytest.approx((2 * at_start["cls"] + at_start["pseudo"]).item(), rel=1e-6)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"setting": "openset"}, "`setting`"), ({"method": "dann"}, "`method`"), ({"solver": "greedy"}, "`solver`"),
    ({"loss_weights": {"entropy": 1.0}}, "`loss_weights`"), ({"loss_weights": {"sa": -1.0}}, "loss_weights"),
    ({"temperature": 0.0}, "`temperature`"), ({"unknown_threshold": 1.5}, "`unknown_threshold`"),
    ({"transport_mass": 0.0}, "`transport_mass`"), ({"num_classes": 1}, "`num_classes`"),
])
def test_bad_arguments_raise_before_training(kwargs, match):
    args = {"setting": "open", "method": "liwuda", "num_classes": K, **kwargs}
    with pytest.raises(ValueError, match=match):
        DomainAdaptation("mlp", MLP, bottleneck_dim=8, **args)


def test_bad_batches_are_named():
    with pytest.raises(ValueError, match="`batch` must be a dict"):
        _task().compute_losses((torch.zeros(2, 16), torch.zeros(2)), progress=0.0)


def test_unknown_rule_and_shared_classes():
    task = _task("universal")
    x = torch.randn(6, 1, 4, 4)
    with torch.no_grad():
        task.weight_net.linear.bias.fill_(-20.0)  # every weight ~0: all unknown
        assert task.predict(x).tolist() == [K] * 6
        task.weight_net.linear.bias.fill_(20.0)  # every weight ~1: none unknown
        task.class_weights.copy_(torch.tensor([0.9, 0.1, 0.8]))  # class 1 is unshared
        preds = task.predict(x)
    assert (preds != K).all() and (preds != 1).all()
    official = _task("universal", unshared_threshold=0.0)  # the scripts' `< 0` test: everything shared
    official.class_weights.copy_(torch.tensor([0.9, 0.1, 0.8]))
    assert official.shared_classes.all()
    closed = _task("closed")
    closed.class_weights.zero_()  # no weight network: the rule never applies
    assert closed.shared_classes.all() and (closed.predict(x) < K).all()


def _fit(tmp_path, setting, max_epochs=2, ckpt_path=None, callbacks=(), **kwargs):
    seed_everything(0)
    task = _task(setting, **kwargs)
    trainer = Trainer(default_root_dir=tmp_path, max_epochs=max_epochs, logger=False, accelerator="cpu",
                      enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks),
                      enable_checkpointing=bool(callbacks), num_sanity_val_steps=0)
    train = DataLoader(_Pairs(24), batch_size=8)
    val = DataLoader(_Targets(24, target_classes=K if setting in ("closed", "partial") else K + 1), batch_size=12)
    trainer.fit(task, train, val, ckpt_path=ckpt_path)
    return task, trainer


@pytest.mark.parametrize("setting", ["closed", "partial", "open", "universal"])
def test_tiny_fit_in_each_setting_logs_its_scores(tmp_path, setting):
    task, trainer = _fit(tmp_path, setting, max_epochs=1)
    logged = trainer.callback_metrics
    assert "val/score" in logged and "train/loss" in logged
    assert trainer.global_step > 0
    if setting in ("open", "universal"):
        assert {"val/h_score", "val/os_star", "val/unk", "val/weight_unknown"} <= set(logged)
        assert logged["val/score"].item() == pytest.approx(logged["val/h_score"].item())
    else:
        assert logged["val/score"].item() == pytest.approx(logged["val/acc"].item())
    lrs = [group["lr"] for opt in trainer.optimizers for group in opt.param_groups]
    assert lrs[0] < 0.01 * 0.1 and lrs[1] < 0.01  # decayed by (1 + 10 p)^-0.75 per step


def test_class_weights_are_epoch_means_of_the_source_weights(tmp_path):
    task, _ = _fit(tmp_path, "partial", max_epochs=1)
    assert not torch.equal(task.class_weights, torch.ones(K))  # replaced by the epoch's means
    assert ((task.class_weights > 0) & (task.class_weights < 1)).all()
    assert torch.allclose(task.class_weights, task._weight_sums / task._weight_counts)
    assert task._weight_counts.sum().item() == 24  # one epoch of source samples, then reset each epoch
    task2, _ = _fit(tmp_path, "partial", max_epochs=2)
    assert task2._weight_counts.sum().item() == 24 and int(task2._weight_epoch) == 1


def test_resume_matches_an_uninterrupted_run(tmp_path):
    assert_resume_matches_uninterrupted(lambda root, **kw: _fit(root, "universal", max_epochs=2, **kw)[0], tmp_path)


def test_backbone_checkpoint_is_loaded(tmp_path):
    source = DomainAdaptation("mlp", MLP, num_classes=5, bottleneck_dim=8)
    path = tmp_path / "backbone.pt"
    state = {f"features.0.{k}": v for k, v in source.net.backbone.features[0].state_dict().items()}
    torch.save({"state_dict": state}, path)
    task = _task("closed", backbone_checkpoint=str(path))  # loaded when fit starts
    assert not torch.equal(task.net.backbone.features[0].weight, source.net.backbone.features[0].weight)
    task.setup("fit")
    assert torch.equal(task.net.backbone.features[0].weight, source.net.backbone.features[0].weight)
    torch.save({"other.weight": torch.zeros(2)}, tmp_path / "none.pt")
    with pytest.raises(ValueError, match="shares no parameter"):
        _task("closed", backbone_checkpoint=str(tmp_path / "none.pt")).setup("fit")
    missing = _task("closed", backbone_checkpoint=str(tmp_path / "missing.pt"))  # constructs (recipes do)
    missing.setup("validate")  # only fit loads it
    with pytest.raises(FileNotFoundError, match="`backbone_checkpoint`"):
        missing.setup("fit")


def test_entropic_solver_and_partial_mass():
    losses = _task("universal", solver="entropic", transport_mass=0.8).compute_losses(_batch(), progress=0.5)
    assert torch.isfinite(losses["loss"]) and losses["sa"].item() > 0


def test_bf16_mixed_precision_fit(tmp_path):
    seed_everything(0)
    task = _task("universal")
    trainer = Trainer(default_root_dir=tmp_path, max_epochs=1, logger=False, accelerator="cpu", precision="bf16-mixed",
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(task, DataLoader(_Pairs(16), batch_size=8), DataLoader(_Targets(16), batch_size=8))
    assert torch.isfinite(trainer.callback_metrics["train/loss"]) and "val/h_score" in trainer.callback_metrics
