"""DropPath: stochastic depth, dropping a residual branch for whole samples.

Huang et al. 2016, "Deep Networks with Stochastic Depth", arXiv:1603.09382, in the per-sample
form of Larsson et al. 2017 ("FractalNet", arXiv:1605.07648) used by timm, EfficientNet, ConvNeXt
and SLaK: in training each sample's branch output is zeroed with probability ``drop_prob`` and
the kept ones are scaled by ``1 / (1 - drop_prob)``, so the expectation is unchanged; in
evaluation it is the identity. Deviation from the paper: the paper drops the branch for the
whole mini-batch and rescales at test time instead.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_sparse._validation import check_bool, check_number

__all__ = ["DropPath", "drop_path"]


def drop_path(
    x: torch.Tensor, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True
) -> torch.Tensor:
    """Zero whole samples (dimension 0) of ``x`` with probability ``drop_prob`` when ``training``.

    Examples:
        >>> x = torch.ones(4, 3)
        >>> torch.equal(drop_path(x, 0.5, training=False), x)
        True
    """
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)  # (B, 1, ...)
    if keep > 0.0 and scale_by_keep:
        mask.div_(keep)
    return x * mask


class DropPath(nn.Module):
    """Stochastic depth on a residual branch: ``x + DropPath(p)(branch(x))``.

    Args:
        drop_prob: Probability of dropping a sample's branch, in ``[0, 1]``.
        scale_by_keep: Scale kept samples by ``1 / (1 - drop_prob)`` (keeps the expectation).

    Raises:
        ValueError: If ``drop_prob`` is not in ``[0, 1]``.

    Examples:
        >>> layer = DropPath(0.2).eval()
        >>> x = torch.randn(8, 4, 5, 5)
        >>> torch.equal(layer(x), x)
        True
    """

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.drop_prob = float(check_number("drop_prob", drop_prob, 0.0, 1.0))
        self.scale_by_keep = check_bool("scale_by_keep", scale_by_keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
