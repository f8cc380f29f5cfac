"""Every depthwise-convolution path against ``F.conv2d(F.pad(x), w, groups=C)``, forward and backward."""

from __future__ import annotations

import time
import zlib

import pytest
import torch
import torch.nn.functional as F

from lightning_sparse.nn import depthwise
from lightning_sparse.nn.depthwise import (
    IMPLS,
    choose_impl,
    depthwise_conv2d,
    impl_timings,
    measure_depthwise,
    same_padding,
    set_depthwise_impl,
)

# (19, 3) and (3, 25) outgrow the 9 x 9 / 8 x 11 inputs: "same" padding crops their outer taps.
KERNELS = [(3, 3), (4, 4), (7, 2), (2, 7), (5, 1), (1, 4), (9, 3), (19, 3), (3, 25)]
PADDINGS = [0, (1, 2), (3, 0, 1, 2), "same"]


def _reference(x, w, bias, pad4):
    top, bottom, left, right = pad4
    return F.conv2d(F.pad(x, (left, right, top, bottom)), w, bias, groups=x.shape[1])


def _pad4(padding, kernel):
    if padding == "same":
        return same_padding(kernel)
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return tuple(padding)


def _fits(kernel, size, padding) -> bool:
    top, bottom, left, right = _pad4(padding, kernel)
    return size[0] + top + bottom >= kernel[0] and size[1] + left + right >= kernel[1]


CASES = [
    (k, size, p) for k in KERNELS for size in [(9, 9), (8, 11)] for p in PADDINGS if _fits(k, size, p)
]


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(depthwise, "_CHOICES", {})
    monkeypatch.setattr(depthwise, "_TIMINGS", {})
    monkeypatch.delenv("LIGHTNING_SPARSE_DEPTHWISE", raising=False)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kernel, size, padding", CASES)
def test_matches_reference_forward_and_backward(impl, kernel, size, padding) -> None:
    pad4 = _pad4(padding, kernel)
    h, w = size
    gen = torch.Generator().manual_seed(zlib.crc32(repr((kernel, size, padding)).encode()))
    x = torch.randn(2, 3, h, w, generator=gen, requires_grad=True)
    weight = torch.randn(3, 1, *kernel, generator=gen, requires_grad=True)
    for bias in (None, torch.randn(3, generator=gen, requires_grad=True)):
        leaves = (x, weight) if bias is None else (x, weight, bias)
        expected = _reference(x, weight, bias, pad4)
        out = depthwise_conv2d(x, weight, bias, padding=padding, impl=impl)
        assert out.shape == expected.shape
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
        grad_out = torch.randn(expected.shape, generator=gen)
        want = torch.autograd.grad(expected, leaves, grad_out)
        got = torch.autograd.grad(out, leaves, grad_out)
        for g, e in zip(got, want):
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("impl", IMPLS)
def test_gradcheck_float64(impl) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 1, 4, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=gen, dtype=torch.float64, requires_grad=True)
    fn = lambda x, w, b: depthwise_conv2d(x, w, b, padding=(2, 1, 0, 1), impl=impl)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))


def test_slak_shapes_match_reference() -> None:
    # The long kernels of SLaK on a small stage-4-like input: 13x5 and 5x13 on 7x7, 'same'.
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 7, 7, generator=gen)
    for kernel in [(13, 5), (5, 13), (5, 5)]:
        w = torch.randn(4, 1, *kernel, generator=gen)
        expected = _reference(x, w, None, same_padding(kernel))
        for impl in IMPLS:
            torch.testing.assert_close(
                depthwise_conv2d(x, w, padding="same", impl=impl), expected, rtol=1e-4, atol=1e-4
            )


def _fake_timings(winner: str, calls: list):
    def fake(shape, kernel_size, impls, repeats, padding, dtype, device, backward, prune):
        calls.append((tuple(shape), tuple(kernel_size), backward))
        return {i: (0.001 if i == winner else 1.0) for i in impls}

    return fake


def _spy(monkeypatch: pytest.MonkeyPatch, impl: str) -> list:
    used = []
    inner = depthwise._IMPL_FNS[impl]

    def spy(*args):
        used.append(impl)
        return inner(*args)

    monkeypatch.setitem(depthwise._IMPL_FNS, impl, spy)
    return used


def test_auto_measures_once_caches_and_uses_the_winner(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list = []
    monkeypatch.setattr(depthwise, "measure_depthwise", _fake_timings("fft", calls))
    used = _spy(monkeypatch, "fft")
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    w = torch.randn(3, 1, 5, 3, requires_grad=True)
    for batch in (4, 3, 4):  # batch 3 rounds up to 4: the same key
        out = depthwise_conv2d(x[:batch], w, padding="same")
        torch.testing.assert_close(out, _reference(x[:batch], w, None, same_padding((5, 3))))
    assert calls == [((4, 3, 8, 8), (5, 3), True)]
    assert used == ["fft"] * 3
    assert choose_impl((4, 3, 8, 8), (5, 3)) == "fft"
    assert impl_timings((4, 3, 8, 8), (5, 3)) == {"toeplitz": 1.0, "fft": 0.001, "torch": 1.0}
    assert len(calls) == 1
    # No gradient needed, or another shape: a new measurement each.
    with torch.no_grad():
        depthwise_conv2d(x, w, padding="same")
    depthwise_conv2d(x[:, :, :7], w, padding="same")
    assert calls[1:] == [((4, 3, 8, 8), (5, 3), False), ((4, 3, 7, 8), (5, 3), True)]


def test_auto_without_fakes_picks_a_real_path() -> None:
    x, w = torch.randn(2, 2, 6, 6), torch.randn(2, 1, 3, 3)
    out = depthwise_conv2d(x, w, padding=1)
    assert choose_impl((2, 2, 6, 6), (3, 3), padding=1, grad=False) in IMPLS
    assert sorted(impl_timings((2, 2, 6, 6), (3, 3), padding=1, grad=False)) == ["fft", "toeplitz", "torch"]
    torch.testing.assert_close(out, _reference(x, w, None, (1, 1, 1, 1)))


def test_forcing_skips_measurement(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_measure(*args, **kwargs):
        raise AssertionError("measured although forced")

    monkeypatch.setattr(depthwise, "measure_depthwise", no_measure)
    used = _spy(monkeypatch, "toeplitz")
    x, w = torch.randn(1, 2, 6, 6), torch.randn(2, 1, 3, 3)
    with set_depthwise_impl("toeplitz"):
        depthwise_conv2d(x, w, padding=1)
        assert choose_impl((1, 2, 6, 6), (3, 3)) == "toeplitz"
        depthwise_conv2d(x, w, padding=1, impl="fft")  # explicit requests win
    assert used == ["toeplitz"]
    monkeypatch.setenv("LIGHTNING_SPARSE_DEPTHWISE", "toeplitz")
    depthwise_conv2d(x, w, padding=1)
    assert used == ["toeplitz"] * 2
    monkeypatch.setenv("LIGHTNING_SPARSE_DEPTHWISE", "cutlass")
    with pytest.raises(ValueError, match="LIGHTNING_SPARSE_DEPTHWISE"):
        depthwise_conv2d(x, w, padding=1)


def test_measure_depthwise_times_the_requested_impls() -> None:
    t = measure_depthwise((1, 2, 8, 8), (4, 2), impls=("torch", "toeplitz"), repeats=1, padding=(1, 2, 0, 1))
    assert sorted(t) == ["toeplitz", "torch"] and all(s > 0 for s in t.values())
    assert "fft" not in measure_depthwise((1, 2, 8, 8), (3, 3), repeats=1, dtype=torch.bfloat16)


def test_measure_depthwise_prunes_slow_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    inner = depthwise._IMPL_FNS["shifted"]

    def slow(*args):
        calls.append(1)
        time.sleep(0.05)
        return inner(*args)

    monkeypatch.setitem(depthwise._IMPL_FNS, "shifted", slow)
    t = measure_depthwise((1, 2, 6, 6), (3, 3), impls=("toeplitz", "shifted"), repeats=3, prune=4.0)
    assert len(calls) == 1 and t["shifted"] >= 0.05 > 4 * t["toeplitz"]
    measure_depthwise((1, 2, 6, 6), (3, 3), impls=("toeplitz", "shifted"), repeats=3)
    assert len(calls) == 1 + 4


@pytest.mark.parametrize(
    "x_shape, w_shape, bias_shape, padding, impl, match",
    [
        ((1, 3, 8, 8), (3, 2, 3, 3), None, 1, "auto", "`weight` must be depthwise-shaped"),
        ((1, 3, 8, 8), (4, 1, 3, 3), None, 1, "auto", r"\(3, 1, kh, kw\)"),
        ((1, 3, 8, 8), (3, 3, 3), None, 1, "torch", "`weight`"),
        ((3, 8, 8), (3, 1, 3, 3), None, 1, "torch", "`x` must be 4-D"),
        ((1, 3, 8, 8), (3, 1, 3, 3), (4,), 1, "torch", "`bias` must have shape"),
        ((1, 3, 8, 8), (3, 1, 3, 3), None, 1, "cutlass", "`impl` must be 'auto' or one of"),
        ((1, 3, 8, 8), (3, 1, 3, 3), None, -1, "torch", "`padding`"),
        ((1, 3, 8, 8), (3, 1, 3, 3), None, (1, 1, 1), "torch", "`padding`"),
        ((1, 3, 8, 8), (3, 1, 3, 3), None, "valid", "torch", "'same'"),
        ((1, 3, 8, 8), (3, 1, 3, 3), None, 1.5, "torch", "`padding`"),
        ((1, 3, 4, 4), (3, 1, 7, 3), None, 1, "torch", "larger than the padded input"),
    ],
)
def test_bad_arguments_raise(x_shape, w_shape, bias_shape, padding, impl, match) -> None:
    bias = torch.zeros(bias_shape) if bias_shape else None
    with pytest.raises(ValueError, match=match):
        depthwise_conv2d(torch.zeros(x_shape), torch.zeros(w_shape), bias, padding=padding, impl=impl)


def test_other_bad_arguments_raise() -> None:
    x, w = torch.zeros(1, 2, 6, 6, dtype=torch.bfloat16), torch.zeros(2, 1, 3, 3, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="float32 or float64"):
        depthwise_conv2d(x, w, padding=1, impl="fft")
    with pytest.raises(ValueError, match="`impl` must be None or one of"):
        with set_depthwise_impl("cuda"):
            pass
    with pytest.raises(ValueError, match="`impls` must be drawn from"):
        measure_depthwise((1, 2, 6, 6), (3, 3), impls=("torch", "winograd"))
    with pytest.raises(ValueError, match="'fft' only for float32 or float64"):
        measure_depthwise((1, 2, 6, 6), (3, 3), impls=("fft",), dtype=torch.float16)
    with pytest.raises(ValueError, match="`repeats` must be >= 1"):
        measure_depthwise((1, 2, 6, 6), (3, 3), repeats=0)
