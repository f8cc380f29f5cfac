"""The ``lightning-sparse`` CLI runs the quickstart recipe end to end (tiny budgets, CPU)."""

import csv
import runpy
import sys
from pathlib import Path

import pytest

from lightning_sparse.cli import main

QUICKSTART = str(Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml")


def _logged(run_dir: Path) -> dict[str, list[float]]:
    values: dict[str, list[float]] = {}
    with open(run_dir / "metrics.csv") as f:
        for row in csv.DictReader(f):
            for key, value in row.items():
                if value:
                    values.setdefault(key, []).append(float(value))
    return values


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lightning-sparse"])  # LightningCLI warns about pytest's


def test_fit_fast_dev_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written by mistake lands here, not in the repo
    main(["fit", "--config", QUICKSTART, "--trainer.fast_dev_run=true",
          "--model.init_args.warmup_steps=0", f"--trainer.default_root_dir={tmp_path}"])
    assert not (tmp_path / "lightning_logs").exists()  # fast_dev_run: no logger, no checkpoint


def test_fit_then_test_checkpoint(tmp_path, monkeypatch):
    """One short epoch: logs train/val/test and sparsity metrics; `test` on last.ckpt agrees."""
    monkeypatch.chdir(tmp_path)
    common = ["--config", QUICKSTART, f"--trainer.logger.init_args.save_dir={tmp_path}"]
    main(["fit", *common, "--trainer.max_epochs=1", "--trainer.limit_train_batches=10",
          "--trainer.log_every_n_steps=2", "--model.init_args.warmup_steps=0",
          "--trainer.enable_progress_bar=false"])
    run = tmp_path / "quickstart" / "version_0"
    assert (run / "config.yaml").exists()
    fit = _logged(run)
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "test/loss", "test/acc"):
        assert key in fit, key
    assert fit["sparsity/global_density"][-1] == pytest.approx(0.2, abs=1e-3)
    assert fit["train/loss"][-1] < fit["train/loss"][0]
    assert 0.0 <= fit["test/acc"][-1] <= 1.0

    main(["test", *common, f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
          "--trainer.enable_progress_bar=false"])
    assert _logged(tmp_path / "quickstart" / "version_1")["test/acc"] == fit["test/acc"]


def test_python_dash_m(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["lightning_sparse", "fit", "--config", QUICKSTART,
                                      "--print_config"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("lightning_sparse", run_name="__main__")
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert "lightning_sparse.callbacks.DynamicSparseTraining" in out
    assert "test_after_fit: true" in out


def test_sparsity_override_reaches_every_dst_callback(tmp_path, monkeypatch):
    from lightning_sparse.callbacks import DynamicSparseTraining
    from lightning_sparse.cli import build_cli

    monkeypatch.chdir(tmp_path)
    cli = build_cli(["--config", QUICKSTART, "--sparsity", "0.3"], run=False)
    (dst,) = [c for c in cli.trainer.callbacks if isinstance(c, DynamicSparseTraining)]
    assert dst.sparsity == 0.3
    with pytest.raises(ValueError, match=r"`sparsity` must be a number in \[0, 1\), got 1.5"):
        build_cli(["--config", QUICKSTART, "--sparsity", "1.5"], run=False)
    with pytest.raises(ValueError, match="has no DynamicSparseTraining callback"):
        build_cli(["--config", QUICKSTART, "--trainer.callbacks=[]", "--sparsity", "0.3"], run=False)
