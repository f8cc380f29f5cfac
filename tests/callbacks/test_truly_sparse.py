"""TrulySparse (Nerva, arXiv:2407.17437): truly sparse layers train exactly like the masked model."""

from __future__ import annotations

import pytest
import torch
from helpers import TinyNet
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from lightning_sparse.callbacks import DynamicSparseTraining, TrulySparse
from lightning_sparse.nn import SparseLinear

pytestmark = [
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta"),
    pytest.mark.filterwarnings("ignore:.*dataloader is not resumable"),
    pytest.mark.filterwarnings("ignore:Be aware that when using `ckpt_path`"),
]


class Net(TinyNet):
    """TinyNet plus SGD with Nesterov momentum (the paper's optimizer)."""

    def configure_optimizers(self):
        if self.hparams.optimizer == "nesterov":
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9, nesterov=True,
                                   weight_decay=5e-4)
        return super().configure_optimizers()


class NetWithVal(Net):
    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", nn.functional.cross_entropy(self(x), y))

    def val_dataloader(self):
        return self.train_dataloader()

    def predict_step(self, batch, batch_idx):
        return self(batch[0])


def _sparse_flags(pl_module) -> tuple[bool, ...]:
    return tuple(isinstance(m, SparseLinear) for m in pl_module.modules() if isinstance(m, (nn.Linear, SparseLinear)))


class Spy(Callback):
    """Records which layers are truly sparse in every micro-batch and evaluation batch, and checks
    that the optimizer holds exactly the module's live parameters at every step."""

    def __init__(self):
        self.micro: list[tuple[int, tuple[bool, ...]]] = []
        self.eval: dict[str, set[tuple[bool, ...]]] = {}

    def on_before_backward(self, trainer, pl_module, loss):
        self.micro.append((trainer.global_step, _sparse_flags(pl_module)))

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        in_opt = {id(p) for g in optimizer.param_groups for p in g["params"]}
        assert in_opt == {id(p) for p in pl_module.parameters()}

    def _eval(self, stage, pl_module):
        self.eval.setdefault(stage, set()).add(_sparse_flags(pl_module))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._eval("sanity" if trainer.sanity_checking else "val", pl_module)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._eval("test", pl_module)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._eval("predict", pl_module)


def _trainer(tmp_path, callbacks, **kwargs):
    kwargs.setdefault("max_steps", 12)
    kwargs.setdefault("logger", False)
    kwargs.setdefault("enable_checkpointing", False)
    return Trainer(default_root_dir=tmp_path, callbacks=callbacks, enable_progress_bar=False,
                   enable_model_summary=False, accelerator="cpu", devices=1, **kwargs)


def _fit(tmp_path, truly_sparse, method="static", optimizer="nesterov", model_kwargs=None, ts_kwargs=None,
         dst_kwargs=None, model_cls=Net, **trainer_kwargs):
    seed_everything(0)
    model = model_cls(optimizer=optimizer, **(model_kwargs or {}))
    dst = DynamicSparseTraining(method=method, sparsity=0.8, update_interval=4, seed=3, summary=False,
                                **{"stop_step": 1.0, **(dst_kwargs or {})})
    spy = Spy()
    ts = TrulySparse(**{"max_density": 1.0, **(ts_kwargs or {})}) if truly_sparse else None
    callbacks = [dst] + ([ts] if ts else []) + [spy]
    trainer = _trainer(tmp_path, callbacks, **trainer_kwargs)
    trainer.fit(model)
    return model, dst, ts, spy, trainer


def _assert_same(a, b, atol=1e-5):
    for (name, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(p, q, atol=atol, rtol=1e-4, msg=name)


@pytest.mark.parametrize("optimizer", ["nesterov", "adamw"])
def test_static_masks_train_exactly_like_the_masked_model(tmp_path, optimizer):
    masked, dst, _, _, _ = _fit(tmp_path / "masked", False, optimizer=optimizer)
    sparse, dst_ts, ts, spy, _ = _fit(tmp_path / "sparse", True, optimizer=optimizer)
    assert all(flags == (True, True, True) for _, flags in spy.micro)  # every step ran truly sparse
    assert len(spy.micro) == 12
    assert all(type(m) is nn.Linear for m in sparse.net if not isinstance(m, nn.ReLU))  # dense after fit
    _assert_same(masked, sparse)
    params = dict(sparse.named_parameters())
    for name, mask in dst_ts.masks.items():
        assert torch.equal(mask, dst.masks[name])
        assert torch.all(params[name][~mask] == 0)
    assert dst_ts.held == frozenset()  # everything handed back


def test_registered_mlp_with_inplace_relu(tmp_path):
    """The recipes' model: ImageClassifier("mlp") applies ReLU(inplace=True) to the sparse outputs."""
    from torch.utils.data import DataLoader

    from helpers import make_data
    from lightning_sparse.tasks import ImageClassifier

    def fit(truly_sparse):
        seed_everything(0)
        model = ImageClassifier("mlp", {"in_features": 16, "hidden_sizes": [32, 32]}, num_classes=4, lr=0.05,
                                nesterov=True, scheduler="none")
        dst = DynamicSparseTraining(method="static", sparsity=0.8, weight_init="xavier", summary=False)
        spy = Spy()
        callbacks = [dst] + ([TrulySparse(max_density=0.3)] if truly_sparse else [])
        _trainer(tmp_path, callbacks + [spy], max_steps=6).fit(model, DataLoader(make_data(), batch_size=8))
        return model, spy

    masked, _ = fit(False)
    sparse, spy = fit(True)
    assert [flags for _, flags in spy.micro] == [(True, True, False)] * 6  # ERK densities 0.21, 0.14, 0.63
    _assert_same(masked, sparse)


def _prune(model, density=0.25, seed=0):
    g = torch.Generator().manual_seed(seed)
    masks = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight"):
                masks[name] = torch.rand(p.shape, generator=g) < density
                p.mul_(masks[name])
    return masks


class MaskGrads(Callback):
    """The masked reference without DST: gradients zeroed outside the (fixed) masks."""

    def __init__(self, masks):
        self.masks = masks

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        for name, p in pl_module.named_parameters():
            if name in self.masks:
                p.grad.mul_(self.masks[name])


def test_statically_pruned_model_without_dst(tmp_path):
    seed_everything(0)
    reference, model = Net(optimizer="nesterov"), Net(optimizer="nesterov")
    model.load_state_dict(reference.state_dict())
    masks = _prune(reference)
    _prune(model)
    _trainer(tmp_path / "a", [MaskGrads(masks)]).fit(reference)
    spy = Spy()
    _trainer(tmp_path / "b", [TrulySparse(max_density=0.3), spy]).fit(model)
    assert {flags for _, flags in spy.micro} == {(True, True, True)}
    _assert_same(reference, model)
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert torch.all(params[name][~mask] == 0)


@pytest.mark.parametrize(("method", "accumulate"), [("set", 1), ("rigl", 1), ("rigl", 2), ("granet", 1)])
def test_topology_updates_match_dst_alone(tmp_path, method, accumulate):
    kwargs = dict(method=method, max_steps=13, accumulate_grad_batches=accumulate, model_kwargs={"n": 256})
    masked, dst, _, _, _ = _fit(tmp_path / "masked", False, **kwargs)
    sparse, dst_ts, ts, spy, _ = _fit(tmp_path / "sparse", True, ts_kwargs={"max_density": 0.3}, **kwargs)
    assert dst_ts.num_updates == dst.num_updates == 3  # steps 4, 8, 12
    for name in dst.masks:
        assert torch.equal(dst_ts.masks[name], dst.masks[name]), name
    _assert_same(masked, sparse)
    # dense for every micro-batch of the windows of the update steps (real dense gradients), else
    # sparse where the density is at most 0.3 (ERK at 80% sparsity: 0.21, 0.14, 0.63)
    expected = {step: (True, True, False) for step in range(13)}
    if method == "granet":  # gradual pruning from 50% density: layers become sparse enough on the way
        expected.update({s: (False, False, False) for s in range(4)})
        expected.update({s: (False, True, False) for s in range(5, 8)})
    expected.update({s: (False, False, False) for s in (4, 8, 12)})
    assert spy.micro == [(step, expected[step]) for step in range(13) for _ in range(accumulate)]


def test_checkpoint_is_dense_and_resume_is_exact(tmp_path):
    def run(root, max_steps, ckpt_path=None, crash_at=None):
        seed_everything(123)
        model = Net(optimizer="nesterov")
        dst = DynamicSparseTraining(method="rigl", sparsity=0.7, update_interval=3, seed=7, stop_step=1.0,
                                    summary=False)
        callbacks = [dst, TrulySparse(max_density=0.5)]
        if crash_at:
            callbacks += [Crash(crash_at), ModelCheckpoint(dirpath=root, every_n_train_steps=4, save_top_k=-1)]
        _trainer(root, callbacks, max_steps=max_steps, enable_checkpointing=bool(crash_at), deterministic=True).fit(
            model, ckpt_path=ckpt_path)
        return model, dst

    full, full_dst = run(tmp_path / "full", 32)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "first", 32, crash_at=18)
    path = next((tmp_path / "first").glob("*step=16*.ckpt"))
    ckpt = torch.load(path, weights_only=False)
    # the checkpoint is the plain dense model's: it loads without the callback
    assert not any(k.endswith(("values", "crow_indices", "t_perm")) for k in ckpt["state_dict"])
    plain = Net(optimizer="nesterov")
    plain.load_state_dict(ckpt["state_dict"])
    masks = torch.load(path, weights_only=False)["callbacks"]
    (dst_state,) = [v for k, v in masks.items() if k.startswith("DynamicSparseTraining")]
    from lightning_sparse.core import unpack_mask

    params = list(plain.named_parameters())
    state = ckpt["optimizer_states"][0]["state"]
    for index, (name, p) in enumerate(params):
        buf = state[index]["momentum_buffer"]
        assert buf.shape == p.shape, name  # optimizer state is weight-shaped too
        if name in dst_state["masks"]:
            mask = unpack_mask(dst_state["masks"][name], dst_state["shapes"][name])
            assert torch.all(p[~mask] == 0) and torch.all(buf[~mask] == 0), name
    resumed, resumed_dst = run(tmp_path / "resumed", 32, ckpt_path=str(path))
    assert resumed_dst.num_updates == full_dst.num_updates
    for name in full_dst.masks:
        assert torch.equal(resumed_dst.masks[name], full_dst.masks[name]), name
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


class Crash(Callback):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step:
            raise RuntimeError("simulated crash")


def test_resume_without_dst_uses_the_saved_masks(tmp_path):
    def run(root, max_steps, ckpt_path=None, crash_at=None):
        seed_everything(0)
        model = Net(optimizer="adamw")
        _prune(model)
        ts = TrulySparse(max_density=0.3)
        callbacks = [ts] + ([Crash(crash_at), ModelCheckpoint(dirpath=root, every_n_train_steps=4, save_top_k=-1)]
                            if crash_at else [])
        trainer = _trainer(root, callbacks, max_steps=max_steps, enable_checkpointing=bool(crash_at))
        trainer.fit(model, ckpt_path=ckpt_path)
        return model

    full = run(tmp_path / "full", 12)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path / "first", 12, crash_at=9)
    path = next((tmp_path / "first").glob("*step=8*.ckpt"))
    (state,) = [v for k, v in torch.load(path, weights_only=False)["callbacks"].items() if k.startswith("TrulySparse")]
    assert set(state["masks"]) == {"net.0.weight", "net.2.weight", "net.4.weight"}
    resumed = run(tmp_path / "resumed", 12, ckpt_path=str(path))
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def test_evaluation_runs_sparse_and_the_model_ends_dense(tmp_path):
    model, dst, ts, spy, trainer = _fit(tmp_path, True, ts_kwargs={"max_density": 0.5}, limit_val_batches=2,
                                        val_check_interval=6, num_sanity_val_steps=1, model_cls=NetWithVal)
    val = model.train_dataloader()
    assert spy.eval["val"] == {(True, True, False)}
    assert spy.eval["sanity"] == {(False, False, False)}  # before training starts, the masked model
    assert _sparse_flags(model) == (False, False, False)
    trainer.test(model, dataloaders=val, verbose=False)
    trainer.predict(model, dataloaders=val)
    assert spy.eval["test"] == spy.eval["predict"] == {(True, True, False)}
    assert _sparse_flags(model) == (False, False, False)  # converted back after each


def test_keep_sparse_after_fit_and_memory_metrics(tmp_path):
    model, dst, ts, _, trainer = _fit(tmp_path, True, ts_kwargs={"max_density": 0.3, "keep_sparse_after_fit": True},
                                      max_steps=3)
    assert _sparse_flags(model) == (True, True, False)
    assert set(ts.sparse_layers) == {"net.0.weight", "net.2.weight"}
    metrics = trainer.callback_metrics
    for key in ["param_bytes", "masked_param_bytes", "optimizer_state_bytes", "masked_optimizer_state_bytes",
                "index_bytes", "mask_bytes", "total_bytes", "masked_total_bytes", "layers", "density"]:
        assert f"truly_sparse/{key}" in metrics, key
    assert metrics["truly_sparse/param_bytes"] < metrics["truly_sparse/masked_param_bytes"]
    assert metrics["truly_sparse/layers"] == 2
    x = torch.randn(5, 16)
    assert model(x).shape == (5, 4)
    assert all(not k.endswith("net.0.weight") for k in model.state_dict())


def test_bf16_autocast_and_gradient_accumulation(tmp_path):
    masked, _, _, _, _ = _fit(tmp_path / "a", False, precision="bf16-mixed", accumulate_grad_batches=2)
    sparse, dst, _, spy, _ = _fit(tmp_path / "b", True, precision="bf16-mixed", accumulate_grad_batches=2)
    assert {flags for _, flags in spy.micro} == {(True, True, True)} and len(spy.micro) == 24
    for p in sparse.parameters():
        assert p.dtype == torch.float32 and torch.isfinite(p).all()
    # the sparse layers compute in float32, the masked ones in bfloat16: close, not equal
    _assert_same(masked, sparse, atol=0.05)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_density": 1.5}, r"`max_density` must be a number in \[0, 1\], got 1.5"),
        ({"max_density": -0.1}, r"`max_density` must be a number in \[0, 1\], got -0.1"),
        ({"include": "*.weight"}, r"`include` must be a list of glob patterns"),
        ({"min_weights": -1}, r"`min_weights` must be an integer >= 0, got -1"),
        ({"backend": "mkl"}, r"`backend` must be one of"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrulySparse(**kwargs)


class ConvOnly(Net):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(),
                                 nn.Conv1d(1, 1, 1), nn.Flatten(), nn.AdaptiveAvgPool1d(4))

    def forward(self, x):
        return self.net[:3](x)[:, :4]


@pytest.mark.parametrize(
    ("make", "kwargs", "match"),
    [
        (lambda: Net(), {"include": ["encoder.*"]}, r"`include` pattern 'encoder.\*' matches no nn.Linear weight; "
                                                    r"the weights are: net.0.weight, net.2.weight, net.4.weight"),
        (lambda: Net(), {"exclude": ["*.bias"]}, r"`exclude` pattern '\*.bias' matches no nn.Linear weight"),
        (lambda: Net(), {}, r"found no masked nn.Linear"),  # a dense model and no DST
        (ConvOnly, {}, r"found no nn.Linear layer in ConvOnly"),
        (lambda: Net(), {"min_weights": 10_000}, r"has no candidate layer left"),
    ],
)
def test_model_dependent_errors_come_before_training(tmp_path, make, kwargs, match):
    spy = Spy()
    trainer = _trainer(tmp_path, [TrulySparse(**kwargs), spy], max_steps=2)
    with pytest.raises(ValueError, match=match):
        trainer.fit(make())
    assert spy.micro == [] and trainer.global_step == 0


def test_dst_momentum_growth_is_refused(tmp_path):
    dst = DynamicSparseTraining(method="rigl", grow="momentum", summary=False)
    trainer = _trainer(tmp_path, [dst, TrulySparse()], max_steps=2)
    with pytest.raises(ValueError, match=r"grow='momentum'"):
        trainer.fit(Net())
    assert trainer.global_step == 0


def test_dst_leaves_held_parameters_alone_and_refuses_to_update_them(tmp_path):
    """The DST side of the protocol: `hold` / `release` / `will_update`."""
    dst = DynamicSparseTraining(method="rigl", sparsity=0.8, update_interval=4, summary=False)
    seen = {}

    class Holder(Callback):
        def on_train_start(self, trainer, pl_module):
            seen["due"] = [dst.will_update(s) for s in range(9)]
            dst.hold(["net.0.weight"])
            with torch.no_grad():
                pl_module.net[0].weight.fill_(1.0)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen[trainer.global_step] = bool((pl_module.net[0].weight != 0).all())

    trainer = _trainer(tmp_path, [dst, Holder()], max_steps=8)
    with pytest.raises(RuntimeError, match=r"update is due at step 4, but \['net.0.weight'\] are still held"):
        trainer.fit(Net())
    assert seen["due"] == [s == 4 for s in range(9)]  # RigL stops at 75% of the 8 steps
    assert seen[1] and seen[4]  # no mask applied to the held weight after steps 0 ... 3
    assert dst.held == frozenset({"net.0.weight"})
    dst.release(["net.0.weight"])
    assert dst.held == frozenset()
    with pytest.raises(ValueError, match=r"`names` must be sparsified parameters .*got \['net.1.weight'\]"):
        dst.hold(["net.1.weight"])
