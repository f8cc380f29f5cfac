"""A run killed with SIGKILL mid-epoch and resumed from ``last.ckpt`` ends bit-for-bit where an
uninterrupted run ends: weights, DST masks and optimizer state (``tests/_resume_worker.py``).

RigL (``update_interval=5``) trains ``small_cnn`` on the digits (40 batches per epoch) to step 60;
the killed run dies right after step 37, its last checkpoint is the one of step 30 (mid-epoch 0),
and the resumed run continues from there through the rest of epoch 0 and into epoch 1. Nothing
but the checkpoint connects the processes, so the data order, the loop's position inside the
epoch, the callback's state and the RNG states must all come back from it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).with_name("_resume_worker.py")
ROOT = WORKER.parents[1]


def _run(mode: str, out: Path, workers: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKERS": str(workers), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(WORKER), mode, str(out)], env=env, capture_output=True, text=True,
                          timeout=300)


def _result(out: Path) -> dict:
    return torch.load(out / "result.pt", weights_only=False)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = _run("full", out, workers=0)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _result(out)


@pytest.mark.parametrize("workers", [0, 2])
def test_sigkill_then_resume_matches_the_uninterrupted_run(uninterrupted, tmp_path, workers):
    killed = _run("killed", tmp_path, workers)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "result.pt").exists()
    last = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 30
    (loader_state,) = last["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state["epoch"] == 0 and loader_state["batches"] == 30  # trained on, not prefetched

    resumed = _run("resume", tmp_path, workers)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got, want = _result(tmp_path), uninterrupted
    assert got["global_step"] == want["global_step"] == 60
    assert got["weights"].keys() == want["weights"].keys()
    for name, value in want["weights"].items():
        assert torch.equal(got["weights"][name], value), name
    assert got["masks"].keys() == want["masks"].keys() and want["masks"]
    for name, mask in want["masks"].items():
        assert torch.equal(got["masks"][name], mask), name
    opt_got, opt_want = got["optimizer"], want["optimizer"]
    assert opt_got["param_groups"] == opt_want["param_groups"]
    assert opt_got["state"].keys() == opt_want["state"].keys()
    for key, state in opt_want["state"].items():
        for field, value in state.items():
            assert torch.equal(opt_got["state"][key][field], value), (key, field)
