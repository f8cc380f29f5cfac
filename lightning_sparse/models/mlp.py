"""A multi-layer perceptron over flattened inputs.

The fully connected network used throughout the sparse-training literature for MNIST-style
experiments, e.g. the LeNet-300-100 of LeCun et al. 1998 ("Gradient-Based Learning Applied to
Document Recognition", Proc. IEEE) that SET (Mocanu et al. 2018, "Scalable Training of Artificial
Neural Networks with Adaptive Sparse Connectivity inspired by Network Science",
arXiv:1707.04780) and RigL (Evci et al. 2020, arXiv:1911.11134) sparsify.

Deviation: hidden layers use ReLU (or the activation ``act``, see
:func:`lightning_sparse.models.layers.act`) and optional dropout rather than the original
tanh/sigmoid.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lightning_sparse.models._checks import check_sizes
from lightning_sparse.models._registry import register_model
from lightning_sparse.models.layers import LayerSpec, factories

__all__ = ["MLP", "mlp", "lenet_300_100"]


class MLP(nn.Module):
    """Flatten the input, then ``Linear -> act (-> Dropout)`` per hidden size, then a classifier.

    Args:
        in_features: Number of input features after flattening (e.g. ``28 * 28``).
        hidden_sizes: Width of each hidden layer, in order; empty for a linear classifier.
        num_classes: Number of output logits.
        dropout: Dropout probability after each hidden activation, in ``[0, 1)``.
        act: Hidden activation, a name or ``(name, kwargs)`` (see
            :func:`lightning_sparse.models.layers.act`).

    Raises:
        ValueError: If an argument is out of range or ``act`` is unknown.

    Examples:
        >>> model = MLP(in_features=64, hidden_sizes=[32, 16], num_classes=10)
        >>> model(torch.randn(4, 1, 8, 8)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden_sizes: Sequence[int] = (300, 100),
        num_classes: int = 10,
        dropout: float = 0.0,
        act: LayerSpec = "relu",
    ) -> None:
        super().__init__()
        check_sizes(in_features=in_features, num_classes=num_classes)
        if any(h < 1 for h in hidden_sizes):
            raise ValueError(
                f"`hidden_sizes` must contain positive integers only, got {list(hidden_sizes)}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout}.")
        self.example_input_size = (in_features,)
        layers: list[nn.Module] = []
        width = in_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), factories.act(act, inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(B, num_classes)`` for an input of shape ``(B, ...)``."""
        x = torch.flatten(x, 1)  # (B, in_features)
        return self.fc(self.features(x))  # (B, num_classes)


@register_model
def mlp(**kwargs) -> MLP:
    """An :class:`MLP`; every argument is passed through (defaults: 784-300-100-10)."""
    return MLP(**kwargs)


@register_model
def lenet_300_100(**kwargs) -> MLP:
    """LeNet-300-100 (LeCun et al. 1998) with ReLU: hidden sizes fixed to ``[300, 100]``."""
    return MLP(hidden_sizes=(300, 100), **kwargs)
