"""Wrapping a LightningModule in DDP again after its layers were swapped.

DDP registers its parameters and buffers when it wraps the module, so a callback that replaces
layers mid-training (``TrulySparse``) wraps the changed module again through the strategy. The
buffers named here (the CSR index buffers, equal on every rank because they follow from the
masks) are excluded from DDP's broadcast before every forward; the module's own ignore list is
kept and restored when nothing is swapped any more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.strategies import DDPStrategy
from torch.nn.parallel import DistributedDataParallel

_ATTR = "_ddp_params_and_buffers_to_ignore"
_UNSET = object()


class DDPRewrap:
    """Re-wraps the module under DDP and keeps its ignore list (no-op on other strategies)."""

    def __init__(self) -> None:
        self._original: Any = _UNSET

    def rewrap(self, trainer: Trainer, pl_module: LightningModule, ignore_buffers: Sequence[str]) -> None:
        """Wrap ``pl_module`` again, ignoring ``ignore_buffers`` on top of its own list."""
        strategy = trainer.strategy
        if not isinstance(strategy, DDPStrategy) or not isinstance(strategy.model, DistributedDataParallel):
            return
        if self._original is _UNSET:
            self._original = getattr(pl_module, _ATTR, None)
        setattr(pl_module, _ATTR, list(self._original or []) + list(ignore_buffers))
        strategy.model = pl_module
        strategy.configure_ddp()

    def restore(self, pl_module: LightningModule) -> None:
        """Put the module's own ignore list back."""
        if self._original is _UNSET:
            return
        if self._original is None:
            pl_module.__dict__.pop(_ATTR, None)
        else:
            setattr(pl_module, _ATTR, self._original)
        self._original = _UNSET
