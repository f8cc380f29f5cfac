"""The benchmarks' command lines: data location, thread count and seeds (tiny runs only)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _common  # noqa: E402


def _load(name):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dsn():
    return _load("dsn")


@pytest.fixture
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _write_ucr(root, name="Trace", n_train=8, n_test=6, length=24):
    rng = np.random.default_rng(0)
    folder = root / name
    folder.mkdir(parents=True)
    for split, n in (("TRAIN", n_train), ("TEST", n_test)):
        rows = []
        for i in range(n):
            label = 1 + i % 2
            series = rng.normal(size=length) + (3.0 if label == 2 else 0.0) * np.sin(np.linspace(0, 6, length))
            rows.append("\t".join([str(label)] + [f"{v:.4f}" for v in series]))
        (folder / f"{name}_{split}.tsv").write_text("\n".join(rows) + "\n")


def test_dsn_unknown_name_without_data_dir_is_a_clear_error(dsn, capsys):
    with pytest.raises(SystemExit) as e:
        dsn.parse_args(["--quick", "--datasets", "Trace"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Trace" in err and "GunPoint" in err and "--data-dir" in err


def test_dsn_any_name_with_data_dir(dsn, tmp_path, capsys, keep_threads):
    _write_ucr(tmp_path)
    dm = dsn.data_module("Trace", str(tmp_path))
    assert (dm.num_classes, dm.num_channels, dm.series_length) == (2, 1, 24)
    dsn.main(["--quick", "--data-dir", str(tmp_path), "--datasets", "Trace", "--seeds", "0", "--epochs", "1"])
    out = capsys.readouterr().out
    assert f"UCR/UEA problems from {tmp_path}" in out and "1 threads" in out
    assert "| Trace |" in out


def test_dsn_seed_reaches_the_dst_callback(dsn, tmp_path, monkeypatch, keep_threads):
    assert dsn.make_dst(3, False, 5).seed == 3
    _write_ucr(tmp_path)
    seen = []
    make_dst = dsn.make_dst
    monkeypatch.setattr(dsn, "make_dst", lambda seed, *a: seen.append(seed) or make_dst(seed, *a))
    args = dsn.parse_args(["--quick", "--data-dir", str(tmp_path), "--datasets", "Trace", "--epochs", "1"])
    dm = dsn.data_module("Trace", str(tmp_path))
    for seed in (0, 1):
        dsn.train_network(args, dm, True, seed)
    assert seen == [0, 1]


@pytest.mark.parametrize("name", ["dsn", "robustness", "truly_sparse", "dst_overhead", "msrs", "e2enet",
                                  "hard_samples", "slak", "uda", "moml"])
def test_every_benchmark_takes_threads(name, monkeypatch, capsys):
    module = _load(name)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
    with pytest.raises(SystemExit):
        module.main()
    assert "--threads N|auto" in capsys.readouterr().out


def test_threads_helper(keep_threads):
    assert 1 <= _common.free_cores() <= (__import__("os").cpu_count() or 1)
    assert _common.set_threads(1) == 1 == torch.get_num_threads()
    assert _common.set_threads("auto") == _common.free_cores()


def test_data_pruning_benchmark_runs_on_a_folder_of_spoken_digits(tmp_path, capsys, keep_threads):
    """A 1-epoch run on 60 synthetic recordings in the FSDD layout: the table and the summary line."""
    import soundfile as sf

    bench = _load("data_pruning")
    rng = np.random.default_rng(0)
    rec = tmp_path / "recordings"
    rec.mkdir()
    for digit in range(10):
        for take in (0, 5, 6, 7, 8, 9):
            tone = np.sin(np.linspace(0, 40 * (digit + 1), 2400)) * 0.3 + rng.normal(0, 0.01, 2400)
            sf.write(rec / f"{digit}_spk_{take}.wav", tone.astype(np.float32), 8000)
    code = bench.main(["--data-dir", str(tmp_path), "--epochs", "1", "--seeds", "0", "--configs", "full",
                       "easy2hard-70+chunks", "--skip-other-tasks", "--threads", "1", "--layers", "1",
                       "--d-model", "16"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("| easy2hard-70+chunks |") for line in lines)
    assert lines[-1].startswith("data_pruning: easy2hard-70+chunks:")
    assert code == (0 if lines[-1].endswith("PASS") else 1)


def test_msrs_benchmark_runs_on_a_folder_of_spoken_digits(tmp_path, capsys, keep_threads):
    """A 1-epoch run of every configuration on synthetic recordings in the FSDD layout."""
    import soundfile as sf

    bench = _load("msrs")
    rng = np.random.default_rng(0)
    rec = tmp_path / "recordings"
    rec.mkdir()
    for digit in range(10):
        for take in (0, 5, 10, 11, 12):
            tone = np.sin(np.linspace(0, 40 * (digit + 1), 2400)) * 0.3 + rng.normal(0, 0.01, 2400)
            sf.write(rec / f"{digit}_spk_{take}.wav", tone.astype(np.float32), 8000)
    code = bench.main(["--data-dir", str(tmp_path), "--epochs", "2", "--mask-epochs", "1", "--seeds", "0",
                       "--threads", "1", "--layers", "3", "--d-model", "16", "--heads", "2", "--ffn", "16",
                       "--grad-steps", "2", "--target-loss", "100"])
    lines = capsys.readouterr().out.strip().splitlines()
    for config in bench.CONFIGS:
        row = next(line for line in lines if line.startswith(f"| {config} |"))
        assert row.split("|")[2].strip() == "1/1", row  # every run reaches a loss of 100 after its first epoch
    assert any(line.startswith("| gradient norm, first 2 steps |") for line in lines)
    assert lines[-1].startswith("msrs: msrs-dense ")
    assert code == (0 if lines[-1].endswith("PASS") else 1)


def test_e2enet_benchmark_runs_on_the_real_ct_volume(capsys, keep_threads):
    """Two steps per configuration on the real TotalSegmentator CT: the tables and the summary line."""
    bench = _load("e2enet")
    data = Path(bench.SHARED) / "totalseg-examples"
    if not (data / "example_ct_sm.nii.gz").exists():
        pytest.skip("the shared TotalSegmentator example is not here")
    code = bench.main(["--steps", "2", "--seeds", "0", "--threads", "1", "--patch", "8", "32", "32",
                       "--update-interval", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    for config in bench.CONFIGS:
        assert any(line.startswith(f"| {config} |") for line in lines), config
    assert any(line.startswith("| unet3d | ") and "| 1.00 |" in line for line in lines)
    assert lines[-1].startswith("e2enet: e2enet-shift-dsff: ")
    assert code == (0 if lines[-1].endswith("PASS") else 1)


def test_hard_samples_benchmark_runs_on_real_cifar10(tmp_path, capsys, keep_threads):
    """One epoch per run on a few hundred real CIFAR-10 images: scores, every row kind, the summary."""
    bench = _load("hard_samples")
    data = bench.DEFAULT_DATA
    if not data.exists():
        pytest.skip("the shared CIFAR-10 is not here")
    code = bench.main(["--train-subset", "200", "--test-subset", "100", "--epochs", "1", "--score-epochs", "1",
                       "--score-runs", "2", "--pgd-epochs", "1", "--pgd-train-subset", "100", "--seeds", "0", "--sparsities", "0.5",
                       "--methods", "dense", "snip", "lth", "gmp", "--threads", "1", "--batch-size", "32",
                       "--width", "0.125", "--model", "fast_resnet", "--cache-dir", str(tmp_path / "cache"),
                       "--min-acc", "0.0"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert any("hardest subset: 60 training images" in line for line in lines)
    for row in ("| random | dense |", "| hard | dense |", "| hard | snip |", "| hard | lth |", "| hard | gmp |", "| pgd | dense |",
                "| pgd | set-erk |", "| limited | set-erk |"):
        assert any(line.startswith(row) for line in lines), row
    pgd = next(line for line in lines if line.startswith("| pgd | dense |"))
    assert pgd.split("|")[6].strip() != "-"  # a PGD-20 accuracy was measured
    assert lines[-1].startswith("hard_samples: sparse test accuracy >= dense")
    assert code == (0 if lines[-1].endswith("PASS") else 1)


def test_slak_benchmark_speed_and_accuracy_tables(tmp_path, capsys, keep_threads, monkeypatch):
    """Small speed shapes and one epoch on 100 real CIFAR-10 images per configuration."""
    bench = _load("slak")
    if not bench.DEFAULT_DATA.exists():
        pytest.skip("the shared CIFAR-10 is not here")
    monkeypatch.setattr(bench, "SPEED_SHAPES", {"slak-t stage 1": (2, 8, 16, 16), "cifar": (2, 8, 12, 12)})
    code = bench.main(["--kernel", "13", "--repeats", "1", "--train-subset", "100", "--test-subset", "50",
                       "--epochs", "1", "--dims", "8", "8", "8", "--depths", "1", "1", "1", "--kernels", "9", "7", "7",
                       "--batch-size", "25", "--update-interval", "1", "--threads", "1",
                       "--cache-dir", str(tmp_path / "cache"), "--min-speedup", "0", "--skip-costs"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("| slak-t stage 1 | (2, 8, 16, 16) | 13 |") for line in lines)
    for config in bench.CONFIGS:
        assert any(line.startswith(f"| {config} |") for line in lines), config
    sparse = next(line for line in lines if line.startswith("| decomposed-sparse-1.3x |")).split("|")
    assert int(sparse[4].replace(",", "")) < int(sparse[3].replace(",", ""))  # non-zero < parameters
    assert lines[-1].startswith("slak: decomposed 13-kernel layer") and code == 0


def test_uda_benchmark_prints_its_table_and_summary(capsys, keep_threads):
    """Three batches per run on real MNIST (the shared data) and the UCI digits: rows, gain column, summary."""
    bench = _load("uda")
    if not (bench.DEFAULT_DATA / "mnist10k.npz").is_file():
        pytest.skip("no MNIST file")
    code = bench.main(["--directions", "uci>mnist", "--settings", "open", "--methods", "source_only", "liwuda",
                       "--seeds", "0", "--steps", "3", "--threads", "1", "--mnist-samples", "100", "--width", "4"])
    lines = capsys.readouterr().out.strip().splitlines()
    row = next(line for line in lines if line.startswith("| uci>mnist | open | H-score % |"))
    assert len(row.split("|")) == 8  # direction, setting, score, two methods, the gain
    assert lines[-1].startswith("uda: LIWUDA - source-only ")
    assert code == (0 if lines[-1].endswith("PASS") else 1)
    with pytest.raises(SystemExit):
        bench.parse_args(["--data-dir", "/nonexistent"])


def test_moml_benchmark_toy_reaches_pareto_stationarity_and_digits_table(capsys, keep_threads):
    bench = _load("moml")
    result = bench.pareto_toy(torch.tensor([2.0, -1.0]), steps=200)
    assert result["min_norm"] < 1e-6 and result["distance"] < 1e-6  # on the segment between the centres
    stuck = bench.pareto_toy(torch.tensor([2.0, -1.0]), steps=1)
    assert stuck["distance"] > 1e-2  # one step is not enough: the check can fail
    data = bench.DEFAULT_DATA
    if not ((data / "mnist-10k" / "mnist10k.npz").is_file() and (data / "fsdd").is_dir()):
        pytest.skip("no MNIST / FSDD files")
    code = bench.main(["--seeds", "0", "--steps", "2", "--samples", "100", "--width", "4", "--threads", "1",
                       "--skip-stl"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("| moml |") for line in lines) and any(line.startswith("| ew |") for line in lines)
    assert lines[-1].startswith("moml: toy max min-norm ")
    assert code == (0 if lines[-1].endswith("PASS") else 1)


def test_truly_sparse_fit_profile_splits_each_batch(tmp_path, keep_threads):
    """The end-to-end timer: one entry per training batch, the model's share inside the batch's time."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_sparse.callbacks import DynamicSparseTraining
    from lightning_sparse.tasks import ImageClassifier

    bench = _load("truly_sparse")
    profile = bench._FitProfile()
    task = ImageClassifier("mlp", {"in_features": 12, "hidden_sizes": [8]}, num_classes=3, scheduler="none")
    data = TensorDataset(torch.randn(24, 12), torch.arange(24) % 3)
    dst = DynamicSparseTraining(method="static", sparsity=0.5, summary=False)
    trainer = L.Trainer(default_root_dir=tmp_path, accelerator="cpu", max_epochs=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[dst, profile])
    trainer.fit(task, DataLoader(data, batch_size=4))
    assert len(profile.batch) == len(profile.model) == len(profile.hooks) == 12  # 6 batches x 2 epochs
    assert all(0.0 < m < b for m, b in zip(profile.model, profile.batch))
    assert all(0.0 < h < b for h, b in zip(profile.hooks, profile.batch))  # DST's per-step hooks, timed
    assert not task.model._forward_hooks and not task.model._forward_pre_hooks  # removed at the end
