"""The numba SpMM / SDDMM kernels against dense products, on awkward shapes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_sparse.nn import kernels
from lightning_sparse.nn.sparse_linear import csr_structure, transpose_structure

pytestmark = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba missing")


def _problem(rows: int, cols: int, batch: int, density: float, seed: int, dtype: torch.dtype):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(rows, cols, generator=gen) < density
    crow, col, row = csr_structure(mask)
    values = torch.randn(col.numel(), generator=gen, dtype=torch.float64).to(dtype)
    dense = torch.zeros(rows, cols, dtype=dtype)
    dense[mask] = values
    return mask, crow, col, row, values, dense, gen


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 23),
    cols=st.integers(1, 23),
    batch=st.integers(1, 19),
    density=st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    with_bias=st.booleans(),
)
def test_spmm_and_transpose_and_sddmm_match_dense(rows, cols, batch, density, seed, dtype, with_bias) -> None:
    # Rows with 0..23 non-zeros cover the unrolled-by-four loop and its remainder.
    mask, crow, col, row, values, dense, gen = _problem(rows, cols, batch, density, seed, dtype)
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {}
    xt = torch.randn(cols, batch, generator=gen, dtype=torch.float64).to(dtype)
    bias = torch.randn(rows, generator=gen, dtype=torch.float64).to(dtype) if with_bias else None
    expected = dense @ xt + (bias[:, None] if bias is not None else 0)
    out = kernels.spmm(crow, col, values, xt, bias)
    assert out.dtype == dtype and out.shape == (rows, batch) and out.is_contiguous()
    torch.testing.assert_close(out, expected, **tol)

    t_crow, t_col, perm = transpose_structure(row, col, cols)
    gt = torch.randn(rows, batch, generator=gen, dtype=torch.float64).to(dtype)
    torch.testing.assert_close(kernels.spmm(t_crow, t_col, values, gt, perm=perm), dense.t() @ gt, **tol)
    torch.testing.assert_close(kernels.sddmm(crow, col, gt, xt), (gt @ xt.t())[mask], **tol)


def test_non_contiguous_operands_are_accepted() -> None:
    _, crow, col, _, values, dense, gen = _problem(9, 7, 5, 0.5, 0, torch.float32)
    x = torch.randn(5, 7, generator=gen)
    torch.testing.assert_close(kernels.spmm(crow, col, values, x.t()), dense @ x.t(), rtol=1e-5, atol=1e-5)


def test_follows_torch_thread_count() -> None:
    _, crow, col, _, values, dense, gen = _problem(64, 64, 8, 0.5, 1, torch.float32)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        kernels.spmm(crow, col, values, torch.randn(64, 8, generator=gen))
        import numba

        assert numba.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("min_work", [0, 1 << 62])  # always parallel / always serial
def test_parallel_and_serial_paths_match_dense(monkeypatch: pytest.MonkeyPatch, min_work: int) -> None:
    monkeypatch.setattr(kernels, "PARALLEL_MIN_WORK", min_work)
    mask, crow, col, row, values, dense, gen = _problem(37, 29, 11, 0.3, 5, torch.float64)
    xt = torch.randn(29, 11, generator=gen, dtype=torch.float64)
    gt = torch.randn(37, 11, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(kernels.spmm(crow, col, values, xt), dense @ xt)
    t_crow, t_col, perm = transpose_structure(row, col, 29)
    torch.testing.assert_close(kernels.spmm(t_crow, t_col, values, gt, perm=perm), dense.t() @ gt)
    torch.testing.assert_close(kernels.sddmm(crow, col, gt, xt), (gt @ xt.t())[mask])
