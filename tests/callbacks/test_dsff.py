"""DSFF (E2ENet's dynamic sparse feature fusion) is the DST callback at kernel granularity on the
fusion convolutions: kernels stay whole through every topology update, the rest stays dense."""

import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from helpers import Blobs
from torch.utils.data import DataLoader

from lightning_sparse.callbacks import DynamicSparseTraining
from lightning_sparse.models import E2ENET_FUSION_INCLUDE
from lightning_sparse.tasks import Segmenter


class WholeKernels(Callback):
    def __init__(self, dst):
        self.dst, self.checked, self.masks_seen = dst, 0, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        params = dict(pl_module.named_parameters())
        for name in self.dst.sparse_names:
            w = params[name].detach()
            unit = self.dst.masks[name].flatten(2)
            assert torch.equal(unit.any(-1), unit.all(-1)), name  # every kernel all in or all out
            nonzero = (w != 0).flatten(2).any(-1)
            assert not (nonzero & ~unit.all(-1)).any(), name  # a removed kernel is zero everywhere
        self.masks_seen.append({n: m.clone() for n, m in self.dst.masks.items()})
        self.checked += 1


def test_fusion_kernels_stay_whole_through_updates(tmp_path):
    seed_everything(0)
    task = Segmenter("e2enet_tiny", num_classes=3, roi_size=(8, 8, 8))
    dst = DynamicSparseTraining(method="dsff", granularity="kernel", include=E2ENET_FUSION_INCLUDE,
                                sparsity=0.8, update_interval=2, stop_step=1.0, summary=False)
    spy = WholeKernels(dst)
    Trainer(default_root_dir=tmp_path, max_steps=8, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
            callbacks=[dst, spy]).fit(task, train_dataloaders=DataLoader(Blobs(n=8, size=(8, 8, 8)), batch_size=2))
    assert spy.checked == 8 and dst.num_updates >= 3
    assert all(".fusion." in n for n in dst.sparse_names) and len(dst.sparse_names) > 0
    changed = any(not torch.equal(spy.masks_seen[0][n], spy.masks_seen[-1][n]) for n in dst.sparse_names)
    assert changed  # the fusion topology moved
    assert abs(dst.global_density - 0.2) < 0.01
    dense = [n for n, p in task.named_parameters() if n.endswith("conv.weight") and n not in dst.sparse_names]
    params = dict(task.named_parameters())
    assert dense and all(bool((params[n] != 0).all()) for n in dense[:3])
