"""Run by test_data_pruning_ddp.py: 2 CPU processes (gloo); each rank saves what it trained on."""

import sys
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pruning_helpers import PlainModule, RecordBatches, TensorDataModule, classifier  # noqa: E402

from lightning_sparse.callbacks import DynamicDataPruning  # noqa: E402

if __name__ == "__main__":
    out, kind = Path(sys.argv[1]), sys.argv[2]
    seed_everything(0)
    policy = "hard" if kind == "plain" else "easy2hard"
    cb, rec = DynamicDataPruning(keep_ratio=0.5, policy=policy, seed=2), RecordBatches()
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=3, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, callbacks=[cb, rec])
    if kind == "plain":  # a user's module with its own DataLoader (index last); odd size: padded shards
        module = PlainModule(n=41, batch_size=4)
        trainer.fit(module)
    else:
        module = classifier()
        trainer.fit(module, datamodule=TensorDataModule(n=40, batch_size=4))
    torch.save({
        "batches": rec.epochs,
        "selections": {e: cb.selection(e).indices.tolist() for e in [trainer.current_epoch - 1]},
        "scores": cb.scores, "scored": cb.scored, "seen": cb.samples_seen,
        "num_training_batches": trainer.num_training_batches,
        "weights": {k: v.clone() for k, v in module.state_dict().items()},
    }, out / f"rank{trainer.global_rank}.pt")
    # leave the process group cleanly: a rank exiting while gloo's threads are alive can abort
    # ("terminate called without an active exception")
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
