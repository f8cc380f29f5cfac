"""auto_avsr's fusion MLP (``MLPHead``): the layer that fuses the audio and video streams.

:class:`FusionMLP` maps the concatenated streams ``(B, T, 2 d_model)`` of
:class:`~lightning_sparse.models.avsr.AVSR` to ``(B, T, d_model)``. Torch only.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["FusionMLP"]


class FusionMLP(nn.Module):
    """auto_avsr's ``MLPHead``: ``fc2(relu(bn1(fc1(x))))`` over ``(B, T, in_features)``.

    ``bn1`` is a ``BatchNorm1d`` over the ``hidden`` channels (frames as the batch positions).

    Examples:
        >>> import torch
        >>> FusionMLP(8, 16, 4)(torch.randn(2, 5, 8)).shape
        torch.Size([2, 5, 4])
    """

    def __init__(self, in_features: int, hidden: int, out_features: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.nonlin1 = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, out_features)

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn1(self.fc1(x).transpose(1, 2)).transpose(1, 2)
        return self.fc2(self.nonlin1(x))
