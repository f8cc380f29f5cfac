"""CPU kernels of the truly sparse layers: row-parallel CSR SpMM and a true SDDMM.

Two implementations of the same products, chosen once per process (:func:`implementation`):

* ``"cpp"`` (preferred): a small C++ extension (``csrc/sparse_kernels.cpp``) compiled with torch's
  ``cpp_extension`` on first use (about 10 s, cached on disk per source, compiler flags, torch
  version and CPU) whose loops run on **torch's own intra-op thread pool** (``at::parallel_for``):
  the kernels and torch's dense ops (the output layer, the loss, the optimizer) share one set of
  threads, so neither waits for the other's pool to wake up or to yield a core;
* ``"numba"``: the same loops compiled by numba (cached on disk where the package directory is
  writable), on numba's thread pool -- the fallback when no C++ compiler is available.

``LIGHTNING_SPARSE_KERNELS`` overrides the choice: ``cpp``, ``numba`` or ``torch`` (no CPU
kernels: :class:`~lightning_sparse.nn.SparseLinear` uses torch's sparse ops); unset or ``auto``
tries ``cpp`` and falls back to ``numba`` with a warning naming the build error.

Every kernel works on *feature-major* dense operands, i.e. ``X^T`` of shape ``(features, batch)``,
so that the inner loop of each kernel runs over one contiguous row of length ``batch`` and
vectorises:

* :func:`spmm` -- ``Y^T = A @ X^T (+ b)``: for each row ``r`` of the CSR matrix ``A``, the
  output row is ``sum_k a_k X^T[col_k]`` (rows in parallel, no write conflicts);
* :func:`spmm` with ``perm`` -- the same product with ``A``'s values gathered through a
  permutation, so ``W^T``'s products reuse ``W``'s values without materialising them;
* :func:`sddmm` -- ``(G^T X)`` sampled at the pattern of ``W``: one dot product of two contiguous
  rows per non-zero, computed only at the non-zeros (rows in parallel).

These are the kernels of "Nerva: a Truly Sparse Implementation of Neural Networks" (Wesselink et
al., 2024, arXiv:2407.17437), except that Nerva computes the weight gradient densely and then
gathers it; here it costs ``O(nnz * batch)``.

Threads: as many as torch's intra-op pool (``torch.get_num_threads()``), rows split into chunks of
equal non-zero count (``cpp``) or equal row count (``numba``), and one thread below
:data:`PARALLEL_MIN_WORK` multiply-adds. The numba pool's threading layer is numba's choice
(OpenMP where available; ``NUMBA_THREADING_LAYER`` overrides it); numba calls are serialised by a
lock (not every numba layer is re-entrant).
"""

from __future__ import annotations

import os
import threading
import types
import warnings
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ._cpp_build import build_cpp as _build_cpp  # a module global: tests replace it

__all__ = [
    "AVAILABLE",
    "feature_major",
    "IMPLEMENTATIONS",
    "PARALLEL_MIN_WORK",
    "SUPPORTED_DTYPES",
    "implementation",
    "sddmm",
    "spmm",
    "supports",
]

SUPPORTED_DTYPES = (torch.float32, torch.float64)
"""Value dtypes the numba kernels handle (others use the torch fallback)."""

IMPLEMENTATIONS = ("cpp", "numba")
"""The CPU kernel implementations, in order of preference (see the module docstring)."""

_CHOICES = ("auto", "cpp", "numba", "torch")
_REQUESTED = os.environ.get("LIGHTNING_SPARSE_KERNELS", "auto").strip().lower() or "auto"
if _REQUESTED not in _CHOICES:
    raise ValueError(
        f"LIGHTNING_SPARSE_KERNELS must be one of {_CHOICES}, got {os.environ['LIGHTNING_SPARSE_KERNELS']!r}."
    )

try:  # pragma: no cover - exercised through AVAILABLE
    if _REQUESTED == "torch":
        raise ImportError("disabled by LIGHTNING_SPARSE_KERNELS=torch")
    import numba
    from numba import prange

    AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the environment
    numba = None  # type: ignore[assignment]
    prange = range  # type: ignore[assignment,misc]
    AVAILABLE = False
"""Whether CPU kernels exist in this process (numba importable; the C++ kernels need numba as the
fallback they fall back to). ``False`` under ``LIGHTNING_SPARSE_KERNELS=torch``."""

_lock = threading.Lock()


PARALLEL_MIN_WORK = 1 << 20
"""Below this many multiply-adds (``nnz * batch``) a kernel runs on one thread: waking the
thread pool costs more than it saves, and the other core stays free for torch's own pool."""


def _njit(fn):  # type: ignore[no-untyped-def]
    """Compile ``fn`` twice: row-parallel (``prange``) and serial (``prange`` acts as ``range``)."""
    if not AVAILABLE:
        return fn, fn
    opts = {"fastmath": True, "cache": True, "nogil": True}
    # A distinct qualified name keeps the two compilations apart in numba's on-disk cache.
    serial = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial")
    serial.__qualname__ = fn.__qualname__ + "_serial"
    return numba.njit(parallel=True, **opts)(fn), numba.njit(parallel=False, **opts)(serial)


def _spmm_kernel(crow, col, vals, perm, use_perm, xt, bias, use_bias, out):  # type: ignore[no-untyped-def]
    # Four non-zeros per pass over the output row: a quarter of the loads/stores of `acc`.
    rows = crow.shape[0] - 1
    n = xt.shape[1]
    for r in prange(rows):
        acc = out[r]
        b = bias[r] if use_bias else 0
        for j in range(n):
            acc[j] = b
        k = crow[r]
        end = crow[r + 1]
        while k + 4 <= end:
            if use_perm:
                v0, v1, v2, v3 = vals[perm[k]], vals[perm[k + 1]], vals[perm[k + 2]], vals[perm[k + 3]]
            else:
                v0, v1, v2, v3 = vals[k], vals[k + 1], vals[k + 2], vals[k + 3]
            s0, s1, s2, s3 = xt[col[k]], xt[col[k + 1]], xt[col[k + 2]], xt[col[k + 3]]
            for j in range(n):
                acc[j] += v0 * s0[j] + v1 * s1[j] + v2 * s2[j] + v3 * s3[j]
            k += 4
        while k < end:
            v = vals[perm[k]] if use_perm else vals[k]
            src = xt[col[k]]
            for j in range(n):
                acc[j] += v * src[j]
            k += 1


def _sddmm_kernel(crow, col, gt, xt, zero, out):  # type: ignore[no-untyped-def]
    # Four non-zeros of one row per pass: the gradient row is loaded once for four dots.
    rows = crow.shape[0] - 1
    n = gt.shape[1]
    for r in prange(rows):
        g = gt[r]
        k = crow[r]
        end = crow[r + 1]
        while k + 4 <= end:
            x0, x1, x2, x3 = xt[col[k]], xt[col[k + 1]], xt[col[k + 2]], xt[col[k + 3]]
            a0 = zero
            a1 = zero
            a2 = zero
            a3 = zero
            for j in range(n):
                gj = g[j]
                a0 += gj * x0[j]
                a1 += gj * x1[j]
                a2 += gj * x2[j]
                a3 += gj * x3[j]
            out[k] = a0
            out[k + 1] = a1
            out[k + 2] = a2
            out[k + 3] = a3
            k += 4
        while k < end:
            x = xt[col[k]]
            s = zero
            for j in range(n):
                s += g[j] * x[j]
            out[k] = s
            k += 1


_spmm_parallel, _spmm_serial = _njit(_spmm_kernel)
_sddmm_parallel, _sddmm_serial = _njit(_sddmm_kernel)


_impl: Optional[str] = None
_impl_lock = threading.Lock()


_cpp_error: Optional[BaseException] = None
_cpp_loaded = False


def _ensure_cpp() -> None:
    """Build or load the C++ kernels once per process; re-raise the first failure on later calls."""
    global _cpp_error, _cpp_loaded
    if _cpp_loaded:
        return
    if _cpp_error is not None:
        raise _cpp_error
    with _impl_lock:
        if not _cpp_loaded and _cpp_error is None:
            try:
                _build_cpp()
                _cpp_loaded = True
            except Exception as err:  # no compiler, no ninja, a failed build
                _cpp_error = err
    if _cpp_error is not None:
        raise _cpp_error


def implementation() -> Optional[str]:
    """The CPU kernels this process uses: ``"cpp"``, ``"numba"`` or ``None`` (torch's sparse ops).

    Resolved on the first call (which compiles the C++ kernels if they are not cached yet): the
    ``LIGHTNING_SPARSE_KERNELS`` choice, or ``"cpp"`` falling back to ``"numba"`` (with a
    warning) when the extension cannot be built.

    Raises:
        RuntimeError: under ``LIGHTNING_SPARSE_KERNELS=cpp`` when the extension cannot be built.

    Examples:
        >>> implementation() in (*IMPLEMENTATIONS, None)
        True
    """
    global _impl
    if _impl is not None or not AVAILABLE:
        return _impl
    if _REQUESTED == "numba":
        _impl = "numba"
        return _impl
    try:
        _ensure_cpp()
        _impl = "cpp"
    except Exception as err:
        if _REQUESTED == "cpp":
            raise RuntimeError(f"LIGHTNING_SPARSE_KERNELS=cpp, but the C++ kernels could not be built: {err}") from err
        warnings.warn(
            "lightning_sparse: the C++ sparse kernels could not be built "
            f"({type(err).__name__}: ...{str(err)[-400:]}); using the numba kernels instead.",
            RuntimeWarning,
            stacklevel=2,
        )
        _impl = "numba"
    return _impl


def _resolve(impl: Optional[str]) -> Optional[str]:
    if impl is None:
        return implementation()
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"`impl` must be one of {IMPLEMENTATIONS}, got {impl!r}.")
    if not AVAILABLE:
        return None
    if impl == "cpp":
        _ensure_cpp()  # raises the build error
    return impl


def supports(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the numba kernels can compute in ``dtype`` on ``device``.

    True for float32/float64 on the CPU when numba is available.

    Examples:
        >>> supports(torch.device("cpu"), torch.float32) == AVAILABLE
        True
        >>> supports(torch.device("cpu"), torch.bfloat16)
        False
    """
    return AVAILABLE and torch.device(device).type == "cpu" and dtype in SUPPORTED_DTYPES


def _threads() -> None:
    # Follow torch's intra-op thread count (e.g. one per process under DDP on CPU).
    wanted = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != wanted:
        numba.set_num_threads(wanted)


_TRANSPOSE_DTYPES = (torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def feature_major(x: Tensor, impl: Optional[str] = None) -> Tensor:
    """``x.t().contiguous()`` for a 2-D ``(batch, features)`` tensor: ``(features, batch)``.

    No copy when ``x`` already lies in feature-major memory (a layer's ``batch_major`` output);
    with the C++ kernels a tiled, multi-threaded transpose (torch's copy of a transposed matrix
    is single-threaded and strided), else torch's.

    Examples:
        >>> feature_major(torch.arange(6.0).view(2, 3))
        tensor([[0., 3.],
                [1., 4.],
                [2., 5.]])
    """
    if x.dim() == 2 and x.device.type == "cpu" and x.dtype in _TRANSPOSE_DTYPES and _resolve(impl) == "cpp":
        return torch.ops.lightning_sparse.feature_major(x.detach())
    return x.detach().t().contiguous()


def sparse_linear(
    x: Tensor,
    values: Tensor,
    bias: Optional[Tensor],
    structure: tuple[Tensor, Tensor, Tensor, Tensor, Tensor],
    contiguous_output: bool = False,
) -> Tensor:
    """``x W^T + b`` for ``x`` ``(N, in)`` and a CSR ``W``, differentiable in ``x``, ``values`` and
    ``bias``: the C++ kernels' autograd op (forward and backward without Python in between).

    Args:
        x: ``(N, in)`` of ``values``' dtype (float32 / float64, CPU).
        values: ``(nnz,)`` non-zeros of ``W`` in CSR order.
        bias: optional ``(out,)``.
        structure: ``(crow, col, t_crow, t_col, t_perm)``: the CSR of ``W`` and of ``W^T``, with
            ``t_perm`` mapping the non-zeros of ``W^T`` to ``values``.
        contiguous_output: return ``(N, out)`` contiguous instead of in feature-major memory.

    Returns:
        ``(N, out)``, strides ``(1, N)`` (a tensor of its own, not a view) or contiguous.

    Raises:
        RuntimeError: if the C++ kernels are not available (see :func:`implementation`).

    Examples:
        >>> from lightning_sparse.nn import csr_structure, transpose_structure
        >>> mask = torch.tensor([[True, False], [True, True]])
        >>> crow, col, row = csr_structure(mask)
        >>> structure = (crow, col) + transpose_structure(row, col, 2)
        >>> values = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
        >>> y = sparse_linear(torch.ones(1, 2), values, None, structure)
        >>> y.tolist()
        [[1.0, 5.0]]
        >>> y.sum().backward()
        >>> values.grad.tolist()
        [1.0, 1.0, 1.0]
    """
    if _resolve("cpp") is None:
        raise RuntimeError("sparse_linear needs the C++ kernels; numba (their dependency here) is not installed.")
    crow, col, t_crow, t_col, t_perm = structure
    return torch.ops.lightning_sparse.sparse_linear(
        x, values, bias, crow, col, t_crow, t_col, t_perm, PARALLEL_MIN_WORK, contiguous_output
    )


def spmm(
    crow: Tensor,
    col: Tensor,
    values: Tensor,
    xt: Tensor,
    bias: Optional[Tensor] = None,
    perm: Optional[Tensor] = None,
    impl: Optional[str] = None,
    batch_major: bool = False,
) -> Tensor:
    """``A @ X^T (+ bias[:, None])`` for a CSR matrix ``A`` and a feature-major ``X^T``.

    Args:
        crow: int32 or int64 ``(rows + 1,)`` row pointers of ``A``.
        col: ``(nnz,)`` column of each non-zero, ``crow``'s dtype.
        values: ``(nnz,)`` non-zeros of ``A`` -- or of another matrix, gathered through ``perm``.
        xt: dense ``(cols, batch)``; made contiguous if it is not.
        bias: optional ``(rows,)`` added to every column of the result.
        perm: optional ``(nnz,)`` of ``col``'s dtype; the ``k``-th non-zero of ``A`` is
            ``values[perm[k]]``.
        impl: ``"cpp"`` or ``"numba"``; default :func:`implementation`.
        batch_major: return the transpose ``(batch, rows)`` instead, with strides ``(1, batch)``:
            the same memory, but a tensor of its own rather than a view, so autograd allows
            in-place ops on it (``nn.ReLU(inplace=True)`` after a layer) at no extra cost.

    Returns:
        Contiguous ``(rows, batch)`` tensor of ``values``' dtype (``batch_major``: its transpose).

    Examples:
        >>> crow, col = torch.tensor([0, 1, 3]), torch.tensor([1, 0, 1])
        >>> spmm(crow, col, torch.tensor([2.0, 1.0, 3.0]), torch.tensor([[1.0, 2.0], [10.0, 20.0]]))
        tensor([[20., 40.],
                [31., 62.]])
    """
    impl = _resolve(impl)
    if impl is None:
        raise RuntimeError("no CPU kernels (numba missing or LIGHTNING_SPARSE_KERNELS=torch); use the torch path of SparseLinear.")
    if impl == "cpp":
        return torch.ops.lightning_sparse.spmm(
            crow, col, values.detach(), perm, xt.detach(), None if bias is None else bias.detach(), PARALLEL_MIN_WORK,
            batch_major,
        )
    xt = xt.detach().contiguous()
    rows, n = crow.numel() - 1, xt.shape[1]
    result = torch.empty_strided((n, rows), (1, n), dtype=values.dtype) if batch_major else torch.empty(rows, n, dtype=values.dtype)
    out = result.t() if batch_major else result  # (rows, n), C-contiguous either way
    if out.numel() == 0:
        return result
    v = values.detach().numpy()
    p = perm.numpy() if perm is not None else crow[:1].numpy()
    b = bias.detach().numpy() if bias is not None else v[:0]
    kernel = _spmm_parallel if col.numel() * xt.shape[1] >= PARALLEL_MIN_WORK else _spmm_serial
    with _lock:
        _threads()
        kernel(
            crow.numpy(), col.numpy(), v, p, perm is not None, xt.numpy(), b, bias is not None, out.numpy()
        )
    return result


def sddmm(crow: Tensor, col: Tensor, gt: Tensor, xt: Tensor, impl: Optional[str] = None) -> Tensor:
    """``(G^T X)`` at the non-zeros of a CSR pattern, in CSR order.

    Args:
        crow: int32 or int64 ``(rows + 1,)`` row pointers of the pattern.
        col: ``(nnz,)`` column of each non-zero, ``crow``'s dtype.
        gt: dense ``(rows, batch)`` (e.g. the output gradient, feature-major).
        xt: dense ``(cols, batch)`` (e.g. the layer input, feature-major).
        impl: ``"cpp"`` or ``"numba"``; default :func:`implementation`.

    Returns:
        ``(nnz,)`` tensor; entry ``k`` is ``gt[row_k] . xt[col_k]``.

    Examples:
        >>> crow, col = torch.tensor([0, 1, 2]), torch.tensor([1, 0])
        >>> sddmm(crow, col, torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        tensor([2., 3.])
    """
    impl = _resolve(impl)
    if impl is None:
        raise RuntimeError("no CPU kernels (numba missing or LIGHTNING_SPARSE_KERNELS=torch); use the torch path of SparseLinear.")
    if impl == "cpp":
        return torch.ops.lightning_sparse.sddmm(crow, col, gt.detach(), xt.detach(), PARALLEL_MIN_WORK)
    gt = gt.detach().contiguous()
    xt = xt.detach().contiguous()
    out = torch.empty(col.numel(), dtype=gt.dtype)
    if out.numel() == 0:
        return out
    zero = np.zeros((), dtype=out.numpy().dtype)[()]
    kernel = _sddmm_parallel if col.numel() * gt.shape[1] >= PARALLEL_MIN_WORK else _sddmm_serial
    with _lock:
        _threads()
        kernel(crow.numpy(), col.numpy(), gt.numpy(), xt.numpy(), zero, out.numpy())
    return out
