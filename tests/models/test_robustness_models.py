"""VGG, ResNet-18/34/50, EfficientNet-B0, R3D-18 and FastResNet: sizes checked against torchvision,
spatial paths, validation, and a short DynamicSparseTraining fit on a 2D and a 3D network."""

from __future__ import annotations

import pytest
import torch
import torchvision
from lightning.pytorch import Trainer, seed_everything
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_sparse.callbacks import DynamicSparseTraining
from lightning_sparse.models import VGG, ResNet, create_model
from lightning_sparse.tasks import ImageClassifier


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def spatial_size(model: nn.Module, module: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    """Spatial shape of ``module``'s output when ``model`` runs on ``x`` (eval mode)."""
    seen: list[tuple[int, ...]] = []
    handle = module.register_forward_hook(lambda m, i, out: seen.append(tuple(out.shape[2:])))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    return seen[0]


# ----------------------------------------------------------------------------- ResNet
@pytest.mark.parametrize("depth", [18, 34, 50])
def test_resnet_imagenet_matches_torchvision(depth):
    ours = create_model(f"resnet{depth}_imagenet", num_classes=1000).eval()
    ref = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    assert n_params(ours) == n_params(ref)
    ours.load_state_dict(ref.state_dict())  # same names and shapes, strict
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize(
    ("depth", "expected"), [(18, 11_173_962), (34, 21_282_122), (50, 23_520_842)]
)
def test_resnet_cifar_parameter_counts(depth, expected):
    model = create_model(f"resnet{depth}", num_classes=10)
    ref = getattr(torchvision.models, f"resnet{depth}")(weights=None, num_classes=10)
    # The CIFAR stem swaps the 7x7 conv (64*3*49 weights) for a 3x3 one (64*3*9); nothing else.
    assert n_params(model) == n_params(ref) - 64 * 3 * 49 + 64 * 3 * 9 == expected


def test_resnet_cifar_stem_changes_the_spatial_path():
    cifar, imagenet = create_model("resnet18"), create_model("resnet18", cifar_stem=False)
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert isinstance(cifar.maxpool, nn.Identity)
    assert imagenet.conv1.kernel_size == (7, 7) and isinstance(imagenet.maxpool, nn.MaxPool2d)
    x32 = torch.randn(1, 3, 32, 32)
    assert spatial_size(cifar, cifar.layer4, x32) == (4, 4)
    assert spatial_size(imagenet, imagenet.layer4, x32) == (1, 1)
    assert spatial_size(cifar, cifar.layer4, torch.randn(1, 3, 64, 64)) == (8, 8)
    assert spatial_size(imagenet, imagenet.layer4, torch.randn(1, 3, 224, 224)) == (7, 7)
    assert cifar(x32).shape == imagenet(x32).shape == (1, 10)


def test_resnet_options_and_validation():
    model = create_model(
        "resnet18", in_channels=1, num_classes=100, width=8, zero_init_residual=True
    )
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 100)
    assert all(int(torch.count_nonzero(b.bn2.weight)) == 0 for b in model.layer1)
    assert model.fc.in_features == 64
    assert create_model("resnet50", width=8).fc.in_features == 8 * 8 * 4
    with pytest.raises(ValueError, match="`block` must be one of"):
        ResNet(block="wide")
    with pytest.raises(ValueError, match="`layers` must be four"):
        ResNet(layers=[2, 2, 2])
    with pytest.raises(ValueError, match="`num_classes`"):
        create_model("resnet34", num_classes=0)


# ----------------------------------------------------------------------------- VGG
@pytest.mark.parametrize(
    ("depth", "expected"), [(11, 9_231_114), (16, 14_728_266), (19, 20_040_522)]
)
def test_vgg_features_match_torchvision_and_count(depth, expected):
    model = create_model(f"vgg{depth}_bn", num_classes=10)
    ref = getattr(torchvision.models, f"vgg{depth}_bn")(weights=None)
    model.features.load_state_dict(ref.features.state_dict())  # same layout, strict
    assert n_params(model) == n_params(ref.features) + 512 * 10 + 10 == expected


def test_vgg_image_size_sets_the_classifier_input():
    cifar = create_model("vgg16_bn", num_classes=10)
    tiny = create_model("vgg16_bn", num_classes=200, image_size=64)
    assert cifar.classifier.in_features == 512 and tiny.classifier.in_features == 2048
    assert cifar.example_input_size == (3, 32, 32) and tiny.example_input_size == (3, 64, 64)
    assert cifar.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert tiny.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 200)
    convs = [m for m in cifar.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in cifar.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(norms) == 13
    with pytest.raises(ValueError, match="`image_size` must be a positive multiple of 32"):
        create_model("vgg16_bn", image_size=48)
    with pytest.raises(ValueError, match="`config` must be one of"):
        VGG(config="F")


# ----------------------------------------------------------------------------- EfficientNet-B0
def test_efficientnet_b0_counts_and_stem():
    ref = torchvision.models.efficientnet_b0(weights=None)
    full = create_model("efficientnet_b0", num_classes=1000)
    assert n_params(full) == n_params(ref) == 5_288_548
    cifar = create_model("efficientnet_b0", num_classes=10, cifar_stem=True)
    assert n_params(cifar) == n_params(create_model("efficientnet_b0", num_classes=10)) == 4_020_358
    assert cifar.features[0][0].stride == (1, 1) and full.features[0][0].stride == (2, 2)
    assert any(m.groups > 1 for m in cifar.modules() if isinstance(m, nn.Conv2d))  # depthwise
    x32 = torch.randn(1, 3, 32, 32)
    assert spatial_size(cifar, cifar.features[-1], x32) == (2, 2)
    assert spatial_size(full, full.features[-1], x32) == (1, 1)
    assert spatial_size(full, full.features[-1], torch.randn(1, 3, 224, 224)) == (7, 7)
    gray = create_model("efficientnet_b0", in_channels=1, num_classes=3).eval()
    assert gray(torch.randn(2, 1, 64, 64)).shape == (2, 3)


def test_efficientnet_b0_stochastic_depth_and_validation():
    def probs(model):
        return [m.p for m in model.modules() if isinstance(m, torchvision.ops.StochasticDepth)]

    p = probs(create_model("efficientnet_b0"))
    assert len(p) == 16 and p[0] == 0.0 and p == sorted(p) and 0.15 < max(p) <= 0.2
    assert set(probs(create_model("efficientnet_b0", drop_path_rate=0.0))) == {0.0}
    model = create_model("efficientnet_b0", cifar_stem=True).eval()  # eval: no drop, no dropout
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))
    with pytest.raises(ValueError, match="`drop_path_rate` must be in"):
        create_model("efficientnet_b0", drop_path_rate=1.0)
    with pytest.raises(ValueError, match="`in_channels`"):
        create_model("efficientnet_b0", in_channels=0)


# ----------------------------------------------------------------------------- R3D-18
def test_r3d_18_matches_torchvision_and_takes_clips():
    model = create_model("r3d_18")
    assert n_params(model) == n_params(torchvision.models.video.r3d_18(weights=None)) == 33_371_472
    conv3d = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    assert len(conv3d) == 1 + 16 + 3 and not any(isinstance(m, nn.Conv2d) for m in model.modules())
    small = create_model("r3d_18", num_classes=5, in_channels=2).eval()
    clip = torch.randn(2, 2, 4, 32, 32)  # (B, C, T, H, W)
    assert small(clip).shape == (2, 5)
    assert spatial_size(small, small.layer4, clip) == (1, 2, 2)  # T/8 (at least 1), H/16, W/16
    with pytest.raises(ValueError, match="`num_classes`"):
        create_model("r3d_18", num_classes=0)


# ----------------------------------------------------------------------------- FastResNet
def test_fast_resnet_width_and_shapes():
    counts = {w: n_params(create_model("fast_resnet", width=w)) for w in (0.25, 0.5, 1.0)}
    assert counts == {0.25: 412_944, 0.5: 1_646_112, 1.0: 6_573_120}  # ResNet-9: 6.57 M
    model = create_model("fast_resnet", width=0.25, num_classes=10)
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    # prep, layer1 and its two residual convs, layer2, layer3 and its two residual convs
    assert widths == [16, 32, 32, 32, 64, 128, 128, 128]
    x = torch.randn(2, 3, 32, 32)
    assert spatial_size(model, model.layer3, x) == (4, 4)
    assert model.eval()(x).shape == (2, 10)
    assert model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 10)  # adaptive head
    with pytest.raises(ValueError, match="`width` must be a positive number"):
        create_model("fast_resnet", width=0)


# ----------------------------------------------------------------------------- sparse training
@pytest.mark.parametrize(
    ("name", "kwargs", "sample", "conv_type"),
    [
        ("fast_resnet", {"width": 0.25}, (3, 32, 32), nn.Conv2d),
        ("r3d_18", {}, (3, 4, 32, 32), nn.Conv3d),
    ],
)
def test_rigl_fit_sparsifies_every_conv(tmp_path, name, kwargs, sample, conv_type):
    seed_everything(0)
    task = ImageClassifier(name, kwargs, num_classes=4, scheduler="none", lr=0.01)
    data = TensorDataset(torch.randn(4, *sample), torch.tensor([0, 1, 2, 3]))
    dst = DynamicSparseTraining(
        method="rigl", sparsity=0.5, update_interval=1, stop_step=10, summary=False
    )
    trainer = Trainer(
        default_root_dir=tmp_path, max_steps=2, callbacks=[dst], logger=False,
        accelerator="cpu", devices=1, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, DataLoader(data, batch_size=2))
    convs = {f"model.{n}.weight" for n, m in task.model.named_modules() if isinstance(m, conv_type)}
    assert convs and convs <= set(dst.masks)  # every conv weight is a sparse target
    assert not any(n.endswith(".bias") or ".bn" in n for n in dst.masks)
    assert dst.num_updates == 1  # a RigL prune-and-grow at step 1
    assert dst.global_density == pytest.approx(0.5, abs=0.01)
    params = dict(task.named_parameters())
    for n, mask in dst.masks.items():
        assert torch.all(params[n][~mask] == 0), f"{n} has weights outside its mask"
