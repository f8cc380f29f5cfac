"""The ``lightning-sparse`` command line: LightningCLI over every task, data module and callback.

Any ``LightningModule`` / ``LightningDataModule`` subclass can be chosen by ``class_path`` in a
YAML recipe; the package's tasks, data modules and callbacks are imported here so that their
short class names resolve too.

Usage:
    lightning-sparse fit --config recipes/quickstart.yaml
    lightning-sparse test --config recipes/quickstart.yaml --ckpt_path path/to/last.ckpt
    python -m lightning_sparse fit --config recipes/quickstart.yaml --print_config

Besides the LightningCLI options, every subcommand accepts ``--test_after_fit`` (default
``false``): after ``fit`` finishes, evaluate the final weights on the test split, so a recipe can
report a test accuracy from a single ``fit`` run; and ``--sparsity S``, which sets the
``sparsity`` of every ``DynamicSparseTraining`` callback of the recipe (a sweep over 0.1 ... 0.5
without editing YAML). The override is written into the callbacks' ``init_args``, so
``--print_config`` and the run's saved ``config.yaml`` show it, and it is checked like any
callback argument before training starts.

Relative paths in a config file: the input-data paths :data:`CONFIG_RELATIVE_KEYS`
(``data_dir``, ``root``, ``split_dir``, ``cache_dir``, ``corrupted_dir``, the speech
manifests ``train_manifest`` / ``val_manifest`` / ``test_manifest``, and the audio-visual data's
``mnist_path`` and ``landmarks_dir``), wherever they appear in
a ``--config`` file, are relative to that file's directory, so a recipe runs from any working
directory; ``--print_config`` and the saved ``config.yaml`` show them resolved (absolute). The
same keys given on the command line resolve against the working directory, and the run's
outputs (``save_dir``, ``default_root_dir``, ``dirpath``, ``output_dir``) stay relative to it.

Errors: a ``ValueError`` raised while the recipe's classes are built (a bad argument value such
as ``method: rigll``) ends the command with exit code 2 and a short message on stderr that names
the class, e.g. ``lightning-sparse: error: DynamicSparseTraining: ...`` followed by the check's
message. Set the environment variable ``LIGHTNING_SPARSE_TRACEBACK=1`` to get the full traceback instead.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import yaml
from jsonargparse import get_loader, set_loader
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

import lightning_sparse.callbacks  # noqa: F401  (short names for the callbacks)
import lightning_sparse.data  # noqa: F401  (short names for the data modules)
import lightning_sparse.tasks  # noqa: F401  (short names for the tasks)

__all__ = ["CONFIG_RELATIVE_KEYS", "RecipeError", "SparseCLI", "build_cli", "main"]

CONFIG_RELATIVE_KEYS = frozenset({"data_dir", "root", "split_dir", "cache_dir", "corrupted_dir", "train_manifest",
                                  "val_manifest", "test_manifest", "mnist_path", "landmarks_dir"})
"""Argument names whose relative values in a config file are relative to that file's directory."""

TRACEBACK_ENV = "LIGHTNING_SPARSE_TRACEBACK"
_PARSER_MODE = "lightning_sparse_yaml"


class RecipeError(ValueError):
    """A bad value in a recipe (or its overrides), found while building its classes."""


def _absolute(value: Any) -> Any:
    if not isinstance(value, str) or not value or "://" in value:
        return value
    return os.path.abspath(os.path.expanduser(value))


def _resolve_relative_paths(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _absolute(v) if k in CONFIG_RELATIVE_KEYS else _resolve_relative_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_relative_paths(v) for v in value]
    return value


def _load_yaml(stream: str) -> Any:
    """jsonargparse's YAML loader, then :data:`CONFIG_RELATIVE_KEYS` made absolute.

    jsonargparse loads a config file from inside the file's directory (it changes to it, as for
    its relative ``Path`` types), so ``abspath`` resolves against the file's directory there and
    against the working directory for a value given on the command line.
    """
    return _resolve_relative_paths(get_loader("yaml")(stream))


set_loader(_PARSER_MODE, _load_yaml, exceptions=(yaml.YAMLError,))


def _raising_class(err: BaseException) -> str | None:
    """Name of the class whose ``__init__`` raised ``err`` (outermost such frame), if any."""
    tb = err.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        owner = frame.f_locals.get("self") if frame.f_code.co_name == "__init__" else None
        if owner is not None and not type(owner).__module__.startswith("jsonargparse"):
            return type(owner).__name__
        tb = tb.tb_next
    return None


def _root_value_error(err: ValueError) -> ValueError:
    """The innermost ``ValueError`` of the chain (jsonargparse re-raises it inside its own)."""
    root, cause = err, err.__cause__ or err.__context__
    while cause is not None:
        if isinstance(cause, ValueError):
            root = cause
        cause = cause.__cause__ or cause.__context__
    return root


class SparseCLI(LightningCLI):
    """``LightningCLI`` plus ``--test_after_fit``, ``--sparsity``, config-relative data paths and
    short errors for bad recipe values."""

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        kwargs.setdefault("parser_mode", _PARSER_MODE)
        return super().init_parser(**kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=False,
            help="After `fit`, run `test` on the final weights (needs a test dataloader).",
        )
        parser.add_argument(
            "--sparsity",
            type=float | None,
            default=None,
            help="Override `sparsity` of every DynamicSparseTraining, PruningAtInit, LotteryTicket and MSRS "
            "callback in the recipe "
            "(written into their init_args: --print_config and the saved config.yaml show it).",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """With ``--sparsity``: parse once to find the DST callbacks, then parse again with their
        list overridden, so the printed and saved configs hold the new sparsity."""
        argv = list(sys.argv[1:] if args is None else args) if args is None or isinstance(args, (list, tuple)) else None
        sparsity = None if argv is None else _flag_value(argv, "--sparsity")
        if sparsity is None or any(a in ("-h", "--help") for a in argv):
            return super().parse_arguments(parser, args)
        first = [a for a in argv if a != "--print_config" and not a.startswith("--print_config=")]
        self.config = parser.parse_args(first)
        subcommand = self.config.get("subcommand")
        sub_parser = self._parser(subcommand)
        config = self.config[subcommand] if subcommand else self.config
        callbacks = yaml.safe_load(sub_parser.dump(config, skip_check=True)).get("trainer", {}).get("callbacks")
        callbacks = [callbacks] if isinstance(callbacks, dict) else list(callbacks or [])
        for callback in _dst_callbacks(callbacks, config.get("sparsity")):
            callback.setdefault("init_args", {})["sparsity"] = config.get("sparsity")
        self.config = parser.parse_args([*argv, f"--trainer.callbacks={json.dumps(callbacks)}"])

    def before_instantiate_classes(self) -> None:
        """Also apply a ``sparsity`` set inside a config file (not seen by :meth:`parse_arguments`)."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        sparsity = config.get("sparsity")
        if sparsity is not None:
            callbacks = config.get("trainer", {}).get("callbacks") or []
            for callback in _dst_callbacks(callbacks if isinstance(callbacks, list) else [callbacks], sparsity):
                callback.init_args.sparsity = sparsity

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as err:
            root = _root_value_error(err)
            name = _raising_class(root)
            raise RecipeError(f"{name}: {root}" if name else str(root)) from err

    def after_fit(self) -> None:
        if self.config_init[self.subcommand].get("test_after_fit", False):
            self.trainer.test(self.model, datamodule=self.datamodule)


SPARSITY_CALLBACKS = ("DynamicSparseTraining", "PruningAtInit", "LotteryTicket", "MSRS")


def _dst_callbacks(callbacks: list[Any], sparsity: Any) -> list[Any]:
    matched = [c for c in callbacks if str(c.get("class_path", "")).rsplit(".", 1)[-1] in SPARSITY_CALLBACKS]
    if not matched:
        raise RecipeError(f"`--sparsity {sparsity}` given, but the recipe has none of the callbacks "
                          f"{list(SPARSITY_CALLBACKS)}.")
    return matched


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The value of the last ``flag V`` / ``flag=V`` in ``argv`` (``None`` when absent or null)."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1:]
    return None if value in (None, "null", "None") else value


def build_cli(args: list[str] | None = None, run: bool = True) -> SparseCLI:
    """Build the ``lightning-sparse`` CLI and, with ``run=True``, run its subcommand.

    Args:
        args: Command-line arguments, e.g. ``["fit", "--config", "recipes/quickstart.yaml"]``;
            ``sys.argv[1:]`` when ``None``. With ``run=False`` give no subcommand.
        run: Whether to run the subcommand; ``False`` only parses and instantiates the trainer,
            model and data module (what the recipe tests do).

    Returns:
        The CLI, with ``trainer``, ``model`` and ``datamodule`` set.

    Raises:
        RecipeError: A ``ValueError`` subclass, for a bad value found while building the classes.
    """
    return SparseCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        args=args,
        run=run,
    )


def main(args: list[str] | None = None) -> None:
    """Entry point of ``lightning-sparse`` and ``python -m lightning_sparse``.

    A :class:`RecipeError` ends the process with exit code 2 and a one-line message on stderr
    (the full traceback with ``LIGHTNING_SPARSE_TRACEBACK=1``).

    Args:
        args: Command-line arguments, e.g. ``["fit", "--config", "recipes/quickstart.yaml"]``;
            ``sys.argv[1:]`` when ``None``.
    """
    try:
        build_cli(args)
    except RecipeError as err:
        if os.environ.get(TRACEBACK_ENV, "").strip() not in ("", "0"):
            raise
        sys.stderr.write(f"lightning-sparse: error: {err}\n  (set {TRACEBACK_ENV}=1 for the full traceback)\n")
        raise SystemExit(2) from None
