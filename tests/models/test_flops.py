"""conv_linear_flops: dense MACs against hand counts, mask-aware counts, validation, side effects."""

import pytest
import torch
from torch import nn

from lightning_sparse.models import FlopCount, conv_linear_flops


@pytest.mark.parametrize(
    ("layer", "shape", "expected"),
    [
        (nn.Conv1d(3, 8, 5, padding=2), (2, 3, 20), 2 * 20 * 8 * 3 * 5),
        (nn.Conv1d(4, 8, 3, stride=2, groups=2), (1, 4, 11), 5 * 8 * 2 * 3),  # 5 outputs, 2 in/group
        (nn.Conv2d(3, 6, (3, 2)), (1, 3, 7, 7), 5 * 6 * 6 * 3 * 3 * 2),
        (nn.Conv3d(2, 4, 3, padding=1), (1, 2, 4, 5, 6), 4 * 5 * 6 * 4 * 2 * 27),
        (nn.Linear(10, 7), (3, 5, 10), 3 * 5 * 7 * 10),  # leading dimensions count
    ],
)
def test_dense_macs_by_hand(layer, shape, expected):
    count = conv_linear_flops(layer, torch.randn(shape))
    assert count == FlopCount(expected, float(expected), {"": (expected, 1.0)})
    assert count.ratio == 1.0


def test_masks_scale_each_layer_by_its_density():
    net = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(32, 5))
    x = torch.randn(1, 2, 10)
    conv_mask = torch.zeros(4, 2, 3, dtype=torch.bool)
    conv_mask[0] = True  # density 1/4, element level
    kernel_mask = torch.tensor([[True, False]] * 4)  # density 1/2, kernel level (out, in)
    fc_mask = torch.ones(5, 32)
    fc_mask[:, :8] = 0  # float mask, density 3/4
    conv_macs, fc_macs = 8 * 4 * 2 * 3, 5 * 32
    count = conv_linear_flops(net, x, {"0.weight": conv_mask, "3.weight": fc_mask})
    assert count.dense == conv_macs + fc_macs
    assert count.sparse == pytest.approx(conv_macs / 4 + fc_macs * 3 / 4)
    assert count.layers == {"0": (conv_macs, 0.25), "3": (fc_macs, 0.75)}
    kernel_level = conv_linear_flops(net, x, {"0.weight": kernel_mask})
    assert kernel_level.sparse == pytest.approx(conv_macs / 2 + fc_macs)


def test_masks_from_a_wrapper_and_tuple_inputs():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = nn.Linear(4, 2)

        def forward(self, x, scale):
            return self.model(x) * scale

    mask = torch.tensor([[True, False, False, False], [True, True, True, True]])
    count = conv_linear_flops(Wrapper(), (torch.randn(3, 4), 2.0), {"model.weight": mask})
    assert (count.dense, count.sparse) == (24, pytest.approx(24 * 5 / 8))


def test_every_call_counts_and_other_layers_do_not():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 6)
            self.norm = nn.LayerNorm(6)

        def forward(self, x):
            return self.fc(self.norm(self.fc(x)))

    assert conv_linear_flops(Twice(), torch.randn(1, 6)).dense == 2 * 36


def test_unknown_mask_names_are_rejected():
    with pytest.raises(ValueError, match=r"`masks` must be keyed by the weight names.*\['1.weight'\]"):
        net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
        conv_linear_flops(net, torch.randn(1, 2), {"1.weight": torch.ones(2)})


def test_mode_and_statistics_are_restored():
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.BatchNorm1d(2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    conv_linear_flops(net, torch.randn(4, 1, 9))
    assert net.training
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key])
    net.eval()
    conv_linear_flops(net, torch.randn(4, 1, 9))
    assert not net.training
    assert not any(m._forward_hooks for m in net.modules())
