"""Shared command-line pieces of the benchmarks: the thread count and the data location."""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import warnings

import torch

__all__ = ["add_data_dir_arg", "add_threads_arg", "fmt_mean_std", "free_cores", "out", "quiet_lightning", "set_threads"]


def free_cores() -> int:
    """Cores not busy with other processes: ``os.cpu_count()`` minus the 1-minute load average, at least 1."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # no load average on this platform
        load = 0.0
    return max(1, min(cores, cores - round(load)))


def _threads(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a count >= 1, got {value!r}")
    return n


def add_threads_arg(parser: argparse.ArgumentParser, default: int | str, why: str) -> None:
    """``--threads N|auto``: torch's intra-op threads (the numba kernels follow torch's count)."""
    parser.add_argument(
        "--threads", type=_threads, default=default, metavar="N|auto",
        help=f"CPU threads for torch and the numba kernels; 'auto': the cores not busy with other processes "
             f"(cpu_count minus the 1-minute load average, at least 1). Default {default}: {why}",
    )


def set_threads(threads: int | str) -> int:
    """Apply ``--threads`` (a count or ``"auto"``) to torch and return the count in use."""
    n = free_cores() if threads == "auto" else int(threads)
    torch.set_num_threads(n)
    return torch.get_num_threads()


def add_data_dir_arg(parser: argparse.ArgumentParser, default: str | None, what: str) -> None:
    """``--data-dir DIR``: where a benchmark reads its data, the same flag in every benchmark."""
    parser.add_argument("--data-dir", default=default, metavar="DIR", help=what)


def out(line: str = "") -> None:
    """Print one line of a benchmark's report at once (unbuffered)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def quiet_lightning() -> None:
    """Silence warnings and Lightning's info messages, so the report is the whole output."""
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def fmt_mean_std(values: list[float], digits: int = 1) -> str:
    """``"mean +- std"`` (population std) of a table cell, ``"-"`` when there are no values."""
    if not values:
        return "-"
    return f"{statistics.mean(values):.{digits}f} +- {statistics.pstdev(values):.{digits}f}"
