"""CPU kernels of the truly sparse layers: row-parallel CSR SpMM and a true SDDMM.

Compiled with numba on first use (no build step; cached on disk where the package directory is
writable). Every kernel works on *feature-major* dense operands, i.e. ``X^T`` of shape
``(features, batch)``, so that the inner loop of each kernel runs over one contiguous row of
length ``batch`` and vectorises:

* :func:`spmm` -- ``Y^T = A @ X^T (+ b)``: for each row ``r`` of the CSR matrix ``A``, the
  output row is ``sum_k a_k X^T[col_k]`` (rows in parallel, no write conflicts);
* :func:`spmm` with ``perm`` -- the same product with ``A``'s values gathered through a
  permutation, so ``W^T``'s products reuse ``W``'s values without materialising them;
* :func:`sddmm` -- ``(G^T X)`` sampled at the pattern of ``W``: one dot product of two contiguous
  rows per non-zero, computed only at the non-zeros (rows in parallel).

These are the kernels of "Nerva: a Truly Sparse Implementation of Neural Networks" (Wesselink et
al., 2024, arXiv:2407.17437), except that Nerva computes the weight gradient densely and then
gathers it; here it costs ``O(nnz * batch)``.

Threads: as many as torch's intra-op pool (``torch.get_num_threads()``), and one thread below
:data:`PARALLEL_MIN_WORK` multiply-adds. numba picks its threading layer (OpenMP where
available; ``NUMBA_THREADING_LAYER`` overrides it). Measured on 2 cores for a 1024 x 3072 layer
at density 0.0078, batch 100: 0.11 ms with the OpenMP layer, 0.26 ms with ``workqueue`` (its
wake-up costs more than the second thread saves), 0.21 ms on one thread. On a machine busy with
other processes an OpenMP region can wait for a descheduled thread (numba's pool and torch's are
separate); ``NUMBA_THREADING_LAYER=workqueue`` avoids that at the cost above. Calls are
serialised by a lock (not every layer is re-entrant).

When numba is missing (or ``LIGHTNING_SPARSE_KERNELS=torch``), :data:`AVAILABLE` is ``False``
and :class:`~lightning_sparse.nn.SparseLinear` falls back to torch's sparse ops.
"""

from __future__ import annotations

import os
import threading
import types
from typing import Optional

import numpy as np
import torch
from torch import Tensor

__all__ = ["AVAILABLE", "PARALLEL_MIN_WORK", "SUPPORTED_DTYPES", "sddmm", "spmm", "supports"]

SUPPORTED_DTYPES = (torch.float32, torch.float64)
"""Value dtypes the numba kernels handle (others use the torch fallback)."""

try:  # pragma: no cover - exercised through AVAILABLE
    if os.environ.get("LIGHTNING_SPARSE_KERNELS", "").lower() == "torch":
        raise ImportError("disabled by LIGHTNING_SPARSE_KERNELS=torch")
    import numba
    from numba import prange

    AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the environment
    numba = None  # type: ignore[assignment]
    prange = range  # type: ignore[assignment,misc]
    AVAILABLE = False

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


def spmm(
    crow: Tensor,
    col: Tensor,
    values: Tensor,
    xt: Tensor,
    bias: Optional[Tensor] = None,
    perm: Optional[Tensor] = None,
) -> Tensor:
    """``A @ X^T (+ bias[:, None])`` for a CSR matrix ``A`` and a feature-major ``X^T``.

    Args:
        crow: int64 ``(rows + 1,)`` row pointers of ``A``.
        col: int64 ``(nnz,)`` column of each non-zero.
        values: ``(nnz,)`` non-zeros of ``A`` -- or of another matrix, gathered through ``perm``.
        xt: dense ``(cols, batch)``; made contiguous if it is not.
        bias: optional ``(rows,)`` added to every column of the result.
        perm: optional int64 ``(nnz,)``; the ``k``-th non-zero of ``A`` is ``values[perm[k]]``.

    Returns:
        Contiguous ``(rows, batch)`` tensor of ``values``' dtype.

    Examples:
        >>> crow, col = torch.tensor([0, 1, 3]), torch.tensor([1, 0, 1])
        >>> spmm(crow, col, torch.tensor([2.0, 1.0, 3.0]), torch.tensor([[1.0, 2.0], [10.0, 20.0]]))
        tensor([[20., 40.],
                [31., 62.]])
    """
    if not AVAILABLE:
        raise RuntimeError("numba is not available; use the torch path of SparseLinear.")
    xt = xt.detach().contiguous()
    out = torch.empty(crow.numel() - 1, xt.shape[1], dtype=values.dtype)
    if out.numel() == 0:
        return out
    v = values.detach().numpy()
    p = perm.numpy() if perm is not None else crow[:1].numpy()
    b = bias.detach().numpy() if bias is not None else v[:0]
    kernel = _spmm_parallel if col.numel() * xt.shape[1] >= PARALLEL_MIN_WORK else _spmm_serial
    with _lock:
        _threads()
        kernel(
            crow.numpy(), col.numpy(), v, p, perm is not None, xt.numpy(), b, bias is not None, out.numpy()
        )
    return out


def sddmm(crow: Tensor, col: Tensor, gt: Tensor, xt: Tensor) -> Tensor:
    """``(G^T X)`` at the non-zeros of a CSR pattern, in CSR order.

    Args:
        crow: int64 ``(rows + 1,)`` row pointers of the pattern.
        col: int64 ``(nnz,)`` column of each non-zero.
        gt: dense ``(rows, batch)`` (e.g. the output gradient, feature-major).
        xt: dense ``(cols, batch)`` (e.g. the layer input, feature-major).

    Returns:
        ``(nnz,)`` tensor; entry ``k`` is ``gt[row_k] . xt[col_k]``.

    Examples:
        >>> crow, col = torch.tensor([0, 1, 2]), torch.tensor([1, 0])
        >>> sddmm(crow, col, torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        tensor([2., 3.])
    """
    if not AVAILABLE:
        raise RuntimeError("numba is not available; use the torch path of SparseLinear.")
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
