"""Layers and kernels that make sparse or large-kernel training fast (torch only).

Truly sparse layers: CSR weights trained with sparse kernels ("Nerva: a Truly Sparse
Implementation of Neural Networks", Wesselink et al., 2024, arXiv:2407.17437). Depthwise
convolutions with large / rectangular kernels through FFT or banded-matrix paths chosen per shape
(:mod:`lightning_sparse.nn.depthwise`, for SLaK's 51 x 5 kernels).
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
from lightning_sparse.nn.depthwise import (
    choose_impl,
    depthwise_conv2d,
    measure_depthwise,
    set_depthwise_impl,
)
from lightning_sparse.nn.depthwise_conv import DepthwiseConv2d
from lightning_sparse.nn.sparse_linear import SparseLinear, csr_structure, set_output_layouts, transpose_structure

__all__ = [
    "DepthwiseConv2d",
    "SparseLinear",
    "choose_impl",
    "depthwise_conv2d",
    "measure_depthwise",
    "set_depthwise_impl",
    "convert_param_state",
    "dense_optimizer_state",
    "dense_state_dict",
    "csr_structure",
    "set_output_layouts",
    "linear_to_sparse",
    "memory_report",
    "replace_optimizer_param",
    "set_submodule",
    "sparse_to_linear",
    "to_masked",
    "to_truly_sparse",
    "transpose_structure",
]
