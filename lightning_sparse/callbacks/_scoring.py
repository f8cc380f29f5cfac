"""Scores for masks chosen from data before the first optimizer step (pruning at initialization).

The mask-holding base draws data-dependent first masks at ``on_train_start`` (the training
loader exists then): :class:`~lightning_sparse.callbacks.PruningAtInit` keeps the top-scoring
units, ``DynamicSparseTraining(distribution="snip")`` keeps only SNIP's per-layer counts. This
module turns a Trainer and a LightningModule into the pure scores of
:mod:`lightning_sparse.core.saliency`:

- the loss of a batch is the task's own ``training_step`` loss (its ``"loss"`` entry) under
  automatic optimization, with ``self.log`` silenced and torchmetrics states reset afterwards;
  under manual optimization ``training_step`` steps the optimizers itself, so the module must
  define ``saliency_loss(batch) -> Tensor`` (checked before training starts);
- the batches are the first ``num_batches`` of a fresh pass over ``trainer.train_dataloader``
  (each DDP rank its own shard); the scores are summed over the ranks, so every rank keeps the
  same units;
- element scores are summed per unit (``granularity="kernel"``).

The module is scored in the mode it is in (training mode: batch statistics in BatchNorm), not in
eval mode as the reference's ``prune_loop`` (github.com/ganguli-lab/Synaptic-Flow) does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch import LightningModule, Trainer
from torch import Tensor
from torchmetrics import Metric

from lightning_sparse.core import SparseTarget, global_keep_counts
from lightning_sparse.core.saliency import grasp_scores, magnitude_scores, snip_scores, synflow_scores

SCORES = ("snip", "grasp", "synflow", "magnitude")
DATA_SCORES = ("snip", "grasp")


def check_loss_source(pl_module: LightningModule, owner: str) -> None:
    """Raise before training when the module cannot give a loss for data-dependent scores."""
    if not pl_module.automatic_optimization and not callable(getattr(pl_module, "saliency_loss", None)):
        raise ValueError(
            f"{owner}: scoring from data under manual optimization needs the LightningModule to define "
            f"`saliency_loss(batch) -> Tensor` (its `training_step` steps the optimizers itself); "
            f"{type(pl_module).__name__} defines none."
        )


@contextmanager
def _quiet(pl_module: LightningModule) -> Iterator[None]:
    """Run ``training_step`` outside the loop: no ``self.log``; metric states reset after."""
    pl_module.log = lambda *a, **k: None  # type: ignore[method-assign]
    pl_module.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        del pl_module.log, pl_module.log_dict
        for m in pl_module.modules():
            if isinstance(m, Metric):
                m.reset()


def _first_batches(trainer: Trainer, count: int) -> list[Any]:
    loader = trainer.train_dataloader
    if loader is None:
        raise RuntimeError("pruning at initialization needs the training dataloader (scores from data).")
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == count:
            break
    if not batches:
        raise RuntimeError("pruning at initialization: the training dataloader yielded no batch.")
    return batches


def loss_closures(trainer: Trainer, pl_module: LightningModule, num_batches: int) -> list[Callable[[], Tensor]]:
    """One zero-argument closure per batch returning the module's loss on it."""
    batches = [move_data_to_device(b, pl_module.device) for b in _first_batches(trainer, num_batches)]

    def closure(batch: Any, i: int) -> Tensor:
        if not pl_module.automatic_optimization:
            return pl_module.saliency_loss(batch)
        out = pl_module.training_step(batch, i)
        loss = out["loss"] if isinstance(out, Mapping) else out
        if not isinstance(loss, Tensor):
            raise RuntimeError(f"pruning at initialization: `training_step` returned {type(out).__name__}, "
                               "not a loss tensor (or a dict with 'loss').")
        return loss

    return [lambda b=b, i=i: closure(b, i) for i, b in enumerate(batches)]


def element_scores(method: str, trainer: Trainer, pl_module: LightningModule, params: Mapping[str, Tensor],
                   num_batches: int, input_shape: tuple[int, ...] | None = None) -> dict[str, Tensor]:
    """Parameter-shaped scores of ``method`` (higher = keep), summed over the DDP ranks."""
    if method == "magnitude":
        return magnitude_scores(params)
    if method == "synflow":
        return synflow_scores(pl_module, params, input_shape)
    with _quiet(pl_module):
        closures = loss_closures(trainer, pl_module, num_batches)
        scores = (snip_scores if method == "snip" else grasp_scores)(params, closures)
    if trainer.world_size > 1:
        scores = {n: trainer.strategy.reduce(s, reduce_op="sum") for n, s in scores.items()}
    return scores


def unit_scores(scores: Mapping[str, Tensor], targets: Mapping[str, SparseTarget]) -> dict[str, Tensor]:
    """Element scores summed per unit; units outside a target's allowed region score ``-inf``."""
    out = {}
    for n, t in targets.items():
        s = t.reduce(scores[n].detach().float()).cpu()
        out[n] = s if t.allowed is None else s.masked_fill(~t.allowed.cpu().bool(), -torch.inf)
    return out


def input_shape_of(trainer: Trainer, pl_module: LightningModule, given: tuple[int, ...] | None) -> tuple[int, ...]:
    """SynFlow's input shape: ``given``, else that of the first training batch's first tensor."""
    if given is not None:
        return tuple(given)
    example = getattr(pl_module, "example_input_array", None)
    if isinstance(example, Tensor):
        return tuple(example.shape[1:])
    batch = _first_batches(trainer, 1)[0]
    first = batch.get("image", next(iter(batch.values()))) if isinstance(batch, Mapping) else (
        batch[0] if isinstance(batch, (list, tuple)) else batch)
    if not isinstance(first, Tensor):
        raise ValueError("SynFlow needs `input_shape`: the first training batch holds no input tensor.")
    return tuple(first.shape[1:])


def global_budget_counts(callback: Any, scores: Mapping[str, Tensor]) -> dict[str, int]:
    """Per-layer unit counts of one global ranking of ``scores`` (finite = allowed) within the
    callback's target: its total count of units, or, when unit sizes differ (whole kernels beside
    single weights), of elements, ranking each unit by its score per element."""
    targets = callback._targets
    allowed = {n: torch.isfinite(s) for n, s in scores.items()}
    sizes = {n: t.unit_size for n, t in targets.items()}
    if len(set(sizes.values())) == 1:
        return global_keep_counts(scores, allowed, sum(callback._final_counts.values()), callback._generator)
    budget = sum(callback._final_counts[n] * sizes[n] for n in targets)
    per_element = {n: s / sizes[n] for n, s in scores.items()}  # a kernel ranks by its mean element score
    return global_keep_counts(per_element, allowed, budget, callback._generator, sizes=sizes)
