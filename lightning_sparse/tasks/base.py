"""The shared task base: batch layouts, metric triples, loss reduction, optimizers, schedules.

A task subclasses :class:`SparseTask`, keeps its own explicit ``__init__`` arguments (so
LightningCLI shows every one of them), calls :meth:`SparseTask.add_metrics` once, and overrides
only where it differs:

- :meth:`~SparseTask.forward_batch` (how a :class:`Batch` reaches ``forward``),
- :meth:`~SparseTask.per_sample_losses` (cross-entropy by default),
- :meth:`~SparseTask.reduce_loss` (the weighted mean by default: per-batch weights from
  :meth:`~SparseTask.set_sample_weights`, else a per-index table from
  :meth:`~SparseTask.set_index_weights`),
- :meth:`~SparseTask.build_scheduler` (per-step cosine with linear warm-up by default),
- the class attributes ``batch_layouts``, ``train_loss_on_epoch`` and ``prog_bar_metrics``.

``training_step`` follows the per-sample contract of :mod:`lightning_sparse.core.per_sample`
(see ``docs/per_sample.md``): it returns ``{"loss", "per_sample_loss"[, "index"]}``, and a
callback can hand loss weights back: for the coming batch (:meth:`SparseTask.set_sample_weights`)
or per dataset index until replaced (:meth:`SparseTask.set_index_weights`, as the data-pruning
callback does each epoch for InfoBatch's rescaling). The learning-rate schedule is sized by
:func:`lightning_sparse._training.estimated_stepping_batches` (pruned epochs counted as such).

Logging is cheap per step (``LightningModule.log`` costs about a millisecond a call, more than a
99%-sparse MLP's whole training step): metrics and the evaluation losses are accumulated as
torchmetrics states every batch and handed to ``self.log`` once per epoch (Lightning computes
them at the epoch's end); the per-step ``train/loss`` is logged every ``log_every_n_steps``
optimizer steps (the cadence at which Lightning writes logs anyway), on the epoch's first batch
and on the last one (set ``Trainer(log_every_n_steps=1)`` for every step).

Checkpoints also carry the global torch / numpy / Python RNG states (Lightning does not save
them): after a resume they are restored right before the first training batch, so randomness in
the step (dropout) continues where the interrupted run left it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn
from torchmetrics import MeanMetric
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn

from lightning_sparse._training import estimated_stepping_batches
from lightning_sparse._validation import check_int, check_number
from lightning_sparse.tasks._bookkeeping import BufferedTrainMetrics, fused_supported
from lightning_sparse.core.per_sample import per_sample_output, weighted_mean
from lightning_sparse.models.weights import load_backbone_weights

__all__ = ["Batch", "SparseTask", "check_choice_list", "check_warmup", "merge_backbone_kwargs"]

RNG_STATES_KEY = "lightning_sparse_rng_states"


class Batch(NamedTuple):
    """One batch, unpacked; the fields a layout does not have are ``None``."""

    x: Any
    y: Tensor | None = None
    index: Tensor | None = None
    lengths: Tensor | None = None


def check_choice_list(name: str, value: Any, allowed: Sequence[str]) -> Any:
    """Raise unless ``value`` is in ``allowed`` (shown as a list); return ``value``.

    Examples:
        >>> check_choice_list("optimizer", "adam", ("sgd", "adamw"))
        Traceback (most recent call last):
        ...
        ValueError: `optimizer` must be one of ['sgd', 'adamw'], got 'adam'.
    """
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}, got {value!r}.")
    return value


def check_warmup(warmup_steps: int, scheduler: str) -> None:
    """``warmup_steps`` is a count >= 0 and needs the cosine schedule when positive.

    Examples:
        >>> check_warmup(0, "none")
    """
    check_int("warmup_steps", warmup_steps, 0)
    if warmup_steps > 0 and scheduler != "cosine":
        raise ValueError(
            f"`warmup_steps` needs `scheduler='cosine'`, got scheduler={scheduler!r} and warmup_steps={warmup_steps}."
        )


def merge_backbone_kwargs(backbone_kwargs: dict[str, Any] | None, **required: Any) -> dict[str, Any]:
    """``backbone_kwargs`` plus the task's own values (``num_classes``, ...); a clash raises.

    Examples:
        >>> merge_backbone_kwargs({"width": 8}, num_classes=3)
        {'width': 8, 'num_classes': 3}
        >>> merge_backbone_kwargs({"num_classes": 4}, num_classes=3)
        Traceback (most recent call last):
        ...
        ValueError: `backbone_kwargs['num_classes']` must match `num_classes`, got 4 and 3.
    """
    kwargs = dict(backbone_kwargs or {})
    for arg, value in required.items():
        if kwargs.setdefault(arg, value) != value:
            raise ValueError(f"`backbone_kwargs['{arg}']` must match `{arg}`, got {kwargs[arg]} and {value}.")
    return kwargs


def _layout_text(layouts: Sequence[Sequence[str]]) -> str:
    texts = [f"({', '.join(layout)})" for layout in layouts]
    return texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} or {texts[-1]}"


class SparseTask(BufferedTrainMetrics, L.LightningModule):
    """Base of the supervised tasks; see the module docstring for what a subclass overrides.

    Expects in ``self.hparams``: ``optimizer`` (``"sgd"``, ``"adam"`` or ``"adamw"``), ``lr``,
    ``weight_decay``, ``scheduler`` (``"none"`` or a schedule :meth:`build_scheduler` knows),
    and where used ``momentum``, ``nesterov``, ``warmup_steps`` and ``label_smoothing``.
    """

    batch_layouts: tuple[tuple[str, ...], ...] = (("x", "y"), ("x", "y", "index"))
    """Accepted tuple layouts, told apart by their length; names are :class:`Batch` fields."""
    train_loss_on_epoch: bool = False
    """Also log the epoch mean of the training loss, as ``train/loss_epoch``."""
    prog_bar_metrics: tuple[str, ...] = ("acc",)
    """Validation metrics shown in the progress bar (``train/loss`` always is)."""
    optimizer_choices: tuple[str, ...] = ("sgd", "adamw")
    """Values of the ``optimizer`` argument the task accepts (of ``sgd``, ``adam``, ``adamw``)."""
    scheduler_choices: tuple[str, ...] = ("cosine", "none")
    """Values of the ``scheduler`` argument the task accepts."""

    def __init__(self) -> None:
        super().__init__()
        self._sample_weights: Tensor | None = None
        self._index_weights: Tensor | None = None
        self._pending_rng_states: dict[str, Any] | None = None
        # Per-stage running loss means (non-persistent states: no checkpoint keys) and the stages
        # whose metric objects were handed to `self.log` in the running epoch.
        self.loss_means = nn.ModuleDict({f"{stage}_loss": MeanMetric() for stage in ("train", "val", "test")})
        self._logged_stages: set[str] = set()
        self._reset_metric_buffer()

    def check_training_args(
        self, num_classes: int, optimizer: str, scheduler: str, lr: float, momentum: float,
        weight_decay: float, label_smoothing: float,
    ) -> None:
        """The argument checks every classification task shares; each ``ValueError`` names the argument.

        Examples:
            >>> SparseTask().check_training_args(1, "sgd", "none", 0.1, 0.9, 0.0, 0.0)
            Traceback (most recent call last):
            ...
            ValueError: `num_classes` must be an integer >= 2, got 1.
        """
        check_int("num_classes", num_classes, 2)
        check_choice_list("optimizer", optimizer, self.optimizer_choices)
        check_choice_list("scheduler", scheduler, self.scheduler_choices)
        check_number("lr", lr, 0.0, low_open=True)
        check_number("momentum", momentum, 0.0, 1.0, high_open=True)
        check_number("weight_decay", weight_decay, 0.0)
        check_number("label_smoothing", label_smoothing, 0.0, 1.0, high_open=True)

    def check_optimization_args(self, optimizer: str, scheduler: str, lr: float, weight_decay: float,
                                warmup_steps: int = 0) -> None:
        """The optimizer and schedule checks of the tasks that are not classifiers (speech).

        Examples:
            >>> SparseTask().check_optimization_args("sgd", "none", 0.1, 0.0, warmup_steps=10)
            Traceback (most recent call last):
            ...
            ValueError: `warmup_steps` needs `scheduler='cosine'`, got scheduler='none' and warmup_steps=10.
        """
        check_choice_list("optimizer", optimizer, self.optimizer_choices)
        check_choice_list("scheduler", scheduler, self.scheduler_choices)
        check_number("lr", lr, 0.0, low_open=True)
        check_number("weight_decay", weight_decay, 0.0)
        check_warmup(warmup_steps, scheduler)

    # ------------------------------------------------------------------ batches and metrics
    def unpack_batch(self, batch: Any) -> Batch:
        """Name the items of a tuple batch after the matching layout of ``batch_layouts``.

        Raises:
            ValueError: If ``batch`` is not a tuple of one of the accepted lengths.
        """
        layouts = {len(layout): layout for layout in self.batch_layouts}
        if not isinstance(batch, (tuple, list)) or len(batch) not in layouts:
            kind = type(batch).__name__
            if isinstance(batch, (tuple, list)):
                kind += f" of length {len(batch)}"
            raise ValueError(f"`batch` must be a tuple {_layout_text(self.batch_layouts)}, got a {kind}.")
        return Batch(**dict(zip(layouts[len(batch)], batch)))

    def add_metrics(self, **factories: Callable[[], nn.Module]) -> None:
        """One copy of each metric per stage, logged as ``train/<name>``, ``val/<name>``, ``test/<name>``."""
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_metrics", nn.ModuleDict({n: make() for n, make in factories.items()}))

    def stage_metrics(self, stage: str) -> nn.ModuleDict:
        """The metrics of ``stage`` (``"train"``, ``"val"`` or ``"test"``)."""
        return getattr(self, f"{stage}_metrics", nn.ModuleDict())

    # ------------------------------------------------------------------ what a task overrides
    def forward_batch(self, batch: Batch) -> Tensor:
        """Logits for an unpacked batch; override when ``forward`` takes more than ``x``."""
        return self(batch.x)

    def per_sample_losses(self, logits: Tensor, y: Tensor) -> Tensor:
        """Loss of every sample, shape ``(B,)``; cross-entropy with ``label_smoothing``."""
        return F.cross_entropy(logits, y, reduction="none", label_smoothing=self.hparams.get("label_smoothing", 0.0))

    def reduce_loss(self, per_sample_loss: Tensor, index: Tensor | None = None) -> Tensor:
        """The training loss from the per-sample losses: their mean, weighted by the batch's
        weights from :meth:`set_sample_weights` (used once, then cleared), else by
        ``table[index]`` of the table from :meth:`set_index_weights`, else unweighted.

        Examples:
            >>> task = SparseTask()
            >>> task.set_index_weights(torch.tensor([1.0, 2.0, 4.0]))
            >>> task.reduce_loss(torch.tensor([1.0, 1.0]), index=torch.tensor([2, 1]))
            tensor(3.)
            >>> task.set_sample_weights(torch.tensor([0.0, 2.0]))
            >>> task.reduce_loss(torch.tensor([1.0, 1.0]), index=torch.tensor([2, 1]))
            tensor(1.)
        """
        weights, self._sample_weights = self._sample_weights, None
        if weights is None and self._index_weights is not None and index is not None:
            weights = self._index_weights.to(per_sample_loss.device)[index.to(per_sample_loss.device)]
        return weighted_mean(per_sample_loss, weights)

    def set_sample_weights(self, weights: Tensor | None) -> None:
        """Weights ``(B,)`` for the per-sample losses of the next training batch only.

        For callbacks that weight one batch: call it in ``on_train_batch_start``;
        :meth:`reduce_loss` uses and clears it. ``None`` clears it.
        """
        if weights is not None and (not isinstance(weights, Tensor) or weights.dim() != 1):
            shape = tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__
            raise ValueError(f"`weights` must be a 1-D tensor of shape (B,), got {shape}.")
        self._sample_weights = weights

    def set_index_weights(self, table: Tensor | None) -> None:
        """Loss weights per dataset index, ``(N,)``, for every coming batch that carries indices.

        The data-pruning callback sets it at each epoch start (InfoBatch's ``1 / (1 - r)`` for
        the kept low-loss samples, 1 elsewhere) and clears it (``None``) in unweighted epochs.
        """
        if table is not None and (not isinstance(table, Tensor) or table.dim() != 1):
            shape = tuple(table.shape) if isinstance(table, Tensor) else type(table).__name__
            raise ValueError(f"`table` must be a 1-D tensor of shape (N,), got {shape}.")
        self._index_weights = table

    # ------------------------------------------------------------------ steps
    def log_step_values(self) -> bool:
        """Whether this training batch logs per-step values (``train/loss``): every
        ``log_every_n_steps`` optimizer steps, on the epoch's first batch and on the last batch of
        the epoch or of the run; always outside a ``Trainer``."""
        trainer = self._trainer
        if trainer is None:
            return True
        every = max(1, int(trainer.log_every_n_steps or 1))
        return (
            every == 1
            or (trainer.global_step + 1) % every == 0
            or "train" not in self._logged_stages
            or trainer.is_last_batch
            or trainer.should_stop
            or (trainer.max_steps > 0 and trainer.global_step + 1 >= trainer.max_steps)
        )

    def _log_epoch_metric(self, stage: str, name: str, metric: nn.Module, first: bool, prog_bar: bool = False) -> None:
        # A metric object needs handing to `self.log` once per epoch: Lightning keeps it and
        # computes / resets it at the epoch's end.
        if first:
            self.log(f"{stage}/{name}", metric, prog_bar=prog_bar, on_step=False, on_epoch=True)

    def _log_stage(self, stage: str, loss: Tensor, logits: Tensor, y: Tensor) -> None:
        train = stage == "train"
        first = stage not in self._logged_stages
        loss = loss.detach()
        if train:
            if self.log_step_values():
                self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=len(y))
            if self.train_loss_on_epoch:
                self.loss_means["train_loss"].update(loss, len(y))
                self._log_epoch_metric("train", "loss_epoch", self.loss_means["train_loss"], first)
        else:
            self.loss_means[f"{stage}_loss"].update(loss, len(y))
            self._log_epoch_metric(stage, "loss", self.loss_means[f"{stage}_loss"], first)
        metrics = self.stage_metrics(stage)
        if train and len(metrics):
            self._buffer_metric_update(logits, y)
        for name, metric in metrics.items():
            if not train:
                metric.update(logits, y)  # epoch values only: no per-batch compute (a forward would do both)
            self._log_epoch_metric(stage, name, metric, first, prog_bar=stage == "val" and name in self.prog_bar_metrics)
        self._logged_stages.add(stage)

    def on_train_epoch_start(self) -> None:
        self._logged_stages.discard("train")
        self._reset_metric_buffer()

    def on_validation_epoch_start(self) -> None:
        self._logged_stages.discard("val")

    def on_test_epoch_start(self) -> None:
        self._logged_stages.discard("test")

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """``{"loss", "per_sample_loss"[, "index"]}`` (see :mod:`lightning_sparse.core.per_sample`)."""
        b = self.unpack_batch(batch)
        logits = self.forward_batch(b)
        out = per_sample_output(self.per_sample_losses(logits, b.y), b.index,
                                reduction=lambda losses: self.reduce_loss(losses, b.index))
        self._log_stage("train", out["loss"], logits.detach(), b.y)
        return out

    def _eval_step(self, batch: Any, stage: str) -> None:
        b = self.unpack_batch(batch)
        logits = self.forward_batch(b)
        self._log_stage(stage, self.per_sample_losses(logits, b.y).mean(), logits, b.y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Predicted classes ``(B,)`` for ``x``, ``(x,)`` or any training batch layout."""
        if not isinstance(batch, (tuple, list)):
            b = Batch(batch)
        else:
            layout = {len(lay): lay for lay in self.batch_layouts}.get(len(batch))
            b = Batch(**dict(zip(layout, batch))) if layout else Batch(batch[0])
        return self.forward_batch(b).argmax(dim=-1)

    # ------------------------------------------------------------------ optimization
    def build_optimizer(self) -> torch.optim.Optimizer:
        """SGD (``momentum``, ``nesterov``), Adam (L2 weight decay) or AdamW (decoupled).

        torch's fused implementation (one kernel for all parameters instead of a few ops per
        parameter: about 30 instead of 80 us per step for a small MLP on CPU) when every parameter
        is a floating-point tensor on a device it supports; equal to the default implementation
        up to float rounding.
        """
        hp = self.hparams
        params = list(self.parameters())
        fused = {"fused": True} if fused_supported(params) else {}
        if hp.optimizer == "sgd":
            return torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay,
                                   nesterov=hp.get("nesterov", False), **fused)
        optimizer_class = torch.optim.Adam if hp.optimizer == "adam" else torch.optim.AdamW
        return optimizer_class(params, lr=hp.lr, weight_decay=hp.weight_decay, **fused)

    def build_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        """Per-step cosine decay to 0 after ``warmup_steps`` of linear warm-up from ``lr / warmup_steps``."""
        warmup = self.hparams.get("warmup_steps", 0)
        if warmup >= total_steps:
            rank_zero_warn(
                f"`warmup_steps={warmup}` covers the whole run ({total_steps} optimizer steps): "
                "the learning rate never reaches the cosine decay."
            )

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def configure_optimizers(self) -> Any:
        optimizer = self.build_optimizer()
        if self.hparams.scheduler == "none":
            return optimizer
        total = estimated_stepping_batches(self.trainer)
        if not math.isfinite(total):
            raise ValueError(
                f"`scheduler={self.hparams.scheduler!r}` needs a finite training length: set "
                f"`trainer.max_steps` or `trainer.max_epochs`, got estimated_stepping_batches={total}."
            )
        scheduler = self.build_scheduler(optimizer, int(total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ local pretrained weights
    def backbone_module(self) -> nn.Module:
        """The module a ``backbone_checkpoint`` argument loads into (the task's ``model``)."""
        return self.model

    def setup(self, stage: str) -> None:
        """Load the task's ``backbone_checkpoint`` (if it has one) once, when ``fit`` starts: before a
        resumed checkpoint's weights are restored, so those win; a missing file stops the run before
        training. Construction never reads it (recipes build without it)."""
        path = self.hparams.get("backbone_checkpoint")
        if stage != "fit" or path is None or getattr(self, "_backbone_loaded", False):
            return
        loaded, kept = load_backbone_weights(self.backbone_module(), path)
        self._backbone_loaded = True
        rank_zero_info(f"Loaded {loaded} backbone tensors from {path}; kept {len(kept)} as initialised"
                       f"{' (' + ', '.join(kept[:4]) + ('...' if len(kept) > 4 else '') + ')' if kept else ''}.")

    # ------------------------------------------------------------------ RNG states in checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        states: dict[str, Any] = {  # only tensors and builtins: loadable with weights_only=True
            "torch": torch.get_rng_state(),
            "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
            "python": random.getstate(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint[RNG_STATES_KEY] = states

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trainer = self._trainer
        if trainer is not None and trainer.state.fn == TrainerFn.FITTING:
            self._pending_rng_states = checkpoint.get(RNG_STATES_KEY)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        states, self._pending_rng_states = self._pending_rng_states, None
        if states is None:
            return
        torch.set_rng_state(states["torch"])
        kind, keys, pos, has_gauss, gauss = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(states["python"])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])

