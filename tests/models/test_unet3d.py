"""The dense 3D U-Net baseline (MONAI's DynUNet): outputs per mode, sizes, argument checks."""

import pytest
import torch

from lightning_sparse.models import create_model
from lightning_sparse.models.unet3d import UNet3D


def test_deep_supervision_list_in_training_and_one_tensor_in_eval():
    torch.manual_seed(0)
    net = create_model("unet3d_small", num_classes=4)
    assert net.size_multiple == (8, 16, 16)
    x = torch.randn(1, 1, 8, 32, 48)
    outputs = net.train()(x)
    assert isinstance(outputs, list) and len(outputs) == 4
    assert all(o.shape == (1, 4, 8, 32, 48) for o in outputs)
    sum(o.square().mean() for o in outputs).backward()
    assert all(p.grad is not None for p in net.parameters())
    assert net.eval()(x).shape == (1, 4, 8, 32, 48)
    assert UNet3D(num_classes=2, deep_supervision=False).train()(torch.randn(1, 1, 16, 16, 16)).shape == (1, 2, 16, 16, 16)


def test_paper_scale_builder_counts():
    net = create_model("unet3d", num_classes=16)
    assert net.size_multiple == (16, 16, 16)
    assert 16e6 < sum(p.numel() for p in net.parameters()) < 17e6


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"filters": (8, 16), "strides": (2, 2)}, "the first stride 1"),
    ({"filters": (8,), "strides": (1,)}, "at least 2"),
    ({"num_classes": 1}, "`num_classes`"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNet3D(**kwargs)
