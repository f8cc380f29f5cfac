"""MSRS against dense training, gradual magnitude pruning and RigL, training a deep model from scratch.

Claim under test (Fernandez-Lopez et al., "MSRS: Training Multimodal Speech Recognition Models
from Scratch with Sparse Mask Optimization", Interspeech 2024, arXiv:2406.17614): a sparse mask
learnt at the very start of training gives a deep speech model healthier gradients than its
dense equivalent, so it trains from scratch faster (the paper: at least 2x less training time
than curriculum or pre-training on LRS3), and it can then go on dense or sparse. The paper
measures VSR/AVSR on LRS3; this script measures what this machine has: real speech, the Free
Spoken Digit Dataset (``../shared/data/fsdd``: 3,000 recordings of spoken digits, 6 speakers, 8
kHz), with takes 5-9 as the validation split, takes 10-49 for training and takes 0-4 for the
test, every speaker in every split.

Setup, the same for every configuration and seed: ``SpeechRecognizer`` with a deep, narrow
Conformer-CTC (``--layers`` 12 blocks of width ``--d-model`` 48 by default: many encoder layers,
the regime where training from scratch is hard), characters, 40 log-mel bands cached once,
SpecAugment, AdamW with a cosine schedule and ``--warmup`` steps of warm-up, greedy CTC
decoding, validation after every epoch. The sparsified parameters are the Linear and Conv
weights of the encoder (attention output, feed-forward and convolution modules; the attention's
packed input projection is a bare parameter and stays dense, as do the subsampling and the CTC
head), the same set for every sparse method.

Configurations:

- ``dense``: no callback;
- ``msrs-dense``: ``MSRS(mode="dense", sparsity=S)``: the mask phase over the first
  ``--mask-epochs`` epochs (MSRS's mask ``sigmoid(beta s)``, or Continuous Sparsification's
  scaled one with ``--scale-mask``; temperature 1 -> 200 and Continuous Sparsification's
  ``s0 = -0.01``, ``lambda = 1e-8``), the logits trained by Adam at the weights' learning rate
  (``--mask-optimizer adam``, the default here: the task trains with AdamW, and Continuous
  Sparsification's SGD at an AdamW learning rate leaves the logits where they started:
  ``--mask-optimizer sgd`` measures that), then the top-k mask at sparsity S is applied and
  training goes on dense;
- ``msrs-sparse``: the same, then the mask stays (sparse training at S);
- ``gmp``: gradual magnitude pruning to S (``DynamicSparseTraining(method="granet",
  drop_fraction=0)``: GraNet's cubic global magnitude pruning from dense over the first half of
  training, no regrowth);
- ``rigl``: ``DynamicSparseTraining(method="rigl", sparsity=S)`` (ERK, updates every 50 steps).

Printed per configuration (means over the seeds): optimizer steps and seconds of ``Trainer.fit``
until the validation loss first reaches ``--target-loss`` (after an epoch; ``-`` if never, with
how many seeds got there), the final validation loss, test WER and CER, and the mean gradient
norm per layer group (subsampling, lower / middle / upper thirds of the encoder, CTC head) over
the first ``--grad-steps`` optimizer steps, as the optimizer sees them (after a sparse method's
masking; MSRS: the gradient of the raw weight, ``g * m``).

Target (exit status 1 when missed): ``--quick`` finishes within 20 minutes. The claim itself is
reported as measured (the summary line says whether MSRS reached the target in fewer steps than
dense), not enforced.

Usage:
    python benchmarks/msrs.py --quick
    python benchmarks/msrs.py --quick --seeds 0 1 2 --configs dense msrs-dense
    python benchmarks/msrs.py --data-dir /data/fsdd --epochs 40 --layers 16
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer, seed_everything

from _common import add_data_dir_arg, add_threads_arg, out, quiet_lightning, set_threads
from lightning_sparse.callbacks import MSRS, DynamicSparseTraining
from lightning_sparse.data import SpokenDigitsDataModule
from lightning_sparse.tasks import SpeechRecognizer

QUICK_BUDGET_S = 20 * 60
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CONFIGS = ("dense", "msrs-dense", "msrs-sparse", "gmp", "rigl")
SPARSE_EXCLUDE = ["model.subsampling.*", "model.head.*"]  # the encoder's Linear and Conv weights


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized run (< 20 minutes on 2 cores)")
    add_data_dir_arg(p, str(SHARED / "fsdd"), "the Free Spoken Digit Dataset (a folder with recordings/)")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--epochs", type=int, default=None, help="epochs (quick: 10, full: 30)")
    p.add_argument("--d-model", type=int, default=48)
    p.add_argument("--layers", type=int, default=12, help="Conformer blocks (deep: where from-scratch training is hard)")
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=50, help="optimizer steps of learning-rate warm-up")
    p.add_argument("--sparsity", type=float, default=0.5, help="sparsity of every sparse method")
    p.add_argument("--mask-epochs", type=int, default=None, help="MSRS mask phase (quick: 3, full: 5 epochs)")
    p.add_argument("--mask-lr", type=float, default=None, help="MSRS logits' learning rate (default: the weights')")
    p.add_argument("--scale-mask", action="store_true",
                   help="MSRS mask divided by sigmoid(s0) (Continuous Sparsification's code) instead of sigmoid(beta s)")
    p.add_argument("--mask-optimizer", default="adam", choices=("adam", "sgd"),
                   help="MSRS logits' optimizer (adam: like the task's AdamW; sgd: Continuous Sparsification's)")
    p.add_argument("--target-loss", type=float, default=1.0, help="validation CTC loss (per target token) to reach")
    p.add_argument("--grad-steps", type=int, default=150, help="early optimizer steps whose gradient norms are averaged")
    p.add_argument("--accelerator", default="cpu")
    add_threads_arg(p, 2, "the deep model is large enough for two threads to pay")
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 10 if args.quick else 30
    if args.mask_epochs is None:
        args.mask_epochs = 3 if args.quick else 5
    return args


def group_of(name: str, layers: int) -> str:
    if name.startswith("model.subsampling") or name.startswith("model.input"):
        return "subsampling"
    if name.startswith("model.head"):
        return "head"
    if name.startswith("model.encoder.conformer_layers."):
        index = int(name.split(".")[3])
        return ("lower", "middle", "upper")[min(2, 3 * index // layers)]
    return "other"


GROUPS = ("subsampling", "lower", "middle", "upper", "head")


class Recorder(Callback):
    """Gradient norms per layer group over the first steps; validation loss after every epoch."""

    def __init__(self, layers: int, grad_steps: int) -> None:
        self.layers, self.grad_steps = layers, grad_steps
        self.norms: dict[str, list[float]] = {g: [] for g in GROUPS}
        self.curve: list[tuple[int, float, float]] = []  # (steps, seconds, val loss)
        self.start = 0.0

    def on_fit_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step >= self.grad_steps:
            return
        squares: dict[str, float] = {}
        for name, p in pl_module.named_parameters():
            if p.grad is not None:
                g = group_of(name, self.layers)
                squares[g] = squares.get(g, 0.0) + float(p.grad.detach().float().square().sum())
        for g in GROUPS:
            if g in squares:
                self.norms[g].append(math.sqrt(squares[g]))

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        loss = float(trainer.callback_metrics.get("val/loss", float("nan")))
        self.curve.append((trainer.global_step, time.perf_counter() - self.start, loss))


def method_callback(config: str, args) -> Callback | None:
    if config == "dense":
        return None
    if config.startswith("msrs"):
        return MSRS(mode=config.split("-")[1], sparsity=args.sparsity, mask_epochs=args.mask_epochs,
                    mask_lr=args.mask_lr, mask_optimizer=args.mask_optimizer, scale_mask=args.scale_mask,
                    exclude=SPARSE_EXCLUDE, summary=False)
    if config == "gmp":
        return DynamicSparseTraining(method="granet", sparsity=args.sparsity, drop_fraction=0.0,
                                     exclude=SPARSE_EXCLUDE, update_interval=50, summary=False)
    return DynamicSparseTraining(method="rigl", sparsity=args.sparsity, update_interval=50,
                                 exclude=SPARSE_EXCLUDE, summary=False)


def run(args, dm: SpokenDigitsDataModule, config: str, seed: int) -> dict[str, float]:
    seed_everything(seed, workers=True)
    task = SpeechRecognizer(
        backbone="conformer_ctc_tiny",
        backbone_kwargs={"d_model": args.d_model, "num_layers": args.layers, "num_heads": args.heads,
                         "ffn_dim": args.ffn, "depthwise_conv_kernel_size": 7},
        sample_rate=dm.sample_rate, features=dm.frontend_settings,
        freq_masks=2, freq_mask_param=8, time_masks=2, time_mask_param=8,
        lr=args.lr, scheduler="cosine", warmup_steps=args.warmup,
    )
    recorder = Recorder(args.layers, args.grad_steps)
    callbacks = [c for c in (method_callback(config, args), recorder) if c is not None]
    trainer = Trainer(max_epochs=args.epochs, accelerator=args.accelerator, devices=1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=callbacks, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(task, datamodule=dm)
    seconds = time.perf_counter() - start
    (metrics,) = trainer.test(task, datamodule=dm, verbose=False)
    reached = next(((s, t) for s, t, loss in recorder.curve if loss <= args.target_loss), None)
    density = float("nan")
    if isinstance(callbacks[0], (MSRS, DynamicSparseTraining)):
        weights = [p for n, p in task.named_parameters() if n in callbacks[0].sparse_names]
        density = sum(int(torch.count_nonzero(p)) for p in weights) / sum(p.numel() for p in weights)
    return {
        "steps_to_target": reached[0] if reached else float("nan"),
        "seconds_to_target": reached[1] if reached else float("nan"),
        "final_val_loss": recorder.curve[-1][2] if recorder.curve else float("nan"),
        "wer": 100 * float(metrics["test/wer"]), "cer": 100 * float(metrics["test/cer"]),
        "seconds": seconds, "density": density,
        **{f"grad_{g}": statistics.fmean(v) if v else float("nan") for g, v in recorder.norms.items()},
        "curve": recorder.curve,
    }


def mean_std(values: list[float], digits: int = 1) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "-"
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} +- {s:.{digits}f}"


def mean(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.fmean(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_lightning()
    threads = set_threads(args.threads)
    begin = time.perf_counter()
    out(f"# msrs: FSDD (takes 10-49 train, 5-9 validation, 0-4 test), {args.epochs} epochs, seeds {args.seeds}, "
        f"Conformer-CTC d_model {args.d_model} x {args.layers} layers, sparsity {args.sparsity}, MSRS mask phase "
        f"{args.mask_epochs} epochs, {threads} threads, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}")
    dm = SpokenDigitsDataModule(data_dir=args.data_dir, split="takes", val_takes=(5, 9), sample_rate=8000,
                                features={"n_mels": 40, "win_length": 200, "hop_length": 40, "n_fft": 256},
                                feature_cache=True, batch_size=args.batch_size, seed=0)
    for stage in ("fit", "test"):
        dm.setup(stage)
    start = time.perf_counter()
    for ds in (dm.train_dataset, dm.val_dataset, dm.test_dataset):
        ds.precompute()  # cached before any run is timed
    out(f"# {len(dm.train_dataset)} training, {len(dm.val_dataset)} validation, {len(dm.test_dataset)} test "
        f"recordings; features cached in {time.perf_counter() - start:.1f} s; target validation loss "
        f"{args.target_loss}")
    runs: dict[str, list[dict]] = {c: [] for c in args.configs}
    for seed in args.seeds:
        for config in args.configs:
            r = run(args, dm, config, seed)
            runs[config].append(r)
            curve = " ".join(f"{loss:.2f}" for _, _, loss in r["curve"])
            out(f"#   seed {seed} {config:<12} steps->target {r['steps_to_target']:>6}  val loss per epoch "
                f"[{curve}]  WER {r['wer']:5.1f}  CER {r['cer']:5.1f}  {r['seconds']:5.0f} s  "
                f"density {r['density']:.3f}")
    out()
    out("| configuration | reached target | steps to target | seconds to target | final val loss | WER % | "
        "CER % | fit time (s) | density |")
    out("|---|---|---|---|---|---|---|---|---|")
    for c in args.configs:
        rs = runs[c]
        got = sum(not math.isnan(r["steps_to_target"]) for r in rs)
        out(f"| {c} | {got}/{len(rs)} | {mean_std([r['steps_to_target'] for r in rs], 0)} | "
            f"{mean_std([r['seconds_to_target'] for r in rs], 0)} | {mean_std([r['final_val_loss'] for r in rs], 3)} | "
            f"{mean_std([r['wer'] for r in rs])} | {mean_std([r['cer'] for r in rs])} | "
            f"{mean_std([r['seconds'] for r in rs], 0)} | {mean([r['density'] for r in rs]):.3f} |")
    out()
    out(f"| gradient norm, first {args.grad_steps} steps | " + " | ".join(GROUPS) + " |")
    out("|---|" + "---|" * len(GROUPS))
    for c in args.configs:
        out(f"| {c} | " + " | ".join(f"{mean([r[f'grad_{g}'] for r in runs[c]]):.3f}" for g in GROUPS) + " |")
    out()
    elapsed = time.perf_counter() - begin
    problems = []
    if args.quick and elapsed > QUICK_BUDGET_S:
        problems.append(f"quick run took {elapsed:.0f} s > {QUICK_BUDGET_S} s")
    for c, rs in runs.items():
        if any(math.isnan(r["final_val_loss"]) or math.isinf(r["final_val_loss"]) for r in rs):
            problems.append(f"{c}: validation loss not finite")
    summary = "claim not measured (needs dense and an MSRS configuration)"
    msrs_configs = [c for c in runs if c.startswith("msrs")]
    if "dense" in runs and msrs_configs:
        def steps(c):
            rs = runs[c]
            return [r["steps_to_target"] if not math.isnan(r["steps_to_target"]) else math.inf for r in rs]
        dense_steps = mean(steps("dense")) if all(math.isfinite(s) for s in steps("dense")) else math.inf
        parts = []
        for c in msrs_configs:
            ms = steps(c)
            m = statistics.fmean(ms) if all(math.isfinite(s) for s in ms) else math.inf
            verdict = "fewer" if m < dense_steps else "not fewer"
            parts.append(f"{c} {m:.0f} vs dense {dense_steps:.0f} steps to val loss {args.target_loss} ({verdict})")
        summary = "; ".join(parts)
    out(f"msrs: {summary}; {sum(len(v) for v in runs.values())} runs in {elapsed / 60:.1f} min; "
        + ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
