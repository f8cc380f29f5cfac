"""PruningAtInit (SNIP, GraSP, SynFlow, magnitude, random), DST's `distribution="snip"` and GMP."""

from __future__ import annotations

import pytest
import torch
from helpers import TinyConvNet, TinyNet, make_data
from lightning.pytorch import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from lightning_sparse.callbacks import DynamicSparseTraining, PruningAtInit
from lightning_sparse.core import grasp_scores, magnitude_scores, schedule_value, snip_scores, synflow_masks

SPARSE = ["net.0.weight", "net.2.weight", "net.4.weight"]
TOTAL = 16 * 32 + 32 * 32 + 32 * 4  # TinyNet's sparsified weights


def fit(callbacks, model=None, steps=6, tmp_path=None, **kwargs):
    model = model or TinyNet()
    Trainer(default_root_dir=tmp_path, max_steps=steps, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", devices=1,
            callbacks=callbacks, **kwargs).fit(model)
    return model


class Before(Callback):
    """Records the weights at fit start (before any masking) and checks exact zeros after every step."""

    def __init__(self, cb):
        self.cb, self.weights, self.steps = cb, None, 0

    def on_fit_start(self, trainer, pl_module):
        self.weights = {n: p.detach().clone() for n, p in pl_module.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        params = dict(pl_module.named_parameters())
        for n, m in self.cb.masks.items():
            assert torch.all(params[n][~m] == 0), n
        self.steps += 1


def top_masks(scores, keep):
    flat = torch.cat([scores[n].flatten() for n in SPARSE])
    threshold = flat.topk(keep).values.min()
    return {n: scores[n] >= threshold for n in SPARSE}


def reference_scores(method, model, batches):
    params = {n: p for n, p in model.named_parameters() if n in SPARSE}
    closures = [lambda b=b: nn.functional.cross_entropy(model(b[0]), b[1]) for b in batches]
    if method == "snip":
        return snip_scores(params, closures)
    if method == "grasp":
        return grasp_scores(params, closures)
    return magnitude_scores(params)


@pytest.mark.parametrize(("method", "num_batches"), [("snip", 1), ("snip", 2), ("grasp", 1), ("grasp", 2),
                                                    ("magnitude", 1)])
def test_kept_masks_are_the_top_k_of_the_score(method, num_batches):
    seed_everything(0)
    cb = PruningAtInit(method, sparsity=0.8, num_batches=num_batches, summary=False)
    spy = Before(cb)
    fit([cb, spy])
    # the same scores by hand: a fresh copy of the initial network, the loader's first batches
    seed_everything(0)
    ref = TinyNet()
    ref.load_state_dict(spy.weights)
    data = make_data(64, 16, 4)
    batches = [(data.tensors[0][8 * i:8 * i + 8], data.tensors[1][8 * i:8 * i + 8]) for i in range(num_batches)]
    scores = reference_scores(method, ref, batches)
    keep = round(0.2 * sum(scores[n].numel() for n in SPARSE))
    expected = top_masks(scores, keep)
    for n in SPARSE:
        assert torch.equal(cb.masks[n].cpu(), expected[n]), n
    assert sum(int(m.sum()) for m in cb.masks.values()) == keep
    assert spy.steps == 6


def test_synflow_masks_equal_the_core_loop_and_need_no_data():
    seed_everything(0)
    cb = PruningAtInit("synflow", sparsity=0.9, iterations=10, summary=False)
    spy = Before(cb)
    fit([cb, spy])
    ref = TinyNet()
    ref.load_state_dict(spy.weights)
    params = {n: p for n, p in ref.named_parameters() if n in SPARSE}
    expected = synflow_masks(ref, params, 0.1, (16,), iterations=10)
    agree = sum(int((cb.masks[n].cpu() == expected[n]).sum()) for n in SPARSE)
    total = sum(m.numel() for m in expected.values())
    assert agree / total > 0.99  # ties may break differently: the callback's own generator
    assert sum(int(m.sum()) for m in cb.masks.values()) == sum(int(m.sum()) for m in expected.values())


def test_layer_scope_keeps_the_distributions_counts():
    seed_everything(0)
    cb = PruningAtInit("snip", sparsity=0.75, scope="layer", distribution="erk", summary=False)
    fit([cb])
    assert cb.active_counts == cb.target_counts
    dst = DynamicSparseTraining("static", sparsity=0.75, distribution="erk", summary=False)
    fit([dst])
    assert cb.target_counts == dst.target_counts
    assert any(not torch.equal(cb.masks[n], dst.masks[n]) for n in SPARSE)


def test_kernel_granularity_ranks_kernels_and_keeps_the_element_budget():
    seed_everything(0)
    cb = PruningAtInit("snip", sparsity=0.8, granularity="kernel", summary=False)
    spy = Before(cb)
    fit([cb, spy], TinyConvNet())
    elements = sum(int(m.sum()) for m in cb.masks.values())
    total = sum(t.numel for t in cb.targets.values())
    assert 0 <= 0.2 * total - elements < 9  # within one kernel below the target
    for n, m in cb.masks.items():  # whole kernels in or out
        if m.dim() == 4:
            assert torch.equal(m.flatten(2).any(-1), m.flatten(2).all(-1)), n
    assert all(0 < d < 1 for d in cb.densities.values())  # kernels and linear weights ranked together


def test_dst_snip_distribution_keeps_snips_layer_counts_at_random_positions(tmp_path):
    seed_everything(0)
    pai = PruningAtInit("snip", sparsity=0.8, summary=False)
    fit([pai])
    seed_everything(0)
    dst = DynamicSparseTraining("static", sparsity=0.8, distribution="snip", summary=False)
    fit([dst])
    assert dst.active_counts == pai.active_counts == dst.target_counts
    overlap = sum(int((dst.masks[n] & pai.masks[n]).sum()) for n in SPARSE)
    assert overlap < 0.6 * sum(int(m.sum()) for m in pai.masks.values())  # positions drawn, not kept


def test_scoring_happens_once_and_resume_restores_masks_and_counts(tmp_path):
    def run(path, steps, ckpt=None, save=None, **kw):
        seed_everything(1)
        cb = DynamicSparseTraining("set", sparsity=0.8, distribution="snip", update_interval=3, summary=False, seed=3)
        callbacks = [cb] + ([ModelCheckpoint(dirpath=path, every_n_train_steps=save, save_top_k=-1)] if save else [])
        model = TinyNet()
        Trainer(default_root_dir=path, max_steps=steps, logger=False, enable_checkpointing=bool(save),
                enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", deterministic=True,
                callbacks=callbacks).fit(model, ckpt_path=ckpt)
        return model, cb

    full_model, full = run(tmp_path / "full", 16)
    run(tmp_path / "first", 8, save=8)
    ckpt = next((tmp_path / "first").glob("*step=8*.ckpt"))
    model, resumed = run(tmp_path / "resumed", 16, ckpt=str(ckpt))
    assert resumed.target_counts == full.target_counts
    for n in full.masks:
        assert torch.equal(resumed.masks[n], full.masks[n]), n
    for (n, a), b in zip(full_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), n


@pytest.mark.parametrize("method", ["snip", "synflow"])
def test_pruning_at_init_resumes_exactly(tmp_path, method):
    def run(path, steps, ckpt=None, save=None):
        seed_everything(2)
        cb = PruningAtInit(method, sparsity=0.8, iterations=5, summary=False)
        callbacks = [cb] + ([ModelCheckpoint(dirpath=path, every_n_train_steps=save, save_top_k=-1)] if save else [])
        model = TinyNet()
        Trainer(default_root_dir=path, max_steps=steps, logger=False, enable_checkpointing=bool(save),
                enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", deterministic=True,
                callbacks=callbacks).fit(model, ckpt_path=ckpt)
        return model, cb

    full_model, full = run(tmp_path / "full", 16)
    run(tmp_path / "first", 8, save=8)
    model, resumed = run(tmp_path / "resumed", 16, ckpt=str(next((tmp_path / "first").glob("*step=8*.ckpt"))))
    for n in full.masks:
        assert torch.equal(resumed.masks[n], full.masks[n]), n
    for (n, a), b in zip(full_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), n


def test_gradient_accumulation_and_mixed_precision_keep_the_contract():
    seed_everything(0)
    cb = PruningAtInit("grasp", sparsity=0.7, summary=False)
    spy = Before(cb)
    fit([cb, spy], steps=4, accumulate_grad_batches=2, precision="bf16-mixed")
    assert spy.steps == 8 and sum(int(m.sum()) for m in cb.masks.values()) == round(0.3 * TOTAL)


class TwoOptimizers(TinyNet):
    def __init__(self, with_loss=True):
        super().__init__()
        self.automatic_optimization = False
        self.with_loss = with_loss

    def saliency_loss(self, batch):
        return nn.functional.cross_entropy(self(batch[0]), batch[1])

    def training_step(self, batch, batch_idx):
        a, b = self.optimizers()
        loss = nn.functional.cross_entropy(self(batch[0]), batch[1])
        for opt in (a, b):
            opt.zero_grad()
        self.manual_backward(loss)
        a.step()
        b.step()

    def configure_optimizers(self):
        first = list(self.net[0].parameters())
        rest = [p for p in self.parameters() if all(p is not q for q in first)]
        return torch.optim.SGD(first, lr=0.1), torch.optim.Adam(rest, lr=1e-2)


def test_manual_optimization_with_two_optimizers_uses_saliency_loss():
    seed_everything(0)
    cb = PruningAtInit("snip", sparsity=0.8, summary=False)
    spy = Before(cb)
    fit([cb, spy], TwoOptimizers(), steps=8)
    assert spy.steps == 4 and sum(int(m.sum()) for m in cb.masks.values()) == round(0.2 * TOTAL)


def test_manual_optimization_without_saliency_loss_fails_before_training():
    model = TwoOptimizers()
    model.saliency_loss = None
    with pytest.raises(ValueError, match="saliency_loss"):
        fit([PruningAtInit("snip", sparsity=0.8, summary=False)], model)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "snipp"}, "`method` must be one of"),
    ({"scope": "local"}, "`scope` must be one of"),
    ({"num_batches": 0}, "`num_batches`"),
    ({"iterations": 0}, "`iterations`"),
    ({"input_shape": (0, 3)}, "`input_shape`"),
    ({"method": "synflow", "scope": "layer", "distribution": "erk"}, "distribution='uniform'"),
    ({"distribution": "snip"}, "`distribution`"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PruningAtInit(**kwargs)


def test_dst_snip_distribution_refuses_gradual_methods():
    with pytest.raises(ValueError, match="distribution='snip'"):
        DynamicSparseTraining("granet", distribution="snip")


# ---------------------------------------------------------------------- GMP
class Densities(Callback):
    def __init__(self, dst):
        self.dst, self.seen = dst, {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen[trainer.global_step] = self.dst.global_density


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_gmp_density_follows_the_cubic_schedule_at_every_update(scope):
    seed_everything(0)
    dst = DynamicSparseTraining("gmp", sparsity=0.9, update_interval=2, start_step=2, prune_end_step=14,
                                prune_scope=scope, summary=False)
    spy = Densities(dst)
    fit([dst, spy], steps=20)
    total = TOTAL
    for step in range(1, 21):  # the density after the step taken at `step - 1`
        update = max(u for u in [0] + list(range(4, 15, 2)) if u <= step - 1) if step - 1 >= 4 else 0
        target = 0.0 if update == 0 else schedule_value("cubic", update, 2, 14, 0.0, 0.9)
        if scope == "global":
            assert spy.seen[step] * total == pytest.approx(round((1 - target) * total), abs=0.5), step
        else:
            assert spy.seen[step] == pytest.approx(1 - target, abs=2 / 128), step
    assert dst.global_density == pytest.approx(0.1, abs=1e-3)
    assert dst.num_updates == 6


def test_a_layer_left_dense_never_changes_under_slak_updates():
    """SLaK leaves layers that SNIP makes dense unmasked: a full layer's prune-and-grow regrows what it dropped."""
    seed_everything(0)
    dst = DynamicSparseTraining("slak", sparsity=0.5, distribution={"net.0.weight": 0.0, "net.*": 0.7},
                                update_interval=2, summary=False)
    before = {}

    class Spy(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 1:
                before.update({n: m.clone() for n, m in dst.masks.items()})

    fit([dst, Spy()], steps=10)
    assert dst.num_updates >= 3
    assert bool(dst.masks["net.0.weight"].all())
    assert not torch.equal(before["net.2.weight"], dst.masks["net.2.weight"])  # the sparse layers did move
