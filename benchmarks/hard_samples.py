"""Sparse versus dense networks trained on hard samples, on real CIFAR-10.

Claim under test (Xiao et al., "Are Sparse Neural Networks Better Hard Sample Learners?", BMVC
2024, arXiv:2409.09196): sparse networks trained on hard samples (an EL2N-hardest subset,
corrupted data, PGD adversarial training, limited data) often match or beat dense networks at
some sparsity, and layer-wise density ratios matter when training from scratch.

What runs, all with the same model, optimizer, schedule and budget:

1. **EL2N scores** (Paul et al. 2021, arXiv:2107.07075): ``--score-runs`` short dense runs on the
   training subset, each writing ``HardnessScores`` (EL2N after ``--score-epochs`` epochs),
   averaged;
2. **the hardest ``--hard-fraction``** of the training subset (``subset="hardest:F"``), then dense
   versus SET-ERK (``DynamicSparseTraining("set", distribution="erk")``), SNIP, SynFlow
   (``PruningAtInit``), GMP (``DynamicSparseTraining("gmp")``), LTH (the dense run of the same
   seed writes a ``LotteryTicket`` rewound to its initialization; ``DynamicSparseTraining("static",
   masks_from=...)`` trains it) and random-uniform (``"static"``, uniform densities) at every
   ``--sparsities``, for every seed,
   and, for reference, dense on a random subset of the same size (``subset="random:F"``);
3. **a PGD row**: dense versus SET-ERK at the first sparsity, trained with PGD-10
   (``AdversarialTraining``: L-inf eps 8/255, step 2/255; the adversarial examples are the hard
   samples, as the paper's VGG-16 / CIFAR-10 setting) on ``--pgd-train-subset`` training images,
   scored by PGD-20 accuracy (``AdversarialRobustness``);
4. **a limited-data row**: dense versus SET-ERK on ``--limited-fraction`` of the training subset's
   size (a stratified subset of ``round(F * N)`` images; ``train_fraction=F`` with the whole split),
   every sparsity.

Data: the real CIFAR-10 of ``../shared/data/cifar10-q75`` (re-encoded as JPEG quality 75, so the
"clean" images carry mild JPEG artefacts); ``--quick`` uses a fixed class-balanced training
subset and a fixed test subset (seed 0), the same for every run; a run's seed changes the
initialisation, the masks and the augmentation and batch order.

Table: clean test accuracy (and PGD-20 accuracy in the PGD rows) as mean +- std over seeds, and
the gap to dense of the same seed (mean +- std). The last line is a one-line summary.

Exit status 1 when a stated target is missed: ``--quick`` must finish within 20 minutes and every
model must learn (test accuracy above ``--min-acc``). Whether sparse beats dense is reported, not
enforced.

Usage:
    python benchmarks/hard_samples.py --quick
    python benchmarks/hard_samples.py --accelerator gpu --model resnet18 --epochs 200 --train-subset 0
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything

from _common import add_data_dir_arg, add_threads_arg, out, quiet_lightning, set_threads
from lightning_sparse.callbacks import (
    AdversarialRobustness,
    AdversarialTraining,
    DynamicSparseTraining,
    HardnessScores,
    LotteryTicket,
    PruningAtInit,
)
from lightning_sparse.data import CIFAR10DataModule
from lightning_sparse.tasks import ImageClassifier

QUICK_BUDGET_S = 20 * 60
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-q75"
METHODS = ("dense", "set-erk", "snip", "synflow", "gmp", "lth", "random-uniform")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized run (< 20 minutes on 2 cores)")
    add_data_dir_arg(p, str(DEFAULT_DATA), "CIFAR-10 (any CIFAR10DataModule layout; default: %(default)s)")
    p.add_argument("--cache-dir", default=os.environ.get("LIGHTNING_SPARSE_CACHE",
                                                         str(Path.home() / ".cache" / "lightning_sparse" / "cifar10")))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--sparsities", nargs="+", type=float, default=[0.5, 0.9])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--model", default=None, help="registered backbone (quick: fast_resnet, full: resnet18)")
    p.add_argument("--width", type=float, default=None, help="fast_resnet width multiplier")
    p.add_argument("--epochs", type=int, default=None, help="training epochs of every run on the hard subset")
    p.add_argument("--score-epochs", type=int, default=None, help="dense epochs before EL2N scoring")
    p.add_argument("--score-runs", type=int, default=2, help="scoring runs averaged")
    p.add_argument("--train-subset", type=int, default=None, help="training images (0: all)")
    p.add_argument("--test-subset", type=int, default=None, help="test images (0: all)")
    p.add_argument("--hard-fraction", type=float, default=0.3)
    p.add_argument("--limited-fraction", type=float, default=0.1)
    p.add_argument("--pgd-epochs", type=int, default=None)
    p.add_argument("--pgd-train-subset", type=int, default=None, help="training images of the PGD row (0: all)")
    p.add_argument("--no-pgd", action="store_true", help="skip the PGD row")
    p.add_argument("--no-limited", action="store_true", help="skip the limited-data row")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--update-interval", type=int, default=None)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--min-acc", type=float, default=0.15, help="every model must beat this test accuracy")
    add_threads_arg(p, 2, "the convolutions on 32x32 images use both cores")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {"model": "fast_resnet" if quick else "resnet18", "width": 0.25 if quick else 1.0,
                "epochs": 8 if quick else 200, "score_epochs": 2 if quick else 20, "train_subset": 8_000 if quick else 0,
                "test_subset": 2_000 if quick else 0, "pgd_epochs": 2 if quick else 200,
                "pgd_train_subset": 3_000 if quick else 0,
                "update_interval": 10 if quick else 1000}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def data(args, **kwargs) -> CIFAR10DataModule:
    # fixed subsets (seed 0): every run is trained and scored on the same images
    return CIFAR10DataModule(data_dir=args.data_dir, batch_size=args.batch_size, val_split=0, augment=True, seed=0,
                             train_subset=args.train_subset or None, test_subset=args.test_subset or None,
                             cache_dir=args.cache_dir, **kwargs)


def limited_data(args) -> CIFAR10DataModule:
    """``--limited-fraction`` of the training images: of the subset (``round(F * N)`` images,
    stratified) or, with the whole split, ``train_fraction=F``."""
    if args.train_subset:
        n = max(10, round(args.limited_fraction * args.train_subset))
        return CIFAR10DataModule(data_dir=args.data_dir, batch_size=args.batch_size, val_split=0, augment=True, seed=0,
                                 train_subset=n, test_subset=args.test_subset or None, cache_dir=args.cache_dir)
    return data(args, train_fraction=args.limited_fraction)


def task(args) -> ImageClassifier:
    kwargs = {"num_classes": 10}
    if args.model == "fast_resnet":
        kwargs["width"] = args.width
    return ImageClassifier(backbone=args.model, backbone_kwargs=kwargs, num_classes=10, optimizer="sgd", lr=args.lr,
                           momentum=0.9, nesterov=True, weight_decay=5e-4, scheduler="cosine")


def sparse_callback(method: str, sparsity: float, seed: int, args, tickets: Path):
    common = {"sparsity": sparsity, "seed": seed, "summary": False}
    if method == "set-erk":
        return DynamicSparseTraining("set", distribution="erk", update_interval=args.update_interval, **common)
    if method == "snip":
        return PruningAtInit("snip", **common)
    if method == "synflow":
        return PruningAtInit("synflow", iterations=100, input_shape=(3, 32, 32), **common)
    if method == "gmp":
        return DynamicSparseTraining("gmp", update_interval=args.update_interval, prune_end_step=0.5, **common)
    if method == "random-uniform":
        return DynamicSparseTraining("static", distribution="uniform", **common)
    if method == "lth":
        return DynamicSparseTraining("static", masks_from=str(tickets / f"lth_{sparsity}_{seed}.pt"), seed=seed,
                                     summary=False)
    raise ValueError(method)


def fit(args, seed: int, dm, callbacks, epochs: int) -> tuple[ImageClassifier, Trainer]:
    seed_everything(seed, workers=True)
    model = task(args)
    trainer = Trainer(max_epochs=epochs, accelerator=args.accelerator, devices=1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=callbacks, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    return model, trainer


def test_acc(trainer, model, dm) -> dict[str, float]:
    (metrics,) = trainer.test(model, datamodule=dm, verbose=False)
    return {k: float(v) for k, v in metrics.items()}


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):5.2f} +- {100 * s:4.2f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_lightning()
    threads = set_threads(args.threads)
    begin = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="hard_samples_"))
    tickets = work / "tickets"
    out(f"# hard_samples: CIFAR-10 (JPEG-q75 source images), {args.model}"
        + (f" width {args.width}" if args.model == "fast_resnet" else "")
        + f", training subset {args.train_subset or 'all'}, test subset {args.test_subset or 'all'}, EL2N from "
        f"{args.score_runs} dense run(s) of {args.score_epochs} epochs, hardest {args.hard_fraction:.0%}, {args.epochs} "
        f"epochs per run, seeds {args.seeds}, {threads} threads, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}")

    # 1. EL2N scores of the training subset, averaged over short dense runs
    score_files = []
    for run in range(args.score_runs):
        path = work / f"el2n_{run}.pt"
        fit(args, 100 + run, data(args), [HardnessScores(str(path), score="el2n")], args.score_epochs)
        score_files.append(str(path))
    hard = dict(subset=f"hardest:{args.hard_fraction}", scores_file=score_files)
    n_hard = len(data_setup(args, **hard).train_dataset)
    out(f"# EL2N scores from {len(score_files)} run(s); hardest subset: {n_hard} training images")

    rows: dict[tuple[str, str, float], dict[int, dict[str, float]]] = {}

    def record(setting: str, method: str, sparsity: float, seed: int, metrics: dict[str, float]) -> None:
        rows.setdefault((setting, method, sparsity), {})[seed] = metrics
        extra = f"  PGD-20 {100 * metrics['test/pgd_acc']:.2f}" if "test/pgd_acc" in metrics else ""
        out(f"#   {setting:<8} {method:<15} sparsity {sparsity:.2f} seed {seed}: test acc "
            f"{100 * metrics['test/acc']:.2f}{extra}  ({time.perf_counter() - begin:.0f} s)")

    # 2. the hardest subset: dense (writing the LTH tickets) and every sparse method
    for seed in args.seeds:
        for method in args.methods:
            for sparsity in ([0.0] if method == "dense" else args.sparsities):
                if method == "dense":
                    callbacks = [LotteryTicket(sparsity=s, rewind="init", path=str(tickets / f"lth_{s}_{seed}.pt"))
                                 for s in args.sparsities] if "lth" in args.methods else []
                else:
                    callbacks = [sparse_callback(method, sparsity, seed, args, tickets)]
                dm = data(args, **hard)
                model, trainer = fit(args, seed, dm, callbacks, args.epochs)
                record("hard", method, sparsity, seed, test_acc(trainer, model, dm))

    # the reference: a random subset of the same size, dense
    for seed in args.seeds:
        dm = data(args, subset=f"random:{args.hard_fraction}")
        model, trainer = fit(args, seed, dm, [], args.epochs)
        record("random", "dense", 0.0, seed, test_acc(trainer, model, dm))

    # 3. PGD adversarial training (the adversarial examples are the hard samples): dense versus SET-ERK
    if not args.no_pgd:
        for seed in args.seeds:
            for method, sparsity in (("dense", 0.0), ("set-erk", args.sparsities[0])):
                callbacks = [AdversarialTraining(steps=10, seed=seed), AdversarialRobustness(steps=20, seed=seed)]
                if method != "dense":
                    callbacks.insert(0, sparse_callback(method, sparsity, seed, args, tickets))
                dm = CIFAR10DataModule(data_dir=args.data_dir, batch_size=args.batch_size, val_split=0, augment=True,
                                       seed=0, train_subset=args.pgd_train_subset or None,
                                       test_subset=args.test_subset or None, cache_dir=args.cache_dir)
                model, trainer = fit(args, seed, dm, callbacks, args.pgd_epochs)
                record("pgd", method, sparsity, seed, test_acc(trainer, model, dm))

    # 4. limited data: dense versus SET-ERK on a fraction of the training subset
    if not args.no_limited:
        for seed in args.seeds:
            for method, sparsity in [("dense", 0.0)] + [("set-erk", s) for s in args.sparsities]:
                callbacks = [] if method == "dense" else [sparse_callback(method, sparsity, seed, args, tickets)]
                dm = limited_data(args)
                model, trainer = fit(args, seed, dm, callbacks, args.epochs)
                record("limited", method, sparsity, seed, test_acc(trainer, model, dm))

    out()
    out("| setting | method | sparsity | test acc % | gap to dense (pp) | PGD-20 acc % | PGD gap to dense (pp) |")
    out("|---|---|---:|---:|---:|---:|---:|")
    wins, compared, failures = 0, 0, []
    for (setting, method, sparsity), by_seed in rows.items():
        dense = rows.get((setting, "dense", 0.0), {})
        acc = [m["test/acc"] for m in by_seed.values()]
        gaps = [m["test/acc"] - dense[s]["test/acc"] for s, m in by_seed.items() if s in dense and method != "dense"]
        pgd = [m["test/pgd_acc"] for m in by_seed.values() if "test/pgd_acc" in m]
        pgd_gaps = [m["test/pgd_acc"] - dense[s]["test/pgd_acc"] for s, m in by_seed.items()
                    if s in dense and method != "dense" and "test/pgd_acc" in m]
        out(f"| {setting} | {method} | {sparsity:.2f} | {mean_std(acc)} | {mean_std(gaps)} | {mean_std(pgd)} | "
            f"{mean_std(pgd_gaps)} |")
        if gaps:
            compared += 1
            wins += statistics.fmean(gaps) >= 0
        failures += [f"{setting}/{method}/{sparsity}: {100 * a:.1f}%" for a in acc if a <= args.min_acc]
    out()
    elapsed = time.perf_counter() - begin
    problems = []
    if failures:
        problems.append(f"models that did not learn (test acc <= {100 * args.min_acc:.0f}%): {failures[:4]}")
    if args.quick and elapsed > QUICK_BUDGET_S:
        problems.append(f"quick run took {elapsed:.0f} s > {QUICK_BUDGET_S} s")
    runs = sum(len(v) for v in rows.values()) + args.score_runs
    out(f"hard_samples: sparse test accuracy >= dense (mean over seeds) in {wins}/{compared} configs; {runs} runs in "
        f"{elapsed / 60:.1f} min; " + ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
    return 0 if not problems else 1


def data_setup(args, **kwargs) -> CIFAR10DataModule:
    dm = data(args, **kwargs)
    dm.setup("fit")
    return dm


if __name__ == "__main__":
    sys.exit(main())
