"""MOML under DDP (2 CPU processes, gloo): the hypergradients are averaged, so alpha stays identical."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import run_worker  # noqa: E402


def test_alpha_and_the_network_stay_identical_on_both_ranks(tmp_path):
    run_worker(Path(__file__), tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert not torch.allclose(r0["alpha"], torch.full((2,), 0.5))  # alpha moved
    assert torch.allclose(r0["alpha"], r1["alpha"], atol=1e-7)
    for name, value in r0["params"].items():
        assert torch.allclose(value, r1["params"][name], atol=1e-6), name


def _worker(out: str) -> None:
    from lightning.pytorch import Trainer, seed_everything
    from torch.utils.data import DataLoader
    from test_meta_learning import _mtl, _Pairs

    seed_everything(0)
    task = _mtl("moml", meta_lr=0.05)
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=1, logger=False,
                      enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    trainer.fit(task, DataLoader(_Pairs(), batch_size=2))
    torch.save({"alpha": task.alpha.detach().clone(),
                "params": {k: v.detach().clone() for k, v in task.net.named_parameters()}},  # BN buffers are per rank
               Path(out) / f"rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    _worker(sys.argv[1])
