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
    with pytest.raises(ValueError, match="has none of the callbacks"):
        build_cli(["--config", QUICKSTART, "--trainer.callbacks=[]", "--sparsity", "0.3"], run=False)


def test_sparsity_override_is_in_print_config_and_saved_config(tmp_path, monkeypatch, capsys):
    import yaml

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", QUICKSTART, "--sparsity", "0.7", "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    (dst,) = [c for c in printed["trainer"]["callbacks"] if c["class_path"].endswith("DynamicSparseTraining")]
    assert dst["init_args"]["sparsity"] == 0.7 and printed["sparsity"] == 0.7

    main(["fit", "--config", QUICKSTART, "--sparsity", "0.7", "--trainer.max_steps=1",
          "--trainer.limit_val_batches=0", "--test_after_fit=false", "--trainer.enable_progress_bar=false",
          f"--trainer.logger.init_args.save_dir={tmp_path}"])
    saved = yaml.safe_load((tmp_path / "quickstart" / "version_0" / "config.yaml").read_text())
    (dst,) = [c for c in saved["trainer"]["callbacks"] if c["class_path"].endswith("DynamicSparseTraining")]
    assert dst["init_args"]["sparsity"] == 0.7


def _bad_recipe(tmp_path) -> Path:
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path(QUICKSTART).read_text().replace("method: rigl", "method: rigll"))
    return bad


def test_bad_recipe_value_gives_a_short_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LIGHTNING_SPARSE_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(_bad_recipe(tmp_path))])
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err[0].startswith("lightning-sparse: error: DynamicSparseTraining: `method` must be one of")
    assert "got 'rigll'" in err[0] and len(err) <= 3 and "Traceback" not in "\n".join(err)
    assert "LIGHTNING_SPARSE_TRACEBACK=1" in err[-1]


def test_bad_recipe_value_full_traceback_on_request(tmp_path, monkeypatch):
    from lightning_sparse.cli import RecipeError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIGHTNING_SPARSE_TRACEBACK", "1")
    with pytest.raises(RecipeError, match="DynamicSparseTraining: `method`") as info:
        main(["fit", "--config", str(_bad_recipe(tmp_path))])
    assert isinstance(info.value.__cause__, ValueError)  # the original chain is kept


def test_bad_recipe_value_from_a_subprocess(tmp_path):
    import subprocess

    env = {k: v for k, v in __import__("os").environ.items() if k != "LIGHTNING_SPARSE_TRACEBACK"}
    proc = subprocess.run([sys.executable, "-m", "lightning_sparse", "fit", "--config", str(_bad_recipe(tmp_path))],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "error: DynamicSparseTraining: `method` must be one of" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3


def test_data_paths_in_a_config_are_relative_to_the_config(tmp_path, monkeypatch, capsys):
    """A recipe's data_dir / cache_dir resolve from the recipe's folder, not the working directory."""
    import yaml

    recipe = Path(QUICKSTART).parent / "nerva" / "dense_mlp_cifar10.yaml"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(recipe), "--print_config"])
    init = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]
    root = recipe.parents[2]
    assert Path(init["data_dir"]) == root.parent / "shared" / "data" / "cifar10-q75"
    assert Path(init["cache_dir"]) == root / ".cache" / "cifar10"
    if (root.parent / "shared" / "data").exists():
        assert Path(init["data_dir"]).is_dir()

    # given on the command line, the same key is relative to the working directory
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(recipe), "--data.init_args.data_dir=here", "--print_config"])
    assert Path(yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]["data_dir"]).resolve() == (
        tmp_path / "here").resolve()


def test_sparsity_set_inside_a_config_file(tmp_path, monkeypatch):
    from lightning_sparse.callbacks import DynamicSparseTraining
    from lightning_sparse.cli import build_cli

    monkeypatch.chdir(tmp_path)
    override = tmp_path / "sweep.yaml"
    override.write_text("sparsity: 0.4\n")
    cli = build_cli(["--config", QUICKSTART, "--config", str(override)], run=False)
    (dst,) = [c for c in cli.trainer.callbacks if isinstance(c, DynamicSparseTraining)]
    assert dst.sparsity == 0.4


def test_iterative_lottery_ticket_rounds_from_the_cli(tmp_path, monkeypatch):
    """The documented IMP loop: a dense run with an appended 2-round LotteryTicket, then a run that
    trains the ticket (`masks_from`) and prunes it again into the same file."""
    import yaml

    from lightning_sparse.callbacks import load_ticket

    monkeypatch.chdir(tmp_path)
    ticket = str(tmp_path / "ticket.pt")
    base = yaml.safe_load(Path(QUICKSTART).read_text())
    base["trainer"].update(max_epochs=1, logger=False, enable_checkpointing=False)
    base["trainer"]["callbacks"] = []
    base["test_after_fit"] = False
    dense = tmp_path / "dense.yaml"
    dense.write_text(yaml.safe_dump(base))
    append = ["--trainer.callbacks+=LotteryTicket", "--trainer.callbacks.sparsity=0.75",
              "--trainer.callbacks.rounds=2", f"--trainer.callbacks.path={ticket}"]
    main(["fit", "--config", str(dense), "--model.init_args.warmup_steps=0", *append])
    first = load_ticket(ticket)
    assert first["round"] == 1 and first["density"] == pytest.approx(0.5)
    base["trainer"]["callbacks"] = [{"class_path": "lightning_sparse.callbacks.DynamicSparseTraining",
                                     "init_args": {"method": "static", "masks_from": ticket}}]
    imp = tmp_path / "imp.yaml"
    imp.write_text(yaml.safe_dump(base))
    main(["fit", "--config", str(imp), "--model.init_args.warmup_steps=0", *append])
    second = load_ticket(ticket)
    assert second["round"] == 2 and second["density"] == pytest.approx(0.25)
    for name, mask in second["masks"].items():
        assert not (mask & ~first["masks"][name]).any(), name  # pruned weights stay pruned
    for key, value in first["weights"].items():  # rewound to the same initialization
        assert (second["weights"][key] == value * first["masks"].get(key, 1)).all(), key
