"""Lightning plumbing of the data-pruning callback: shards, epoch re-sizing, gathers, log cadence.

Private to :mod:`lightning_sparse.callbacks.data_pruning`; these functions read or set the
trainer's loop state (``fit_loop.max_batches``, the combined loader's limits, the validation
interval) that Lightning sizes once per fit.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.trainer.states import RunningStage
from torch import Tensor

def _shards(trainer: Trainer) -> tuple[int, int]:
    if trainer.world_size <= 1 or not getattr(trainer._accelerator_connector, "use_distributed_sampler", True):
        return 1, 0
    kwargs = trainer.distributed_sampler_kwargs or {}
    return int(kwargs.get("num_replicas", 1)), int(kwargs.get("rank", 0))


def _batches_trained(trainer: Trainer) -> int | None:
    if not trainer.training:
        return None
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)


def _logs_this_step(trainer: Trainer) -> bool:
    """Whether the loggers write this training step's values (``log_every_n_steps`` cadence)."""
    connector = getattr(trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", True))


def _limited_length(trainer: Trainer, loader: Any) -> float:
    from lightning.pytorch.trainer.connectors.data_connector import _parse_num_batches

    try:
        length = len(loader)
    except TypeError:
        return float("inf")
    return _parse_num_batches(RunningStage.TRAINING, length, trainer.limit_train_batches)


def _resize_epoch(trainer: Trainer) -> None:
    """Size the current epoch from the loaders' lengths now (Lightning sized it at the start)."""
    fit_loop = trainer.fit_loop
    combined = fit_loop._combined_loader
    if combined is None:
        return
    limits = [_limited_length(trainer, dl) for dl in combined.flattened]
    combined.limits = limits
    fit_loop.max_batches = max(limits) if limits else 0  # "max_size_cycle", the training mode
    interval = trainer.val_check_interval
    if (isinstance(interval, float) and getattr(trainer, "_val_check_time_interval", None) is None
            and math.isfinite(fit_loop.max_batches)):
        trainer.val_check_batch = max(1, int(fit_loop.max_batches * interval))


def _gather(trainer: Trainer, losses: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
    """Every rank's ``(losses, index)``, concatenated (batches of different sizes padded)."""
    strategy = trainer.strategy
    device = losses.device
    size = torch.tensor([losses.numel()], device=device)
    sizes = strategy.all_gather(size).flatten()
    longest = int(sizes.max())
    packed = torch.full((longest, 2), float("nan"), dtype=torch.float64, device=device)
    packed[: losses.numel(), 0] = losses.detach().double()
    packed[: losses.numel(), 1] = index.double()
    gathered = strategy.all_gather(packed).reshape(-1, longest, 2)
    rows = torch.cat([gathered[r, : int(sizes[r])] for r in range(gathered.shape[0])])
    return rows[:, 0].float(), rows[:, 1].round().long()
