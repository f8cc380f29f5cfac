"""MSRS as a Lightning callback: a learnable sparse mask at the start of training, then dense or sparse.

MSRS (Fernandez-Lopez et al., "MSRS: Training Multimodal Speech Recognition Models from Scratch
with Sparse Mask Optimization", Interspeech 2024, arXiv:2406.17614) optimises a learnable mask
over the weights at the very beginning of training, regularised toward sparsity; once the mask
is stable it is binarised and training either goes on **dense** (the mask removed, every weight
trains again from the masked start) or stays **sparse** (the mask frozen, only its non-zero
weights train). The open choices are those of Continuous Sparsification (Savarese et al., NeurIPS
2020, arXiv:1912.04427), whose maths lives in :mod:`lightning_sparse.core.mask_regularization`.

Three phases:

1. **mask** (from the first step): every targeted weight ``w`` gets a logit ``s`` (one per mask
   unit: an element, or a kernel with ``granularity="kernel"``), initialised to
   ``initial_logit``; the network computes with ``w * m(s)``, MSRS's ``m(s) = sigmoid(beta s)``
   (with ``scale_mask``, Continuous Sparsification's ``sigmoid(beta s) / sigmoid(s0)``, exactly
   1 at the start). The temperature ``beta`` grows exponentially from ``initial_temperature``
   to ``final_temperature`` over the mask phase (per epoch, as Continuous Sparsification, or
   per step with ``mask_steps``); the objective gets ``penalty * sum(m)``.
2. a **transition**, when the hard mask ``s > 0`` (or the top-k logits at ``sparsity``) changed
   in fewer than ``stability_threshold`` of its bits over ``patience`` consecutive checks (not
   before ``min_mask_fraction`` of the phase), or at the end of the phase at the latest. The
   weights become ``w * m*`` with the binary ``m* = [s kept]`` (times ``1 / sigmoid(s0)`` with
   ``scale_mask``, Continuous Sparsification's "ticket" forward): the limit of the soft mask as
   the temperature grows, so the network's function does not jump; the optimizer state of the
   removed weights is reset.
3. **dense** (``mode="dense"``): nothing is held back any more. **sparse** (``mode="sparse"``):
   the mask is fixed and the guarantees of the mask-holding base hold from then on
   (:class:`~lightning_sparse.callbacks.SparseMaskCallback`, ``docs/dst.md``): exact zeros after
   every optimizer step, no gradient and no optimizer state outside the mask, checkpoints of the
   plain model.

**The mechanism** (how the penalty and the mask reach training without the task knowing): the
parameters stay the objects the task's optimizer holds and hold ``w * m`` between optimizer
steps; at each step the callback turns their gradient into the raw weights' ``g * m`` and the
logits' gradient, the penalty's gradient added to the logits' directly (identical to adding it to
the loss; ``msrs/penalty`` is logged). The arithmetic is
:class:`~lightning_sparse.callbacks._learned_mask.LearnedMask`; ``docs/msrs.md`` has the whole
account (grad scaler, accumulation, several optimizers, DDP).

Logged: ``msrs/temperature``, ``msrs/hard_density`` (share of mask units kept by the hard
mask now), ``msrs/soft_density`` (mean of ``m``, over ``1 / sigmoid(s0)`` with ``scale_mask``), ``msrs/penalty``,
``msrs/mask_change`` (at each check), ``msrs/target_sparsity`` (with ``sparsity``),
``msrs/transition_step`` and ``msrs/transition_epoch`` (once), ``sparsity/global_density``
(the base's: the realised density of the model's weights after the transition, 1 before).

Checkpoints: before the transition the callback's state holds the raw weights, the logits, their
optimizer state, the temperature and the stability history (the model's state dict holds the
effective weights, so any checkpoint loads into the plain model and computes what training
computed); after it, the transition mask and, in sparse mode, the base's mask state. A resume
continues exactly, before and after the transition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from typing_extensions import override

from lightning_sparse._validation import check_bool, check_choice, check_int, check_number
from lightning_sparse.callbacks._learned_mask import LearnedMask, StabilityTracker, pack_masks, unpack_masks
from lightning_sparse.callbacks._masked import SparseMaskCallback
from lightning_sparse.core import DISTRIBUTIONS, MaskSet, reset_optimizer_state
from lightning_sparse.core.mask_regularization import (
    CS_FINAL_TEMPERATURE,
    CS_INITIAL_LOGIT,
    CS_PENALTY,
    mask_scale,
    temperature_at,
)

__all__ = ["MSRS", "MSRS_MODES", "MASK_OPTIMIZERS"]

MSRS_MODES = ("dense", "sparse")
"""What training does after the transition."""
MASK_OPTIMIZERS = ("sgd", "adam")
"""Optimizers of the mask logits (Continuous Sparsification: SGD with momentum)."""
MSRS_DISTRIBUTIONS = ("global", *DISTRIBUTIONS)
PHASES = ("mask", "dense", "sparse")


class MSRS(SparseMaskCallback):
    """Sparse mask regularization at the start of training, then dense or sparse training.

    See the module docstring for the phases and the mechanism; ``docs/msrs.md`` for the method,
    its defaults and the evidence.

    Args:
        mode: after the transition, ``"dense"`` (mask removed, every weight trains) or
            ``"sparse"`` (mask fixed, only the kept weights train).
        sparsity: ``None``: the hard mask is Continuous Sparsification's ``s > 0``, its sparsity
            whatever the logits learnt; a number in ``[0, 1)``: the transition keeps the highest
            logits at exactly this sparsity (and the stability checks compare those top-k masks).
        distribution: how ``sparsity`` is spread: ``"global"`` (one ranking of the logits over
            all layers) or a layer-wise rule of the base (``"uniform"``, ``"er"``, ``"erk"``, a
            mapping ``{name or glob: sparsity}``); unused without ``sparsity``.
        mask_epochs: length of the mask phase in epochs: the temperature reaches
            ``final_temperature`` at its last epoch (multiplied after every epoch) and the
            transition happens at its end at the latest.
        mask_steps: the mask phase in training steps instead (the temperature then grows after
            every step, and stability is checked every ``check_interval`` steps).
        check_interval: training steps between stability checks with ``mask_steps`` (default:
            a tenth of the phase); checks are at epoch ends otherwise.
        stability_threshold: the mask is stable when a check finds fewer than this share of its
            bits changed since the previous check.
        patience: consecutive stable checks needed for the transition.
        min_mask_fraction: no transition on stability before this share of the mask phase
            (early checks see logits that have hardly moved from their common start).
        initial_logit: ``s0``, the logits' initial value (Continuous Sparsification: -0.01;
            higher keeps more weights).
        penalty: ``lambda`` of the penalty ``lambda * sum(m)`` (Continuous Sparsification: 1e-8).
        initial_temperature: ``beta`` at the start.
        final_temperature: ``beta`` at the end of the mask phase (Continuous Sparsification: 200).
        scale_mask: divide the mask by ``sigmoid(initial_logit)``, as Continuous Sparsification's
            code does, so the initial mask is exactly 1 and a kept weight ends at ``w /
            sigmoid(s0)``; ``False`` (default): MSRS's ``m = sigmoid(beta s)``, the initial
            mask ``sigmoid(s0)`` (0.4975 for ``s0 = -0.01``) and a kept weight ``w``.
        mask_optimizer: ``"sgd"`` (with ``mask_momentum``, Continuous Sparsification's) or
            ``"adam"``; never weight decay.
        mask_lr: learning rate of the logits; ``None``: the current learning rate of the
            weight's optimizer group (so it follows the task's schedule).
        mask_momentum: momentum of ``mask_optimizer="sgd"``.
        include: glob(s) of parameter names to mask (default: Linear and ConvNd weights).
        exclude: glob(s) of parameter names to leave alone.
        include_frozen: also mask parameters with ``requires_grad=False``.
        granularity: ``"element"`` or ``"kernel"`` (one logit per conv kernel).
        erk_power_scale: exponent on the ER/ERK scale of a layer-wise ``distribution``.
        seed: seed of the base's generator (unused by MSRS itself, which is deterministic).
        log_per_layer: also log ``sparsity/layer/<name>`` at the transition.
        summary: show a per-layer sparsity table at the end of training (rank zero).
        verify_ddp: compare a checksum of the hard masks across ranks at every check.

    Raises:
        ValueError: on an invalid argument (here) or a model-dependent problem (in ``setup``).

    Examples:
        >>> msrs = MSRS(mode="sparse", sparsity=0.5, mask_epochs=4)
        >>> msrs.phase is None, msrs.temperature
        (True, 1.0)
    """

    def __init__(
        self,
        mode: str = "dense",
        sparsity: float | None = None,
        distribution: str | dict[str, float] = "global",
        mask_epochs: int = 10,
        mask_steps: int | None = None,
        check_interval: int | None = None,
        stability_threshold: float = 0.01,
        patience: int = 2,
        min_mask_fraction: float = 0.5,
        initial_logit: float = CS_INITIAL_LOGIT,
        penalty: float = CS_PENALTY,
        initial_temperature: float = 1.0,
        final_temperature: float = CS_FINAL_TEMPERATURE,
        scale_mask: bool = False,
        mask_optimizer: str = "sgd",
        mask_lr: float | None = None,
        mask_momentum: float = 0.9,
        include: list[str] | str | None = None,
        exclude: list[str] | str | None = None,
        include_frozen: bool = False,
        granularity: str = "element",
        erk_power_scale: float = 1.0,
        seed: int = 0,
        log_per_layer: bool = False,
        summary: bool = True,
        verify_ddp: bool = True,
    ) -> None:
        check_choice("mode", mode, MSRS_MODES)
        check_number("sparsity", sparsity, 0.0, 1.0, high_open=True, allow_none=True)
        if isinstance(distribution, str):
            check_choice("distribution", distribution, MSRS_DISTRIBUTIONS, extra=" or a mapping {name or glob: sparsity}")
        global_topk = distribution == "global"
        super().__init__(
            sparsity=0.0 if sparsity is None else float(sparsity),
            distribution="uniform" if global_topk else distribution,
            include=include, exclude=exclude, include_frozen=include_frozen, granularity=granularity,
            erk_power_scale=erk_power_scale, seed=seed, log_per_layer=log_per_layer, summary=summary,
            verify_ddp=verify_ddp,
        )
        check_int("mask_epochs", mask_epochs, 1)
        check_int("mask_steps", mask_steps, 1, allow_none=True)
        check_int("check_interval", check_interval, 1, allow_none=True)
        if check_interval is not None and mask_steps is None:
            raise ValueError(
                f"`check_interval` counts training steps and needs `mask_steps`; with `mask_epochs` the checks are "
                f"at epoch ends. Got check_interval={check_interval} and mask_steps=None."
            )
        check_number("stability_threshold", stability_threshold, 0.0, 1.0)
        check_int("patience", patience, 1)
        check_number("min_mask_fraction", min_mask_fraction, 0.0, 1.0)
        check_number("initial_logit", initial_logit)
        check_number("penalty", penalty, 0.0)
        check_number("initial_temperature", initial_temperature, 0.0, low_open=True)
        check_number("final_temperature", final_temperature, initial_temperature)
        check_bool("scale_mask", scale_mask)
        check_choice("mask_optimizer", mask_optimizer, MASK_OPTIMIZERS)
        check_number("mask_lr", mask_lr, 0.0, low_open=True, allow_none=True)
        check_number("mask_momentum", mask_momentum, 0.0, 1.0, high_open=True)
        self.mode = mode
        self.target_sparsity = None if sparsity is None else float(sparsity)
        self.global_topk = global_topk
        self.mask_epochs = int(mask_epochs)
        self.mask_steps = mask_steps
        self.check_interval = check_interval if check_interval is not None else (
            None if mask_steps is None else max(1, mask_steps // 10))
        self.stability_threshold = float(stability_threshold)
        self.patience = int(patience)
        self.min_mask_fraction = float(min_mask_fraction)
        self.initial_logit = float(initial_logit)
        self.penalty = float(penalty)
        self.initial_temperature = float(initial_temperature)
        self.final_temperature = float(final_temperature)
        self.mask_optimizer = mask_optimizer
        self.mask_lr = mask_lr
        self.mask_momentum = float(mask_momentum)
        self.scale_mask = scale_mask
        self.scale = mask_scale(self.initial_logit) if scale_mask else 1.0

        self._phase: str | None = None
        self._mask: LearnedMask | None = None  # the mask phase's state
        self._progress = 0  # epochs (or steps with `mask_steps`) of the mask phase done
        self._temperature = self.initial_temperature
        self._stability = StabilityTracker(self.stability_threshold, self.patience, self.min_mask_fraction)
        self._transition_step: int | None = None
        self._transition_epoch: int | None = None
        self._transition_masks: dict[str, Tensor] = {}
        self._last_step_seen = -1

    # ------------------------------------------------------------------ public views
    @property
    def phase(self) -> str | None:
        """``"mask"``, ``"dense"`` or ``"sparse"``; ``None`` before training starts."""
        return self._phase

    @property
    def temperature(self) -> float:
        """The soft mask's current temperature ``beta``."""
        return self._temperature

    @property
    def logits(self) -> dict[str, Tensor]:
        """Name -> mask logits (unit shape) during the mask phase; empty afterwards."""
        return {} if self._mask is None else {n: s.detach().clone() for n, s in self._mask.logits.items()}

    @property
    def raw_weights(self) -> dict[str, Tensor]:
        """Name -> the raw weights ``w`` during the mask phase (the parameters hold ``w * m``)."""
        return {} if self._mask is None else {n: w.detach().clone() for n, w in self._mask.raw.items()}

    @property
    def hard_masks(self) -> dict[str, Tensor]:
        """Name -> the bool unit mask the transition would apply now (during the mask phase),
        or the one it applied (afterwards)."""
        if self._phase == "mask":
            return self._hard()
        return {n: m.clone() for n, m in self._transition_masks.items()}

    @property
    def transition_step(self) -> int | None:
        """Training step at which the mask was binarised (``None`` before)."""
        return self._transition_step

    @property
    def transition_epoch(self) -> int | None:
        """Epoch at whose end (or in which) the mask was binarised (``None`` before)."""
        return self._transition_epoch

    @property
    def mask_changes(self) -> list[float]:
        """Share of mask bits changed at every stability check so far."""
        return list(self._stability.changes)

    @property
    @override
    def dense_gradients_every_step(self) -> bool:
        """The mask phase reads the dense gradient at every step: nothing can be held sparse."""
        return self._phase == "mask"

    # ------------------------------------------------------------------ base decisions
    @override
    def start_sparsity(self) -> float:
        return 0.0  # the base's masks start all-ones: the mask phase is dense

    @override
    def configure_schedule(self, trainer: Trainer, total_steps: float) -> str:
        if self.mask_steps is not None:
            if math.isfinite(total_steps) and self.mask_steps > total_steps:
                rank_zero_warn(f"MSRS: `mask_steps={self.mask_steps}` exceeds training ({int(total_steps)} steps): "
                               "the mask is never binarised.")
            return f"mask phase of {self.mask_steps} steps then {self.mode}"
        if trainer.max_epochs not in (None, -1) and self.mask_epochs > trainer.max_epochs:
            rank_zero_warn(f"MSRS: `mask_epochs={self.mask_epochs}` exceeds `max_epochs={trainer.max_epochs}`: "
                           "the mask is never binarised.")
        return f"mask phase of {self.mask_epochs} epochs then {self.mode}"

    @override
    def summary_targets(self) -> tuple[dict[str, float | None], float | None, str]:
        if self.target_sparsity is None:
            return {}, None, f"Sparsity after training (MSRS, {self.mode})"
        targets = None if self.global_topk else self.target_densities
        return targets or {}, 1.0 - self.target_sparsity, f"Sparsity after training (MSRS, {self.mode})"

    @override
    def _label(self) -> str:
        return f"MSRS[{self.mode}]"

    # ------------------------------------------------------------------ fit start
    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_fit_start(trainer, pl_module)  # targets, base masks, a restored state (which refreshes)
        if self._phase is None:
            self._phase = "mask"
            self._progress = 0
            self._temperature = self.initial_temperature
            self._mask = self._learned_mask()
            self._stability.reset(self._hard())
        self._register_hooks(trainer)
        self._last_step_seen = self.training_step_index(trainer)

    def _learned_mask(self, state: Mapping[str, Any] | None = None) -> LearnedMask:
        return LearnedMask(self._targets, self._params, initial_logit=self.initial_logit, penalty=self.penalty,
                           scale=self.scale, optimizer=self.mask_optimizer, lr=self.mask_lr,
                           momentum=self.mask_momentum, temperature=self._temperature, state=state)

    @override
    def _register_hooks(self, trainer: Trainer) -> None:
        if self._phase == "sparse":
            super()._register_hooks(trainer)
        elif self._phase == "mask":
            self._hook_optimizers(trainer, lambda optimizer, names: self._after_step_mask(names))
        else:
            self._remove_hooks()
            self._opt_names = {}

    # ------------------------------------------------------------------ the mask phase, per step
    @override
    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        if self._phase == "sparse":
            super().on_before_optimizer_step(trainer, pl_module, optimizer)
        elif self._phase == "mask":
            names = self._opt_names.get(id(optimizer))
            if names is None:  # an optimizer created after fit start
                self._register_hooks(trainer)
                names = self._opt_names.get(id(optimizer), [])
            scaled = getattr(trainer.precision_plugin, "scaler", None) is not None
            if names and not (scaled and not _grads_finite(optimizer)):
                self._mask.prepare(optimizer, names)  # else the grad scaler skips this step: leave all as is

    def _after_step_mask(self, names: list[str]) -> None:
        if self._phase != "mask":
            return
        if self._mask.after_step(names) and not self._warned_outside:
            self._warned_outside = True
            rank_zero_warn(
                f"{self._label()}: an optimizer stepped without Lightning's hooks (a raw `torch.optim` optimizer "
                "instead of `self.optimizers()` under manual optimization): its update is applied to the raw "
                "weights as it is, and the mask logits do not learn from that step."
            )

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._mask is not None:
            self._mask.unswap()

    @override
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._mask is not None:
            self._mask.unswap()

    # ------------------------------------------------------------------ schedule, checks, transition
    def _hard(self) -> dict[str, Tensor]:
        return self._mask.hard(self.target_sparsity, self.global_topk, self._final_counts)

    def _phase_length(self) -> int:
        return self.mask_steps if self.mask_steps is not None else self.mask_epochs

    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._phase == "mask" and self.mask_steps is not None:
            self._step_schedule(trainer)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)  # logs what is pending

    def _step_schedule(self, trainer: Trainer) -> None:
        step = self.training_step_index(trainer, next_batch=not self._automatic)  # steps done
        if step == self._last_step_seen:
            return  # an accumulation batch: no step happened
        self._last_step_seen = step
        self._progress = step
        if step >= self.mask_steps:
            self._check(trainer)
            self._transition(trainer, "end of the mask phase")
        elif step % self.check_interval == 0 and self._check(trainer):
            self._transition(trainer, "stable mask")
        else:
            self._set_temperature(temperature_at(step, self.mask_steps, self.final_temperature,
                                                 self.initial_temperature))
            if step % self.check_interval == 0:
                self._pending_log.update(self._mask_stats())

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._phase == "mask" and self.mask_steps is None:
            self._progress += 1
            stable = self._check(trainer)
            if self._progress >= self.mask_epochs:
                self._transition(trainer, "end of the mask phase")
            elif stable:
                self._transition(trainer, "stable mask")
            else:
                self._pending_log.update(self._mask_stats())
                self._set_temperature(temperature_at(self._progress, self.mask_epochs, self.final_temperature,
                                                     self.initial_temperature))
        if self._pending_log:
            pl_module.log_dict(self._pending_log, on_step=False, on_epoch=True)
            self._pending_log = {}

    def _set_temperature(self, value: float) -> None:
        self._temperature = float(value)
        self._mask.set_temperature(value)

    def _check(self, trainer: Trainer) -> bool:
        """Measure the hard mask's change since the last check; whether the mask is stable."""
        hard = self._hard()
        if self.verify_ddp and trainer.world_size > 1:
            self._verify_ranks(trainer, hard, "mask logits differ between DDP ranks")
        stable = self._stability.update(hard, self._progress, self._phase_length())
        self._pending_log["msrs/mask_change"] = self._stability.changes[-1]
        return stable

    def _mask_stats(self) -> dict[str, float]:
        out = self._mask.stats(self._hard())
        if self.target_sparsity is not None:
            out["msrs/target_sparsity"] = self.target_sparsity
        return out

    @torch.no_grad()
    def _transition(self, trainer: Trainer, reason: str) -> None:
        hard = self._hard()
        stats = self._mask_stats()
        for n, removed in self._mask.binarize(hard).items():
            p = self._params[n]
            for opt in trainer.optimizers:
                if any(q is p for g in opt.param_groups for q in g["params"]):
                    reset_optimizer_state(opt, p, removed)
        empty = [n for n, m in hard.items() if not bool(m.any())]
        if empty:
            rank_zero_warn(f"{self._label()}: the mask removes every weight of {empty[:5]}; raise `initial_logit` "
                           "or give a target `sparsity`.")
        self._transition_masks = {n: m.clone() for n, m in hard.items()}
        self._transition_step = self.training_step_index(trainer, next_batch=not self._automatic)
        self._transition_epoch = trainer.current_epoch
        if self.mode == "sparse":
            self._maskset = MaskSet(self._targets.values(), hard)
        self._phase, self._mask = self.mode, None
        self._register_hooks(trainer)
        density = sum(int(m.sum()) * self._targets[n].unit_size for n, m in hard.items())
        density /= max(sum(t.numel for t in self._targets.values()), 1)
        log = {"msrs/transition_step": float(self._transition_step),
               "msrs/transition_epoch": float(self._transition_epoch),
               "msrs/transition_density": density, **stats}
        if self.log_per_layer:
            log.update({f"sparsity/layer/{n}": float(m.float().mean()) for n, m in hard.items()})
        self._pending_log.update(log)
        rank_zero_info(
            f"{self._label()}: mask binarised at step {self._transition_step} (epoch {self._transition_epoch}, "
            f"{reason}, temperature {stats['msrs/temperature']:.3g}): density {density:.4f}; training goes on "
            f"{self.mode}."
        )

    # ------------------------------------------------------------------ checkpointing
    @override
    def extra_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "msrs_version": 1, "phase": self._phase, "mode": self.mode, "progress": self._progress,
            "temperature": self._temperature, **self._stability.state_dict(),
            "transition_step": self._transition_step, "transition_epoch": self._transition_epoch,
            "transition_masks": pack_masks(self._transition_masks),
        }
        if self._phase == "mask":
            state.update(self._mask.state_dict())
        return state

    @override
    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if "msrs_version" not in state:
            return
        if state["mode"] != self.mode:
            raise ValueError(f"the checkpoint's MSRS ran with mode={state['mode']!r}, this callback has "
                             f"mode={self.mode!r}; resume with the same mode.")
        devices = {n: p.device for n, p in self._params.items()}
        self._phase = state["phase"]
        self._progress = int(state["progress"])
        self._temperature = float(state["temperature"])
        self._stability.load_state_dict(state, self._targets, devices)
        self._transition_step = state["transition_step"]
        self._transition_epoch = state["transition_epoch"]
        self._transition_masks = unpack_masks(state["transition_masks"], self._targets, devices)
        if self._phase == "mask":  # the parameters come out bit-identical to the checkpoint's effective weights
            self._mask = self._learned_mask(state)

    @override
    def setup(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        had_masks = self._maskset is not None
        super().setup(trainer, pl_module, stage)
        if had_masks and self._maskset is None:  # a new model: start over
            self._phase, self._mask = None, None
            self._transition_masks, self._transition_step, self._transition_epoch = {}, None, None


def _grads_finite(optimizer: Any) -> bool:
    """Whether every gradient of ``optimizer`` is finite (what the grad scaler checks)."""
    return all(bool(torch.isfinite(p.grad).all()) for g in optimizer.param_groups for p in g["params"]
               if p.grad is not None)
