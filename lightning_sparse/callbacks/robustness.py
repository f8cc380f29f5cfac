"""Corruption-robustness evaluation at the end of testing.

After the regular test loop, evaluates the model on the test split under every
(corruption, severity) that the DataModule provides through ``corruption_datasets`` (see
``lightning_sparse.data.robustness.SupportsCorruptions``), then logs clean accuracy, accuracy per
corruption and severity, mean corruption accuracy ("robust accuracy") and, given reference error
rates, CE / mCE and relative mCE (Hendrycks & Dietterich 2019, arXiv:1903.12261). Writes a CSV of
every number and a PNG plot of accuracy against severity, one panel per corruption family.

Under DDP every rank evaluates a disjoint shard and the counts are summed, so each sample counts
once.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, Subset
from typing_extensions import override

from lightning_sparse.metrics.corruption import CORRUPTION_FAMILIES, RobustnessSummary, summarize_robustness


class CorruptionRobustness(Callback):
    """Evaluate a classifier on corrupted copies of its test set when ``trainer.test`` ends.

    Args:
        corruptions: names to evaluate (default: every corruption the DataModule offers, which for
            images is the 15 benchmark corruptions).
        severities: severities to evaluate, each in 1..5.
        reference_errors: corruption -> reference model's error (a float averaged over
            severities, or one per severity) for CE / mCE; e.g.
            ``lightning_sparse.metrics.ALEXNET_IMAGENET_C_ERRORS`` for ImageNet-C.
        reference_clean_error: the reference model's clean error, for relative mCE.
        output_dir: where ``robustness.csv`` and ``robustness.png`` go (default: the trainer's
            ``log_dir``, else ``default_root_dir``).
        batch_size: evaluation batch size (default: the DataModule's ``batch_size`` or 256).
        num_workers: DataLoader workers for the corrupted sets.
        plot: write the PNG plot (needs matplotlib).
        max_samples: evaluate only the first ``max_samples`` test samples (quick checks).

    Raises:
        ValueError: invalid severities / sizes here, or (at ``setup``) a DataModule without
            ``corruption_datasets`` or a corruption it does not offer.

    Examples:
        >>> cb = CorruptionRobustness(corruptions=["fog", "contrast"], severities=[1, 5])
        >>> cb.severities
        (1, 5)
    """

    def __init__(
        self,
        corruptions: Sequence[str] | None = None,
        severities: Sequence[int] = (1, 2, 3, 4, 5),
        reference_errors: Mapping[str, float | Sequence[float]] | None = None,
        reference_clean_error: float | None = None,
        output_dir: str | None = None,
        batch_size: int | None = None,
        num_workers: int = 0,
        plot: bool = True,
        max_samples: int | None = None,
    ) -> None:
        super().__init__()
        severities = tuple(int(s) for s in severities)
        if not severities or any(s not in (1, 2, 3, 4, 5) for s in severities):
            raise ValueError(f"`severities` must be a non-empty list of values in 1..5, got {list(severities)}.")
        if corruptions is not None and (isinstance(corruptions, str) or not corruptions):
            raise ValueError(f"`corruptions` must be a non-empty list of names or None, got {corruptions!r}.")
        for name, value in (("batch_size", batch_size), ("max_samples", max_samples)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be a positive integer or None, got {value!r}.")
        if reference_clean_error is not None and not 0.0 <= reference_clean_error <= 1.0:
            raise ValueError(f"`reference_clean_error` must be an error rate in [0, 1], got {reference_clean_error!r}.")
        self.corruptions = list(corruptions) if corruptions is not None else None
        self.severities = severities
        self.reference_errors = dict(reference_errors) if reference_errors else None
        self.reference_clean_error = reference_clean_error
        self.output_dir = output_dir
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.plot = plot
        self.max_samples = max_samples
        self.summary: RobustnessSummary | None = None

    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "test":
            return
        dm = trainer.datamodule
        if dm is None or not callable(getattr(dm, "corruption_datasets", None)):
            raise ValueError(
                "CorruptionRobustness needs a DataModule with a `corruption_datasets(corruptions, severities)` "
                f"method (e.g. the image and video DataModules of lightning_sparse.data), got {type(dm).__name__}."
            )
        available = getattr(dm, "available_corruptions", None)
        if self.corruptions is not None and available is not None:
            unknown = [c for c in self.corruptions if c not in available]
            if unknown:
                raise ValueError(f"`corruptions` has names {unknown} that {type(dm).__name__} does not offer: {list(available)}.")

    @override
    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        dm = trainer.datamodule
        clean = self._accuracy(trainer, pl_module, self._clean_dataset(dm))
        accuracy: dict[str, dict[int, float]] = {}
        for name, severity, dataset in dm.corruption_datasets(self.corruptions, self.severities):
            accuracy.setdefault(name, {})[severity] = self._accuracy(trainer, pl_module, dataset)
        self.summary = summary = summarize_robustness(
            clean, accuracy, self.reference_errors, self.reference_clean_error
        )
        metrics = {"robustness/clean_acc": clean, "robustness/robust_acc": summary.robust_accuracy}
        metrics.update({f"robustness/acc/{c}": a for c, a in summary.corruption_accuracy.items()})
        if summary.mce is not None:
            metrics["robustness/mCE"] = summary.mce
        if summary.relative_mce is not None:
            metrics["robustness/relative_mCE"] = summary.relative_mce
        for name, value in metrics.items():
            pl_module.log(name, value, sync_dist=False)  # already reduced over ranks
        if trainer.is_global_zero:
            out = self._output_dir(trainer)
            self._write_csv(out / "robustness.csv", summary)
            if self.plot:
                plot_robustness(summary, out / "robustness.png")
            rank_zero_info(
                f"CorruptionRobustness: clean acc {clean:.4f}, robust acc {summary.robust_accuracy:.4f} over "
                f"{len(accuracy)} corruptions x {len(self.severities)} severities; results in {out}."
            )

    def _clean_dataset(self, dm: Any) -> Dataset:
        loader = dm.test_dataloader()
        if isinstance(loader, (list, tuple)):
            loader = loader[0]
        return loader.dataset

    @torch.inference_mode()
    def _accuracy(self, trainer: Trainer, pl_module: LightningModule, dataset: Dataset) -> float:
        n = len(dataset) if self.max_samples is None else min(len(dataset), self.max_samples)
        shard = Subset(dataset, range(trainer.global_rank, n, trainer.world_size))
        batch_size = self.batch_size or int(getattr(trainer.datamodule, "batch_size", 0) or 256)
        loader = DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=self.num_workers)
        counts = torch.zeros(2, dtype=torch.float64, device=pl_module.device)
        for batch in loader:
            x, y = batch[0].to(pl_module.device), batch[1].to(pl_module.device)
            logits = pl_module(x)
            counts[0] += (logits.argmax(-1) == y).sum()
            counts[1] += y.numel()
        if trainer.world_size > 1:
            counts = trainer.strategy.reduce(counts, reduce_op="sum")
        return float(counts[0] / counts[1].clamp_min(1))

    def _output_dir(self, trainer: Trainer) -> Path:
        base = self.output_dir or trainer.log_dir or trainer.default_root_dir
        out = Path(base)
        out.mkdir(parents=True, exist_ok=True)
        return out

    @staticmethod
    def _write_csv(path: Path, summary: RobustnessSummary) -> None:
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["corruption", "severity", "accuracy", "error", "ce", "relative_ce"])
            writer.writeheader()
            for row in summary.rows():
                writer.writerow(row)
            for name, acc in summary.corruption_accuracy.items():
                writer.writerow({"corruption": name, "severity": "mean", "accuracy": acc, "error": 1 - acc,
                                 "ce": summary.ce.get(name, ""), "relative_ce": summary.relative_ce.get(name, "")})
            writer.writerow({"corruption": "mean_corruption", "severity": "mean", "accuracy": summary.robust_accuracy,
                             "error": 1 - summary.robust_accuracy, "ce": "" if summary.mce is None else summary.mce,
                             "relative_ce": "" if summary.relative_mce is None else summary.relative_mce})


def plot_robustness(summary: RobustnessSummary, path: str | Path) -> None:
    """Save accuracy against severity, one panel per corruption family, as a PNG."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = [(f, [c for c in names if c in summary.accuracy]) for f, names in CORRUPTION_FAMILIES.items()]
    other = [c for c in summary.accuracy if not any(c in names for _, names in CORRUPTION_FAMILIES.items())]
    families = [(f, cs) for f, cs in families + [("other", other)] if cs]
    fig, axes = plt.subplots(1, len(families), figsize=(4 * len(families), 3.4), sharey=True, squeeze=False)
    for ax, (family, names) in zip(axes[0], families):
        for name in names:
            sev = sorted(summary.accuracy[name])
            ax.plot(sev, [summary.accuracy[name][s] for s in sev], marker="o", label=name)
        ax.axhline(summary.clean_accuracy, color="black", linestyle="--", linewidth=1, label="clean")
        ax.set_title(family)
        ax.set_xlabel("severity")
        ax.set_xticks(range(1, 6))
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("accuracy")
    fig.suptitle(f"robust accuracy {summary.robust_accuracy:.3f} (clean {summary.clean_accuracy:.3f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

