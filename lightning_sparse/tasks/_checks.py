"""Argument checks shared by the tasks (raised at construction, before any training)."""

from __future__ import annotations

from typing import Sequence


def check_training_args(
    *,
    num_classes: int,
    optimizer: str,
    optimizers: Sequence[str],
    scheduler: str,
    schedulers: Sequence[str],
    lr: float,
    momentum: float,
    weight_decay: float,
    label_smoothing: float,
) -> None:
    """Raise ``ValueError`` naming the argument, the allowed values and what was given.

    Examples:
        >>> check_training_args(num_classes=1, optimizer="sgd", optimizers=("sgd",), scheduler="none",
        ...                     schedulers=("none",), lr=0.1, momentum=0.9, weight_decay=0.0,
        ...                     label_smoothing=0.0)
        Traceback (most recent call last):
        ...
        ValueError: `num_classes` must be an integer >= 2, got 1.
    """
    if num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes}.")
    if optimizer not in optimizers:
        raise ValueError(f"`optimizer` must be one of {list(optimizers)}, got {optimizer!r}.")
    if scheduler not in schedulers:
        raise ValueError(f"`scheduler` must be one of {list(schedulers)}, got {scheduler!r}.")
    if not lr > 0:
        raise ValueError(f"`lr` must be positive, got {lr}.")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"`momentum` must be in [0, 1), got {momentum}.")
    if weight_decay < 0:
        raise ValueError(f"`weight_decay` must be non-negative, got {weight_decay}.")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"`label_smoothing` must be in [0, 1), got {label_smoothing}.")
