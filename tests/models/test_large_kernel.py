"""LargeKernelConv: shapes for odd/even kernels and inputs, alignment, merge(), gradients, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_sparse.models.layers import LargeKernelConv, same_padding_2d


def randomize_bn(layer: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters in every batch norm (eval mode matters)."""
    g = torch.Generator().manual_seed(seed)
    for m in layer.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


def kernel_shapes(layer: LargeKernelConv) -> list[tuple[int, int]]:
    return [tuple(m.kernel_size) for m in layer.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("decomposed", [True, False])
@pytest.mark.parametrize("kernel_size, small_kernel", [(7, 3), (8, 3), (7, 4), (6, 5), (13, 5)])
@pytest.mark.parametrize("size", [(9, 9), (8, 11), (3, 4)])  # odd, even, smaller than the kernel
def test_spatial_size_is_kept(decomposed, kernel_size, small_kernel, size):
    layer = LargeKernelConv(3, kernel_size, small_kernel, decomposed=decomposed)
    x = torch.randn(2, 3, *size)
    assert layer(x).shape == x.shape
    assert layer.eval()(x).shape == x.shape


def test_branches_follow_the_official_shapes():
    assert kernel_shapes(LargeKernelConv(4, 51, 5)) == [(51, 5), (5, 51), (5, 5)]  # LoRA1, LoRA2, small_conv
    assert kernel_shapes(LargeKernelConv(4, 31, 5, decomposed=False)) == [(31, 31), (5, 5)]  # RepLKNet
    assert kernel_shapes(LargeKernelConv(4, 7, None, decomposed=False)) == [(7, 7)]
    assert kernel_shapes(LargeKernelConv(4, 7, 100, decomposed=False)) == [(7, 7)]  # official "7 7 7 7 100"
    layer = LargeKernelConv(4, 9, 3)
    assert all(m.groups == 4 and m.bias is None for m in layer.modules() if isinstance(m, nn.Conv2d))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in layer.modules()) == 3
    plain = LargeKernelConv(4, 9, 3, bn=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, nn.Conv2d))


def test_same_padding_2d_is_pytorch_same_padding():
    assert same_padding_2d(7) == (3, 3, 3, 3)
    assert same_padding_2d((4, 5)) == (1, 2, 2, 2)  # even: one more after
    assert same_padding_2d((1, 2)) == (0, 0, 0, 1)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("decomposed", [True, False])
@pytest.mark.parametrize("kernel_size, small_kernel", [(7, 3), (6, 3), (7, 2), (4, 2)])
def test_every_branch_is_pytorch_same_convolution(decomposed, kernel_size, small_kernel):
    """Each branch is aligned exactly as PyTorch's ``padding="same"`` (odd and even kernels), so the
    branches, and the merged kernel, share one centre."""
    torch.manual_seed(0)
    layer = LargeKernelConv(3, kernel_size, small_kernel, decomposed=decomposed, bn=False)
    x = torch.randn(2, 3, 7, 6)
    for branch in layer.branches():
        conv = branch[0]
        nn.init.normal_(conv.weight)
        nn.init.normal_(conv.bias)
        expected = F.conv2d(x, conv.weight, conv.bias, padding="same", groups=3)
        torch.testing.assert_close(layer._run(branch, x), expected)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("bn", [True, False])
@pytest.mark.parametrize("decomposed", [True, False])
@pytest.mark.parametrize("kernel_size, small_kernel", [(9, 5), (8, 5), (9, 4), (10, 3)])
def test_merge_equals_the_eval_mode_layer(decomposed, bn, kernel_size, small_kernel):
    torch.manual_seed(0)
    layer = LargeKernelConv(6, kernel_size, small_kernel, decomposed=decomposed, bn=bn)
    for p in layer.parameters():
        nn.init.normal_(p)
    randomize_bn(layer)
    layer.eval()
    x = torch.randn(2, 6, 11, 10)
    before = layer(x)
    assert layer.merge() is layer and layer.merged
    convs = [m for m in layer.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 and convs[0] is layer.lkb_reparam and layer.branches() == []
    assert convs[0].kernel_size == (kernel_size, kernel_size) and convs[0].bias is not None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in layer.modules())
    torch.testing.assert_close(layer(x), before, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer(x[..., :5, :7]), same_conv_reference(x[..., :5, :7], layer), atol=1e-5,
                               rtol=1e-5)
    assert layer.merge() is layer  # idempotent
    assert "merged=True" in repr(layer)


def same_conv_reference(x: torch.Tensor, merged: LargeKernelConv) -> torch.Tensor:
    """The merged kernel as PyTorch's own 'same' convolution."""
    conv = merged.lkb_reparam
    return F.conv2d(x, conv.weight, conv.bias, padding="same", groups=conv.groups)


def test_merge_differs_from_training_mode_batch_statistics():
    """merge() uses the running statistics: it reproduces eval mode, not train mode."""
    torch.manual_seed(0)
    layer = LargeKernelConv(4, 7, 3)
    randomize_bn(layer)
    x = torch.randn(4, 4, 8, 8)
    train_out = layer.train()(x)
    eval_out = layer.eval()(x)
    assert not torch.allclose(train_out, eval_out, atol=1e-3)
    torch.testing.assert_close(layer.merge()(x), eval_out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("decomposed", [True, False])
def test_gradients_reach_every_parameter(decomposed):
    torch.manual_seed(0)
    layer = LargeKernelConv(3, 8, 3, decomposed=decomposed)
    x = torch.randn(2, 3, 9, 8, requires_grad=True)
    layer(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_every_depthwise_convolution_goes_through_one_method(monkeypatch):
    layer = LargeKernelConv(2, 9, 3)
    calls = []
    original = LargeKernelConv._depthwise

    def spy(self, conv, x, padding):
        calls.append((tuple(conv.kernel_size), padding))
        return original(self, conv, x, padding)

    monkeypatch.setattr(LargeKernelConv, "_depthwise", spy)
    layer(torch.randn(1, 2, 6, 6))
    assert calls == [((9, 3), (4, 4, 1, 1)), ((3, 9), (1, 1, 4, 4)), ((3, 3), (1, 1, 1, 1))]
    calls.clear()
    layer.eval().merge()(torch.randn(1, 2, 6, 6))
    assert calls == [((9, 9), (4, 4, 4, 4))]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"channels": 0, "kernel_size": 7}, "`channels` must be an integer >= 1, got 0"),
        ({"channels": 4, "kernel_size": 0, "decomposed": False}, "`kernel_size` must be an integer >= 1, got 0"),
        ({"channels": 4, "kernel_size": 7, "small_kernel": 7},
         r"`small_kernel` must be an integer in \[1, kernel_size - 1\] = \[1, 6\] when `decomposed=True`, got 7"),
        ({"channels": 4, "kernel_size": 7, "small_kernel": None}, "`small_kernel` .* got None"),
        ({"channels": 4, "kernel_size": 7, "small_kernel": 0, "decomposed": False},
         "`small_kernel` must be an integer >= 1 or None, got 0"),
        ({"channels": 4, "kernel_size": 7, "decomposed": "yes"}, "`decomposed` must be True or False, got 'yes'"),
        ({"channels": 4, "kernel_size": 7, "bn": 1}, "`bn` must be True or False, got 1"),
    ],
)
def test_argument_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LargeKernelConv(**kwargs)


@pytest.mark.parametrize("impl", ["auto", "fft", "toeplitz"])
@pytest.mark.parametrize("decomposed", [True, False])
def test_fast_depthwise_paths_equal_stock_in_forward_backward_and_merge(impl, decomposed):
    """`impl` changes how the depthwise convolutions run, not what they compute or which parameters exist."""
    torch.manual_seed(0)
    fast = LargeKernelConv(6, 11, 5, decomposed=decomposed, impl=impl)
    stock = LargeKernelConv(6, 11, 5, decomposed=decomposed, impl="torch")
    assert [n for n, _ in fast.named_parameters()] == [n for n, _ in stock.named_parameters()]
    stock.load_state_dict(fast.state_dict())
    x = torch.randn(2, 6, 13, 10, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    a, b = fast(x), stock(x2)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    a.square().sum().backward()
    b.square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, atol=1e-4, rtol=1e-4)
    for (n, p), (_, q) in zip(fast.named_parameters(), stock.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-4, msg=n)
    fast.eval(), stock.eval()
    torch.testing.assert_close(fast.merge()(x.detach()), stock.merge()(x.detach()), atol=1e-4, rtol=1e-4)


def test_fast_paths_are_conv2d_modules_for_sparse_training_and_flop_counts():
    from lightning_sparse.core import find_targets
    from lightning_sparse.models.flops import conv_linear_flops
    from lightning_sparse.nn import DepthwiseConv2d

    fast, stock = LargeKernelConv(4, 9, 5, impl="fft"), LargeKernelConv(4, 9, 5, impl="torch")
    assert all(isinstance(b[0], DepthwiseConv2d) for b in fast.branches())
    assert [t.name for t in find_targets(fast)] == [t.name for t in find_targets(stock)]
    x = torch.randn(1, 4, 12, 12)
    assert conv_linear_flops(fast, x) == conv_linear_flops(stock, x)
    with pytest.raises(ValueError, match="`impl` must be"):
        LargeKernelConv(4, 9, 5, impl="cuda")
