"""The layers tier: factories by name and spatial_dims, ConvNormAct, residual blocks, DropPath."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_sparse.models.layers import (
    ACTS,
    NORMS,
    POOLS,
    BasicBlock,
    Bottleneck,
    ChannelLayerNorm,
    ConvNormAct,
    DropPath,
    act,
    conv,
    drop_path,
    norm,
    pool,
    same_padding,
)

DIMS = [1, 2, 3]


def sample(spatial_dims: int, channels: int = 4, size: int = 8, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, channels, *(size,) * spatial_dims)


# ----------------------------------------------------------------------------- factories
@pytest.mark.parametrize("spatial_dims", DIMS)
def test_factories_pick_the_class_of_each_dimension(spatial_dims):
    d = spatial_dims
    assert conv(d) is getattr(nn, f"Conv{d}d")
    assert conv(d, transposed=True) is getattr(nn, f"ConvTranspose{d}d")
    assert pool("max", d) is getattr(nn, f"MaxPool{d}d")
    assert pool("adaptive_avg", d) is getattr(nn, f"AdaptiveAvgPool{d}d")
    assert type(norm("batch", d, 8)) is getattr(nn, f"BatchNorm{d}d")
    assert type(norm("instance", d, 8)) is getattr(nn, f"InstanceNorm{d}d")


@pytest.mark.parametrize("name", NORMS)
@pytest.mark.parametrize("spatial_dims", DIMS)
def test_every_norm_keeps_the_shape(name, spatial_dims):
    x = sample(spatial_dims, channels=8)
    assert norm(name, spatial_dims, 8)(x).shape == x.shape


def test_norm_kwargs_from_a_pair_or_a_yaml_list():
    bn = norm(("batch", {"momentum": 0.01, "eps": 1e-3}), 2, 8)
    assert (bn.momentum, bn.eps) == (0.01, 1e-3)
    gn = norm(["group", {"num_groups": 4}], 3, 8)  # YAML gives a list
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 4
    assert norm("group", 2, 64).num_groups == 32 and norm("group", 2, 24).num_groups == 8
    assert isinstance(norm("layer", 1, 8), ChannelLayerNorm)


def test_channel_layer_norm_matches_layer_norm_over_channels():
    x = torch.randn(2, 6, 3, 5)
    ours = ChannelLayerNorm(6)
    ref = nn.LayerNorm(6, eps=1e-6)
    torch.testing.assert_close(ours(x), ref(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


@pytest.mark.parametrize("name", ACTS)
def test_every_act_builds_and_keeps_the_shape(name):
    x = torch.randn(3, 4)
    assert act(name)(x).shape == x.shape


def test_act_inplace_only_where_supported_and_kwargs_win():
    assert act("relu", inplace=True).inplace is True
    assert act("relu").inplace is False
    assert act(("relu", {"inplace": False}), inplace=True).inplace is False
    assert isinstance(act("gelu", inplace=True), nn.GELU)  # GELU has no inplace: ignored
    assert act(("leaky_relu", {"negative_slope": 0.2})).negative_slope == 0.2
    assert isinstance(act("swish"), nn.SiLU)


@pytest.mark.parametrize(
    ("call", "arg", "allowed", "given"),
    [
        (lambda: norm("btach", 2, 8), "norm", "'batch', 'instance', 'group', 'layer'", "'btach'"),
        (lambda: act("rleu"), "act", "'relu'", "'rleu'"),
        (lambda: pool("mean", 2), "pool", "'max', 'avg'", "'mean'"),
        (lambda: conv(4), "spatial_dims", "[1, 3]", "4"),
        (lambda: norm("batch", 0, 8), "spatial_dims", "[1, 3]", "0"),
        (lambda: conv(True), "spatial_dims", "[1, 3]", "True"),
        (lambda: ConvNormAct(3, 4, norm="bn"), "norm", "'batch'", "'bn'"),
        (lambda: BasicBlock(4, 4, act="rel"), "act", "'relu'", "'rel'"),
    ],
)
def test_bad_names_raise_naming_argument_allowed_and_given(call, arg, allowed, given):
    with pytest.raises(ValueError) as err:
        call()
    message = str(err.value)
    assert message.startswith(f"`{arg}` must be")
    assert allowed in message and f"got {given}" in message


@pytest.mark.parametrize("spec", [3, ("batch",), ("batch", "momentum"), ("batch", {}, 1), None])
def test_malformed_spec_raises(spec):
    with pytest.raises(ValueError, match="`norm` must be a name or a pair"):
        norm(spec, 2, 8)


def test_group_norm_needs_divisible_channels():
    with pytest.raises(ValueError, match="num_groups=4.*got 6"):
        norm(("group", {"num_groups": 4}), 2, 6)


def test_same_padding():
    assert same_padding(3) == 1 and same_padding(7) == 3 and same_padding(1) == 0
    assert same_padding((51, 5)) == (25, 2)
    assert same_padding(3, (1, 2)) == (1, 2)


# ----------------------------------------------------------------------------- ConvNormAct
@pytest.mark.parametrize("spatial_dims", DIMS)
def test_conv_norm_act_shapes(spatial_dims):
    x = sample(spatial_dims)
    layer = ConvNormAct(4, 6, spatial_dims=spatial_dims)
    assert layer(x).shape == (2, 6) + (8,) * spatial_dims
    strided = ConvNormAct(4, 6, 3, stride=2, spatial_dims=spatial_dims, norm="group", act="gelu")
    assert strided(x).shape == (2, 6) + (4,) * spatial_dims


def test_conv_norm_act_layout_and_bias():
    layer = ConvNormAct(3, 8)
    assert [type(m) for m in layer] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert layer[0].bias is None and layer[2].inplace
    assert list(dict(layer.named_parameters())) == ["0.weight", "1.weight", "1.bias"]
    plain = ConvNormAct(3, 8, norm=None, act=None)
    assert len(plain) == 1 and plain[0].bias is not None
    assert ConvNormAct(3, 8, bias=True)[0].bias is not None


def test_conv_norm_act_rectangular_and_depthwise_kernels():
    x = torch.randn(1, 8, 20, 12)
    tall = ConvNormAct(8, 8, (11, 3), groups=8)
    assert tall[0].padding == (5, 1) and tall[0].groups == 8
    assert tall(x).shape == x.shape


# ----------------------------------------------------------------------------- residual blocks
@pytest.mark.parametrize("spatial_dims", DIMS)
@pytest.mark.parametrize("block_cls", [BasicBlock, Bottleneck])
def test_blocks_shapes_with_and_without_downsample(block_cls, spatial_dims):
    out = 8 * block_cls.expansion
    x = sample(spatial_dims, channels=out)
    assert block_cls(out, 8, spatial_dims=spatial_dims)(x).shape == x.shape
    down = ConvNormAct(out, 16 * block_cls.expansion, 1, 2, spatial_dims=spatial_dims, act=None)
    block = block_cls(out, 16, 2, down, spatial_dims=spatial_dims, norm="instance", act="silu")
    assert block(x).shape == (2, 16 * block_cls.expansion) + (4,) * spatial_dims


def test_blocks_keep_torchvision_names():
    import torchvision.models.resnet as tv

    for ours, ref in [(BasicBlock(8, 8), tv.BasicBlock(8, 8)), (Bottleneck(32, 8), tv.Bottleneck(32, 8))]:
        assert list(ours.state_dict()) == list(ref.state_dict())
        ours.load_state_dict(ref.state_dict())
        x = torch.randn(2, ours.conv1.in_channels, 6, 6)
        torch.testing.assert_close(ours.eval()(x), ref.eval()(x))


@pytest.mark.parametrize("block", [BasicBlock(8, 8), Bottleneck(32, 8)])
def test_zero_init_last_makes_the_block_its_shortcut_before_the_act(block):
    block.zero_init_last()
    x = torch.randn(2, block.conv1.in_channels, 5, 5)
    torch.testing.assert_close(block.eval()(x), torch.relu(x))


def test_block_drop_path_is_off_by_default_and_drops_in_training():
    assert BasicBlock(4, 4).drop_path is None
    block = BasicBlock(4, 4, drop_path=1.0)
    x = torch.randn(3, 4, 5, 5)
    torch.testing.assert_close(block.train()(x), torch.relu(x))  # every branch dropped


# ----------------------------------------------------------------------------- DropPath
def test_drop_path_is_identity_in_eval_and_at_zero():
    x = torch.randn(16, 3, 4, 4)
    assert torch.equal(DropPath(0.5).eval()(x), x)
    assert torch.equal(DropPath(0.0).train()(x), x)
    assert torch.equal(drop_path(x, 0.5, training=False), x)


@pytest.mark.parametrize("spatial_dims", [0, 1, 2, 3])
def test_drop_path_zeroes_whole_samples_and_scales_the_rest(spatial_dims):
    torch.manual_seed(0)
    p = 0.25
    x = torch.rand(4000, 2, *(3,) * spatial_dims) + 1.0  # strictly positive
    y = DropPath(p).train()(x)
    flat_x, flat_y = x.flatten(1), y.flatten(1)
    dropped = (flat_y == 0).all(1)
    kept = ~dropped
    assert ((flat_y == 0).any(1) == dropped).all()  # a sample is zero everywhere or nowhere
    torch.testing.assert_close(flat_y[kept], flat_x[kept] / (1 - p))
    assert abs(dropped.float().mean().item() - p) < 0.03
    assert abs(y.mean().item() / x.mean().item() - 1.0) < 0.03  # expectation kept


def test_drop_path_without_scaling_and_validation():
    x = torch.ones(1000, 3)
    y = DropPath(0.5, scale_by_keep=False).train()(x)
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(DropPath(1.0).train()(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match=r"`drop_prob` must be a number in \[0(\.0)?, 1(\.0)?\], got 1.5"):
        DropPath(1.5)
    with pytest.raises(ValueError, match="`scale_by_keep` must be True or False"):
        DropPath(0.1, scale_by_keep="yes")


# ----------------------------------------------------------------------------- models using them
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet8", {"width": 8, "norm": ("group", {"num_groups": 4}), "act": "gelu"}),
        ("resnet18", {"width": 8, "norm": "layer", "act": ["leaky_relu", {"negative_slope": 0.1}]}),
        ("resnet50", {"width": 8, "norm": "instance", "act": "silu", "zero_init_residual": True}),
        ("small_cnn", {"width": 8, "norm": "group", "act": "mish"}),
        ("mlp", {"in_features": 16, "hidden_sizes": [8], "act": "tanh"}),
    ],
)
def test_models_take_norm_and_act_specs(name, kwargs):
    from lightning_sparse.models import create_model

    model = create_model(name, num_classes=3, **kwargs)
    assert model(torch.randn(2, *model.example_input_size)).shape == (2, 3)


@pytest.mark.parametrize("name", ["resnet8", "resnet18", "small_cnn"])
def test_models_reject_unknown_norm_naming_it(name):
    from lightning_sparse.models import create_model

    with pytest.raises(ValueError, match="`norm` must be one of .*got 'bnorm'"):
        create_model(name, norm="bnorm")
