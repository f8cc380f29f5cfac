"""Dynamic data pruning: each epoch trains on a freshly chosen share of the training samples.

DDP-ASR (Xiao et al., "Dynamic Data Pruning for Automatic Speech Recognition", Interspeech 2024,
arXiv:2406.18373) keeps ~70% of the utterances per epoch, chosen by their latest loss, and can
also drop chunks of time inside the kept utterances; InfoBatch (Qin et al., ICLR 2024,
arXiv:2303.04947) drops a random share of the below-mean-loss samples, rescales the kept ones'
losses, and trains on full data in the final epochs. :class:`DynamicDataPruning` does both, for
any LightningModule that follows the per-sample contract (``docs/per_sample.md``).

How it attaches (nothing in the task changes):

- **Scores.** ``training_step`` returns ``{"loss", "per_sample_loss", "index"}``; in
  ``on_train_batch_end`` the callback records each sample's loss (latest, or a moving average
  with ``momentum``) under its dataset index. Under DDP the losses of all ranks are gathered
  first, so every rank holds the same scores.
- **Selection.** At each epoch start :func:`~lightning_sparse.core.data_selection.select_samples`
  chooses the kept samples from the scores with the callback's seeded generator (the same on
  every rank); :class:`PrunedSampler` yields them. The training loader is a
  :class:`~lightning_sparse.data.loading.ResumableDataLoader` over an
  :class:`~lightning_sparse.data.loading.EpochSampler` whose order comes from that sampler: a
  project ``DataModule`` is handed it through ``set_train_sampler``; any other training loader
  (a plain ``DataLoader`` from the user's ``train_dataloader()`` or passed to ``fit``) is
  rebuilt around it with the same dataset, batch size, collate function and workers, as
  Lightning itself replaces samplers for DDP. The epoch sampler shards the kept samples over
  the ranks (disjoint shards).
- **Loss weights** (``policy="infobatch"``): the epoch's table of per-sample weights goes to the
  task's ``set_index_weights(table)``; the task multiplies each sample's loss by
  ``table[index]`` (``SparseTask`` does).
- **Time-wise pruning.** With ``time_drop_ratio`` set, the ``ratio`` of every
  :class:`~lightning_sparse.core.time_drop.TimeDrop` module of the task is set each epoch.

Epoch lengths. Lightning sizes an epoch once, from the loader's length when training starts.
The callback re-sizes it at every epoch start (``trainer.num_training_batches``, the progress
bar's total, the validation interval), so a pruned epoch ends where its data end and a longer
one (full data at the end) is not cut short. ``trainer.estimated_stepping_batches`` still
counts full epochs; :meth:`DynamicDataPruning.estimated_stepping_batches` counts the pruned
ones, and the project's tasks and sparse-training callbacks size their schedules with it
(through :func:`lightning_sparse._training.estimated_stepping_batches`). ``max_steps`` counts
real optimizer steps, pruned epochs or not.

Exact resume. ``state_dict`` holds the scores, the scored flags, the current epoch's selection
and weights, the generator state and the counters; with the loader's own mid-epoch state a
resumed run sees the same batches and makes the same selections as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, Sampler

from lightning_sparse._validation import check_choice, check_int, check_number
from lightning_sparse.callbacks._pruning_loop import (
    _batches_trained,
    _gather,
    _limited_length,
    _logs_this_step,
    _resize_epoch,
    _shards,
)
from lightning_sparse.core.data_selection import POLICIES, EpochSchedule, kept_count, select_samples, update_scores_
from lightning_sparse.core.per_sample import read_per_sample
from lightning_sparse.data.loading import EpochSampler, ResumableDataLoader

__all__ = ["DynamicDataPruning", "PrunedSampler"]

_STATE_VERSION = 1


class PrunedSampler(Sampler[int]):
    """The kept samples of the current epoch, in training order (owned by the callback).

    ``set_epoch`` (Lightning calls it through the epoch sampler) picks the epoch; the order is
    the callback's selection for it. Its length is the epoch's kept count.
    """

    def __init__(self, owner: DynamicDataPruning) -> None:
        self.owner = owner
        self.epoch = 0
        self._length: int | None = None  # a temporary length, while estimating epoch lengths

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        return iter(self.owner.selection(self.epoch).indices.tolist())

    def __len__(self) -> int:
        return self._length if self._length is not None else self.owner.epoch_size(self.epoch)


class DynamicDataPruning(Callback):
    """Train each epoch on a share of the samples chosen by their losses (module docstring).

    Args:
        keep_ratio: Share of the training samples kept per epoch, in ``(0, 1]``: a number, or a
            schedule over epochs ``{"schedule": "linear" | "cosine" | "cubic", "initial", "final",
            "start_epoch", "stop_epoch"}`` (``stop_epoch`` defaults to the last pruned epoch).
            Not used by ``policy="infobatch"``, whose kept share follows from the scores.
        policy: ``"random"``, ``"easy"`` (lowest losses), ``"hard"`` (highest), ``"easy2hard"``
            (a window over the loss ranking moving from the easiest to the hardest samples over
            the pruned epochs) or ``"infobatch"``; exact rules in
            :mod:`lightning_sparse.core.data_selection`. Samples never scored are kept first.
        prune_ratio: InfoBatch's ``r``: share of the below-mean samples dropped, in ``[0, 1)``;
            the kept ones' losses are weighted ``1 / (1 - r)``. ``"infobatch"`` only.
        momentum: Scores are ``momentum * score + (1 - momentum) * loss`` (0: the latest loss).
        stop_fraction: Final share of the epochs trained on full data (InfoBatch's annealing,
            ``1 - delta``; InfoBatch uses 0.125), in ``[0, 1)``: epochs from
            ``ceil(max_epochs * (1 - stop_fraction))`` on keep everything, unweighted, and
            without time-wise pruning.
        time_drop_ratio: ``None`` (leave the task's ``TimeDrop`` modules alone), or the ratio to
            set on every :class:`~lightning_sparse.core.time_drop.TimeDrop` of the task each
            epoch: a number or an epoch schedule as ``keep_ratio``, in ``[0, 1)``.
        seed: Seed of the selection generator.
        log: Log ``data_pruning/kept_fraction`` and ``data_pruning/samples_seen`` at the steps the
            loggers write (``trainer.log_every_n_steps``).

    Raises:
        ValueError: At construction for bad arguments; at ``setup`` when the trainer or the task
            cannot support them (the argument and what is missing are named); at the first
            training batch when ``training_step`` does not return per-sample losses and indices.

    Examples:
        >>> cb = DynamicDataPruning(keep_ratio=0.7, policy="easy2hard")
        >>> cb.epoch_size(0) if cb.num_samples else "bound when training starts"
        'bound when training starts'
        >>> DynamicDataPruning(policy="hardest")
        Traceback (most recent call last):
        ...
        ValueError: `policy` must be one of ('random', 'easy', 'hard', 'easy2hard', 'infobatch'), got 'hardest'.
    """

    def __init__(
        self,
        keep_ratio: float | Mapping[str, Any] = 0.7,
        policy: str = "random",
        prune_ratio: float = 0.5,
        momentum: float = 0.0,
        stop_fraction: float = 0.0,
        time_drop_ratio: float | Mapping[str, Any] | None = None,
        seed: int = 0,
        log: bool = True,
    ) -> None:
        super().__init__()
        self.policy = check_choice("policy", policy, POLICIES)
        self.keep_ratio = EpochSchedule.parse("keep_ratio", keep_ratio, 0.0, 1.0, low_open=True)
        self.prune_ratio = float(check_number("prune_ratio", prune_ratio, 0.0, 1.0, high_open=True))
        self.momentum = float(check_number("momentum", momentum, 0.0, 1.0, high_open=True))
        self.stop_fraction = float(check_number("stop_fraction", stop_fraction, 0.0, 1.0, high_open=True))
        self.time_drop_ratio = (None if time_drop_ratio is None
                                else EpochSchedule.parse("time_drop_ratio", time_drop_ratio, 0.0, 1.0))
        if self.time_drop_ratio is not None and max(self.time_drop_ratio.initial, self.time_drop_ratio.final) >= 1.0:
            raise ValueError(f"`time_drop_ratio` must stay below 1, got {time_drop_ratio!r}.")
        self.seed = check_int("seed", seed, 0)
        self.log = bool(log)
        self.sampler = PrunedSampler(self)
        self.num_samples: int | None = None
        self.scores: Tensor | None = None
        self.scored: Tensor | None = None
        self.samples_seen = 0
        self._generator = torch.Generator().manual_seed(self.seed)
        self._selected_epoch: int | None = None
        self._selection = None
        self._max_epochs: int | None = None
        self._patched: tuple[Any, Any] | None = None
        self._datamodule: Any = None
        self._trainer: Trainer | None = None

    # ------------------------------------------------------------------ the schedule over epochs
    def pruned_epochs(self) -> int | None:
        """Epochs that prune (the rest train on full data); ``None`` without ``max_epochs``."""
        if self._max_epochs is None:
            return None
        return max(1, math.ceil(self._max_epochs * (1.0 - self.stop_fraction)))

    def _pruning(self, epoch: int) -> bool:
        last = self.pruned_epochs()
        return last is None or epoch < last

    def _last_pruned(self) -> int | None:
        last = self.pruned_epochs()
        return None if last is None else last - 1

    def keep_ratio_at(self, epoch: int) -> float:
        """The kept share of ``epoch`` (1.0 in the full-data epochs)."""
        if not self._pruning(epoch):
            return 1.0
        return self.keep_ratio(epoch, self._last_pruned())

    def epoch_size(self, epoch: int) -> int:
        """Samples ``epoch`` keeps: its selection's size once chosen, else the budget (the whole
        data set for ``"infobatch"``, an upper bound)."""
        if self.num_samples is None:
            raise RuntimeError("DynamicDataPruning is not bound to a training set yet (it binds when training starts).")
        if self._selected_epoch == epoch and self._selection is not None:
            return int(self._selection.indices.numel())
        if self.policy == "infobatch" or not self._pruning(epoch):
            return self.num_samples
        return kept_count(self.num_samples, self.keep_ratio_at(epoch))

    def _progress(self, epoch: int) -> float:
        last = self._last_pruned()
        if not last:
            return 0.0
        return min(1.0, max(0.0, epoch / last))

    def selection(self, epoch: int):
        """The :class:`~lightning_sparse.core.data_selection.Selection` of ``epoch`` (chosen once)."""
        if self._selected_epoch != epoch or self._selection is None:
            if self.num_samples is None:
                raise RuntimeError("DynamicDataPruning is not bound to a training set yet.")
            if self._pruning(epoch):
                self._selection = select_samples(
                    self.scores, self.scored, self.keep_ratio_at(epoch), self.policy, self._generator,
                    progress=self._progress(epoch), prune_ratio=self.prune_ratio,
                )
            else:  # full data, in a random order, unweighted
                from lightning_sparse.core.data_selection import Selection

                self._selection = Selection(torch.randperm(self.num_samples, generator=self._generator), None)
            self._selected_epoch = epoch
        return self._selection

    @property
    def kept_fraction(self) -> float | None:
        """Share of the training set in the current epoch's selection (``None`` before one)."""
        if self._selection is None or not self.num_samples:
            return None
        return self._selection.indices.numel() / self.num_samples

    # ------------------------------------------------------------------ binding to the data
    def _bind(self, num_samples: int) -> None:
        if self.num_samples is None:
            self.num_samples = int(num_samples)
            if self.scores is None:
                self.scores = torch.zeros(self.num_samples)
                self.scored = torch.zeros(self.num_samples, dtype=torch.bool)
        if int(num_samples) != self.num_samples:
            raise ValueError(
                f"DynamicDataPruning holds scores for {self.num_samples} training samples (restored from a "
                f"checkpoint or an earlier fit), but the training set has {num_samples}."
            )

    def _owns(self, loader: Any) -> bool:
        sampler = getattr(loader, "sampler", None)
        batch_sampler = getattr(loader, "batch_sampler", None)
        for s in (sampler, getattr(batch_sampler, "sampler", None)):
            if isinstance(s, EpochSampler) and s.source is self.sampler:
                return True
        return False

    def _prepare(self, loader: Any, trainer: Trainer) -> Any:
        """``loader`` itself when it already takes its order from the callback, else rebuilt."""
        if not isinstance(loader, DataLoader):
            raise ValueError(
                "DynamicDataPruning needs the training data as one torch DataLoader, got "
                f"{type(loader).__name__}."
            )
        dataset = loader.dataset
        if isinstance(dataset, IterableDataset):
            raise ValueError("DynamicDataPruning cannot choose samples of an IterableDataset: the training "
                             "DataLoader must wrap a map-style dataset (with __len__ and __getitem__).")
        self._bind(len(dataset))
        if self._owns(loader):
            return loader
        if loader.batch_size is None:
            raise ValueError(
                "DynamicDataPruning replaces the training DataLoader's sampler, which needs `batch_size` on the "
                "DataLoader (a custom `batch_sampler` cannot be re-sampled): pass batch_size=..., or build the "
                "loader over `EpochSampler(len(dataset), source=callback.sampler)`."
            )
        replicas, rank = _shards(trainer)
        kwargs: dict[str, Any] = dict(
            batch_size=loader.batch_size, num_workers=loader.num_workers, collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory, drop_last=loader.drop_last, timeout=loader.timeout,
            worker_init_fn=loader.worker_init_fn, multiprocessing_context=loader.multiprocessing_context,
            generator=loader.generator, persistent_workers=loader.persistent_workers,
        )
        if loader.num_workers > 0:
            kwargs["prefetch_factor"] = loader.prefetch_factor
        sampler = EpochSampler(len(dataset), source=self.sampler, num_replicas=replicas, rank=rank)
        return ResumableDataLoader(dataset, sampler=sampler, progress=lambda: _batches_trained(trainer), **kwargs)

    def _install(self, trainer: Trainer) -> None:
        source = trainer.fit_loop._data_source
        instance = source.instance
        datamodule = trainer.datamodule
        if datamodule is not None and callable(getattr(datamodule, "set_train_sampler", None)):
            datamodule.set_train_sampler(self.sampler)
            self._datamodule = datamodule
        if isinstance(instance, (LightningModule, LightningDataModule)):
            original = getattr(instance, source.name)

            def train_dataloader() -> Any:
                return self._prepare(original(), trainer)

            setattr(instance, source.name, train_dataloader)
            self._patched = (instance, source.name)
        elif instance is not None:
            source.instance = self._prepare(instance, trainer)

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._trainer = trainer
        max_epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else None
        self._max_epochs = max_epochs
        if max_epochs is None:
            needs = [name for name, on in (
                ("policy='easy2hard'", self.policy == "easy2hard"),
                ("stop_fraction > 0", self.stop_fraction > 0),
                ("a keep_ratio schedule without stop_epoch", not self.keep_ratio.is_constant and self.keep_ratio.stop_epoch is None),
                ("a time_drop_ratio schedule without stop_epoch", self.time_drop_ratio is not None
                 and not self.time_drop_ratio.is_constant and self.time_drop_ratio.stop_epoch is None),
            ) if on]
            if needs:
                raise ValueError(f"DynamicDataPruning with {' and '.join(needs)} needs `trainer.max_epochs` "
                                 f"(the length of training in epochs), got max_epochs={trainer.max_epochs}.")
        if self.policy == "infobatch" and not callable(getattr(pl_module, "set_index_weights", None)):
            raise ValueError(
                "DynamicDataPruning(policy='infobatch') rescales the kept low-loss samples' losses: the "
                f"LightningModule ({type(pl_module).__name__}) must define `set_index_weights(table)` and "
                "multiply each sample's loss by `table[index]` (the project's SparseTask does)."
            )
        if self.time_drop_ratio is not None and not self._time_drops(pl_module):
            raise ValueError(
                "DynamicDataPruning(time_drop_ratio=...) schedules the ratio of the task's TimeDrop modules, but "
                f"{type(pl_module).__name__} has none: give the task a `time_drop=TimeDrop(...)`."
            )
        self._install(trainer)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and self._datamodule is not None:  # the next fit of this DataModule is unpruned
            if self._datamodule.train_sampler is self.sampler:
                self._datamodule.set_train_sampler(None)
            self._datamodule = None
        if self._patched is not None:
            instance, name = self._patched
            if name in vars(instance):
                delattr(instance, name)
            self._patched = None

    @staticmethod
    def _time_drops(pl_module: LightningModule) -> list:
        from lightning_sparse.core.time_drop import TimeDrop

        return [m for m in pl_module.modules() if isinstance(m, TimeDrop)]

    def _apply_epoch(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Choose the epoch's samples and hand the epoch's settings to the task and the loop."""
        if self.num_samples is None:  # no training loader (limit_train_batches=0)
            return
        epoch = trainer.current_epoch
        self.sampler.set_epoch(epoch)
        chosen = self.selection(epoch)
        if callable(getattr(pl_module, "set_index_weights", None)):
            pl_module.set_index_weights(chosen.weights)
        if self.time_drop_ratio is not None:
            ratio = self.time_drop_ratio(epoch, self._last_pruned()) if self._pruning(epoch) else 0.0
            for module in self._time_drops(pl_module):
                module.ratio = float(ratio)
        _resize_epoch(trainer)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # a run resumed mid-epoch gets no on_train_epoch_start for the resumed epoch
        self._apply_epoch(trainer, pl_module)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._apply_epoch(trainer, pl_module)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        found = read_per_sample(outputs)
        if found is None or found[1] is None:
            missing = "'per_sample_loss'" if found is None else "'index'"
            raise ValueError(
                f"DynamicDataPruning needs the per-sample contract: `training_step` must return "
                "{'loss', 'per_sample_loss', 'index'} (see docs/per_sample.md); the output of "
                f"{type(pl_module).__name__}.training_step has no {missing}. The project's DataModules add the "
                "index with return_index=True; a plain dataset returns it as the last item of each sample."
            )
        losses, index = found
        if trainer.world_size > 1:
            losses, index = _gather(trainer, losses, index)
        self.samples_seen += update_scores_(self.scores, self.scored, index.cpu(), losses.cpu(), self.momentum)
        if self.log and _logs_this_step(trainer):  # a `self.log` call costs ~0.6 ms: only when written
            kept = self.kept_fraction
            if kept is not None:
                pl_module.log("data_pruning/kept_fraction", kept, on_step=True, on_epoch=False, batch_size=1)
            pl_module.log("data_pruning/samples_seen", float(self.samples_seen), on_step=True, on_epoch=False,
                          batch_size=1)

    # ------------------------------------------------------------------ length of training
    def estimated_stepping_batches(self, trainer: Trainer) -> float:
        """Optimizer steps of the whole fit with pruned epochs (``trainer.estimated_stepping_batches``
        counts full ones); ``"infobatch"`` epochs count as full (an upper bound)."""
        full = trainer.estimated_stepping_batches  # also sets up the training loader
        loader = trainer.fit_loop._combined_loader
        if self.num_samples is None or loader is None or not math.isfinite(full) or self._max_epochs is None:
            return full
        total = 0
        for epoch in range(self._max_epochs):
            self.sampler._length = self.epoch_size(epoch) if self._selected_epoch != epoch else None
            try:
                batches = max(_limited_length(trainer, dl) for dl in loader.flattened)
            finally:
                self.sampler._length = None
            total += math.ceil(batches / trainer.accumulate_grad_batches)
        if trainer.max_steps not in (None, -1):
            total = min(total, trainer.max_steps)
        return total

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        sel = self._selection
        return {
            "version": _STATE_VERSION,
            "num_samples": self.num_samples,
            "scores": self.scores,
            "scored": self.scored,
            "samples_seen": self.samples_seen,
            "selected_epoch": self._selected_epoch,
            "selection": None if sel is None else sel.indices,
            "weights": None if sel is None else sel.weights,
            "generator": self._generator.get_state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        from lightning_sparse.core.data_selection import Selection

        if state_dict.get("version") != _STATE_VERSION:
            raise ValueError(f"DynamicDataPruning state version {state_dict.get('version')!r} is not "
                             f"{_STATE_VERSION}: the checkpoint was written by another version.")
        self.num_samples = state_dict["num_samples"]
        self.scores, self.scored = state_dict["scores"], state_dict["scored"]
        self.samples_seen = int(state_dict["samples_seen"])
        self._selected_epoch = state_dict["selected_epoch"]
        indices = state_dict["selection"]
        self._selection = None if indices is None else Selection(indices, state_dict["weights"])
        self._generator.set_state(state_dict["generator"])
