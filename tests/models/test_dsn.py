"""DSN: shapes, exact variable-length handling, grouped receptive-field regions, DST inside them."""

import pytest
import torch
from lightning.pytorch import Callback, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_sparse.callbacks import DynamicSparseTraining
from lightning_sparse.models import DSN, conv_linear_flops, create_model
from lightning_sparse.tasks import TimeSeriesClassifier


def tiny(**kwargs) -> DSN:
    torch.manual_seed(0)
    defaults = {"in_channels": 1, "num_classes": 3, "width": 4, "depth": 2, "kernel_size": 9}
    return DSN(**{**defaults, **kwargs})


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("length", [1, 7, 128])
def test_shapes_univariate_and_multivariate(in_channels, length):
    model = tiny(in_channels=in_channels)
    assert model(torch.randn(2, in_channels, length)).shape == (2, 3)
    # the official code has no bottleneck in front of a univariate input, one otherwise
    assert isinstance(model.blocks[0].bottleneck, nn.Identity) == (in_channels == 1)
    assert model.blocks[0].conv.weight.shape == (12, in_channels if in_channels == 1 else 4, 9)
    assert model.blocks[1].conv.weight.shape == (12, 4, 9)


def test_paper_configurations():
    ucr, uea = create_model("dsn", num_classes=5), create_model("dsn_uea", in_channels=6, num_classes=5)
    assert ucr.width == 47 and uea.width == 59 and len(ucr.blocks) == 4
    assert ucr.blocks[0].conv.weight.shape == (141, 1, 39)
    assert uea.blocks[2].conv.weight.shape == (177, 59, 39)
    assert ucr.group_kernel_sizes == (13, 26, 39)
    assert ucr.region_fraction == pytest.approx(2 / 3)
    assert ucr.example_input_size == (1, 128) and uea.example_input_size == (6, 128)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernel_size": 10}, "`kernel_size` must be a multiple of `num_groups`"),
        ({"width": 0}, "`width`"),
        ({"depth": 0}, "`depth`"),
        ({"num_groups": 0}, "`num_groups`"),
        ({"padding": "reflect"}, r"`padding` must be one of \['replicate', 'zeros'\], got 'reflect'"),
    ],
)
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DSN(**kwargs)


def test_forward_rejects_bad_input():
    model = tiny()
    with pytest.raises(ValueError, match="`x` must have shape"):
        model(torch.randn(2, 16))
    with pytest.raises(ValueError, match=r"`lengths` must lie in \[1, 16\]"):
        model(torch.randn(2, 1, 16), torch.tensor([16, 17]))
    with pytest.raises(ValueError, match=r"`lengths` must have shape \(2,\)"):
        model(torch.randn(2, 1, 16), torch.tensor([16]))


@pytest.mark.parametrize("padding", ["replicate", "zeros"])
def test_padding_does_not_change_outputs(padding):
    model = tiny(in_channels=2, depth=3, padding=padding)
    model.train()
    for _ in range(3):  # non-trivial running statistics
        model(torch.randn(8, 2, 30))
    model.eval()
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([40, 23, 9, 1])
    x = torch.randn(4, 2, 40, generator=g)
    padded = x.clone()
    for b, n in enumerate(lengths):
        padded[b, :, n:] = 0.0
    out = model(padded, lengths)
    for b, n in enumerate(lengths):
        torch.testing.assert_close(out[b], model(x[b : b + 1, :, :n])[0])
    # garbage in the padding changes nothing either
    garbage = padded + 100.0 * (torch.arange(40) >= lengths[:, None])[:, None, :]
    torch.testing.assert_close(model(garbage, lengths), out)


@pytest.mark.parametrize("padding", ["replicate", "zeros"])
def test_padding_does_not_change_training_outputs_or_statistics(padding):
    """In training mode batch norm counts valid positions only: a padded series gives the same
    output and the same running statistics as the series alone."""
    a, b = tiny(padding=padding), tiny(padding=padding)
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 1, 25)
    padded = torch.cat([x, torch.zeros(1, 1, 15)], dim=-1)
    torch.testing.assert_close(a(padded, torch.tensor([25])), b(x))
    torch.testing.assert_close(a.state_dict(), b.state_dict())


def test_full_lengths_equal_no_lengths():
    model = tiny(in_channels=2)
    x = torch.randn(3, 2, 33)
    torch.testing.assert_close(model(x, torch.full((3,), 33)), model(x))  # training mode
    model.eval()
    torch.testing.assert_close(model(x, torch.full((3,), 33)), model(x))


def test_regions_allow_exactly_the_first_taps_of_each_group():
    model = tiny(in_channels=2, width=5, depth=3, kernel_size=12, num_groups=4)
    regions = model.allowed_regions(prefix="model.")
    assert list(regions) == [f"model.blocks.{i}.conv.weight" for i in range(3)]
    params = dict(model.named_parameters())
    for name, region in regions.items():
        assert region.dtype == torch.int64 and region.shape == params[name.removeprefix("model.")].shape
        for group, taps in enumerate((3, 6, 9, 12)):
            rows = region[group * 5 : (group + 1) * 5]  # output channels of the group
            assert (rows[..., :taps] == group + 1).all() and not rows[..., taps:].any()
    assert model.allowed_regions().keys() == {n.removeprefix("model.") for n in regions}


@pytest.mark.parametrize(("padding", "offset"), [("replicate", 0), ("zeros", -4)])
def test_group_receptive_fields(padding, offset):
    """With the weights outside the regions at zero, output ``t`` of group ``i`` sees exactly
    ``x[t + offset : t + offset + k_i]``: the first taps, after right (replicate) or centred
    (zeros) padding, as in the official code."""
    model = tiny(padding=padding, width=2, depth=1).eval()
    conv = model.blocks[0].conv
    with torch.no_grad():
        conv.weight.copy_((model.allowed_regions()["blocks.0.conv.weight"] > 0).float())
        model.blocks[0].bn.bias.fill_(100.0)  # keep the ReLU open
    t = 20
    for group, taps in enumerate((3, 6, 9)):
        x = torch.randn(1, 1, 40, requires_grad=True)
        model.blocks[0](x)[0, group * 2, t].backward()  # first channel of the group
        assert x.grad[0, 0].nonzero().flatten().tolist() == list(range(t + offset, t + offset + taps))


class CheckRegions(Callback):
    def __init__(self, dst, regions):
        self.dst, self.seen_masks = dst, []
        self.regions = {n: r > 0 for n, r in regions.items()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        params = dict(pl_module.named_parameters())
        masks = self.dst.masks
        for name, region in self.regions.items():
            assert not (masks[name] & ~region).any(), f"{name}: active outside its region"
            assert not params[name][~region].any(), f"{name}: nonzero weight outside its region"
        for name, mask in masks.items():
            assert int(mask.sum()) == self.dst.target_counts[name], f"{name}: count changed"
            assert not params[name][~mask].any()
        self.seen_masks.append({n: m.clone() for n, m in masks.items()})


def test_dst_stays_inside_the_regions(tmp_path):
    torch.manual_seed(0)
    task = TimeSeriesClassifier("dsn", {"width": 6, "depth": 2, "kernel_size": 9}, num_classes=3, lr=1e-2)
    regions = task.allowed_regions()
    dst = DynamicSparseTraining(
        method="set", sparsity=0.8, allowed_regions=regions, update_interval=2, summary=False
    )
    check = CheckRegions(dst, regions)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(16, 1, 32, generator=g), torch.randint(0, 3, (16,), generator=g))
    Trainer(
        default_root_dir=tmp_path, max_steps=8, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[dst, check],
    ).fit(task, DataLoader(data, batch_size=4))
    assert dst.num_updates >= 3
    first, last = check.seen_masks[0], check.seen_masks[-1]
    assert any(not torch.equal(first[n], last[n]) for n in regions), "the topology never changed"
    assert dst.global_density == pytest.approx(0.2, abs=0.01)


def test_flops_of_dsn_by_hand():
    model = tiny(in_channels=2, width=4, depth=3, kernel_size=9, num_classes=3, pool_size=10)
    length, c, w, k = 30, 12, 4, 9
    first = length * w * 2 + length * c * w * k  # bottleneck 2 -> 4, conv 4 -> 12
    later = length * w * c + length * c * w * k  # bottleneck 12 -> 4, conv 4 -> 12
    head = 10 * 3 * c  # 1x1 conv on the 10 pooled positions
    count = conv_linear_flops(model, torch.randn(1, 2, length))
    assert count.dense == first + 2 * later + head
    masks = {n: torch.rand(r.shape) < 0.25 for n, r in model.allowed_regions().items()}
    sparse = conv_linear_flops(model, torch.randn(1, 2, length), masks).sparse
    convs = [model.blocks[i].conv for i in range(3)]
    expected = count.dense - sum(
        length * conv.weight.numel() * (1 - masks[f"blocks.{i}.conv.weight"].float().mean().item())
        for i, conv in enumerate(convs)
    )
    assert sparse == pytest.approx(expected)
