"""Run by test_truly_sparse_ddp.py: 2 CPU processes (gloo), RigL with or without TrulySparse."""

import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer, seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import TinyNet  # noqa: E402

from lightning_sparse.callbacks import DynamicSparseTraining, TrulySparse  # noqa: E402
from lightning_sparse.nn import SparseLinear  # noqa: E402


class Record(Callback):
    def __init__(self, dst, out, mode):
        self.dst, self.out, self.mode = dst, Path(out), mode
        self.flags, self.ignored = {}, set()

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.flags[trainer.global_step] = [isinstance(m, SparseLinear) for m in pl_module.net[::2]]
        self.ignored |= set(getattr(trainer.strategy.model, "parameters_to_ignore", ()))

    def on_fit_end(self, trainer, pl_module):
        torch.save(
            {"masks": self.dst.masks, "updates": self.dst.num_updates, "flags": self.flags,
             "ignored": sorted(self.ignored), "weights": {k: v.clone() for k, v in pl_module.state_dict().items()}},
            self.out / f"{self.mode}_rank{trainer.global_rank}.pt",
        )


if __name__ == "__main__":
    out, mode = sys.argv[1], sys.argv[2]
    seed_everything(0)
    dst = DynamicSparseTraining(method="rigl", sparsity=0.8, update_interval=2, stop_step=1.0, summary=False)
    callbacks = [dst] + ([TrulySparse(max_density=0.3)] if mode == "truly_sparse" else []) + [Record(dst, out, mode)]
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=8, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=callbacks)
    trainer.fit(TinyNet(n=128))
