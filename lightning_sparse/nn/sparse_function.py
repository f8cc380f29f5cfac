"""The Python autograd Function behind :class:`~lightning_sparse.nn.SparseLinear`.

Forward ``y = x W^T + b`` and backward (input gradient through the CSR of ``W^T``, weight gradient
only at the non-zeros) with the numba kernels of :mod:`lightning_sparse.nn.kernels` or torch's
sparse ops. With the C++ kernels the layer runs the same forward and backward as one C++
autograd op instead (``kernels.sparse_linear``); this Function computes the same with them too.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor

from . import kernels

_SDDMM_CHUNK_ELEMENTS = 1 << 24  # bound on the gather fallback's temporary (nnz_chunk * batch)


def _sddmm(
    grad_out: Tensor, x: Tensor, crow: Tensor, col: Tensor, row: Tensor, out_features: int
) -> Tensor:
    """``(grad_out^T @ x)`` sampled at the pattern, in CSR value order.

    ``grad_out`` is ``(N, out)`` and ``x`` is ``(N, in)``.
    """
    nnz = col.numel()
    if nnz == 0:
        return grad_out.new_zeros(0)
    if grad_out.dtype in (torch.float32, torch.float64):
        # beta=0 still reads the input values, so they must be zeros (not garbage).
        pattern = torch.sparse_csr_tensor(
            crow, col, grad_out.new_zeros(nnz), (out_features, x.shape[1]), check_invariants=False
        )
        out = torch.sparse.sampled_addmm(pattern, grad_out.t(), x, beta=0.0)
        return out.values()
    # Gather fallback, chunked so the (chunk, N) temporaries stay bounded.
    g_t, x_t = grad_out.t(), x.t()  # (out, N), (in, N)
    chunk = max(1, _SDDMM_CHUNK_ELEMENTS // max(1, x.shape[0]))
    parts = [
        (g_t[row[s : s + chunk]] * x_t[col[s : s + chunk]]).sum(1) for s in range(0, nnz, chunk)
    ]
    return torch.cat(parts)


class _SparseLinearFunction(torch.autograd.Function):
    """``y^T = W x^T + b`` with ``W`` given as CSR values and a fixed structure.

    With the CPU kernels it returns ``(N, out)`` in feature-major memory (strides ``(1, N)``): a
    tensor of its own, not a view, so it may be modified in place (``nn.ReLU(inplace=True)``)
    without autograd's copy-on-write of views, and the next layer reads it as ``(out, N)``
    without a copy. On torch's path it returns the feature-major ``(out, N)`` product, which the
    module transposes *outside* the Function (autograd forbids in-place ops on views made inside).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,  # (N, in)
        values: Tensor,  # (nnz,)
        bias: Optional[Tensor],  # (out,)
        crow: Tensor,
        col: Tensor,
        row: Tensor,
        t_crow: Tensor,
        t_col: Tensor,
        t_perm: Tensor,
        out_features: int,
        impl: Optional[str],
        contiguous_output: bool = False,
    ) -> Tensor:
        ctx.out_features = out_features
        ctx.has_bias = bias is not None
        ctx.impl = impl
        if impl is not None:
            # Feature-major operands: every kernel loop runs over a contiguous batch row. The
            # result is (N, out) in feature-major memory, so a following SparseLinear (or an
            # elementwise op in between, which keeps the layout) hands its input over without a copy.
            x_t = kernels.feature_major(x, impl)  # (in, N)
            y = kernels.spmm(crow, col, values, x_t, bias, impl=impl, batch_major=not contiguous_output)  # (N, out)
            if contiguous_output:
                y = kernels.feature_major(y, impl)  # the (out, N) product, transposed: (N, out) contiguous
            ctx.save_for_backward(x_t, values, crow, col, row, t_crow, t_col, t_perm)
            return y
        in_features = x.shape[1]
        weight = torch.sparse_csr_tensor(
            crow, col, values, (out_features, in_features), check_invariants=False
        )
        if bias is None:
            y_t = torch.mm(weight, x.t())  # (out, N)
        else:
            y_t = torch.sparse.addmm(bias.unsqueeze(1).expand(-1, x.shape[0]), weight, x.t())
        ctx.save_for_backward(x, values, crow, col, row, t_crow, t_col, t_perm)
        return y_t  # (out, N)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Optional[Tensor], ...]:  # type: ignore[override]
        # `grad` has the output's shape: (N, out) with the kernels, (out, N) on torch's path
        with torch.autocast(grad.device.type, enabled=False):
            return _SparseLinearFunction._backward(ctx, grad.to(ctx.saved_tensors[1].dtype))

    @staticmethod
    def _backward(ctx: Any, grad: Tensor) -> tuple[Optional[Tensor], ...]:
        if ctx.impl is not None:
            x_t, values, crow, col, row, t_crow, t_col, t_perm = ctx.saved_tensors
            g_t = kernels.feature_major(grad, ctx.impl)  # (out, N) from the (N, out) gradient; no copy when feature-major
            grad_x = grad_values = grad_bias = None
            if ctx.needs_input_grad[0]:
                grad_x = kernels.spmm(t_crow, t_col, values, g_t, perm=t_perm, impl=ctx.impl, batch_major=True)
            if ctx.needs_input_grad[1]:
                grad_values = kernels.sddmm(crow, col, g_t, x_t, impl=ctx.impl)
            if ctx.has_bias and ctx.needs_input_grad[2]:
                grad_bias = g_t.sum(1)
            return (grad_x, grad_values, grad_bias) + (None,) * 9
        x, values, crow, col, row, t_crow, t_col, t_perm = ctx.saved_tensors
        grad_out = grad.t().contiguous()  # (N, out); e.g. `.sum()` gives a stride-0 gradient
        grad_x = grad_values = grad_bias = None
        if ctx.needs_input_grad[0]:
            weight_t = torch.sparse_csr_tensor(
                t_crow, t_col, values[t_perm], (x.shape[1], ctx.out_features), check_invariants=False
            )
            grad_x = torch.mm(weight_t, grad_out.t()).t()  # (in, N) -> (N, in)
        if ctx.needs_input_grad[1]:
            grad_values = _sddmm(grad_out, x, crow, col, row, ctx.out_features)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum(0)
        return (grad_x, grad_values, grad_bias) + (None,) * 9
