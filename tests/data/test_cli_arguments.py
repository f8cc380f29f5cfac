"""LightningCLI shows every DataModule argument, the base's (passed on through ``**kwargs``) and
each subclass's own, in ``--print_config`` of the real ``lightning-sparse`` parser."""

import sys
from pathlib import Path

import pytest
import yaml

from lightning_sparse.cli import main

ROOT = Path(__file__).resolve().parents[2]
BASE = {"batch_size", "num_workers", "seed", "return_index"}
CASES = {  # recipe -> arguments of the subclasses and intermediate bases, with their defaults
    "recipes/quickstart.yaml": {"image_size": 16, "val_fraction": 0.1, "test_fraction": 0.2},
    "recipes/nerva/dense_mlp_cifar10.yaml": {"download": False, "val_split": 0, "augment": False,
                                             "train_subset": None, "corruption_seed": 0},
    "recipes/dsn/dsn_gunpoint.yaml": {"dataset": "GunPoint", "normalize": "zscore", "return_lengths": False},
    "recipes/robustness/rigl_r3d18_ucf101.yaml": {"fold": 1, "frames_per_clip": 16, "native_resolution": False,
                                                  "corruption_temporal": "consistent"},
}


@pytest.mark.parametrize("recipe", sorted(CASES))
def test_print_config_shows_base_and_subclass_arguments(recipe, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["lightning-sparse"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(ROOT / recipe), "--print_config"])
    assert exit_info.value.code in (0, None)
    data = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]
    assert BASE <= set(data), sorted(BASE - set(data))
    for name, value in CASES[recipe].items():
        assert data[name] == value, (name, data.get(name))


def test_cifar_keeps_its_corruption_constants_out_of_the_config(tmp_path, monkeypatch, capsys):
    """CIFAR fixes ``corruption_params="cifar"`` in its ``super().__init__`` call: not an argument."""
    monkeypatch.setattr(sys, "argv", ["lightning-sparse"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(ROOT / "recipes/nerva/dense_mlp_cifar10.yaml"), "--print_config"])
    data = yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]
    assert "corruption_params" not in data and data["batch_size"] == 100 and data["loader"] == "memory"
    assert data["batch_layout"] == "feature_major"
