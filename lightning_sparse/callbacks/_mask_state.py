"""State of a mask-holding callback: its public read-only views, how its targets and densities
are resolved from the model, and its checkpoint state (a mixin of
:class:`~lightning_sparse.callbacks.SparseMaskCallback`, which owns the attributes)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from lightning.pytorch import Trainer
from torch import Tensor

from lightning_sparse._training import estimated_stepping_batches
from lightning_sparse.core import MaskSet, SparseTarget, density_counts, layer_densities, mapped_densities

__all__ = ["MaskState"]


class MaskState:
    """Views and target resolution shared by every mask-holding callback."""

    _targets: dict[str, SparseTarget]
    _bases: dict[str, int]
    _target_densities: dict[str, float]
    _final_counts: dict[str, int]
    _maskset: MaskSet | None
    _held: set[str]
    _num_updates: int
    _skipped_updates: int
    _automatic: bool
    _due: tuple[int, bool]
    _params: dict[str, Tensor]
    _generator: Any
    _loaded: dict[str, Any] | None
    _last_update_step: int
    _updated_names: set[str]
    _layer_counts: dict[str, int]
    allowed_regions: Any
    distribution: Any
    density_within_regions: bool
    erk_power_scale: float

    # ------------------------------------------------------------------ public views
    @property
    def sparse_names(self) -> frozenset[str]:
        """Qualified names of the sparsified parameters (resolved in ``setup``)."""
        return frozenset(self._targets)

    @property
    def targets(self) -> dict[str, SparseTarget]:
        """Name -> :class:`~lightning_sparse.core.targets.SparseTarget` of every sparsified parameter."""
        return dict(self._targets)

    @property
    def masks(self) -> dict[str, Tensor]:
        """Qualified parameter name -> bool mask of the parameter's shape."""
        ms = self._maskset
        return {} if ms is None else {n: ms.full(n) for n in ms}

    @property
    def ever_active(self) -> dict[str, Tensor]:
        """Name -> unit mask of the positions that were ever active."""
        return {} if self._maskset is None else {n: m.clone() for n, m in self._maskset.ever.items()}

    @property
    def active_counts(self) -> dict[str, int]:
        """Active mask units per parameter now."""
        ms = self._maskset
        return {} if ms is None else {n: ms.active(n) for n in ms}

    @property
    def target_counts(self) -> dict[str, int]:
        """Active mask units per parameter at the target sparsity."""
        return dict(self._final_counts)

    @property
    def densities(self) -> dict[str, float]:
        """Realised density per sparsified parameter."""
        return {} if self._maskset is None else self._maskset.densities()

    @property
    def target_densities(self) -> dict[str, float]:
        """Density per parameter at the target sparsity (a share of the whole parameter)."""
        return self.absolute_densities(self._target_densities)

    def absolute_densities(self, densities: Mapping[str, float]) -> dict[str, float]:
        """Densities relative to each parameter's base (its allowed region with
        ``density_within_regions``) as shares of the whole parameter."""
        return {n: d * self._bases[n] / self._targets[n].num_units for n, d in densities.items()}

    @property
    def region_density(self) -> float:
        """Share of active positions over the allowed regions of all parameters (whole parameters
        where there is no region); logged as ``sparsity/region_density``."""
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
        """Share of active positions over all sparsified parameters (in elements)."""
        return float("nan") if self._maskset is None else self._maskset.global_density()

    @property
    def exploration_rate(self) -> float:
        """In-time over-parameterisation rate: share of positions ever active (Liu et al. 2021)."""
        return float("nan") if self._maskset is None else self._maskset.exploration_rate()

    @property
    def num_updates(self) -> int:
        """Topology updates done so far (a training step with an update counts once)."""
        return self._num_updates

    @property
    def skipped_updates(self) -> int:
        """Updates skipped because the step's gradients were not finite."""
        return self._skipped_updates

    @property
    def held(self) -> frozenset[str]:
        """Names of the sparse parameters currently held elsewhere (see :meth:`hold`)."""
        return frozenset(self._held)

    # ------------------------------------------------------------------ resolving targets
    def _refuse_shared_claims(self, trainer: Trainer) -> None:
        for other in trainer.callbacks:
            if other is self or not isinstance(other, MaskState):
                continue
            shared = sorted(self.sparse_names & other.sparse_names)
            if shared:
                raise ValueError(
                    f"{type(self).__name__} and {type(other).__name__} both claim {shared[:5]}; a parameter "
                    "can have one mask owner: split them with `include`/`exclude`."
                )

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
        kind = "uniform" if self.distribution == "snip" else self.distribution  # snip: replaced at train start
        return layer_densities(shapes, 1.0 - sparsity, kind, caps, self.erk_power_scale, sizes)

    def counts(self, densities: Mapping[str, float]) -> dict[str, int]:
        """Exact active units per parameter for densities relative to the bases."""
        t = self._targets
        return density_counts(densities, self._bases, {n: t[n].unit_size for n in t}, {n: t[n].capacity for n in t})


    # ------------------------------------------------------------------ training steps
    def training_step_index(self, trainer: Trainer, next_batch: bool = False) -> int:
        """The training step the current batch (or the next one) belongs to (module docstring)."""
        if self._automatic:
            return trainer.global_step
        return trainer.fit_loop.total_batch_idx + int(next_batch)

    def total_training_steps(self, trainer: Trainer) -> float:
        """Length of training in training steps (``inf`` when unknown)."""
        total = estimated_stepping_batches(trainer)  # pruned epochs counted as such
        if not self._automatic and trainer.max_steps not in (-1, None):
            # `max_steps` counts optimizer steps: assume every optimizer steps once per batch
            total = min(total, math.ceil(trainer.max_steps / max(len(trainer.optimizers), 1)))
        return total

    def will_update(self, step: int) -> bool:
        """Whether a topology update is due at training step ``step``; ``False`` before
        ``on_fit_start`` (the update itself may still be skipped on non-finite gradients)."""
        return self._maskset is not None and self._is_due(step)

    def changes_topology(self) -> bool:
        """Whether the masks can change during training at all (``False`` lets the per-step hooks
        skip the schedule lookups: static masks)."""
        return True

    def needs_dense_gradients(self, trainer: Trainer, next_batch: bool = False) -> bool:
        """:class:`MaskProvider`: whether the current (or next) batch's step may update."""
        if not self.changes_topology():
            return False
        return self.will_update(self.training_step_index(trainer, next_batch))

    def _is_due(self, step: int) -> bool:
        if self._due[0] != step:
            self._due = (step, bool(self.should_update(step)))
        return self._due[1]

    # ------------------------------------------------------------------ held parameters
    def hold(self, names: Sequence[str]) -> None:
        """Hand sparse parameters over to another component, e.g. truly sparse layers.

        Until :meth:`release`, this callback leaves them alone: no mask applied after the
        optimizer step, no gradient zeroed, no topology update; their masks stay as they are.
        The holder keeps their non-zeros exactly on those masks, trains them as the masked
        parameter would be trained, and releases them, with their values and optimizer state
        back in the original parameter objects, before the accumulation window of every step
        for which :meth:`needs_dense_gradients` is true (a RuntimeError is raised otherwise).

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

    # ------------------------------------------------------------------ checkpointing
    def state_dict(self) -> dict[str, Any]:
        if self._maskset is None:
            return {}
        return {
            "version": 1,
            **self._maskset.state_dict(),
            "generator": self._generator.get_state(),
            "last_update_step": self._last_update_step,
            "num_updates": self._num_updates,
            "skipped_updates": self._skipped_updates,
            **({"layer_counts": self._layer_counts} if self._layer_counts else {}),
            **self.extra_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            self._loaded = dict(state_dict)

    def _restore(self, state: dict[str, Any]) -> None:
        devices = {n: p.device for n, p in self._params.items()}
        self._maskset = MaskSet.from_state_dict(self._targets.values(), state, devices)
        self._generator.set_state(state["generator"])
        self._last_update_step = int(state.get("last_update_step", -1))
        self._updated_names = set(self._targets) if self._last_update_step >= 0 else set()
        self._num_updates = int(state.get("num_updates", 0))
        self._skipped_updates = int(state.get("skipped_updates", 0))
        if state.get("layer_counts"):
            self._use_counts(state["layer_counts"])
        self.load_extra_state(state)
