"""Mask utilities: bit-packing for checkpoints, densities and a cross-rank checksum.

Torch only: this module never imports Lightning.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

_BITS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def pack_mask(mask: Tensor) -> Tensor:
    """Pack a bool tensor into uint8 bytes, 8 positions per byte (an 8x smaller checkpoint).

    Example:
        >>> m = torch.tensor([[True, False, True], [False, False, True]])
        >>> torch.equal(unpack_mask(pack_mask(m), m.shape), m)
        True
    """
    flat = mask.detach().flatten().cpu().to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return (flat.view(-1, 8) * _BITS).sum(1, dtype=torch.uint8)


def unpack_mask(packed: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """Inverse of :func:`pack_mask`."""
    n = int(torch.Size(shape).numel())
    bits = (packed.cpu().view(-1, 1) & _BITS).ne(0).flatten()[:n]
    return bits.view(tuple(shape))


def density(masks: Mapping[str, Tensor]) -> float:
    """Share of active positions over all masks."""
    total = sum(m.numel() for m in masks.values())
    return sum(int(m.sum()) for m in masks.values()) / max(total, 1)


def mask_checksum(masks: Mapping[str, Tensor]) -> Tensor:
    """A float64 fingerprint of a mask set (position-weighted sums) to compare across ranks."""
    parts = []
    for i, name in enumerate(sorted(masks)):
        m = masks[name].flatten()
        pos = m.nonzero().squeeze(1).double()
        parts.append(torch.stack([pos.sum() * (i + 1), (pos * pos).sum() % 1_000_003, pos.new_tensor(float(pos.numel()))]))
    return torch.stack(parts).sum(0).cpu() if parts else torch.zeros(3, dtype=torch.float64)
