"""E2ENet against a dense 3D U-Net on real volumes: Dice, parameters, non-zero parameters, FLOPs.

Claim under test (Wu et al., "E2ENet: Dynamic Sparse Feature Fusion for Accurate and Efficient
3D Medical Image Segmentation", NeurIPS 2024, arXiv:2312.04727): the fusion grid with dynamic
sparse feature fusion (DSFF: the DST callback at kernel granularity on the fusion convolutions,
80% sparse) and the restricted depth shift (1x3x3 kernels with channels shifted along depth)
reach the accuracy of far larger networks; on AMOS-CT the same accuracy as the best prior
method with about 68% fewer parameters and 29% fewer FLOPs. The paper measures AMOS, BTCV and
BraTS; this script measures what this machine has, **one subject per source**, each cut into
disjoint slabs (``SingleSubjectDataModule``, a 2-voxel margin between slabs):

- ``totalseg_ct``: the real TotalSegmentator CT example of ``../shared/data/totalseg-examples``
  (122 x 101 x 30 voxels, 3 mm slices; the label map is TotalSegmentator's reference output, not
  a manual annotation), four organs (liver, spleen, right and left kidney); axial slabs: test
  slices 0-7, training 10-19, validation 22-29 (no kidney there; not used); the test slab is as
  deep as the 8 x 48 x 48 patches; 30 training patches;
- ``mni152``: the MNI152 T1 template shipped inside nilearn at 2 mm with its grey / white matter
  maps (one averaged brain, not a patient), split left-right: one hemisphere (x 0-27) is the
  test slab, the other (x 39-72) the training slab, 8 x 32 x 32 patches (190).

The networks train on the training slab's patches and are scored on the test slab with sliding
windows. Single-subject benchmarks: they measure the costs exactly and the Dice only roughly;
the target is judged on the Dice averaged over sources, seeds and classes.

Configurations, trained from scratch with the same task (``Segmenter``: Dice + CE with deep
supervision, AdamW, cosine schedule) and data:

- ``unet3d``: the dense baseline, MONAI's DynUNet with E2ENet-small's widths, levels and
  strides (``unet3d_small``: 16-32-64-128-128, 3x3x3 kernels);
- ``e2enet-noshift``: ``e2enet_small`` with 1x3x3 kernels and no depth shift;
- ``e2enet-shift``: with the restricted depth shift;
- ``e2enet-shift-static``: the static ablation, the same random kernel mask at 80% sparsity
  never updated (``method="static"``, what the official code's ``--fix`` does); in the full run
  and with ``--configs``;
- ``e2enet-shift-dsff``: with the shift and DSFF (``DynamicSparseTraining(method="dsff",
  sparsity=0.8, granularity="kernel", include=E2ENET_FUSION_INCLUDE)``, an update every
  ``--update-interval`` steps, 50 by default: 10 updates in the quick run; the paper's 1200
  iterations is for runs of about 250,000).

Costs (``lightning_sparse.models.cost_report``) for one CT patch (8 x 48 x 48): parameters,
non-zero parameters (after training: DSFF's removed kernels are zero), dense FLOPs and sparse
FLOPs (masked layers scaled by their density), with their ratios to ``unet3d``.

Targets (exit status 1 when one is missed): ``e2enet-shift-dsff`` has at most 0.5x the
baseline's non-zero parameters and at most 0.8x its FLOPs (sparse) at a test Dice within 3
points of it (means over sources and seeds); ``--quick`` finishes within 20 minutes.

Usage:
    python benchmarks/e2enet.py --quick
    python benchmarks/e2enet.py --sources totalseg_ct --seeds 0 1 2 --steps 1000
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
QUICK_CONFIGS = ("unet3d", "e2enet-noshift", "e2enet-shift", "e2enet-shift-dsff")
BASELINE, TARGET = "unet3d", "e2enet-shift-dsff"
# The single-subject set-ups: data-module arguments per source (see the module docstring).
SOURCES: dict[str, dict] = {
    "totalseg_ct": dict(patch_size=(8, 48, 48), split_axis="z", slab_fractions=(0.4, 0.3, 0.3),
                        slab_order=("test", "train", "val")),
    "mni152": dict(resolution=2, patch_size=(8, 32, 32), split_axis="x", slab_fractions=(0.5, 0.1, 0.4),
                   slab_order=("test", "val", "train")),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized run (< 20 minutes on 2 cores)")
    add_data_dir_arg(p, str(SHARED / "totalseg-examples"), "the TotalSegmentator examples folder")
    p.add_argument("--sources", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    p.add_argument("--configs", nargs="+", default=None, choices=CONFIGS,
                   help="default: all (quick: all but e2enet-shift-static)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--steps", type=int, default=None, help="optimizer steps per run (quick: 500, full: 2000)")
    p.add_argument("--patch", type=int, nargs=3, default=None,
                   help="training patch and window (D H W) for every source (default: the source's)")
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
    if args.configs is None:
        args.configs = list(QUICK_CONFIGS if args.quick else CONFIGS)
    return args


def patch_of(source: str, args) -> tuple[int, int, int]:
    return tuple(args.patch) if args.patch is not None else SOURCES[source]["patch_size"]


def build(config: str, dm: SingleSubjectDataModule, patch, args) -> tuple[Segmenter, DynamicSparseTraining | None]:
    backbone = "unet3d_small" if config == BASELINE else "e2enet_small"
    kwargs = {} if config == BASELINE else {"depth_shift": config != "e2enet-noshift"}
    task = Segmenter(backbone, kwargs, num_classes=dm.num_classes, in_channels=dm.in_channels,
                     class_names=list(dm.class_names[1:]), roi_size=patch, optimizer="adamw",
                     lr=args.lr, momentum=0.9, nesterov=False, weight_decay=3e-5, scheduler="cosine")
    dst = None
    if config.endswith(("dsff", "static")):
        dst = DynamicSparseTraining(method="dsff" if config.endswith("dsff") else "static", sparsity=args.sparsity,
                                    granularity="kernel", include=E2ENET_FUSION_INCLUDE,
                                    update_interval=args.update_interval, summary=False)
    return task, dst


def make_data(source: str, args) -> SingleSubjectDataModule:
    settings = {**SOURCES[source], "patch_size": patch_of(source, args)}
    data_dir = None if source == "mni152" else args.data_dir
    dm = SingleSubjectDataModule(source=source, data_dir=data_dir, depth_first=True, batch_size=args.batch_size,
                                 **settings)
    dm.setup("fit")
    dm.setup("test")
    return dm


def run(source: str, config: str, seed: int, args) -> dict:
    seed_everything(seed, workers=True)
    dm = make_data(source, args)  # a fresh data module per run: no random state carried from one run to the next
    patch = patch_of(source, args)
    task, dst = build(config, dm, patch, args)
    trainer = Trainer(max_steps=args.steps, accelerator=args.accelerator, devices=1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[dst] if dst is not None else [], num_sanity_val_steps=0, limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(task, datamodule=dm)
    seconds = time.perf_counter() - start
    (metrics,) = trainer.test(task, datamodule=dm, verbose=False)
    example = torch.zeros(1, dm.in_channels, *patch)
    cost = cost_report(task, example, masks=dst.masks if dst is not None else None, name=config)
    organs = {k.split("/")[-1]: 100 * float(v) for k, v in metrics.items() if k.startswith("test/dice/")}
    return {"dice": 100 * float(metrics["test/dice"]), "organs": organs, "cost": cost, "seconds": seconds,
            "density": dst.global_density if dst is not None else 1.0}


def _mean_spread(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} +- {spread:.1f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_lightning()
    threads = set_threads(args.threads)
    begin = time.perf_counter()
    out(f"# e2enet: sources {args.sources}, configurations {args.configs}, {args.steps} steps, seeds {args.seeds}, "
        f"{threads} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}")
    runs: dict[str, dict[str, list[dict]]] = {c: {s: [] for s in args.sources} for c in args.configs}
    for source in args.sources:
        dm = make_data(source, args)
        out(f"# {source}: one subject, volume {tuple(dm.volume_shape)} (D x H x W), slabs {dm.regions}, classes "
            f"{list(dm.class_names[1:])}, {len(dm.train_dataset)} training patches {patch_of(source, args)}")
        for seed in args.seeds:
            for config in args.configs:
                r = run(source, config, seed, args)
                runs[config][source].append(r)
                organs = " ".join(f"{k} {v:.1f}" for k, v in r["organs"].items())
                out(f"#   {source} seed {seed} {config:<19} test Dice {r['dice']:5.1f} ({organs})  "
                    f"{r['seconds']:4.0f} s  fusion density {r['density']:.3f}")
    out()
    dice = {c: statistics.fmean(r["dice"] for rs in by.values() for r in rs) for c, by in runs.items()}
    out("| configuration | " + " | ".join(f"{s} test Dice %" for s in args.sources)
        + " | mean Dice % | training (s) |")
    out("|---|" + "---|" * (len(args.sources) + 2))
    for c, by in runs.items():
        cells = [_mean_spread([r["dice"] for r in by[s]]) for s in args.sources]
        seconds = statistics.fmean(r["seconds"] for rs in by.values() for r in rs)
        out(f"| {c} | " + " | ".join(cells) + f" | {dice[c]:.1f} | {seconds:.0f} |")
    out()
    first = args.sources[0]
    costs = [runs[c][first][0]["cost"] for c in runs]
    base = BASELINE if BASELINE in runs else args.configs[0]
    out(f"Costs for one {patch_of(first, args)} patch ({first}, seed {args.seeds[0]}; ratios to {base}):")
    out()
    out(cost_table(costs, baseline=base))
    out()
    elapsed = time.perf_counter() - begin
    problems = []
    summary = "targets not measured (needs unet3d and e2enet-shift-dsff)"
    if BASELINE in runs and TARGET in runs:
        base, target = runs[BASELINE][first][0]["cost"], runs[TARGET][first][0]["cost"]
        nonzero = target.nonzero_params / base.nonzero_params
        flops = target.sparse_flops / base.sparse_flops
        gap = dice[BASELINE] - dice[TARGET]
        summary = (f"{TARGET}: {nonzero:.2f}x non-zero parameters, {flops:.2f}x FLOPs, mean Dice {dice[TARGET]:.1f} "
                   f"vs {dice[BASELINE]:.1f} ({-gap:+.1f} points)")
        if nonzero > args.max_nonzero_ratio:
            problems.append(f"non-zero parameters {nonzero:.2f}x > {args.max_nonzero_ratio}x")
        if flops > args.max_flops_ratio:
            problems.append(f"FLOPs {flops:.2f}x > {args.max_flops_ratio}x")
        if gap > args.max_dice_gap:
            problems.append(f"Dice {gap:.1f} points below the baseline (> {args.max_dice_gap})")
    if args.quick and elapsed > QUICK_BUDGET_S:
        problems.append(f"quick run took {elapsed:.0f} s > {QUICK_BUDGET_S} s")
    n = sum(len(rs) for by in runs.values() for rs in by.values())
    out(f"e2enet: {summary}; {n} runs in {elapsed / 60:.1f} min; "
        + ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
