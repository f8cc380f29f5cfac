"""Score every training sample's hardness (EL2N or GraNd) after a short run and write a scores file.

Paul et al. 2021, "Deep Learning on a Data Diet: Finding Important Examples Early in Training"
(NeurIPS, arXiv:2107.07075) rank the training samples by EL2N or GraNd taken after a few epochs
of dense training, averaged over several runs; Xiao et al. 2024, "Are Sparse Neural Networks
Better Hard Sample Learners?" (BMVC, arXiv:2409.09196) then train sparse networks on the hardest
share. The workflow here:

1. a few short dense runs, each with ``HardnessScores("scores/run{k}.pt", epoch=E)`` (say
   ``E = 10``, different ``seed_everything`` seeds);
2. the sparse run with ``CIFAR10DataModule(..., subset="hardest:0.3",
   scores_file=["scores/run0.pt", ...])``: the files are averaged (:func:`read_scores`).

The samples are scored un-augmented: the DataModule's ``train_eval_dataset()`` (the image
DataModules of this package have it) yields the training images with the evaluation transform,
in its own order, each carrying its position in the full training split
(``source_indices``), the ``indices`` of the file (format:
:mod:`lightning_sparse.metrics.hardness`). The model is scored in evaluation mode (BatchNorm on
its running statistics, no dropout) and put back in its mode afterwards.

Under DDP every rank scores a disjoint shard (sample ``i`` on rank ``i % world_size``), the
scores are gathered, and global rank 0 writes the file; all ranks then hold the same
``scores`` and wait for the file.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from torch.utils.data import DataLoader, Subset
from typing_extensions import override

from lightning_sparse._validation import check_choice, check_int
from lightning_sparse.metrics.hardness import SCORES, el2n_scores, grand_scores, read_scores, save_scores

__all__ = ["HardnessScores", "read_scores"]


class HardnessScores(Callback):
    """Write every training sample's EL2N or GraNd score after ``epoch`` epochs (or at fit end).

    Paul et al. 2021, "Deep Learning on a Data Diet", arXiv:2107.07075; used to pick hard
    samples in Xiao et al. 2024, "Are Sparse Neural Networks Better Hard Sample Learners?",
    arXiv:2409.09196 (see the module docstring for the workflow and the DDP behaviour).

    Args:
        path: The scores file to write (a ``torch.save`` dict, see
            :mod:`lightning_sparse.metrics.hardness`); its folder is created.
        score: ``"el2n"`` (``|| softmax - onehot ||_2``) or ``"grand"`` (per-sample gradient
            norm over all trainable parameters, with ``torch.func``; cross-entropy).
        epoch: Score when this many training epochs are complete (at the end of that epoch);
            None: at the end of ``fit``.
        batch_size: Samples per scoring batch (default the DataModule's ``batch_size`` or 256).
        num_workers: DataLoader workers of the scoring loader.
        chunk_size: GraNd only: samples per vectorised gradient chunk (None: the whole batch).

    Raises:
        ValueError: If an argument is out of range (here), or (in ``setup``) the DataModule has
            no ``train_eval_dataset()`` or ``epoch`` exceeds ``max_epochs``.

    Examples:
        >>> cb = HardnessScores("scores/run0.pt", score="el2n", epoch=10)
        >>> cb.score, cb.epoch
        ('el2n', 10)
        >>> HardnessScores("s.pt", score="forgetting")
        Traceback (most recent call last):
        ...
        ValueError: `score` must be one of ('el2n', 'grand'), got 'forgetting'.
    """

    def __init__(
        self,
        path: str,
        score: str = "el2n",
        epoch: int | None = None,
        batch_size: int | None = None,
        num_workers: int = 0,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ValueError(f"`path` must be a file path, got {path!r}.")
        check_choice("score", score, SCORES)
        check_int("epoch", epoch, 1, allow_none=True)
        check_int("batch_size", batch_size, 1, allow_none=True)
        check_int("num_workers", num_workers, 0)
        check_int("chunk_size", chunk_size, 1, allow_none=True)
        self.path = os.fspath(path)
        self.score = score
        self.epoch = epoch
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.chunk_size = chunk_size
        self.scores: Tensor | None = None  # (N,) of the last scoring, on every rank
        self.indices: Tensor | None = None  # (N,) their positions in the full training split
        self.scored_epoch: int | None = None

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        dm = trainer.datamodule
        if dm is None or not callable(getattr(dm, "train_eval_dataset", None)):
            raise ValueError(
                "HardnessScores needs a DataModule with `train_eval_dataset()` (the training split with the "
                "evaluation transform, e.g. the image DataModules of lightning_sparse.data), got "
                f"{type(dm).__name__}."
            )
        max_epochs = trainer.max_epochs
        if self.epoch is not None and max_epochs not in (None, -1) and self.epoch > max_epochs:
            raise ValueError(f"`epoch` must be at most the Trainer's max_epochs ({max_epochs}), got {self.epoch}.")

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.epoch is not None and trainer.current_epoch + 1 == self.epoch:
            self.score_and_write(trainer, pl_module, self.epoch)

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.epoch is None:
            self.score_and_write(trainer, pl_module, trainer.current_epoch)
        elif self.scored_epoch is None:
            rank_zero_warn(f"HardnessScores: training stopped before epoch {self.epoch}; {self.path} was not written.")

    def score_and_write(self, trainer: Trainer, pl_module: LightningModule, epoch: int) -> Tensor:
        """Score the DataModule's ``train_eval_dataset()`` with ``pl_module``, write ``path`` on
        global rank 0 and return the ``(N,)`` scores (on every rank)."""
        dataset = trainer.datamodule.train_eval_dataset()
        n, world, rank = len(dataset), trainer.world_size, trainer.global_rank
        was_training = pl_module.training
        pl_module.eval()
        try:
            shard = self._score_dataset(pl_module, Subset(dataset, range(rank, n, world)), trainer)
        finally:
            pl_module.train(was_training)
        scores = self._gather(trainer, shard, n)
        positions = getattr(dataset, "source_indices", None)
        indices = torch.as_tensor(np.asarray(positions if positions is not None else np.arange(n)), dtype=torch.long)
        if trainer.is_global_zero:
            save_scores(self.path, scores, indices, self.score, epoch)
            rank_zero_info(f"HardnessScores: {self.score} of {n} training samples after {epoch} epochs "
                           f"(mean {scores.mean():.4f}) written to {self.path}.")
        if world > 1:
            trainer.strategy.barrier("hardness_scores")
        self.scores, self.indices, self.scored_epoch = scores, indices, epoch
        return scores

    def _score_dataset(self, pl_module: LightningModule, shard: Subset, trainer: Trainer) -> Tensor:
        batch_size = self.batch_size or int(getattr(trainer.datamodule, "batch_size", 0) or 256)
        loader = DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=self.num_workers)
        out = []
        for batch in loader:
            x, y = batch[0].to(pl_module.device), batch[1].to(pl_module.device)
            if self.score == "el2n":
                with torch.no_grad():
                    out.append(el2n_scores(pl_module(x), y).cpu())
            else:
                out.append(grand_scores(pl_module, x, y, chunk_size=self.chunk_size).cpu())
        return torch.cat(out) if out else torch.zeros(0)

    @staticmethod
    def _gather(trainer: Trainer, shard: Tensor, n: int) -> Tensor:
        """Every rank's shard (sample ``i`` on rank ``i % world``) back in dataset order."""
        world = trainer.world_size
        if world == 1:
            return shard.float()
        longest = math.ceil(n / world)
        padded = torch.full((longest,), float("nan"), device=trainer.strategy.root_device)
        padded[: len(shard)] = shard.to(padded.device)
        gathered = trainer.strategy.all_gather(padded).reshape(world, longest).cpu()  # (world, longest)
        return gathered.t().reshape(-1)[:n].float()  # position j * world + r holds rank r's j-th

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"scored_epoch": self.scored_epoch}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.scored_epoch = state_dict.get("scored_epoch")

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(path=self.path, score=self.score)
