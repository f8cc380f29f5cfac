"""Dynamic Sparse Training as a Lightning callback: static, SET, RigL, MEST, GraNet and DSFF.

Each method is a frozen preset of :mod:`lightning_sparse.core.methods` (prune score, grow score,
drop fraction and schedule, end of updates, gradual pruning); a new method is one
``register_method(MethodPreset(...))``. The papers:

- ``static``: random sparse network, never changed (Liu et al. 2022, arXiv:2202.02643).
- ``set``: SET, Mocanu et al. 2018, "Scalable training of artificial neural networks with adaptive
  sparse connectivity inspired by network science", arXiv:1707.04780.
- ``rigl``: RigL, Evci et al. 2020, "Rigging the Lottery: Making All Tickets Winners",
  arXiv:1911.11134.
- ``mest``: MEST, Yuan et al. 2021, "MEST: Accurate and Fast Memory-Economic Sparse Training
  Framework on the Edge", arXiv:2110.14032.
- ``granet``: GraNet, Liu et al. 2021, "Sparse Training via Boosting Pruning Plasticity with
  Neuroregeneration", arXiv:2106.10404: gradual (cubic) global magnitude pruning from
  ``initial_sparsity`` to ``sparsity`` until ``prune_end_step``, plus prune-and-grow at every
  update.
- ``dsff``: E2ENet's dynamic sparse feature fusion, Wu et al. 2024, "E2ENet: Dynamic Sparse
  Feature Fusion for Accurate and Efficient 3D Medical Image Segmentation", arXiv:2312.04727:
  magnitude prune, random regrow, 0.5 cosine-decayed, until the end; at ``granularity="kernel"``
  on E2ENet's fusion convolutions (``include=E2ENET_FUSION_INCLUDE``).
- ``gmp``: gradual magnitude pruning, Zhu & Gupta 2017, "To prune, or not to prune: exploring the
  efficacy of pruning for model compression", arXiv:1710.01878: dense at ``start_step``, cubic
  schedule to ``sparsity`` at ``prune_end_step`` (``prune_scope`` global or layer), no regrowth.

``distribution="snip"``: the per-layer densities of SNIP's global ranking on the first training
batch, random positions inside each layer (the hard-sample-learners code's and SLaK's
initialization; :class:`~lightning_sparse.callbacks.PruningAtInit` keeps SNIP's positions).

The contract, checkpointing, DDP checks, logging and the hand-over protocol come from
:class:`~lightning_sparse.callbacks.SparseMaskCallback`; this class only decides when the masks
change and which positions change.

Constrained regions (DSN, Xiao et al. 2022, "Dynamic Sparse Network for Time Series
Classification: Learning What to 'See'", NeurIPS 2022, arXiv:2212.09840): ``allowed_regions``,
integer group labels with exact per-group counts, ``density_within_regions``,
``init_mask="leftmost"`` and ``update_interval_epochs``. DSN's schedule is
``method="rigl", grow="random", drop_fraction=0.5, stop_step=0.8`` (see ``docs/dsn.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from typing_extensions import override

from lightning_sparse._validation import check_bool, check_choice, check_int, check_number, check_step
from lightning_sparse.callbacks._masked import SparseMaskCallback
from lightning_sparse.core import GROW_CRITERIA, SCHEDULES, Schedule, global_keep_counts
from lightning_sparse.core.methods import METHOD_PRESETS
from lightning_sparse.core.updates import (
    drop_counts,
    gradual_prune_masks,
    grow_score,
    interpolate_densities,
    prune_and_grow_target,
    prune_score,
    update_moving_average_,
)

METHODS = tuple(METHOD_PRESETS)
PRUNE_SCOPES = ("layer", "global")


class DynamicSparseTraining(SparseMaskCallback):
    """Train any LightningModule with a sparse, evolving topology.

    Args:
        method: a registered method: ``"static"``, ``"set"``, ``"rigl"``, ``"mest"``, ``"granet"``,
            ``"dsff"``, ``"gmp"``.
        sparsity: target share of zeros over the sparsified parameters, in ``[0, 1)``.
        distribution: ``"uniform"``, ``"er"``, ``"erk"``, ``"snip"`` (per-layer counts from SNIP's
            ranking at train start; not with gradual methods), or a mapping ``{name or glob: sparsity}``.
        update_interval: training steps between topology updates (>= 1).
        update_interval_epochs: if given, replaces ``update_interval`` by this many epochs of
            training steps, resolved when training starts (DSN: 5).
        drop_fraction: share of each layer's active weights replaced per update (method default).
        drop_schedule: decay of the drop fraction: ``"constant"``, ``"linear"``, ``"cosine"`` or
            ``"cubic"`` (method default).
        start_step: first training step at which updates may happen.
        stop_step: last step for updates: an int (training steps) or a float in ``(0, 1]`` (share
            of training); method default.
        grow: override the grow score: ``"random"``, ``"gradient"`` or ``"momentum"``.
        include: glob(s) of parameter names to sparsify (default: Linear and ConvNd weights).
        exclude: glob(s) of parameter names to keep dense.
        granularity: ``"element"`` or ``"kernel"`` (one bit per conv kernel).
        allowed_regions: see :class:`~lightning_sparse.callbacks.SparseMaskCallback`.
        density_within_regions: measure ``sparsity`` inside the allowed regions (DSN).
        init_mask: ``"random"`` or ``"leftmost"`` (DSN's ``remain_sort``).
        initial_sparsity: GraNet's starting sparsity (default 0.5 if ``sparsity > 0.5`` else 0;
            GMP: 0).
        prune_end_step: end of gradual pruning, GraNet and GMP (int steps or float share; default 0.5).
        prune_scope: gradual pruning, ``"global"`` (default, as GraNet) or ``"layer"``.
        mest_lambda: MEST's gradient weight ``lambda``.
        momentum_beta: decay of the gradient moving average used by ``grow="momentum"``.
        erk_power_scale: exponent on the ER/ERK scale (RigL's ``erk_power_scale``).
        seed: seed of the callback's own generator.
        log_per_layer: also log ``sparsity/layer/<name>`` at each update.
        summary: show a per-layer sparsity table at the end of training (rank zero).
        verify_ddp: compare a mask checksum across ranks after every update.
        weight_init: ``"keep"``, ``"rescale"``, ``"he"`` or ``"xavier"`` for the first masks.
        include_frozen: also sparsify parameters with ``requires_grad=False``.
        masks_from: a :class:`~lightning_sparse.callbacks.LotteryTicket` file: the first masks
            (their per-layer counts replace ``sparsity`` and ``distribution``) of a fresh run
            (LTH / OMP with ``method="static"``).
        ticket_weights: also load the ticket's (rewind) weights into the module.

    Raises:
        ValueError: on any invalid argument (here) or model-dependent problem (in ``setup``).

    Examples:
        >>> dst = DynamicSparseTraining(method="set", sparsity=0.5, distribution="uniform")
        >>> dst.drop_fraction, dst.drop_schedule
        (0.3, 'constant')
    """

    def __init__(
        self,
        method: str = "rigl",
        sparsity: float = 0.9,
        distribution: str | dict[str, float] = "erk",
        update_interval: int = 100,
        update_interval_epochs: int | None = None,
        drop_fraction: float | None = None,
        drop_schedule: str | None = None,
        start_step: int = 0,
        stop_step: int | float | None = None,
        grow: str | None = None,
        include: list[str] | str | None = None,
        exclude: list[str] | str | None = None,
        granularity: str = "element",
        allowed_regions: dict[str, Tensor] | str | None = None,
        density_within_regions: bool = False,
        init_mask: str = "random",
        initial_sparsity: float | None = None,
        prune_end_step: int | float | None = None,
        prune_scope: str = "global",
        mest_lambda: float = 1.0,
        momentum_beta: float = 0.9,
        erk_power_scale: float = 1.0,
        seed: int = 0,
        log_per_layer: bool = True,
        summary: bool = True,
        verify_ddp: bool = True,
        weight_init: str = "keep",
        include_frozen: bool = False,
        masks_from: str | None = None,
        ticket_weights: bool = True,
    ) -> None:
        check_choice("method", method, METHOD_PRESETS)
        super().__init__(
            sparsity=sparsity, distribution=distribution, include=include, exclude=exclude,
            include_frozen=include_frozen, granularity=granularity, allowed_regions=allowed_regions,
            density_within_regions=density_within_regions, init_mask=init_mask, erk_power_scale=erk_power_scale,
            seed=seed, weight_init=weight_init, log_per_layer=log_per_layer, summary=summary, verify_ddp=verify_ddp,
        )
        preset = METHOD_PRESETS[method]
        if masks_from is not None and (not isinstance(masks_from, str) or preset.gradual or distribution == "snip"):
            raise ValueError("`masks_from` must be a ticket path (str) for a method that does not prune gradually, "
                             f"without distribution='snip'; got masks_from={masks_from!r}, method={method!r}, "
                             f"distribution={distribution!r}.")
        check_bool("ticket_weights", ticket_weights)
        self.masks_from = masks_from
        self.ticket_weights = ticket_weights
        if distribution == "snip" and preset.gradual:
            raise ValueError(f"`distribution='snip'` fixes the layers' counts at the start and needs a method that "
                             f"does not prune gradually, got method={method!r}.")
        check_int("update_interval", update_interval, 1)
        check_int("update_interval_epochs", update_interval_epochs, 1, allow_none=True)
        if drop_fraction is not None and (
            isinstance(drop_fraction, bool) or not isinstance(drop_fraction, (int, float)) or not 0 <= drop_fraction <= 1
        ):
            raise ValueError(f"`drop_fraction` must be in [0, 1] (or None: the method's default), got {drop_fraction!r}.")
        if drop_schedule is not None:
            check_choice("drop_schedule", drop_schedule, SCHEDULES)
        if grow is not None:
            check_choice("grow", grow, GROW_CRITERIA)
        check_choice("prune_scope", prune_scope, PRUNE_SCOPES)
        check_int("start_step", start_step, 0)
        check_step("stop_step", stop_step)
        check_step("prune_end_step", prune_end_step)
        if initial_sparsity is None:
            initial_sparsity = preset.default_initial_sparsity(self.sparsity)
        if isinstance(initial_sparsity, bool) or not isinstance(initial_sparsity, (int, float)) or not (
            0.0 <= initial_sparsity <= self.sparsity
        ):
            raise ValueError(f"`initial_sparsity` must be in [0, sparsity={self.sparsity}], got {initial_sparsity!r}.")
        check_number("mest_lambda", mest_lambda, 0.0)
        check_number("momentum_beta", momentum_beta, 0.0, 1.0, high_open=True)

        self.method = method
        self.preset = preset
        self.update_interval = update_interval
        self.update_interval_epochs = update_interval_epochs
        self.prune_criterion = preset.prune
        self.grow_criterion = grow or preset.grow
        self.drop_fraction = float(preset.drop_fraction if drop_fraction is None else drop_fraction)
        self.drop_schedule = drop_schedule or preset.drop_schedule
        self.start_step = start_step
        self.stop_step = (preset.stop if preset.changes_topology else 0) if stop_step is None else stop_step
        self.initial_sparsity = float(initial_sparsity)
        self.prune_end_step = 0.5 if prune_end_step is None else prune_end_step
        self.prune_scope = prune_scope
        self.mest_lambda = float(mest_lambda)
        self.momentum_beta = float(momentum_beta)

        self._momentum: dict[str, Tensor] = {}
        self._drop: Schedule | None = None
        self._prune: Schedule | None = None
        self._interval = update_interval
        self._prune_now: tuple[int, bool] = (-1, False)
        self._step_keep: tuple[int, dict[str, int]] = (-1, {})

    # ------------------------------------------------------------------ public views
    @property
    def interval(self) -> int:
        """The update interval in training steps (``update_interval_epochs`` resolved at fit start)."""
        return self._interval

    def drop_fraction_at(self, step: int) -> float:
        """The scheduled drop fraction at training step ``step`` (after fit start)."""
        return self._drop(step) if self._drop is not None else float("nan")

    def gradual_target_sparsity(self, step: int) -> float:
        """The scheduled sparsity of gradual pruning at ``step`` (the target without it)."""
        return self._prune(step) if self._prune is not None else self.sparsity

    @property
    @override
    def dense_gradients_every_step(self) -> bool:
        return self.grow_criterion == "momentum"

    # ------------------------------------------------------------------ when
    @override
    def start_sparsity(self) -> float:
        return self.initial_sparsity if self.preset.gradual else self.sparsity

    @override
    def configure_schedule(self, trainer: Trainer, total_steps: float) -> str:
        self._interval = self._resolve_interval(trainer)
        stop = max(_resolve_step("stop_step", self.stop_step, total_steps), self.start_step)
        final_drop = self.drop_fraction if self.drop_schedule == "constant" else 0.0
        self._drop = Schedule(self.drop_schedule, self.drop_fraction, final_drop, self.start_step, stop, self._interval)
        self._prune_now = (-1, False)
        if not self.preset.changes_topology:
            return "static masks (no topology update)"
        end = self.start_step
        if self.preset.gradual:
            end = max(_resolve_step("prune_end_step", self.prune_end_step, total_steps), self.start_step)
            self._prune = Schedule("cubic", self.initial_sparsity, self.sparsity, self.start_step, end, self._interval)
        last = min(max(stop, end + 1), total_steps)  # steps t < last can update
        if last - 1 - self.start_step < self._interval:
            rank_zero_warn(
                f"DynamicSparseTraining[{self.method}]: no topology update will happen: updates every "
                f"{self._interval} steps in ({self.start_step}, {stop}) but training has {total_steps} training "
                "steps; lower `update_interval` or train longer."
            )
        return f"updates every {self._interval} steps in ({self.start_step}, {stop})"

    @override
    @override
    def changes_topology(self) -> bool:
        return self.preset.changes_topology

    def should_update(self, step: int) -> bool:
        if not self.preset.changes_topology:
            return False
        return self._drop.is_update_step(step) or self._prune_due(step)

    def _prune_due(self, step: int) -> bool:
        """Gradual pruning happens at every update-grid step until the final sparsity is reached,
        so a last prune after ``prune_end_step`` lands exactly on the target."""
        if self._prune_now[0] == step:
            return self._prune_now[1]
        due = False
        if self._prune is not None and step > self._prune.start and not (step - self._prune.start) % self._interval:
            active = sum(self._maskset.active(n) for n in self._maskset)
            if self.prune_scope == "global":
                due = active > round((1.0 - self.sparsity) * sum(self._bases.values()))
            else:
                due = active > sum(self._final_counts.values())
        self._prune_now = (step, due)
        return due

    def _resolve_interval(self, trainer: Trainer) -> int:
        if self.update_interval_epochs is None:
            return self.update_interval
        batches = trainer.num_training_batches
        if not math.isfinite(batches):
            raise ValueError(
                f"`update_interval_epochs`={self.update_interval_epochs} needs the length of an epoch, but the "
                "training dataloader has no length; give `update_interval` in training steps instead."
            )
        accumulate = trainer.accumulate_grad_batches if self._automatic else 1
        return self.update_interval_epochs * max(math.ceil(batches / accumulate), 1)

    # ------------------------------------------------------------------ what
    @override
    def observe_gradients(self, grads: Mapping[str, Tensor | None]) -> None:
        if self.grow_criterion == "momentum":
            update_moving_average_(self._momentum, grads, self.momentum_beta)

    @override
    def compute_masks(self, step: int, names: Sequence[str], masks: dict[str, Tensor]) -> dict[str, Tensor]:
        if self._prune_due(step):
            keep = self._gradual_keep(step)
            scores = {n: self._prune_score(n, masks[n]) for n in names}
            masks = gradual_prune_masks(masks, scores, {n: keep[n] for n in names}, self._generator)
        drop = self._drop_now(step)
        for n in names:
            t = self._targets[n]
            k = drop_counts(t, masks[n], drop)
            if k if isinstance(k, int) else any(k.values()):
                masks[n] = prune_and_grow_target(
                    t, masks[n], k, self._prune_score(n, masks[n]), self._grow_score(n), self._generator
                )
        return masks

    def _gradual_keep(self, step: int) -> dict[str, int]:
        """Units each layer keeps at this step's gradual target; computed once per training step
        over every free parameter, so several optimizers share one global budget."""
        if self._step_keep[0] == step:
            return self._step_keep[1]
        s_t = self._prune(step)
        names = self._free(self._targets)
        if self.prune_scope == "global":
            masks = {n: self._maskset[n] for n in names}
            scores = {n: self._prune_score(n, masks[n]) for n in names}
            n_keep = min(round((1.0 - s_t) * sum(self._bases[n] for n in names)), sum(int(m.sum()) for m in masks.values()))
            keep = global_keep_counts(scores, masks, n_keep, self._generator)
        else:
            keep = self.counts(self._layer_densities_at(s_t))
        self._step_keep = (step, keep)
        return keep

    def _drop_now(self, step: int) -> float:
        """The drop fraction of an update at ``step``: 0 outside the update window."""
        return self._drop(step) if self._drop.start < step < self._drop.stop else 0.0

    def _layer_densities_at(self, sparsity: float) -> dict[str, float]:
        """Layer-scope gradual pruning: each layer's density (relative to its base) the same share
        of the way from its initial to its target density as ``sparsity`` is overall."""
        span = self.sparsity - self.initial_sparsity
        q = 1.0 if span <= 0 else (sparsity - self.initial_sparsity) / span
        return interpolate_densities(self._initial_densities, self._target_densities, q)

    def _prune_score(self, name: str, mask: Tensor) -> Tensor:
        return prune_score(self.prune_criterion, self._targets[name], self._params[name], mask, self.mest_lambda)

    def _grow_score(self, name: str) -> Tensor:
        return grow_score(self.grow_criterion, self._targets[name], self._params[name], self._generator,
                          self._momentum.get(name))

    @override
    def update_log(self, step: int) -> dict[str, float]:
        log = {"sparsity/drop_fraction": self._drop_now(step)}
        if self._prune is not None:
            log["sparsity/gradual_target"] = self._prune(step)
        return log

    # ------------------------------------------------------------------ summary and state
    @override
    def summary_targets(self) -> tuple[dict[str, float | None], float | None, str]:
        title = f"Sparsity after training ({self.method})"
        if self._prune is None or self._last_update_step < 0:
            return self.target_densities, None, title
        s_t = self._prune(self._last_update_step)
        if self.prune_scope == "global":  # one global budget: no per-layer target
            return {n: None for n in self._targets}, 1.0 - s_t, title
        return self.absolute_densities(self._layer_densities_at(s_t)), None, title

    @override
    def _label(self) -> str:
        return f"DynamicSparseTraining[{self.method}]"

    @override
    def extra_state(self) -> dict[str, Any]:
        return {"method": self.method, "momentum": {n: m.detach().cpu().clone() for n, m in self._momentum.items()}}

    @override
    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        devices = {n: p.device for n, p in self._params.items()}
        self._momentum = {n: m.to(devices[n]) for n, m in state.get("momentum", {}).items()}

    @override
    def setup(self, trainer: Trainer, pl_module: Any, stage: str) -> None:
        had_masks = self._maskset is not None
        super().setup(trainer, pl_module, stage)
        if had_masks and self._maskset is None:
            self._momentum = {}


def _resolve_step(name: str, value: int | float, total: float) -> int:
    if isinstance(value, float):
        if not math.isfinite(total):
            raise ValueError(
                f"`{name}`={value} is a share of training, but the Trainer's length is unknown; "
                "set `max_steps`/`max_epochs` or give an integer step."
            )
        return int(value * total)
    return int(value)
