"""DynamicDataPruning under DDP (2 CPU processes, gloo): one selection, disjoint shards, shared scores."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import helpers  # noqa: E402

WORKER = Path(__file__).with_name("_pruning_ddp_worker.py")


@pytest.mark.parametrize("kind", ["datamodule", "plain"])
def test_two_ranks_share_scores_and_split_the_selection(tmp_path, kind):
    helpers.run_worker(WORKER, tmp_path, kind)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    n = 41 if kind == "plain" else 40
    assert torch.equal(r0["scores"], r1["scores"]) and torch.equal(r0["scored"], r1["scored"])
    assert bool(r0["scored"].all())  # both ranks' losses reached both ranks
    assert r0["selections"] == r1["selections"]
    for name, w in r0["weights"].items():
        assert torch.equal(w, r1["weights"][name]), name
    for epoch in r0["batches"]:
        a = [i for b in r0["batches"][epoch] for i in b]
        b = [i for b in r1["batches"][epoch] for i in b]
        assert len(r0["batches"][epoch]) == len(r1["batches"][epoch])  # same number of steps
        if kind == "datamodule":  # 20 kept of 40: 10 per rank, disjoint
            assert len(a) == len(b) == 10 and not set(a) & set(b)
        else:
            assert len(a) == len(b)
            assert len(set(a) & set(b)) <= 1  # an odd count is padded with one repeated sample
    last = max(r0["batches"])
    union = sorted({i for b in r0["batches"][last] + r1["batches"][last] for i in b})
    assert union == sorted(set(r0["selections"][last]))
    assert r0["seen"] == r1["seen"] >= n
