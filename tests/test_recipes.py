"""Every YAML under recipes/ is documentation plus a test: a comment header and a valid config.

Each recipe must open with a comment block that names the launch command with the recipe's own
path and the expected result, and must parse and instantiate (trainer, callbacks, model, data)
with the real ``lightning-sparse`` parser for ``fit``, ``validate`` and ``test``.
"""

import sys
from pathlib import Path

import pytest

from lightning_sparse.cli import build_cli, main

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").rglob("*.yaml")) + sorted((ROOT / "recipes").rglob("*.yml"))
IDS = [str(p.relative_to(ROOT)) for p in RECIPES]


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["lightning-sparse"])  # LightningCLI warns about pytest's


def test_recipes_exist():
    assert (ROOT / "recipes" / "quickstart.yaml") in RECIPES


@pytest.mark.parametrize("path", RECIPES, ids=IDS)
def test_recipe_header(path):
    lines = path.read_text().splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    assert len(header) >= 3, f"{path.name} must open with a comment header"
    text = "\n".join(header)
    assert f"--config {path.relative_to(ROOT)}" in text, "header must give the launch command"
    assert "Expected" in text and "TO BE MEASURED" not in text, "header must give the result"
    assert "arXiv" in text or "Paper" in text, "header must cite the paper"


@pytest.mark.parametrize("subcommand", ["fit", "validate", "test"])
@pytest.mark.parametrize("path", RECIPES, ids=IDS)
def test_recipe_parses(path, subcommand, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main([subcommand, "--config", str(path), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out


@pytest.mark.parametrize("path", RECIPES, ids=IDS)
def test_recipe_instantiates(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = build_cli(["--config", str(path)], run=False)
    assert cli.model is not None and cli.datamodule is not None
    assert cli.trainer.max_epochs or cli.trainer.max_steps
    assert list(tmp_path.iterdir()) == []  # building writes nothing
