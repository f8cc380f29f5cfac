"""``python -m lightning_sparse``: the same as the ``lightning-sparse`` command."""

from lightning_sparse.cli import main

if __name__ == "__main__":
    main()
