"""Mask utilities: bit-packing for checkpoints, densities and a cross-rank checksum.

Torch only: this module never imports Lightning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from .targets import SparseTarget

_BITS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def pack_mask(mask: Tensor) -> Tensor:
    """Pack a bool tensor into uint8 bytes, 8 positions per byte (an 8x smaller checkpoint).

    Examples:
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


MULTIPLY_MAX_ELEMENTS = 1 << 16
"""``MaskSet.apply(multiply=True)`` multiplies tensors up to this size by a keep-mask."""


class MaskSet:
    """Bool masks keyed by qualified parameter name, at each target's unit granularity.

    Keeps, per target, the active units, the units ever active (for the in-time
    over-parameterisation rate of Liu et al. 2021, arXiv:2102.02887) and a cached parameter-shaped
    view of the inactive positions used to zero weights and gradients.

    Args:
        targets: the sparsified parameters.
        masks: name -> bool unit mask for every target.

    Examples:
        >>> from torch import nn
        >>> lin = nn.Linear(4, 2)
        >>> from lightning_sparse.core.targets import find_targets
        >>> ms = MaskSet(find_targets(lin), {"weight": torch.eye(2, 4, dtype=torch.bool)})
        >>> ms.apply(dict(lin.named_parameters())); int((lin.weight != 0).sum())
        2
        >>> ms.global_density()
        0.25
    """

    def __init__(self, targets: Iterable[SparseTarget], masks: Mapping[str, Tensor]) -> None:
        self.targets = {t.name: t for t in targets}
        if set(masks) != set(self.targets):
            raise ValueError(f"masks must cover exactly the targets: {sorted(set(masks) ^ set(self.targets))[:5]}.")
        self.units: dict[str, Tensor] = {}
        self.ever: dict[str, Tensor] = {}
        self._off: dict[str, Tensor] = {}
        self._keep: dict[str, Tensor] = {}  # float keep-masks of small parameters (apply(multiply=True))
        for name, mask in masks.items():
            self.set(name, mask)

    def __iter__(self):
        return iter(self.units)

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, name: str) -> Tensor:
        return self.units[name]

    def set(self, name: str, mask: Tensor) -> None:
        """Replace the unit mask of ``name`` (records newly active units as explored)."""
        target = self.targets[name]
        if tuple(mask.shape) != target.unit_shape or mask.dtype != torch.bool:
            raise ValueError(f"mask of {name!r} must be bool of shape {target.unit_shape}, got {mask.dtype} {tuple(mask.shape)}.")
        self.units[name] = mask
        self.ever[name] = self.ever[name] | mask if name in self.ever else mask.clone()
        self._off[name] = target.expand(~mask)
        self._keep.pop(name, None)

    def full(self, name: str) -> Tensor:
        """Parameter-shaped bool mask of ``name``."""
        return self.targets[name].expand(self.units[name]).contiguous()

    def off(self, name: str) -> Tensor:
        """Parameter-shaped view of the inactive positions of ``name`` (do not modify)."""
        return self._off[name]

    def active(self, name: str) -> int:
        """Active units of ``name``."""
        return int(self.units[name].sum())

    def apply(self, tensors: Mapping[str, Tensor], names=None, multiply: bool = False) -> None:
        """Zero every inactive position of the given parameter-shaped tensors (weights or grads).

        ``multiply``: tensors of at most ``MULTIPLY_MAX_ELEMENTS`` elements are multiplied by a
        cached keep-mask of their dtype instead (one plain elementwise kernel: a third of
        ``masked_fill_``'s time on a small layer). Equal for finite values; an inactive NaN or
        infinity stays non-finite, so it is for tensors whose inactive entries are finite (the
        weights right after a step on masked gradients).
        """
        # in place on detached views (parameters): cheaper than a no_grad context on every step
        for name in self.units if names is None else names:
            t = tensors.get(name)
            if t is None:
                continue
            if t.requires_grad:
                t = t.detach()
            if multiply and t.numel() <= MULTIPLY_MAX_ELEMENTS and t.is_floating_point():
                keep = self._keep.get(name)
                if keep is None or keep.dtype != t.dtype or keep.device != t.device:
                    keep = self._keep[name] = (~self._off[name]).to(t.dtype)
                t.mul_(keep)
            else:
                t.masked_fill_(self._off[name], 0.0)

    def densities(self) -> dict[str, float]:
        """Realised density per parameter."""
        return {n: float(m.sum()) / m.numel() for n, m in self.units.items()}

    def global_density(self) -> float:
        """Share of active positions over all parameters, counted in elements."""
        active = sum(int(m.sum()) * self.targets[n].unit_size for n, m in self.units.items())
        return active / max(sum(t.numel for t in self.targets.values()), 1)

    def exploration_rate(self) -> float:
        """Share of units that were ever active."""
        return density(self.ever)

    def checksum(self) -> Tensor:
        """See :func:`mask_checksum`."""
        return mask_checksum(self.units)

    def state_dict(self) -> dict:
        """Bit-packed, device-free state."""
        return {
            "shapes": {n: tuple(m.shape) for n, m in self.units.items()},
            "masks": {n: pack_mask(m) for n, m in self.units.items()},
            "ever": {n: pack_mask(m) for n, m in self.ever.items()},
        }

    @classmethod
    def from_state_dict(cls, targets: Iterable[SparseTarget], state: Mapping, devices: Mapping[str, torch.device] | None = None) -> "MaskSet":
        """Rebuild from :meth:`state_dict`, checking that names and shapes match ``targets``.

        Raises:
            ValueError: the state's masks do not match the targets.
        """
        targets = list(targets)
        shapes = state["shapes"]
        names = {t.name for t in targets}
        if set(shapes) != names:
            raise ValueError(
                f"the checkpoint's masks do not match the sparsified parameters (differing: {sorted(set(shapes) ^ names)[:5]})."
            )
        for t in targets:
            if tuple(shapes[t.name]) != t.unit_shape:
                raise ValueError(f"checkpoint mask of {t.name!r} has shape {tuple(shapes[t.name])}, expected {t.unit_shape}.")
        dev = devices or {}
        masks = {n: unpack_mask(state["masks"][n], shapes[n]).to(dev.get(n, "cpu")) for n in shapes}
        out = cls(targets, masks)
        for n in shapes:
            out.ever[n] = unpack_mask(state["ever"][n], shapes[n]).to(dev.get(n, "cpu")) | masks[n]
        return out
