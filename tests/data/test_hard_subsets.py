"""The training-set options of the image DataModules: ``subset`` by scores, ``train_fraction``,
``train_corruption`` / ``test_corruption`` and ``train_eval_dataset``, on fake CIFAR pickles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_cifar import write_cifar10_pickles

from lightning_sparse.data.cifar import CIFAR10DataModule
from lightning_sparse.data.corruptions import Corrupt
from lightning_sparse.data.image.subsets import train_corruption_seed
from lightning_sparse.data.transforms import cifar_eval_transform, cifar_train_transform
from lightning_sparse.metrics.hardness import save_scores


def _dm(root, **kwargs) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(str(root), **kwargs)
    dm.setup()
    return dm


def _scores(n: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).permutation(n).astype(np.float32) / n)  # distinct


# --------------------------------------------------------------------------- argument errors
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"subset": "hard:0.3"}, r"`subset` must be None or 'hardest:F', 'easiest:F' or 'random:F' .* got 'hard:0.3'"),
    ({"subset": "hardest:0"}, r"`subset` must be .* in \(0, 1\], got 'hardest:0'"),
    ({"subset": "hardest:1.5"}, r"`subset` must be .*got 'hardest:1.5'"),
    ({"subset": "hardest"}, r"`subset` must be .*got 'hardest'"),
    ({"subset": 0.3}, r"`subset` must be .*got 0.3"),
    ({"subset": "hardest:0.3"}, r"`subset='hardest:0.3'` ranks images by score: it needs `scores_file`"),
    ({"subset": "easiest:0.5"}, r"`subset='easiest:0.5'` .* needs `scores_file`"),
    ({"scores_file": "s.pt"}, r"`scores_file` is read only by `subset='hardest:F'`.*subset=None"),
    ({"subset": "random:0.5", "scores_file": "s.pt"}, r"`scores_file` is read only by .*'random:0.5'"),
    ({"subset": "hardest:0.3", "scores_file": []}, r"`scores_file` must be None, a path or a non-empty list"),
    ({"train_fraction": 0.0}, r"`train_fraction` must be None or a fraction in \(0, 1\], got 0.0"),
    ({"train_fraction": True}, r"`train_fraction` must be None or a fraction"),
    ({"train_fraction": 0.5, "train_subset": 10}, r"`train_fraction` and `train_subset` .* give one of them"),
    ({"train_corruption": "gaussian_noise"}, r"`train_corruption` must be None or 'name:severity' .*'gaussian_noise'"),
    ({"train_corruption": "gaussian_noise:0"}, r"`train_corruption` must be .*severity 1-5"),
    ({"test_corruption": "noise:3"}, r"`test_corruption` must be None or 'name:severity' .*'noise:3'"),
])
def test_bad_training_set_options_fail_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CIFAR10DataModule("/nonexistent", **kwargs)


# --------------------------------------------------------------------------- subsets by score
def test_hardest_and_easiest_keep_exactly_the_top_and_bottom_share_of_the_pool(tmp_path):
    train_x, train_y, *_ = write_cifar10_pickles(tmp_path / "data")  # 100 training images
    scores = _scores(100, 0)
    save_scores(tmp_path / "s.pt", scores, torch.arange(100), "el2n", 1)
    base = _dm(tmp_path / "data", val_split=20)
    pool = np.sort(base.train_dataset.source_indices)  # the 80 left after the validation split
    ranked = pool[np.argsort(-scores.numpy()[pool])]
    hard = _dm(tmp_path / "data", val_split=20, subset="hardest:0.3", scores_file=str(tmp_path / "s.pt"))
    easy = _dm(tmp_path / "data", val_split=20, subset="easiest:0.3", scores_file=str(tmp_path / "s.pt"))
    assert len(hard.train_dataset) == 24 == len(easy.train_dataset)  # 30% of 80
    np.testing.assert_array_equal(hard.train_dataset.source_indices, np.sort(ranked[:24]))
    np.testing.assert_array_equal(easy.train_dataset.source_indices, np.sort(ranked[-24:]))
    np.testing.assert_array_equal(hard.val_dataset.source_indices, base.val_dataset.source_indices)
    kept = hard.train_dataset.source_indices
    assert scores[kept].min() > scores[np.setdiff1d(pool, kept)].max()
    raw = _dm(tmp_path / "data", augment=False, val_split=20, subset="hardest:0.3",
              scores_file=str(tmp_path / "s.pt")).train_dataset
    x, y = raw[3]  # the images and labels of those positions
    torch.testing.assert_close(x, cifar_eval_transform()(train_x[kept[3]]), rtol=0, atol=0)
    assert y == int(train_y[kept[3]])


def test_several_scores_files_are_averaged(tmp_path):
    write_cifar10_pickles(tmp_path / "data")
    runs = [_scores(100, s) for s in (1, 2, 3)]
    paths = []
    for k, run in enumerate(runs):
        order = torch.randperm(100, generator=torch.Generator().manual_seed(k))  # any order in the file
        save_scores(tmp_path / f"run{k}.pt", run[order], order, "el2n", 2)
        paths.append(str(tmp_path / f"run{k}.pt"))
    mean = torch.stack(runs).mean(0).numpy()
    hard = _dm(tmp_path / "data", subset="hardest:0.1", scores_file=paths)
    np.testing.assert_array_equal(hard.train_dataset.source_indices, np.sort(np.argsort(-mean)[:10]))
    single = _dm(tmp_path / "data", subset="hardest:0.1", scores_file=paths[0])
    assert not np.array_equal(single.train_dataset.source_indices, hard.train_dataset.source_indices)


def test_scores_file_must_cover_the_training_pool(tmp_path):
    write_cifar10_pickles(tmp_path / "data")
    save_scores(tmp_path / "part.pt", torch.rand(50), torch.arange(50), "el2n", 1)
    with pytest.raises(ValueError, match=r"`scores_file` .* scores 50 training images but misses 50 of the 100"):
        _dm(tmp_path / "data", subset="hardest:0.3", scores_file=str(tmp_path / "part.pt"))
    save_scores(tmp_path / "big.pt", torch.rand(150), torch.arange(150), "el2n", 1)
    with pytest.raises(ValueError, match=r"scores positions up to 149, but the training split has 100 images"):
        _dm(tmp_path / "data", subset="hardest:0.3", scores_file=str(tmp_path / "big.pt"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _dm(tmp_path / "data", subset="hardest:0.3", scores_file=str(tmp_path / "none.pt"))
    # a file of the whole split serves a run on a part of it (the validation split is simply not ranked)
    save_scores(tmp_path / "all.pt", _scores(100, 4), torch.arange(100), "el2n", 1)
    dm = _dm(tmp_path / "data", val_split=50, subset="easiest:0.2", scores_file=str(tmp_path / "all.pt"))
    assert len(dm.train_dataset) == 10


def test_random_subset_is_stratified_seeded_and_needs_no_scores(tmp_path):
    write_cifar10_pickles(tmp_path / "data", per_batch=40)  # 200 images, 20 per class
    a = _dm(tmp_path / "data", subset="random:0.3", seed=1)
    b = _dm(tmp_path / "data", subset="random:0.3", seed=1)
    c = _dm(tmp_path / "data", subset="random:0.3", seed=2)
    assert np.bincount(a.train_dataset.labels).tolist() == [6] * 10
    np.testing.assert_array_equal(a.train_dataset.source_indices, b.train_dataset.source_indices)
    assert not np.array_equal(a.train_dataset.source_indices, c.train_dataset.source_indices)


# --------------------------------------------------------------------------- limited data
def test_train_fraction_is_a_stratified_seeded_share_like_train_subset(tmp_path):
    write_cifar10_pickles(tmp_path / "data", per_batch=40)  # 200 images, 20 per class
    dm = _dm(tmp_path / "data", val_split=0.5, train_fraction=0.3)
    assert len(dm.train_dataset) == 30 and np.bincount(dm.train_dataset.labels).tolist() == [3] * 10
    assert not set(dm.train_dataset.source_indices) & set(dm.val_dataset.source_indices)
    same = _dm(tmp_path / "data", val_split=0.5, train_subset=30)
    np.testing.assert_array_equal(dm.train_dataset.source_indices, same.train_dataset.source_indices)
    other = _dm(tmp_path / "data", val_split=0.5, train_fraction=0.3, seed=5)
    assert not np.array_equal(dm.train_dataset.source_indices, other.train_dataset.source_indices)
    assert len(_dm(tmp_path / "data", train_fraction=1.0).train_dataset) == 200
    with pytest.raises(ValueError, match=r"`train_fraction` must keep at least one of the 200 training images"):
        _dm(tmp_path / "data", train_fraction=0.001)


def test_subset_ranks_within_the_train_fraction(tmp_path):
    write_cifar10_pickles(tmp_path / "data", per_batch=40)
    scores = _scores(200, 7)
    save_scores(tmp_path / "s.pt", scores, torch.arange(200), "el2n", 1)
    limited = _dm(tmp_path / "data", train_fraction=0.5).train_dataset.source_indices
    dm = _dm(tmp_path / "data", train_fraction=0.5, subset="hardest:0.2", scores_file=str(tmp_path / "s.pt"))
    expected = np.sort(limited[np.argsort(-scores.numpy()[limited])[:20]])
    np.testing.assert_array_equal(dm.train_dataset.source_indices, expected)


# --------------------------------------------------------------------------- corrupted training images
def test_train_corruption_corrupts_each_image_by_its_position_deterministically(tmp_path):
    train_x, *_ = write_cifar10_pickles(tmp_path / "data")
    clean = _dm(tmp_path / "data", augment=False, val_split=20)
    noisy = _dm(tmp_path / "data", augment=False, val_split=20, train_corruption="gaussian_noise:3")
    again = _dm(tmp_path / "data", augment=False, val_split=20, train_corruption="gaussian_noise:3")
    part = _dm(tmp_path / "data", augment=False, train_subset=30, train_corruption="gaussian_noise:3")
    np.testing.assert_array_equal(noisy.train_dataset.source_indices, clean.train_dataset.source_indices)
    positions = noisy.train_dataset.source_indices
    x_clean = torch.stack([clean.train_dataset[i][0] for i in range(5)])
    x_noisy = torch.stack([noisy.train_dataset[i][0] for i in range(5)])
    assert (x_noisy - x_clean).abs().mean() > 0.1
    torch.testing.assert_close(x_noisy, torch.stack([again.train_dataset[i][0] for i in range(5)]), rtol=0, atol=0)
    assert [noisy.train_dataset[i][1] for i in range(5)] == [clean.train_dataset[i][1] for i in range(5)]
    corrupt = Corrupt("gaussian_noise", 3, seed=train_corruption_seed(0), params="cifar")
    expected = cifar_eval_transform()(corrupt(train_x[positions[2]], index=int(positions[2])))
    torch.testing.assert_close(noisy.train_dataset[2][0], expected, rtol=0, atol=0)
    # the same image keeps its corruption in another subset
    where = {int(p): k for k, p in enumerate(positions)}
    i, j = next((i, where[int(p)]) for i, p in enumerate(part.train_dataset.source_indices)
                if int(p) in where and where[int(p)] != i)  # at another index there
    torch.testing.assert_close(part.train_dataset[i][0], noisy.train_dataset[j][0], rtol=0, atol=0)
    # validation stays clean; the test split too unless asked
    torch.testing.assert_close(noisy.val_dataset[0][0], clean.val_dataset[0][0], rtol=0, atol=0)
    torch.testing.assert_close(noisy.test_dataset[0][0], clean.test_dataset[0][0], rtol=0, atol=0)


def test_train_corruption_runs_before_the_augmentation(tmp_path):
    train_x, *_ = write_cifar10_pickles(tmp_path / "data")
    noisy = _dm(tmp_path / "data", augment=True, train_corruption="contrast:5")
    pos = int(noisy.train_dataset.source_indices[3])
    corrupted = Corrupt("contrast", 5, seed=train_corruption_seed(0), params="cifar")(train_x[pos], index=pos)
    for seed in (0, 1):
        torch.manual_seed(seed)
        view = noisy.train_dataset[3][0]
        torch.manual_seed(seed)
        torch.testing.assert_close(view, cifar_train_transform()(corrupted), rtol=0, atol=0)


def test_test_corruption_is_the_corruption_datasets_copy(tmp_path):
    write_cifar10_pickles(tmp_path / "data")
    clean = _dm(tmp_path / "data")
    noisy = _dm(tmp_path / "data", test_corruption="shot_noise:4")
    _, _, reference = next(iter(clean.corruption_datasets(["shot_noise"], [4])))
    assert len(noisy.test_dataset) == len(clean.test_dataset) == 30
    for i in (0, 7):
        torch.testing.assert_close(noisy.test_dataset[i][0], reference[i][0], rtol=0, atol=0)
        assert noisy.test_dataset[i][1] == clean.test_dataset[i][1]
    assert (noisy.test_dataset[0][0] - clean.test_dataset[0][0]).abs().mean() > 0.1


# --------------------------------------------------------------------------- un-augmented training set
def test_train_eval_dataset_is_the_training_set_unaugmented(tmp_path):
    train_x, *_ = write_cifar10_pickles(tmp_path / "data")
    dm = CIFAR10DataModule(str(tmp_path / "data"), augment=True, val_split=20, train_subset=40)
    evaluation = dm.train_eval_dataset()  # runs setup("fit") itself
    np.testing.assert_array_equal(evaluation.source_indices, dm.train_dataset.source_indices)
    assert len(evaluation) == 40
    for i in (0, 13):
        x, y = evaluation[i]
        pos = evaluation.source_indices[i]
        torch.testing.assert_close(x, cifar_eval_transform()(train_x[pos]), rtol=0, atol=0)
        assert y == dm.train_dataset[i][1]
    noisy = _dm(tmp_path / "data", augment=True, train_corruption="fog:2")
    plain = _dm(tmp_path / "data", augment=False, train_corruption="fog:2")
    torch.testing.assert_close(noisy.train_eval_dataset()[5][0], plain.train_dataset[5][0], rtol=0, atol=0)
