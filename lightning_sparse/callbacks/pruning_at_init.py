"""Pruning at initialization: SNIP, GraSP, SynFlow, magnitude or random masks, then static training.

Before the first optimizer step (``on_train_start``) the callback scores every sparsified unit
and keeps the top-scoring ones; from then on it is ``DynamicSparseTraining(method="static")``
with those masks: exact zeros after every step, masked gradients, masks in checkpoints (a
resumed run restores them and never scores again), identical masks on every DDP rank (the
scores are summed over the ranks before the ranking). The scores are the pure functions of
:mod:`lightning_sparse.core.saliency`:

- ``snip``: Lee, Ajanthan, Torr 2019, "SNIP: Single-shot Network Pruning based on Connection
  Sensitivity", arXiv:1810.02340: ``|g * w|`` of the task's loss on the first ``num_batches``
  training batches;
- ``grasp``: Wang, Zhang, Grosse 2020, "Picking Winning Tickets Before Training by Preserving
  Gradient Flow", arXiv:2002.07376: keeps the largest ``w * Hg`` (removes what would most
  reduce the gradient flow);
- ``synflow``: Tanaka, Kunin, Yamins, Ganguli 2020, "Pruning neural networks without any data by
  iteratively conserving synaptic flow", arXiv:2006.05467: ``|dR/dw * w|`` of the linearised
  network on an all-ones input, pruned over ``iterations`` rounds on the exponential schedule
  (no data);
- ``magnitude``: ``|w|`` at initialization; ``random``: the masks of the base's ``distribution``
  drawn at random (``DynamicSparseTraining(method="static")``'s).

``scope="global"`` ranks every unit of every layer together (the papers); ``"layer"`` keeps each
layer's count of ``distribution`` (``"uniform"``, ``"erk"``, ...) and ranks inside the layer
(SynFlow's rounds then prune every layer to the same density: ``distribution="uniform"`` only).
``DynamicSparseTraining(distribution="snip")`` is the other use of SNIP: its per-layer counts with
random positions.

The loss is the module's own ``training_step`` loss under automatic optimization; under manual
optimization the module defines ``saliency_loss(batch)`` (see :mod:`._scoring`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from typing_extensions import override

from lightning_sparse._validation import check_choice, check_int
from lightning_sparse.callbacks._masked import SparseMaskCallback
from lightning_sparse.callbacks._scoring import (
    DATA_SCORES,
    element_scores,
    global_budget_counts,
    input_shape_of,
    unit_scores,
)
from lightning_sparse.core import iterative_masks, synflow_scores
from lightning_sparse.core.topology import select_topk

__all__ = ["PRUNING_AT_INIT_METHODS", "PruningAtInit"]

PRUNING_AT_INIT_METHODS = ("snip", "grasp", "synflow", "magnitude", "random")
PRUNING_SCOPES = ("global", "layer")


class PruningAtInit(SparseMaskCallback):
    """Score the units once before training, keep the best, train the static sparse network.

    Args:
        method: ``"snip"``, ``"grasp"``, ``"synflow"``, ``"magnitude"`` or ``"random"``.
        sparsity: share of zeros over the sparsified parameters, in ``[0, 1)``.
        scope: ``"global"`` (one ranking over all layers) or ``"layer"`` (each layer keeps its
            count of ``distribution``).
        num_batches: training batches whose summed loss gradients SNIP and GraSP use (>= 1).
        iterations: SynFlow's pruning rounds (>= 1; 100 as the paper).
        input_shape: SynFlow's input shape without the batch axis; None: the module's
            ``example_input_array`` or the first training batch's.
        distribution: per-layer densities for ``scope="layer"`` and ``method="random"``
            (``"uniform"``, ``"er"``, ``"erk"`` or a mapping).
        seed: seed of the callback's generator (ties, random masks).
        **kwargs: ``include``, ``exclude``, ``granularity``, ``allowed_regions``,
            ``weight_init``, ``log_per_layer``, ``summary``, ``verify_ddp``, ...: see
            :class:`~lightning_sparse.callbacks.SparseMaskCallback`.

    Raises:
        ValueError: an unknown ``method`` or ``scope``, bad counts, SynFlow with ``scope="layer"``
            and a non-uniform ``distribution``; in ``setup``, SNIP/GraSP under manual optimization
            without ``saliency_loss``.

    Examples:
        >>> PruningAtInit("snip", sparsity=0.9).scope
        'global'
    """

    def __init__(
        self,
        method: str = "snip",
        sparsity: float = 0.9,
        scope: str = "global",
        num_batches: int = 1,
        iterations: int = 100,
        input_shape: Sequence[int] | None = None,
        distribution: str | dict[str, float] = "uniform",
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        check_choice("method", method, PRUNING_AT_INIT_METHODS)
        check_choice("scope", scope, PRUNING_SCOPES)
        check_int("num_batches", num_batches, 1)
        check_int("iterations", iterations, 1)
        if input_shape is not None and (isinstance(input_shape, (str, bytes)) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in input_shape)):
            raise ValueError(f"`input_shape` must be None or positive ints (no batch axis), got {input_shape!r}.")
        if distribution == "snip":
            raise ValueError("`distribution` must be 'uniform', 'er', 'erk' or a mapping for PruningAtInit "
                             "(SNIP's own ranking is `method='snip'`), got 'snip'.")
        if method == "synflow" and scope == "layer" and distribution != "uniform":
            raise ValueError("`scope='layer'` with `method='synflow'` prunes every layer to the same density and "
                             f"needs `distribution='uniform'`, got {distribution!r}.")
        super().__init__(sparsity=sparsity, distribution=distribution, seed=seed, **kwargs)
        self.method = method
        self.scope = scope
        self.num_batches = num_batches
        self.iterations = iterations
        self.input_shape = None if input_shape is None else tuple(input_shape)

    @override
    def _label(self) -> str:
        return f"PruningAtInit[{self.method}]"

    @override
    def scores_first_masks(self) -> bool:
        return self.method != "random"

    @override
    def scores_from_data(self) -> bool:
        return self.method in DATA_SCORES

    @override
    def first_masks(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Tensor]:
        targets = self._targets
        if self.method == "synflow":
            return self._synflow_masks(trainer, pl_module)
        scores = unit_scores(element_scores(self.method, trainer, pl_module, self._params, self.num_batches), targets)
        return self.keep_top(scores)

    def keep_top(self, scores: dict[str, Tensor]) -> dict[str, Tensor]:
        """Unit masks keeping the top scores: globally (the target's total count) or per layer
        (each layer's count of ``distribution``); ties broken by the callback's generator."""
        counts = self._final_counts
        if self.scope == "global":
            counts = global_budget_counts(self, scores)
        out = {}
        for n, t in self._targets.items():
            allowed = t.allowed.cpu().bool() if t.allowed is not None else None
            out[n] = select_topk(scores[n].nan_to_num(neginf=-torch.finfo(torch.float32).max), counts[n],
                                 self._generator, candidates=allowed)
        return out

    def _synflow_masks(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Tensor]:
        if self.scope == "global" and len({t.unit_size for t in self._targets.values()}) > 1:
            raise ValueError("`method='synflow'` with `scope='global'` ranks units of one size; the targets mix "
                             f"unit sizes {sorted({t.unit_size for t in self._targets.values()})} "
                             "(granularity='kernel'): use `scope='layer'` or `granularity='element'`.")
        shape = input_shape_of(trainer, pl_module, self.input_shape)
        total = sum(t.num_units for t in self._targets.values())
        density = sum(self._final_counts.values()) / total
        masks = iterative_masks(lambda: synflow_scores(pl_module, self._params, shape), self._params, density,
                                iterations=self.iterations, scope=self.scope, generator=self._generator,
                                targets=self._targets)
        return {n: m.cpu() for n, m in masks.items()}

    @override
    def extra_state(self) -> dict[str, Any]:
        return {"method": self.method}
