"""The length of training as every floor should see it (pure Python: no torch, no Lightning).

Lightning's ``trainer.estimated_stepping_batches`` assumes every epoch has the loader's full
length. A callback that changes epoch lengths (data pruning keeps ~70% of the samples per epoch)
knows better: it defines ``estimated_stepping_batches(trainer)``, and
:func:`estimated_stepping_batches` asks it first. The tasks size their learning-rate schedules
with it and the mask-holding callbacks their topology schedules, so a cosine schedule ends at 0
on the last pruned step instead of two thirds of the way.
"""

from __future__ import annotations

from typing import Any

__all__ = ["estimated_stepping_batches"]


def estimated_stepping_batches(trainer: Any) -> float:
    """Optimizer steps of the whole fit: from the first callback that defines
    ``estimated_stepping_batches(trainer)``, else ``trainer.estimated_stepping_batches``."""
    for callback in getattr(trainer, "callbacks", None) or ():
        estimate = getattr(callback, "estimated_stepping_batches", None)
        if callable(estimate):
            return estimate(trainer)
    return trainer.estimated_stepping_batches
