"""Schedules over optimizer steps: constant, linear, cosine and cubic (gradual magnitude pruning).

The cubic form is Zhu & Gupta 2017 ("To prune, or not to prune", arXiv:1710.01878):
``v_t = v_f + (v_0 - v_f) (1 - p)^3`` with ``p = (t - start) / (stop - start)``; the cosine form is
RigL's drop-fraction decay ``v_t = v_f + (v_0 - v_f) (1 + cos(pi p)) / 2``.

Torch only (here: pure Python): never imports Lightning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("constant", "linear", "cosine", "cubic")


def schedule_value(kind: str, step: int, start: int, stop: int, initial: float, final: float) -> float:
    """Value of a schedule at optimizer step ``step``: ``initial`` until ``start``, ``final`` from
    ``stop`` on (``constant`` stays at ``initial``).

    Examples:
        >>> schedule_value("cosine", 50, 0, 100, 0.3, 0.0)
        0.15
        >>> schedule_value("cubic", 50, 0, 100, 0.0, 0.8)
        0.7
    """
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}.")
    if kind == "constant" or step <= start:
        return initial
    if step >= stop:
        return final
    p = (step - start) / (stop - start)
    if kind == "linear":
        shape = 1.0 - p
    elif kind == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * p))
    else:
        shape = (1.0 - p) ** 3
    return round(final + (initial - final) * shape, 12)


@dataclass(frozen=True)
class Schedule:
    """A schedule with its update cadence.

    Updates happen at steps ``t`` with ``start < t < stop`` and ``(t - start) % interval == 0``,
    where ``t`` counts completed optimizer steps (``trainer.global_step``), so gradient
    accumulation does not change when they happen.

    Examples:
        >>> s = Schedule("linear", initial=1.0, final=0.0, start=0, stop=10, interval=5)
        >>> [t for t in range(12) if s.is_update_step(t)], s(5)
        ([5], 0.5)
    """

    kind: str = "constant"
    initial: float = 0.0
    final: float = 0.0
    start: int = 0
    stop: int = 0
    interval: int = 1

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.kind!r}.")
        if self.interval < 1:
            raise ValueError(f"`update_interval` must be >= 1, got {self.interval}.")
        if self.stop < self.start:
            raise ValueError(f"`stop_step` ({self.stop}) must not come before `start_step` ({self.start}).")

    def __call__(self, step: int) -> float:
        return schedule_value(self.kind, step, self.start, self.stop, self.initial, self.final)

    def is_update_step(self, step: int) -> bool:
        """Whether a topology update happens before the optimizer step taken at ``step``."""
        return self.start < step < self.stop and (step - self.start) % self.interval == 0
