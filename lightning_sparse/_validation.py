"""Argument checks shared by every floor of the library (pure Python, no torch, no Lightning).

Each check raises a ``ValueError`` that names the argument in backticks, says what is allowed and
shows what was given, so a bad recipe value fails before training starts with a message such as
``ValueError: `method` must be one of ('static', 'set', 'rigl'), got 'rigll'.``
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["preview", "check_bool", "check_choice", "check_int", "check_number", "check_patterns", "check_step"]


def check_choice(name: str, value: Any, allowed: Iterable[Any], extra: str = "") -> Any:
    """Raise unless ``value`` is one of ``allowed``; return ``value``.

    Examples:
        >>> check_choice("method", "rigll", ("set", "rigl"))
        Traceback (most recent call last):
        ...
        ValueError: `method` must be one of ('set', 'rigl'), got 'rigll'.
    """
    allowed = tuple(allowed)
    try:
        ok = value in allowed
    except TypeError:  # an unhashable value against a dict's keys
        ok = False
    if not ok:
        raise ValueError(f"`{name}` must be one of {allowed}{extra}, got {value!r}.")
    return value


def check_bool(name: str, value: Any) -> bool:
    """Raise unless ``value`` is ``True`` or ``False``.

    Examples:
        >>> check_bool("summary", "yes")
        Traceback (most recent call last):
        ...
        ValueError: `summary` must be True or False, got 'yes'.
    """
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False, got {value!r}.")
    return value


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    low, high = (None if v is None else f"{v:g}" for v in (low, high))
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return "finite"


def check_number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    allow_none: bool = False,
) -> Any:
    """Raise unless ``value`` is a real number (not a bool) inside the given bounds.

    Examples:
        >>> check_number("sparsity", 1.0, 0.0, 1.0, high_open=True)
        Traceback (most recent call last):
        ...
        ValueError: `sparsity` must be a number in [0, 1), got 1.0.
        >>> check_number("lr", 0.1, 0.0, low_open=True)
        0.1
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        suffix = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be a number {_interval(low, high, low_open, high_open)}{suffix}, got {value!r}.")
    return value


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None, *, allow_none: bool = False) -> Any:
    """Raise unless ``value`` is an integer (not a bool) in ``[low, high]``.

    Examples:
        >>> check_int("update_interval", 0, 1)
        Traceback (most recent call last):
        ...
        ValueError: `update_interval` must be an integer >= 1, got 0.
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and low is not None:
        ok = value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        suffix = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be an integer {_interval(low, high, False, False)}{suffix}, got {value!r}.")
    return value


def check_step(name: str, value: Any) -> Any:
    """A point in training: ``None``, an int of optimizer steps (>= 0) or a float share in ``(0, 1]``.

    Examples:
        >>> check_step("stop_step", 1.5)
        Traceback (most recent call last):
        ...
        ValueError: `stop_step` as a float is a share of training and must be in (0, 1], got 1.5.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{name}` must be an int (optimizer steps) or a float in (0, 1], got {value!r}.")
    if isinstance(value, float) and not 0.0 < value <= 1.0:
        raise ValueError(f"`{name}` as a float is a share of training and must be in (0, 1], got {value!r}.")
    if isinstance(value, int) and value < 0:
        raise ValueError(f"`{name}` must be >= 0, got {value!r}.")
    return value


def check_patterns(name: str, value: Any) -> list[str] | None:
    """Glob patterns: ``None``, one string (one pattern) or a sequence of strings; returns a list.

    A single string is one pattern, never a sequence of one-letter patterns.

    Examples:
        >>> check_patterns("include", "fc1.weight")
        ['fc1.weight']
        >>> check_patterns("exclude", ["a*", 3])
        Traceback (most recent call last):
        ...
        ValueError: `exclude` must be a glob string or a list of glob strings, got ['a*', 3].
    """
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"`{name}` must be a glob string or a list of glob strings, got {value!r}.")


def preview(names: Iterable[str], limit: int = 8) -> str:
    """The first ``limit`` names, comma-separated, for an error message.

    Examples:
        >>> preview(["a", "b", "c"], limit=2)
        'a, b, ... (3 in all)'
    """
    names = list(names)
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
