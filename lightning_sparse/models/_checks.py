"""Argument checks shared by the model constructors (on top of :mod:`lightning_sparse._validation`)."""

from __future__ import annotations

from typing import Any

from lightning_sparse._validation import check_int

__all__ = ["check_sizes"]


def check_sizes(**sizes: Any) -> None:
    """Raise unless every keyword's value is a positive integer, naming the first that is not.

    Examples:
        >>> check_sizes(in_channels=3, width=0)
        Traceback (most recent call last):
        ...
        ValueError: `width` must be an integer >= 1, got 0.
    """
    for name, value in sizes.items():
        check_int(name, value, 1)
