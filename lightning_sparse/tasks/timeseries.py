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

Data-pruning contract (as :class:`~lightning_sparse.tasks.ImageClassifier`): every
``training_step`` stores the detached per-sample losses of its batch in ``last_per_sample_loss``
(shape ``(B,)``) and, for ``(x, y, index, lengths)`` batches, the dataset indices in
``last_batch_indices`` (``None`` otherwise).

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
import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from lightning_sparse.models import create_model
from lightning_sparse.tasks._checks import check_training_args

__all__ = ["TimeSeriesClassifier"]

_OPTIMIZERS = ("adam", "adamw", "sgd")
_SCHEDULERS = ("cosine", "none")


class TimeSeriesClassifier(L.LightningModule):
    """Train a time series backbone (at ``self.model``) with cross-entropy on batches of series.

    Logs ``train/loss`` (per step as ``train/loss_step``, epoch mean as ``train/loss_epoch``),
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
        >>> task.training_step((x, y, torch.tensor([50, 40, 30, 20])), 0).shape
        torch.Size([])
        >>> task.last_per_sample_loss.shape
        torch.Size([4])
        >>> sorted(task.allowed_regions())[0]
        'model.blocks.0.conv.weight'
    """

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
        check_training_args(
            num_classes=num_classes, optimizer=optimizer, optimizers=_OPTIMIZERS, scheduler=scheduler,
            schedulers=_SCHEDULERS, lr=lr, momentum=momentum, weight_decay=weight_decay,
            label_smoothing=label_smoothing,
        )
        if in_channels < 1:
            raise ValueError(f"`in_channels` must be a positive integer, got {in_channels}.")
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
            kwargs = dict(backbone_kwargs or {})
            for arg, value in (("num_classes", num_classes), ("in_channels", in_channels)):
                if kwargs.setdefault(arg, value) != value:
                    raise ValueError(
                        f"`backbone_kwargs['{arg}']` must match `{arg}`, got {kwargs[arg]} and {value}."
                    )
            self.save_hyperparameters()
            self.model = create_model(backbone, **kwargs)
        else:
            raise ValueError(
                f"`backbone` must be a registered model name or an nn.Module, got {type(backbone).__name__}."
            )
        self._takes_lengths = "lengths" in inspect.signature(self.model.forward).parameters
        self._warned_lengths = False
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.train_f1 = MulticlassF1Score(num_classes, average="macro")
        self.val_f1 = MulticlassF1Score(num_classes, average="macro")
        self.test_f1 = MulticlassF1Score(num_classes, average="macro")
        self.last_per_sample_loss: Tensor | None = None
        self.last_batch_indices: Tensor | None = None

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

    @staticmethod
    def _unpack(batch: Any) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """``(x, y, index or None, lengths or None)`` from a 2-, 3- or 4-tuple batch."""
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3, 4):
            kind = type(batch).__name__
            if isinstance(batch, (tuple, list)):
                kind += f" of length {len(batch)}"
            raise ValueError(
                f"`batch` must be a tuple (x, y), (x, y, lengths) or (x, y, index, lengths), got a {kind}."
            )
        if len(batch) == 4:
            return batch[0], batch[1], batch[2], batch[3]
        return batch[0], batch[1], None, batch[2] if len(batch) == 3 else None

    def _step(self, batch: Any) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        x, y, index, lengths = self._unpack(batch)
        logits = self(x, lengths)  # (B, num_classes)
        losses = F.cross_entropy(
            logits, y, reduction="none", label_smoothing=self.hparams.label_smoothing
        )  # (B,)
        return logits, y, losses, index

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        logits, y, losses, index = self._step(batch)
        self.last_per_sample_loss = losses.detach()
        self.last_batch_indices = index
        loss = losses.mean()
        self.train_acc(logits.detach(), y)
        self.train_f1(logits.detach(), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        self.log("train/f1", self.train_f1, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        logits, y, losses, _ = self._step(batch)
        loss = losses.mean()
        self.val_acc(logits, y)
        self.val_f1(logits, y)
        self.log("val/loss", loss, batch_size=len(y))
        self.log("val/acc", self.val_acc, prog_bar=True)
        self.log("val/f1", self.val_f1)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        logits, y, losses, _ = self._step(batch)
        loss = losses.mean()
        self.test_acc(logits, y)
        self.test_f1(logits, y)
        self.log("test/loss", loss, batch_size=len(y))
        self.log("test/acc", self.test_acc)
        self.log("test/f1", self.test_f1)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Predicted classes ``(B,)`` for ``x``, ``(x,)`` or any training batch format."""
        if not isinstance(batch, (tuple, list)):
            return self(batch).argmax(dim=-1)
        lengths = batch[-1] if len(batch) in (3, 4) else None
        return self(batch[0], lengths).argmax(dim=-1)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        if hp.optimizer == "adam":
            optimizer = torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        elif hp.optimizer == "adamw":
            optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            optimizer = torch.optim.SGD(
                self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay
            )
        if hp.scheduler == "none":
            return optimizer
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError(
                "`scheduler='cosine'` needs a finite training length: set `trainer.max_steps` or "
                f"`trainer.max_epochs`, got estimated_stepping_batches={total}."
            )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(int(total), 1), eta_min=hp.min_lr
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
