"""E2ENet against a dense 3D U-Net on a real CT volume: Dice, parameters, non-zero parameters, FLOPs.

Claim under test (Wu et al., "E2ENet: Dynamic Sparse Feature Fusion for Accurate and Efficient
3D Medical Image Segmentation", NeurIPS 2024, arXiv:2312.04727): the fusion grid with dynamic
sparse feature fusion (DSFF: the DST callback at kernel granularity on the fusion convolutions,
80% sparse) and the restricted depth shift (1x3x3 kernels with channels shifted along depth)
reach the accuracy of far larger networks; on AMOS-CT the same accuracy as the best prior
method with about 68% fewer parameters and 29% fewer FLOPs. The paper measures AMOS, BTCV and
BraTS; this script measures what this machine has: **one subject**, the real TotalSegmentator
CT example of ``../shared/data/totalseg-examples`` (122 x 101 x 30 voxels, 3 mm slices; the
label map is TotalSegmentator's reference output, not a manual annotation), four organs
(liver, spleen, right and left kidney). The volume is cut along the slice axis into disjoint
slabs with a 2-slice margin (``SingleSubjectDataModule``: ``--slab-order`` test, train, val
from the first slice, ``--slab-fractions`` 0.4 / 0.3 / 0.3 for training / validation / test:
test slices 0-7, training 10-19, validation 22-29, which holds no kidney and is not used). The
test slab is as deep as the 8-slice patches, so the sliding windows need no padding in depth,
and the training and test slabs both hold all four organs. The networks train on the 30
patches of the training slab and are scored on the test slab with sliding windows. A single-subject benchmark: it measures the costs exactly and the Dice
only roughly.

Configurations, trained from scratch with the same task (``Segmenter``: Dice + CE with deep
supervision, AdamW, cosine schedule) and data:

- ``unet3d``: the dense baseline, MONAI's DynUNet with E2ENet-small's widths, levels and
  strides (``unet3d_small``: 16-32-64-128-128, 3x3x3 kernels);
- ``e2enet-noshift``: ``e2enet_small`` with 1x3x3 kernels and no depth shift;
- ``e2enet-shift``: with the restricted depth shift;
- ``e2enet-shift-static``: the static ablation, the same random kernel mask at 80% sparsity
  never updated (``method="static"``, what the official code's ``--fix`` does);
- ``e2enet-shift-dsff``: with the shift and DSFF (``DynamicSparseTraining(method="dsff",
  sparsity=0.8, granularity="kernel", include=E2ENET_FUSION_INCLUDE)``, an update every
  ``--update-interval`` steps, 50 by default: 10 updates in the quick run; the paper's 1200
  iterations is for runs of about 250,000).

Costs (``lightning_sparse.models.cost_report``) for one ``--patch`` input: parameters,
non-zero parameters (after training: DSFF's removed kernels are zero), dense FLOPs and sparse
FLOPs (masked layers scaled by their density), with their ratios to ``unet3d``.

Targets (exit status 1 when one is missed): ``e2enet-shift-dsff`` has at most 0.5x the
baseline's non-zero parameters and at most 0.8x its FLOPs (sparse) at a test Dice within 3
points of it; ``--quick`` finishes within 20 minutes.

Usage:
    python benchmarks/e2enet.py --quick
    python benchmarks/e2enet.py --quick --seeds 0 1 --steps 400
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything

from _common import add_data_dir_arg, add_threads_arg, out, quiet_lightning, set_threads
from lightning_sparse.callbacks import DynamicSparseTraining
from lightning_sparse.data import SingleSubjectDataModule
from lightning_sparse.models import E2ENET_FUSION_INCLUDE, cost_report, cost_table
from lightning_sparse.tasks import Segmenter

QUICK_BUDGET_S = 20 * 60
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CONFIGS = ("unet3d", "e2enet-noshift", "e2enet-shift", "e2enet-shift-static", "e2enet-shift-dsff")
BASELINE, TARGET = "unet3d", "e2enet-shift-dsff"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized run (< 20 minutes on 2 cores)")
    add_data_dir_arg(p, str(SHARED / "totalseg-examples"), "the TotalSegmentator examples folder")
    p.add_argument("--source", default="totalseg_ct", choices=("totalseg_ct", "totalseg_mr"))
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run (quick: 500, full: 2000)")
    p.add_argument("--patch", type=int, nargs=3, default=(8, 48, 48), help="training patch and window (D H W)")
    p.add_argument("--slab-fractions", type=float, nargs=3, default=(0.4, 0.3, 0.3),
                   help="shares of the slices for training, validation and test")
    p.add_argument("--slab-order", nargs=3, default=("test", "train", "val"),
                   help="order of the slabs along the slices (the training slab must hold every organ)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--sparsity", type=float, default=0.8, help="DSFF sparsity of the fusion kernels")
    p.add_argument("--update-interval", type=int, default=50, help="DSFF: steps between topology updates")
    p.add_argument("--max-nonzero-ratio", type=float, default=0.5)
    p.add_argument("--max-flops-ratio", type=float, default=0.8)
    p.add_argument("--max-dice-gap", type=float, default=3.0, help="Dice points allowed below the baseline")
    p.add_argument("--accelerator", default="cpu")
    add_threads_arg(p, 2, "3D convolutions use both cores")
    args = p.parse_args(argv)
    if args.steps is None:
        args.steps = 500 if args.quick else 2000
    return args


def build(config: str, dm: SingleSubjectDataModule, args) -> tuple[Segmenter, DynamicSparseTraining | None]:
    backbone = "unet3d_small" if config == BASELINE else "e2enet_small"
    kwargs = {} if config == BASELINE else {"depth_shift": config != "e2enet-noshift"}
    task = Segmenter(backbone, kwargs, num_classes=dm.num_classes, in_channels=dm.in_channels,
                     class_names=list(dm.class_names[1:]), roi_size=tuple(args.patch), optimizer="adamw",
                     lr=args.lr, momentum=0.9, nesterov=False, weight_decay=3e-5, scheduler="cosine")
    dst = None
    if config.endswith(("dsff", "static")):
        dst = DynamicSparseTraining(method="dsff" if config.endswith("dsff") else "static", sparsity=args.sparsity,
                                    granularity="kernel", include=E2ENET_FUSION_INCLUDE,
                                    update_interval=args.update_interval, summary=False)
    return task, dst


def make_data(args) -> SingleSubjectDataModule:
    dm = SingleSubjectDataModule(source=args.source, data_dir=args.data_dir, depth_first=True,
                                 patch_size=tuple(args.patch), batch_size=args.batch_size,
                                 slab_fractions=tuple(args.slab_fractions), slab_order=tuple(args.slab_order))
    dm.setup("fit")
    dm.setup("test")
    return dm


def run(config: str, seed: int, args) -> dict:
    seed_everything(seed, workers=True)
    dm = make_data(args)  # a fresh data module per run: no random state carried from one run to the next
    task, dst = build(config, dm, args)
    trainer = Trainer(max_steps=args.steps, accelerator=args.accelerator, devices=1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[dst] if dst is not None else [], num_sanity_val_steps=0, limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(task, datamodule=dm)
    seconds = time.perf_counter() - start
    (metrics,) = trainer.test(task, datamodule=dm, verbose=False)
    example = torch.zeros(1, dm.in_channels, *args.patch)
    cost = cost_report(task, example, masks=dst.masks if dst is not None else None, name=config)
    organs = {k.split("/")[-1]: 100 * float(v) for k, v in metrics.items() if k.startswith("test/dice/")}
    return {"dice": 100 * float(metrics["test/dice"]), "organs": organs, "cost": cost, "seconds": seconds,
            "density": dst.global_density if dst is not None else 1.0}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_lightning()
    threads = set_threads(args.threads)
    begin = time.perf_counter()
    dm = make_data(args)
    out(f"# e2enet: {args.source} (one subject, volume {tuple(dm.volume_shape)} D x H x W, slabs {dm.regions}), "
        f"organs {list(dm.class_names[1:])}, {len(dm.train_dataset)} training patches {tuple(args.patch)}, "
        f"{args.steps} steps, seeds {args.seeds}, {threads} threads, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}")
    runs: dict[str, list[dict]] = {c: [] for c in args.configs}
    for seed in args.seeds:
        for config in args.configs:
            r = run(config, seed, args)
            runs[config].append(r)
            organs = " ".join(f"{k} {v:.1f}" for k, v in r["organs"].items())
            out(f"#   seed {seed} {config:<18} test Dice {r['dice']:5.1f} ({organs})  {r['seconds']:5.0f} s  "
                f"fusion density {r['density']:.3f}")
    out()
    dice = {c: statistics.fmean(r["dice"] for r in rs) for c, rs in runs.items()}
    out("| configuration | test Dice % (mean over organs and seeds) | training (s) |")
    out("|---|---|---|")
    for c, rs in runs.items():
        spread = statistics.stdev([r["dice"] for r in rs]) if len(rs) > 1 else 0.0
        out(f"| {c} | {dice[c]:.1f} +- {spread:.1f} | {statistics.fmean(r['seconds'] for r in rs):.0f} |")
    out()
    costs = [runs[c][0]["cost"] for c in runs]
    out(f"Costs for one {tuple(args.patch)} patch (seed {args.seeds[0]}):")
    out()
    baseline = BASELINE if BASELINE in runs else None
    out(cost_table(costs, baseline=baseline))
    out()
    elapsed = time.perf_counter() - begin
    problems = []
    summary = "targets not measured (needs unet3d and e2enet-shift-dsff)"
    if BASELINE in runs and TARGET in runs:
        base, target = runs[BASELINE][0]["cost"], runs[TARGET][0]["cost"]
        nonzero = target.nonzero_params / base.nonzero_params
        flops = target.sparse_flops / base.sparse_flops
        gap = dice[BASELINE] - dice[TARGET]
        summary = (f"{TARGET}: {nonzero:.2f}x non-zero parameters, {flops:.2f}x FLOPs, Dice {dice[TARGET]:.1f} vs "
                   f"{dice[BASELINE]:.1f} ({-gap:+.1f} points)")
        if nonzero > args.max_nonzero_ratio:
            problems.append(f"non-zero parameters {nonzero:.2f}x > {args.max_nonzero_ratio}x")
        if flops > args.max_flops_ratio:
            problems.append(f"FLOPs {flops:.2f}x > {args.max_flops_ratio}x")
        if gap > args.max_dice_gap:
            problems.append(f"Dice {gap:.1f} points below the baseline (> {args.max_dice_gap})")
    if args.quick and elapsed > QUICK_BUDGET_S:
        problems.append(f"quick run took {elapsed:.0f} s > {QUICK_BUDGET_S} s")
    out(f"e2enet: {summary}; {sum(len(v) for v in runs.values())} runs in {elapsed / 60:.1f} min; "
        + ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
