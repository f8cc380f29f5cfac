"""The domain-adaptation network: a registered backbone, a bottleneck, a cosine classifier; a weight net.

The architecture of the LIWUDA scripts (Zhu et al. 2023, arXiv:2312.05024; JinjingZhu/LIWUDA,
``ResNet.py``) and of most UDA work since DANN: the backbone's pooled features go through a
linear bottleneck (256), are L2-normalised, and a linear classifier divided by a temperature
(0.05) gives the logits. :class:`InstanceWeightNet` is the weight network: one linear layer and a
sigmoid on the normalised features, initialised ``N(0, 0.01)`` with a zero bias (weights start at
0.5).

Deviation, as an option: with ``cosine_classifier=True`` (the default) the classifier's rows are
normalised too, so the logits are cosines over the temperature (a cosine classifier); the official
scripts keep an unnormalised linear layer with a bias (``cosine_classifier=False``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DomainAdaptationNet", "InstanceWeightNet", "strip_classifier"]

_HEADS = ("fc", "classifier", "head")


def strip_classifier(model: nn.Module) -> int:
    """Replace the model's last linear classifier (``fc``, ``classifier`` or ``head``) by an identity.

    Returns:
        The feature size the classifier took (its ``in_features``).

    Raises:
        ValueError: If the model has no such attribute holding an ``nn.Linear``.

    Examples:
        >>> from lightning_sparse.models import create_model
        >>> model = create_model("small_cnn", num_classes=10, width=8)
        >>> strip_classifier(model), model(torch.randn(2, 1, 8, 8)).shape
        (32, torch.Size([2, 32]))
    """
    for name in _HEADS:
        head = getattr(model, name, None)
        if isinstance(head, nn.Linear):
            setattr(model, name, nn.Identity())
            return head.in_features
        if isinstance(head, nn.Sequential) and len(head) and isinstance(head[-1], nn.Linear):
            features = head[-1].in_features
            head[-1] = nn.Identity()
            return features
    raise ValueError(
        f"`backbone` must end in a linear classifier named one of {list(_HEADS)} to be used as a "
        f"feature extractor, got a {type(model).__name__} without one."
    )


class DomainAdaptationNet(nn.Module):
    """Backbone -> bottleneck -> L2-normalised features -> classifier / temperature.

    Args:
        backbone: A feature extractor returning ``(B, feature_dim)`` (see :func:`strip_classifier`).
        feature_dim: Its output size.
        num_classes: Classes of the classifier (the source classes).
        bottleneck_dim: Size of the bottleneck (the normalised features); ``0`` skips it.
        temperature: Logits are divided by it.
        cosine_classifier: Normalise the classifier's rows too (no bias).

    Examples:
        >>> net = DomainAdaptationNet(nn.Flatten(), 16, num_classes=3, bottleneck_dim=8)
        >>> features, logits = net(torch.randn(2, 1, 4, 4))
        >>> features.shape, logits.shape, round(features.norm(dim=1)[0].item(), 4)
        (torch.Size([2, 8]), torch.Size([2, 3]), 1.0)
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, bottleneck_dim: int = 256,
                 temperature: float = 0.05, cosine_classifier: bool = True) -> None:
        super().__init__()
        self.backbone = backbone
        self.bottleneck = nn.Linear(feature_dim, bottleneck_dim) if bottleneck_dim > 0 else nn.Identity()
        dim = bottleneck_dim if bottleneck_dim > 0 else feature_dim
        self.classifier = nn.Linear(dim, num_classes, bias=not cosine_classifier)
        self.temperature = temperature
        self.cosine_classifier = cosine_classifier
        self.feature_dim = dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(features (B, d), logits (B, num_classes))``; features have unit norm."""
        features = F.normalize(self.bottleneck(self.backbone(x)), dim=1)  # (B, d)
        weight = F.normalize(self.classifier.weight, dim=1) if self.cosine_classifier else self.classifier.weight
        logits = F.linear(features, weight, self.classifier.bias) / self.temperature  # (B, K)
        return features, logits


class InstanceWeightNet(nn.Module):
    """``sigmoid(Linear(d, 1))``: each instance's probability of belonging to a shared class.

    Examples:
        >>> InstanceWeightNet(8)(torch.zeros(3, 8)).tolist()
        [0.5, 0.5, 0.5]
    """

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(feature_dim, 1)
        nn.init.normal_(self.linear.weight, 0.0, 0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, features: Tensor) -> Tensor:
        """Return the weights, shape ``(B,)``, in ``(0, 1)``."""
        return torch.sigmoid(self.linear(features)).squeeze(1)
