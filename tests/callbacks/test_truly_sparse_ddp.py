"""TrulySparse under DDP (2 CPU processes, gloo): the same training as masked RigL on every rank."""

from pathlib import Path

import helpers
import torch

WORKER = Path(__file__).with_name("_truly_sparse_ddp_worker.py")


def run_worker(tmp_path, mode):
    helpers.run_worker(WORKER, tmp_path, mode)
    return [torch.load(tmp_path / f"{mode}_rank{r}.pt", weights_only=False) for r in (0, 1)]


def test_truly_sparse_under_ddp_matches_masked_training(tmp_path):
    masked = run_worker(tmp_path, "masked")
    sparse = run_worker(tmp_path, "truly_sparse")
    for r0, r1 in (masked, sparse):
        assert r0["updates"] == r1["updates"] == 3  # steps 2, 4, 6
        for name in r0["masks"]:
            assert torch.equal(r0["masks"][name], r1["masks"][name]), name
        for name in r0["weights"]:
            assert torch.equal(r0["weights"][name], r1["weights"][name]), name
    for name in masked[0]["masks"]:
        assert torch.equal(masked[0]["masks"][name], sparse[0]["masks"][name]), name
    for name, w in masked[0]["weights"].items():
        torch.testing.assert_close(sparse[0]["weights"][name], w, atol=1e-5, rtol=1e-4, msg=name)
    # truly sparse between updates (ERK at 80%: net.0 0.21, net.2 0.14, net.4 0.63), dense for updates
    flags = sparse[0]["flags"]
    assert flags == {s: [False, False, False] if s in (2, 4, 6) else [True, True, False] for s in range(8)}
    assert all(f == [False, False, False] for f in masked[0]["flags"].values())
    # the CSR structure is not broadcast by DDP (equal on every rank by construction)
    assert "net.0.col_indices" in sparse[0]["ignored"] and masked[0]["ignored"] == []
