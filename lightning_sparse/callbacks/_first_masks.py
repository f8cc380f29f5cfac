"""First masks scored from data at ``on_train_start`` (a mixin of the mask-holding base).

A subclass whose :meth:`FirstMasks.scores_first_masks` is true gets dense masks at
``on_fit_start`` and its real first masks from :meth:`FirstMasks.first_masks` once the training
loader exists (``on_train_start``, before the first optimizer step); a resumed run restores its
masks and never scores again. ``masks_from`` (a :class:`~lightning_sparse.callbacks.LotteryTicket`
file) gives the first masks, and the rewind weights, of a fresh run. ``distribution="snip"`` (any subclass) keeps the per-layer counts
of SNIP's global ranking and draws the positions at random (the hard-sample-learners code and
SLaK's initialization); :class:`~lightning_sparse.callbacks.PruningAtInit` keeps the top-scoring
positions themselves. Per-layer counts fixed from data are checkpointed (``layer_counts``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from typing_extensions import override

from lightning_sparse.core import MaskSet, sparse_init_
from lightning_sparse.core.updates import initial_mask
from lightning_sparse.core.updates import initial_mask

__all__ = ["SCORED_DISTRIBUTIONS", "FirstMasks"]

SCORED_DISTRIBUTIONS = ("snip",)


class FirstMasks:
    """Data-dependent first masks; :class:`~lightning_sparse.callbacks.SparseMaskCallback` owns the attributes."""

    _targets: dict[str, Any]
    _params: dict[str, Tensor]
    _bases: dict[str, int]
    _generator: torch.Generator
    _maskset: MaskSet | None
    _scoring: bool
    _layer_counts: dict[str, int]
    distribution: Any
    sparsity: float
    init_mask: str
    weight_init: str
    granularity: str
    masks_from: str | None = None  # a LotteryTicket file (DynamicSparseTraining's argument)
    ticket_weights: bool = True

    def scores_first_masks(self) -> bool:
        """Whether fresh first masks come from :meth:`first_masks` at ``on_train_start`` (from
        data) instead of being drawn at ``on_fit_start``; the masks are dense until then."""
        return self.distribution in SCORED_DISTRIBUTIONS

    def scores_from_data(self) -> bool:
        """Whether :meth:`first_masks` needs training batches (and so a loss from the module)."""
        return self.distribution in SCORED_DISTRIBUTIONS

    def check_first_masks(self, pl_module: LightningModule) -> None:
        """Raise before training when the first masks need a loss the module cannot give."""
        if self.scores_first_masks() and self.scores_from_data():
            from lightning_sparse.callbacks._scoring import check_loss_source

            check_loss_source(pl_module, self._label())

    def first_masks(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Tensor]:
        """Unit masks scored from data (see :meth:`scores_first_masks`): ``distribution="snip"``
        keeps SNIP's per-layer counts of a global ranking and draws the positions at random."""
        from lightning_sparse.callbacks._scoring import element_scores, global_budget_counts, unit_scores

        scores = unit_scores(element_scores("snip", trainer, pl_module, self._params, 1), self._targets)
        counts = global_budget_counts(self, scores)
        return {n: initial_mask(t, counts[n], self._generator, self.init_mask) for n, t in self._targets.items()}

    def _fresh_masks(self, pl_module: LightningModule) -> None:
        """The first masks of a fresh run: from ``masks_from``'s ticket, dense until scored at
        ``on_train_start``, or drawn at the initial densities."""
        self._scoring = False
        ticket = self._ticket_masks(pl_module) if self.masks_from else None
        if ticket is not None:
            self._use_counts({n: int(m.sum()) for n, m in ticket.items()})
            self._set_first_masks(ticket, init=False)
            return
        self._scoring = self.scores_first_masks()
        if self._scoring:
            masks = {n: t.allowed.clone().bool() if t.allowed is not None else torch.ones(t.unit_shape, dtype=torch.bool)
                     for n, t in self._targets.items()}
        else:
            counts = self.counts(self._initial_densities)
            masks = {n: initial_mask(t, counts[n], self._generator, self.init_mask) for n, t in self._targets.items()}
        self._set_first_masks(masks, init=not self._scoring)

    def _ticket_masks(self, pl_module: LightningModule) -> dict[str, Tensor]:
        """Unit masks of the ticket file ``masks_from`` (and its weights into the module when
        ``ticket_weights``), checked against the targets."""
        from lightning_sparse.callbacks.lottery_ticket import load_ticket

        ticket = load_ticket(self.masks_from)
        stored = ticket["masks"]
        if set(stored) != set(self._targets):
            raise ValueError(
                f"`masks_from`={self.masks_from!r} must hold masks for exactly the sparsified parameters: missing "
                f"{sorted(set(self._targets) - set(stored))[:5]}, extra {sorted(set(stored) - set(self._targets))[:5]}."
            )
        units = {}
        for n, t in self._targets.items():
            full = stored[n].bool()
            if tuple(full.shape) != tuple(t.shape):
                raise ValueError(f"`masks_from`: the mask of {n} has shape {tuple(full.shape)}, the parameter "
                                 f"{tuple(t.shape)}.")
            unit = full if t.unit_shape == t.shape else full.flatten(len(t.unit_shape)).any(-1)
            if not torch.equal(t.expand(unit), full):
                raise ValueError(f"`masks_from`: the mask of {n} is not made of whole units at granularity "
                                 f"{self.granularity!r}.")
            units[n] = unit
        if self.ticket_weights:
            pl_module.load_state_dict(ticket["weights"])
        return units

    def _set_first_masks(self, masks: Mapping[str, Tensor], init: bool = True) -> None:
        self._maskset = MaskSet(self._targets.values(),
                                {n: m.to(self._params[n].device) for n, m in masks.items()})
        if init and self.weight_init != "keep":
            for n, p in self._params.items():
                sparse_init_(p, self._maskset.full(n), self.weight_init, self._generator)

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._scoring:
            return
        self._scoring = False
        masks = self.first_masks(trainer, pl_module)
        if self.distribution in SCORED_DISTRIBUTIONS:
            self._use_counts({n: int(m.sum()) for n, m in masks.items()})
        self._set_first_masks(masks)
        self._maskset.apply(self._params, self._free(self._params))
        if trainer.world_size > 1:
            self._verify_ranks(trainer, what="masks scored from data differ between DDP ranks")
        rank_zero_info(f"{self._label()}: first masks scored from data, density {self.global_density:.4f}.")

    def _use_counts(self, counts: Mapping[str, int]) -> None:
        """Per-layer counts fixed from data (``distribution="snip"``): the layers' target densities."""
        self._layer_counts = dict(counts)
        self._final_counts = dict(counts)
        self._target_densities = {n: c / self._bases[n] for n, c in counts.items()}
        self._initial_densities = self._target_densities

