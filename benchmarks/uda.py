"""Unsupervised domain adaptation between real digit domains: source-only vs uniform OT vs LIWUDA.

Claim under test (Zhu et al., "Learning Instance Weighting for Unsupervised Domain Adaptation",
arXiv:2312.05024): one instance-weighting method (a weight network + weighted optimal transport)
improves on the source-only model in closed-set, partial, open-set and universal domain
adaptation. Here on two real domains available offline: MNIST (``../shared/data/mnist-10k``,
28x28 handwriting) and the UCI optical digits (scikit-learn's ``load_digits``, 8x8 scans resized
to the same size: blurrier, thicker strokes), in both directions. Backbones are small CNNs trained
from scratch (no ImageNet weights here), so the numbers are not the paper's Office-31 ones.

The class splits (``standard_split("digits", setting)``):

- closed: source 0-9, target 0-9;
- partial: source 0-9, target 0-4 (5 source-private classes);
- open: source 0-5, target 0-9 (4 target-private classes, one "unknown");
- universal: source 0-6, target 0-4 and 7-9 (shared 0-4, source-private 5-6, target-private 7-9).

Every run: the same network (``small_cnn``, bottleneck, cosine classifier), batch size, number of
steps and schedule; the methods differ only in the loss (``DomainAdaptation(method=...)``). Scored
on all target images with their labels (never used in training) after the last step (no model
selection on target labels): accuracy for closed / partial, H-score (harmonic mean of OS* and
UNK) for open / universal; source-only and OT call a target image unknown when their top softmax
probability is at most 0.5 (the usual confidence rejection), LIWUDA when its weight is. Mean +-
std over seeds.

Exit status 1 when a stated target is missed: LIWUDA above source-only on average over the four
settings (and both directions), and ``--quick`` within 20 minutes.

Usage:
    python benchmarks/uda.py --quick
    python benchmarks/uda.py --steps 3000 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from lightning.pytorch import Trainer, seed_everything

from _common import add_data_dir_arg, add_threads_arg, fmt_mean_std, out, quiet_lightning, set_threads
from lightning_sparse.data.domain import DomainAdaptationDataModule, MNISTDomain, UCIDigitsDomain
from lightning_sparse.tasks.domain_adaptation import DomainAdaptation

QUICK_BUDGET_S = 20 * 60
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-10k"
SETTINGS = ("closed", "partial", "open", "universal")
METHODS = ("source_only", "ot", "liwuda")
DIRECTIONS = ("mnist>uci", "uci>mnist")
METRIC = {"closed": "acc", "partial": "acc", "open": "h_score", "universal": "h_score"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized run (< 20 minutes on 2 cores)")
    add_data_dir_arg(p, str(DEFAULT_DATA), "folder of mnist10k.npz (default: %(default)s)")
    p.add_argument("--directions", nargs="+", choices=DIRECTIONS, default=list(DIRECTIONS))
    p.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0 1 (--quick), 0 1 2")
    p.add_argument("--steps", type=int, default=None, help="training batches per run (default 600 quick, 3000)")
    p.add_argument("--batch-size", type=int, default=64, help="per domain")
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--width", type=int, default=16, help="small_cnn width")
    p.add_argument("--mnist-samples", type=int, default=None, help="MNIST subset (default 3000 quick, all)")
    p.add_argument("--solver", choices=("exact", "entropic"), default="exact")
    p.add_argument("--lr", type=float, default=0.03)
    add_threads_arg(p, 2, "the machine's two cores")
    args = p.parse_args(argv)
    args.seeds = args.seeds if args.seeds is not None else ([0, 1] if args.quick else [0, 1, 2])
    args.steps = args.steps if args.steps is not None else (600 if args.quick else 3000)
    args.mnist_samples = args.mnist_samples if args.mnist_samples is not None else (3000 if args.quick else None)
    if not (Path(args.data_dir) / "mnist10k.npz").is_file():
        p.error(f"--data-dir must hold mnist10k.npz, got {args.data_dir!r}")
    return args


def domains(args: argparse.Namespace, direction: str) -> tuple:
    mnist = MNISTDomain(str(Path(args.data_dir) / "mnist10k.npz"), image_size=args.image_size,
                        max_samples=args.mnist_samples)
    uci = UCIDigitsDomain(image_size=args.image_size)
    return (mnist, uci) if direction == "mnist>uci" else (uci, mnist)


def run(args: argparse.Namespace, direction: str, setting: str, method: str, seed: int) -> float:
    """One adaptation run; returns the setting's target score (%)."""
    seed_everything(seed, workers=True)
    source, target = domains(args, direction)
    dm = DomainAdaptationDataModule(source, target, benchmark="digits", setting=setting,
                                    batch_size=args.batch_size, seed=seed)
    task = DomainAdaptation("small_cnn", {"in_channels": 1, "width": args.width}, num_classes=dm.num_classes,
                            setting=setting, method=method, bottleneck_dim=64, lr=args.lr, backbone_lr_scale=1.0,
                            solver=args.solver)
    trainer = Trainer(max_steps=args.steps * task.optimizers_per_batch, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      limit_val_batches=0, deterministic=False)
    trainer.fit(task, datamodule=dm)
    scores = trainer.test(task, datamodule=dm, verbose=False)[0]
    return 100.0 * float(scores[f"test/{METRIC[setting]}"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_lightning()
    threads = set_threads(args.threads)
    start = time.perf_counter()
    out(f"# uda: {', '.join(args.directions)}; settings {', '.join(args.settings)}; seeds {args.seeds}; "
        f"{args.steps} steps of {args.batch_size}+{args.batch_size} images {args.image_size}x{args.image_size}; "
        f"small_cnn width {args.width} from scratch; {args.solver} transport; {threads} threads")
    results: dict[tuple[str, str, str], list[float]] = {}
    for direction in args.directions:
        for setting in args.settings:
            for method in args.methods:
                for seed in args.seeds:
                    t0 = time.perf_counter()
                    score = run(args, direction, setting, method, seed)
                    results.setdefault((direction, setting, method), []).append(score)
                    out(f"#   {direction} {setting} {method} seed {seed}: {METRIC[setting]} {score:.1f} "
                        f"({time.perf_counter() - t0:.0f} s)")
    out()
    header = "| direction | setting | score | " + " | ".join(args.methods) + " |"
    gain_col = "liwuda" in args.methods and "source_only" in args.methods
    out(header + (" LIWUDA - source-only |" if gain_col else ""))
    out("|---" * (3 + len(args.methods) + gain_col) + "|")
    gains = []
    for direction in args.directions:
        for setting in args.settings:
            cells = [fmt_mean_std(results[(direction, setting, m)]) for m in args.methods]
            row = f"| {direction} | {setting} | {'accuracy' if METRIC[setting] == 'acc' else 'H-score'} % | "
            row += " | ".join(cells) + " |"
            if gain_col:
                diffs = [a - b for a, b in zip(results[(direction, setting, "liwuda")],
                                               results[(direction, setting, "source_only")])]
                gains.append(statistics.mean(diffs))
                row += f" {fmt_mean_std(diffs)} |"
            out(row)
    elapsed = time.perf_counter() - start
    failures = []
    if gain_col:
        mean_gain = statistics.mean(gains)
        if mean_gain <= 0:
            failures.append(f"LIWUDA not above source-only on average ({mean_gain:+.1f} points)")
    else:
        mean_gain = float("nan")
    if args.quick and elapsed > QUICK_BUDGET_S:
        failures.append(f"--quick took {elapsed / 60:.1f} min (> 20)")
    out()
    out(f"uda: LIWUDA - source-only {mean_gain:+.1f} points on average over {len(gains)} setting x direction "
        f"pairs; {len(results) * len(args.seeds)} runs in {elapsed / 60:.1f} min; "
        + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
