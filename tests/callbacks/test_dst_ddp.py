"""Masks stay identical across 2 DDP ranks (CPU, gloo) while each rank sees different data."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("_ddp_worker.py")


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_masks_identical_on_two_ranks(tmp_path, method):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(WORKER), str(tmp_path), method], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["updates"] == r1["updates"] == 3
    assert r0["ever"] > 0.2  # the topology did move (exploration beyond the initial 20%)
    for name in r0["masks"]:
        assert torch.equal(r0["masks"][name], r1["masks"][name]), name
    for name in r0["weights"]:
        assert torch.equal(r0["weights"][name], r1["weights"][name]), name
