"""Valid lengths of a padded batch of sequences: the one check every sequence function uses.

Torch only: never imports Lightning.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["batch_lengths"]


def batch_lengths(lengths: Any, batch: int, steps: int) -> Tensor:
    """``lengths`` as a CPU int64 ``(batch,)`` tensor in ``[0, steps]``; ``None`` means all ``steps``.

    Raises:
        ValueError: If ``lengths`` is not an integer tensor of shape ``(batch,)`` or leaves that range.

    Examples:
        >>> batch_lengths(None, 2, 5).tolist()
        [5, 5]
        >>> batch_lengths(torch.tensor([3, 9]), 2, 5)
        Traceback (most recent call last):
        ...
        ValueError: `lengths` must be in [0, 5] (the padded length), got [3, 9].
    """
    if lengths is None:
        return torch.full((batch,), steps, dtype=torch.int64)
    if not isinstance(lengths, Tensor) or lengths.shape != (batch,) or lengths.is_floating_point():
        shape = tuple(lengths.shape) if isinstance(lengths, Tensor) else type(lengths).__name__
        raise ValueError(f"`lengths` must be an integer tensor of shape ({batch},), got {shape}.")
    lengths = lengths.detach().to("cpu", torch.int64)
    if bool(((lengths < 0) | (lengths > steps)).any()):
        raise ValueError(f"`lengths` must be in [0, {steps}] (the padded length), got {lengths.tolist()}.")
    return lengths
