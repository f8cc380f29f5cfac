"""Sparsity-aware initialisation: scale each non-zero by the fan-in its unit really has.

A dense initialiser (He, Xavier, PyTorch's default) draws every weight with a variance of about
``1 / fan_in`` where ``fan_in`` counts all inputs of a unit. Masking then keeps only ``k`` of
them, so the unit's pre-activation variance shrinks by the density ``k / fan_in`` and the signal
fades layer after layer in a very sparse network. Evci et al. 2022, "Gradient Flow in Sparse
Neural Networks and How Lottery Tickets Win" (AAAI, arXiv:2010.03533) therefore initialise each
unit with its *actual* number of non-zero inputs; a truly sparse library such as Nerva (Wesselink
et al. 2024, arXiv:2407.17437) has no dense weight to initialise in the first place and draws the
non-zeros directly. The functions here do the same on a masked dense weight:

- ``"rescale"``: keep the drawn values and multiply output unit ``o`` by ``sqrt(fan_in / k_o)``,
  which restores the dense initialiser's variance per unit;
- ``"he"``: He et al. 2015 ("Delving Deep into Rectifiers", arXiv:1502.01852) normal init with
  ReLU gain, ``N(0, 2 / k_o)``;
- ``"xavier"``: Glorot & Bengio 2010 ("Understanding the difficulty of training deep feedforward
  neural networks", AISTATS) uniform init, ``U(-b, b)`` with ``b = sqrt(6 / (k_o + c_i))``, where
  ``c_i`` counts the non-zeros that read input unit ``i`` (its actual fan-out);
- ``"keep"``: leave the weight as it is.

Here ``k_o`` is the number of non-zeros of output unit ``o`` (row ``o`` of a linear weight, output
channel ``o`` of a convolution, kernel positions included). Positions outside the mask are set to
zero. Exact numbers of non-zeros per layer come from
:func:`~lightning_sparse.core.distributions.density_counts`.

Torch only: this module never imports Lightning.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

WEIGHT_INITS = ("keep", "rescale", "he", "xavier")

__all__ = ["WEIGHT_INITS", "sparse_fans", "sparse_init_"]


def sparse_fans(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Actual fan-in per output unit and fan-out per input unit of a sparse weight.

    Args:
        mask: bool tensor of a weight's shape ``(out, in, *kernel)`` (at least 2 dimensions).

    Returns:
        ``(fan_in, fan_out)``: int64 tensors of shape ``(out,)`` and ``(in,)``; ``fan_in[o]`` is
        the number of non-zeros of output unit ``o``, ``fan_out[i]`` the number of non-zeros that
        read input unit ``i`` (kernel positions included, as in ``torch.nn.init``).

    Raises:
        ValueError: if ``mask`` is not a bool tensor with at least 2 dimensions.

    Examples:
        >>> fan_in, fan_out = sparse_fans(torch.tensor([[True, False, True], [False, False, True]]))
        >>> fan_in.tolist(), fan_out.tolist()
        ([2, 1], [1, 0, 2])
    """
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.dim() < 2:
        given = f"{mask.dtype} of shape {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"`mask` must be a bool tensor with at least 2 dimensions, got {given}.")
    units = mask.reshape(mask.shape[0], mask.shape[1], -1)  # (out, in, kernel)
    return units.sum((1, 2)), units.sum((0, 2))


@torch.no_grad()
def sparse_init_(
    weight: Tensor, mask: Tensor, method: str = "he", generator: torch.Generator | None = None
) -> Tensor:
    """Initialise the non-zeros of ``weight`` in place, scaled by each unit's actual fan-in.

    See the module docstring for the methods (Evci et al. 2022, arXiv:2010.03533). Weights with
    fewer than 2 dimensions (biases, norms) are only masked: they have no fan-in.

    Args:
        weight: the parameter (or tensor) to initialise, shape ``(out, in, *kernel)``.
        mask: bool tensor of ``weight``'s shape; ``False`` positions are set to zero.
        method: ``"keep"``, ``"rescale"``, ``"he"`` or ``"xavier"``.
        generator: random generator for ``"he"`` and ``"xavier"`` (on the CPU; the values are
            drawn there and moved to ``weight``'s device, so every device draws the same).

    Returns:
        ``weight``.

    Raises:
        ValueError: unknown ``method``, or ``mask`` not a bool tensor of ``weight``'s shape.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> w = torch.ones(2, 4)
        >>> mask = torch.tensor([[True, True, True, True], [True, False, False, False]])
        >>> sparse_init_(w, mask, "rescale").tolist()  # row 1 has 1 of 4 inputs: scaled by 2
        [[1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 0.0, 0.0]]
        >>> w = sparse_init_(torch.empty(256, 1000), torch.rand(256, 1000, generator=g) < 0.01, "he", g)
        >>> round(float(w.pow(2).sum(1).mean()), 1)  # pre-activation variance 2 per unit, as dense He
        2.0
    """
    if method not in WEIGHT_INITS:
        raise ValueError(f"`method` must be one of {WEIGHT_INITS}, got {method!r}.")
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != weight.shape:
        given = f"{mask.dtype} of shape {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"`mask` must be a bool tensor of the weight's shape {tuple(weight.shape)}, got {given}.")
    mask = mask.to(weight.device)
    if method == "keep" or weight.dim() < 2:
        return weight.masked_fill_(~mask, 0.0)
    fan_in, fan_out = sparse_fans(mask)
    extra = (1,) * (weight.dim() - 1)
    k_out = fan_in.clamp(min=1).to(weight.dtype).reshape(-1, *extra)  # (out, 1, ...)
    if method == "rescale":
        dense_fan_in = math.prod(weight.shape[1:])
        weight.mul_((dense_fan_in / k_out).sqrt())
    elif method == "he":
        noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
        weight.copy_(noise.to(weight.device) * (2.0 / k_out).sqrt())
    else:  # xavier
        k_in = fan_out.to(weight.dtype).reshape(1, -1, *extra[1:])  # (1, in, 1, ...)
        bound = (6.0 / (k_out + k_in).clamp(min=1)).sqrt()
        noise = torch.rand(weight.shape, generator=generator, dtype=weight.dtype)
        weight.copy_((noise.to(weight.device) * 2.0 - 1.0) * bound)
    return weight.masked_fill_(~mask, 0.0)
