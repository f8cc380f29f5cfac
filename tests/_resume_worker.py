"""Worker of ``test_resume_sigkill.py``: RigL on the digits to step 60, killed or resumed on request.

Usage: ``python tests/_resume_worker.py {full,killed,resume} OUT_DIR``. ``full`` and ``resume``
write ``OUT_DIR/result.pt`` (weights, masks, optimizer state, global step); ``killed`` sends
itself SIGKILL right after optimizer step 37 (the last checkpoint is the one of step 30).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_sparse.callbacks import DynamicSparseTraining
from lightning_sparse.data import DigitsDataModule
from lightning_sparse.tasks import ImageClassifier

KILL_AT, MAX_STEPS = 37, 60


class KillAt(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)


def main(mode: str, out: Path) -> None:
    torch.set_num_threads(1)
    L.seed_everything(0, workers=True)
    dm = DigitsDataModule(image_size=8, batch_size=32, num_workers=int(os.environ.get("WORKERS", "0")))
    model = ImageClassifier("small_cnn", {"in_channels": 1, "width": 8}, num_classes=10, lr=0.05)
    dst = DynamicSparseTraining(method="rigl", sparsity=0.8, update_interval=5, seed=0, log_per_layer=False,
                                summary=False)
    ckpt = ModelCheckpoint(dirpath=out / "ckpt", every_n_train_steps=10, save_last=True, save_top_k=-1)
    callbacks = [dst, ckpt] + ([KillAt()] if mode == "killed" else [])
    trainer = L.Trainer(max_steps=MAX_STEPS, accelerator="cpu", devices=1, deterministic=True, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        default_root_dir=out, callbacks=callbacks)
    trainer.fit(model, datamodule=dm, ckpt_path=str(out / "ckpt" / "last.ckpt") if mode == "resume" else None)
    torch.save({
        "global_step": trainer.global_step,
        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "masks": {k: v.detach().clone() for k, v in dst.masks.items()},
        "optimizer": trainer.optimizers[0].state_dict(),
    }, out / "result.pt")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
