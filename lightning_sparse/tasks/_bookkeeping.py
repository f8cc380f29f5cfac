"""Per-step bookkeeping of the tasks kept cheap: training metrics updated in chunks, torch's fused
optimizers where the parameters allow."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

METRIC_BUFFER_ELEMENTS = 1 << 18
"""Buffered training logits (elements) after which the training metrics get their update."""


def fused_supported(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused optimizers take ``params``: floating point, on a device with fused
    kernels (CPU and CUDA among them), none sparse.

    Examples:
        >>> fused_supported([torch.zeros(2, requires_grad=True)])
        True
        >>> fused_supported([torch.zeros(2, dtype=torch.int64)])
        False
    """
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    devices = _get_fused_kernels_supported_devices()
    return bool(params) and all(
        p.is_floating_point() and p.device.type in devices and not p.is_sparse for p in params
    )


class BufferedTrainMetrics:
    """Mixin of :class:`~lightning_sparse.tasks.base.SparseTask`: the training batches' logits and
    targets are buffered and handed to the training metrics (``stage_metrics("train")``) in one
    ``update`` per ``METRIC_BUFFER_ELEMENTS`` logits and at the epoch's last batch."""

    _metric_buffer: list[tuple[Tensor, Tensor]]
    _metric_buffered: int

    def _reset_metric_buffer(self) -> None:
        self._metric_buffer, self._metric_buffered = [], 0

    def _buffer_metric_update(self, logits: Tensor, y: Tensor) -> None:
        """Queue a training batch for the training metrics, which get one ``update`` per
        ``METRIC_BUFFER_ELEMENTS`` buffered logits and at the epoch's last batch: a torchmetrics
        update costs about a dozen small ops whatever the batch size, and the metrics' states
        (counts, sums) come out the same from one update on the concatenated batches."""
        if self._metric_buffer:
            last_logits, last_y = self._metric_buffer[-1]
            if (logits.shape[1:] != last_logits.shape[1:] or y.shape[1:] != last_y.shape[1:]
                    or logits.dtype != last_logits.dtype or logits.device != last_logits.device):
                self.flush_train_metrics()  # batches that do not concatenate
        self._metric_buffer.append((logits, y))
        self._metric_buffered += logits.numel()
        if self._metric_buffered >= METRIC_BUFFER_ELEMENTS:
            self.flush_train_metrics()

    def flush_train_metrics(self) -> None:
        """Hand the buffered training batches to the training metrics (one ``update``)."""
        buffer, self._metric_buffer, self._metric_buffered = self._metric_buffer, [], 0
        if not buffer:
            return
        logits = buffer[0][0] if len(buffer) == 1 else torch.cat([b[0] for b in buffer])
        y = buffer[0][1] if len(buffer) == 1 else torch.cat([b[1] for b in buffer])
        for metric in self.stage_metrics("train").values():
            metric.update(logits, y)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        trainer = self._trainer
        # the epoch ends after this batch: its metric values must be complete before Lightning's
        # epoch end (callbacks read `trainer.callback_metrics` there)
        if trainer is None or (
            trainer.is_last_batch or trainer.should_stop
            or (trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps)
        ):
            self.flush_train_metrics()

    def on_train_epoch_end(self) -> None:
        self.flush_train_metrics()
