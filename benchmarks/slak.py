"""SLaK's large kernels on this machine's CPU: the layer's speed paths, and kernels vs accuracy on CIFAR-10.

Claim under test (Liu et al., "More ConvNets in the 2020s: Scaling up Kernels Beyond 51x51 using
Sparsity", ICLR 2023, arXiv:2207.03620): decomposing an ``M x M`` depthwise kernel into ``M x 5``
+ ``5 x M`` (+ ``5 x 5``) and training it sparse with wider layers ("use sparse groups, expand
more width": 40% sparsity, 1.3x width) scales kernels to 51x51; the official code needs a custom
CUDA kernel to be fast. This script measures:

0. **Costs** of the ImageNet models (``cost_report`` for one 224 x 224 image: parameters, non-zero
   parameters and MACs at 40% sparsity, a uniform random mask on every convolution and linear
   weight) beside the published numbers (the papers' "GFLOPs" are multiply-accumulates).
1. **Speed** of the decomposed 51-kernel layer (``LargeKernelConv(C, 51, 5)``: three depthwise
   branches with batch norm), forward + backward, stock PyTorch (``impl="torch"``:
   ``nn.Conv2d(groups=C)``) against ``impl="auto"`` (``lightning_sparse.nn.DepthwiseConv2d``: per
   branch shape the fastest of FFT, banded-matrix and stock, measured once and cached), at
   SLaK-T's first-stage shape (batch 8, 124 channels, 56 x 56) and at a CIFAR-scale shape; the
   per-branch choices are printed. Target: ``auto`` at least 2x faster than stock at the SLaK-T
   shape.
2. **Accuracy** on real CIFAR-10 (``../shared/data/cifar10-q75``, JPEG q75 re-encoded; a fixed
   class-balanced subset): a ConvNeXt-style network with 7x7 kernels (``convnext_cifar``), naive
   ``M x M`` kernels (``decomposed=False``), SLaK's decomposed kernels (``slak_cifar``,
   ``width_factor=1.0``, dense) and decomposed at 40% sparsity with 1.3x width
   (``DynamicSparseTraining(method="slak", distribution="snip", sparsity=0.4)`` on every
   convolution and linear weight); test accuracy, parameters, non-zero parameters, FLOPs and the
   training step time. Same data, optimizer (AdamW) and budget for all.

Usage:
    python benchmarks/slak.py --quick
    python benchmarks/slak.py --skip-accuracy
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer, seed_everything

from _common import add_data_dir_arg, add_threads_arg, out, quiet_lightning, set_threads
from lightning_sparse.callbacks import DynamicSparseTraining
from lightning_sparse.data import CIFAR10DataModule
from lightning_sparse.models import cost_report
from lightning_sparse.models.layers import LargeKernelConv
from lightning_sparse.nn.depthwise import choose_impl, same_padding
from lightning_sparse.tasks import ImageClassifier

QUICK_BUDGET_S = 20 * 60
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-q75"
SPEED_SHAPES = {"slak-t stage 1": (8, 124, 56, 56), "cifar": (32, 64, 32, 32)}
TARGET_SHAPE = "slak-t stage 1"
CONFIGS = ("convnext-7x7", "naive-MxM", "decomposed", "decomposed-sparse-1.3x")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized run (< 20 minutes on 2 cores)")
    add_data_dir_arg(p, str(DEFAULT_DATA), "CIFAR-10 (any CIFAR10DataModule layout; default: %(default)s)")
    p.add_argument("--cache-dir", default=os.environ.get("LIGHTNING_SPARSE_CACHE",
                                                         str(Path.home() / ".cache" / "lightning_sparse" / "cifar10")))
    p.add_argument("--kernel", type=int, default=51, help="M of the speed measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--min-speedup", type=float, default=2.0)
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--skip-costs", action="store_true", help="skip the ImageNet models' cost report")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--train-subset", type=int, default=None)
    p.add_argument("--test-subset", type=int, default=None)
    p.add_argument("--dims", type=int, nargs=3, default=(32, 64, 128), help="stage widths before width_factor")
    p.add_argument("--depths", type=int, nargs=3, default=(1, 1, 2))
    p.add_argument("--kernels", type=int, nargs=3, default=(15, 13, 7), help="large kernels per stage (CIFAR)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--update-interval", type=int, default=20)
    p.add_argument("--accelerator", default="cpu")
    add_threads_arg(p, 2, "depthwise convolutions and FFTs use both cores")
    args = p.parse_args(argv)
    defaults = {"epochs": 6 if args.quick else 100, "train_subset": 4_000 if args.quick else 0,
                "test_subset": 1_000 if args.quick else 0}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def step_seconds(layer: LargeKernelConv, x: torch.Tensor, repeats: int) -> float:
    """Median seconds of one forward + backward of ``layer`` on ``x`` (after one warm-up)."""
    times = []
    for i in range(repeats + 1):
        x.grad = None
        start = time.perf_counter()
        layer(x).sum().backward()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed(args) -> tuple[list[str], dict[str, float]]:
    rows, speedups = [], {}
    for name, shape in SPEED_SHAPES.items():
        b, c, h, w = shape
        torch.manual_seed(0)
        stock = LargeKernelConv(c, args.kernel, 5, impl="torch")
        fast = LargeKernelConv(c, args.kernel, 5, impl="auto")
        fast.load_state_dict(stock.state_dict())
        x = torch.randn(shape, requires_grad=True)
        torch.testing.assert_close(fast(x), stock(x), atol=1e-3, rtol=1e-3)  # the same layer
        t_stock, t_fast = step_seconds(stock, x, args.repeats), step_seconds(fast, x, args.repeats)
        choices = ", ".join(f"{tuple(br[0].kernel_size)[0]}x{tuple(br[0].kernel_size)[1]}: "
                            f"{choose_impl(shape, tuple(br[0].kernel_size), same_padding(br[0].kernel_size))}"
                            for br in fast.branches())
        speedups[name] = t_stock / t_fast
        rows.append(f"| {name} | {tuple(shape)} | {args.kernel} | {1e3 * t_stock:.0f} | {1e3 * t_fast:.0f} | "
                    f"{speedups[name]:.2f}x | {choices} |")
    return rows, speedups


# The published sizes (SLaK README: non-zero at 40% sparsity; ConvNeXt paper): parameters (M), G MACs at 224x224
PUBLISHED = {"slak_tiny": (30, 5.0), "slak_small": (55, 9.8), "slak_base": (95, 17.1), "convnext_tiny": (28.6, 4.5)}


def imagenet_costs() -> list[str]:
    """``cost_report`` of the ImageNet models for one 224x224 image, SLaK at 40% sparsity (a
    uniform random mask on every convolution and linear weight: SNIP's ratios need data)."""
    from lightning_sparse.core import find_targets
    from lightning_sparse.models import create_model

    rows = []
    for name, (published_params, published_macs) in PUBLISHED.items():
        torch.manual_seed(0)
        kwargs = {"impl": "torch"} if name.startswith("slak") else {}
        model = create_model(name, **kwargs).eval()
        masks = None
        if name.startswith("slak"):
            g = torch.Generator().manual_seed(0)
            masks = {t.name: torch.rand(t.shape, generator=g) < 0.6 for t in find_targets(model)}
        with torch.no_grad():
            cost = cost_report(model, torch.zeros(1, 3, 224, 224), masks=masks, name=name)
        rows.append(f"| {name} | {cost.params / 1e6:.1f} | {cost.nonzero_params / 1e6:.1f} | {published_params} | "
                    f"{cost.flops / 2e9:.2f} | {cost.sparse_flops / 2e9:.2f} | {published_macs} |")
        del model
    return rows


class StepTimer(Callback):
    def __init__(self):
        self.times, self._t = [], 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self._t)


def backbone(config: str, args) -> tuple[str, dict]:
    common = {"depths": list(args.depths), "dims": list(args.dims)}
    if config == "convnext-7x7":
        return "convnext_cifar", {**common, "kernel_sizes": [7, 7, 7]}
    if config == "naive-MxM":
        return "slak_cifar", {**common, "kernel_sizes": list(args.kernels), "decomposed": False, "width_factor": 1.0}
    width = 1.3 if config.endswith("1.3x") else 1.0
    return "slak_cifar", {**common, "kernel_sizes": list(args.kernels), "width_factor": width}


def train(config: str, seed: int, args) -> dict:
    seed_everything(seed, workers=True)
    name, kwargs = backbone(config, args)
    task = ImageClassifier(name, kwargs, num_classes=10, optimizer="adamw", lr=args.lr, weight_decay=0.05,
                           scheduler="cosine")
    dm = CIFAR10DataModule(data_dir=args.data_dir, batch_size=args.batch_size, val_split=0, augment=True, seed=0,
                           train_subset=args.train_subset or None, test_subset=args.test_subset or None,
                           cache_dir=args.cache_dir)
    timer = StepTimer()
    callbacks: list = [timer]
    dst = None
    if config.endswith("sparse-1.3x"):
        dst = DynamicSparseTraining("slak", sparsity=0.4, distribution="snip", update_interval=args.update_interval,
                                    seed=seed, summary=False)
        callbacks.insert(0, dst)
    trainer = Trainer(max_epochs=args.epochs, accelerator=args.accelerator, devices=1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=callbacks, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(task, datamodule=dm)
    (metrics,) = trainer.test(task, datamodule=dm, verbose=False)
    cost = cost_report(task, torch.zeros(1, 3, 32, 32), masks=dst.masks if dst is not None else None, name=config)
    return {"acc": float(metrics["test/acc"]), "cost": cost, "step": statistics.median(timer.times[2:] or timer.times)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_lightning()
    threads = set_threads(args.threads)
    begin = time.perf_counter()
    out(f"# slak: {threads} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}")
    rows, speedups = speed(args)
    out()
    out("| shape | (B, C, H, W) | M | stock torch (ms) | auto (ms) | speedup | auto's choice per branch |")
    out("|---|---|---:|---:|---:|---:|---|")
    for row in rows:
        out(row)
    out()
    if not args.skip_costs:
        out("| model (224x224) | parameters (M) | non-zero at 40% (M) | published (M) | G MACs | sparse G MACs | "
            "published G MACs |")
        out("|---|---:|---:|---:|---:|---:|---:|")
        for row in imagenet_costs():
            out(row)
        out()
    if not args.skip_accuracy:
        out(f"# accuracy: CIFAR-10 (JPEG-q75 source images), training subset {args.train_subset or 'all'}, test "
            f"subset {args.test_subset or 'all'}, {args.epochs} epochs, depths {tuple(args.depths)}, dims "
            f"{tuple(args.dims)}, kernels {tuple(args.kernels)} + 5, seeds {args.seeds}")
        results = {c: [train(c, s, args) for s in args.seeds] for c in args.configs}
        out("| configuration | test acc % | parameters | non-zero | FLOPs (M) | sparse FLOPs (M) | step (ms) |")
        out("|---|---:|---:|---:|---:|---:|---:|")
        for c, rs in results.items():
            acc = [100 * r["acc"] for r in rs]
            spread = statistics.stdev(acc) if len(acc) > 1 else 0.0
            cost = rs[0]["cost"]
            out(f"| {c} | {statistics.fmean(acc):.2f} +- {spread:.2f} | {cost.params:,} | {cost.nonzero_params:,} | "
                f"{cost.flops / 1e6:.1f} | {cost.sparse_flops / 1e6:.1f} | {1e3 * statistics.fmean(r['step'] for r in rs):.0f} |")
        out()
    elapsed = time.perf_counter() - begin
    problems = []
    if speedups[TARGET_SHAPE] < args.min_speedup:
        problems.append(f"auto {speedups[TARGET_SHAPE]:.2f}x < {args.min_speedup}x faster than stock at {TARGET_SHAPE}")
    if args.quick and elapsed > QUICK_BUDGET_S:
        problems.append(f"quick run took {elapsed:.0f} s > {QUICK_BUDGET_S} s")
    out(f"slak: decomposed {args.kernel}-kernel layer {speedups[TARGET_SHAPE]:.2f}x faster than stock torch at "
        f"{TARGET_SHAPE} ({speedups['cifar']:.2f}x at cifar); {elapsed / 60:.1f} min; "
        + ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
