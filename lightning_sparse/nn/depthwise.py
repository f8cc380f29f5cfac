"""Fast depthwise 2-D convolution for large and rectangular kernels, in plain PyTorch.

SLaK, "More ConvNets in the 2020s: Scaling up Kernels Beyond 51x51 using Sparsity" (Liu et al.,
ICLR 2023, arXiv:2207.03620), builds its large-kernel layer from depthwise convolutions with
``M x N`` and ``N x M`` kernels (``M`` up to 51, ``N = 5``) plus a ``5 x 5`` one. The official code
runs them with a custom CUDA (cutlass) kernel; stock ``F.conv2d(..., groups=C)`` is slow for them,
on CPU above all. :func:`depthwise_conv2d` computes the same convolution through one of
:data:`IMPLS`, all differentiable through torch autograd:

* ``"torch"`` -- ``F.conv2d(F.pad(x), weight, groups=C)``, the reference;
* ``"fft"`` -- ``irfft2(rfft2(x) * conj(rfft2(w)))`` on a grid of ``max(H + max(top, bottom),
  kh, Ho)`` by the same for the width (rounded up to a 2-3-5-7-smooth size): the kernel is placed
  circularly shifted by the padding, so the input is never padded and the wrap-around lands
  outside the output. The cost does not depend on the kernel size until the kernel outgrows the
  input;
* ``"toeplitz"`` -- for ``kh x kw`` with ``kw`` small, the long axis as a banded (Toeplitz)
  matrix per channel and short-axis tap, applied to ``kw`` shifted copies of the input in one
  batched matmul ``(C, Ho, kw*H) @ (C, kw*H, B*Wo)``; the long-axis padding lives in the matrix.
  Kernels with ``kh < kw`` run transposed;
* ``"shifted"`` -- the sum over the short-axis taps of a ``kh x 1`` depthwise convolution of the
  input shifted by the tap (``min(kh, kw)`` stock calls on long 1-D kernels);
* ``"auto"`` -- the fastest of ``"toeplitz"``, ``"fft"`` and ``"torch"`` for this (shape,
  kernel, padding, dtype, device, gradient), timed once on random tensors of that shape and
  cached (see :func:`choose_impl`, :func:`impl_timings`); :func:`set_depthwise_impl` or the
  environment variable ``LIGHTNING_SPARSE_DEPTHWISE`` force one path for ``"auto"`` calls.
  ``"shifted"`` is not a candidate: on CPU it was never more than a few percent ahead and at
  times far behind (oneDNN on the sliced input).

``"fft"`` and ``"shifted"`` first drop the kernel rows/columns that only ever meet padding (a
47-tap kernel on a 14-pixel axis with ``"same"`` padding keeps 27), which ``"toeplitz"`` does by
construction; ``"torch"`` runs the stock call unchanged.

Only stride 1, dilation 1 and zero padding are supported (what SLaK uses). Results agree with
the reference to float32 rounding (about ``1e-5`` relative), not bit for bit, so under DDP set
one path with :func:`set_depthwise_impl` if ranks must compute identically.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "IMPLS",
    "choose_impl",
    "depthwise_conv2d",
    "impl_timings",
    "measure_depthwise",
    "same_padding",
    "set_depthwise_impl",
]

IMPLS = ("torch", "fft", "toeplitz", "shifted")
"""Implementations :func:`depthwise_conv2d` can run (plus ``"auto"``, which picks one)."""

_FFT_DTYPES = (torch.float32, torch.float64)
_ENV = "LIGHTNING_SPARSE_DEPTHWISE"
_forced: Optional[str] = None
_CHOICES: dict[tuple, str] = {}
"""Cache of ``"auto"``: key (see :func:`_key`) -> chosen implementation."""
_TIMINGS: dict[tuple, dict[str, float]] = {}
"""Seconds per call of every candidate, measured when the choice was made."""

Padding = Union[int, str, Sequence[int]]


def same_padding(kernel_size: Sequence[int]) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` keeping the spatial size; even kernels pad one more after.

    Matches ``padding="same"`` of :func:`torch.nn.functional.conv2d`.

    Examples:
        >>> same_padding((51, 5))
        (25, 25, 2, 2)
        >>> same_padding((4, 1))
        (1, 2, 0, 0)
    """
    kh, kw = kernel_size
    return ((kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2)


def _pad4(padding: Padding, kernel_size: tuple[int, int]) -> tuple[int, int, int, int]:
    if isinstance(padding, str):
        if padding != "same":
            raise ValueError(f"`padding` as a string must be 'same', got {padding!r}.")
        return same_padding(kernel_size)
    pad: tuple = ()
    if isinstance(padding, int):
        pad = (padding,) * 4
    elif isinstance(padding, Sequence) and len(padding) == 2:
        pad = (padding[0], padding[0], padding[1], padding[1])
    elif isinstance(padding, Sequence) and len(padding) == 4:
        pad = tuple(padding)
    if len(pad) != 4 or not all(isinstance(p, int) and p >= 0 for p in pad):
        raise ValueError(
            "`padding` must be 'same', a non-negative int, (ph, pw) or (top, bottom, left, right),"
            f" got {padding!r}."
        )
    return pad  # type: ignore[return-value]


def _check(x: Tensor, weight: Tensor, bias: Optional[Tensor], padding: Padding, impl: str):
    if impl != "auto" and impl not in IMPLS:
        raise ValueError(f"`impl` must be 'auto' or one of {IMPLS}, got {impl!r}.")
    if x.dim() != 4:
        raise ValueError(f"`x` must be 4-D (batch, channels, height, width), got shape {tuple(x.shape)}.")
    c = x.shape[1]
    if weight.dim() != 4 or weight.shape[0] != c or weight.shape[1] != 1:
        raise ValueError(
            f"`weight` must be depthwise-shaped ({c}, 1, kh, kw) for {c} input channels, got"
            f" shape {tuple(weight.shape)}."
        )
    if bias is not None and tuple(bias.shape) != (c,):
        raise ValueError(f"`bias` must have shape ({c},), got {tuple(bias.shape)}.")
    kh, kw = weight.shape[2:]
    pad = _pad4(padding, (kh, kw))
    if x.shape[2] + pad[0] + pad[1] < kh or x.shape[3] + pad[2] + pad[3] < kw:
        raise ValueError(
            f"`weight`'s kernel {kh}x{kw} is larger than the padded input"
            f" {x.shape[2] + pad[0] + pad[1]}x{x.shape[3] + pad[2] + pad[3]}."
        )
    return pad


def _conv_torch(x: Tensor, weight: Tensor, pad: tuple[int, int, int, int]) -> Tensor:
    if pad[0] == pad[1] and pad[2] == pad[3]:  # symmetric: let conv2d pad (no copy)
        return F.conv2d(x, weight, padding=(pad[0], pad[2]), groups=x.shape[1])
    return F.conv2d(F.pad(x, (pad[2], pad[3], pad[0], pad[1])), weight, groups=x.shape[1])


def _fast_len(n: int) -> int:
    # Smallest 2-3-5-7-smooth integer >= n: FFT libraries are fastest on those.
    while True:
        m = n
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _crop_axis(size: int, k: int, before: int, after: int) -> tuple[int, int, int, int]:
    # Taps [lo, hi] are the only ones that ever meet the input along this axis.
    out = size + before + after - k + 1
    lo, hi = max(0, before - out + 1), min(k - 1, before + size - 1)
    return lo, hi + 1, before - lo, out - 1 - size + (hi - lo + 1) - (before - lo)


def _crop_kernel(x: Tensor, weight: Tensor, pad: tuple[int, int, int, int]):
    """Drop the kernel rows/columns that only ever meet padding (kernels larger than the input)."""
    r0, r1, top, bottom = _crop_axis(x.shape[2], weight.shape[2], pad[0], pad[1])
    c0, c1, left, right = _crop_axis(x.shape[3], weight.shape[3], pad[2], pad[3])
    return weight[:, :, r0:r1, c0:c1], (top, bottom, left, right)


def _conv_fft(x: Tensor, weight: Tensor, pad: tuple[int, int, int, int]) -> Tensor:
    weight, pad = _crop_kernel(x, weight, pad)
    h, w = x.shape[2:]
    kh, kw = weight.shape[2:]
    top, bottom, left, right = pad
    ho, wo = h + top + bottom - kh + 1, w + left + right - kw + 1
    # Circular correlation on an n1 x n2 grid equals the padded linear one on the first ho x wo
    # outputs once the kernel is rolled back by (top, left) and n1 >= max(h + max(top, bottom), ho).
    n1 = _fast_len(max(h + max(top, bottom), kh, ho))
    n2 = _fast_len(max(w + max(left, right), kw, wo))
    k = F.pad(weight[:, 0], (0, n2 - kw, 0, n1 - kh)).roll((-top, -left), dims=(1, 2))  # (C, n1, n2)
    xf = torch.fft.rfft2(x, s=(n1, n2))  # (B, C, n1, n2 // 2 + 1)
    y = torch.fft.irfft2(xf * torch.fft.rfft2(k).conj(), s=(n1, n2))
    return y[:, :, :ho, :wo].contiguous()


def _toeplitz_band(weight: Tensor, h: int, ho: int, top: int) -> Tensor:
    # band[c, j, i, r] = weight[c, 0, r - i + top, j] (zero off the kernel): output row i of
    # tap column j reads input row r. Built as windows of one zero-padded tap sequence, so the
    # backward is a cheap unfold_backward. Negative pads crop.
    kh = weight.shape[2]
    seq = F.pad(weight[:, 0].transpose(1, 2), (ho - 1 - top, h + top - kh))  # (C, kw, ho + h - 1)
    return seq.unfold(2, h, 1).flip(2)  # (C, kw, ho, h)


def _toeplitz(x: Tensor, weight: Tensor, pad: tuple[int, int, int, int]) -> Tensor:
    # Long axis = height. Returns a (B, C, ho, wo) view of a (C, ho, B, wo) tensor.
    b, c, h, w = x.shape
    kh, kw = weight.shape[2:]
    top, bottom, left, right = pad
    ho, wo = h + top + bottom - kh + 1, w + left + right - kw + 1
    band = _toeplitz_band(weight, h, ho, top).transpose(1, 2).reshape(c, ho, kw * h)
    # kw shifted copies of the input: (C, kw, h, B, wo) -> (C, kw * h, B * wo)
    xs = F.pad(x, (left, right)).permute(1, 2, 0, 3).unfold(3, wo, 1)  # (C, h, B, kw, wo)
    xs = xs.permute(0, 3, 1, 2, 4).reshape(c, kw * h, b * wo)
    y = torch.bmm(band, xs)  # (C, ho, B * wo)
    return y.view(c, ho, b, wo).permute(2, 0, 1, 3)


def _conv_toeplitz(x: Tensor, weight: Tensor, pad: tuple[int, int, int, int]) -> Tensor:
    if weight.shape[2] < weight.shape[3]:  # long axis along the width: run transposed
        y = _toeplitz(x.transpose(2, 3), weight.transpose(2, 3), (pad[2], pad[3], pad[0], pad[1]))
        return y.transpose(2, 3).contiguous()
    return _toeplitz(x, weight, pad).contiguous()


def _conv_shifted(x: Tensor, weight: Tensor, pad: tuple[int, int, int, int]) -> Tensor:
    weight, pad = _crop_kernel(x, weight, pad)
    kh, kw = weight.shape[2:]
    if kh < kw:
        y = _conv_shifted(x.transpose(2, 3), weight.transpose(2, 3), (pad[2], pad[3], pad[0], pad[1]))
        return y.transpose(2, 3).contiguous()
    c, wo = x.shape[1], x.shape[3] + pad[2] + pad[3] - kw + 1
    xp = F.pad(x, (pad[2], pad[3]))
    sym = pad[0] == pad[1]
    if not sym:
        xp = F.pad(xp, (0, 0, pad[0], pad[1]))
    y = None
    for j in range(kw):  # a kh x 1 convolution of the input shifted by j columns
        part = F.conv2d(xp[..., j : j + wo], weight[..., j : j + 1], padding=(pad[0] * sym, 0), groups=c)
        y = part if y is None else y + part
    return y


_IMPL_FNS = {"torch": _conv_torch, "fft": _conv_fft, "toeplitz": _conv_toeplitz, "shifted": _conv_shifted}


def _candidates(dtype: torch.dtype) -> tuple[str, ...]:
    # Likely winners first, so that the slow paths can be dropped after their warm-up.
    # "shifted" is left out: never more than a few percent ahead, and at times 10x behind.
    return tuple(i for i in ("toeplitz", "fft", "torch") if i != "fft" or dtype in _FFT_DTYPES)


def _key(shape, kernel_size, pad, dtype, device, grad) -> tuple:
    # The batch is rounded up to a power of two: a smaller last batch reuses the choice.
    batch = 1 << max(int(shape[0]) - 1, 0).bit_length()
    dims = (*map(int, shape[1:]), *map(int, kernel_size), *pad)
    return (batch, *dims, dtype, torch.device(device).type, bool(grad))


def measure_depthwise(
    shape: Sequence[int],
    kernel_size: Sequence[int],
    impls: Optional[Sequence[str]] = None,
    repeats: int = 3,
    padding: Padding = "same",
    dtype: torch.dtype = torch.float32,
    device: Union[str, torch.device] = "cpu",
    backward: bool = True,
    prune: Optional[float] = None,
) -> dict[str, float]:
    """Seconds per call (forward + backward w.r.t. input and weight) of each implementation.

    Runs every implementation once to warm up, then ``repeats`` times, and keeps the fastest
    run (the least disturbed by other processes). Tensors are random, of the given shape.

    Args:
        shape: input shape ``(B, C, H, W)``.
        kernel_size: ``(kh, kw)``.
        impls: implementations to time; default all of :data:`IMPLS` that support ``dtype``.
        repeats: timed runs per implementation (at least 1).
        padding: as in :func:`depthwise_conv2d`; default ``"same"``.
        dtype: tensor dtype.
        device: tensor device.
        backward: also time the backward pass (``False``: forward only, no autograd graph).
        prune: if set, an implementation whose warm-up is more than ``prune`` times slower
            than the fastest so far is not timed further; its warm-up time is reported
            (``"auto"`` uses 4, so a slow path costs one run, not ``repeats + 1``).

    Returns:
        ``{impl: seconds}``.

    Raises:
        ValueError: for an unknown implementation, ``"fft"`` with a dtype other than
            float32/float64, or ``repeats < 1``.

    Examples:
        >>> t = measure_depthwise((1, 2, 8, 8), (7, 3), impls=("torch", "fft"), repeats=1)
        >>> sorted(t), all(s > 0 for s in t.values())
        (['fft', 'torch'], True)
    """
    if impls is None:
        impls = tuple(i for i in IMPLS if i != "fft" or dtype in _FFT_DTYPES)
    bad = [i for i in impls if i not in IMPLS]
    if bad:
        raise ValueError(f"`impls` must be drawn from {IMPLS}, got {bad}.")
    if "fft" in impls and dtype not in _FFT_DTYPES:
        raise ValueError(f"`impls` may hold 'fft' only for float32 or float64, got {dtype}.")
    if repeats < 1:
        raise ValueError(f"`repeats` must be >= 1, got {repeats}.")
    kh, kw = kernel_size
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=gen, dtype=dtype).to(device).requires_grad_(backward)
    weight = torch.randn(shape[1], 1, kh, kw, generator=gen, dtype=dtype).to(device).requires_grad_(backward)
    pad = _check(x, weight, None, padding, "torch")
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    times = {}
    with torch.set_grad_enabled(backward):
        for impl in impls:
            best = float("inf")
            for r in range(repeats + 1):
                sync()
                start = time.perf_counter()
                y = _IMPL_FNS[impl](x, weight, pad)
                if backward:
                    y.sum().backward()
                sync()
                elapsed = time.perf_counter() - start
                x.grad = weight.grad = None
                del y
                if r:  # the first run warms up
                    best = min(best, elapsed)
                elif prune is not None and times and elapsed > prune * min(times.values()):
                    best = elapsed
                    break
            times[impl] = best
    return times


def _forced_impl() -> Optional[str]:
    impl = _forced or os.environ.get(_ENV) or None
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"`{_ENV}` must be one of {IMPLS}, got {impl!r}.")
    return impl


def _measured(shape, kernel_size, padding, dtype, device, grad, when_missing: dict) -> tuple:
    """The cache key of this case, timing the candidates first when ``when_missing`` lacks it
    (the choice is kept if one was already made)."""
    pad = _pad4(padding, tuple(kernel_size))
    key = _key(shape, kernel_size, pad, dtype, device, grad)
    if key not in when_missing:
        times = measure_depthwise(shape, kernel_size, _candidates(dtype), 2, pad, dtype, device, grad, 4.0)
        _TIMINGS[key] = times
        _CHOICES.setdefault(key, min(times, key=times.__getitem__))
    return key


def choose_impl(
    shape: Sequence[int],
    kernel_size: Sequence[int],
    padding: Padding = "same",
    dtype: torch.dtype = torch.float32,
    device: Union[str, torch.device] = "cpu",
    grad: bool = True,
) -> str:
    """The implementation ``impl="auto"`` uses for this case: forced, cached, or timed now.

    The first call for a (shape, kernel, padding, dtype, device type, grad) key times every
    candidate with :func:`measure_depthwise` (two runs after a warm-up; a path whose warm-up is
    4x slower than the best so far is dropped after it) on random tensors of that shape
    and caches the fastest. The batch size in the key is rounded up to a power of two, so a
    smaller last batch does not trigger a new measurement.

    Args:
        shape: input shape ``(B, C, H, W)``.
        kernel_size: ``(kh, kw)``.
        padding: as in :func:`depthwise_conv2d`; default ``"same"``.
        dtype: input dtype (``"fft"`` is a candidate for float32/float64 only).
        device: input device.
        grad: whether the backward pass runs too (timed with it when ``True``).

    Returns:
        One of :data:`IMPLS`.

    Raises:
        ValueError: for a bad ``padding`` or a ``LIGHTNING_SPARSE_DEPTHWISE`` value not in
            :data:`IMPLS`.

    Examples:
        >>> with set_depthwise_impl("fft"):
        ...     choose_impl((8, 96, 56, 56), (51, 5))
        'fft'
        >>> choose_impl((1, 2, 9, 9), (5, 5)) in IMPLS
        True
    """
    forced = _forced_impl()
    if forced is not None:
        return forced
    key = _measured(shape, kernel_size, padding, dtype, device, grad, when_missing=_CHOICES)
    return _CHOICES[key]


def impl_timings(
    shape: Sequence[int],
    kernel_size: Sequence[int],
    padding: Padding = "same",
    dtype: torch.dtype = torch.float32,
    device: Union[str, torch.device] = "cpu",
    grad: bool = True,
) -> dict[str, float]:
    """Seconds per call of each candidate behind ``"auto"``'s choice for this case.

    Measures (and caches the choice, as :func:`choose_impl` does) if not measured yet, even
    when a path is forced. Arguments as in :func:`choose_impl`.

    Examples:
        >>> t = impl_timings((1, 2, 9, 9), (5, 5))
        >>> sorted(t), min(t, key=t.get) == choose_impl((1, 2, 9, 9), (5, 5))
        (['fft', 'toeplitz', 'torch'], True)
    """
    key = _measured(shape, kernel_size, padding, dtype, device, grad, when_missing=_TIMINGS)
    return dict(_TIMINGS[key])


@contextlib.contextmanager
def set_depthwise_impl(impl: Optional[str]) -> Iterator[None]:
    """Force the implementation behind ``impl="auto"`` inside a ``with`` block.

    ``None`` restores automatic choice. Explicit ``impl=`` arguments are not affected. The
    environment variable ``LIGHTNING_SPARSE_DEPTHWISE`` does the same process-wide (this
    context manager takes precedence).

    Raises:
        ValueError: if ``impl`` is not ``None`` or one of :data:`IMPLS`.

    Examples:
        >>> x, w = torch.randn(1, 2, 6, 6), torch.randn(2, 1, 3, 3)
        >>> with set_depthwise_impl("torch"):
        ...     y = depthwise_conv2d(x, w, padding=1)
        >>> y.shape
        torch.Size([1, 2, 6, 6])
    """
    global _forced
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"`impl` must be None or one of {IMPLS}, got {impl!r}.")
    previous, _forced = _forced, impl
    try:
        yield
    finally:
        _forced = previous


def depthwise_conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor] = None,
    padding: Padding = 0,
    impl: str = "auto",
) -> Tensor:
    """Depthwise 2-D convolution (stride 1, zero padding), through a choice of implementations.

    Equals ``F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias, groups=C)``; the large
    and rectangular kernels of SLaK ("More ConvNets in the 2020s: Scaling up Kernels Beyond
    51x51 using Sparsity", Liu et al., 2023, arXiv:2207.03620) run much faster through
    ``"fft"`` or ``"toeplitz"`` (see the module docstring).

    Args:
        x: input ``(B, C, H, W)``.
        weight: depthwise kernel ``(C, 1, kh, kw)``; any size, even or rectangular.
        bias: optional ``(C,)``.
        padding: ``"same"``, an int, ``(ph, pw)`` or ``(top, bottom, left, right)``.
        impl: ``"auto"`` or one of :data:`IMPLS`.

    Returns:
        ``(B, C, H + top + bottom - kh + 1, W + left + right - kw + 1)``.

    Raises:
        ValueError: for a non-4-D input, a weight not shaped ``(C, 1, kh, kw)``, a bias not
            ``(C,)``, a bad padding, a kernel larger than the padded input, or an unknown
            ``impl``.

    Examples:
        >>> x, w = torch.randn(2, 3, 10, 12), torch.randn(3, 1, 7, 2)
        >>> ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 1, 3, 3)), w, groups=3)
        >>> y = depthwise_conv2d(x, w, padding="same", impl="fft")
        >>> y.shape, torch.allclose(y, ref, atol=1e-5)
        (torch.Size([2, 3, 10, 12]), True)
    """
    pad = _check(x, weight, bias, padding, impl)
    if impl == "auto":
        grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
        impl = choose_impl(x.shape, weight.shape[2:], pad, x.dtype, x.device, grad)
    if impl == "fft" and x.dtype not in _FFT_DTYPES:
        raise ValueError(f"`impl`='fft' needs a float32 or float64 input, got {x.dtype}.")
    y = _IMPL_FNS[impl](x, weight, pad)
    return y if bias is None else y + bias[:, None, None]

