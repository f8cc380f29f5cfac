"""A truly sparse linear layer: CSR weight, SpMM forward, SDDMM weight gradient.

Implements the layer of "Nerva: a Truly Sparse Implementation of Neural Networks"
(Wesselink et al., 2024, arXiv:2407.17437): the weight stores only its non-zeros (CSR values +
structure) and both passes use sparse products, so time and memory shrink with density.

Kernels: on CPU (float32/float64) the products run in the kernels of
:mod:`lightning_sparse.nn.kernels` (row-parallel CSR SpMM on feature-major operands and a true
SDDMM; C++ on torch's thread pool, or numba); elsewhere (CUDA, bfloat16, no numba) in torch's
sparse ops.

Deviations from Nerva (torch path; the CPU kernels follow the same plan):

* the forward computes ``(W @ X^T)^T`` with the sparse operand on the left (``dense @ csr`` and
  COO products are several times slower in torch);
* the input gradient uses a CSR of ``W^T`` whose structure and value permutation are computed
  once per pattern (``csr.t()`` converts on every call);
* the weight gradient is a true SDDMM (``torch.sparse.sampled_addmm``) evaluated only at the
  existing non-zeros, where Nerva computes it densely and gathers.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from . import kernels
from .sparse_function import _sddmm, _SparseLinearFunction  # noqa: F401 (_sddmm: tests)

__all__ = ["BACKENDS", "SparseLinear", "csr_structure", "set_output_layouts", "transpose_structure"]

BACKENDS = ("auto", "cpp", "numba", "torch")
"""Kernel choices of :class:`SparseLinear`: ``"auto"`` uses the CPU kernels where they apply
(float32/float64 on CPU; the C++ ones, or numba's where no compiler exists, see
:func:`lightning_sparse.nn.kernels.implementation`) and torch's sparse ops elsewhere (CUDA,
bfloat16); ``"cpp"`` / ``"numba"`` require that implementation; ``"torch"`` never uses them."""



def _check_mask(mask: Tensor, out_features: int, in_features: int, name: str = "mask") -> None:
    if not isinstance(mask, Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor, got {type(mask).__name__}.")
    if mask.dtype != torch.bool:
        raise ValueError(f"`{name}` must have dtype torch.bool, got {mask.dtype}.")
    expected = (out_features, in_features)
    if tuple(mask.shape) != expected:
        raise ValueError(
            f"`{name}` must have shape {expected} (out_features, in_features), got {tuple(mask.shape)}."
        )


def csr_structure(mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """CSR structure of a boolean ``(rows, cols)`` mask, in row-major value order.

    Args:
        mask: bool tensor of shape ``(rows, cols)``.

    Returns:
        ``(crow_indices, col_indices, row_indices)`` as int64; ``row_indices[k]`` is the row of
        the ``k``-th non-zero.

    Examples:
        >>> crow, col, row = csr_structure(torch.tensor([[True, False], [True, True]]))
        >>> crow.tolist(), col.tolist(), row.tolist()
        ([0, 1, 3], [0, 0, 1], [0, 1, 1])
    """
    rows, cols = mask.nonzero(as_tuple=True)  # row-major order, sorted by (row, col)
    counts = torch.bincount(rows, minlength=mask.shape[0])
    crow = torch.zeros(mask.shape[0] + 1, dtype=torch.int64, device=mask.device)
    torch.cumsum(counts, 0, out=crow[1:])
    return crow, cols.to(torch.int64), rows.to(torch.int64)


def transpose_structure(
    row_indices: Tensor, col_indices: Tensor, num_cols: int
) -> tuple[Tensor, Tensor, Tensor]:
    """CSR structure of ``W^T`` and the permutation from ``W``'s value order to ``W^T``'s.

    Args:
        row_indices: row of each non-zero of ``W``, in ``W``'s CSR order.
        col_indices: column of each non-zero of ``W``, in ``W``'s CSR order.
        num_cols: number of columns of ``W`` (rows of ``W^T``).

    Returns:
        ``(t_crow_indices, t_col_indices, perm)`` such that
        ``sparse_csr_tensor(t_crow_indices, t_col_indices, values[perm])`` equals ``W^T``.

    Examples:
        >>> tcrow, tcol, perm = transpose_structure(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 2)
        >>> tcrow.tolist(), tcol.tolist(), perm.tolist()
        ([0, 2, 3], [0, 1, 1], [0, 1, 2])
    """
    num_rows = int(row_indices.max()) + 1 if row_indices.numel() else 1
    key = col_indices * num_rows + row_indices  # sort by (col, row)
    perm = torch.argsort(key, stable=True)
    counts = torch.bincount(col_indices, minlength=num_cols)
    t_crow = torch.zeros(num_cols + 1, dtype=torch.int64, device=col_indices.device)
    torch.cumsum(counts, 0, out=t_crow[1:])
    return t_crow, row_indices[perm], perm


class SparseLinear(nn.Module):
    """Truly sparse ``nn.Linear``: the weight is stored as CSR, only its non-zeros are trained.

    From "Nerva: a Truly Sparse Implementation of Neural Networks" (Wesselink et al., 2024,
    arXiv:2407.17437). ``values`` (shape ``(nnz,)``) is the only weight parameter, so any
    optimizer (SGD with momentum/Nesterov, Adam, AdamW) sees and updates only the non-zeros. The
    forward is a CSR-dense product, the input gradient a product with a precomputed CSR of
    ``W^T`` and the weight gradient an SDDMM at the existing non-zeros; the result equals the
    masked dense layer ``F.linear(x, W * mask, b)`` up to floating point.

    Build it with :meth:`from_dense` and convert back with :meth:`to_dense`.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        mask: bool tensor ``(out_features, in_features)``, the non-zero pattern.
        values: initial non-zeros in row-major (CSR) order, shape ``(mask.sum(),)``;
            zeros if not given.
        bias: whether to learn an additive bias (initialised to zero).
        backend: ``"auto"`` (default: the CPU kernels for float32/float64 on CPU, torch's sparse
            ops otherwise), ``"cpp"`` / ``"numba"`` (require that kernel implementation) or
            ``"torch"`` (torch's sparse ops only). Can be changed later through ``.backend``;
            see :data:`BACKENDS`.

    Raises:
        ValueError: if ``mask`` is not a bool tensor of shape ``(out_features, in_features)``,
            ``values`` has the wrong shape or ``backend`` is unknown.

    Examples:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> dense = nn.Linear(4, 3)
        >>> mask = torch.rand(3, 4) < 0.5
        >>> layer = SparseLinear.from_dense(dense, mask)
        >>> x = torch.randn(2, 4)
        >>> torch.allclose(layer(x), nn.functional.linear(x, dense.weight * mask, dense.bias))
        True
        >>> torch.equal(layer.to_dense().weight, dense.weight * mask)
        True
    """

    crow_indices: Tensor
    col_indices: Tensor
    row_indices: Tensor
    t_crow_indices: Tensor
    t_col_indices: Tensor
    t_perm: Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        mask: Tensor,
        values: Optional[Tensor] = None,
        bias: bool = True,
        device: Optional[torch.device] = None,
        dtype: Optional[torch.dtype] = None,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.backend = backend
        # With the CPU kernels: hand the output on as a contiguous (N, out) tensor (one tiled
        # transpose) instead of in feature-major memory, cheaper when a dense layer follows (its
        # input gradient comes back contiguous, and an elementwise backward in between, such as a
        # ReLU's, is several times slower on mixed layouts). A layout choice only; see
        # `set_output_layouts`.
        self.contiguous_output = False
        self.in_features = in_features
        self.out_features = out_features
        self.values = nn.Parameter(torch.empty(0, device=device, dtype=dtype))
        self.bias = (
            nn.Parameter(torch.zeros(out_features, device=device, dtype=dtype)) if bias else None
        )
        for name in ("crow_indices", "col_indices", "row_indices", "t_crow_indices", "t_col_indices", "t_perm"):
            self.register_buffer(name, torch.empty(0, dtype=torch.int64, device=device))
        self._set_structure(mask.to(device) if device is not None else mask)
        if values is None:
            values = torch.zeros(self.nnz, device=self.values.device, dtype=self.values.dtype)
        self._check_values(values)
        self.values.data = values.detach().to(self.values.device, self.values.dtype).clone()

    # ----------------------------------------------------------------------------- construction
    @property
    def backend(self) -> str:
        """The kernel choice: one of :data:`BACKENDS` (see the class docstring)."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in BACKENDS:
            raise ValueError(f"`backend` must be one of {BACKENDS}, got {value!r}.")
        if value in ("cpp", "numba") and not kernels.AVAILABLE:
            raise ValueError(f"`backend={value!r}` needs the numba package; install it or use 'auto'/'torch'.")
        if value == "cpp":
            try:
                kernels._ensure_cpp()
            except Exception as err:
                raise ValueError(f"`backend='cpp'` needs the C++ kernels, which could not be built: {err}") from err
        self._backend = value

    def compute_dtype(self) -> torch.dtype:
        """The dtype the products run in: the values' dtype, float32 for half precision on CPU
        (torch's CPU sparse products have no half-precision kernels)."""
        if self.values.device.type == "cpu" and self.values.dtype in (torch.bfloat16, torch.float16):
            return torch.float32
        return self.values.dtype

    def uses_kernels(self) -> bool:
        """Whether the next forward runs the CPU kernels (else torch's sparse ops)."""
        return self.kernel_implementation() is not None

    def kernel_implementation(self) -> Optional[str]:
        """The CPU kernels the next forward runs (``"cpp"`` / ``"numba"``), ``None`` for torch's ops.

        Raises:
            RuntimeError: if ``backend`` requires the kernels and the values' device or dtype
                has none (e.g. CUDA, bfloat16 storage computes in float32 on CPU and is fine).
        """
        if self._backend == "torch":
            return None
        supported = kernels.supports(self.values.device, self.compute_dtype())
        if self._backend in ("cpp", "numba") and not supported:
            raise RuntimeError(
                f"`backend={self._backend!r}` supports {kernels.SUPPORTED_DTYPES} on CPU; the values are "
                f"{self.values.dtype} on {self.values.device}. Use backend='auto'."
            )
        if not supported:
            return None
        return kernels.implementation() if self._backend == "auto" else self._backend

    @classmethod
    def from_dense(cls, linear: nn.Linear, mask: Tensor, backend: str = "auto") -> "SparseLinear":
        """Build a ``SparseLinear`` holding ``linear.weight`` at ``mask`` (and its bias).

        Args:
            linear: the dense layer; its weight outside ``mask`` is dropped.
            mask: bool tensor ``(out_features, in_features)``.
            backend: kernel choice, see the class docstring.

        Raises:
            ValueError: if ``linear`` is not an ``nn.Linear`` or ``mask`` has the wrong
                dtype or shape.
        """
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"`linear` must be a torch.nn.Linear, got {type(linear).__name__}.")
        weight = linear.weight.detach()
        _check_mask(mask, linear.out_features, linear.in_features)
        mask = mask.to(weight.device)
        layer = cls(
            linear.in_features,
            linear.out_features,
            mask,
            values=weight[mask],  # boolean indexing is row-major = CSR order
            bias=linear.bias is not None,
            device=weight.device,
            dtype=weight.dtype,
            backend=backend,
        )
        if linear.bias is not None:
            assert layer.bias is not None
            layer.bias.data.copy_(linear.bias.detach())
        return layer

    def to_dense(self) -> nn.Linear:
        """Return an ``nn.Linear`` with the same outputs (zeros outside the pattern)."""
        linear = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self.values.device,
            dtype=self.values.dtype,
        )
        with torch.no_grad():
            linear.weight.copy_(self.dense_weight())
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def dense_weight(self) -> Tensor:
        """The weight as a dense ``(out_features, in_features)`` tensor (no gradient)."""
        weight = self.values.new_zeros(self.out_features, self.in_features)
        weight[self.row_indices, self.col_indices] = self.values.detach()
        return weight

    def mask(self) -> Tensor:
        """The non-zero pattern as a bool ``(out_features, in_features)`` tensor."""
        mask = torch.zeros(
            self.out_features, self.in_features, dtype=torch.bool, device=self.values.device
        )
        mask[self.row_indices, self.col_indices] = True
        return mask

    def _set_structure(self, mask: Tensor) -> None:
        _check_mask(mask, self.out_features, self.in_features)
        crow, col, row = csr_structure(mask)
        t_crow, t_col, t_perm = transpose_structure(row, col, self.in_features)
        if mask.device.type == "cpu" and max(mask.numel(), self.out_features + 1, self.in_features + 1) < 2**31:
            # int32 indices halve the structure's memory (16 instead of 32 bytes per non-zero);
            # CUDA keeps int64, the index type its tests cover
            crow, col, row, t_crow, t_col, t_perm = (
                t.to(torch.int32) for t in (crow, col, row, t_crow, t_col, t_perm)
            )
        self.crow_indices, self.col_indices, self.row_indices = crow, col, row
        self.t_crow_indices, self.t_col_indices, self.t_perm = t_crow, t_col, t_perm

    def _check_values(self, values: Tensor) -> None:
        if not isinstance(values, Tensor) or tuple(values.shape) != (self.nnz,):
            given = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(f"`values` must have shape {(self.nnz,)} (mask.sum(),), got {given}.")

    # --------------------------------------------------------------------------------- forward
    @property
    def nnz(self) -> int:
        """Number of stored non-zeros."""
        return self.col_indices.numel()

    @property
    def density(self) -> float:
        """Fraction of stored weights, ``nnz / (out_features * in_features)``."""
        return self.nnz / max(1, self.out_features * self.in_features)

    def forward(self, x: Tensor) -> Tensor:
        """Compute ``x W^T + b`` for ``x`` of shape ``(..., in_features)``."""
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"`x` must have last dimension in_features={self.in_features}, got shape {tuple(x.shape)}."
            )
        batch_shape = x.shape[:-1]
        x2d = x.reshape(-1, self.in_features)  # (N, in)
        values, bias = self.values, self.bias
        compute = self.compute_dtype()
        if compute != values.dtype:
            # half precision on CPU: compute in float32 (the CPU kernels then apply) and hand
            # back the layer's dtype; autograd casts the gradients back.
            values = values.to(compute)
            bias = bias.to(compute) if bias is not None else None
        if x2d.dtype != values.dtype:
            # e.g. a bfloat16 activation under autocast: sparse products run in the weight dtype
            x2d = x2d.to(values.dtype)
        # Sparse products run in the weight dtype: autocast would hand them bfloat16 operands
        # that torch's CSR kernels do not implement.
        impl = self.kernel_implementation()
        if impl == "cpp":
            # one autograd op in C++ (forward and backward without Python between the kernels);
            # autocast has no rule for it, so it runs in the weight dtype
            y = torch.ops.lightning_sparse.sparse_linear(
                x2d, values, bias, self.crow_indices, self.col_indices, self.t_crow_indices,
                self.t_col_indices, self.t_perm, kernels.PARALLEL_MIN_WORK, self.contiguous_output,
            )
            if y.dtype != self.values.dtype:
                y = y.to(self.values.dtype)
            return y if x.dim() == 2 else y.reshape(*batch_shape, self.out_features)
        with torch.autocast(x2d.device.type, enabled=False):
            y = _SparseLinearFunction.apply(
                x2d,
                values,
                bias,
                self.crow_indices,
                self.col_indices,
                self.row_indices,
                self.t_crow_indices,
                self.t_col_indices,
                self.t_perm,
                self.out_features,
                impl,
                self.contiguous_output,
            )
        if impl is None:
            y = y.t()  # outside the Function: see _SparseLinearFunction
        if y.dtype != self.values.dtype:
            y = y.to(self.values.dtype)
        # 2-D input: hand `y` itself on (a reshape, even to the same shape, would make it a view)
        return y if x.dim() == 2 else y.reshape(*batch_shape, self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"nnz={self.nnz}, density={self.density:.4g}, bias={self.bias is not None}, "
            f"backend={self._backend!r}"
        )


def set_output_layouts(module: nn.Module) -> dict[str, bool]:
    """Choose each :class:`SparseLinear`'s output layout from the layer that follows it.

    A layer whose next linear layer (in module registration order, as in an MLP) is another
    ``SparseLinear`` keeps the feature-major output the next one reads without a copy; any other
    gets ``contiguous_output = True`` (a dense layer follows, or none). Only speed depends on it.

    Returns:
        Qualified layer name -> the ``contiguous_output`` set.

    Examples:
        >>> model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> masks = {f"{i}.weight": torch.ones(model[i].weight.shape, dtype=torch.bool) for i in (0, 2)}
        >>> from lightning_sparse.nn import to_truly_sparse
        >>> _ = to_truly_sparse(model, masks)
        >>> set_output_layouts(model)
        {'0': False, '2': True}
    """
    linears = [(n, m) for n, m in module.named_modules() if isinstance(m, (nn.Linear, SparseLinear))]
    chosen = {}
    for k, (name, layer) in enumerate(linears):
        if isinstance(layer, SparseLinear):
            following = linears[k + 1][1] if k + 1 < len(linears) else None
            layer.contiguous_output = not isinstance(following, SparseLinear)
            chosen[name] = layer.contiguous_output
    return chosen
