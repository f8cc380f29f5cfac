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
without editing YAML), checked like any callback argument before training starts.
"""

from __future__ import annotations

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

import lightning_sparse.callbacks  # noqa: F401  (short names for the callbacks)
import lightning_sparse.data  # noqa: F401  (short names for the data modules)
import lightning_sparse.tasks  # noqa: F401  (short names for the tasks)

__all__ = ["SparseCLI", "build_cli", "main"]


class SparseCLI(LightningCLI):
    """``LightningCLI`` plus the ``test_after_fit`` option."""

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
            help="Override `sparsity` of every DynamicSparseTraining callback in the recipe.",
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        sparsity = config.get("sparsity")
        if sparsity is None:
            return
        callbacks = config.get("trainer", {}).get("callbacks") or []
        matched = [c for c in callbacks if str(c.get("class_path", "")).endswith("DynamicSparseTraining")]
        if not matched:
            raise ValueError(f"`--sparsity {sparsity}` given, but the recipe has no DynamicSparseTraining callback.")
        for callback in matched:
            callback.init_args.sparsity = sparsity

    def after_fit(self) -> None:
        if self.config_init[self.subcommand].get("test_after_fit", False):
            self.trainer.test(self.model, datamodule=self.datamodule)


def build_cli(args: list[str] | None = None, run: bool = True) -> SparseCLI:
    """Build the ``lightning-sparse`` CLI and, with ``run=True``, run its subcommand.

    Args:
        args: Command-line arguments, e.g. ``["fit", "--config", "recipes/quickstart.yaml"]``;
            ``sys.argv[1:]`` when ``None``. With ``run=False`` give no subcommand.
        run: Whether to run the subcommand; ``False`` only parses and instantiates the trainer,
            model and data module (what the recipe tests do).

    Returns:
        The CLI, with ``trainer``, ``model`` and ``datamodule`` set.
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

    Args:
        args: Command-line arguments, e.g. ``["fit", "--config", "recipes/quickstart.yaml"]``;
            ``sys.argv[1:]`` when ``None``.
    """
    build_cli(args)
