"""DigitsDataModule: split sizes, determinism, stratification, shapes, value ranges, arguments."""

import numpy as np
import pytest
import torch

from lightning_sparse.data import DigitsDataModule


def _setup(**kwargs) -> DigitsDataModule:
    dm = DigitsDataModule(**kwargs)
    dm.setup("fit")
    return dm


def test_split_sizes_disjoint_and_complete():
    dm = _setup(val_fraction=0.1, test_fraction=0.2)
    sizes = len(dm.train_dataset), len(dm.val_dataset), len(dm.test_dataset)
    assert sizes == (1258, 180, 359)  # round(0.1 * 1797), round(0.2 * 1797), the rest
    parts = [d.source_indices for d in (dm.train_dataset, dm.val_dataset, dm.test_dataset)]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(1797))


def test_split_is_deterministic_per_seed():
    a, b, c = _setup(seed=3), _setup(seed=3), _setup(seed=4)
    assert np.array_equal(a.test_dataset.source_indices, b.test_dataset.source_indices)
    assert torch.equal(a.train_dataset.images, b.train_dataset.images)
    assert not np.array_equal(a.test_dataset.source_indices, c.test_dataset.source_indices)


def test_split_is_stratified():
    dm = _setup(val_fraction=0.1, test_fraction=0.2)
    labels = torch.cat([dm.train_dataset.labels, dm.val_dataset.labels, dm.test_dataset.labels])
    class_share = torch.bincount(labels, minlength=10).double() / len(labels)
    for dataset in (dm.train_dataset, dm.val_dataset, dm.test_dataset):
        counts = torch.bincount(dataset.labels, minlength=10).double()
        expected = class_share * len(dataset)
        assert (counts - expected).abs().max() <= 1.5, (counts, expected)  # rounding only


@pytest.mark.parametrize("image_size", [8, 12])
def test_shapes_dtypes_and_value_ranges(image_size):
    dm = _setup(image_size=image_size, batch_size=16)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, image_size, image_size) and x.dtype == torch.float32
    assert y.shape == (16,) and y.dtype == torch.int64 and 0 <= y.min() and y.max() <= 9
    train = dm.train_dataset.images
    assert abs(train.mean().item()) < 1e-4 and abs(train.std().item() - 1) < 1e-4
    raw = train * dm.std + dm.mean  # back to the [0, 1] pixel scale
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5 and raw.max() > 0.99
    xv, yv = next(iter(dm.val_dataloader()))
    assert xv.shape[1:] == (1, image_size, image_size)
    assert len(dm.test_dataloader().dataset) == 359


def test_upsampling_keeps_the_digit():
    small, big = _setup(image_size=8), _setup(image_size=32)
    down = torch.nn.functional.avg_pool2d(big.train_dataset.images * big.std + big.mean, 4)
    raw = small.train_dataset.images * small.std + small.mean
    assert torch.corrcoef(torch.stack([down.flatten(), raw.flatten()]))[0, 1] > 0.95


def test_return_index_yields_train_positions():
    dm = _setup(return_index=True, batch_size=32)
    x, y, index = next(iter(dm.train_dataloader()))
    assert index.dtype == torch.int64 and index.shape == (32,)
    assert torch.equal(dm.train_dataset.images[index], x)
    assert torch.equal(dm.train_dataset.labels[index], y)
    assert len(next(iter(dm.val_dataloader()))) == 2  # evaluation batches stay (x, y)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 0}, "`image_size`"),
        ({"batch_size": 0}, "`batch_size`"),
        ({"val_fraction": 0.0}, "`val_fraction` must be in \\(0, 1\\)"),
        ({"test_fraction": 1.5}, "`test_fraction`"),
        ({"val_fraction": 0.5, "test_fraction": 0.5}, "`val_fraction \\+ test_fraction`"),
        ({"num_workers": -1}, "`num_workers`"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DigitsDataModule(**kwargs)


def test_too_small_split_for_stratification():
    with pytest.raises(ValueError, match="at least one sample per class"):
        _setup(val_fraction=0.001)
