"""Networks of the meta-learning tasks: a multi-task classifier and MME's cosine classifier.

:class:`MultiTaskNet` is the hard-parameter-sharing network of the MOML multi-task experiments
(Ye et al. 2021, arXiv:2102.07121; the official ``DMTL``): a shared backbone (any registered
model without its classifier), a shared hidden layer (linear, batch norm, ReLU, dropout 0.5) and
one linear head per task; ``forward(x, task)``.

:class:`MMENet` is the network of Minimax Entropy (Saito, Kim, Sclaroff, Darrell, Saenko,
"Semi-supervised Domain Adaptation via Minimax Entropy", ICCV 2019, arXiv:1904.06487): a
backbone ``G`` and a cosine classifier ``F`` (MME's ``Predictor_deep``: linear 512, L2
normalisation, bias-free linear over a temperature of 0.05); ``forward(x, reverse=True)`` puts a
gradient reversal layer between them, so one backward pass lets ``F`` maximise and ``G`` minimise
the entropy of unlabelled target predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_sparse.models._registry import create_model, register_model
from lightning_sparse.models.domain_adaptation import strip_classifier

__all__ = ["MMENet", "MultiTaskNet", "grad_reverse", "multi_task_net"]


class MultiTaskNet(nn.Module):
    """Shared backbone and hidden layer, one linear head per task.

    Args:
        backbone: Name of a registered model; its last linear classifier is removed.
        num_classes: Classes per task (one int for all tasks, or one per task).
        num_tasks: Number of tasks (ignored when ``num_classes`` is a list).
        hidden_dim: Width of the shared hidden layer (0: none).
        dropout: Dropout of the hidden layer.
        backbone_kwargs: Extra arguments of the backbone builder.

    Examples:
        >>> net = MultiTaskNet("small_cnn", [10, 4], hidden_dim=16, backbone_kwargs={"in_channels": 1, "width": 4})
        >>> net(torch.randn(2, 1, 8, 8), task=1).shape
        torch.Size([2, 4])
    """

    def __init__(self, backbone: str = "small_cnn", num_classes: int | Sequence[int] = 10, num_tasks: int = 2,
                 hidden_dim: int = 512, dropout: float = 0.5, backbone_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        classes = [int(num_classes)] * int(num_tasks) if isinstance(num_classes, int) else [int(c) for c in num_classes]
        if not classes or min(classes) < 2:
            raise ValueError(f"`num_classes` must give every task at least 2 classes, got {num_classes!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")
        self.num_classes = classes
        self.backbone = create_model(backbone, **{**(backbone_kwargs or {}), "num_classes": max(classes)})
        features = strip_classifier(self.backbone)
        if hidden_dim > 0:
            self.hidden = nn.Sequential(nn.Linear(features, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(),
                                        nn.Dropout(dropout))
            features = hidden_dim
        else:
            self.hidden = nn.Identity()
        self.heads = nn.ModuleList(nn.Linear(features, c) for c in classes)
        self.example_input_size = getattr(self.backbone, "example_input_size", None)

    @property
    def num_tasks(self) -> int:
        return len(self.heads)

    def forward(self, x: Tensor, task: int = 0) -> Tensor:
        """Logits ``(B, num_classes[task])`` of task ``task``."""
        if not 0 <= task < len(self.heads):
            raise ValueError(f"`task` must be in [0, {len(self.heads)}), got {task!r}.")
        return self.heads[task](self.hidden(self.backbone(x)))

    def shared_parameters(self) -> list[nn.Parameter]:
        """The parameters every task uses (backbone and hidden layer)."""
        return [*self.backbone.parameters(), *self.hidden.parameters()]


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, eta: float) -> Tensor:
        ctx.eta = eta
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.eta * grad, None


def grad_reverse(x: Tensor, eta: float = 1.0) -> Tensor:
    """Identity forward, gradient times ``-eta`` backward (Ganin & Lempitsky 2015, arXiv:1409.7495).

    Examples:
        >>> x = torch.ones(2, requires_grad=True)
        >>> grad_reverse(x, 0.5).sum().backward(); x.grad.tolist()
        [-0.5, -0.5]
    """
    return _GradReverse.apply(x, eta)


class MMENet(nn.Module):
    """Backbone ``G`` -> linear 512 -> L2 normalisation -> bias-free linear / temperature (``F``).

    Examples:
        >>> net = MMENet("small_cnn", 5, backbone_kwargs={"in_channels": 1, "width": 4}, hidden_dim=8)
        >>> net(torch.randn(3, 1, 8, 8), reverse=True).shape
        torch.Size([3, 5])
    """

    def __init__(self, backbone: str, num_classes: int = 10, hidden_dim: int = 512, temperature: float = 0.05,
                 backbone_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"`num_classes` must be at least 2, got {num_classes!r}.")
        if not temperature > 0:
            raise ValueError(f"`temperature` must be positive, got {temperature!r}.")
        self.backbone = create_model(backbone, **{**(backbone_kwargs or {}), "num_classes": num_classes})
        features = strip_classifier(self.backbone)
        self.embed = nn.Linear(features, hidden_dim)
        self.classifier = nn.Linear(hidden_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, 0.0, 0.1)
        self.temperature = temperature

    def forward(self, x: Tensor, reverse: bool = False, eta: float = 1.0) -> Tensor:
        """Logits ``(B, num_classes)``; ``reverse`` reverses the gradient into the backbone."""
        features = self.backbone(x)
        if reverse:
            features = grad_reverse(features, eta)
        return self.classifier(F.normalize(self.embed(features), dim=1)) / self.temperature

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())

    def classifier_parameters(self) -> list[nn.Parameter]:
        return [*self.embed.parameters(), *self.classifier.parameters()]


@register_model
def multi_task_net(backbone: str = "small_cnn", num_tasks: int = 1, **kwargs: Any) -> MultiTaskNet:
    """:class:`MultiTaskNet`; give ``num_classes`` as one count per task (``[31, 31, 31]``), or one
    count and ``num_tasks``."""
    return MultiTaskNet(backbone, num_tasks=num_tasks, **kwargs)
