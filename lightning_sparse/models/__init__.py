"""Models: plain ``nn.Module`` classes and a timm-style registry of short builders.

Every registered model sets ``example_input_size`` (the shape of one input sample, without the
batch dimension) so generic tests and tools can build a valid input for it. Sequence models
whose ``forward`` takes ``(features, lengths)`` and returns ``(logits, lengths)`` (the speech
models, e.g. :class:`ConformerCTC`) also declare ``input_convention = "features_lengths"``;
``example_input_size`` is then one utterance's ``(T, F)``. The audio-visual model :class:`AVSR`
declares ``input_convention = "audio_visual"``: it takes keyword streams (``video``, ``audio`` and
their lengths), ``example_input_size`` maps each stream to one sample's shape and
``model.example_inputs()`` builds a valid input. Segmentation models (:class:`E2ENet`) declare
``input_convention = "segmentation"``: they take ``(B, C, *spatial)`` and return per-voxel logits
``(B, num_classes, *spatial)`` in eval mode, and a list of such logits at several scales (full
resolution first) in training mode when deep supervision is on.

Examples:
    >>> from lightning_sparse.models import create_model
    >>> model = create_model("small_cnn", in_channels=1, num_classes=10, width=8)
"""

from lightning_sparse.models import mlp, resnet_cifar, small_cnn  # noqa: F401  (register builders)
from lightning_sparse.models import efficientnet, fast_resnet, r3d, resnet, vgg  # noqa: F401
from lightning_sparse.models import avsr, conformer, dsn, e2enet, multi_task, slak, unet3d  # noqa: F401
from lightning_sparse.models._registry import create_model, list_models, register_model
from lightning_sparse.models.avsr import AVSR
from lightning_sparse.models.conformer import ConformerCTC
from lightning_sparse.models.cost import CostReport, cost_report, cost_table
from lightning_sparse.models.domain_adaptation import DomainAdaptationNet, InstanceWeightNet, strip_classifier
from lightning_sparse.models.dsn import DSN
from lightning_sparse.models.e2enet import E2ENET_FUSION_INCLUDE, E2ENet
from lightning_sparse.models.fast_resnet import FastResNet
from lightning_sparse.models.flops import FlopCount, conv_linear_flops
from lightning_sparse.models.mlp import MLP
from lightning_sparse.models.multi_task import MMENet, MultiTaskNet
from lightning_sparse.models.resnet import ResNet
from lightning_sparse.models.resnet_cifar import ResNetCIFAR
from lightning_sparse.models.slak import ConvNeXt, SLaK
from lightning_sparse.models.small_cnn import SmallCNN
from lightning_sparse.models.unet3d import UNet3D
from lightning_sparse.models.vgg import VGG

__all__ = [
    "MMENet",
    "MultiTaskNet",
    "DomainAdaptationNet",
    "InstanceWeightNet",
    "strip_classifier",
    "AVSR",
    "ConformerCTC",
    "ConvNeXt",
    "CostReport",
    "DSN",
    "E2ENET_FUSION_INCLUDE",
    "E2ENet",
    "MLP",
    "VGG",
    "FastResNet",
    "FlopCount",
    "ResNet",
    "ResNetCIFAR",
    "SLaK",
    "SmallCNN",
    "UNet3D",
    "conv_linear_flops",
    "cost_report",
    "cost_table",
    "create_model",
    "list_models",
    "register_model",
]
