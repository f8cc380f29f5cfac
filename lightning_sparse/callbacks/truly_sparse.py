"""Truly sparse training: masked ``nn.Linear`` layers run as CSR :class:`SparseLinear` layers.

"Nerva: a Truly Sparse Implementation of Neural Networks" (Wesselink et al., 2024,
arXiv:2407.17437) stores only the non-zeros of a sparse layer and trains them with sparse
products. :class:`TrulySparse` is that second execution mode for the masks of any mask provider
(:class:`~lightning_sparse.callbacks.MaskProvider`: dynamic sparse training, pruning, ...; else
the zeros of the weights): when training starts it swaps each sparse enough ``nn.Linear`` for a
:class:`~lightning_sparse.nn.SparseLinear`, and the optimizer's parameter and state for their
values, so training continues exactly as the masked model would (up to floating point).

For the accumulation window of every step at which a provider may update the masks
(``needs_dense_gradients``), the original ``nn.Linear`` modules and weight ``Parameter`` objects
come back (dense gradients for RigL's growth), and the layers convert again after the step;
while a layer is sparse its provider leaves it alone (``hold`` / ``release``). Conversion
happens in ``on_train_start``, after Lightning restored the checkpoint's weights and optimizer
state; under DDP the module is wrapped again after every conversion. Checkpoints are written
dense (``<layer>.weight`` and weight-shaped optimizer state), so they load into the plain model.
``max_density`` (0.2) is the measured crossover against masked dense on a 2-core CPU. Only
``nn.Linear`` layers become sparse; ``bf16-mixed`` runs the sparse layers in float32. The design
and its measurements: ``docs/truly_sparse.md``.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_debug, rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from typing_extensions import override

from lightning_sparse._validation import preview
from lightning_sparse.callbacks._ddp_rewrap import DDPRewrap
from lightning_sparse.callbacks.mask_provider import MaskProvider, mask_providers
from lightning_sparse.core import pack_mask, unpack_mask
from lightning_sparse.nn import (
    SparseLinear,
    dense_optimizer_state,
    dense_state_dict,
    linear_to_sparse,
    memory_report,
    replace_optimizer_param,
    set_output_layouts,
    set_submodule,
    sparse_to_linear,
)

__all__ = ["DEFAULT_MAX_DENSITY", "TrulySparse"]

DEFAULT_MAX_DENSITY = 0.2


@dataclass
class _Held:
    """A layer held truly sparse: its original dense module (weight storage freed) and the sparse one."""

    module_name: str
    linear: nn.Linear
    sparse: SparseLinear


class TrulySparse(Callback):
    """Train the sparse ``nn.Linear`` layers as truly sparse CSR layers (Nerva).

    From "Nerva: a Truly Sparse Implementation of Neural Networks" (Wesselink et al., 2024,
    arXiv:2407.17437); see the module docstring for the design, the checkpoint format and the
    basis of ``max_density``. Converted layers are logged with their density, and
    ``truly_sparse/param_bytes``, ``truly_sparse/masked_param_bytes`` and the other keys of
    :func:`~lightning_sparse.nn.memory_report` are logged after every conversion.

    Args:
        max_density: a layer is converted when its mask density is at most this, in ``[0, 1]``.
        include: globs on weight names (``"model.features.0.weight"``); when given, only matching
            ``nn.Linear`` layers are candidates (each glob must match one).
        exclude: globs on weight names of ``nn.Linear`` layers that stay dense (each must match).
        min_weights: layers with fewer weights (``in_features * out_features``) stay dense.
        keep_sparse_after_fit: leave the ``SparseLinear`` layers in the model after ``fit``; by
            default the original ``nn.Linear`` layers return (zeros outside the masks) and the
            optimizer holds their weights again.
        sparse_eval: also convert for ``validate``/``test``/``predict`` outside ``fit`` (masks
            from the mask providers when they have them, else from the weights' zeros), converting back after.
        backend: kernel choice of the :class:`~lightning_sparse.nn.SparseLinear` layers.

    Raises:
        ValueError: an invalid argument (here) or, before training starts, an unsupported
            strategy, a glob matching no ``nn.Linear`` weight, no masked ``nn.Linear`` at all, or
            a mask provider reading dense gradients at every step (DST growing by momentum).

    Examples:
        >>> cb = TrulySparse(max_density=0.1, exclude=["*fc.weight"])
        >>> cb.max_density, cb.keep_sparse_after_fit
        (0.1, False)
    """

    def __init__(
        self,
        max_density: float = DEFAULT_MAX_DENSITY,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        min_weights: int = 0,
        keep_sparse_after_fit: bool = False,
        sparse_eval: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if isinstance(max_density, bool) or not isinstance(max_density, (int, float)) or not 0.0 <= max_density <= 1.0:
            raise ValueError(f"`max_density` must be a number in [0, 1], got {max_density!r}.")
        for arg, globs in (("include", include), ("exclude", exclude)):
            if globs is not None and (isinstance(globs, str) or not all(isinstance(g, str) for g in globs)):
                raise ValueError(f"`{arg}` must be a list of glob patterns such as ['*.weight'], got {globs!r}.")
        if isinstance(min_weights, bool) or not isinstance(min_weights, int) or min_weights < 0:
            raise ValueError(f"`min_weights` must be an integer >= 0, got {min_weights!r}.")
        SparseLinear(1, 1, torch.ones(1, 1, dtype=torch.bool), backend=backend)  # checks `backend`
        self.max_density = float(max_density)
        self.include = list(include) if include is not None else None
        self.exclude = list(exclude) if exclude is not None else None
        self.min_weights = min_weights
        self.keep_sparse_after_fit = keep_sparse_after_fit
        self.sparse_eval = sparse_eval
        self.backend = backend

        self._candidates: list[str] = []
        self._providers: list[MaskProvider] = []
        self._held: dict[str, _Held] = {}
        self._static_masks: dict[str, Tensor] | None = None
        self._eval_names: list[str] = []
        self._loaded: dict[str, Any] | None = None
        self._pending_convert = False
        self._pending_log: dict[str, float] = {}
        self._ddp = DDPRewrap()
        self._conversions = 0
        self.memory: dict[str, int] = {}

    # ------------------------------------------------------------------ public views
    @property
    def sparse_layers(self) -> dict[str, float]:
        """Weight name -> density of every layer now held truly sparse."""
        return {n: h.sparse.density for n, h in self._held.items()}

    # ------------------------------------------------------------------ setup and validation
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not isinstance(trainer.strategy, (SingleDeviceStrategy, DDPStrategy)):
            raise ValueError(
                "`TrulySparse` supports the single-device and DDP strategies (ddp, ddp_spawn, ...), "
                f"got strategy={type(trainer.strategy).__name__}."
            )
        if stage == "fit" and self._held:  # a previous fit kept them sparse
            self._release(trainer, pl_module, list(self._held), optimizers=())
        self._providers = mask_providers(trainer.callbacks)
        self._candidates = self._find_candidates(pl_module)
        self._static_masks = None

    def _find_candidates(self, pl_module: LightningModule) -> list[str]:
        counts: dict[int, int] = {}
        for _, p in pl_module.named_parameters(remove_duplicate=False):
            counts[id(p)] = counts.get(id(p), 0) + 1
        linears = {}
        for name, m in pl_module.named_modules():
            if type(m) is nn.Linear and name:  # subclasses may not call forward (e.g. attention's out_proj)
                if counts.get(id(m.weight), 0) > 1:
                    rank_zero_warn(f"TrulySparse: {name}.weight is shared with another module; it stays dense.")
                    continue
                linears[f"{name}.weight"] = m
        if not linears:
            raise ValueError(
                f"`TrulySparse` found no nn.Linear layer in {type(pl_module).__name__}; nothing to make sparse."
            )
        names = list(linears)
        for arg, globs in (("include", self.include), ("exclude", self.exclude)):
            for glob in globs or ():
                if not any(fnmatch.fnmatchcase(n, glob) for n in names):
                    raise ValueError(
                        f"`{arg}` pattern {glob!r} matches no nn.Linear weight; the weights are: {preview(names, limit=6)}."
                    )
        if self.include is not None:
            names = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in self.include)]
        names = [n for n in names if not any(fnmatch.fnmatchcase(n, g) for g in self.exclude or ())]
        names = [n for n in names if linears[n].weight.numel() >= self.min_weights]
        if not names:
            raise ValueError(
                f"`TrulySparse` has no candidate layer left (include={self.include}, exclude={self.exclude}, "
                f"min_weights={self.min_weights}); nn.Linear weights: {preview(list(linears), limit=6)}."
            )
        return names

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for provider in self._providers:
            if provider.dense_gradients_every_step:
                raise ValueError(
                    f"`TrulySparse` cannot run with {type(provider).__name__} reading dense gradients at every step "
                    "(DynamicSparseTraining(grow='momentum')): momentum growth needs the dense gradient at every "
                    "step; use grow='gradient' or 'random', or drop TrulySparse."
                )
        if self._providers:
            targets = set().union(*(p.sparse_names for p in self._providers))
            if not targets.intersection(self._candidates):
                raise ValueError(
                    "`TrulySparse` candidates and the mask providers' parameters do not overlap: no masked "
                    f"nn.Linear weight to convert (candidates: {preview(self._candidates, limit=6)}; "
                    f"masked: {preview(sorted(targets), limit=6)})."
                )

    # ------------------------------------------------------------------ masks
    def _fit_masks(self, pl_module: LightningModule) -> dict[str, Tensor]:
        """The masks of the candidates during fit: the providers', else fixed once from the weights' zeros."""
        if self._providers:
            masks: dict[str, Tensor] = {}
            for provider in self._providers:
                masks.update({n: m for n, m in provider.masks.items() if n in self._candidates})
            return masks
        if self._static_masks is None:
            params = dict(pl_module.named_parameters())
            loaded = self._loaded or {}
            self._loaded = None
            masks = {}
            for n in self._candidates:
                w = params[n] if n in params else self._held[n].linear.weight
                if n in loaded.get("masks", {}):
                    masks[n] = unpack_mask(loaded["masks"][n], loaded["shapes"][n]).to(w.device)
                elif n in self._held:
                    masks[n] = self._held[n].sparse.mask()
                elif not bool((w != 0).all()):
                    masks[n] = w.detach() != 0
            if not masks:
                raise ValueError(
                    "`TrulySparse` found no masked nn.Linear (no zero in the weights of "
                    f"{preview(self._candidates, limit=6)}) and no mask provider gives masks; prune the model first "
                    "or add a mask-holding callback such as DynamicSparseTraining."
                )
            for n, m in masks.items():
                if m.float().mean() > self.max_density:
                    rank_zero_warn(
                        f"TrulySparse: {n} (density {float(m.float().mean()):.3f} > max_density={self.max_density}) "
                        "stays dense and, without a mask provider, its zeros will fill in during training."
                    )
            self._static_masks = masks
        return self._static_masks

    def _eval_masks(self, pl_module: LightningModule) -> dict[str, Tensor]:
        masks = dict(self._fit_masks(pl_module)) if any(p.masks for p in self._providers) else {}
        params = dict(pl_module.named_parameters())
        for n in self._candidates:
            if n not in masks and n in params:
                masks[n] = params[n].detach() != 0
        return masks

    def _due(self, trainer: Trainer, next_batch: bool) -> bool:
        for provider in self._providers:  # (a loop: called on every batch)
            if provider.needs_dense_gradients(trainer, next_batch=next_batch):
                return True
        return False

    # ------------------------------------------------------------------ the training loop
    @override
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # after restore_training_state: the model and the optimizer states are the checkpoint's
        self._pending_convert = True
        self._sync(trainer, pl_module)
        if not self._held and not self._pending_convert:
            rank_zero_warn(
                f"TrulySparse: no candidate layer is at most max_density={self.max_density} dense; "
                "training stays masked dense."
            )

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._due(trainer, next_batch=False):  # a mask update at the end of this window: dense gradients
            if self._held:
                self._release(trainer, pl_module, list(self._held), trainer.optimizers)
            self._pending_convert = True

    @override
    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._sync(trainer, pl_module)
        if self._pending_log:
            pl_module.log_dict(self._pending_log, on_step=True, on_epoch=False)
            self._pending_log = {}

    def _sync(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._pending_convert or self._due(trainer, next_batch=True):
            return
        self._pending_convert = False
        masks = self._fit_masks(pl_module)
        self._convert(trainer, pl_module, {n: m for n, m in masks.items() if n not in self._held}, trainer.optimizers)

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.keep_sparse_after_fit and self._held:
            self._release(trainer, pl_module, list(self._held), trainer.optimizers)

    @override
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if self._held:  # leave a normal dense model behind
            self._release(trainer, pl_module, list(self._held), trainer.optimizers)

    # ------------------------------------------------------------------ evaluation outside fit
    def _eval_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.sparse_eval and trainer.state.fn != TrainerFn.FITTING:
            masks = {n: m for n, m in self._eval_masks(pl_module).items() if n not in self._held}
            self._eval_names = self._convert(trainer, pl_module, masks, optimizers=(), log=False)

    def _eval_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._eval_names:
            self._release(trainer, pl_module, self._eval_names, optimizers=())
            self._eval_names = []

    @override
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_start(trainer, pl_module)

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_end(trainer, pl_module)

    @override
    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_start(trainer, pl_module)

    @override
    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_end(trainer, pl_module)

    @override
    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_start(trainer, pl_module)

    @override
    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._eval_end(trainer, pl_module)

    @override
    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._eval_end(trainer, pl_module)

    # ------------------------------------------------------------------ conversions
    def _convert(self, trainer: Trainer, pl_module: LightningModule, masks: dict[str, Tensor], optimizers,
                 log: bool = True) -> list[str]:
        """Masked dense -> truly sparse for every mask at most ``max_density`` dense."""
        converted = []
        for name, mask in masks.items():
            if mask.float().mean().item() > self.max_density:
                continue
            module_name = name.rpartition(".")[0]
            linear = pl_module.get_submodule(module_name)
            weight = linear.weight
            mask = mask.to(weight.device)
            sparse = linear_to_sparse(linear, mask, backend=self.backend)
            for opt in optimizers:
                replace_optimizer_param(opt, weight, sparse.values, mask)
            weight.data = weight.data.new_empty(0)  # free the dense storage; the object stays for the provider
            weight.grad = None
            set_submodule(pl_module, module_name, sparse)
            self._held[name] = _Held(module_name, linear, sparse)
            converted.append(name)
        if not converted:
            return converted
        set_output_layouts(pl_module)
        for provider in self._providers:
            provider.hold([n for n in converted if n in provider.sparse_names])
        self._rewrap_ddp(trainer, pl_module)
        if log:
            self._conversions += 1
            self._report(trainer, pl_module, converted)
        return converted

    def _release(self, trainer: Trainer, pl_module: LightningModule, names: list[str], optimizers) -> None:
        """Truly sparse -> the original ``nn.Linear`` modules and weight ``Parameter`` objects."""
        for name in names:
            held = self._held.pop(name)
            linear, sparse = held.linear, held.sparse
            mask = sparse.mask()
            sparse_to_linear(sparse, linear)  # the original objects, zeros outside the mask
            for opt in optimizers:
                replace_optimizer_param(opt, sparse.values, linear.weight, mask)
            set_submodule(pl_module, held.module_name, linear)
        set_output_layouts(pl_module)
        for provider in self._providers:
            provider.release(names)
        self._rewrap_ddp(trainer, pl_module)
        if not self._held:
            self._ddp.restore(pl_module)

    def _rewrap_ddp(self, trainer: Trainer, pl_module: LightningModule) -> None:
        buffers = [f"{h.module_name}.{b}" for h in self._held.values() for b, _ in h.sparse.named_buffers()]
        self._ddp.rewrap(trainer, pl_module, buffers)

    def _report(self, trainer: Trainer, pl_module: LightningModule, converted: list[str]) -> None:
        self.memory = memory_report(pl_module, trainer.optimizers)
        held = self._held.values()
        nnz, numel = sum(h.sparse.nnz for h in held), sum(h.sparse.in_features * h.sparse.out_features for h in held)
        self._pending_log = {f"truly_sparse/{k}": float(v) for k, v in self.memory.items()}
        self._pending_log.update({
            "truly_sparse/layers": float(len(self._held)),
            "truly_sparse/density": nnz / max(numel, 1),
            "truly_sparse/conversions": float(self._conversions),
        })
        msg = rank_zero_info if self._conversions == 1 else rank_zero_debug
        layers = ", ".join(f"{n} ({self._held[n].sparse.density:.4f})" for n in converted)
        msg(
            f"TrulySparse: {len(converted)} nn.Linear layer(s) truly sparse: {layers}; parameters + optimizer state "
            f"{_fmt_bytes(self.memory['masked_total_bytes'])} masked -> {_fmt_bytes(self.memory['total_bytes'])}."
        )

    # ------------------------------------------------------------------ checkpointing
    @override
    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        """Write the held layers dense: ``<layer>.weight`` and weight-shaped optimizer state."""
        if not self._held:
            return
        layers = {h.module_name: h.sparse for h in self._held.values()}
        if checkpoint.get("state_dict") is not None:
            checkpoint["state_dict"] = dense_state_dict(checkpoint["state_dict"], layers)
        for opt, packed in zip(trainer.optimizers, checkpoint.get("optimizer_states", [])):
            packed["state"] = dense_optimizer_state(opt, packed, layers.values())

    @override
    def state_dict(self) -> dict[str, Any]:
        masks = self._static_masks or {}
        return {
            "version": 1,
            "shapes": {n: tuple(m.shape) for n, m in masks.items()},
            "masks": {n: pack_mask(m) for n, m in masks.items()},
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("masks"):
            self._loaded = dict(state_dict)


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n:.2f} GiB"
