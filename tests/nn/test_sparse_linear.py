"""SparseLinear against the masked dense layer it replaces (Nerva, arXiv:2407.17437)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_sparse.nn import SparseLinear, kernels

_CPP = kernels.AVAILABLE and kernels.implementation() == "cpp"
BACKENDS = [
    "torch",
    pytest.param("numba", marks=pytest.mark.skipif(not kernels.AVAILABLE, reason="numba missing")),
    pytest.param("cpp", marks=pytest.mark.skipif(not _CPP, reason="the C++ kernels could not be built here")),
]

pytestmark = [
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta"),
    pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled"),
]


def _random_mask(out_features: int, in_features: int, density: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(out_features, in_features, generator=gen) < density
    if density < 1.0:
        mask[1] = False  # an all-zero row
    return mask


def _dense_and_sparse(in_f: int, out_f: int, density: float, dtype=torch.float32, bias=True, backend="auto"):
    torch.manual_seed(0)
    dense = nn.Linear(in_f, out_f, bias=bias, dtype=dtype)
    mask = _random_mask(out_f, in_f, density)
    return dense, mask, SparseLinear.from_dense(dense, mask, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("contiguous", [False, True])
@pytest.mark.parametrize("path", ["module", "function"])
def test_gradcheck_float64(bias: bool, backend: str, contiguous: bool, path: str) -> None:
    # "module": the layer's own forward (with the C++ kernels their autograd op, else the Python
    # Function); "function": the Python Function with the same kernels
    _, _, layer = _dense_and_sparse(7, 5, 0.4, dtype=torch.float64, bias=bias, backend=backend)
    assert layer.uses_kernels() == (backend != "torch")
    assert layer.kernel_implementation() == (None if backend == "torch" else backend)
    layer.contiguous_output = contiguous
    x = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)

    from lightning_sparse.nn.sparse_linear import _SparseLinearFunction

    def direct(x, values, b):  # the leaves gradcheck perturbs go in as arguments
        if path == "module":
            params = {"values": values} | ({"bias": b} if b is not None else {})
            return torch.func.functional_call(layer, params, (x,))
        return _SparseLinearFunction.apply(
            x, values, b, layer.crow_indices, layer.col_indices, layer.row_indices,
            layer.t_crow_indices, layer.t_col_indices, layer.t_perm, layer.out_features,
            layer.kernel_implementation(), contiguous,
        )

    values = layer.values.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True) if bias else None
    out = direct(x, values, b)
    if backend != "torch":  # torch's path returns a transposed view either way
        assert out.is_contiguous() == contiguous
    assert torch.autograd.gradcheck(direct, (x, values, b))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("density", [0.01, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("batch_shape", [(4,), (2, 3), (1,)])
def test_matches_masked_dense(density: float, batch_shape: tuple[int, ...], backend: str) -> None:
    in_f, out_f = 40, 30
    dense, mask, layer = _dense_and_sparse(in_f, out_f, density, backend=backend)
    assert layer.nnz == int(mask.sum())
    x = torch.randn(*batch_shape, in_f)
    x_dense = x.clone().requires_grad_(True)
    x_sparse = x.clone().requires_grad_(True)
    weight = dense.weight.detach().clone().requires_grad_(True)

    y_dense = F.linear(x_dense, weight * mask, dense.bias)
    y_sparse = layer(x_sparse)
    assert y_sparse.shape == (*batch_shape, out_f)
    torch.testing.assert_close(y_sparse, y_dense, rtol=1e-5, atol=1e-5)

    grad_y = torch.randn_like(y_dense)
    y_dense.backward(grad_y)
    y_sparse.backward(grad_y)
    torch.testing.assert_close(x_sparse.grad, x_dense.grad, rtol=1e-5, atol=1e-5)
    # The dense weight gradient (before masking) at the pattern = the values' gradient.
    torch.testing.assert_close(layer.values.grad, (grad_y.reshape(-1, out_f).T @ x.reshape(-1, in_f))[mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.values.grad, weight.grad[mask], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.bias.grad, dense.bias.grad, rtol=1e-5, atol=1e-5)


def test_gather_fallback_matches_sampled_addmm() -> None:
    from lightning_sparse.nn.sparse_linear import _sddmm

    _, mask, layer = _dense_and_sparse(9, 6, 0.3, dtype=torch.float64)
    g, x = torch.randn(5, 6, dtype=torch.float64), torch.randn(5, 9, dtype=torch.float64)
    args = (layer.crow_indices, layer.col_indices, layer.row_indices, 6)
    expected = (g.T @ x)[mask]
    torch.testing.assert_close(_sddmm(g, x, *args), expected)
    torch.testing.assert_close(
        _sddmm(g.bfloat16(), x.bfloat16(), *args).double(), expected, rtol=5e-2, atol=5e-2
    )


@pytest.mark.parametrize("bias", [True, False])
def test_round_trip_exact(bias: bool) -> None:
    dense, mask, layer = _dense_and_sparse(13, 11, 0.3, bias=bias)
    back = layer.to_dense()
    assert isinstance(back, nn.Linear)
    assert torch.equal(back.weight, dense.weight.detach() * mask)
    assert torch.equal(layer.mask(), mask)
    if bias:
        assert torch.equal(back.bias, dense.bias)
    else:
        assert back.bias is None
    again = SparseLinear.from_dense(back, mask)
    assert torch.equal(again.values, layer.values)


def test_extra_repr() -> None:
    _, mask, layer = _dense_and_sparse(10, 4, 0.5)
    text = repr(layer)
    assert "in_features=10" in text and "out_features=4" in text
    assert f"nnz={int(mask.sum())}" in text and "density=" in text


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_matches_masked_dense(nesterov: bool, backend: str) -> None:
    dense, mask, layer = _dense_and_sparse(20, 8, 0.3, backend=backend)
    opt_dense = torch.optim.SGD(dense.parameters(), lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=1e-3)
    opt_sparse = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=1e-3)
    with torch.no_grad():
        dense.weight.mul_(mask)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        x, target = torch.randn(6, 20, generator=gen), torch.randn(6, 8, generator=gen)
        for model, opt in ((dense, opt_dense), (layer, opt_sparse)):
            opt.zero_grad()
            F.mse_loss(model(x), target).backward()
            if model is dense:
                dense.weight.grad.mul_(mask)
            opt.step()
        with torch.no_grad():
            dense.weight.mul_(mask)
    torch.testing.assert_close(layer.to_dense().weight, dense.weight, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.bias, dense.bias, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("mask", "match"),
    [
        (torch.ones(5, 7, dtype=torch.bool), r"`mask`.*\(4, 7\).*\(5, 7\)"),
        (torch.ones(4, 7), r"`mask`.*torch.bool.*torch.float32"),
    ],
)
def test_bad_mask_raises(mask: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SparseLinear.from_dense(nn.Linear(7, 4), mask)


def test_bad_values_and_input_raise() -> None:
    layer = SparseLinear.from_dense(nn.Linear(7, 4), torch.ones(4, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"`values`.*\(28,\).*\(3,\)"):
        SparseLinear(7, 4, torch.ones(4, 7, dtype=torch.bool), values=torch.zeros(3))
    with pytest.raises(ValueError, match=r"`x`.*in_features=7"):
        layer(torch.zeros(2, 6))


@pytest.mark.parametrize("backend", BACKENDS)
def test_chained_layers_and_strided_inputs(backend: str) -> None:
    # Outputs are transposed views on the kernel path; a second layer and a ReLU between take
    # them as they come, and the gradients still equal the masked dense model's.
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 10), nn.ReLU(), nn.Linear(10, 3))
    masks = [_random_mask(20, 30, 0.3, 1), _random_mask(10, 20, 0.5, 2)]
    sparse = nn.Sequential(
        SparseLinear.from_dense(dense[0], masks[0], backend=backend), nn.ReLU(),
        SparseLinear.from_dense(dense[2], masks[1], backend=backend), nn.ReLU(), dense[4],
    )
    with torch.no_grad():
        dense[0].weight.mul_(masks[0])
        dense[2].weight.mul_(masks[1])
    x = torch.randn(30, 8).t()  # a non-contiguous (8, 30) input
    x_ref = x.detach().clone().requires_grad_(True)
    x = x.detach().t().contiguous().t().requires_grad_(True)
    y, y_ref = sparse(x), dense(x_ref)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sparse[0].values.grad, dense[0].weight.grad[masks[0]], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sparse[2].values.grad, dense[2].weight.grad[masks[1]], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_pattern_and_empty_batch(backend: str) -> None:
    layer = SparseLinear.from_dense(nn.Linear(6, 4), torch.zeros(4, 6, dtype=torch.bool), backend=backend)
    x = torch.randn(3, 6, requires_grad=True)
    y = layer(x)
    torch.testing.assert_close(y, layer.bias.expand(3, 4))
    y.sum().backward()
    assert torch.equal(x.grad, torch.zeros(3, 6)) and layer.values.grad.shape == (0,)
    full = SparseLinear.from_dense(nn.Linear(6, 4), torch.ones(4, 6, dtype=torch.bool), backend=backend)
    assert full(torch.randn(0, 6)).shape == (0, 4)


def test_backend_choice_and_errors() -> None:
    layer = SparseLinear.from_dense(nn.Linear(6, 4), torch.ones(4, 6, dtype=torch.bool))
    assert layer.backend == "auto" and layer.uses_kernels() == kernels.AVAILABLE
    assert layer.kernel_implementation() == kernels.implementation()
    layer.backend = "torch"
    assert not layer.uses_kernels()
    with pytest.raises(ValueError, match=r"`backend` must be one of \('auto', 'cpp', 'numba', 'torch'\), got 'cuda'"):
        layer.backend = "cuda"
    assert "backend='torch'" in repr(layer)
    low = SparseLinear.from_dense(nn.Linear(6, 4, dtype=torch.bfloat16), torch.ones(4, 6, dtype=torch.bool))
    assert low.compute_dtype() == torch.float32  # no half-precision CPU sparse kernels
    assert low.uses_kernels() == kernels.AVAILABLE
    if kernels.AVAILABLE:
        wide = SparseLinear.from_dense(nn.Linear(6, 4), torch.ones(4, 6, dtype=torch.bool), backend="numba")
        wide.values.data = wide.values.data.to(torch.complex64)  # a dtype no kernel handles
        with pytest.raises(RuntimeError, match="complex64"):
            wide(torch.randn(2, 6))


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfloat16_input_under_autocast(backend: str) -> None:
    dense, mask, layer = _dense_and_sparse(16, 8, 0.5, backend=backend)
    x = torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = nn.functional.linear(x, torch.eye(16))  # a bfloat16 activation, as in a mixed model
        assert h.dtype == torch.bfloat16
        y = layer(h)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, F.linear(h.float(), dense.weight * mask, dense.bias), rtol=1e-5, atol=1e-5)
    y.sum().backward()
    assert layer.values.grad is not None and layer.values.grad.dtype == torch.float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_output_may_be_modified_in_place(backend: str) -> None:
    # e.g. nn.ReLU(inplace=True) right after the layer, as in the registered MLP
    dense, mask, layer = _dense_and_sparse(12, 6, 0.5, backend=backend)
    x = torch.randn(5, 12)
    y = torch.relu_(layer(x))
    y.sum().backward()
    w = dense.weight.detach().clone().requires_grad_(True)
    F.linear(x, w * mask, dense.bias).relu().sum().backward()
    torch.testing.assert_close(layer.values.grad, w.grad[mask], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bfloat16_values_on_cpu(backend: str) -> None:
    # torch's CPU sparse products have no bfloat16 kernels: the layer computes in float32 and
    # returns bfloat16, gradients included.
    torch.manual_seed(0)
    dense = nn.Linear(16, 8, dtype=torch.bfloat16)
    mask = _random_mask(8, 16, 0.5)
    layer = SparseLinear.from_dense(dense, mask, backend="torch" if backend == "torch" else "auto")
    x = torch.randn(4, 16, dtype=torch.bfloat16, requires_grad=True)
    y = layer(x)
    assert y.dtype == torch.bfloat16
    expected = F.linear(x.detach().float(), dense.weight.float() * mask, dense.bias.float())
    torch.testing.assert_close(y.float(), expected, rtol=2e-2, atol=2e-2)
    y.float().sum().backward()
    assert layer.values.grad.dtype == torch.bfloat16 and x.grad.dtype == torch.bfloat16
    w = dense.weight.detach().float().requires_grad_(True)
    F.linear(x.detach().float(), w * mask, dense.bias.float()).sum().backward()
    torch.testing.assert_close(layer.values.grad.float(), w.grad[mask], rtol=2e-2, atol=5e-2)


def test_environment_choice_is_validated() -> None:
    import subprocess
    import sys

    env = {**__import__("os").environ, "LIGHTNING_SPARSE_KERNELS": "cuda"}
    res = subprocess.run([sys.executable, "-c", "import lightning_sparse.nn.kernels"], env=env,
                         capture_output=True, text=True)
    assert res.returncode != 0
    assert "LIGHTNING_SPARSE_KERNELS must be one of ('auto', 'cpp', 'numba', 'torch'), got 'cuda'" in res.stderr



@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba missing")
def test_a_failed_cpp_build_falls_back_to_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise OSError("no compiler here")

    for name, value in (("_impl", None), ("_cpp_error", None), ("_cpp_loaded", False), ("_REQUESTED", "auto")):
        monkeypatch.setattr(kernels, name, value)
    monkeypatch.setattr(kernels, "_build_cpp", broken)
    with pytest.warns(RuntimeWarning, match="could not be built.*no compiler here.*using the numba kernels"):
        assert kernels.implementation() == "numba"
    layer = SparseLinear.from_dense(nn.Linear(6, 4), torch.ones(4, 6, dtype=torch.bool))
    assert layer.kernel_implementation() == "numba"
    with pytest.raises(ValueError, match=r"`backend='cpp'` needs the C\+\+ kernels.*no compiler here"):
        layer.backend = "cpp"
    # LIGHTNING_SPARSE_KERNELS=cpp: the build error is raised, not hidden
    for name, value in (("_impl", None), ("_REQUESTED", "cpp")):
        monkeypatch.setattr(kernels, name, value)
    with pytest.raises(RuntimeError, match="LIGHTNING_SPARSE_KERNELS=cpp.*no compiler here"):
        kernels.implementation()


@pytest.mark.parametrize("backend", BACKENDS)
def test_contiguous_output_changes_the_layout_not_the_values(backend: str) -> None:
    dense, mask, layer = _dense_and_sparse(12, 6, 0.5, backend=backend)
    x = torch.randn(5, 12, requires_grad=True)
    outs, grads = [], []
    for contiguous in (False, True):
        layer.contiguous_output = contiguous
        layer.values.grad = None
        y = torch.relu_(layer(x))
        if backend != "torch":
            assert y.is_contiguous() == contiguous
        (y * torch.arange(6.0)).sum().backward()
        outs.append(y.detach())
        grads.append((x.grad.clone(), layer.values.grad.clone()))
        x.grad = None
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(grads[0], grads[1])
