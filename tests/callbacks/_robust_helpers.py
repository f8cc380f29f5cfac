"""A tiny DataModule offering corrupted test sets, for the robustness-callback tests."""

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, TensorDataset

from helpers import make_data


class NoisyDataModule(LightningDataModule):
    """Test set = the training task's data; corruption `noise` adds Gaussian noise growing with severity,
    corruption `zero` blanks a severity-dependent share of the features."""

    available_corruptions = ("noise", "zero")

    def __init__(self, n=96, batch_size=16):
        super().__init__()
        self.batch_size = batch_size
        self.data = make_data(n)

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size)

    def corruption_datasets(self, corruptions=None, severities=(1, 2, 3, 4, 5)):
        x, y = self.data.tensors
        g = torch.Generator().manual_seed(12345)  # not the data seed: noise must not be a copy of x
        noise = torch.randn(x.shape, generator=g)
        for name in corruptions or self.available_corruptions:
            for s in severities:
                if name == "noise":
                    xc = x + noise * 0.6 * s
                else:
                    xc = x.clone()
                    xc[:, : int(x.shape[1] * s / 6)] = 0
                yield name, s, TensorDataset(xc, y)
