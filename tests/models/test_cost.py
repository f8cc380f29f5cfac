"""The cost report: parameters, non-zero parameters and FLOPs, dense and masked, as a table."""

import pytest
import torch
from torch import nn

from lightning_sparse.models.cost import cost_report, cost_table
from lightning_sparse.models.flops import conv_linear_flops


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.ReLU(), nn.ConvTranspose3d(4, 2, 2, stride=2),
                         nn.Flatten(), nn.LazyLinear(3))


def test_counts_match_a_hand_count():
    model = net()
    x = torch.randn(1, 1, 4, 4, 4)
    model(x)  # materialise the lazy layer
    report = cost_report(model, x, name="net")
    conv = 64 * 4 * 27  # output voxels * out channels * in channels * taps
    up = 64 * 4 * 2 * 8  # input voxels of the transposed conv * in channels * out channels * taps
    linear = 2 * 8 * 8 * 8 * 3
    assert report.flops == 2 * (conv + up + linear)
    assert report.params == sum(p.numel() for p in model.parameters())
    assert report.nonzero_params == report.params


def test_kernel_masks_count_their_zeros_and_scale_flops():
    model = net()
    x = torch.randn(1, 1, 4, 4, 4)
    model(x)
    kernel_mask = torch.zeros(4, 1, dtype=torch.bool)
    kernel_mask[0] = True  # one of four kernels kept
    report = cost_report(model, x, masks={"0.weight": kernel_mask}, name="masked")
    dense = cost_report(model, x, name="dense")
    assert report.nonzero_params == dense.nonzero_params - 3 * 27
    assert report.sparse_flops == pytest.approx(dense.flops - 2 * 0.75 * 64 * 4 * 27)
    assert conv_linear_flops(model, x, {"0.weight": kernel_mask}).layers["0"][1] == 0.25
    table = cost_table([dense, report], baseline="dense").splitlines()
    assert table[3].startswith("| masked |") and table[3].endswith(f"| {report.sparse_flops / dense.sparse_flops:.2f} |")


def test_bad_masks_and_baselines_are_refused():
    model = net()
    x = torch.randn(1, 1, 4, 4, 4)
    model(x)
    with pytest.raises(ValueError, match="keyed by parameter names"):
        cost_report(model, x, masks={"nope.weight": torch.ones(1, dtype=torch.bool)})
    with pytest.raises(ValueError, match="does not fit"):
        cost_report(model, x, masks={"0.weight": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="`baseline` must be one of"):
        cost_table([cost_report(model, x, name="a")], baseline="b")
