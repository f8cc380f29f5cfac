"""The CPU SpMM / SDDMM kernels (C++ on torch's pool, and numba) against dense products, on awkward shapes."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_sparse.nn import kernels
from lightning_sparse.nn.sparse_linear import csr_structure, transpose_structure

pytestmark = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba missing")


@pytest.fixture(params=kernels.IMPLEMENTATIONS, autouse=True)
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs once per implementation."""
    if request.param == "cpp" and kernels.implementation() != "cpp":
        pytest.skip("the C++ kernels could not be built here")
    monkeypatch.setattr(kernels, "_impl", request.param)
    return request.param


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


def test_follows_torch_thread_count(impl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "PARALLEL_MIN_WORK", 0)
    _, crow, col, _, values, dense, gen = _problem(64, 64, 8, 0.5, 1, torch.float32)
    xt = torch.randn(64, 8, generator=gen)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            torch.testing.assert_close(kernels.spmm(crow, col, values, xt), dense @ xt, rtol=1e-5, atol=1e-5)
            if impl == "numba":
                import numba

                assert numba.get_num_threads() == min(threads, numba.config.NUMBA_NUM_THREADS)
    finally:
        torch.set_num_threads(before)


def test_int32_and_int64_structures_agree() -> None:
    mask, crow, col, row, values, dense, gen = _problem(31, 17, 6, 0.4, 3, torch.float64)
    xt = torch.randn(17, 6, generator=gen, dtype=torch.float64)
    gt = torch.randn(31, 6, generator=gen, dtype=torch.float64)
    t_crow, t_col, perm = transpose_structure(row, col, 17)
    for idx in (torch.int32, torch.int64):
        c, k, tc, tk, p = (t.to(idx) for t in (crow, col, t_crow, t_col, perm))
        torch.testing.assert_close(kernels.spmm(c, k, values, xt), dense @ xt)
        torch.testing.assert_close(kernels.spmm(tc, tk, values, gt, perm=p), dense.t() @ gt)
        torch.testing.assert_close(kernels.sddmm(c, k, gt, xt), (gt @ xt.t())[mask])


def test_unbalanced_rows_split_by_non_zeros(monkeypatch: pytest.MonkeyPatch) -> None:
    # One dense row and many empty ones: the chunks (one per thread) cover every row exactly once.
    monkeypatch.setattr(kernels, "PARALLEL_MIN_WORK", 0)
    gen = torch.Generator().manual_seed(4)
    mask = torch.zeros(50, 40, dtype=torch.bool)
    mask[7] = True
    mask[49, ::3] = True
    crow, col, row = csr_structure(mask)
    values = torch.randn(col.numel(), generator=gen, dtype=torch.float64)
    dense = torch.zeros(50, 40, dtype=torch.float64)
    dense[mask] = values
    xt = torch.randn(40, 5, generator=gen, dtype=torch.float64)
    gt = torch.randn(50, 5, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(kernels.spmm(crow, col, values, xt, torch.ones(50, dtype=torch.float64)), dense @ xt + 1)
    torch.testing.assert_close(kernels.sddmm(crow, col, gt, xt), (gt @ xt.t())[mask])


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


@pytest.mark.parametrize("bias", [False, True])
def test_batch_major_result_is_the_transpose_in_its_own_memory(bias: bool) -> None:
    # (batch, rows) with strides (1, batch): not a view, so autograd allows in-place ops on it
    _, crow, col, _, values, dense, gen = _problem(13, 9, 6, 0.5, 2, torch.float32)
    xt = torch.randn(9, 6, generator=gen)
    b = torch.randn(13, generator=gen) if bias else None
    out = kernels.spmm(crow, col, values, xt, b, batch_major=True)
    assert out.shape == (6, 13) and out.stride() == (1, 6) and out._base is None
    assert out.t().is_contiguous()
    torch.testing.assert_close(out, (dense @ xt + (b[:, None] if bias else 0)).t(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (8, 8), (100, 3072), (512, 100), (33, 65), (0, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_feature_major_is_the_contiguous_transpose(shape: tuple[int, int], dtype: torch.dtype) -> None:
    x = torch.randn(*shape, dtype=dtype)
    out = kernels.feature_major(x)
    assert out.shape == shape[::-1] and out.is_contiguous()
    assert torch.equal(out, x.t())
    strided = torch.randn(shape[0], 2 * shape[1], dtype=dtype)[:, ::2]  # neither layout
    assert torch.equal(kernels.feature_major(strided), strided.t())
    already = x.t().contiguous().t()  # feature-major memory: handed back without a copy
    assert kernels.feature_major(already).data_ptr() == already.data_ptr()
    # rows longer than the slice (row stride != width, unit column stride): the 8 x 8 block path
    wide = torch.randn(shape[0], shape[1] + 5, dtype=dtype)[:, 3 : 3 + shape[1]]
    assert torch.equal(kernels.feature_major(wide), wide.t())


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64])
@pytest.mark.parametrize("shape", [(100, 3072), (17, 9)])
def test_feature_major_of_integer_batches(shape: tuple[int, int], dtype: torch.dtype) -> None:
    x = torch.randint(0, 100, shape, dtype=dtype)
    out = kernels.feature_major(x)
    assert out.dtype == dtype and out.is_contiguous() and torch.equal(out, x.t())
