"""Lottery tickets and one-shot magnitude pruning: prune a trained network, write a ticket file.

Frankle & Carbin 2019, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural
Networks", arXiv:1803.03635 (rewind to the initialization); Frankle, Dziugaite, Roy, Carbin
2019/2020, "Stabilizing the Lottery Ticket Hypothesis" / "Linear Mode Connectivity and the
Lottery Ticket Hypothesis", arXiv:1903.01611 / arXiv:1912.05671 (rewind to an early step);
Renda, Frankle, Carbin 2020, "Comparing Rewinding and Fine-tuning in Neural Network Pruning",
arXiv:2003.02389 (no weight rewinding: keep the trained weights and retrain with the full
schedule, the one-shot magnitude pruning "OMP" of the hard-sample-learners paper).

:class:`LotteryTicket` records the rewind point during a fit (the weights when training starts
for ``rewind="init"``, after ``rewind`` optimizer steps for an int, none for ``"none"``), and at
the end of the fit prunes the targeted weights by magnitude (global or per layer) and writes a
**ticket**: ``torch.save`` of ``{"version": 1, "masks": {name: bool tensor}, "weights": the
LightningModule's state dict at the rewind point (the trained one for "none"), "density": kept
share, "round": r, "rewind": ...}``. ``DynamicSparseTraining(method="static", masks_from=PATH)``
trains from it: masks and weights loaded when training starts fresh (a resumed run restores its
checkpoint instead).

Iterative pruning: with ``rounds=R`` each pruning keeps ``q = (1 - sparsity)^(1/R)`` of the
surviving weights, so the density after round ``r`` is ``q^r`` and ``sparsity`` is reached after
``R`` rounds; the round is read off the network being pruned (its current density), so the same
command, training from the previous round's ticket, is repeated ``R`` times (see
``docs/pruning.md``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from typing_extensions import override

from lightning_sparse._validation import check_choice, check_int, check_number, check_patterns
from lightning_sparse.core import find_targets, magnitude_scores, topk_masks

__all__ = ["LotteryTicket", "load_ticket", "ticket_density"]

SCOPES = ("global", "layer")
REWINDS = ("init", "none")


def ticket_density(current: float, sparsity: float, rounds: int) -> tuple[int, float]:
    """``(round, density)`` of the next pruning of a network at density ``current``.

    Examples:
        >>> ticket_density(1.0, 0.75, 2)  # dense: round 1 keeps sqrt(0.25)
        (1, 0.5)
        >>> ticket_density(0.5, 0.75, 2)
        (2, 0.25)
    """
    q = (1.0 - sparsity) ** (1.0 / rounds)
    done = 0 if current >= 1.0 or q >= 1.0 else max(0, round(math.log(current) / math.log(q)))
    r = min(done + 1, rounds)
    return r, max(q ** r, 1.0 - sparsity)


def load_ticket(path: str | Path) -> dict[str, Any]:
    """Read a ticket file written by :class:`LotteryTicket` (with clear errors)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"`masks_from` must name a ticket file written by LotteryTicket, got {str(p)!r} "
                                "(not found).")
    ticket = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(ticket, dict) or ticket.get("version") != 1 or not isinstance(ticket.get("masks"), dict):
        raise ValueError(f"`masks_from`={str(p)!r} is not a LotteryTicket ticket (version 1 with 'masks').")
    return ticket


class LotteryTicket(Callback):
    """Record a rewind point, prune by magnitude at the end of the fit and write a ticket file.

    Args:
        sparsity: final share of zeros over the targeted weights, in ``(0, 1)``.
        rewind: ``"init"`` (the weights when training starts: LTH), an int ``k >= 0`` (after ``k``
            optimizer steps: rewinding) or ``"none"`` (the trained weights: one-shot magnitude
            pruning with a fresh schedule).
        scope: ``"global"`` (one magnitude ranking over all targets, as LTH's larger networks) or
            ``"layer"`` (each layer keeps the same share).
        rounds: prunings to reach ``sparsity`` (iterative magnitude pruning); 1: one-shot.
        path: the ticket file; None: ``<trainer.default_root_dir>/ticket.pt``.
        include: glob(s) of parameter names to prune (default: Linear and ConvNd weights).
        exclude: glob(s) of parameter names to keep dense.

    Raises:
        ValueError: a bad argument (here), or in ``setup`` a ``rewind`` step beyond training.

    Examples:
        >>> round(LotteryTicket(sparsity=0.9, rounds=3).keep_per_round, 4)  # 0.1 ** (1 / 3)
        0.4642
    """

    def __init__(
        self,
        sparsity: float = 0.9,
        rewind: str | int = "init",
        scope: str = "global",
        rounds: int = 1,
        path: str | None = None,
        include: list[str] | str | None = None,
        exclude: list[str] | str | None = None,
    ) -> None:
        check_number("sparsity", sparsity, 0.0, 1.0, low_open=True, high_open=True)
        if isinstance(rewind, str):
            check_choice("rewind", rewind, REWINDS, extra=" or a step (int >= 0)")
        else:
            check_int("rewind", rewind, 0)
        check_choice("scope", scope, SCOPES)
        check_int("rounds", rounds, 1)
        self.sparsity = float(sparsity)
        self.rewind = rewind
        self.scope = scope
        self.rounds = rounds
        self.path = path
        self.include = check_patterns("include", include)
        self.exclude = check_patterns("exclude", exclude)
        self._rewind_weights: dict[str, Tensor] | None = None
        self.ticket_path: Path | None = None
        self.density: float | None = None
        self.round: int | None = None

    @property
    @override
    def state_key(self) -> str:
        """Unique per rewind point and file, so a dense run can write an LTH and an OMP ticket."""
        return self._generate_state_key(rewind=self.rewind, path=self.path, sparsity=self.sparsity)

    @property
    def keep_per_round(self) -> float:
        """Share of the surviving weights each round keeps."""
        return (1.0 - self.sparsity) ** (1.0 / self.rounds)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and isinstance(self.rewind, int) and trainer.max_steps not in (-1, None) \
                and self.rewind > trainer.max_steps:
            raise ValueError(f"`rewind` must be at most the run's {trainer.max_steps} steps, got {self.rewind}.")

    def _snapshot(self, pl_module: LightningModule) -> None:
        self._rewind_weights = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}

    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._rewind_weights is None and (self.rewind == "init" or self.rewind == 0) and trainer.global_step == 0:
            self._snapshot(pl_module)  # after the mask holders' `on_fit_start`: a ticket's weights

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if isinstance(self.rewind, int) and self._rewind_weights is None and trainer.global_step == self.rewind:
            self._snapshot(pl_module)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.rewind != "none" and self._rewind_weights is None:
            raise RuntimeError(f"LotteryTicket: training ended before the rewind point ({self.rewind!r}).")
        targets = find_targets(pl_module, self.include, self.exclude)
        params = dict(pl_module.named_parameters())
        weights = {t.name: params[t.name].detach() for t in targets}
        current = sum(int(torch.count_nonzero(w)) for w in weights.values()) / sum(w.numel() for w in weights.values())
        self.round, self.density = ticket_density(current, self.sparsity, self.rounds)
        masks = topk_masks(magnitude_scores(weights), self.density, scope=self.scope)
        rewound = self._rewind_weights if self.rewind != "none" else {
            k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        self.ticket_path = Path(self.path) if self.path else Path(trainer.default_root_dir) / "ticket.pt"
        if trainer.is_global_zero:
            self.ticket_path.parent.mkdir(parents=True, exist_ok=True)
            ticket = {"version": 1, "masks": {n: m.cpu() for n, m in masks.items()}, "weights": rewound,
                      "density": self.density, "round": self.round, "rounds": self.rounds, "rewind": self.rewind,
                      "scope": self.scope}
            tmp = self.ticket_path.with_suffix(".tmp")
            torch.save(ticket, tmp)
            tmp.replace(self.ticket_path)
            rank_zero_info(f"LotteryTicket: round {self.round}/{self.rounds}, density {self.density:.4f} "
                           f"(rewind {self.rewind!r}) -> {self.ticket_path}")
        trainer.strategy.barrier("lottery_ticket")

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"rewind_weights": self._rewind_weights}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rewind_weights = state_dict.get("rewind_weights")
