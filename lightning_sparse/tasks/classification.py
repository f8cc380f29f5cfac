"""Supervised image classification with a registered backbone.

The standard training loop of the sparse-training papers on image benchmarks: cross-entropy with
optional label smoothing (Szegedy et al. 2016, "Rethinking the Inception Architecture for
Computer Vision", arXiv:1512.00567), SGD with momentum or AdamW (Loshchilov & Hutter 2019,
"Decoupled Weight Decay Regularization", arXiv:1711.05101), and a per-step cosine learning-rate
schedule with optional linear warm-up (Loshchilov & Hutter 2017, "SGDR", arXiv:1608.03983; as
used by RigL, Evci et al. 2020, arXiv:1911.11134).

Mixup (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization", arXiv:1710.09412) and
CutMix (Yun et al. 2019, "CutMix: Regularization Strategy to Train Strong Classifiers with
Localizable Features", arXiv:1905.04899) on the training batches, as the ConvNeXt / SLaK ImageNet
recipes use them (mixup 0.8, cutmix 1.0, one of the two per batch): ``torchvision.transforms.v2``'s
``MixUp`` / ``CutMix``, soft targets, per-sample cross-entropy against them.

Data pruning: ``training_step`` returns ``{"loss", "per_sample_loss", "index"}`` (``index`` for
``(x, y, index)`` batches only), the per-sample contract of :mod:`lightning_sparse.core.per_sample`;
the batch layouts, metrics, loss reduction and optimizers come from
:class:`~lightning_sparse.tasks.base.SparseTask`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy
from torchvision.transforms import v2

from lightning_sparse._validation import check_bool, check_number
from lightning_sparse.core.per_sample import per_sample_output
from lightning_sparse.models import create_model
from lightning_sparse.tasks.base import SparseTask, check_warmup, merge_backbone_kwargs

__all__ = ["ImageClassifier"]

class ImageClassifier(SparseTask):
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
        mixup_alpha: Beta-distribution parameter of mixup on training batches (``0``: off).
        cutmix_alpha: Beta-distribution parameter of CutMix (``0``: off); with both on, each batch
            gets one of the two, chosen with equal probability (timm's ``switch_prob=0.5``).
        backbone_checkpoint: Local weights for the backbone (a state dict or a checkpoint with
            ``"state_dict"``; tensors of other shapes, e.g. another classifier, are skipped),
            loaded when ``fit`` starts; nothing is downloaded.

    Raises:
        ValueError: If an argument is out of range or names an unknown backbone, optimizer or
            scheduler.

    Examples:
        >>> task = ImageClassifier("mlp", {"in_features": 64, "hidden_sizes": [32]}, num_classes=10)
        >>> task(torch.randn(4, 1, 8, 8)).shape
        torch.Size([4, 10])
        >>> out = task.training_step((torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]), torch.arange(4)), 0)
        >>> out["loss"].shape, out["per_sample_loss"].shape, out["index"].tolist()
        (torch.Size([]), torch.Size([4]), [0, 1, 2, 3])
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
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        backbone_checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        self.check_training_args(num_classes, optimizer, scheduler, lr, momentum, weight_decay, label_smoothing)
        check_number("mixup_alpha", mixup_alpha, 0.0)
        check_number("cutmix_alpha", cutmix_alpha, 0.0)
        check_bool("nesterov", nesterov)
        if nesterov and (optimizer != "sgd" or momentum <= 0):
            raise ValueError(
                "`nesterov=True` needs `optimizer='sgd'` and `momentum > 0`, got "
                f"optimizer={optimizer!r}, momentum={momentum}."
            )
        check_warmup(warmup_steps, scheduler)
        kwargs = merge_backbone_kwargs(backbone_kwargs, num_classes=num_classes)
        self.save_hyperparameters()
        self.model = create_model(backbone, **kwargs)
        self.add_metrics(acc=partial(MulticlassAccuracy, num_classes, average="micro"))
        mixes = ([v2.MixUp(alpha=float(mixup_alpha), num_classes=num_classes)] if mixup_alpha > 0 else []) + (
            [v2.CutMix(alpha=float(cutmix_alpha), num_classes=num_classes)] if cutmix_alpha > 0 else [])
        self._mix = None if not mixes else mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the backbone's logits, shape ``(B, num_classes)``."""
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        """The base's step; with mixup / CutMix, on the mixed batch against its soft targets (the
        accuracy is logged against each sample's own label)."""
        if self._mix is None:
            return super().training_step(batch, batch_idx)
        b = self.unpack_batch(batch)
        x, soft = self._mix(b.x, b.y)  # (B, C, H, W), (B, num_classes)
        logits = self.forward_batch(b._replace(x=x))
        losses = F.cross_entropy(logits, soft, reduction="none", label_smoothing=self.hparams.label_smoothing)
        out = per_sample_output(losses, b.index, reduction=lambda ls: self.reduce_loss(ls, b.index))
        self._log_stage("train", out["loss"], logits.detach(), b.y)
        return out
