"""A readable per-layer sparsity table (rich) shown at the end of training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from lightning.pytorch.utilities import rank_zero_info


class SummaryRow(NamedTuple):
    """One sparsified parameter in the table.

    ``active`` counts the positions the mask allows (mask bits times the unit size);
    ``nonzero`` counts the weights that really are non-zero (an active weight may be exactly 0,
    e.g. one just regrown). ``target`` is ``None`` when the method has no per-layer target (a
    global pruning budget).
    """

    name: str
    shape: tuple[int, ...]
    numel: int
    target: float | None
    active: int
    nonzero: int


_HEADERS = ("layer", "shape", "params", "target density", "mask density", "active", "nonzero")


def _cells(name: str, shape, numel: int, target: float | None, active: int, nonzero: int) -> list[str]:
    tgt = "-" if target is None else f"{target:.4f}"
    return [name, str(tuple(shape)), f"{numel:,}", tgt, f"{active / max(numel, 1):.4f}", f"{active:,}", f"{nonzero:,}"]


def render_sparsity_table(rows: Sequence[SummaryRow], title: str = "Sparsity", total_target: float | None = None) -> str:
    """Show the rows as a table with a total line; returns the plain-text rendering.

    ``total_target`` overrides the total's target density (else the parameter-weighted mean of
    the per-layer targets, ``-`` when one is missing).
    """
    total = sum(r.numel for r in rows)
    if total_target is None and rows and all(r.target is not None for r in rows):
        total_target = sum(r.numel * r.target for r in rows) / max(total, 1)
    foot = _cells("total", "", total, total_target, sum(r.active for r in rows), sum(r.nonzero for r in rows))
    foot[1] = ""
    body = [_cells(*r) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in body + [foot])) for i, h in enumerate(_HEADERS)]
    fmt = lambda cells: " ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    text = "\n".join([title, fmt(list(_HEADERS)), *(fmt(c) for c in body), fmt(foot)])
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency, but stay usable without it
        rank_zero_info(text)
        return text
    table = Table(title=title, show_footer=True)
    for i, header in enumerate(_HEADERS):
        table.add_column(header, footer=foot[i], justify="left" if i == 0 else "right", overflow="fold" if i == 0 else None)
    for cells in body:
        table.add_row(*cells)
    console = Console()
    if not console.is_terminal:  # logs and CI: do not squeeze layer names into 80 columns
        console = Console(width=max(console.width, 150))
    console.print(table)  # a rich renderable for the terminal; the text goes back to the caller
    return text
