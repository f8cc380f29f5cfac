"""MSRS under DDP (2 CPU processes, gloo): every rank learns the same logits from its own shard,
binarises at the same step and ends with the same masks and weights."""

from pathlib import Path

import helpers
import pytest
import torch

WORKER = Path(__file__).with_name("_msrs_ddp_worker.py")


@pytest.mark.parametrize("mode", ["sparse", "dense"])
def test_msrs_is_identical_on_two_ranks(tmp_path, mode):
    helpers.run_worker(WORKER, tmp_path, mode)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["phase"] == r1["phase"] == mode
    assert r0["transition"] == r1["transition"] == 6
    assert r0["changes"] == r1["changes"] and len(r0["changes"]) == 3
    for name, s in r0["logits"].items():
        assert torch.equal(s, r1["logits"][name]), name
        assert not torch.allclose(s, torch.full_like(s, -0.01)), name  # the logits did learn
    for name in r0["masks"]:
        assert torch.equal(r0["masks"][name], r1["masks"][name]), name
    for name in r0["weights"]:
        assert torch.equal(r0["weights"][name], r1["weights"][name]), name
