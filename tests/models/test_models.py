"""Every registered model: builds with defaults, runs forward and backward, has the right shape."""

import pytest
import torch
from torch import nn

from lightning_sparse.models import create_model, list_models, register_model
from lightning_sparse.models._registry import _MODEL_BUILDERS


HEAVY = {"avsr_base", "e2enet", "unet3d", "slak_small", "slak_base"}  # 418 M parameters (counted on the meta device in test_avsr.py); the
# paper-scale 3D segmentation networks (their forward and backward run at test size in test_e2enet.py, test_unet3d.py);
# SLaK-S/B (91 M / 158 M: counted on the meta device in test_slak.py, the same code runs at tiny size there)


@pytest.mark.parametrize("name", [n for n in list_models() if n not in HEAVY])
def test_model_forward_backward(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7)
    input_size = getattr(model, "example_input_size", None)
    assert input_size is not None, f"{name} must set `example_input_size` (one sample's shape)"
    convention = getattr(model, "input_convention", None)
    if convention == "audio_visual":  # keyword streams: the CTC and the attention decoder's logits
        outputs = model(**model.example_inputs(batch_size=2), tokens=torch.full((2, 3), model.sos_eos))
        assert outputs["ctc_logits"].shape[::2] == (2, 7) and outputs["decoder_logits"].shape == (2, 3, 8)
        out = torch.cat([outputs["ctc_logits"].flatten(), outputs["decoder_logits"].flatten()])
    elif convention == "segmentation":  # logits per voxel; a list (finest first) under deep supervision
        outputs = model(torch.randn(2, *input_size))
        outputs = outputs if isinstance(outputs, list) else [outputs]
        assert outputs[0].shape == (2, 7, *input_size[1:])
        out = torch.cat([o.flatten() for o in outputs])
    elif convention == "features_lengths":  # speech: (B, T, F) and lengths
        x = torch.randn(2, *input_size)
        out, out_lengths = model(x, torch.tensor([input_size[0], input_size[0] // 2]))
        assert out.shape == (2, int(out_lengths.max()), 7)
    else:
        out = model(torch.randn(2, *input_size))
        assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{name}.{pname} got no gradient"
        assert torch.isfinite(param.grad).all()
    weights = [p for n, p in model.named_parameters() if p.dim() > 1]
    assert any(p.grad.abs().sum() > 0 for p in weights)


def test_registry_lists_builtin_models_sorted():
    names = list_models()
    assert names == sorted(names)
    assert {"mlp", "small_cnn", "resnet8", "resnet20"} <= set(names)


def test_create_model_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="`name` must be one of") as err:
        create_model("resnet_does_not_exist")
    assert "resnet20" in str(err.value) and "resnet_does_not_exist" in str(err.value)


def test_register_model_rejects_duplicate_and_passes_kwargs():
    @register_model
    def _test_only_linear(num_classes=3, in_features=4):
        return nn.Linear(in_features, num_classes)

    try:
        assert create_model("_test_only_linear", num_classes=5).out_features == 5
        with pytest.raises(ValueError, match="already registered"):
            register_model(_test_only_linear)
    finally:
        _MODEL_BUILDERS.pop("_test_only_linear")


def test_resnet_depth_and_validation():
    from lightning_sparse.models import ResNetCIFAR

    def convs3x3(model: nn.Module) -> int:
        return sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in model.modules())

    for depth in (8, 20, 56):  # 6n + 2 weighted layers: 6n + 1 3x3 convs and the classifier
        assert convs3x3(ResNetCIFAR(depth=depth, width=4)) == depth - 1
    with pytest.raises(ValueError, match="`depth` must be 6n \\+ 2"):
        ResNetCIFAR(depth=21)
    with pytest.raises(ValueError, match="`width`"):
        create_model("resnet8", width=0)
    with pytest.raises(ValueError, match="`hidden_sizes`"):
        create_model("mlp", hidden_sizes=[8, 0])
    with pytest.raises(ValueError, match="`dropout`"):
        create_model("small_cnn", dropout=1.0)
