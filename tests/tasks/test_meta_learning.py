"""MultiObjectiveMetaLearner (EW / MGDA / MOML) and MinimaxEntropyAdaptation (S+T / MME / MOML-MME)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer, seed_everything
from torch.utils.data import DataLoader, Dataset

from lightning_sparse.core.min_norm import min_norm_weights
from lightning_sparse.tasks.meta_learning import MultiObjectiveMetaLearner
from lightning_sparse.tasks.minimax_entropy import MinimaxEntropyAdaptation, adversarial_entropy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import assert_resume_matches_uninterrupted  # noqa: E402

CNN = {"in_channels": 1, "width": 4}
CLASSES = [3, 2]


def _pair(k, n=4, g=None):
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, CLASSES[k], (n,), generator=g)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {s: [_pair(0, g=g), _pair(1, g=g)] for s in ("train", "val", "trval")}


def _mtl(method="moml", **kwargs):
    return MultiObjectiveMetaLearner("small_cnn", CLASSES, task_names=["a", "b"], method=method, hidden_dim=8,
                                     dropout=0.0, backbone_kwargs=CNN, **kwargs)


def test_meta_step_sets_alpha_grad_to_the_mgda_direction_of_the_hypergradients():
    torch.manual_seed(0)
    task = _mtl(inner_lr=0.1)
    batch = _batch()
    out = task.meta_step(batch)
    hyper = out["hypergradients"]
    assert hyper.shape == (2, 2) and hyper.abs().sum() > 0
    expected = min_norm_weights(hyper, "l2")
    assert torch.allclose(out["mgda_weights"], expected)
    assert torch.allclose(task.alpha.grad, (expected[:, None] * hyper).sum(0), atol=1e-7)
    # the hypergradient of each task's validation loss, by hand: the unrolled step redone with autograd
    params = dict(task.net.named_parameters())
    lower = (torch.softmax(task.alpha, 0) * task.task_losses(batch["train"], params)).sum()
    grads = torch.autograd.grad(lower, list(params.values()), create_graph=True)
    fast = {n: p - 0.1 * g for (n, p), g in zip(params.items(), grads)}
    val = task.task_losses(batch["val"], fast)
    by_hand = torch.stack([torch.autograd.grad(val[k], task.alpha, retain_graph=True)[0] for k in range(2)])
    assert torch.allclose(hyper, by_hand, atol=1e-6)
    assert out["min_norm"] >= 0


def test_sum_upper_level_uses_the_plain_sum():
    torch.manual_seed(0)
    task = _mtl(upper_level="sum")
    out = task.meta_step(_batch())
    assert torch.allclose(task.alpha.grad, out["hypergradients"].sum(0), atol=1e-7)


def test_the_look_ahead_leaves_the_model_and_its_batch_norm_alone():
    torch.manual_seed(0)
    task = _mtl()
    before = {k: v.clone() for k, v in task.net.state_dict().items()}
    task.meta_step(_batch())
    for k, v in task.net.state_dict().items():
        assert torch.equal(v, before[k]), k


class _Pairs(Dataset):
    def __len__(self):
        return 12

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        item = lambda k: (torch.randn(1, 8, 8, generator=g) + 0.5 * (i % CLASSES[k]), torch.tensor(i % CLASSES[k]))  # noqa: E731
        return {s: [item(0), item(1)] for s in ("train", "val", "trval")}


class _Eval(Dataset):
    def __init__(self, k):
        self.k = k

    def __len__(self):
        return 6

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(100 + i)
        return torch.randn(1, 8, 8, generator=g), torch.tensor(i % CLASSES[self.k])


def _fit(tmp_path, method, epochs=1, callbacks=(), ckpt_path=None, **kwargs):
    seed_everything(0)
    task = _mtl(method, **kwargs)
    trainer = Trainer(default_root_dir=tmp_path, max_epochs=epochs, logger=False, accelerator="cpu",
                      enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks),
                      enable_checkpointing=bool(callbacks), num_sanity_val_steps=0)
    evals = [DataLoader(_Eval(0), batch_size=3), DataLoader(_Eval(1), batch_size=3)]
    trainer.fit(task, DataLoader(_Pairs(), batch_size=4), evals, ckpt_path=ckpt_path)
    return task, trainer


@pytest.mark.parametrize("method", ["ew", "mgda", "moml"])
def test_tiny_fit_of_each_method_logs_per_task_accuracy_and_weights(tmp_path, method):
    task, trainer = _fit(tmp_path, method)
    logged = trainer.callback_metrics
    assert {"val/acc_a", "val/acc_b", "val/acc", "train/loss", "train/task_weight_a"} <= set(logged)
    assert logged["val/acc"].item() == pytest.approx((logged["val/acc_a"] + logged["val/acc_b"]).item() / 2)
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 3  # batches, whatever the optimizers
    if method == "moml":
        assert not torch.allclose(task.task_weights, torch.full((2,), 0.5))  # alpha moved
        assert {"train/mgda_weight_a", "train/min_norm"} <= set(logged)
    else:
        assert task.alpha is None and torch.equal(task.task_weights, torch.full((2,), 0.5))
    if method == "mgda":
        w = logged["train/mgda_weight_a"].item() + logged["train/mgda_weight_b"].item()
        assert w == pytest.approx(1.0, abs=1e-5)


def test_moml_resume_matches_an_uninterrupted_run(tmp_path):
    assert_resume_matches_uninterrupted(lambda root, **kw: _fit(root, "moml", epochs=2, **kw)[0], tmp_path)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "pcgrad"}, "`method`"), ({"upper_level": "max"}, "`upper_level`"),
    ({"normalization": "l1"}, "`normalization`"), ({"inner_lr": 0.0}, "`inner_lr`"), ({"inner_steps": 0}, "`inner_steps`"),
    ({"task_names": ["a"]}, "`task_names`"), ({"task_names": ["a", "a"]}, "`task_names`"),
])
def test_bad_arguments_are_named(kwargs, match):
    args = {"method": "moml", "task_names": ["a", "b"], **kwargs}
    with pytest.raises(ValueError, match=match):
        MultiObjectiveMetaLearner("small_cnn", CLASSES, hidden_dim=8, backbone_kwargs=CNN, **args)


def test_bad_batches_are_named():
    task = _mtl()
    with pytest.raises(ValueError, match="one \\(x, y\\) pair per task"):
        task.task_losses([_pair(0)])


# ---------------------------------------------------------------------- MME
def _ssda_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = lambda: torch.randn(6, 1, 8, 8, generator=g)  # noqa: E731
    return {"source": x(), "source_label": torch.arange(6) % 3, "target": x(), "target_label": torch.arange(6) % 3,
            "target_unlabeled": x()}


def _mme(method="mme", **kwargs):
    return MinimaxEntropyAdaptation("small_cnn", 3, method=method, hidden_dim=8, backbone_kwargs=CNN, **kwargs)


def test_adversarial_entropy_and_the_reversal():
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    p = F.softmax(logits, 1)
    assert adversarial_entropy(logits, 0.5).item() == pytest.approx(0.5 * (p * torch.log(p + 1e-5)).sum().item())
    torch.manual_seed(0)
    task = _mme()
    x = torch.randn(4, 1, 8, 8)
    plain = torch.autograd.grad(adversarial_entropy(task.net(x)), task.net.embed.weight)[0]
    task.zero_grad()
    loss = adversarial_entropy(task.net(x, reverse=True))
    g_classifier = torch.autograd.grad(loss, task.net.embed.weight, retain_graph=True)[0]
    assert torch.allclose(plain, g_classifier)  # the classifier side is not reversed
    conv = task.net.backbone.features[0][0].weight
    g_rev = torch.autograd.grad(loss, conv)[0]
    g_fwd = torch.autograd.grad(adversarial_entropy(task.net(x)), conv)[0]
    assert torch.allclose(g_rev, -g_fwd, atol=1e-6)  # the backbone's is


def test_moml_mme_objectives_and_weights():
    torch.manual_seed(0)
    task = _mme("moml")
    out = task.moml_losses(_ssda_batch())
    assert out["weights"].shape == (3,) and out["weights"].sum().item() == pytest.approx(1.0, abs=1e-6)
    expected = (out["weights"] * torch.stack([out["source"], out["target"], out["entropy"]])).sum()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    out["loss"].backward()
    assert all(p.grad is not None for p in task.net.parameters())


@pytest.mark.parametrize("method", ["source_target", "mme", "moml"])
def test_tiny_ssda_fit_of_each_method(tmp_path, method):
    seed_everything(0)
    task = _mme(method)
    data = [_ssda_batch(i) for i in range(3)]
    train = DataLoader(data, batch_size=None)
    val = DataLoader([(torch.randn(1, 8, 8), torch.tensor(i % 3)) for i in range(6)], batch_size=3)
    trainer = Trainer(default_root_dir=tmp_path, max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    before = task.net.classifier.weight.detach().clone()
    trainer.fit(task, train, val)
    assert "val/acc" in trainer.callback_metrics
    assert not torch.equal(before, task.net.classifier.weight)
    lr = trainer.optimizers[0].param_groups[1]["lr"]
    assert lr == pytest.approx(0.01 * (1 + 1e-4 * 3) ** -0.75)
    if method == "moml":
        assert "train/mgda_weight_entropy" in trainer.callback_metrics


def test_mme_bad_arguments():
    with pytest.raises(ValueError, match="`method`"):
        _mme("dann")
    with pytest.raises(ValueError, match="`batch`"):
        _mme().moml_losses({"source": torch.zeros(1)})


def test_backbone_checkpoints_load_when_fit_starts(tmp_path):
    from lightning_sparse.tasks import ImageClassifier

    source = _mtl("ew")
    path = tmp_path / "backbone.pt"
    torch.save(source.net.backbone.state_dict(), path)
    for task in (_mtl("moml", backbone_checkpoint=str(path)), _mme(backbone_checkpoint=str(path))):
        assert not torch.equal(task.net.backbone.features[0][0].weight, source.net.backbone.features[0][0].weight)
        task.setup("fit")
        assert torch.equal(task.net.backbone.features[0][0].weight, source.net.backbone.features[0][0].weight)
    clf = ImageClassifier("small_cnn", CNN, num_classes=3, backbone_checkpoint=str(path))
    clf.setup("fit")  # the stripped backbone's tensors load; the classifier stays as initialised
    assert torch.equal(clf.model.features[0][0].weight, source.net.backbone.features[0][0].weight)
    with pytest.raises(FileNotFoundError, match="`backbone_checkpoint`"):
        _mtl("ew", backbone_checkpoint=str(tmp_path / "missing.pt")).setup("fit")
