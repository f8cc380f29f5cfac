"""Masked dense <-> truly sparse conversion (Nerva, arXiv:2407.17437)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lightning_sparse.nn import SparseLinear, memory_report, replace_optimizer_param, to_masked, to_truly_sparse

pytestmark = [
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta"),
    pytest.mark.filterwarnings("ignore:Sparse invariant checks are implicitly disabled"),
]


class Wrapper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


DENSITIES = {"net.0.weight": 0.1, "net.2.weight": 0.3, "net.4.weight": 0.8}


def _masked_model(seed: int = 0) -> tuple[Wrapper, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    model = Wrapper()
    params = dict(model.named_parameters())
    gen = torch.Generator().manual_seed(seed)
    masks = {}
    for name, density in DENSITIES.items():
        mask = torch.rand(params[name].shape, generator=gen) < density
        mask[0, 0] = True
        masks[name] = mask
        with torch.no_grad():
            params[name].mul_(mask)
    return model, masks


def _x() -> torch.Tensor:
    return torch.randn(5, 20, generator=torch.Generator().manual_seed(1))


def test_round_trip_keeps_outputs_and_masks():
    model, masks = _masked_model()
    x = _x()
    before = model(x)
    converted = to_truly_sparse(model, masks)
    assert converted == list(masks)
    assert all(isinstance(model.net[i], SparseLinear) for i in (0, 2, 4))
    torch.testing.assert_close(model(x), before, atol=1e-6, rtol=1e-6)
    returned = to_masked(model)
    assert set(returned) == set(masks)
    for name, mask in masks.items():
        assert returned[name].dtype == torch.bool
        assert torch.equal(returned[name], mask)
    assert all(type(model.net[i]) is nn.Linear for i in (0, 2, 4))
    torch.testing.assert_close(model(x), before, atol=1e-6, rtol=1e-6)
    # the dense weights are zero outside the masks
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert torch.all(params[name][~mask] == 0)


def test_max_density_leaves_denser_layers_dense():
    model, masks = _masked_model()
    x = _x()
    before = model(x)
    converted = to_truly_sparse(model, masks, max_density=0.5)
    assert converted == ["net.0.weight", "net.2.weight"]
    assert isinstance(model.net[0], SparseLinear) and isinstance(model.net[2], SparseLinear)
    assert type(model.net[4]) is nn.Linear
    torch.testing.assert_close(model(x), before, atol=1e-6, rtol=1e-6)
    assert set(to_masked(model)) == {"net.0.weight", "net.2.weight"}


def test_partial_masks_and_nested_relative_names():
    model, masks = _masked_model()
    x = _x()
    before = model(x)
    # names relative to a nested submodule
    assert to_truly_sparse(model.net, {"2.weight": masks["net.2.weight"]}) == ["2.weight"]
    assert isinstance(model.net[2], SparseLinear) and type(model.net[0]) is nn.Linear
    torch.testing.assert_close(model(x), before, atol=1e-6, rtol=1e-6)
    assert list(to_masked(model)) == ["net.2.weight"]


def test_state_dict_loads_into_fresh_dense_model():
    model, masks = _masked_model()
    x = _x()
    reference = copy.deepcopy(model)
    to_truly_sparse(model, masks)
    to_masked(model)
    fresh = Wrapper()
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh(x), reference(x), atol=1e-6, rtol=1e-6)


def test_gradients_flow_to_values_and_bias():
    model, masks = _masked_model()
    reference = copy.deepcopy(model)
    to_truly_sparse(model, masks)
    x = _x()
    model(x).square().sum().backward()
    reference(x).square().sum().backward()
    for i in (0, 2, 4):
        layer, dense = model.net[i], reference.net[i]
        mask = masks[f"net.{i}.weight"]
        assert layer.values.grad is not None and layer.bias.grad is not None
        torch.testing.assert_close(layer.values.grad, dense.weight.grad[mask], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(layer.bias.grad, dense.bias.grad, atol=1e-5, rtol=1e-5)
    names = {n for n, _ in model.named_parameters()}
    assert "net.0.values" in names and "net.0.weight" not in names


def test_training_mode_and_requires_grad_preserved():
    model, masks = _masked_model()
    model.eval()
    model.net[0].bias.requires_grad_(False)
    to_truly_sparse(model, masks)
    assert not model.net[0].training and not model.net[0].bias.requires_grad
    to_masked(model)
    assert not model.net[0].training and not model.net[0].bias.requires_grad


def test_no_bias_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4, bias=False))
    mask = torch.rand(4, 6) < 0.5
    with torch.no_grad():
        model[0].weight.mul_(mask)
    x = torch.randn(3, 6)
    before = model(x)
    to_truly_sparse(model, {"0.weight": mask})
    torch.testing.assert_close(model(x), before, atol=1e-6, rtol=1e-6)
    assert torch.equal(to_masked(model)["0.weight"], mask)
    assert model[0].bias is None


@pytest.mark.parametrize(
    "masks",
    [
        {"net.1.weight": torch.ones(16, 20, dtype=torch.bool)},  # ReLU, not a Linear
        {"net.0.bias": torch.ones(16, dtype=torch.bool)},  # not a weight
        {"missing.weight": torch.ones(16, 20, dtype=torch.bool)},
        {"weight": torch.ones(16, 20, dtype=torch.bool)},  # root
    ],
)
def test_bad_mask_name_raises(masks):
    model, _ = _masked_model()
    with pytest.raises(ValueError, match="`masks`"):
        to_truly_sparse(model, masks)
    assert type(model.net[0]) is nn.Linear


def test_bad_mask_shape_or_dtype_raises():
    model, masks = _masked_model()
    with pytest.raises(ValueError, match="`masks`.*shape"):
        to_truly_sparse(model, {"net.0.weight": torch.ones(20, 16, dtype=torch.bool)})
    with pytest.raises(ValueError, match="`masks`.*bool"):
        to_truly_sparse(model, {"net.0.weight": masks["net.0.weight"].float()})
    # validation happens before any replacement
    bad = dict(masks, **{"net.4.weight": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="`masks`"):
        to_truly_sparse(model, bad)
    assert type(model.net[0]) is nn.Linear


def test_bad_max_density_and_root_sparse_raise():
    model, masks = _masked_model()
    with pytest.raises(ValueError, match="`max_density`"):
        to_truly_sparse(model, masks, max_density=1.5)
    layer = SparseLinear.from_dense(nn.Linear(4, 3), torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="`module`"):
        to_masked(layer)


def test_bias_parameter_object_moves_with_the_layer():
    model, masks = _masked_model()
    bias = model.net[0].bias
    to_truly_sparse(model, masks)
    assert model.net[0].bias is bias
    to_masked(model)
    assert model.net[0].bias is bias


def _masked_step(model, masks, opt, x):
    opt.zero_grad()
    model(x).square().mean().backward()
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].grad.mul_(mask)
    opt.step()


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
        lambda p: torch.optim.Adagrad(p, lr=0.05, initial_accumulator_value=0.1),
    ],
    ids=["sgd_nesterov", "adamw", "adagrad"],
)
def test_optimizer_state_follows_the_conversion(make_opt):
    """Masked training for 3 steps, then 3 truly sparse steps, then 2 masked steps again equals
    8 masked steps: the optimizer state is gathered and scattered at the masks."""
    torch.manual_seed(0)
    model, masks = _masked_model()
    reference = copy.deepcopy(model)
    opt, ref_opt = make_opt(model.parameters()), make_opt(reference.parameters())
    xs = [torch.randn(6, 20, generator=torch.Generator().manual_seed(i)) for i in range(8)]
    for x in xs[:3]:
        _masked_step(model, masks, opt, x)
    weights = {n: p for n, p in model.named_parameters() if n in masks}
    to_truly_sparse(model, masks)
    for name, mask in masks.items():
        layer = model.get_submodule(name[: -len(".weight")])
        assert replace_optimizer_param(opt, weights[name], layer.values, mask)
        assert opt.state[layer.values] and weights[name] not in opt.state
    for x in xs[3:6]:
        _masked_step(model, {}, opt, x)
    sparse_values = {n: model.get_submodule(n[: -len(".weight")]).values for n in masks}
    to_masked(model)
    for name, mask in masks.items():
        new = dict(model.named_parameters())[name]
        assert replace_optimizer_param(opt, sparse_values[name], new, mask)
    for x in xs[6:]:
        _masked_step(model, masks, opt, x)
    for x in xs:
        _masked_step(reference, masks, ref_opt, x)
    for (name, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4, msg=name)
    ref_params = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        for key, value in opt.state[p].items():
            torch.testing.assert_close(value, ref_opt.state[ref_params[name]][key], atol=1e-5, rtol=1e-4)


def test_replace_optimizer_param_checks_shapes_and_reports_absence():
    dense = nn.Parameter(torch.ones(3, 4))
    mask = torch.eye(3, 4, dtype=torch.bool)
    opt = torch.optim.SGD([dense], lr=0.1)
    with pytest.raises(ValueError, match=r"`old` and `new` must be a dense weight of `mask`'s shape \(3, 4\)"):
        replace_optimizer_param(opt, dense, nn.Parameter(torch.ones(4)), mask)
    other = nn.Parameter(torch.ones(3, 4))
    assert not replace_optimizer_param(opt, other, nn.Parameter(torch.ones(3)), mask)
    assert opt.param_groups[0]["params"][0] is dense


def test_memory_report_counts_values_indices_masks_and_state():
    model, masks = _masked_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(_x()).sum().backward()
    opt.step()
    dense_report = memory_report(model, opt)
    params = dict(model.named_parameters())
    total_numel = sum(p.numel() for p in params.values())
    assert dense_report["param_bytes"] == dense_report["masked_param_bytes"] == 4 * total_numel
    assert dense_report["optimizer_state_bytes"] == 4 * total_numel  # one momentum buffer each
    assert dense_report["index_bytes"] == dense_report["mask_bytes"] == dense_report["sparse_layers"] == 0
    weights = {n: params[n] for n in masks}
    to_truly_sparse(model, masks)
    for name, mask in masks.items():
        replace_optimizer_param(opt, weights[name], model.get_submodule(name[:-7]).values, mask)
    report = memory_report(model, [opt])
    nnz = sum(int(m.sum()) for m in masks.values())
    weight_numel = sum(m.numel() for m in masks.values())
    assert report["sparse_layers"] == 3
    assert report["param_bytes"] == 4 * (total_numel - weight_numel + nnz)
    assert report["optimizer_state_bytes"] == report["param_bytes"]
    assert report["masked_param_bytes"] == report["masked_optimizer_state_bytes"] == 4 * total_numel
    assert report["mask_bytes"] == weight_numel
    # CSR structure: crow (out + 1), col/row/t_col/t_perm (nnz each), t_crow (in + 1), int32
    rows_cols = sum(m.shape[0] + 1 + m.shape[1] + 1 for m in masks.values())
    assert report["index_bytes"] == 4 * (4 * nnz + rows_cols)
    assert report["total_bytes"] == report["param_bytes"] + report["index_bytes"] + report["optimizer_state_bytes"]
    assert report["masked_total_bytes"] == dense_report["total_bytes"] + weight_numel
