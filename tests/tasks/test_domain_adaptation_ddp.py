"""DomainAdaptation under DDP (2 CPU processes, gloo): the per-class source weights are reduced over ranks."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import run_worker  # noqa: E402


def test_class_weights_are_the_same_reduced_means_on_both_ranks(tmp_path):
    run_worker(Path(__file__), tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["counts"].sum().item() == 24  # 12 source samples per rank, counted over both ranks
    assert torch.allclose(r0["class_weights"], r1["class_weights"]) and torch.equal(r0["counts"], r1["counts"])
    assert torch.allclose(r0["class_weights"], r0["sums"] / r0["counts"])
    for name, value in r0["params"].items():  # DDP keeps the network and the weight network in step
        assert torch.allclose(value, r1["params"][name], atol=1e-6), name
    assert r0["local"] != r1["local"]  # the ranks saw different samples


def _worker(out: str) -> None:
    from lightning.pytorch import Callback, Trainer, seed_everything
    from torch.utils.data import DataLoader
    from test_domain_adaptation import _Pairs, _task

    class _Local(Callback):
        seen = 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.seen += int(batch["source_label"].sum())

    seed_everything(0)
    task = _task("partial")
    local = _Local()
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                      callbacks=[local])
    trainer.fit(task, DataLoader(_Pairs(24), batch_size=4))
    torch.save({"class_weights": task.class_weights.clone(), "sums": task._weight_sums.clone(),
                "counts": task._weight_counts.clone(), "local": local.seen,
                "params": {k: v.detach().clone() for k, v in task.state_dict().items() if "net" in k}},
               Path(out) / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    _worker(sys.argv[1])
