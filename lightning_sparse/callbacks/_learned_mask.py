"""The state of MSRS's mask phase: logits, raw weights, soft masks and the logits' optimizer.

:class:`LearnedMask` does the arithmetic of the mechanism described in
:mod:`lightning_sparse.callbacks.msrs`: between optimizer steps the parameters hold ``w * m``;
:meth:`LearnedMask.prepare` (after backward) turns a parameter's gradient ``g`` into ``g * m``
for the raw weight and ``(sum g * w + penalty) * dm/ds`` for the logits and puts the raw weight
in the parameter; :meth:`LearnedMask.after_step` (after the optimizer step) takes the updated raw
weight back, steps the logits and writes ``w * m`` again. The callback decides when (hooks,
schedule, transition); this class never imports Lightning.

Why it is exact: the parameters stay the ordinary ``nn.Parameter`` objects the task's optimizer
holds (same names, same checkpoints), and ``g`` is the loss's gradient in the effective weight,
so ``g * m`` is the chain rule of ``w * m``; the penalty ``lambda * sum(m)`` depends on the logits
alone, so adding ``lambda * dm/ds`` to their gradient is the same as adding the penalty to the
loss. ``prepare`` runs in ``on_before_optimizer_step`` (after backward and the grad scaler's
unscaling, before gradient clipping); a step the grad scaler will skip is not prepared, and
:meth:`LearnedMask.unswap` undoes a prepared step that never happened. Gradient accumulation sums
``g`` over the window (the mask only changes at steps); under DDP ``g`` is already averaged over
ranks, so every rank computes the same logits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from lightning_sparse.core import SparseTarget, pack_mask, unpack_mask
from lightning_sparse.core.mask_regularization import (
    global_topk_hard_masks,
    hard_mask,
    mask_scale,
    soft_mask_slope,
    topk_hard_mask,
)

__all__ = ["LearnedMask", "StabilityTracker", "pack_masks", "unpack_masks"]


class LearnedMask:
    """Mask logits on ``params`` (one per unit of each target) and what training them needs.

    Args:
        targets: Name -> :class:`~lightning_sparse.core.targets.SparseTarget`.
        params: Name -> the parameter (its data is overwritten with ``raw * mask``).
        initial_logit: ``s0``.
        penalty: ``lambda`` of ``lambda * sum(m)``.
        scale: The mask's factor (``1 / sigmoid(s0)`` with ``scale_mask``, else 1).
        optimizer: ``"sgd"`` or ``"adam"`` for the logits.
        lr: The logits' learning rate; ``None``: each weight's optimizer group's.
        momentum: SGD momentum.
        temperature: The starting temperature.
        state: A :meth:`state_dict` to continue from (logits, raw weights, optimizer state).
    """

    def __init__(self, targets: Mapping[str, SparseTarget], params: Mapping[str, Tensor], *, initial_logit: float,
                 penalty: float, scale: float, optimizer: str, lr: float | None, momentum: float,
                 temperature: float, state: Mapping[str, Any] | None = None) -> None:
        self.targets, self.params = dict(targets), dict(params)
        self.initial_logit, self.penalty, self.scale, self.lr = initial_logit, penalty, scale, lr
        self.temperature = float(temperature)
        devices = {n: p.device for n, p in self.params.items()}
        if state is None:
            self.logits = {n: torch.full(t.unit_shape, initial_logit, dtype=torch.float32, device=devices[n],
                                         requires_grad=True) for n, t in self.targets.items()}
            self.raw = {n: p.detach().clone() for n, p in self.params.items()}
            self.nonfinite_steps = 0
        else:
            self.logits = {n: s.to(devices[n]).requires_grad_(True) for n, s in state["logits"].items()}
            self.raw = {n: w.to(devices[n], self.params[n].dtype) for n, w in state["raw"].items()}
            self.nonfinite_steps = int(state.get("nonfinite_steps", 0))
        names = list(self.logits)
        groups = [{"params": [self.logits[n]], "lr": lr or 0.0} for n in names]
        self._groups = {n: i for i, n in enumerate(names)}
        self.optimizer = (torch.optim.SGD(groups, lr=lr or 0.0, momentum=momentum) if optimizer == "sgd"
                          else torch.optim.Adam(groups, lr=lr or 0.0))
        if state is not None:
            self.optimizer.load_state_dict(state["logit_optimizer"])
        self.soft: dict[str, Tensor] = {}
        self.swapped: set[str] = set()
        self.refresh()

    # ------------------------------------------------------------------ around an optimizer step
    @torch.no_grad()
    def prepare(self, optimizer: Any, names: Iterable[str]) -> None:
        """After backward: the logits' gradient, the weight's gradient ``g * m``, and the raw
        weight in the parameter for ``optimizer``'s update (the logits learn at its group's rate)."""
        lrs = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
        finite = True
        pending: dict[str, Tensor] = {}
        for n in names:
            p, t, s = self.params[n], self.targets[n], self.logits[n]
            g = p.grad
            if g is not None:
                slope = soft_mask_slope(s, self.temperature, self.initial_logit) * (
                    self.scale / mask_scale(self.initial_logit))
                grad_s = (t.reduce(g.float() * self.raw[n].float()) + self.penalty) * slope
                finite = finite and bool(torch.isfinite(grad_s).all())
                pending[n] = grad_s
                g.mul_(t.expand(self.soft[n]).to(g.dtype))  # d loss / d w = g * m
            p.copy_(self.raw[n])
            self.swapped.add(n)
            self.optimizer.param_groups[self._groups[n]]["lr"] = self.lr if self.lr is not None else lrs[id(p)]
        if finite:
            for n, grad_s in pending.items():
                self.logits[n].grad = grad_s
        else:  # no logit update on a non-finite gradient
            self.nonfinite_steps += 1

    @torch.no_grad()
    def after_step(self, names: Iterable[str]) -> bool:
        """After the optimizer step: raw weights back, the logits' step, ``w * m`` again.

        Returns:
            Whether a parameter stepped without :meth:`prepare` (an optimizer stepped outside
            Lightning's hooks): its update is then taken as the raw weight's update.
        """
        names = list(names)
        outside = False
        for n in names:
            if n in self.swapped:
                self.raw[n].copy_(self.params[n])
            else:
                outside = True
                mask = self.targets[n].expand(self.soft[n]).to(self.raw[n].dtype)
                self.raw[n].add_(self.params[n] - self.raw[n] * mask)
        if any(self.logits[n].grad is not None for n in names):
            self.optimizer.step()
        for n in names:
            self.logits[n].grad = None
        self.swapped.difference_update(names)
        self.refresh(names)
        return outside

    @torch.no_grad()
    def refresh(self, names: Iterable[str] | None = None) -> None:
        """Soft masks at the current temperature; parameters <- raw * mask."""
        for n in self.logits if names is None else names:
            self.soft[n] = torch.sigmoid(self.temperature * self.logits[n]) * self.scale
            p = self.params[n]
            p.copy_(self.raw[n] * self.targets[n].expand(self.soft[n]).to(p.dtype))

    def unswap(self) -> None:
        """A prepared step that never happened (the grad scaler skipped it): effective weights back."""
        if self.swapped:
            names = sorted(self.swapped)
            for n in names:
                self.logits[n].grad = None
            self.swapped.clear()
            self.refresh(names)

    def set_temperature(self, value: float) -> None:
        """A new temperature (and the parameters refreshed to it)."""
        if value != self.temperature:
            self.temperature = float(value)
            self.refresh()

    # ------------------------------------------------------------------ the binary mask
    def hard(self, sparsity: float | None, global_topk: bool, counts: Mapping[str, int]) -> dict[str, Tensor]:
        """The binary unit masks: ``s > 0`` without ``sparsity``; else the top-k logits over all
        layers (``global_topk``) or ``counts[name]`` per layer."""
        logits = {n: s.detach() for n, s in self.logits.items()}
        if sparsity is None:
            return {n: hard_mask(s) for n, s in logits.items()}
        if global_topk:
            return global_topk_hard_masks(logits, sparsity, {n: t.unit_size for n, t in self.targets.items()})
        return {n: topk_hard_mask(s, 1.0 - counts[n] / max(s.numel(), 1)) for n, s in logits.items()}

    def stats(self, hard: Mapping[str, Tensor]) -> dict[str, float]:
        """Temperature, hard and soft densities (over units) and the penalty's value."""
        units = sum(s.numel() for s in self.logits.values())
        soft_sum = sum(float(m.sum()) for m in self.soft.values())
        return {
            "msrs/temperature": self.temperature,
            "msrs/hard_density": sum(int(m.sum()) for m in hard.values()) / max(units, 1),
            "msrs/soft_density": soft_sum / self.scale / max(units, 1),
            "msrs/penalty": self.penalty * soft_sum,
        }

    @torch.no_grad()
    def binarize(self, hard: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Parameters <- ``raw * scale * [kept]`` (the soft mask's limit); returns the removed
        positions per parameter (parameter-shaped bool)."""
        removed = {}
        for n, p in self.params.items():
            keep = self.targets[n].expand(hard[n])
            p.copy_(self.raw[n] * keep.to(p.dtype) * self.scale)
            removed[n] = ~keep
        return removed

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Logits, raw weights and the logits' optimizer state, device-free."""
        return {
            "logits": {n: s.detach().cpu().clone() for n, s in self.logits.items()},
            "raw": {n: w.detach().cpu().clone() for n, w in self.raw.items()},
            "logit_optimizer": self.optimizer.state_dict(),
            "nonfinite_steps": self.nonfinite_steps,
        }


class StabilityTracker:
    """MSRS's stability measure: the share of hard-mask bits changed between consecutive checks.

    Args:
        threshold: A check is stable when fewer than this share of the bits changed.
        patience: Consecutive stable checks needed.
        min_fraction: No verdict of stability before this share of the mask phase.

    Examples:
        >>> tracker = StabilityTracker(threshold=0.3, patience=1, min_fraction=0.5)
        >>> tracker.reset({"w": torch.tensor([True, False, False, False])})
        >>> tracker.update({"w": torch.tensor([True, True, False, False])}, progress=1, length=4)
        False
        >>> tracker.update({"w": torch.tensor([True, True, False, False])}, progress=2, length=4)
        True
        >>> tracker.changes
        [0.25, 0.0]
    """

    def __init__(self, threshold: float, patience: int, min_fraction: float) -> None:
        self.threshold, self.patience, self.min_fraction = threshold, patience, min_fraction
        self.changes: list[float] = []
        self.stable_checks = 0
        self.last: dict[str, Tensor] = {}

    def reset(self, hard: Mapping[str, Tensor]) -> None:
        """Start over from ``hard``, the masks of the phase's start."""
        self.changes, self.stable_checks, self.last = [], 0, dict(hard)

    def update(self, hard: Mapping[str, Tensor], progress: int, length: int) -> bool:
        """Record a check of ``hard`` at ``progress`` of ``length``; whether the mask is stable."""
        changed = sum(int((hard[n] != self.last[n]).sum()) for n in hard)
        change = changed / max(sum(m.numel() for m in hard.values()), 1)
        self.changes.append(change)
        self.last = dict(hard)
        self.stable_checks = self.stable_checks + 1 if change < self.threshold else 0
        return progress >= self.min_fraction * length and self.stable_checks >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"changes": list(self.changes), "stable_checks": self.stable_checks, "last_hard": pack_masks(self.last)}

    def load_state_dict(self, state: Mapping[str, Any], targets: Mapping[str, SparseTarget],
                        devices: Mapping[str, torch.device]) -> None:
        self.changes, self.stable_checks = list(state["changes"]), int(state["stable_checks"])
        self.last = unpack_masks(state["last_hard"], targets, devices) if "last_hard" in state else {}


def pack_masks(masks: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Bit-packed, device-free copies of bool masks."""
    return {n: pack_mask(m.cpu()) for n, m in masks.items()}


def unpack_masks(packed: Mapping[str, Tensor], targets: Mapping[str, SparseTarget],
                 devices: Mapping[str, torch.device]) -> dict[str, Tensor]:
    """The inverse of :func:`pack_masks` for the unit masks of ``targets``."""
    return {n: unpack_mask(m, targets[n].unit_shape).to(devices[n]) for n, m in packed.items()}
