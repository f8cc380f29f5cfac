"""3D (or 2D) semantic segmentation on MONAI: Dice + cross-entropy with deep supervision,
sliding-window inference, per-class Dice (and HD95) from MONAI's metrics.

The pipeline, on the medical batch dicts ``{"image": (B, C, *spatial), "label": (B, 1,
*spatial)[, "index": (B,)]}`` of :mod:`lightning_sparse.data.medical`:

1. **Training** on patches: the backbone returns the full-resolution logits, or, with deep
   supervision (training mode), a list of logits from the finest scale down. Each output is
   scored against the label resized to its size (nearest neighbour) and the scales are weighted
   as nnU-Net does (Isensee et al. 2021, "nnU-Net", Nature Methods): ``1 / 2^i``, the coarsest
   output weighted 0 when there are several, normalised to sum 1 (``deep_supervision_weights``
   overrides).
2. **Loss** per sample: MONAI's ``DiceLoss`` (softmax, one-hot labels, per sample and class,
   ``reduction="none"``) averaged over the classes, plus the voxel-mean cross-entropy: the
   per-sample terms of MONAI's ``DiceCELoss`` (their batch mean equals ``DiceCELoss`` exactly,
   tested), so the loss follows the per-sample contract of
   :mod:`lightning_sparse.core.per_sample` and reduces through
   :meth:`~lightning_sparse.tasks.base.SparseTask.reduce_loss`: data pruning and per-sample
   weights work on segmentation too. ``training_step`` returns ``{"loss", "per_sample_loss"[,
   "index"]}``.
3. **Evaluation** on whole volumes: MONAI's ``sliding_window_inference`` with ``roi_size``
   windows (``overlap``, Gaussian blending as nnU-Net), then the argmax; MONAI's ``DiceMetric``
   per class (background excluded) and, with ``hd95=True``, ``HausdorffDistanceMetric`` at the
   95th percentile, accumulated over the epoch (MONAI gathers them across DDP ranks).

Logged: ``train/loss``, ``val/loss``, ``val/dice`` (mean over the foreground classes, progress
bar), ``val/dice/<class>`` per class, ``val/hd95`` and ``val/hd95/<class>`` with ``hd95``, and
the ``test/`` counterparts. ``predict_step`` returns the label maps ``(B, 1, *spatial)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_sparse._validation import check_bool, check_int, check_number
from lightning_sparse.core.per_sample import per_sample_output
from lightning_sparse.models import create_model
from lightning_sparse.tasks.base import SparseTask, merge_backbone_kwargs

__all__ = ["Segmenter", "deep_supervision_weights"]


def deep_supervision_weights(n: int) -> list[float]:
    """nnU-Net's weights of ``n`` deep-supervision outputs, finest first: ``1 / 2^i``, the
    coarsest 0 when ``n > 1``, normalised to sum 1.

    Examples:
        >>> [round(w, 4) for w in deep_supervision_weights(4)]
        [0.5714, 0.2857, 0.1429, 0.0]
        >>> deep_supervision_weights(1)
        [1.0]
    """
    check_int("n", n, 1)
    weights = [1.0 / 2**i for i in range(n)]
    if n > 1:
        weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


class Segmenter(SparseTask):
    """Train a segmentation backbone (``self.model``) on medical batch dicts.

    Args:
        backbone: A registered segmentation model taking ``(B, in_channels, *spatial)`` and
            returning logits ``(B, num_classes, *spatial)`` (or a list of them, finest first, in
            training mode), e.g. ``"e2enet_small"``.
        backbone_kwargs: Extra builder arguments; ``num_classes`` and ``in_channels`` are passed
            for you.
        num_classes: Classes, background (label 0) included; at least 2.
        in_channels: Image channels (modalities).
        class_names: One name per foreground class for the per-class logs (default ``"1"``,
            ``"2"``, ...).
        roi_size: Sliding-window size for evaluation (the training patch size); one int per
            spatial dimension.
        sw_batch_size: Windows per forward pass in sliding-window inference.
        overlap: Overlap of neighbouring windows, in ``[0, 1)`` (nnU-Net: 0.5).
        loss_include_background: Whether the Dice term includes the background class (nnU-Net:
            no).
        deep_supervision_weights: Weights of the backbone's outputs, finest first; ``None``: the
            backbone's own ``deep_supervision_weights`` attribute when it has one (E2ENet's
            ``8/15, 4/15, 2/15, 1/15``), else nnU-Net's (:func:`deep_supervision_weights`).
        hd95: Also compute the 95th-percentile Hausdorff distance (in voxels) in evaluation.
        optimizer: ``"sgd"`` (nnU-Net: momentum 0.99, Nesterov) or ``"adamw"``.
        lr: Peak learning rate (nnU-Net: 0.01).
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD.
        weight_decay: Weight decay (nnU-Net: 3e-5).
        scheduler: ``"poly"`` (nnU-Net: ``lr (1 - step / total) ^ 0.9`` per optimizer step),
            ``"cosine"`` or ``"none"``.
        warmup_steps: Optimizer steps of linear warm-up (``"cosine"`` only).

    Raises:
        ValueError: If an argument is out of range or names an unknown backbone, optimizer or
            scheduler.

    Examples:
        >>> task = Segmenter("e2enet_tiny", num_classes=3, roi_size=(8, 8, 8))
        >>> batch = {"image": torch.randn(2, 1, 8, 8, 8), "label": torch.randint(0, 3, (2, 1, 8, 8, 8)),
        ...          "index": torch.tensor([4, 0])}
        >>> out = task.training_step(batch, 0)
        >>> out["loss"].shape, out["per_sample_loss"].shape, out["index"].tolist()
        (torch.Size([]), torch.Size([2]), [4, 0])
        >>> task.eval().predict_step(batch, 0).shape
        torch.Size([2, 1, 8, 8, 8])
    """

    optimizer_choices = ("sgd", "adamw")
    scheduler_choices = ("poly", "cosine", "none")
    prog_bar_metrics = ("dice",)

    def __init__(
        self,
        backbone: str = "e2enet_small",
        backbone_kwargs: dict[str, Any] | None = None,
        num_classes: int = 2,
        in_channels: int = 1,
        class_names: Sequence[str] | None = None,
        roi_size: Sequence[int] = (64, 64, 64),
        sw_batch_size: int = 1,
        overlap: float = 0.5,
        loss_include_background: bool = False,
        deep_supervision_weights: Sequence[float] | None = None,
        hd95: bool = False,
        optimizer: str = "sgd",
        lr: float = 0.01,
        momentum: float = 0.99,
        nesterov: bool = True,
        weight_decay: float = 3e-5,
        scheduler: str = "poly",
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        check_int("num_classes", num_classes, 2)
        check_int("in_channels", in_channels, 1)
        if class_names is not None:
            class_names = [str(c) for c in class_names]
            if len(class_names) != num_classes - 1:
                raise ValueError(f"`class_names` must name the {num_classes - 1} foreground classes, got "
                                 f"{len(class_names)}: {class_names}.")
        if not isinstance(roi_size, Sequence) or not roi_size or not all(
                isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in roi_size):
            raise ValueError(f"`roi_size` must be a sequence of positive ints (one per spatial dimension), got {roi_size!r}.")
        check_int("sw_batch_size", sw_batch_size, 1)
        check_number("overlap", overlap, 0.0, 1.0, high_open=True)
        check_bool("loss_include_background", loss_include_background)
        check_bool("hd95", hd95)
        if deep_supervision_weights is not None:
            if not deep_supervision_weights or any(
                    not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w < 0
                    for w in deep_supervision_weights) or sum(deep_supervision_weights) <= 0:
                raise ValueError("`deep_supervision_weights` must be non-negative numbers with a positive sum, got "
                                 f"{deep_supervision_weights!r}.")
            deep_supervision_weights = [float(w) for w in deep_supervision_weights]
        check_number("momentum", momentum, 0.0, 1.0, high_open=True)
        check_bool("nesterov", nesterov)
        if nesterov and (optimizer != "sgd" or momentum <= 0):
            raise ValueError("`nesterov=True` needs `optimizer='sgd'` and `momentum > 0`, got "
                             f"optimizer={optimizer!r}, momentum={momentum}.")
        self.check_optimization_args(optimizer, scheduler, lr, weight_decay, warmup_steps)
        self.save_hyperparameters()
        self.hparams.roi_size = list(roi_size)
        self.class_names = class_names or [str(c) for c in range(1, num_classes)]
        kwargs = merge_backbone_kwargs(backbone_kwargs, num_classes=num_classes, in_channels=in_channels)
        try:
            self.model = create_model(backbone, **kwargs)
        except TypeError as err:
            raise ValueError(f"`backbone` must be a segmentation model taking `num_classes` and `in_channels`, "
                             f"got {backbone!r} ({err}).") from err
        from monai.losses import DiceLoss
        from monai.metrics import DiceMetric, HausdorffDistanceMetric

        self.dice_loss = DiceLoss(include_background=loss_include_background, to_onehot_y=True, softmax=True,
                                  reduction="none")
        self._metrics = {stage: {"dice": DiceMetric(include_background=False, reduction="mean_batch",
                                                    num_classes=num_classes)}
                         for stage in ("val", "test")}
        if hd95:
            for stage in self._metrics:
                self._metrics[stage]["hd95"] = HausdorffDistanceMetric(include_background=False, percentile=95,
                                                                       reduction="mean_batch")

    # ------------------------------------------------------------------ the pipeline
    def forward(self, image: Tensor) -> Tensor | list[Tensor]:
        return self.model(image)

    @staticmethod
    def _batch(batch: Any) -> tuple[Tensor, Tensor | None, Tensor | None]:
        if not isinstance(batch, Mapping) or "image" not in batch:
            keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ValueError(f"`batch` must be a medical batch dict with 'image' (and 'label'), got {keys}.")
        return batch["image"], batch.get("label"), batch.get("index")

    def per_sample_losses(self, logits: Tensor | Sequence[Tensor], label: Tensor) -> Tensor:
        """Dice + cross-entropy of every sample, ``(B,)``, over the deep-supervision outputs.

        Args:
            logits: ``(B, num_classes, *spatial)``, or a list of them (finest first).
            label: ``(B, 1, *spatial)`` class ids.
        """
        outputs = list(logits) if isinstance(logits, (list, tuple)) else [logits]
        weights = (self.hparams.deep_supervision_weights or getattr(self.model, "deep_supervision_weights", None)
                   or deep_supervision_weights(len(outputs)))
        if len(outputs) == 1:
            weights = [1.0]  # one output (eval mode, or no deep supervision)
        if len(weights) != len(outputs):
            raise ValueError(f"`deep_supervision_weights` has {len(weights)} entries for {len(outputs)} backbone "
                             "outputs.")
        total = None
        for w, out in zip(weights, outputs):
            if w == 0:
                continue
            target = label if out.shape[2:] == label.shape[2:] else F.interpolate(
                label.float(), size=out.shape[2:], mode="nearest")
            target = target.long()
            out = out.float()
            dice = self.dice_loss(out, target).flatten(1).mean(1)
            ce = F.cross_entropy(out, target[:, 0], reduction="none").flatten(1).mean(1)
            part = w * (dice + ce)
            total = part if total is None else total + part
        return total

    def infer(self, image: Tensor) -> Tensor:
        """Full-volume logits by sliding-window inference with ``roi_size`` windows."""
        from monai.inferers import sliding_window_inference

        def predictor(x: Tensor) -> Tensor:
            out = self.model(x)
            return out[0] if isinstance(out, (list, tuple)) else out

        roi = self.hparams.roi_size
        if len(roi) != image.dim() - 2:
            raise ValueError(f"`roi_size` {roi} must have one size per spatial dimension of the image "
                             f"{tuple(image.shape[2:])}.")
        return sliding_window_inference(image, roi, self.hparams.sw_batch_size, predictor,
                                        overlap=self.hparams.overlap, mode="gaussian")

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """``{"loss", "per_sample_loss"[, "index"]}`` (see :mod:`lightning_sparse.core.per_sample`)."""
        image, label, index = self._batch(batch)
        if label is None:
            raise ValueError("`batch` must have 'label' for training.")
        losses = self.per_sample_losses(self(image), label)
        out = per_sample_output(losses, index, reduction=lambda ls: self.reduce_loss(ls, index))
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=len(losses))
        return out

    def _eval_step(self, batch: Any, stage: str) -> None:
        image, label, _ = self._batch(batch)
        if label is None:
            raise ValueError(f"`batch` must have 'label' for {stage}.")
        logits = self.infer(image)
        self.log(f"{stage}/loss", self.per_sample_losses(logits, label).mean(), batch_size=len(image))
        n = self.hparams.num_classes
        pred = F.one_hot(logits.argmax(1), n).movedim(-1, 1)
        truth = F.one_hot(label[:, 0].long(), n).movedim(-1, 1)
        for metric in self._metrics[stage].values():
            metric(y_pred=pred, y=truth)

    def _eval_epoch_end(self, stage: str) -> None:
        for name, metric in self._metrics[stage].items():
            per_class = metric.aggregate()
            metric.reset()
            if per_class.numel() == 0:
                continue
            per_class = per_class.float().flatten()
            valid = per_class[torch.isfinite(per_class)]
            mean = valid.mean() if valid.numel() else torch.tensor(float("nan"))
            self.log(f"{stage}/{name}", mean, prog_bar=stage == "val" and name in self.prog_bar_metrics,
                     sync_dist=False)
            for cls, value in zip(self.class_names, per_class):
                self.log(f"{stage}/{name}/{cls}", value)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Label maps ``(B, 1, *spatial)`` of a batch dict's ``image`` (or of an image tensor)."""
        image = batch if isinstance(batch, Tensor) else self._batch(batch)[0]
        return self.infer(image).argmax(1, keepdim=True)

    # ------------------------------------------------------------------ optimization
    def build_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        """nnU-Net's polynomial decay ``(1 - step / total) ^ 0.9`` per step, or the base's cosine."""
        if self.hparams.scheduler != "poly":
            return super().build_scheduler(optimizer, total_steps)

        def factor(step: int) -> float:
            return (1.0 - min(step, total_steps) / max(total_steps, 1)) ** 0.9

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
