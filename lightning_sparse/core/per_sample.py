"""The per-sample contract between a task's ``training_step`` and the callbacks that read it.

A task that supports data pruning returns a dict from ``training_step``::

    {"loss": scalar, "per_sample_loss": (B,), "index": (B,)}

``loss`` is what Lightning back-propagates; ``per_sample_loss`` holds the detached loss of every
sample of the batch; ``index`` holds the dataset indices of those samples when the batch carries
them (``(x, y, index)`` batches from a DataModule built with ``return_index=True``) and is
absent otherwise. Lightning passes that dict, as ``outputs``, to every callback's
``on_train_batch_end``, where :func:`read_per_sample` returns ``(per_sample_loss, index)``.

:func:`per_sample_output` builds the dict; :func:`weighted_mean` is the default reduction from
per-sample losses to ``loss``, with optional per-sample weights (e.g. InfoBatch's rescaling of
the kept low-loss samples). The whole contract, the weights hook included, is described in
``docs/per_sample.md``. Torch only: no Lightning import here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["INDEX", "LOSS", "PER_SAMPLE_LOSS", "per_sample_output", "read_per_sample", "weighted_mean"]

LOSS = "loss"
"""Key of the scalar training loss (the one Lightning back-propagates)."""
PER_SAMPLE_LOSS = "per_sample_loss"
"""Key of the detached per-sample losses, shape ``(B,)``."""
INDEX = "index"
"""Key of the dataset indices of the batch, shape ``(B,)``; absent when the batch has none."""


def _check_vector(name: str, value: Any, size: int | None = None) -> Tensor:
    if not isinstance(value, Tensor) or value.dim() != 1:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"`{name}` must be a 1-D tensor of shape (B,), got {shape}.")
    if size is not None and value.numel() != size:
        raise ValueError(f"`{name}` must have one entry per sample ({size}), got shape {tuple(value.shape)}.")
    return value


def weighted_mean(per_sample_loss: Tensor, weights: Tensor | None = None) -> Tensor:
    """``mean(weights * per_sample_loss)``, the plain mean when ``weights`` is ``None``.

    Raises:
        ValueError: If ``weights`` is not a ``(B,)`` tensor matching ``per_sample_loss``.

    Examples:
        >>> weighted_mean(torch.tensor([1.0, 3.0]))
        tensor(2.)
        >>> weighted_mean(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 0.0]))
        tensor(1.)
        >>> weighted_mean(torch.tensor([1.0, 3.0]), torch.ones(3))
        Traceback (most recent call last):
        ...
        ValueError: `weights` must have one entry per sample (2), got shape (3,).
    """
    _check_vector("per_sample_loss", per_sample_loss)
    if weights is None:
        return per_sample_loss.mean()
    weights = _check_vector("weights", weights, per_sample_loss.numel())
    return (weights.to(per_sample_loss) * per_sample_loss).mean()


def per_sample_output(
    per_sample_loss: Tensor,
    index: Tensor | None = None,
    reduction: str | Callable[[Tensor], Tensor] = "mean",
) -> dict[str, Tensor]:
    """The ``training_step`` output of the contract, from the (non-reduced) per-sample losses.

    Args:
        per_sample_loss: Losses of the batch's samples, shape ``(B,)``, still attached to the
            graph: ``loss`` is reduced from it, the stored copy is detached.
        index: Dataset indices of the samples, shape ``(B,)``, or ``None`` (then no ``"index"``
            key).
        reduction: ``"mean"``, ``"sum"`` or a callable mapping ``(B,)`` losses to the scalar
            ``loss`` (a task passes its own, which applies the per-sample weights).

    Raises:
        ValueError: If a shape does not match or ``reduction`` is unknown.

    Examples:
        >>> out = per_sample_output(torch.tensor([1.0, 2.0, 6.0]), index=torch.tensor([7, 3, 5]))
        >>> sorted(out), out["loss"]
        (['index', 'loss', 'per_sample_loss'], tensor(3.))
        >>> per_sample_output(torch.tensor([1.0, 2.0]), reduction="sum")["loss"]
        tensor(3.)
        >>> per_sample_output(torch.tensor([[1.0, 2.0]]))
        Traceback (most recent call last):
        ...
        ValueError: `per_sample_loss` must be a 1-D tensor of shape (B,), got (1, 2).
    """
    _check_vector(PER_SAMPLE_LOSS, per_sample_loss)
    if reduction == "mean":
        loss = per_sample_loss.mean()
    elif reduction == "sum":
        loss = per_sample_loss.sum()
    elif callable(reduction):
        loss = reduction(per_sample_loss)
    else:
        raise ValueError(f"`reduction` must be 'mean', 'sum' or a callable, got {reduction!r}.")
    if not isinstance(loss, Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ValueError(f"`reduction` must return a scalar tensor, got {shape}.")
    out = {LOSS: loss, PER_SAMPLE_LOSS: per_sample_loss.detach()}
    if index is not None:
        out[INDEX] = _check_vector(INDEX, index, per_sample_loss.numel())
    return out


def read_per_sample(outputs: Any) -> tuple[Tensor, Tensor | None] | None:
    """``(per_sample_loss, index or None)`` from a ``training_step`` output; ``None`` without them.

    For a callback's ``on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)``:
    ``None`` means the task does not follow the contract (it returned a bare loss or a dict
    without ``"per_sample_loss"``).

    Raises:
        ValueError: If ``per_sample_loss`` is not ``(B,)`` or ``index`` is not ``(B,)`` integers.

    Examples:
        >>> losses, index = read_per_sample({"loss": torch.tensor(1.0),
        ...                                  "per_sample_loss": torch.ones(2), "index": torch.tensor([4, 9])})
        >>> index
        tensor([4, 9])
        >>> read_per_sample(torch.tensor(1.0)) is None
        True
        >>> read_per_sample({"per_sample_loss": torch.ones(2), "index": torch.tensor([0.5, 1.0])})
        Traceback (most recent call last):
        ...
        ValueError: `index` must hold integer dataset indices, got dtype torch.float32.
    """
    if not isinstance(outputs, Mapping) or outputs.get(PER_SAMPLE_LOSS) is None:
        return None
    losses = _check_vector(PER_SAMPLE_LOSS, outputs[PER_SAMPLE_LOSS])
    index = outputs.get(INDEX)
    if index is not None:
        _check_vector(INDEX, index, losses.numel())
        if index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool:
            raise ValueError(f"`index` must hold integer dataset indices, got dtype {index.dtype}.")
    return losses, index
