"""Run by test_dst_ddp.py: 2 CPU processes (gloo), each saves its masks and weights."""

import sys
from pathlib import Path

import torch
from lightning.pytorch import Callback, Trainer, seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import TinyNet  # noqa: E402

from lightning_sparse.callbacks import DynamicSparseTraining  # noqa: E402


class Dump(Callback):
    def __init__(self, dst, out):
        self.dst, self.out = dst, Path(out)

    def on_train_end(self, trainer, pl_module):
        torch.save(
            {"masks": self.dst.masks, "updates": self.dst.num_updates, "ever": self.dst.exploration_rate,
             "weights": {k: v.clone() for k, v in pl_module.state_dict().items()}},
            self.out / f"rank{trainer.global_rank}.pt",
        )


def robustness(out):
    from _robust_helpers import NoisyDataModule

    from lightning_sparse.callbacks import CorruptionRobustness

    seed_everything(0)
    cb = CorruptionRobustness(severities=[1, 4], plot=False, output_dir=out)
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=6, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[cb])
    model, dm = TinyNet(), NoisyDataModule(n=90)  # 90 samples: uneven shards of 45 per rank
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    torch.save({"summary": cb.summary.rows(), "weights": model.state_dict()},
               Path(out) / f"robust_rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    out, method = sys.argv[1], sys.argv[2]
    if method == "robustness":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        robustness(out)
        sys.exit(0)
    if method == "hardness":  # EL2N scores of a fake CIFAR-10 (85 images: uneven shards) from 2 ranks
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from test_hardness_callback import _task, write_cifar10

        from lightning_sparse.callbacks import HardnessScores
        from lightning_sparse.data import CIFAR10DataModule

        root = Path(out) / "cifar"
        if not root.exists():  # rank 0 writes before the other rank starts
            write_cifar10(root, n_train=85, n_test=10)
        task = _task()
        dm = CIFAR10DataModule(data_dir=str(root), batch_size=16, augment=False)
        cb = HardnessScores(str(Path(out) / "scores.pt"))
        trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                          callbacks=[cb])
        trainer.fit(task, datamodule=dm)
        torch.save({"weights": task.state_dict()}, Path(out) / f"rank{trainer.global_rank}.pt")
        sys.exit(0)
    seed_everything(0)
    if method == "lottery":  # a ticket from DDP training, then a DDP run from it
        from lightning_sparse.callbacks import LotteryTicket

        lt = LotteryTicket(sparsity=0.8, rewind=2, path=str(Path(out) / "ticket.pt"))
        Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=6, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, callbacks=[lt]).fit(TinyNet(n=128))
        seed_everything(1)
        dst = DynamicSparseTraining(method="static", masks_from=str(Path(out) / "ticket.pt"), summary=False)
    elif method.startswith("pai-"):  # PruningAtInit: scores from each rank's own batches, summed
        from lightning_sparse.callbacks import PruningAtInit

        dst = PruningAtInit(method[4:], sparsity=0.8, num_batches=2, iterations=5, summary=False)
    elif method == "dst-snip":
        dst = DynamicSparseTraining(method="set", sparsity=0.8, distribution="snip", update_interval=2,
                                    stop_step=1.0, summary=False)
    else:
        dst = DynamicSparseTraining(method=method, sparsity=0.8, update_interval=2, stop_step=1.0, summary=False)
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=8, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[dst, Dump(dst, out)])
    trainer.fit(TinyNet(n=128))
