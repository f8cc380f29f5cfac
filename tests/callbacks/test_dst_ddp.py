"""Masks stay identical across 2 DDP ranks (CPU, gloo) while each rank sees different data."""

import sys
from pathlib import Path

import helpers
import pytest
import torch

WORKER = Path(__file__).with_name("_ddp_worker.py")


def run_worker(tmp_path, mode):
    helpers.run_worker(WORKER, tmp_path, mode)


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_masks_identical_on_two_ranks(tmp_path, method):
    run_worker(tmp_path, method)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["updates"] == r1["updates"] == 3
    assert r0["ever"] > 0.2  # the topology did move (exploration beyond the initial 20%)
    for name in r0["masks"]:
        assert torch.equal(r0["masks"][name], r1["masks"][name]), name
    for name in r0["weights"]:
        assert torch.equal(r0["weights"][name], r1["weights"][name]), name


@pytest.mark.parametrize("mode", ["pai-snip", "pai-grasp", "pai-synflow", "dst-snip", "gmp"])
def test_pruning_masks_identical_on_two_ranks(tmp_path, mode):
    """Scores from data are summed over the ranks (each sees its own shard): one set of masks."""
    run_worker(tmp_path, mode)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert sum(int(m.sum()) for m in r0["masks"].values()) == round(0.2 * sum(m.numel() for m in r0["masks"].values()))
    for name in r0["masks"]:
        assert torch.equal(r0["masks"][name], r1["masks"][name]), name
    for name in r0["weights"]:
        assert torch.equal(r0["weights"][name], r1["weights"][name]), name


def test_lottery_ticket_under_ddp_and_training_from_it(tmp_path):
    run_worker(tmp_path, "lottery")
    from lightning_sparse.callbacks import load_ticket

    ticket = load_ticket(tmp_path / "ticket.pt")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for name in r0["masks"]:
        assert torch.equal(r0["masks"][name], ticket["masks"][name]), name
        assert torch.equal(r1["masks"][name], ticket["masks"][name]), name
    for name in r0["weights"]:
        assert torch.equal(r0["weights"][name], r1["weights"][name]), name


def test_hardness_scores_under_ddp_equal_one_process_el2n(tmp_path):
    """Each rank scores its shard; rank 0 writes one file that equals EL2N of the final weights."""
    run_worker(tmp_path, "hardness")
    sys.path.insert(0, str(WORKER.parent))
    from test_hardness_callback import _task

    from lightning_sparse.data import CIFAR10DataModule
    from lightning_sparse.metrics import el2n_scores, read_scores

    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for name in r0["weights"]:
        assert torch.equal(r0["weights"][name], r1["weights"][name]), name
    scores, indices = read_scores(tmp_path / "scores.pt")
    assert indices.tolist() == list(range(85))
    task = _task()
    task.load_state_dict(r0["weights"])
    task.eval()
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "cifar"), batch_size=16, augment=False)
    dm.setup("fit")
    data = dm.train_eval_dataset()
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor([int(data[i][1]) for i in range(len(data))])
    with torch.no_grad():
        expected = el2n_scores(task(x), y)
    assert torch.allclose(scores, expected, atol=1e-5)


def test_robustness_counts_every_test_sample_once_under_ddp(tmp_path):
    sys.path.insert(0, str(WORKER.parent))
    from _robust_helpers import NoisyDataModule
    from helpers import TinyNet

    run_worker(tmp_path, "robustness")
    r0, r1 = (torch.load(tmp_path / f"robust_rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["summary"] == r1["summary"]
    model = TinyNet()
    model.load_state_dict(r0["weights"])
    model.eval()
    dm = NoisyDataModule(n=90)
    expected = {("clean", 0): dm.data}
    expected.update({(n, s): ds for n, s, ds in dm.corruption_datasets(severities=[1, 4])})
    got = {(r["corruption"], r["severity"]): r["accuracy"] for r in r0["summary"]}
    assert set(got) == set(expected)
    with torch.no_grad():
        for key, ds in expected.items():
            x, y = ds.tensors
            assert got[key] == pytest.approx(float((model(x).argmax(-1) == y).float().mean())), key
