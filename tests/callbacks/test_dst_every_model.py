"""The DST callback attaches to every registered model (one RigL update on a tiny input)."""

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

from lightning_sparse.callbacks import DynamicSparseTraining
from lightning_sparse.models import create_model, list_models


class Wrap(LightningModule):
    def __init__(self, name):
        super().__init__()
        self.model = create_model(name, num_classes=3)
        g = torch.Generator().manual_seed(0)
        self.streams = None
        if getattr(self.model, "input_convention", None) == "audio_visual":  # keyword streams
            inputs = self.model.example_inputs(batch_size=4)
            self.streams = list(inputs)
            self.data = TensorDataset(*inputs.values(), torch.randint(0, 3, (4,), generator=g))
        else:
            size = self.model.example_input_size
            self.data = TensorDataset(torch.randn(4, *size, generator=g), torch.randint(0, 3, (4,), generator=g))

    def training_step(self, batch, batch_idx):
        x = batch[0]
        if self.streams is not None:  # CTC logits averaged over time, plus the decoder's
            out = self.model(**dict(zip(self.streams, batch[:-1])), tokens=torch.full((len(x), 2), self.model.sos_eos))
            logits = out["ctc_logits"].mean(1)[:, :3] + out["decoder_logits"].mean(1)[:, :3]
            return torch.nn.functional.cross_entropy(logits, batch[-1])
        if getattr(self.model, "input_convention", None) == "segmentation":  # voxel-averaged logits of every head
            outputs = self.model(x)
            logits = sum(o.flatten(2).mean(-1) for o in (outputs if isinstance(outputs, list) else [outputs]))
        elif getattr(self.model, "input_convention", None) == "features_lengths":  # speech: time-averaged logits
            logits = self.model(x, torch.full((len(x),), x.shape[1]))[0].mean(1)
        else:
            logits = self.model(x)
        return torch.nn.functional.cross_entropy(logits, batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=2)


HEAVY = {"avsr_base", "e2enet", "unet3d", "slak_small", "slak_base"}  # 418 M parameters; the paper-scale 3D segmentation networks; SLaK-S/B


@pytest.mark.parametrize("name", [n for n in list_models() if n not in HEAVY])
def test_rigl_update_on_every_model(name, tmp_path):
    module = Wrap(name)
    dst = DynamicSparseTraining(method="rigl", sparsity=0.5, update_interval=1, stop_step=2, summary=False)
    Trainer(default_root_dir=tmp_path, max_steps=2, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[dst]).fit(module)
    assert dst.num_updates == 1
    assert dst.global_density == pytest.approx(0.5, abs=0.01)
    params = dict(module.named_parameters())
    assert all(not params[n][~m].any() for n, m in dst.masks.items())
