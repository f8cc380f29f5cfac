"""Supervised time series classification, with DSN's training defaults.

Defaults follow the official code of DSN (Xiao et al. 2022, "Dynamic Sparse Network for Time
Series Classification: Learning What to 'See'", NeurIPS 2022, arXiv:2212.09840;
``trainer_DSN.py`` at github.com/QiaoXiao7282/DSN): cross-entropy, Adam (Kingma & Ba 2015,
arXiv:1412.6980) at learning rate ``3e-4`` without weight decay, cosine annealing to ``1e-4``
(Loshchilov & Hutter 2017, "SGDR", arXiv:1608.03983) over the whole run; the paper trains 1000
epochs. Deviation: the cosine schedule is stepped every optimizer step instead of every epoch
(the same curve, finer grained).

Batch format (what :class:`~lightning_sparse.data.timeseries.TimeSeriesDataModule` yields):
``(x, y)``, ``(x, y, lengths)`` or ``(x, y, index, lengths)`` with ``x`` float ``(B, C, L)``
zero-padded to a common length, ``y`` int64 ``(B,)`` class indices, ``lengths`` int64 ``(B,)``
valid lengths and ``index`` int64 ``(B,)`` dataset indices. A third item is always read as
``lengths``: for data pruning, ask the DataModule for both (``return_index=True`` with
``return_lengths=True``). ``lengths`` reaches the backbone as ``model(x, lengths=lengths)`` when
its ``forward`` takes a ``lengths`` argument (as :class:`~lightning_sparse.models.DSN` does);
otherwise it is ignored with a warning.

Data pruning: ``training_step`` returns ``{"loss", "per_sample_loss", "index"}`` (``index`` for
``(x, y, index, lengths)`` batches only), the per-sample contract of
:mod:`lightning_sparse.core.per_sample`, as every :class:`~lightning_sparse.tasks.base.SparseTask`.

Model selection as in the paper (the checkpoint with the lowest training loss): the epoch mean
of the training loss is logged as ``train/loss_epoch``, so a recipe adds
``ModelCheckpoint(monitor="train/loss_epoch", mode="min", save_on_train_epoch_end=True)`` and
tests with ``trainer.test(ckpt_path="best")``.

DSN's constrained receptive fields: :meth:`TimeSeriesClassifier.allowed_regions` returns the
backbone's regions under the names the DST callback sees (``model.blocks.0.conv.weight``, ...),
ready for ``DynamicSparseTraining(allowed_regions=task.allowed_regions())``.
"""

from __future__ import annotations

import inspect
from functools import partial
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from lightning_sparse._validation import check_int
from lightning_sparse.models import create_model
from lightning_sparse.tasks.base import Batch, SparseTask, merge_backbone_kwargs

__all__ = ["TimeSeriesClassifier"]

class TimeSeriesClassifier(SparseTask):
    """Train a time series backbone (at ``self.model``) with cross-entropy on batches of series.

    Logs ``train/loss`` (per step), its epoch mean ``train/loss_epoch``,
    ``train/acc``, ``train/f1``, ``val/loss``, ``val/acc`` (progress bar), ``val/f1``,
    ``test/loss``, ``test/acc`` and ``test/f1``. Accuracy is the share of correct predictions;
    F1 is the macro average over classes.

    Args:
        backbone: Name of a registered model (see :func:`lightning_sparse.models.list_models`)
            or an ``nn.Module`` mapping ``(B, C, L)`` to ``(B, num_classes)`` logits.
        backbone_kwargs: Extra keyword arguments for a named backbone's builder, e.g.
            ``{"width": 47}``; ``num_classes`` and ``in_channels`` are passed for you. Must be
            empty for a module backbone.
        num_classes: Number of classes.
        in_channels: Variables per time step (1 for univariate series); ignored for a module
            backbone.
        optimizer: ``"adam"`` (L2 weight decay), ``"adamw"`` (decoupled) or ``"sgd"`` (with
            ``momentum``).
        lr: Peak learning rate.
        weight_decay: Weight decay, non-negative.
        momentum: SGD momentum in ``[0, 1)``; ignored by Adam and AdamW.
        scheduler: ``"cosine"`` (from ``lr`` to ``min_lr`` over
            ``trainer.estimated_stepping_batches``, stepped every optimizer step) or ``"none"``.
        min_lr: Final learning rate of the cosine schedule, in ``[0, lr]``.
        label_smoothing: Label smoothing in ``[0, 1)``.

    Raises:
        ValueError: If an argument is out of range or names an unknown backbone, optimizer or
            scheduler.

    Examples:
        >>> task = TimeSeriesClassifier("dsn", {"width": 4, "depth": 2}, num_classes=3)
        >>> x, y = torch.randn(4, 1, 50), torch.tensor([0, 1, 2, 0])
        >>> task(x).shape
        torch.Size([4, 3])
        >>> out = task.training_step((x, y, torch.tensor([50, 40, 30, 20])), 0)  # (x, y, lengths)
        >>> out["loss"].shape, out["per_sample_loss"].shape, "index" in out
        (torch.Size([]), torch.Size([4]), False)
        >>> sorted(task.allowed_regions())[0]
        'model.blocks.0.conv.weight'
    """

    optimizer_choices = ("adam", "adamw", "sgd")
    batch_layouts = (("x", "y"), ("x", "y", "lengths"), ("x", "y", "index", "lengths"))
    train_loss_on_epoch = True

    def __init__(
        self,
        backbone: str | nn.Module = "dsn",
        backbone_kwargs: dict[str, Any] | None = None,
        num_classes: int = 2,
        in_channels: int = 1,
        optimizer: str = "adam",
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        scheduler: str = "cosine",
        min_lr: float = 1e-4,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.check_training_args(num_classes, optimizer, scheduler, lr, momentum, weight_decay, label_smoothing)
        check_int("in_channels", in_channels, 1)
        if not 0.0 <= min_lr <= lr:
            raise ValueError(f"`min_lr` must be in [0, lr={lr}], got {min_lr}.")
        if isinstance(backbone, nn.Module):
            if backbone_kwargs:
                raise ValueError(
                    "`backbone_kwargs` must be empty when `backbone` is an nn.Module, got "
                    f"{backbone_kwargs}."
                )
            self.save_hyperparameters(ignore=["backbone"])
            self.model = backbone
        elif isinstance(backbone, str):
            kwargs = merge_backbone_kwargs(backbone_kwargs, num_classes=num_classes, in_channels=in_channels)
            self.save_hyperparameters()
            self.model = create_model(backbone, **kwargs)
        else:
            raise ValueError(
                f"`backbone` must be a registered model name or an nn.Module, got {type(backbone).__name__}."
            )
        self._takes_lengths = "lengths" in inspect.signature(self.model.forward).parameters
        self._warned_lengths = False
        self.add_metrics(
            acc=partial(MulticlassAccuracy, num_classes, average="micro"),
            f1=partial(MulticlassF1Score, num_classes, average="macro"),
        )

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Return the backbone's logits ``(B, num_classes)`` for series ``x`` of shape ``(B, C, L)``."""
        if lengths is None:
            return self.model(x)
        if self._takes_lengths:
            return self.model(x, lengths=lengths)
        if not self._warned_lengths:
            rank_zero_warn(
                f"{type(self.model).__name__}.forward takes no `lengths`: the batches' lengths are "
                "ignored and the backbone sees the padded series."
            )
            self._warned_lengths = True
        return self.model(x)

    def allowed_regions(self) -> dict[str, Tensor]:
        """The backbone's allowed regions keyed by parameter names of this module (``model.``...).

        Raises:
            ValueError: If the backbone defines no ``allowed_regions``.
        """
        regions = getattr(self.model, "allowed_regions", None)
        if not callable(regions):
            raise ValueError(
                f"`backbone` {type(self.model).__name__} defines no `allowed_regions(prefix)`; "
                "only backbones with constrained regions (e.g. 'dsn') do."
            )
        return regions(prefix="model.")

    def forward_batch(self, batch: Batch) -> Tensor:
        return self(batch.x, batch.lengths)

    def build_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        """Cosine annealing from ``lr`` to ``min_lr`` over the run, stepped every optimizer step."""
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(total_steps, 1), eta_min=self.hparams.min_lr
        )
