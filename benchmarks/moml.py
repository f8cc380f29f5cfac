"""Multi-objective meta learning (MOML) for multi-task learning: EW vs MGDA vs MOML, and a Pareto toy.

Claim under test (Ye, Lin, Yang, Zhang, "Multi-Objective Meta Learning", NeurIPS 2021,
arXiv:2102.07121): learning the task weights by a bilevel problem whose upper level moves along a
common descent direction of every task's validation loss (MGDA) improves multi-task learning over
equal weighting and over MGDA applied to the training losses.

Two parts:

1. **A two-objective bilevel toy with a known Pareto front.** Lower level
   ``omega*(alpha) = argmin_omega ||omega - alpha||^2 + mu ||omega||^2`` (one unrolled step, as the
   official code), upper level ``f_k = ||omega - c_k||^2`` for two centres ``c_1, c_2``: the
   Pareto set of ``(f_1, f_2)`` is the segment between them. MOML's upper level (the min-norm
   direction of the two hypergradients, :mod:`lightning_sparse.core.min_norm`) is run from
   several starts; the table shows the final ``||sum_k lambda_k g_k||`` (0 at a Pareto-stationary
   point) and the distance of ``omega`` to the segment. Target: every start Pareto-stationary
   (below ``--toy-tol``).
2. **A real multi-task digit set on this machine**: three 10-class tasks that share the digit
   classes, MNIST (``../shared/data/mnist-10k``), the UCI optical digits (scikit-learn) and the
   Free Spoken Digit recordings as log-mel spectrogram images (``../shared/data/fsdd``), all
   1x16x16, each split 60/20/20 into train / val / test (:class:`MultiTaskDataModule`; a stand-in
   for the paper's Office-31, where each domain is a task). Networks: a shared ``small_cnn``
   trained from scratch (no pretrained weights here), a shared hidden layer and one head per
   task; the same data, batches and number of batches for every method. Single-task models (STL,
   one network per task) give the reference of the relative gain
   ``Delta = mean_k (acc_k - acc_k^STL) / acc_k^STL``.

Exit status 1 when a target is missed: the toy's Pareto stationarity, and ``--quick`` within 20
minutes. Whether MOML beats EW / MGDA is reported, not enforced.

Usage:
    python benchmarks/moml.py --quick
    python benchmarks/moml.py --steps 3000 --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything

from _common import add_data_dir_arg, add_threads_arg, fmt_mean_std, out, quiet_lightning, set_threads
from lightning_sparse.core.bilevel import hypergradients, unrolled_parameters
from lightning_sparse.core.min_norm import min_norm_direction, min_norm_weights
from lightning_sparse.data.domain import FSDDSpeakerDomain, MNISTDomain, MultiTaskDataModule, UCIDigitsDomain
from lightning_sparse.tasks.meta_learning import MultiObjectiveMetaLearner

QUICK_BUDGET_S = 20 * 60
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TASKS = ("mnist", "uci", "fsdd")
METHODS = ("ew", "mgda", "moml")
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")  # FSDD v1.0.10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="CPU-sized run (< 20 minutes on 2 cores)")
    add_data_dir_arg(p, str(DEFAULT_DATA), "folder holding mnist-10k/ and fsdd/ (default: %(default)s)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0 1 2")
    p.add_argument("--steps", type=int, default=None, help="training batches per run (default 300 quick, 2000)")
    p.add_argument("--batch-size", type=int, default=32, help="per task and split")
    p.add_argument("--width", type=int, default=16, help="small_cnn width")
    p.add_argument("--samples", type=int, default=None, help="MNIST subset (default 1500 quick, 5000)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--skip-stl", action="store_true", help="no single-task reference (no relative gain)")
    p.add_argument("--skip-digits", action="store_true", help="only the Pareto toy")
    p.add_argument("--toy-tol", type=float, default=1e-3, help="Pareto-stationarity tolerance of the toy")
    add_threads_arg(p, 2, "the machine's two cores")
    args = p.parse_args(argv)
    args.seeds = args.seeds if args.seeds is not None else [0, 1, 2]
    args.steps = args.steps if args.steps is not None else (300 if args.quick else 2000)
    args.samples = args.samples if args.samples is not None else (1500 if args.quick else 5000)
    data = Path(args.data_dir)
    if not args.skip_digits and not ((data / "mnist-10k" / "mnist10k.npz").is_file() and (data / "fsdd").is_dir()):
        p.error(f"--data-dir must hold mnist-10k/mnist10k.npz and fsdd/, got {args.data_dir!r}")
    return args


# ---------------------------------------------------------------------- 1. the Pareto toy
def pareto_toy(start: torch.Tensor, steps: int = 300, lr: float = 0.05, mu: float = 0.1) -> dict[str, float]:
    """MOML's upper level on the two-objective toy; returns the final min norm and distance to the front."""
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    alpha = start.clone().double().requires_grad_(True)
    omega = torch.zeros(2, dtype=torch.float64)
    opt = torch.optim.SGD([alpha], lr=lr)
    norm = float("nan")
    for _ in range(steps):
        w = omega.clone().requires_grad_(True)
        fast = unrolled_parameters({"w": w}, lambda p: ((p["w"] - alpha) ** 2).sum() + mu * (p["w"] ** 2).sum(), 0.5)
        uppers = [((fast["w"] - ck) ** 2).sum() for ck in c]
        grads = hypergradients(uppers, [alpha])  # (2, 2)
        weights = min_norm_weights(grads)
        norm = float(min_norm_direction(grads, weights).norm())
        opt.zero_grad()
        alpha.grad = min_norm_direction(grads, weights)
        opt.step()
        omega = fast["w"].detach()  # the real lower-level step
    t = float(torch.clamp((omega - c[0]) @ (c[1] - c[0]) / (c[1] - c[0]).pow(2).sum(), 0, 1))
    distance = float((omega - (c[0] + t * (c[1] - c[0]))).norm())
    return {"min_norm": norm, "distance": distance, "omega": omega.tolist()}


# ---------------------------------------------------------------------- 2. the digit task set
def data_module(args: argparse.Namespace, tasks: tuple[str, ...], seed: int) -> MultiTaskDataModule:
    data = Path(args.data_dir)
    domains = {
        "mnist": lambda: MNISTDomain(str(data / "mnist-10k" / "mnist10k.npz"), image_size=16, max_samples=args.samples),
        "uci": lambda: UCIDigitsDomain(image_size=16),
        "fsdd": lambda: FSDDSpeakerDomain(str(data / "fsdd"), speakers=list(FSDD_SPEAKERS), n_mels=16, frames=16),
    }
    return MultiTaskDataModule([domains[t]() for t in tasks], task_names=list(tasks), batch_size=args.batch_size,
                               seed=seed)


def run(args: argparse.Namespace, method: str, tasks: tuple[str, ...], seed: int) -> dict[str, float]:
    """One training run; returns the test accuracy (%) per task."""
    seed_everything(seed, workers=True)
    dm = data_module(args, tasks, seed)
    task = MultiObjectiveMetaLearner("small_cnn", dm.num_classes_per_task, task_names=list(tasks), method=method,
                                     hidden_dim=64, dropout=0.0, lr=1e-3, meta_lr=1e-2, inner_lr=1e-3,
                                     backbone_kwargs={"in_channels": 1, "width": args.width})
    trainer = Trainer(max_steps=args.steps * task.optimizers_per_batch, accelerator="cpu", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(task, datamodule=dm)
    scores = trainer.test(task, datamodule=dm, verbose=False)
    merged = {k: v for d in scores for k, v in d.items()}
    accs = {t: 100.0 * float(merged[f"test/acc_{t}"]) for t in tasks}
    accs.update({f"weight_{t}": float(w) for t, w in zip(tasks, task.task_weights.tolist())})
    return accs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_lightning()
    threads = set_threads(args.threads)
    start = time.perf_counter()
    failures = []
    out(f"# moml: Pareto toy from 4 starts; digit tasks {', '.join(TASKS)} (1x16x16, 60/20/20 splits), seeds "
        f"{args.seeds}, {args.steps} batches of {args.batch_size} per task and split, small_cnn width "
        f"{args.width} from scratch; {threads} threads")
    out()
    out("| toy start | final min-norm ||sum lambda g|| | distance of omega to the Pareto segment | omega |")
    out("|---|---|---|---|")
    toy_norms = []
    for s in ([2.0, 2.0], [-1.0, 0.5], [0.3, -2.0], [0.5, 0.5]):
        r = pareto_toy(torch.tensor(s))
        toy_norms.append(r["min_norm"])
        out(f"| {s} | {r['min_norm']:.2e} | {r['distance']:.2e} | [{r['omega'][0]:.3f}, {r['omega'][1]:.3f}] |")
    if max(toy_norms) > args.toy_tol:
        failures.append(f"toy not Pareto-stationary (min norm {max(toy_norms):.1e} > {args.toy_tol})")
    summary = f"toy max min-norm {max(toy_norms):.1e}"
    if not args.skip_digits:
        results: dict[str, list[dict[str, float]]] = {}
        for seed in args.seeds:
            if not args.skip_stl:
                stl = {}
                for t in TASKS:
                    stl.update(run(args, "ew", (t,), seed))
                results.setdefault("stl", []).append(stl)
                out(f"#   seed {seed} stl: " + ", ".join(f"{t} {stl[t]:.1f}" for t in TASKS))
            for method in args.methods:
                t0 = time.perf_counter()
                accs = run(args, method, TASKS, seed)
                results.setdefault(method, []).append(accs)
                out(f"#   seed {seed} {method}: " + ", ".join(f"{t} {accs[t]:.1f}" for t in TASKS)
                    + f" ({time.perf_counter() - t0:.0f} s)")
        out()
        out("| method | " + " | ".join(f"{t} test acc %" for t in TASKS) + " | mean | Delta vs STL % |")
        out("|---" * (len(TASKS) + 3) + "|")
        means = {}
        for method in (["stl"] if "stl" in results else []) + list(args.methods):
            runs = results[method]
            cells = [fmt_mean_std([r[t] for r in runs]) for t in TASKS]
            mean = [statistics.mean(r[t] for t in TASKS) for r in runs]
            means[method] = statistics.mean(mean)
            if "stl" in results and method != "stl":
                deltas = [statistics.mean((r[t] - s[t]) / s[t] * 100 for t in TASKS)
                          for r, s in zip(runs, results["stl"])]
                delta = fmt_mean_std(deltas)
            else:
                delta = "-"
            out(f"| {method} | " + " | ".join(cells) + f" | {fmt_mean_std(mean)} | {delta} |")
        if "moml" in results:
            out()
            out("MOML's learnt task weights softmax(alpha) at the end (mean over seeds): " + ", ".join(
                f"{t} {statistics.mean(r[f'weight_{t}'] for r in results['moml']):.3f}" for t in TASKS))
        ranking = ", ".join(f"{m} {v:.1f}" for m, v in sorted(means.items(), key=lambda kv: -kv[1]))
        summary += f"; mean test accuracy {ranking}"
    elapsed = time.perf_counter() - start
    if args.quick and elapsed > QUICK_BUDGET_S:
        failures.append(f"--quick took {elapsed / 60:.1f} min (> 20)")
    out()
    out(f"moml: {summary}; {elapsed / 60:.1f} min; " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
