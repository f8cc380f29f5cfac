"""Dynamic Sparse Training as a Lightning callback: static, SET, RigL, MEST and GraNet.

Methods (each a choice of prune score, grow score and schedules from ``lightning_sparse.core``):

- ``static``: a random sparse network at the chosen layer-wise distribution, never changed
  (the "random pruning" baseline; Liu et al. 2022, arXiv:2202.02643).
- ``set``: SET, Mocanu et al. 2018, "Scalable training of artificial neural networks with adaptive
  sparse connectivity inspired by network science", arXiv:1707.04780. Drop the smallest positive
  and largest negative weights (30%), regrow at random; updates until the end of training.
- ``rigl``: RigL, Evci et al. 2020, "Rigging the Lottery: Making All Tickets Winners",
  arXiv:1911.11134. Drop by magnitude, grow by the dense gradient's magnitude; drop fraction 0.3
  cosine-decayed to 0; updates stop at 75% of training.
- ``mest``: MEST, Yuan et al. 2021, "MEST: Accurate and Fast Memory-Economic Sparse Training
  Framework on the Edge", arXiv:2110.14032. Drop by ``|w| + lambda |g|``, regrow at random.
- ``granet``: GraNet, Liu et al. 2021, "Sparse Training via Boosting Pruning Plasticity with
  Neuroregeneration", arXiv:2106.10404. Gradual (cubic) global magnitude pruning from
  ``initial_sparsity`` to ``sparsity`` until ``prune_end_step``; at every update it also drops a
  (cosine-decayed, 0.5) fraction by magnitude and regrows as many by gradient.

The contract (``docs/dst.md``): parameters hold exact zeros outside their masks after every
optimizer step; counts are exact; grown weights start at zero; every parameter-shaped optimizer
state is reset at changed positions; updates are counted in optimizer steps
(``trainer.global_step``), so gradient accumulation does not move them; an update is skipped when
the step's gradients are not finite (mixed precision); masks are identical on every DDP rank
(seeded generator, all-reduced gradients, checksum); the callback's ``state_dict`` makes resuming
exact.

Constrained regions (DSN, Xiao et al. 2022, "Dynamic Sparse Network for Time Series
Classification: Learning What to 'See'", NeurIPS 2022, arXiv:2212.09840): ``allowed_regions``
limits where each parameter may ever be active, from a mapping or from the LightningModule's own
``allowed_regions()`` (``allowed_regions="model"``); integer group labels give every group its own
exact count, kept through every prune-and-grow; ``density_within_regions=True`` measures the
sparsity inside the regions, ``init_mask="leftmost"`` fills the first kernel taps first and
``update_interval_epochs`` counts the update interval in epochs. DSN's schedule is
``method="rigl", grow="random", drop_fraction=0.5, stop_step=0.8`` (see ``docs/dsn.md``).

Truly sparse execution (``TrulySparse``, Nerva) holds some parameters outside this callback for a
while: :meth:`DynamicSparseTraining.hold` hands parameters over, :meth:`~DynamicSparseTraining.release`
takes them back, and :meth:`~DynamicSparseTraining.will_update` says in advance which optimizer
steps bring a topology update, so the holder can give them back for that step.
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

from lightning_sparse.core import (
    DISTRIBUTIONS,
    GRANULARITIES,
    GROW_CRITERIA,
    INIT_MASKS,
    SCHEDULES,
    WEIGHT_INITS,
    MaskSet,
    Schedule,
    SparseTarget,
    density_counts,
    drop_lowest,
    find_targets,
    global_keep_counts,
    gradient_score,
    group_counts,
    layer_densities,
    leftmost_score,
    magnitude_score,
    mapped_densities,
    mest_score,
    prune_and_grow,
    prune_and_grow_groups,
    random_score,
    reset_optimizer_state,
    select_topk,
    select_topk_groups,
    set_prune_score,
    sparse_init_,
)
from lightning_sparse.callbacks._summary import render_sparsity_table

METHODS = ("static", "set", "rigl", "mest", "granet")
PRUNE_SCOPES = ("layer", "global")
REGION_SOURCES = ("model",)

# prune score, grow score, drop fraction, drop schedule, stop (fraction of training)
_DEFAULTS: dict[str, tuple[str | None, str | None, float, str, float]] = {
    "static": (None, None, 0.0, "constant", 0.0),
    "set": ("set", "random", 0.3, "constant", 1.0),
    "rigl": ("magnitude", "gradient", 0.3, "cosine", 0.75),
    "mest": ("mest", "random", 0.3, "cosine", 0.75),
    "granet": ("magnitude", "gradient", 0.5, "cosine", 0.75),
}


class DynamicSparseTraining(Callback):
    """Train any LightningModule with a sparse, evolving topology.

    Args:
        method: ``"static"``, ``"set"``, ``"rigl"``, ``"mest"`` or ``"granet"``.
        sparsity: target share of zeros over the sparsified parameters, in ``[0, 1)``.
        distribution: ``"uniform"``, ``"er"``, ``"erk"``, or a mapping ``{name or glob: sparsity}``.
        update_interval: optimizer steps between topology updates (>= 1).
        update_interval_epochs: if given, replaces ``update_interval`` by this many epochs of
            optimizer steps, ``update_interval_epochs * ceil(num_training_batches /
            accumulate_grad_batches)``, resolved when training starts (DSN: 5).
        drop_fraction: share of each layer's active weights replaced per update (method default).
        drop_schedule: decay of the drop fraction: ``"constant"``, ``"linear"``, ``"cosine"`` or
            ``"cubic"`` (method default).
        start_step: first optimizer step at which updates may happen.
        stop_step: last step for updates: an int (optimizer steps) or a float in ``(0, 1]`` (share
            of ``trainer.estimated_stepping_batches``); method default.
        grow: override the grow score: ``"random"``, ``"gradient"`` or ``"momentum"``.
        include: globs of parameter names to sparsify (default: Linear and ConvNd weights).
        exclude: globs of parameter names to keep dense.
        granularity: ``"element"`` or ``"kernel"`` (one bit per conv kernel).
        allowed_regions: name -> region of positions that may ever be active, a bool tensor or an
            integer tensor of group labels (``0`` forbidden, ``g >= 1`` group ``g``; every group
            keeps its own exact count, see :mod:`lightning_sparse.core.targets`); or ``"model"``:
            call the LightningModule's ``allowed_regions()`` at every ``setup``.
        density_within_regions: measure ``sparsity`` (and a ``distribution`` mapping) inside the
            allowed regions: ``sparsity=0.8`` keeps 20% of each region's positions active (DSN's
            definition) instead of 20% of the parameter. Layers without a region are unaffected.
        init_mask: which units the initial masks take: ``"random"`` or ``"leftmost"`` (the first
            taps of each kernel first, ties at random: DSN's ``remain_sort``; element granularity).
        initial_sparsity: GraNet's starting sparsity (default 0.5 if ``sparsity > 0.5`` else 0).
        prune_end_step: GraNet's end of gradual pruning (int steps or float share; default 0.5).
        prune_scope: GraNet's gradual pruning, ``"global"`` (default, as the paper) or ``"layer"``.
        mest_lambda: MEST's gradient weight ``lambda``.
        momentum_beta: decay of the gradient moving average used by ``grow="momentum"``.
        erk_power_scale: exponent on the ER/ERK scale (RigL's ``erk_power_scale``).
        seed: seed of the callback's own generator (masks, random growth, ties, ``weight_init``).
        weight_init: what happens to the weights when the initial masks are drawn (never on
            resume): ``"keep"`` (default) only zeros the pruned positions; ``"rescale"``
            multiplies each output unit's non-zeros by ``sqrt(fan_in / k)``, ``k`` being its
            number of non-zeros, which restores the dense init's variance; ``"he"`` and
            ``"xavier"`` draw the non-zeros afresh with that actual fan-in (see
            :func:`~lightning_sparse.core.init.sparse_init_`, Evci et al. 2022, arXiv:2010.03533).
        log_per_layer: also log ``sparsity/layer/<name>`` at each update.
        summary: show a per-layer sparsity table at the end of training (rank zero).
        verify_ddp: compare a mask checksum across ranks after every update.

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
        include: list[str] | None = None,
        exclude: list[str] | None = None,
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
    ) -> None:
        super().__init__()
        _choice("method", method, METHODS)
        if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0.0 <= sparsity < 1.0:
            raise ValueError(f"`sparsity` must be a number in [0, 1), got {sparsity!r}.")
        if isinstance(distribution, str):
            _choice("distribution", distribution, DISTRIBUTIONS, extra=" or a mapping {name or glob: sparsity}")
        elif not isinstance(distribution, Mapping) or not distribution:
            raise ValueError(
                f"`distribution` must be one of {DISTRIBUTIONS} or a non-empty mapping, got {distribution!r}."
            )
        if isinstance(update_interval, bool) or not isinstance(update_interval, int) or update_interval < 1:
            raise ValueError(f"`update_interval` must be an integer >= 1, got {update_interval!r}.")
        epochs = update_interval_epochs
        if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
            raise ValueError(f"`update_interval_epochs` must be an integer >= 1 or None, got {epochs!r}.")
        if isinstance(allowed_regions, str):
            _choice("allowed_regions", allowed_regions, REGION_SOURCES, extra=", a mapping {name: region} or None")
        elif allowed_regions is not None and not isinstance(allowed_regions, Mapping):
            raise ValueError(
                "`allowed_regions` must be a mapping {name: region}, 'model' or None, "
                f"got {type(allowed_regions).__name__}."
            )
        if not isinstance(density_within_regions, bool):
            raise ValueError(f"`density_within_regions` must be True or False, got {density_within_regions!r}.")
        _choice("init_mask", init_mask, INIT_MASKS)
        if init_mask == "leftmost" and granularity != "element":
            raise ValueError(
                "`init_mask='leftmost'` orders the taps inside kernels and needs `granularity='element'`, "
                f"got {granularity!r}."
            )
        prune, grow_default, drop_default, schedule_default, stop_default = _DEFAULTS[method]
        if drop_fraction is not None and not 0.0 <= drop_fraction <= 1.0:
            raise ValueError(f"`drop_fraction` must be in [0, 1], got {drop_fraction!r}.")
        if drop_schedule is not None:
            _choice("drop_schedule", drop_schedule, SCHEDULES)
        if grow is not None:
            _choice("grow", grow, GROW_CRITERIA)
        _choice("granularity", granularity, GRANULARITIES)
        _choice("prune_scope", prune_scope, PRUNE_SCOPES)
        _choice("weight_init", weight_init, WEIGHT_INITS)
        if not isinstance(start_step, int) or start_step < 0:
            raise ValueError(f"`start_step` must be an integer >= 0, got {start_step!r}.")
        _check_step("stop_step", stop_step)
        _check_step("prune_end_step", prune_end_step)
        if initial_sparsity is None:
            initial_sparsity = 0.5 if method == "granet" and sparsity > 0.5 else (0.0 if method == "granet" else sparsity)
        if not 0.0 <= initial_sparsity <= sparsity:
            raise ValueError(f"`initial_sparsity` must be in [0, sparsity={sparsity}], got {initial_sparsity!r}.")
        if mest_lambda < 0:
            raise ValueError(f"`mest_lambda` must be >= 0, got {mest_lambda!r}.")
        if not 0.0 <= momentum_beta < 1.0:
            raise ValueError(f"`momentum_beta` must be in [0, 1), got {momentum_beta!r}.")

        self.method = method
        self.sparsity = float(sparsity)
        self.distribution = distribution if isinstance(distribution, str) else dict(distribution)
        self.update_interval = update_interval
        self.update_interval_epochs = update_interval_epochs
        self.prune_criterion = prune
        self.grow_criterion = grow or grow_default
        self.drop_fraction = float(drop_default if drop_fraction is None else drop_fraction)
        self.drop_schedule = drop_schedule or schedule_default
        self.start_step = start_step
        self.stop_step = stop_default if stop_step is None else stop_step
        self.include = list(include) if include is not None else None
        self.exclude = list(exclude) if exclude is not None else None
        self.granularity = granularity
        self.allowed_regions = dict(allowed_regions) if isinstance(allowed_regions, Mapping) else allowed_regions
        self.density_within_regions = density_within_regions
        self.init_mask = init_mask
        self.initial_sparsity = float(initial_sparsity)
        self.prune_end_step = 0.5 if prune_end_step is None else prune_end_step
        self.prune_scope = prune_scope
        self.mest_lambda = float(mest_lambda)
        self.momentum_beta = float(momentum_beta)
        self.erk_power_scale = float(erk_power_scale)
        self.seed = int(seed)
        self.log_per_layer = log_per_layer
        self.summary = summary
        self.verify_ddp = verify_ddp
        self.weight_init = weight_init

        self._targets: dict[str, SparseTarget] = {}
        self._params: dict[str, Tensor] = {}
        self._final_counts: dict[str, int] = {}
        self._target_densities: dict[str, float] = {}
        self._initial_densities: dict[str, float] = {}
        self._maskset: MaskSet | None = None
        self._momentum: dict[str, Tensor] = {}
        self._generator = torch.Generator().manual_seed(self.seed)
        self._last_update_step = -1
        self._num_updates = 0
        self._skipped_updates = 0
        self._loaded: dict[str, Any] | None = None
        self._hooks: list[Any] = []
        self._opt_names: dict[int, list[str]] = {}
        self._pending_log: dict[str, float] = {}
        self._drop: Schedule | None = None
        self._prune: Schedule | None = None
        self._interval = update_interval  # in optimizer steps, resolved in `on_fit_start`
        self._bases: dict[str, int] = {}
        self._held: set[str] = set()

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(include=self.include, exclude=self.exclude)

    # ------------------------------------------------------------------ public views
    @property
    def masks(self) -> dict[str, Tensor]:
        """Qualified parameter name -> bool mask of the parameter's shape."""
        ms = self._maskset
        return {} if ms is None else {n: ms.full(n) for n in ms}

    @property
    def densities(self) -> dict[str, float]:
        """Realised density per sparsified parameter."""
        return {} if self._maskset is None else self._maskset.densities()

    @property
    def target_densities(self) -> dict[str, float]:
        """Density per parameter that the distribution asks for at the target sparsity (as a share
        of the whole parameter, also with ``density_within_regions``)."""
        return self._absolute(self._target_densities)

    @property
    def region_density(self) -> float:
        """Share of active positions over the allowed regions of all sparsified parameters (a
        parameter without a region counts whole); logged as ``sparsity/region_density``."""
        if self._maskset is None:
            return float("nan")
        active = sum(self._maskset.active(n) * t.unit_size for n, t in self._targets.items())
        return active / sum(t.capacity * t.unit_size for t in self._targets.values())

    @property
    def region_densities(self) -> dict[str, float]:
        """Realised density per parameter inside its allowed region (the whole parameter if none)."""
        ms = self._maskset
        return {} if ms is None else {n: ms.active(n) / t.capacity for n, t in self._targets.items()}

    @property
    def global_density(self) -> float:
        """Share of nonzero positions over all sparsified parameters (in elements)."""
        return float("nan") if self._maskset is None else self._maskset.global_density()

    @property
    def exploration_rate(self) -> float:
        """In-time over-parameterisation rate: share of positions ever active (Liu et al. 2021)."""
        return float("nan") if self._maskset is None else self._maskset.exploration_rate()

    # ------------------------------------------------------------------ setup
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        targets = find_targets(pl_module, self.include, self.exclude, self.granularity, self._regions(pl_module))
        self._targets = {t.name: t for t in targets}
        self._bases = {n: t.capacity if self.density_within_regions else t.num_units for n, t in self._targets.items()}
        params = dict(pl_module.named_parameters())
        self._params = {n: params[n] for n in self._targets}
        self._target_densities = self._densities(self.sparsity)
        self._initial_densities = (
            self._densities(self.initial_sparsity) if self.method == "granet" else self._target_densities
        )
        self._final_counts = self._counts(self._target_densities)
        if self._maskset is not None and not self._masks_fit():  # a new model: draw new masks
            self._maskset, self._momentum = None, {}

    def _masks_fit(self) -> bool:
        """Whether the masks of an earlier `fit` belong to the current targets (names, shapes, regions)."""
        ms = self._maskset
        if set(ms.targets) != set(self._targets):
            return False
        for n, t in self._targets.items():
            if ms.targets[n].unit_shape != t.unit_shape:
                return False
            if t.allowed is not None and bool((ms[n] & ~t.allowed.to(ms[n].device)).any()):
                return False
        return True

    def _regions(self, pl_module: LightningModule) -> Mapping[str, Tensor] | None:
        if not isinstance(self.allowed_regions, str):
            return self.allowed_regions
        regions = getattr(pl_module, "allowed_regions", None)
        if not callable(regions):
            raise ValueError(
                f"`allowed_regions='model'` calls the LightningModule's `allowed_regions()`, but "
                f"{type(pl_module).__name__} defines none; define it or pass a mapping {{name: region}}."
            )
        regions = regions()
        if not isinstance(regions, Mapping):
            raise ValueError(
                f"`allowed_regions='model'`: {type(pl_module).__name__}.allowed_regions() must return a mapping "
                f"{{name: region}}, got {type(regions).__name__}."
            )
        return regions

    def _densities(self, sparsity: float) -> dict[str, float]:
        """Density per parameter, as a share of its base: its allowed region with
        ``density_within_regions``, else the whole parameter (capped at the region's share)."""
        shapes = {n: t.shape for n, t in self._targets.items()}
        if self.density_within_regions:
            caps = None
            sizes = {n: self._bases[n] * t.unit_size for n, t in self._targets.items()}
        else:
            caps = {n: t.capacity / t.num_units for n, t in self._targets.items()}
            sizes = None
        if isinstance(self.distribution, dict):
            dens = mapped_densities(list(shapes), self.distribution)
            return dens if caps is None else {n: min(d, caps[n]) for n, d in dens.items()}
        return layer_densities(shapes, 1.0 - sparsity, self.distribution, caps, self.erk_power_scale, sizes)

    def _counts(self, densities: Mapping[str, float]) -> dict[str, int]:
        """Exact active units per parameter for densities relative to the bases."""
        t = self._targets
        return density_counts(densities, self._bases, {n: t[n].unit_size for n in t}, {n: t[n].capacity for n in t})

    def _absolute(self, densities: Mapping[str, float]) -> dict[str, float]:
        return {n: d * self._bases[n] / self._targets[n].num_units for n, d in densities.items()}

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        total = trainer.estimated_stepping_batches
        self._interval = self._resolve_interval(trainer)
        stop = max(self._resolve_step("stop_step", self.stop_step, total), self.start_step)
        final_drop = self.drop_fraction if self.drop_schedule == "constant" else 0.0
        self._drop = Schedule(self.drop_schedule, self.drop_fraction, final_drop, self.start_step, stop, self._interval)
        if self.method == "granet":
            end = max(self._resolve_step("prune_end_step", self.prune_end_step, total), self.start_step)
            self._prune = Schedule("cubic", self.initial_sparsity, self.sparsity, self.start_step, end, self._interval)
        if self._loaded is not None:
            self._restore(self._loaded)
            self._loaded = None
        elif self._maskset is None:
            self._maskset = self._initial_masks(self._counts(self._initial_densities))
            if self.weight_init != "keep":
                for n, p in self._params.items():
                    sparse_init_(p, self._maskset.full(n), self.weight_init, self._generator)
        self._maskset.apply(self._params, self._free(self._params))
        self._register_hooks(trainer)
        rank_zero_info(
            f"DynamicSparseTraining[{self.method}]: {len(self._targets)} sparse parameters, "
            f"density {self.global_density:.4f} (target {self._target_global_density():.4f})"
            + (f", {self.region_density:.4f} inside the allowed regions" if self._has_regions() else "")
            + f", updates every {self._interval} steps in ({self.start_step}, {stop})."
        )

    def _has_regions(self) -> bool:
        return any(t.allowed is not None for t in self._targets.values())

    def _target_global_density(self) -> float:
        counts = self._final_counts
        return sum(counts[n] * t.unit_size for n, t in self._targets.items()) / sum(t.numel for t in self._targets.values())

    def _resolve_interval(self, trainer: Trainer) -> int:
        if self.update_interval_epochs is None:
            return self.update_interval
        batches = trainer.num_training_batches
        if not math.isfinite(batches):
            raise ValueError(
                f"`update_interval_epochs`={self.update_interval_epochs} needs the length of an epoch, but the "
                "training dataloader has no length; give `update_interval` in optimizer steps instead."
            )
        steps_per_epoch = max(math.ceil(batches / trainer.accumulate_grad_batches), 1)
        return self.update_interval_epochs * steps_per_epoch

    @staticmethod
    def _resolve_step(name: str, value: int | float, total: float) -> int:
        if isinstance(value, float):
            if not math.isfinite(total):
                raise ValueError(
                    f"`{name}`={value} is a share of training, but the Trainer's length is unknown; "
                    "set `max_steps`/`max_epochs` or give an integer step."
                )
            return int(value * total)
        return int(value)

    def _initial_masks(self, counts: Mapping[str, int]) -> MaskSet:
        """``counts[name]`` units per parameter, shared among its groups by their sizes."""
        masks = {}
        for name, t in self._targets.items():
            if self.init_mask == "leftmost":
                score = leftmost_score(t.unit_shape)
            else:
                score = random_score(t.unit_shape, self._generator)
            if t.groups is None:
                mask = select_topk(score, counts[name], self._generator, candidates=t.allowed)
            else:
                shares = group_counts(counts[name], t.group_capacities)
                mask = select_topk_groups(score, shares, self._generator, t.groups)
            masks[name] = mask.to(self._params[name].device)
        return MaskSet(self._targets.values(), masks)

    def _register_hooks(self, trainer: Trainer) -> None:
        """Re-apply the masks right after every optimizer step that really happened (a step the
        grad scaler skips calls no post-hook)."""
        self._remove_hooks()
        self._opt_names = {}
        owned: set[str] = set()
        for opt in trainer.optimizers:
            ids = {id(p) for g in opt.param_groups for p in g["params"]}
            names = [n for n, p in self._params.items() if id(p) in ids]
            owned.update(names)
            self._opt_names[id(opt)] = names
            if names:
                hook = opt.register_step_post_hook(
                    lambda o, *_, names=names: self._maskset.apply(self._params, self._free(names))
                )
                self._hooks.append(hook)
        missing = sorted(set(self._params) - owned)
        if missing:
            rank_zero_warn(f"DynamicSparseTraining: sparse parameters in no optimizer stay fixed: {missing[:5]}.")

    def _remove_hooks(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    # ------------------------------------------------------------------ every optimizer step
    @override
    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer: Any) -> None:
        names = self._opt_names.get(id(optimizer))
        if names is None:  # an optimizer created after fit start
            self._register_hooks(trainer)
            names = self._opt_names.get(id(optimizer), [])
        step = trainer.global_step
        if self._held.intersection(names) and self._is_update_step(step):
            raise RuntimeError(
                f"DynamicSparseTraining: a topology update is due at step {step}, but "
                f"{sorted(self._held.intersection(names))[:5]} are still held; release them first."
            )
        names = self._free(names)
        if not names:
            return
        grads = {n: self._params[n].grad for n in names}
        if self.grow_criterion == "momentum":
            self._update_momentum(grads)
        if self._is_update_step(step):
            self._last_update_step = step
            if all(bool(torch.isfinite(g).all()) for g in grads.values() if g is not None):
                self._update_topology(trainer, step, optimizer, names)
            else:
                self._skipped_updates += 1
                self._pending_log = {"sparsity/skipped_updates": float(self._skipped_updates)}
        self._maskset.apply(grads)  # inactive weights get no update (nor optimizer state)

    def _is_update_step(self, step: int) -> bool:
        if self.method == "static" or step == self._last_update_step:
            return False
        return self._drop.is_update_step(step) or self._prune_due(step)

    # ------------------------------------------------------------------ held parameters
    def will_update(self, step: int) -> bool:
        """Whether a topology update is due at optimizer step ``step`` (``trainer.global_step``
        as seen during that step's accumulation window); ``False`` before ``on_fit_start``.

        The update itself may still be skipped (non-finite gradients).
        """
        return self._drop is not None and self._maskset is not None and self._is_update_step(step)

    @property
    def held(self) -> frozenset[str]:
        """Names of the sparse parameters currently held elsewhere (see :meth:`hold`)."""
        return frozenset(self._held)

    def hold(self, names: Sequence[str]) -> None:
        """Hand sparse parameters over to another component, e.g. truly sparse layers.

        Until :meth:`release`, this callback leaves them alone: no mask applied after the
        optimizer step, no gradient zeroed, no topology update; their masks stay as they are.
        The holder keeps their non-zeros exactly on those masks, trains them as the masked
        parameter would be trained, and releases them, with their values and optimizer state
        back in the original parameter objects, before the accumulation window of every step
        for which :meth:`will_update` is true (a RuntimeError is raised otherwise).

        Raises:
            ValueError: a name that is not a sparsified parameter of this callback.
        """
        unknown = sorted(set(names) - set(self._params))
        if unknown:
            raise ValueError(f"`names` must be sparsified parameters {sorted(self._params)[:5]}..., got {unknown[:5]}.")
        self._held.update(names)

    def release(self, names: Sequence[str]) -> None:
        """Take back parameters handed over with :meth:`hold` (unknown names are ignored)."""
        self._held.difference_update(names)

    def _free(self, names) -> list[str]:
        return [n for n in names if n not in self._held]

    @torch.no_grad()
    def _update_momentum(self, grads: Mapping[str, Tensor | None]) -> None:
        for n, grad in grads.items():
            if grad is None:
                continue
            buf = self._momentum.get(n)
            if buf is None:
                self._momentum[n] = grad.detach().float().clone()
            else:
                buf.mul_(self.momentum_beta).add_(grad.detach().float(), alpha=1 - self.momentum_beta)

    # ------------------------------------------------------------------ topology updates
    @torch.no_grad()
    def _update_topology(self, trainer: Trainer, step: int, optimizer: Any, names: Sequence[str]) -> None:
        ms = self._maskset
        old = {n: ms[n] for n in names}
        masks = self._gradual_prune(step, old) if self._prune_due(step) else dict(old)
        drop = self._drop(step) if self._drop.start < step < self._drop.stop else 0.0
        for n in names:
            groups = self._targets[n].groups
            if groups is not None:  # every group drops and regrows its own share
                labels = groups.to(masks[n].device)
                n_drops = {g: round(drop * int(masks[n][labels == g].sum())) for g in self._targets[n].group_capacities}
                if any(n_drops.values()):
                    masks[n] = prune_and_grow_groups(
                        masks[n], self._prune_score(n, masks[n]), self._grow_score(n), n_drops, self._generator, labels
                    )
                continue
            n_drop = round(drop * int(masks[n].sum()))
            if n_drop > 0:
                masks[n] = prune_and_grow(
                    masks[n], self._prune_score(n, masks[n]), self._grow_score(n), n_drop, self._generator,
                    self._targets[n].allowed,
                )
        churn = 0
        for n in names:
            changed = old[n] ^ masks[n]
            n_changed = int(changed.sum())
            if n_changed == 0:
                continue
            churn += n_changed
            full_changed = self._targets[n].expand(changed)
            self._params[n].masked_fill_(full_changed, 0.0)  # pruned -> 0, grown -> 0 (their init value)
            reset_optimizer_state(optimizer, self._params[n], full_changed)
            ms.set(n, masks[n])
        self._num_updates += 1
        if self.verify_ddp and trainer.world_size > 1:
            self._verify_ranks(trainer)
        log = {
            "sparsity/density": ms.global_density(),
            "sparsity/drop_fraction": drop,
            "sparsity/churn": churn / 2 / max(sum(int(m.sum()) for m in old.values()), 1),
            "sparsity/exploration_rate": ms.exploration_rate(),
            "sparsity/updates": float(self._num_updates),
        }
        if self._has_regions():
            log["sparsity/region_density"] = self.region_density
        if self.log_per_layer:
            log.update({f"sparsity/layer/{n}": d for n, d in ms.densities().items()})
        self._pending_log = log

    def _prune_due(self, step: int) -> bool:
        """GraNet prunes at every update-grid step until the final sparsity is reached, so a last
        prune after ``prune_end_step`` lands exactly on the target."""
        if self.method != "granet" or step <= self._prune.start or (step - self._prune.start) % self._interval:
            return False
        active = sum(self._maskset.active(n) for n in self._maskset)
        if self.prune_scope == "global":
            return active > round((1.0 - self.sparsity) * sum(self._bases.values()))
        return active > sum(self._final_counts.values())

    def _gradual_prune(self, step: int, masks: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """GraNet's cubic pruning towards the current target sparsity (never grows)."""
        s_t = self._prune(step)
        names = list(masks)
        scores = {n: self._prune_score(n, masks[n]) for n in names}
        if self.prune_scope == "global":
            total_units = sum(self._bases[n] for n in names)
            n_keep = min(round((1.0 - s_t) * total_units), sum(int(m.sum()) for m in masks.values()))
            keep = global_keep_counts(scores, masks, n_keep, self._generator)
        else:
            span = self.sparsity - self.initial_sparsity
            q = 1.0 if span <= 0 else (s_t - self.initial_sparsity) / span
            init, final = self._initial_densities, self._target_densities
            keep = self._counts({n: init[n] + q * (final[n] - init[n]) for n in names})
        out = {}
        for n in names:
            n_active = int(masks[n].sum())
            k = n_active - min(keep[n], n_active)
            out[n] = drop_lowest(masks[n], scores[n], k, self._generator) if k else masks[n]
        return out

    def _prune_score(self, name: str, mask: Tensor) -> Tensor:
        t, p = self._targets[name], self._params[name]
        if self.prune_criterion == "set":
            return set_prune_score(t.reduce(p), mask)
        if self.prune_criterion == "mest":
            return t.reduce(mest_score(p, p.grad, self.mest_lambda))
        return t.reduce(magnitude_score(p))

    def _grow_score(self, name: str) -> Tensor:
        t, p = self._targets[name], self._params[name]
        if self.grow_criterion == "gradient" and p.grad is not None:
            return t.reduce(gradient_score(p.grad))
        if self.grow_criterion == "momentum" and name in self._momentum:
            return t.reduce(self._momentum[name].abs())
        return random_score(t.unit_shape, self._generator, device=p.device)

    def _verify_ranks(self, trainer: Trainer) -> None:
        local = self._maskset.checksum().to(trainer.strategy.root_device)
        gathered = trainer.strategy.all_gather(local).reshape(trainer.world_size, -1)
        if not torch.equal(gathered, gathered[:1].expand_as(gathered)):
            raise RuntimeError(
                "DynamicSparseTraining: masks differ between DDP ranks after a topology update "
                f"(checksums {gathered.tolist()}); make the model deterministic across ranks."
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
        if self.summary and trainer.is_global_zero and self._maskset is not None:
            target = self.target_densities
            rows = [
                (n, t.shape, t.numel, target[n], self._maskset.active(n) * t.unit_size / t.numel)
                for n, t in self._targets.items()
            ]
            render_sparsity_table(rows, title=f"Sparsity after training ({self.method})")

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._remove_hooks()

    # ------------------------------------------------------------------ checkpointing
    @override
    def state_dict(self) -> dict[str, Any]:
        if self._maskset is None:
            return {}
        return {
            "version": 1,
            "method": self.method,
            **self._maskset.state_dict(),
            "momentum": {n: m.detach().cpu().clone() for n, m in self._momentum.items()},
            "generator": self._generator.get_state(),
            "last_update_step": self._last_update_step,
            "num_updates": self._num_updates,
            "skipped_updates": self._skipped_updates,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self._loaded = dict(state_dict)

    def _restore(self, state: dict[str, Any]) -> None:
        devices = {n: p.device for n, p in self._params.items()}
        self._maskset = MaskSet.from_state_dict(self._targets.values(), state, devices)
        self._momentum = {n: m.to(devices[n]) for n, m in state.get("momentum", {}).items()}
        self._generator.set_state(state["generator"])
        self._last_update_step = int(state.get("last_update_step", -1))
        self._num_updates = int(state.get("num_updates", 0))
        self._skipped_updates = int(state.get("skipped_updates", 0))


def _choice(name: str, value: Any, allowed: Sequence[str], extra: str = "") -> None:
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {tuple(allowed)}{extra}, got {value!r}.")


def _check_step(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` must be an int (optimizer steps) or a float in (0, 1], got {value!r}.")
    if isinstance(value, float) and not 0.0 < value <= 1.0:
        raise ValueError(f"`{name}` as a float is a share of training and must be in (0, 1], got {value!r}.")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"`{name}` must be >= 0, got {value!r}.")
