"""SLaK and ConvNeXt: CIFAR forward/backward, published sizes and MACs (meta device), blocks, merge, DST."""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_sparse.callbacks import DynamicSparseTraining
from lightning_sparse.models import ConvNeXt, SLaK, conv_linear_flops, cost_report, create_model
from lightning_sparse.models.layers import DropPath, LargeKernelConv
from lightning_sparse.models.slak import ConvNeXtBlock
from lightning_sparse.tasks import ImageClassifier

TINY = {"depths": (1, 1, 1), "dims": (8, 16, 16)}  # three stages, as the CIFAR builders


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):  # no memory, no initialisation cost: 158 M parameters in well under a second
        return create_model(name, **kwargs) if isinstance(name, str) else name(**kwargs)


def count(model: nn.Module, weights_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if not weights_only or p.dim() > 1)


@pytest.mark.parametrize("name", ["slak_cifar", "convnext_cifar"])
def test_cifar_variants_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, **TINY)
    assert model.example_input_size == (3, 32, 32)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    kernels = [m.kernel_size for m in model.modules() if isinstance(m, LargeKernelConv)]
    assert kernels == ([15, 13, 7] if name == "slak_cifar" else [7, 7, 7])
    assert model.downsample_layers[0][0].stride == (2, 2)  # 32 -> 16: stages at 16, 8, 4


def test_cifar_defaults():
    slak, convnext = create_model("slak_cifar"), create_model("convnext_cifar")
    assert slak.dims == (83, 166, 332) and convnext.dims == (64, 128, 256)  # int(1.3 * w)
    assert (count(slak), count(convnext)) == (4_592_317, 2_675_146)  # the module docstring's table
    x = torch.randn(1, 3, 32, 32)
    assert slak.eval()(x).shape == (1, 10)


# Published: ConvNeXt (arXiv:2201.03545, Table 1 / official README) 28.6 / 50.2 / 88.6 M parameters;
# SLaK README 30 / 55 / 95 M non-zero parameters at 40% sparsity. Exact counts pin the docstring table.
@pytest.mark.parametrize(
    "name, kwargs, exact",
    [
        ("convnext_tiny", {}, 28_589_128),
        (ConvNeXt, {"depths": (3, 3, 27, 3)}, 50_223_688),
        (ConvNeXt, {"depths": (3, 3, 27, 3), "dims": (128, 256, 512, 1024)}, 88_591_464),
        ("slak_tiny", {}, 50_703_838),
        ("slak_small", {}, 91_131_820),
        ("slak_base", {}, 157_950_792),
    ],
)
def test_parameter_counts(name, kwargs, exact):
    model = meta_model(name, num_classes=1000, **kwargs)
    assert count(model) == exact


@pytest.mark.parametrize(
    "name, dense, nonzero_40",
    [("slak_tiny", 50.7e6, 30e6), ("slak_small", 91.1e6, 55e6), ("slak_base", 158.0e6, 95e6)],
)
def test_slak_sizes_match_the_published_ones(name, dense, nonzero_40):
    """Dense within 0.5%; at 40% sparsity of every conv and linear weight, non-zeros within 0.5 M of the
    README's (rounded to 1 M; SLaK's SNIP layer densities are not exactly uniform)."""
    model = meta_model(name, num_classes=1000)
    assert count(model) == pytest.approx(dense, rel=0.005)
    weights = count(model, weights_only=True)
    nonzero = 0.6 * weights + (count(model) - weights)  # biases, norms, layer scales stay dense
    assert abs(nonzero - nonzero_40) < 0.5e6


def test_slak_widths_and_kernels_are_the_papers():
    model = meta_model("slak_tiny")
    assert model.dims == (124, 249, 499, 998) and meta_model("slak_base").dims == (166, 332, 665, 1331)
    layers = [m for m in model.modules() if isinstance(m, LargeKernelConv)]
    assert len(layers) == 18 and all(m.decomposed and m.bn and m.small_kernel == 5 for m in layers)
    assert sorted({m.kernel_size for m in layers}) == [13, 47, 49, 51]
    assert model.stages[0][0].dw.lora1[0].kernel_size == (51, 5)
    assert model.stages[3][0].dw.lora2[0].kernel_size == (5, 13)
    convnext = meta_model("convnext_tiny")
    dw = convnext.stages[0][0].dw
    assert [tuple(m.kernel_size) for m in dw.modules() if isinstance(m, nn.Conv2d)] == [(7, 7)]
    assert dw.lkb_origin[0].bias is not None and not any(isinstance(m, nn.BatchNorm2d) for m in convnext.modules())


# Published MACs ("FLOPs") at 224x224: ConvNeXt-T 4.5 G (dense); SLaK-T/S/B 5.0 / 9.8 / 17.1 G at 40% sparsity.
@pytest.mark.parametrize(
    "name, density, published, rel",
    [
        ("convnext_tiny", 1.0, 4.5e9, 0.012),  # rounded to 0.1 G
        ("slak_tiny", 0.6, 5.0e9, 0.05),  # uniform 40% instead of SLaK's SNIP densities: 5.22 G
        ("slak_small", 0.6, 9.8e9, 0.025),
        ("slak_base", 0.6, 17.1e9, 0.01),
    ],
)
def test_macs_at_224_match_the_published_ones(name, density, published, rel):
    model = meta_model(name, num_classes=1000)
    weights = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    # A mask of any shape gives its layer's density: 3 of 5 entries kept is 40% sparsity.
    masks = {f"{n}.weight": torch.tensor([True, True, True, False, False]) for n in weights} if density < 1 else None
    count = conv_linear_flops(model, torch.empty(1, 3, 224, 224, device="meta"), masks)
    assert count.sparse == pytest.approx(published, rel=rel)
    # The large depthwise kernels are counted: H * W * C * kernel taps (groups = C).
    c = model.dims[0]
    first = count.layers["stages.0.0.dw.lora1.0" if name.startswith("slak") else "stages.0.0.dw.lkb_origin.0"][0]
    assert first == 56 * 56 * c * (51 * 5 if name.startswith("slak") else 49)


def test_cost_report_counts_the_depthwise_branches():
    model = create_model("slak_cifar", **TINY)
    report = cost_report(model, torch.randn(1, 3, 32, 32))
    count = conv_linear_flops(model, torch.randn(1, 3, 32, 32))
    assert report.flops == 2 * count.dense and report.params == count_params(model)
    dw = {n: macs for n, (macs, _) in count.layers.items() if ".dw." in n}
    assert dw["stages.0.0.dw.lora1.0"] == 16 * 16 * 10 * 15 * 5  # 16x16 map, int(1.3 * 8) = 10 channels
    assert dw["stages.0.0.dw.small_conv.0"] == 16 * 16 * 10 * 25
    assert len(dw) == 9  # three blocks, three branches each


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_stochastic_depth_and_layer_scale():
    model = create_model("slak_cifar", drop_path_rate=0.3, depths=(1, 1, 2), dims=(8, 8, 8))
    blocks = [b for stage in model.stages for b in stage]
    assert isinstance(blocks[0].drop_path, nn.Identity)  # rate 0 for the first block
    assert [b.drop_path.drop_prob for b in blocks[1:]] == pytest.approx([0.1, 0.2, 0.3])
    assert all(isinstance(b.drop_path, DropPath) for b in blocks[1:])
    assert all(torch.equal(b.gamma, torch.full((b.gamma.numel(),), 1e-6)) for b in blocks)
    assert all(b.gamma is None for stage in create_model("slak_cifar", layer_scale_init_value=0.0, **TINY).stages
               for b in stage)
    block = ConvNeXtBlock(4, 5, 3, decomposed=True, bn=True, drop_path=1.0, layer_scale_init_value=1.0)
    x = torch.randn(3, 4, 6, 6)
    assert torch.equal(block.train()(x), x)  # every sample's branch dropped
    assert not torch.allclose(block.eval()(x), x)  # kept in eval mode, scaled by gamma = 1


def test_merge_keeps_the_eval_output_of_the_whole_model():
    torch.manual_seed(0)
    model = create_model("slak_cifar", num_classes=4, layer_scale_init_value=1.0, **TINY)
    model.train()(torch.randn(8, 3, 32, 32))  # move the batch-norm statistics away from (0, 1)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    before = model(x)
    assert model.merge() is model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(m.merged for m in model.modules() if isinstance(m, LargeKernelConv))
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "builder, kwargs, match",
    [
        (SLaK, {"depths": (1, 1), "dims": (8,)}, r"`dims` must have one entry per stage \(len\(depths\) = 2\), got"),
        (SLaK, {"depths": (1, 0)}, "`depths` must be a non-empty sequence of positive integers"),
        (SLaK, {"depths": (1,), "dims": (8,), "kernel_sizes": (5,)}, "`small_kernel` must be an integer in"),
        (ConvNeXt, {"width_factor": 0.0}, r"`width_factor` must be a number > 0, got 0.0"),
        (ConvNeXt, {"drop_path_rate": 1.0}, r"`drop_path_rate` must be a number in \[0, 1\), got 1.0"),
        (ConvNeXt, {"stem_stride": 0}, "`stem_stride` must be an integer >= 1, got 0"),
        (ConvNeXt, {"dims": (1, 1, 1, 1), "width_factor": 0.5}, r"`width_factor` \* `dims` must leave every width"),
    ],
)
def test_argument_errors(builder, kwargs, match):
    with pytest.raises(ValueError, match=match):
        builder(**kwargs)


class RecordMasks(Callback):
    """The masks as training starts (after the DST callback built them)."""

    def __init__(self, dst: DynamicSparseTraining):
        self.dst, self.first = dst, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first is None:
            self.first = {n: m.clone() for n, m in self.dst.masks.items()}


def test_set_updates_the_large_kernel_masks_of_a_tiny_slak(tmp_path):
    seed_everything(0)
    task = ImageClassifier("slak_cifar", dict(TINY), num_classes=3, lr=0.05, scheduler="none")
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(6, 3, 32, 32, generator=g), torch.randint(0, 3, (6,), generator=g))
    dst = DynamicSparseTraining(method="set", sparsity=0.4, update_interval=1, summary=False)
    spy = RecordMasks(dst)
    Trainer(default_root_dir=tmp_path, max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, accelerator="cpu", devices=1, callbacks=[dst, spy]).fit(
        task, DataLoader(data, batch_size=2))
    assert dst.num_updates >= 1
    params = dict(task.named_parameters())
    large = [n for n in dst.masks if ".dw.lora" in n]
    assert len(large) == 6  # lora1 and lora2 of three blocks
    assert {n.rsplit(".", 3)[-3] for n in dst.masks if ".dw." in n} == {"lora1", "lora2", "small_conv"}
    for n in large:
        mask = dst.masks[n]
        assert mask.shape == params[n].shape and 0 < mask.float().mean() < 1, n
        assert not params[n][~mask].any(), n  # masked
    assert any(not torch.equal(dst.masks[n], spy.first[n]) for n in large)  # and updated
    assert dst.global_density == pytest.approx(0.6, abs=0.01)
