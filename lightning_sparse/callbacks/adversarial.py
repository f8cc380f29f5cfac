"""PGD adversarial training and PGD robust-accuracy evaluation for image classifiers.

Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks",
arXiv:1706.06083: train on L-inf PGD examples (:func:`lightning_sparse.attacks.pgd`) instead of
the clean inputs, and report accuracy under a stronger PGD attack. The defaults are those of the
reference code of the sparse-robustness papers (``QiaoXiao7282/hard_sample_learners``,
``main_ad_att.py``): ``eps = 8/255``, step ``2/255``, 10 steps with a random start for training,
20 for testing.

Both callbacks work with any task whose batches are ``(x, y[, ...])`` tuples/lists or dicts with
``"image"`` and ``"label"`` keys, and attack ``pl_module``'s ``forward``. Inputs normalised by
the DataModule are attacked in pixel space: ``mean``/``std`` default to the DataModule's
(``DigitsDataModule.mean``/``std``, ``ImageFolderDataModule``'s or its preset's, the CIFAR
modules' class constants); with none given or found, inputs are taken to be pixels in
``[0, 1]`` (a warning says so, and :func:`~lightning_sparse.attacks.pgd` refuses inputs outside
that range, so forgotten normalisation statistics fail loudly).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor
from typing_extensions import override

from lightning_sparse._validation import check_bool, check_choice, check_int, check_number
from lightning_sparse.attacks.pgd import Stats, as_channel_stats, pgd

__all__ = ["AdversarialRobustness", "AdversarialTraining", "batch_inputs", "datamodule_stats"]

MODES = ("train", "eval")


def batch_inputs(batch: Any) -> tuple[Tensor, Tensor]:
    """The ``(inputs, labels)`` of a batch: items 0 and 1 of a tuple/list, or ``"image"``/``"label"``.

    Raises:
        ValueError: If the batch has neither layout or its inputs are not a floating-point tensor.

    Examples:
        >>> x, y = batch_inputs({"image": torch.zeros(2, 1, 4, 4), "label": torch.tensor([0, 1])})
        >>> tuple(x.shape), y.tolist()
        ((2, 1, 4, 4), [0, 1])
        >>> batch_inputs(torch.zeros(2))
        Traceback (most recent call last):
        ...
        ValueError: `batch` must be a tuple/list (x, y[, ...]) or a dict with 'image' and 'label' keys, got a Tensor.
    """
    if isinstance(batch, Mapping) and "image" in batch and "label" in batch:
        x, y = batch["image"], batch["label"]
    elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
        x, y = batch[0], batch[1]
    else:
        raise ValueError(
            "`batch` must be a tuple/list (x, y[, ...]) or a dict with 'image' and 'label' keys, "
            f"got a {type(batch).__name__}."
        )
    if not isinstance(x, Tensor) or not x.is_floating_point():
        kind = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"the inputs of `batch` must be a floating-point tensor to attack, got {kind}.")
    return x, y


def datamodule_stats(dm: Any) -> tuple[Any, Any] | None:
    """The ``(mean, std)`` a DataModule normalises its images with, or None when it shows none.

    Looked up as public ``mean``/``std`` (the CIFAR modules, ``DigitsDataModule`` after ``setup``,
    ``ImageFolderDataModule`` when given), then ``_mean``/``_std``, then the defaults of a
    ``preset`` (``ImageFolderDataModule``).

    Examples:
        >>> from lightning_sparse.data.image.cifar import CIFAR10DataModule
        >>> datamodule_stats(CIFAR10DataModule("/nonexistent"))[0]
        (0.4914, 0.4822, 0.4465)
        >>> datamodule_stats(None) is None
        True
    """
    if dm is None:
        return None
    for mean_name, std_name in (("mean", "std"), ("_mean", "_std")):
        mean, std = getattr(dm, mean_name, None), getattr(dm, std_name, None)
        if mean is not None and std is not None:
            return mean, std
    preset = getattr(dm, "preset", None)
    if isinstance(preset, str):
        from lightning_sparse.data.image.transforms import PRESETS, resolve_preset

        if preset in PRESETS:
            _, mean, std = resolve_preset(preset)
            return mean, std
    return None


def _batch_generator(seed: int, rank: int, counter: int) -> torch.Generator:
    """A CPU generator for one batch's random start, from ``(seed, rank, counter)`` alone."""
    state = np.random.SeedSequence([seed, rank, counter]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class _PGDCallback(Callback):
    """The attack arguments, their checks and the mean/std lookup shared by both callbacks."""

    def __init__(self, eps: float, alpha: float, steps: int, random_start: bool, mean: Stats | None,
                 std: Stats | None, seed: int) -> None:
        super().__init__()
        check_number("eps", eps, 0.0)
        check_number("alpha", alpha, 0.0)
        check_int("steps", steps, 0)
        check_bool("random_start", random_start)
        check_int("seed", seed, 0)
        as_channel_stats(mean, std)  # both or neither, equal lengths, positive std
        self.eps, self.alpha, self.steps, self.random_start = float(eps), float(alpha), steps, random_start
        self.mean, self.std, self.seed = mean, std, seed
        self.stats: tuple[Any, Any] | None = None  # resolved in setup

    def _resolve_stats(self, trainer: Trainer) -> None:
        if self.mean is not None:
            self.stats = (self.mean, self.std)
            return
        self.stats = datamodule_stats(trainer.datamodule)
        if self.stats is None:
            rank_zero_warn(
                f"{type(self).__name__}: no `mean`/`std` given and none found on the DataModule; the inputs "
                "are taken to be pixels in [0, 1]. Pass `mean` and `std` for normalised inputs."
            )
        else:
            as_channel_stats(*self.stats)

    def _attack(self, pl_module: LightningModule, x: Tensor, y: Tensor, generator: torch.Generator) -> Tensor:
        mean, std = self.stats if self.stats is not None else (None, None)
        return pgd(pl_module, x, y, eps=self.eps, alpha=self.alpha, steps=self.steps,
                   random_start=self.random_start, mean=mean, std=std, generator=generator)


class AdversarialTraining(_PGDCallback):
    """Train on PGD adversarial examples: each training batch's inputs are replaced in place.

    Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks",
    arXiv:1706.06083. In ``on_train_batch_start`` the inputs ``x`` of the batch (item 0, or
    ``batch["image"]``) are overwritten (``x.copy_(x_adv)``) with L-inf PGD examples against
    ``pl_module`` for the labels (item 1, or ``batch["label"]``), so ``training_step`` trains on
    them unchanged. A loader that yields views of its dataset's storage would see the dataset
    overwritten; collated batches (the default) are fresh tensors.

    ``mode="train"`` (default) attacks the model in the mode the training step runs it in, as
    the reference code does (``main_ad_att.py``: ``model.train()`` before the loop, then
    advertorch's ``perturb``, which does not switch modes): batch norm normalises with batch
    statistics and updates its running statistics at every attack step. ``mode="eval"`` attacks
    the eval-mode model (running statistics, no dropout) and restores every module's mode after.

    Each batch's random start comes from a generator seeded by ``(seed, global_rank, n)``, ``n``
    the number of batches attacked so far: ranks draw different starts for their different data,
    and ``n`` (the same on every rank) is the whole state in ``state_dict``, so a resumed run,
    under DDP too, draws the starts an uninterrupted one would. Under gradient accumulation every
    micro-batch is attacked; with manual optimization the hook fires all the same. Under mixed
    precision the attack runs in float32 with autocast off; the model gets the batch's dtype.

    Args:
        eps: L-inf radius in pixel units (``[0, 1]`` scale); 0 trains on clean inputs.
        alpha: Step size in pixel units.
        steps: PGD steps per batch (10 in the paper's CIFAR-10 training).
        random_start: Start uniformly in the eps-ball.
        mean: Per-channel mean the inputs are normalised with (default: the DataModule's, see
            :func:`datamodule_stats`, else inputs are pixels in ``[0, 1]``).
        std: Per-channel std, given with ``mean``.
        mode: ``"train"`` or ``"eval"``: the model's mode while the attack is generated.
        seed: Seed of the random starts.

    Raises:
        ValueError: For an invalid argument (here); at ``setup``, for DataModule statistics that
            are not valid ``mean``/``std``; at each batch, for a batch of neither layout or inputs
            outside ``[0, 1]`` in pixel space.

    Examples:
        >>> cb = AdversarialTraining(eps=4 / 255, steps=7, mean=(0.5,), std=(0.25,))
        >>> cb.steps, cb.mode, cb.state_dict()
        (7, 'train', {'seed': 0, 'batches_attacked': 0})
        >>> AdversarialTraining(mode="test")
        Traceback (most recent call last):
        ...
        ValueError: `mode` must be one of ('train', 'eval'), got 'test'.
    """

    def __init__(
        self,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 10,
        random_start: bool = True,
        mean: Stats | None = None,
        std: Stats | None = None,
        mode: str = "train",
        seed: int = 0,
    ) -> None:
        super().__init__(eps, alpha, steps, random_start, mean, std, seed)
        self.mode = check_choice("mode", mode, MODES)
        self.batches_attacked = 0

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._resolve_stats(trainer)

    @override
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        x, y = batch_inputs(batch)
        generator = _batch_generator(self.seed, trainer.global_rank, self.batches_attacked)
        modes = [(module, module.training) for module in pl_module.modules()]
        try:
            if self.mode == "eval":
                pl_module.eval()
            x_adv = self._attack(pl_module, x, y, generator)
        finally:
            for module, training in modes:
                module.training = training
        x.copy_(x_adv)
        self.batches_attacked += 1

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "batches_attacked": self.batches_attacked}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.batches_attacked = int(state_dict.get("batches_attacked", 0))


class AdversarialRobustness(_PGDCallback):
    """Log PGD robust accuracy (``test/pgd_acc``) and clean accuracy (``test/clean_acc``) in ``trainer.test``.

    Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks",
    arXiv:1706.06083; 20 steps by default, the reference code's test attack. Every batch of the
    first test loader (at most ``max_batches`` per rank) is attacked in ``on_test_batch_end``,
    with the model in the eval mode the test loop sets (as the reference's ``eval_adv``), and
    counted; at the end of the test epoch the counts are summed over the DDP ranks, so the
    accuracies are those of the whole (sharded) test set, each rank's shard counted once
    (Lightning's ``DistributedSampler`` pads the shards with repeats, as for ``test/acc``). The
    results are kept in ``pgd_accuracy``, ``clean_accuracy`` and ``num_samples`` (all ranks).

    Args:
        eps: L-inf radius in pixel units; 0 makes ``pgd_acc`` the clean accuracy.
        alpha: Step size in pixel units.
        steps: PGD steps.
        random_start: Start uniformly in the eps-ball.
        mean: Per-channel mean of the inputs' normalisation (default as in
            :class:`AdversarialTraining`).
        std: Per-channel std, given with ``mean``.
        max_batches: Attack only the first ``max_batches`` test batches of each rank (quick checks).
        seed: Seed of the random starts (batch ``i`` of rank ``r`` uses ``(seed, r, i)``).

    Raises:
        ValueError: For an invalid argument (here), or as :class:`AdversarialTraining` later.

    Examples:
        >>> cb = AdversarialRobustness(max_batches=10)
        >>> cb.steps, round(cb.eps * 255)
        (20, 8)
        >>> AdversarialRobustness(max_batches=0)
        Traceback (most recent call last):
        ...
        ValueError: `max_batches` must be an integer >= 1 or None, got 0.
    """

    def __init__(
        self,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 20,
        random_start: bool = True,
        mean: Stats | None = None,
        std: Stats | None = None,
        max_batches: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(eps, alpha, steps, random_start, mean, std, seed)
        self.max_batches = check_int("max_batches", max_batches, 1, allow_none=True)
        self.pgd_accuracy: float | None = None
        self.clean_accuracy: float | None = None
        self.num_samples: int | None = None
        self._counts: Tensor | None = None  # (pgd correct, clean correct, total)

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "test":
            self._resolve_stats(trainer)

    @override
    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._counts = torch.zeros(3, dtype=torch.float64, device=pl_module.device)

    @override
    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if dataloader_idx != 0 or (self.max_batches is not None and batch_idx >= self.max_batches):
            return
        x, y = batch_inputs(batch)
        x_adv = self._attack(pl_module, x, y, _batch_generator(self.seed, trainer.global_rank, batch_idx))
        with torch.no_grad():
            self._counts[0] += (pl_module(x_adv).argmax(-1) == y).sum()
            self._counts[1] += (pl_module(x).argmax(-1) == y).sum()
        self._counts[2] += y.numel()

    @override
    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        counts = self._counts
        if trainer.world_size > 1:
            counts = trainer.strategy.reduce(counts, reduce_op="sum")
        total = counts[2].clamp_min(1)
        self.pgd_accuracy, self.clean_accuracy = float(counts[0] / total), float(counts[1] / total)
        self.num_samples = int(counts[2])
        pl_module.log("test/pgd_acc", self.pgd_accuracy, sync_dist=False)  # already summed over ranks
        pl_module.log("test/clean_acc", self.clean_accuracy, sync_dist=False)
        rank_zero_info(
            f"AdversarialRobustness: PGD-{self.steps} (eps {self.eps * 255:.3g}/255) accuracy "
            f"{self.pgd_accuracy:.4f}, clean {self.clean_accuracy:.4f} on {self.num_samples} samples."
        )
