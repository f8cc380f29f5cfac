"""DSN versus the same network trained dense versus MiniRocket on the UCR/UEA problems inside aeon.

Claim under test (Xiao et al. 2022, "Dynamic Sparse Network for Time Series Classification:
Learning What to 'See'", NeurIPS 2022, arXiv:2212.09840): DSN reaches state-of-the-art accuracy
on the UCR and UEA archives at less than half the FLOPs of the baselines.

Setup: the eight classification problems that ship inside aeon (no download): GunPoint,
ArrowHead, ItalyPowerDemand, OSULeaf, ACSF1, PickupGestureWiimoteZ (univariate; UCR settings:
width 47, density 0.2) and BasicMotions, JapaneseVowels (multivariate; UEA settings: width 59,
density 0.1), each with the archive's own train/test split, z-normalised per series, zero-padded
to the longest series. The two unequal-length problems (JapaneseVowels, PickupGestureWiimoteZ)
give the networks each series' length, so padding never reaches the result; MiniRocket sees the
same zero-padded arrays (its aeon implementation takes equal lengths only).
``--data-dir DIR`` reads any other problem of the archive layout (``DIR/<Name>/<Name>_TRAIN.ts``
and ``_TEST``, or ``.tsv`` / UCR-2015 ``.txt`` / ``.arff``) with the same settings by channel count.

Methods, for every data set and seed:

- ``DSN``: ``TimeSeriesClassifier("dsn" / "dsn_uea")`` with ``DynamicSparseTraining`` in the
  paper's settings: the large convolutions only, ``allowed_regions="model"`` (groups of 13 / 26 /
  39 taps, exact counts per group), ``density_within_regions=True`` at the paper's density,
  ``init_mask="leftmost"``, magnitude prune and random regrow of a drop fraction 0.5 decayed by a
  cosine, every ``--update-every`` epochs (5), frozen for the last 20% of training.
- ``dense``: the same network, task and schedule without the callback (every tap of every kernel).
- ``MiniRocket``: aeon's ``MiniRocketClassifier`` (Dempster et al. 2021, arXiv:2012.08791;
  10,000 kernels, ridge regression with cross-validated regularisation, ``random_state=seed``).

Protocol (the paper's): Adam at 3e-4, cosine to 1e-4, the DSN batch-size rule, no validation
split; the weights of the epoch with the lowest training loss
(``ModelCheckpoint(monitor="train/loss_epoch", mode="min")``) are scored once on the test split.
MACs per series (one forward pass of one series of the data set's padded length) come from
``lightning_sparse.models.conv_linear_flops``, for DSN with the final masks of the callback
(every layer keeps its exact count throughout, so any epoch's masks give the same count).

Table: per data set, the test accuracy of each method as mean +- standard deviation over the
seeds, DSN's MACs and the dense MACs; then the mean accuracy and the mean rank over the data
sets (rank 1 = best of the three on a data set, ties share the mean rank).

Targets (exit status 1 when one is missed):

- DSN's MACs are at most half the dense network's on every data set;
- DSN's accuracy is within noise of dense: its mean over the data sets is at most ``--max-gap``
  (2) percentage points below the dense mean;
- ``--quick`` finishes within 20 minutes, everything included.

Whether DSN beats MiniRocket is reported, not enforced: the table shows what was measured.

``--quick``: 3 seeds, 30 epochs instead of the paper's 1000 and widths 16 (UCR) / 20 (UEA) instead
of 47 / 59 (the MAC ratio between DSN and dense hardly depends on the width: 0.155 at width 16 and
at 47; the short budget is what a 2-core CPU allows). The full mode uses the paper's widths and
epochs and is meant for a GPU (``--accelerator gpu``).

Usage:
    python benchmarks/dsn.py --quick                      # 7.7 minutes on 2 shared CPU cores
    python benchmarks/dsn.py --accelerator gpu            # the paper's 1000 epochs and widths
    python benchmarks/dsn.py --quick --datasets GunPoint ArrowHead --seeds 0
    python benchmarks/dsn.py --quick --data-dir /data/UCRArchive_2018 --datasets Trace Plane
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint

from _common import add_data_dir_arg, add_threads_arg, set_threads
from lightning_sparse.callbacks import DynamicSparseTraining
from lightning_sparse.data import TimeSeriesDataModule
from lightning_sparse.data.timeseries import BUNDLED_DATASETS
from lightning_sparse.models import conv_linear_flops
from lightning_sparse.tasks import TimeSeriesClassifier

QUICK_BUDGET_S = 20 * 60
DATASETS = ("GunPoint", "ArrowHead", "ItalyPowerDemand", "OSULeaf", "ACSF1", "BasicMotions", "JapaneseVowels",
            "PickupGestureWiimoteZ")
METHODS = ("DSN", "dense", "MiniRocket")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized run (< 20 minutes on 2 cores)")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), metavar="NAME",
                   help=f"problem names; without --data-dir one of the bundled {list(DATASETS)}")
    add_data_dir_arg(p, None, "folder of the UCR/UEA archive layout, DIR/<Name>/<Name>_TRAIN.<ext> and _TEST.<ext> "
                              "(.ts, .tsv, UCR-2015 .txt, .arff; unequal lengths allowed); default: the copies "
                              "inside aeon")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="quick: 30, full: 1000 (the paper)")
    p.add_argument("--width", type=int, default=None, help="UCR width (quick: 16, full: 47)")
    p.add_argument("--width-uea", type=int, default=None, help="UEA width (quick: 20, full: 59)")
    p.add_argument("--update-every", type=int, default=5, help="epochs between topology updates (the paper: 5)")
    p.add_argument("--max-gap", type=float, default=2.0, help="largest allowed mean DSN-below-dense gap, in pp")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--loader", choices=("memory", "dataset"), default="memory",
                   help="batches from the in-memory batch loader (default) or a per-sample DataLoader")
    add_threads_arg(p, 1, "the DSN networks are small, so per-op overhead dominates and a second thread "
                          "slows a step down as soon as another process is busy (see docs/dsn.md, 'Threads')")
    args = p.parse_args(argv)
    if args.data_dir is None:
        unknown = [name for name in args.datasets if name not in BUNDLED_DATASETS]
        if unknown:
            p.error(f"unknown data set(s) {unknown} without --data-dir: the bundled ones are "
                    f"{list(BUNDLED_DATASETS)}; for any other UCR/UEA problem pass --data-dir DIR "
                    "(DIR/<Name>/<Name>_TRAIN.ts and _TEST.ts, or .tsv / .txt / .arff)")
    defaults = {"epochs": 30 if args.quick else 1000, "width": 16 if args.quick else 47,
                "width_uea": 20 if args.quick else 59}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def data_module(name: str, data_dir: str | None = None, loader: str = "memory") -> TimeSeriesDataModule:
    """The problem ``name`` from ``data_dir`` (None: the copies inside aeon), with lengths if they differ;
    batches from the in-memory batch loader (``loader="memory"``, the default) or a per-sample DataLoader."""
    probe = TimeSeriesDataModule(name, data_dir=data_dir, loader=loader)
    unequal = len(set(probe.train_raw.lengths.tolist()) | set(probe.test_raw.lengths.tolist())) > 1
    return TimeSeriesDataModule(name, data_dir=data_dir, return_lengths=unequal, loader=loader) if unequal else probe


def make_dst(seed: int, multivariate: bool, update_every: int) -> DynamicSparseTraining:
    """The DSN callback in the paper's settings; ``seed`` drives its mask generator (random regrowth)."""
    return DynamicSparseTraining(
        method="rigl", grow="random", sparsity=1.0 - (0.1 if multivariate else 0.2), distribution="uniform",
        include=["model.blocks.*.conv.weight"], allowed_regions="model", density_within_regions=True,
        init_mask="leftmost", drop_fraction=0.5, drop_schedule="cosine", stop_step=0.8,
        update_interval_epochs=update_every, seed=seed, summary=False, log_per_layer=False,
    )


def train_network(args, dm: TimeSeriesDataModule, sparse: bool, seed: int) -> tuple[float, float, int]:
    """Test accuracy of the lowest-training-loss epoch, its MACs per series and the dense MACs."""
    seed_everything(seed, workers=True)
    multivariate = dm.num_channels > 1
    backbone = "dsn_uea" if multivariate else "dsn"
    width = args.width_uea if multivariate else args.width
    task = TimeSeriesClassifier(backbone, {"width": width}, num_classes=dm.num_classes, in_channels=dm.num_channels)
    callbacks = []
    dst = None
    if sparse:
        dst = make_dst(seed, multivariate, args.update_every)
        callbacks.append(dst)
    with tempfile.TemporaryDirectory() as tmp:
        callbacks.append(ModelCheckpoint(dirpath=tmp, monitor="train/loss_epoch", mode="min", save_top_k=1,
                                         save_weights_only=True, save_on_train_epoch_end=True))
        trainer = Trainer(max_epochs=args.epochs, accelerator=args.accelerator, devices=1, logger=False,
                          enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                          num_sanity_val_steps=0, default_root_dir=tmp)
        trainer.fit(task, datamodule=dm)
        (metrics,) = trainer.test(task, datamodule=dm, ckpt_path="best", verbose=False)
    example = torch.zeros(1, dm.num_channels, dm.series_length, device=task.device)
    count = conv_linear_flops(task, example, masks=dst.masks if dst is not None else None)
    return float(metrics["test/acc"]), count.sparse, count.dense


def as_arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    items = [dataset[i] for i in range(len(dataset))]
    x = np.stack([item[0].numpy() for item in items]).astype(np.float64)  # (N, C, L), zero-padded
    y = np.array([int(item[1]) for item in items])
    return x, y


def train_minirocket(dm: TimeSeriesDataModule, seed: int) -> float:
    from aeon.classification.convolution_based import MiniRocketClassifier

    dm.setup("fit")
    dm.setup("test")
    x_train, y_train = as_arrays(dm.train_dataset)
    x_test, y_test = as_arrays(dm.test_dataset)
    clf = MiniRocketClassifier(n_kernels=10_000, random_state=seed, n_jobs=1)
    clf.fit(x_train, y_train)
    return float((clf.predict(x_test) == y_test).mean())


def mean_std(values: list[float]) -> str:
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):5.1f} +- {100 * s:4.1f}"


def ranks(scores: dict[str, float]) -> dict[str, float]:
    """Rank 1 = highest score; ties share the mean of their ranks."""
    order = sorted(scores, key=lambda k: -scores[k])
    out: dict[str, float] = {}
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in order[i : j + 1]:
            out[k] = (i + j) / 2 + 1
        i = j + 1
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    threads = set_threads(args.threads)
    start = time.perf_counter()
    acc: dict[str, dict[str, list[float]]] = {d: {m: [] for m in METHODS} for d in args.datasets}
    macs: dict[str, tuple[float, float]] = {}
    for name in args.datasets:
        dm = data_module(name, args.data_dir, args.loader)
        for seed in args.seeds:
            t0 = time.perf_counter()
            a_sparse, sparse_macs, dense_macs = train_network(args, dm, True, seed)
            a_dense, _, _ = train_network(args, dm, False, seed)
            a_rocket = train_minirocket(dm, seed)
            for method, a in zip(METHODS, (a_sparse, a_dense, a_rocket)):
                acc[name][method].append(a)
            macs[name] = (sparse_macs, dense_macs)
            out(f"# {name} seed {seed}: DSN {a_sparse:.3f} dense {a_dense:.3f} MiniRocket {a_rocket:.3f} "
                f"({time.perf_counter() - t0:.0f} s)")
    elapsed = time.perf_counter() - start

    out()
    source = f"UCR/UEA problems from {args.data_dir}" if args.data_dir else "UCR/UEA problems bundled with aeon"
    out(f"{source}, seeds {args.seeds}, {args.epochs} epochs, widths {args.width} (UCR) / "
        f"{args.width_uea} (UEA), DSN density 0.2 (UCR) / 0.1 (UEA) inside the regions, updates every "
        f"{args.update_every} epochs; {platform.processor() or platform.machine()} {args.accelerator}, "
        f"{threads} threads, torch {torch.__version__}")
    out("| data set | DSN acc % | dense acc % | MiniRocket acc % | DSN MMACs | dense MMACs | DSN / dense |")
    out("|---|---:|---:|---:|---:|---:|---:|")
    rank_sum = {m: 0.0 for m in METHODS}
    for name in args.datasets:
        means = {m: statistics.fmean(acc[name][m]) for m in METHODS}
        for m, r in ranks(means).items():
            rank_sum[m] += r
        s, d = macs[name]
        out(f"| {name} | {mean_std(acc[name]['DSN'])} | {mean_std(acc[name]['dense'])} | "
            f"{mean_std(acc[name]['MiniRocket'])} | {s / 1e6:.2f} | {d / 1e6:.2f} | {s / d:.3f} |")
    n = len(args.datasets)
    mean_acc = {m: statistics.fmean(statistics.fmean(acc[d][m]) for d in args.datasets) for m in METHODS}
    mean_rank = {m: rank_sum[m] / n for m in METHODS}
    ratio = max(macs[d][0] / macs[d][1] for d in args.datasets)
    out(f"| mean accuracy % | {100 * mean_acc['DSN']:.1f} | {100 * mean_acc['dense']:.1f} | "
        f"{100 * mean_acc['MiniRocket']:.1f} | | | max {ratio:.3f} |")
    out(f"| mean rank | {mean_rank['DSN']:.2f} | {mean_rank['dense']:.2f} | {mean_rank['MiniRocket']:.2f} | | | |")
    out()

    gap = 100 * (mean_acc["dense"] - mean_acc["DSN"])
    problems = []
    if ratio > 0.5:
        problems.append(f"DSN MACs reach {ratio:.3f} x dense (> 0.5)")
    if gap > args.max_gap:
        problems.append(f"DSN mean accuracy {gap:.1f} pp below dense (> {args.max_gap})")
    if args.quick and elapsed > QUICK_BUDGET_S:
        problems.append(f"quick run took {elapsed:.0f} s > {QUICK_BUDGET_S} s")
    best = min(mean_rank, key=mean_rank.get)
    out(f"dsn: DSN at <= {ratio:.3f} x dense MACs on all {n} data sets, mean accuracy {100 * mean_acc['DSN']:.1f}% vs "
        f"dense {100 * mean_acc['dense']:.1f}% vs MiniRocket {100 * mean_acc['MiniRocket']:.1f}% (best mean rank: "
        f"{best}); {3 * n * len(args.seeds)} runs in {elapsed / 60:.1f} min; "
        + ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
