"""Truly sparse layers (torch only): CSR weights trained with sparse kernels.

See "Nerva: a Truly Sparse Implementation of Neural Networks" (Wesselink et al., 2024,
arXiv:2407.17437).
"""

from lightning_sparse.nn.convert import (
    convert_param_state,
    dense_optimizer_state,
    dense_state_dict,
    linear_to_sparse,
    memory_report,
    replace_optimizer_param,
    set_submodule,
    sparse_to_linear,
    to_masked,
    to_truly_sparse,
)
from lightning_sparse.nn.sparse_linear import SparseLinear, csr_structure, transpose_structure

__all__ = [
    "SparseLinear",
    "convert_param_state",
    "dense_optimizer_state",
    "dense_state_dict",
    "csr_structure",
    "linear_to_sparse",
    "memory_report",
    "replace_optimizer_param",
    "set_submodule",
    "sparse_to_linear",
    "to_masked",
    "to_truly_sparse",
    "transpose_structure",
]
