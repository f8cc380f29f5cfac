"""E2ENet and DepthShift: exact shift semantics, odd sizes, deep supervision, ablations, fusion globs."""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_sparse.core import find_targets
from lightning_sparse.models import E2ENet, create_model, list_models
from lightning_sparse.models import e2enet as e2enet_module
from lightning_sparse.models.e2enet import E2ENET_ENCODER_INCLUDE, E2ENET_FUSION_INCLUDE
from lightning_sparse.models.layers import DepthShift, DepthShiftConv


def reference_shift(x, k):
    """Loop over torch.chunk's groups; output slice d of group i is input slice d - (i - k), else 0."""
    out = torch.zeros_like(x)
    channels, depth = x.shape[1], x.shape[2]
    size = math.ceil(channels / (2 * k + 1))
    for i, start in enumerate(range(0, channels, size)):
        offset = i - k
        for c in range(start, min(start + size, channels)):
            for d in range(depth):
                if 0 <= d - offset < depth:
                    out[:, c, d] = x[:, c, d - offset]
    return out


def official_shift(x, k):
    """The official torch_shift algorithm: pad k zeros on both sides, chunk, roll, crop."""
    padded = F.pad(x, (0, 0, 0, 0, k, k))
    chunks = torch.chunk(padded, 2 * k + 1, 1)
    rolled = [torch.roll(c, s, 2) for c, s in zip(chunks, range(-k, k + 1))]
    return torch.narrow(torch.cat(rolled, 1), 2, k, x.shape[2])


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("channels", [1, 4, 6, 7, 11, 13])
@pytest.mark.parametrize("depth", [1, 3, 8])
def test_depth_shift_matches_loop_reference_and_official_algorithm(k, channels, depth):
    x = torch.randn(2, channels, depth, 3, 2)
    out = DepthShift(k)(x)
    assert torch.equal(out, reference_shift(x, k))
    assert torch.equal(out, official_shift(x, k))


def test_depth_shift_groups_leftover_channels_and_no_wrap_around():
    shift = DepthShift(2)
    assert shift.num_groups == 5
    assert shift.groups(13) == [(0, 3, -2), (3, 6, -1), (6, 9, 0), (9, 12, 1), (12, 13, 2)]  # last: 1
    assert shift.groups(6) == [(0, 2, -2), (2, 4, -1), (4, 6, 0)]  # fewer groups: first offsets
    assert shift.groups(1) == [(0, 1, -2)]
    x = torch.zeros(1, 5, 6, 1, 1)
    x[:, :, 0] = 1.0  # first slice only
    x[:, :, -1] = 2.0  # last slice only
    out = shift(x)[0, :, :, 0, 0]
    expected = torch.tensor(
        [
            [0, 0, 0, 2, 0, 0],  # offset -2: the first slice falls off the front, nothing comes back
            [0, 0, 0, 0, 2, 0],
            [1, 0, 0, 0, 0, 2],
            [0, 1, 0, 0, 0, 0],  # offset +1: the last slice falls off the end
            [0, 0, 1, 0, 0, 0],
        ],
        dtype=out.dtype,
    )
    assert torch.equal(out, expected)
    assert torch.equal(DepthShift(0)(x), x)


def test_depth_shift_other_axis_gradient_and_errors():
    x = torch.randn(1, 7, 4, 6, 5, requires_grad=True)
    along_h = DepthShift(1, dim=3)(x)
    assert torch.equal(along_h, DepthShift(1)(x.transpose(2, 3)).transpose(2, 3))
    along_h.sum().backward()  # a permutation with zero fill: every gradient entry is 0 or 1
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="`max_shift`"):
        DepthShift(-1)
    with pytest.raises(ValueError, match="`dim`"):
        DepthShift(2, dim=1)
    with pytest.raises(ValueError, match="`x` must have more than 2"):
        DepthShift(2)(torch.randn(2, 5))


def test_depth_shift_conv_block_names():
    block = DepthShiftConv(5, 6, norm=None, act="relu")
    assert [n for n, _ in block.named_children()] == ["shift", "conv", "act"]
    assert block.conv.kernel_size == (1, 3, 3) and block.conv.bias is not None  # no norm: a bias
    assert block(torch.randn(1, 5, 3, 4, 4)).shape == (1, 6, 3, 4, 4)
    plain = DepthShiftConv(5, 6, max_shift=None)
    assert [n for n, _ in plain.named_children()] == ["conv", "norm", "act"] and plain.conv.bias is None


def tiny(**kwargs):
    torch.manual_seed(0)
    return create_model("e2enet_tiny", **{"num_classes": 3, **kwargs})


def level_sizes(model, size):
    return [tuple(math.ceil(n / t) for n, t in zip(size, stride)) for stride in model.head_strides]


@pytest.mark.parametrize("size", [(17, 19, 23), (20, 24, 28), (4, 8, 16)])
def test_odd_sizes_train_and_eval(size):
    model = tiny()
    x = torch.randn(2, 1, *size)
    outputs = model(x)
    assert isinstance(outputs, list) and len(outputs) == model.num_heads == 2
    assert [tuple(o.shape) for o in outputs] == [(2, 3, *s) for s in level_sizes(model, size)]
    assert outputs[0].shape[2:] == x.shape[2:]
    sum(o.square().mean() for o in outputs).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, *size)
    assert torch.allclose(out, outputs[0].detach(), atol=1e-5)  # instance norm: same in both modes


def test_deep_supervision_off_and_deeper_heads():
    flat = tiny(deep_supervision=False)
    assert isinstance(flat(torch.randn(1, 1, 9, 10, 11)), torch.Tensor)
    deep = E2ENet(3, 2, 4, channels=(4, 8, 8, 8, 8), strides=((1, 2, 2), 2, 2, (1, 2, 2)))
    assert deep.num_heads == 3 and deep.head_strides == ((1, 1, 1), (1, 2, 2), (2, 4, 4))
    outputs = deep(torch.randn(1, 2, 13, 33, 35))
    assert [tuple(o.shape) for o in outputs] == [(1, 4, 13, 33, 35), (1, 4, 13, 17, 18), (1, 4, 7, 9, 9)]
    assert list(deep.fusion) == ["x0_1", "x1_1", "x0_2", "x2_1", "x1_2", "x0_3", "x3_1", "x2_2", "x1_3", "x0_4"]
    assert deep.example_input_size == (2, 4, 16, 32)


def test_two_dimensional():
    model = E2ENet(2, 3, 5, channels=(4, 8, 16))
    assert model.kernel == "3x3" and not model.depth_shift
    assert not any(isinstance(m, DepthShift) for m in model.modules())
    outputs = model(torch.randn(2, 3, 21, 18))
    assert [tuple(o.shape) for o in outputs] == [(2, 5, 21, 18)]
    assert model.example_input_size == (3, 4, 8)


def test_fusion_node_inputs_forward_upward_downward():
    model = tiny()
    c = model.channels  # (4, 8, 16, 32); node X^{s,j} concatenates c_s + c_s (+ c_{s-1} for s >= 1)
    first = {name: node.convs[0].conv for name, node in model.fusion.items()}
    assert first["x0_1"].in_channels == 2 * c[0] and not hasattr(model.fusion["x0_1"], "down")
    assert first["x1_1"].in_channels == 2 * c[1] + c[0]
    assert first["x2_1"].in_channels == 2 * c[2] + c[1]
    up = model.fusion["x1_2"].up
    assert isinstance(up, nn.ConvTranspose3d) and (up.in_channels, up.out_channels) == (c[2], c[1])
    assert up.kernel_size == up.stride == (2, 2, 2) and model.fusion["x0_1"].up.stride == (1, 2, 2)
    assert model.fusion["x1_1"].down.kernel_size == (1, 2, 2)
    # the last diagonal (s + j = 3) has two blocks, the inner nodes one
    assert {name: len(node.convs) for name, node in model.fusion.items()} == {
        "x0_1": 1, "x1_1": 1, "x0_2": 1, "x2_1": 2, "x1_2": 2, "x0_3": 2,
    }


def slice_dependence(model, depth=7):
    """Input slices the centre output slice depends on."""
    x = torch.randn(1, 1, depth, 8, 8, requires_grad=True)
    model.eval()(x)[0, :, depth // 2].sum().backward()
    return (x.grad.abs().sum((3, 4))[0, 0] > 0).nonzero().flatten().tolist()


def test_ablation_switches_change_structure_and_depth_mixing():
    kwargs = {"strides": ((1, 2, 2), (1, 2, 2), (1, 2, 2)), "norm": None}  # no depth stride, no coupling norm
    shifted, unshifted, full = tiny(**kwargs), tiny(depth_shift=False, **kwargs), tiny(kernel="3x3x3", **kwargs)
    blocks = [m for m in shifted.modules() if isinstance(m, DepthShiftConv)]
    assert blocks and all(isinstance(b.shift, DepthShift) and b.shift.max_shift == 2 for b in blocks)
    assert all(b.conv.kernel_size == (1, 3, 3) for b in blocks)
    assert not any(isinstance(m, DepthShift) for m in unshifted.modules())
    assert all(m.conv.kernel_size == (1, 3, 3) for m in unshifted.modules() if isinstance(m, DepthShiftConv))
    assert all(m.conv.kernel_size == (3, 3, 3) for m in full.modules() if isinstance(m, DepthShiftConv))
    assert not any(isinstance(m, DepthShift) for m in full.modules())
    # the shift has no parameters: the same state dict loads into both
    unshifted.load_state_dict(shifted.state_dict())
    assert sum(p.numel() for p in full.parameters()) > sum(p.numel() for p in shifted.parameters())
    assert slice_dependence(unshifted) == [3]  # 1x3x3 kernels alone never mix slices
    assert len(slice_dependence(shifted)) > 1 and len(slice_dependence(full)) > 1
    with pytest.raises(ValueError, match="`depth_shift=True` needs kernel='1x3x3'"):
        tiny(kernel="3x3x3", depth_shift=True)


def test_fusion_include_selects_exactly_the_fusion_convolutions():
    model = tiny()
    fusion_convs = {
        f"{name}.weight" for name, m in model.named_modules() if name.startswith("fusion.") and type(m) is nn.Conv3d
    }
    assert len(fusion_convs) == 6 + 3  # six nodes, three of them with two blocks
    targets = find_targets(model, include=E2ENET_FUSION_INCLUDE, granularity="kernel")
    assert {t.name for t in targets} == fusion_convs
    assert all(t.unit_shape == t.shape[:2] for t in targets)
    encoder = {t.name for t in find_targets(model, include=E2ENET_ENCODER_INCLUDE)}
    assert encoder == {f"encoder.{s}.{i}.conv.weight" for s in range(4) for i in range(2)}
    assert all(".up." not in n and "norm" not in n and not n.startswith("heads") for n in fusion_convs)

    class Wrapper(nn.Module):  # as a LightningModule storing the network as self.model
        def __init__(self):
            super().__init__()
            self.model = model

    wrapped = {t.name for t in find_targets(Wrapper(), include=E2ENET_FUSION_INCLUDE)}
    assert wrapped == {f"model.{n}" for n in fusion_convs}
    assert {t.name for t in find_targets(model, include=["fusion.*.conv.weight"])} == fusion_convs


def documented_table():
    rows = {}
    for line in e2enet_module.__doc__.splitlines():
        match = re.match(r"``(e2enet\w*)``.*\s(\d[\d,]*)\s+(\d[\d,]*)$", line)
        if match:
            rows[match[1]] = (int(match[2].replace(",", "")), int(match[3].replace(",", "")))
    return rows


def test_parameter_counts_match_the_documented_table():
    table = documented_table()
    assert set(table) == {"e2enet_tiny", "e2enet_small", "e2enet"}
    with torch.device("meta"):
        for name, (params, fusion) in table.items():
            model = create_model(name)
            assert sum(p.numel() for p in model.parameters()) == params, name
            assert sum(t.numel for t in find_targets(model, include=E2ENET_FUSION_INCLUDE)) == fusion, name
        full = create_model("e2enet", kernel="3x3x3")
    assert sum(p.numel() for p in full.parameters()) == 61_727_536


def test_paper_configuration_and_builders():
    assert {"e2enet", "e2enet_small", "e2enet_tiny"} <= set(list_models())
    with torch.device("meta"):
        model = create_model("e2enet")
    assert model.channels == (48, 96, 192, 320, 320, 320) and model.out_channels == 16
    assert model.strides == ((1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
    assert len(model.fusion) == 15 and model.num_heads == 4 and model.kernel == "1x3x3" and model.depth_shift
    assert model.heads[0].weight.shape == (16, 48, 1, 1, 1) and model.heads[0].bias is None
    assert model.deep_supervision_weights == pytest.approx([8 / 15, 4 / 15, 2 / 15, 1 / 15])
    assert model.example_input_size == (1, 8, 32, 64)
    assert create_model("e2enet_tiny", out_channels=5).out_channels == 5
    small = create_model("e2enet_small", num_classes=4, in_channels=2)
    assert small.out_channels == 4 and small.encoder[0][0].conv.in_channels == 2
    assert small.example_input_size == (2, 8, 16, 32) and small.input_convention == "segmentation"
    with pytest.raises(ValueError, match="`num_classes` is an alias of `out_channels`"):
        create_model("e2enet_tiny", num_classes=3, out_channels=4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spatial_dims": 1}, "`spatial_dims` must be one of"),
        ({"channels": (8,)}, "`channels` must be at least two"),
        ({"strides": (2, 2)}, "`strides` must be 3 strides"),
        ({"strides": ((1, 2), 2, 2)}, "`strides` must be 3 strides"),
        ({"kernel": "5x5x5"}, "`kernel` must be one of"),
        ({"kernel": "3x3"}, "`kernel` must be one of"),
        ({"depth_shift": "yes"}, "`depth_shift` must be True or False"),
        ({"norm": "btach"}, "`norm` must be one of"),
        ({"out_channels": 0}, "`out_channels` must be an integer >= 1"),
    ],
)
def test_invalid_arguments(kwargs, message):
    args = {"spatial_dims": 3, "in_channels": 1, "out_channels": 2, "channels": (4, 8, 8, 8), **kwargs}
    with pytest.raises(ValueError, match=message):
        E2ENet(**args)


def test_wrong_input_shape():
    with pytest.raises(ValueError, match=r"`x` must have shape \(batch, 1, D, H, W\)"):
        tiny()(torch.randn(1, 2, 8, 8, 8))
