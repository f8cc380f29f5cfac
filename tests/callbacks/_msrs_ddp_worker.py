"""Run by test_msrs_ddp.py: 2 CPU processes (gloo), each saves what MSRS learnt on its shard."""

import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer, seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import TinyNet  # noqa: E402

from lightning_sparse.callbacks import MSRS  # noqa: E402


class Dump(Callback):
    def __init__(self, msrs, out):
        self.msrs, self.out, self.logits = msrs, Path(out), None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 4:  # inside the mask phase
            self.logits = self.msrs.logits

    def on_train_end(self, trainer, pl_module):
        torch.save({"logits": self.logits, "masks": self.msrs.masks, "changes": self.msrs.mask_changes,
                    "transition": self.msrs.transition_step, "phase": self.msrs.phase,
                    "weights": {k: v.clone() for k, v in pl_module.state_dict().items()}},
                   self.out / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    out, mode = sys.argv[1], sys.argv[2]
    seed_everything(0)
    msrs = MSRS(mode=mode, sparsity=0.5, mask_steps=6, check_interval=2, mask_lr=0.5, summary=False)
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=10, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[msrs, Dump(msrs, out)])
    trainer.fit(TinyNet(n=128, optimizer="adamw", lr=0.05))
