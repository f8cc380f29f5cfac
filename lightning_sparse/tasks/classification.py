"""Supervised image classification with a registered backbone.

The standard training loop of the sparse-training papers on image benchmarks: cross-entropy with
optional label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture for
Computer Vision", arXiv:1512.00567), SGD with momentum or AdamW (Loshchilov & Hutter 2019,
"Decoupled Weight Decay Regularization", arXiv:1711.05101), and a per-step cosine learning-rate
schedule with optional linear warm-up (Loshchilov & Hutter 2017, "SGDR", arXiv:1608.03983; as
used by RigL, Evci et al. 2020, arXiv:1911.11134).

Data-pruning contract: every ``training_step`` stores the detached per-sample losses of its batch
in ``last_per_sample_loss`` (shape ``(B,)``) and, when the batch is ``(x, y, index)``, the dataset
indices in ``last_batch_indices`` (shape ``(B,)``, ``None`` for ``(x, y)`` batches). A callback
reads both in ``on_train_batch_end``.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics.classification import MulticlassAccuracy

from lightning_sparse.models import create_model
from lightning_sparse.tasks._checks import check_training_args

__all__ = ["ImageClassifier"]

_OPTIMIZERS = ("sgd", "adamw")
_SCHEDULERS = ("cosine", "none")


class ImageClassifier(L.LightningModule):
    """Train a registered backbone (at ``self.model``) with cross-entropy on ``(x, y[, index])``.

    Logs ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc`` (progress bar), ``test/loss``
    and ``test/acc``; accuracy is micro-averaged (the share of correct predictions).

    Args:
        backbone: Name of a registered model (see :func:`lightning_sparse.models.list_models`).
        backbone_kwargs: Extra keyword arguments for the backbone builder, e.g.
            ``{"in_channels": 1, "width": 16}``; ``num_classes`` is passed for you.
        num_classes: Number of classes.
        optimizer: ``"sgd"`` (with ``momentum`` and ``nesterov``) or ``"adamw"``.
        lr: Peak learning rate.
        momentum: SGD momentum in ``[0, 1)``; ignored by AdamW.
        weight_decay: Weight decay (L2 for SGD, decoupled for AdamW), non-negative.
        nesterov: Use Nesterov momentum (SGD with ``momentum > 0`` only).
        scheduler: ``"cosine"`` (decay to 0 over ``trainer.estimated_stepping_batches``, stepped
            every optimizer step) or ``"none"`` (constant).
        warmup_steps: Optimizer steps of linear warm-up from ``lr / warmup_steps`` to ``lr``
            before the cosine decay; ``"cosine"`` only.
        label_smoothing: Label smoothing in ``[0, 1)``.

    Raises:
        ValueError: If an argument is out of range or names an unknown backbone, optimizer or
            scheduler.

    Examples:
        >>> task = ImageClassifier("mlp", {"in_features": 64, "hidden_sizes": [32]}, num_classes=10)
        >>> task(torch.randn(4, 1, 8, 8)).shape
        torch.Size([4, 10])
        >>> task.training_step((torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])), 0).shape
        torch.Size([])
        >>> task.last_per_sample_loss.shape
        torch.Size([4])
    """

    def __init__(
        self,
        backbone: str,
        backbone_kwargs: dict[str, Any] | None = None,
        num_classes: int = 10,
        optimizer: str = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        nesterov: bool = False,
        scheduler: str = "cosine",
        warmup_steps: int = 0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        check_training_args(
            num_classes=num_classes, optimizer=optimizer, optimizers=_OPTIMIZERS, scheduler=scheduler,
            schedulers=_SCHEDULERS, lr=lr, momentum=momentum, weight_decay=weight_decay,
            label_smoothing=label_smoothing,
        )
        if nesterov and (optimizer != "sgd" or momentum <= 0):
            raise ValueError(
                "`nesterov=True` needs `optimizer='sgd'` and `momentum > 0`, got "
                f"optimizer={optimizer!r}, momentum={momentum}."
            )
        if warmup_steps < 0:
            raise ValueError(f"`warmup_steps` must be a non-negative integer, got {warmup_steps}.")
        if warmup_steps > 0 and scheduler != "cosine":
            raise ValueError(
                f"`warmup_steps` needs `scheduler='cosine'`, got scheduler={scheduler!r} and "
                f"warmup_steps={warmup_steps}."
            )
        kwargs = dict(backbone_kwargs or {})
        if kwargs.setdefault("num_classes", num_classes) != num_classes:
            raise ValueError(
                "`backbone_kwargs['num_classes']` must match `num_classes`, got "
                f"{kwargs['num_classes']} and {num_classes}."
            )
        self.save_hyperparameters()
        self.model = create_model(backbone, **kwargs)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.last_per_sample_loss: torch.Tensor | None = None
        self.last_batch_indices: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the backbone's logits, shape ``(B, num_classes)``."""
        return self.model(x)

    @staticmethod
    def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            kind = type(batch).__name__
            if isinstance(batch, (tuple, list)):
                kind += f" of length {len(batch)}"
            raise ValueError(f"`batch` must be a tuple (x, y) or (x, y, index), got a {kind}.")
        return batch[0], batch[1], batch[2] if len(batch) == 3 else None

    def _losses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(x)  # (B, num_classes)
        losses = F.cross_entropy(
            logits, y, reduction="none", label_smoothing=self.hparams.label_smoothing
        )  # (B,)
        return logits, losses

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y, index = self._unpack(batch)
        logits, losses = self._losses(x, y)
        self.last_per_sample_loss = losses.detach()
        self.last_batch_indices = index
        loss = losses.mean()
        self.train_acc(logits.detach(), y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y, _ = self._unpack(batch)
        logits, losses = self._losses(x, y)
        self.val_acc(logits, y)
        self.log("val/loss", losses.mean())
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y, _ = self._unpack(batch)
        logits, losses = self._losses(x, y)
        self.test_acc(logits, y)
        self.log("test/loss", losses.mean())
        self.log("test/acc", self.test_acc)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self(x).argmax(dim=-1)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                self.parameters(),
                lr=hp.lr,
                momentum=hp.momentum,
                weight_decay=hp.weight_decay,
                nesterov=hp.nesterov,
            )
        else:
            optimizer = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "none":
            return optimizer
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError(
                "`scheduler='cosine'` needs a finite training length: set `trainer.max_steps` or "
                f"`trainer.max_epochs`, got estimated_stepping_batches={total}."
            )
        total, warmup = int(total), hp.warmup_steps
        if warmup >= total:
            rank_zero_warn(
                f"`warmup_steps={warmup}` covers the whole run ({total} optimizer steps): "
                "the learning rate never reaches the cosine decay."
            )

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
