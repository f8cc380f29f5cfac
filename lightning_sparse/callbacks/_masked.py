"""The mask-holding base: what every callback that keeps parameters sparse shares.

:class:`SparseMaskCallback` resolves the sparsified parameters (targets), draws and keeps their
masks, enforces the sparse-training contract around every optimizer step, checkpoints its state,
checks the masks across DDP ranks, logs ``sparsity/*`` and shows a summary table. A subclass
only decides *when* the masks change (:meth:`should_update`) and *which* positions change
(:meth:`compute_masks`); the algorithms themselves are pure functions in
:mod:`lightning_sparse.core`. This is the pattern of Lightning's ``WeightAveraging`` and
``EMAWeightAveraging``.

The contract (``docs/dst.md``): parameters hold exact zeros outside their masks after every
optimizer step (a step-post hook, so a step the grad scaler skips leaves nothing to fix);
inactive gradients are zeroed in ``on_before_optimizer_step`` after the scores are read; a
topology update zeros pruned and grown positions and resets every parameter-shaped optimizer
state there; it is skipped when the step's gradients are not finite.

Training steps: an update is decided once per *training step* and applied to every optimizer
that steps in it. With automatic optimization a training step is an optimizer step
(``trainer.global_step``, so gradient accumulation does not move updates); with manual
optimization it is a training batch, whatever number of optimizers step in it (several
optimizers advance ``global_step`` several times per batch). Schedules are sized in these steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from typing_extensions import override

from lightning_sparse._validation import check_bool, check_choice, check_int, check_number, check_patterns
from lightning_sparse.callbacks._first_masks import SCORED_DISTRIBUTIONS, FirstMasks
from lightning_sparse.callbacks._mask_state import MaskState
from lightning_sparse.callbacks._summary import SummaryRow, render_sparsity_table
from lightning_sparse.core import (
    DISTRIBUTIONS,
    GRANULARITIES,
    INIT_MASKS,
    WEIGHT_INITS,
    MaskSet,
    mask_checksum,
    SparseTarget,
    find_targets,
    reset_optimizer_state,
    sparse_init_,
)

__all__ = ["SparseMaskCallback"]

REGION_SOURCES = ("model",)


class SparseMaskCallback(FirstMasks, MaskState, Callback):
    """Base of the callbacks that hold masks (see the module docstring); satisfies
    :class:`~lightning_sparse.callbacks.MaskProvider`.

    Args:
        sparsity: target share of zeros over the sparsified parameters, in ``[0, 1)``.
        distribution: ``"uniform"``, ``"er"``, ``"erk"``, or a mapping ``{name or glob: sparsity}``
            (every key must match a sparsified parameter).
        include: glob(s) of parameter names to sparsify (default: Linear and ConvNd weights); a
            single string is one glob.
        exclude: glob(s) of parameter names to keep dense.
        include_frozen: also sparsify parameters with ``requires_grad=False`` (left dense by
            default: they never get a gradient, so they could only lose weights).
        granularity: ``"element"`` or ``"kernel"`` (one bit per conv kernel).
        allowed_regions: name -> region of positions that may ever be active (bool tensor, or int
            tensor of group labels, see :mod:`lightning_sparse.core.targets`), or ``"model"``: the
            LightningModule's ``allowed_regions()``, called at every ``setup``.
        density_within_regions: measure ``sparsity`` inside the allowed regions (DSN's definition).
        init_mask: ``"random"`` or ``"leftmost"`` (first kernel taps first; element granularity).
        erk_power_scale: exponent on the ER/ERK scale.
        seed: seed of the callback's own generator (masks, random growth, ties, ``weight_init``).
        weight_init: ``"keep"``, ``"rescale"``, ``"he"`` or ``"xavier"`` when the first masks are
            drawn (never on resume; :func:`~lightning_sparse.core.init.sparse_init_`).
        log_per_layer: also log ``sparsity/layer/<name>`` at each update.
        summary: show a per-layer sparsity table at the end of training (rank zero).
        verify_ddp: compare a mask checksum across ranks after every update.

    Raises:
        ValueError: an invalid argument (here) or a model-dependent problem (in ``setup``:
            unknown names, two mask-holding callbacks claiming one parameter).
    """

    def __init__(
        self,
        sparsity: float = 0.9,
        distribution: str | dict[str, float] = "erk",
        include: list[str] | str | None = None,
        exclude: list[str] | str | None = None,
        include_frozen: bool = False,
        granularity: str = "element",
        allowed_regions: dict[str, Tensor] | str | None = None,
        density_within_regions: bool = False,
        init_mask: str = "random",
        erk_power_scale: float = 1.0,
        seed: int = 0,
        weight_init: str = "keep",
        log_per_layer: bool = True,
        summary: bool = True,
        verify_ddp: bool = True,
    ) -> None:
        super().__init__()
        check_number("sparsity", sparsity, 0.0, 1.0, high_open=True)
        if isinstance(distribution, str):
            check_choice("distribution", distribution, DISTRIBUTIONS + SCORED_DISTRIBUTIONS,
                         extra=" or a mapping {name or glob: sparsity}")
        elif not isinstance(distribution, Mapping) or not distribution:
            raise ValueError(
                f"`distribution` must be one of {DISTRIBUTIONS} or a non-empty mapping, got {distribution!r}."
            )
        if isinstance(allowed_regions, str):
            check_choice("allowed_regions", allowed_regions, REGION_SOURCES, extra=", a mapping {name: region} or None")
        elif allowed_regions is not None and not isinstance(allowed_regions, Mapping):
            raise ValueError(
                "`allowed_regions` must be a mapping {name: region}, 'model' or None, "
                f"got {type(allowed_regions).__name__}."
            )
        for name, flag in (("density_within_regions", density_within_regions), ("include_frozen", include_frozen),
                           ("log_per_layer", log_per_layer), ("summary", summary), ("verify_ddp", verify_ddp)):
            check_bool(name, flag)
        check_choice("init_mask", init_mask, INIT_MASKS)
        check_choice("granularity", granularity, GRANULARITIES)
        if init_mask == "leftmost" and granularity != "element":
            raise ValueError(
                "`init_mask='leftmost'` orders the taps inside kernels and needs `granularity='element'`, "
                f"got {granularity!r}."
            )
        check_choice("weight_init", weight_init, WEIGHT_INITS)
        check_number("erk_power_scale", erk_power_scale, 0.0)
        check_int("seed", seed)
        self.sparsity = float(sparsity)
        self.distribution = distribution if isinstance(distribution, str) else dict(distribution)
        self.include = check_patterns("include", include)
        self.exclude = check_patterns("exclude", exclude)
        self.include_frozen = include_frozen
        self.granularity = granularity
        self.allowed_regions = dict(allowed_regions) if isinstance(allowed_regions, Mapping) else allowed_regions
        self.density_within_regions = density_within_regions
        self.init_mask = init_mask
        self.erk_power_scale = float(erk_power_scale)
        self.seed = int(seed)
        self.weight_init = weight_init
        self.log_per_layer = log_per_layer
        self.summary = summary
        self.verify_ddp = verify_ddp

        self._targets: dict[str, SparseTarget] = {}
        self._params: dict[str, Tensor] = {}
        self._bases: dict[str, int] = {}
        self._target_densities: dict[str, float] = {}
        self._initial_densities: dict[str, float] = {}
        self._final_counts: dict[str, int] = {}
        self._maskset: MaskSet | None = None
        self._generator = torch.Generator().manual_seed(self.seed)
        self._loaded: dict[str, Any] | None = None
        self._hooks: list[Any] = []
        self._opt_names: dict[int, list[str]] = {}
        self._held: set[str] = set()
        self._automatic = True
        self._num_updates = 0
        self._skipped_updates = 0
        self._last_update_step = -1
        self._updated_names: set[str] = set()
        self._due: tuple[int, bool] = (-1, False)
        self._step_log: dict[str, float] = {}
        self._pending_log: dict[str, float] = {}
        self._expect_post: set[int] = set()
        self._warned_outside = False
        self._scoring = False  # first masks pending: scored from data at `on_train_start`
        self._layer_counts: dict[str, int] = {}

    @property
    @override
    def state_key(self) -> str:
        """Unique per class and parameter selection, so several mask holders can coexist."""
        return self._generate_state_key(include=self.include, exclude=self.exclude)

    # ------------------------------------------------------------------ what subclasses decide
    def start_sparsity(self) -> float:
        """Sparsity of the first masks (the target by default; gradual methods start denser)."""
        return self.sparsity

    def configure_schedule(self, trainer: Trainer, total_steps: float) -> str:
        """Resolve schedules once training's length is known; returns a phrase for the start-up
        message (``"static masks"``, ``"updates every 25 steps in (0, 300)"``)."""
        return "static masks (no topology update)"

    def should_update(self, step: int) -> bool:
        """Whether the masks change at training step ``step`` (after ``configure_schedule``)."""
        return False

    def compute_masks(self, step: int, names: Sequence[str], masks: dict[str, Tensor]) -> dict[str, Tensor]:
        """New unit masks for ``names`` at an update (gradients are complete); ``masks`` holds
        the current ones, and the returned mapping may share tensors that do not change."""
        return masks

    def observe_gradients(self, grads: Mapping[str, Tensor | None]) -> None:
        """Called at every optimizer step with the complete gradients of its free parameters."""

    def update_log(self, step: int) -> dict[str, float]:
        """Extra ``sparsity/*`` values logged at an update."""
        return {}

    def summary_targets(self) -> tuple[dict[str, float | None], float | None, str]:
        """Per-layer target densities, the total's target (``None``: weighted mean) and a title."""
        return self.target_densities, None, f"Sparsity after training ({type(self).__name__})"

    def extra_state(self) -> dict[str, Any]:
        """A subclass's own checkpoint entries."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`extra_state` (parameters and masks are in place already)."""

    @property
    def dense_gradients_every_step(self) -> bool:
        """Whether the dense gradient is read at every step (then nothing can be held sparse)."""
        return False

    # ------------------------------------------------------------------ setup
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        targets = find_targets(pl_module, self.include, self.exclude, self.granularity, self._regions(pl_module),
                               include_frozen=self.include_frozen)
        self._targets = {t.name: t for t in targets}
        self._refuse_shared_claims(trainer)
        frozen = [n for n, p in pl_module.named_parameters() if not p.requires_grad]
        if frozen and not self.include_frozen:
            rank_zero_info(f"{type(self).__name__}: {len(frozen)} frozen parameter(s) stay dense "
                           "(requires_grad=False; `include_frozen=True` sparsifies them too).")
        self._bases = {n: t.capacity if self.density_within_regions else t.num_units for n, t in self._targets.items()}
        params = dict(pl_module.named_parameters())
        self._params = {n: params[n] for n in self._targets}
        self._automatic = pl_module.automatic_optimization
        self.check_first_masks(pl_module)
        self._target_densities = self._densities(self.sparsity)
        initial = self.start_sparsity()
        self._initial_densities = self._target_densities if initial == self.sparsity else self._densities(initial)
        self._final_counts = self.counts(self._target_densities)
        if self._maskset is not None and not self._masks_fit():  # a new model: draw new masks
            self._maskset, self._layer_counts = None, {}
        if self._layer_counts:  # counts scored from data in an earlier fit of these masks
            self._use_counts(self._layer_counts)

    # ------------------------------------------------------------------ fit start
    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        when = self.configure_schedule(trainer, self.total_training_steps(trainer))
        self._due = (-1, False)  # decisions cached before the schedule existed are void
        if self._loaded is not None:
            self._restore(self._loaded)
            self._loaded = None
        elif self._maskset is None:
            self._fresh_masks(pl_module)  # drawn, from a ticket, or dense until scored at train start
        self._maskset.apply(self._params, self._free(self._params))
        self._register_hooks(trainer)
        regions = f", {self.region_density:.4f} inside the allowed regions" if self._has_regions() else ""
        target = sum(self._final_counts[n] * t.unit_size for n, t in self._targets.items())
        target /= sum(t.numel for t in self._targets.values())
        rank_zero_info(
            f"{self._label()}: {len(self._targets)} sparse parameters, density {self.global_density:.4f} "
            f"(target {target:.4f}){regions}, {when}."
        )

    def _label(self) -> str:
        return type(self).__name__

    def _has_regions(self) -> bool:
        return any(t.allowed is not None for t in self._targets.values())

    def _register_hooks(self, trainer: Trainer) -> None:
        """Re-apply the masks right after every optimizer step that really happened (a step the
        grad scaler skips calls no post-hook)."""
        self._hook_optimizers(trainer, self._after_step)

    def _hook_optimizers(self, trainer: Trainer, after_step: Any) -> None:
        """Map every optimizer to its sparse parameters (``_opt_names``) and register
        ``after_step(optimizer, names)`` as its step post-hook."""
        self._remove_hooks()
        self._opt_names = {}
        owned: set[str] = set()
        for opt in trainer.optimizers:
            ids = {id(p) for g in opt.param_groups for p in g["params"]}
            names = [n for n, p in self._params.items() if id(p) in ids]
            owned.update(names)
            self._opt_names[id(opt)] = names
            if names:
                self._hooks.append(opt.register_step_post_hook(lambda o, *_, names=names: after_step(o, names)))
        missing = sorted(set(self._params) - owned)
        if missing:
            rank_zero_warn(f"{self._label()}: sparse parameters in no optimizer stay fixed: {missing[:5]}.")

    def _after_step(self, optimizer: Any, names: list[str]) -> None:
        # after a step on masked gradients the inactive weights are finite (zero for torch's
        # optimizers): the cheaper multiply re-masks small layers
        masked_step = id(optimizer) in self._expect_post
        self._maskset.apply(self._params, self._free(names), multiply=masked_step)
        if masked_step:
            self._expect_post.discard(id(optimizer))
        elif not self._warned_outside:
            self._warned_outside = True
            rank_zero_warn(
                f"{self._label()}: an optimizer stepped without Lightning's hooks (a raw `torch.optim` optimizer "
                "instead of `self.optimizers()` under manual optimization): masks are re-applied, but its "
                "gradients are not masked and its parameters get no topology update."
            )

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    # ------------------------------------------------------------------ every optimizer step
    @override
    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        if self._maskset is None:
            return
        names = self._opt_names.get(id(optimizer))
        if names is None:  # an optimizer created after fit start
            self._register_hooks(trainer)
            names = self._opt_names.get(id(optimizer), [])
        self._expect_post.add(id(optimizer))
        due = False
        if self.changes_topology():  # static masks: no schedule lookups on every step
            step = self.training_step_index(trainer)
            due = self._is_due(step)
        if due and self._held.intersection(names):
            raise RuntimeError(
                f"{self._label()}: a topology update is due at step {step}, but "
                f"{sorted(self._held.intersection(names))[:5]} are still held; release them first."
            )
        names = self._free(names)
        if not names:
            return
        grads = {n: self._params[n].grad for n in names}
        self.observe_gradients(grads)
        if due:
            if step != self._last_update_step:
                self._last_update_step, self._updated_names, self._step_log = step, set(), {}
            todo = [n for n in names if n not in self._updated_names]
            self._updated_names.update(todo)
            if todo and all(bool(torch.isfinite(grads[n]).all()) for n in todo if grads[n] is not None):
                self._update(trainer, step, optimizer, todo)
            elif todo and "skipped" not in self._step_log:
                self._step_log["skipped"] = 1.0
                self._skipped_updates += 1
                self._pending_log["sparsity/skipped_updates"] = float(self._skipped_updates)
        # inactive weights get no update (nor optimizer state); masked_fill_ zeroes even a
        # non-finite gradient (the contract of the grad scaler's skipped steps)
        self._maskset.apply(grads, names)

    @torch.no_grad()
    def _update(self, trainer: Trainer, step: int, optimizer: Any, names: list[str]) -> None:
        ms = self._maskset
        old = {n: ms[n] for n in names}
        new = self.compute_masks(step, names, dict(old))
        churn = 0
        for n in names:
            changed = old[n] ^ new[n]
            n_changed = int(changed.sum())
            if n_changed == 0:
                continue
            churn += n_changed
            full_changed = self._targets[n].expand(changed)
            self._params[n].masked_fill_(full_changed, 0.0)  # pruned -> 0, grown -> 0 (their init value)
            reset_optimizer_state(optimizer, self._params[n], full_changed)
            ms.set(n, new[n])
        log = self._step_log
        if "updated" not in log:
            log["updated"] = 1.0
            self._num_updates += 1
        log["churn"] = log.get("churn", 0.0) + churn
        log["active"] = log.get("active", 0.0) + sum(int(m.sum()) for m in old.values())
        if self.verify_ddp and trainer.world_size > 1:
            self._verify_ranks(trainer)
        out = {
            "sparsity/density": ms.global_density(),
            **self.update_log(step),
            "sparsity/churn": log["churn"] / 2 / max(log["active"], 1.0),
            "sparsity/exploration_rate": ms.exploration_rate(),
            "sparsity/updates": float(self._num_updates),
        }
        if self._has_regions():
            out["sparsity/region_density"] = self.region_density
        if self.log_per_layer:
            out.update({f"sparsity/layer/{n}": d for n, d in ms.densities().items()})
        self._pending_log.update(out)

    def _verify_ranks(self, trainer: Trainer, masks: Mapping[str, Tensor] | None = None,
                      what: str = "masks differ between DDP ranks after a topology update") -> None:
        """Compare a checksum of ``masks`` (default: the current masks) across the DDP ranks."""
        local = (self._maskset.checksum() if masks is None else mask_checksum(masks)).to(trainer.strategy.root_device)
        gathered = trainer.strategy.all_gather(local).reshape(trainer.world_size, -1)
        if not torch.equal(gathered, gathered[:1].expand_as(gathered)):
            raise RuntimeError(
                f"{self._label()}: {what} (checksums {gathered.tolist()}); make the model deterministic across ranks."
            )

    # ------------------------------------------------------------------ logging and summary
    @override
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._pending_log:
            pl_module.log_dict(self._pending_log, on_step=True, on_epoch=False)
            self._pending_log = {}

    @override
    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.log("sparsity/global_density", self.global_density, on_step=False, on_epoch=True)

    @override
    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not (self.summary and trainer.is_global_zero and self._maskset is not None):
            return
        targets, total_target, title = self.summary_targets()
        rows = [
            SummaryRow(n, t.shape, t.numel, targets.get(n), self._maskset.active(n) * t.unit_size,
                       int(torch.count_nonzero(self._params[n].detach())) if self._params[n].numel() else 0)
            for n, t in self._targets.items()
        ]
        render_sparsity_table(rows, title=title, total_target=total_target)

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._remove_hooks()
