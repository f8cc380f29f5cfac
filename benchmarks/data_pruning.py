"""Dynamic data pruning on real speech (FSDD), and the same callback on images and time series.

Claim under test (Xiao et al., "Dynamic Data Pruning for Automatic Speech Recognition",
Interspeech 2024, arXiv:2406.18373): training on a dynamically chosen 70% of the utterances per
epoch reaches the full-data WER, and with time-wise (chunk) pruning inside the kept utterances
training takes up to 1.6x less time. The paper measures LibriSpeech; this script measures the
Free Spoken Digit Dataset (``../shared/data/fsdd``: 3,000 real recordings of spoken digits, 6
speakers, 8 kHz), the real speech this machine has, with its official split (takes 0-4 test,
takes 5-49 training: every speaker in both; no validation split, the test split is scored
once after training).

Speech setup, the same for every configuration and seed: ``SpeechRecognizer`` with a
Conformer-CTC over characters, 40 log-mel bands (25 ms windows, 5 ms hop: FSDD's shortest
recordings last 0.14 s, and after the 4x subsampling a 10 ms hop would leave too few frames for
a CTC alignment of "seven") cached once per utterance by the data module, SpecAugment, AdamW with a cosine schedule (sized by the pruned
training length), length-bucketed batches, greedy CTC decoding; WER and CER on the 300 test
recordings (for one-word utterances WER is the share of wrongly recognised digits). Training
time is the wall-clock time of ``Trainer.fit`` (no validation inside it).

Configurations (``DynamicDataPruning`` arguments):

- ``full``: no pruning, every utterance every epoch;
- ``random-70``: ``keep_ratio=0.7, policy="random"``;
- ``easy2hard-70``: ``keep_ratio=0.7, policy="easy2hard"``;
- ``easy2hard-70+chunks``: the same plus ``time_drop_ratio`` chunks of ``--chunk-length``
  frames dropped inside each kept utterance (``TimeDrop(mode="chunk")`` on the features);
- ``infobatch``: InfoBatch's rule (``policy="infobatch"``, ``prune_ratio=0.5``,
  ``stop_fraction=0.125``: InfoBatch's defaults ``r = 0.5``, ``delta = 0.875``).

Task-agnostic rows (one seed each, reported, not enforced): the same callback
(``easy2hard-70``) against full data with ``ImageClassifier`` on a subset of the real CIFAR-10 of
``../shared/data/cifar10-q75`` and with ``TimeSeriesClassifier`` on a UCR problem shipped with
aeon.

Targets (exit status 1 when one is missed), on the means over the seeds:

- ``easy2hard-70+chunks`` trains at least ``--min-speedup`` (1.4) times faster than ``full``;
- its WER is at most ``--max-wer-gap`` (1.0) point above ``full``'s;
- ``--quick`` finishes within 20 minutes.

Usage:
    python benchmarks/data_pruning.py --quick
    python benchmarks/data_pruning.py --quick --seeds 0 1 2 --configs full easy2hard-70+chunks
    python benchmarks/data_pruning.py --data-dir /data/fsdd --epochs 60
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything

from _common import add_data_dir_arg, add_threads_arg, set_threads
from lightning_sparse.callbacks import DynamicDataPruning
from lightning_sparse.core.time_drop import TimeDrop
from lightning_sparse.data import SpokenDigitsDataModule
from lightning_sparse.tasks import SpeechRecognizer

QUICK_BUDGET_S = 20 * 60
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CONFIGS = ("full", "random-70", "easy2hard-70", "easy2hard-70+chunks", "infobatch")
TARGET = "easy2hard-70+chunks"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized run (< 20 minutes on 2 cores)")
    add_data_dir_arg(p, str(SHARED / "fsdd"), "the Free Spoken Digit Dataset (a folder with recordings/)")
    p.add_argument("--cifar-dir", default=str(SHARED / "cifar10-q75"), help="CIFAR-10 for the image row")
    p.add_argument("--ucr", default="ItalyPowerDemand", help="UCR problem (inside aeon) for the time-series row")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--epochs", type=int, default=None, help="speech epochs (quick: 35, full: 60)")
    p.add_argument("--backbone", default="conformer_ctc_tiny")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--warmup", type=int, default=100, help="optimizer steps of learning-rate warm-up")
    p.add_argument("--freq-mask", type=int, default=8, help="SpecAugment: widest frequency mask (bands)")
    p.add_argument("--time-mask", type=int, default=8, help="SpecAugment: widest time mask (frames; digits are short)")
    p.add_argument("--time-drop", type=float, default=0.2, help="share of frames dropped (chunk config)")
    p.add_argument("--chunk-length", type=int, default=2,
                   help="frames per dropped chunk (2 = 10 ms at the 5 ms hop; 5 cost 1.3 WER points, docs/data_pruning.md)")
    p.add_argument("--min-speedup", type=float, default=1.4)
    p.add_argument("--max-wer-gap", type=float, default=1.0, help="WER points allowed above full data")
    p.add_argument("--skip-other-tasks", action="store_true", help="speech only")
    p.add_argument("--accelerator", default="cpu")
    add_threads_arg(p, 2, "the speech models are large enough for two threads to pay")
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 35 if args.quick else 60
    return args


def out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def pruning(config: str, seed: int) -> DynamicDataPruning | None:
    if config == "full":
        return None
    if config == "infobatch":
        return DynamicDataPruning(policy="infobatch", prune_ratio=0.5, stop_fraction=0.125, seed=seed)
    policy = "random" if config.startswith("random") else "easy2hard"
    return DynamicDataPruning(keep_ratio=0.7, policy=policy, seed=seed,
                              time_drop_ratio=ARGS.time_drop if config.endswith("+chunks") else None)


def trainer(args, callbacks, epochs: int) -> Trainer:
    return Trainer(max_epochs=epochs, accelerator=args.accelerator, devices=1, logger=False,
                   enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                   callbacks=callbacks, num_sanity_val_steps=0, limit_val_batches=0)


def speech_run(args, dm: SpokenDigitsDataModule, config: str, seed: int) -> dict[str, float]:
    seed_everything(seed, workers=True)
    cb = pruning(config, seed)
    time_drop = TimeDrop(mode="chunk", ratio=0.0, chunk_length=args.chunk_length) if config.endswith("+chunks") else None
    task = SpeechRecognizer(
        backbone=args.backbone,
        backbone_kwargs={"input_dim": dm.frontend_settings["n_mels"], "d_model": args.d_model,
                         "num_layers": args.layers},
        sample_rate=dm.sample_rate, features=dm.frontend_settings, time_drop=time_drop,
        freq_masks=2, freq_mask_param=args.freq_mask, time_masks=2, time_mask_param=args.time_mask,
        lr=args.lr, scheduler="cosine", warmup_steps=args.warmup,
    )
    t = trainer(args, [cb] if cb is not None else [], args.epochs)
    start = time.perf_counter()
    t.fit(task, datamodule=dm)
    seconds = time.perf_counter() - start
    (metrics,) = t.test(task, datamodule=dm, verbose=False)
    seen = cb.samples_seen if cb is not None else args.epochs * len(dm.train_dataset)
    return {"wer": 100 * float(metrics["test/wer"]), "cer": 100 * float(metrics["test/cer"]), "seconds": seconds,
            "seen": seen / (args.epochs * len(dm.train_dataset)), "steps": t.global_step}


def other_task_rows(args) -> list[str]:
    from lightning_sparse.data import CIFAR10DataModule, TimeSeriesDataModule
    from lightning_sparse.tasks import ImageClassifier, TimeSeriesClassifier

    rows = []
    settings = [
        ("CIFAR-10 (5,000 train / 2,000 test), ImageClassifier small_cnn", 8,
         lambda: CIFAR10DataModule(data_dir=args.cifar_dir, batch_size=128, train_subset=5000, test_subset=2000,
                                   seed=0, return_index=True),
         lambda: ImageClassifier("small_cnn", {"in_channels": 3, "width": 16}, num_classes=10, lr=0.05, scheduler="cosine")),
        (f"UCR {args.ucr}, TimeSeriesClassifier dsn (width 16)", 100,
         lambda: TimeSeriesDataModule(args.ucr, return_index=True, return_lengths=True),
         None),
    ]
    for label, epochs, make_dm, make_task in settings:
        results = {}
        for config in ("full", "easy2hard-70"):
            seed_everything(0, workers=True)
            dm = make_dm()
            if make_task is None:
                task = TimeSeriesClassifier("dsn", {"width": 16}, num_classes=dm.num_classes, in_channels=dm.num_channels)
            else:
                task = make_task()
            cb = pruning(config, 0)
            t = trainer(args, [cb] if cb is not None else [], epochs)
            start = time.perf_counter()
            t.fit(task, datamodule=dm)
            seconds = time.perf_counter() - start
            (metrics,) = t.test(task, datamodule=dm, verbose=False)
            results[config] = (100 * float(metrics["test/acc"]), seconds)
        (acc_f, s_f), (acc_p, s_p) = results["full"], results["easy2hard-70"]
        rows.append(f"| {label} | {epochs} | {acc_f:.1f} | {acc_p:.1f} | {s_f:.0f} | {s_p:.0f} | {s_f / s_p:.2f}x |")
    return rows


def mean_std(values: list[float], digits: int = 1) -> str:
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} +- {s:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    global ARGS
    args = ARGS = parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    threads = set_threads(args.threads)
    begin = time.perf_counter()
    out(f"# data_pruning: FSDD (official take split), {args.epochs} epochs, seeds {args.seeds}, "
        f"{args.backbone} d_model {args.d_model} x {args.layers} layers, {threads} threads, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}")
    dm = SpokenDigitsDataModule(data_dir=args.data_dir, split="takes", val_takes=None, sample_rate=8000,
                                features={"n_mels": 40, "win_length": 200, "hop_length": 40, "n_fft": 256},
                                feature_cache=True, batch_size=args.batch_size, return_index=True, seed=0)
    dm.setup("fit")
    dm.setup("test")
    start = time.perf_counter()
    dm.train_dataset.precompute()  # cached before any run is timed: every configuration reads the same cache
    dm.test_dataset.precompute()
    out(f"# {len(dm.train_dataset)} training and {len(dm.test_dataset)} test recordings; log-mel features "
        f"computed once, before the timed runs ({time.perf_counter() - start:.1f} s)")
    runs: dict[str, list[dict[str, float]]] = {c: [] for c in args.configs}
    for seed in args.seeds:
        for config in args.configs:
            r = speech_run(args, dm, config, seed)
            runs[config].append(r)
            out(f"#   seed {seed} {config:<20} WER {r['wer']:5.2f}  CER {r['cer']:5.2f}  {r['seconds']:6.1f} s  "
                f"{r['steps']} steps  data {r['seen']:.2f}")
    out()
    out("| configuration | WER % | CER % | training time (s) | samples seen / full | speed-up vs full |")
    out("|---|---|---|---|---|---|")
    mean = {c: {k: statistics.fmean(r[k] for r in runs[c]) for k in ("wer", "cer", "seconds", "seen")} for c in runs}
    base = mean.get("full")
    for c in args.configs:
        speed = f"{base['seconds'] / mean[c]['seconds']:.2f}x" if base else "-"
        out(f"| {c} | {mean_std([r['wer'] for r in runs[c]], 2)} | {mean_std([r['cer'] for r in runs[c]], 2)} | "
            f"{mean_std([r['seconds'] for r in runs[c]])} | {mean[c]['seen']:.2f} | {speed} |")
    out()
    if not args.skip_other_tasks:
        out("| task agnostic (1 seed) | epochs | full acc % | easy2hard-70 acc % | full s | pruned s | speed-up |")
        out("|---|---|---|---|---|---|---|")
        for row in other_task_rows(args):
            out(row)
        out()
    elapsed = time.perf_counter() - begin
    problems = []
    summary = ""
    if base and TARGET in mean:
        speedup = base["seconds"] / mean[TARGET]["seconds"]
        gap = mean[TARGET]["wer"] - base["wer"]
        summary = (f"{TARGET}: {speedup:.2f}x faster than full data at WER {mean[TARGET]['wer']:.2f} vs "
                   f"{base['wer']:.2f} ({gap:+.2f} points)")
        if speedup < args.min_speedup:
            problems.append(f"speed-up {speedup:.2f}x < {args.min_speedup}x")
        if gap > args.max_wer_gap:
            problems.append(f"WER {gap:+.2f} points above full data (> {args.max_wer_gap})")
    else:
        summary = "targets not measured (needs the full and easy2hard-70+chunks configurations)"
    if args.quick and elapsed > QUICK_BUDGET_S:
        problems.append(f"quick run took {elapsed:.0f} s > {QUICK_BUDGET_S} s")
    out(f"data_pruning: {summary}; {sum(len(v) for v in runs.values())} speech runs in {elapsed / 60:.1f} min; "
        + ("PASS" if not problems else "FAIL: " + "; ".join(problems)))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
