"""A readable per-layer sparsity table (rich) shown at the end of training."""

from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch.utilities import rank_zero_info


def render_sparsity_table(
    rows: Sequence[tuple[str, tuple[int, ...], int, float, float]], title: str = "Sparsity"
) -> str:
    """Show ``(name, shape, numel, target density, realised density)`` rows as a table.

    Renders with rich on the console (plain text through ``rank_zero_info`` if rich is missing)
    and returns the plain-text rendering.
    """
    total = sum(r[2] for r in rows)
    nnz = sum(round(r[2] * r[4]) for r in rows)
    target = sum(r[2] * r[3] for r in rows) / max(total, 1)
    lines = [f"{'layer':<40} {'shape':>18} {'params':>10} {'target':>8} {'density':>8} {'nonzero':>10}"]
    for name, shape, numel, tgt, real in rows:
        lines.append(
            f"{name:<40} {str(tuple(shape)):>18} {numel:>10,} {tgt:>8.4f} {real:>8.4f} {round(numel * real):>10,}"
        )
    lines.append(f"{'total':<40} {'':>18} {total:>10,} {target:>8.4f} {nnz / max(total, 1):>8.4f} {nnz:>10,}")
    text = title + "\n" + "\n".join(lines)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency, but stay usable without it
        rank_zero_info(text)
        return text
    table = Table(title=title, show_footer=True)
    table.add_column("layer", footer="total", overflow="fold")
    table.add_column("shape", justify="right")
    table.add_column("params", justify="right", footer=f"{total:,}")
    table.add_column("target density", justify="right", footer=f"{target:.4f}")
    table.add_column("density", justify="right", footer=f"{nnz / max(total, 1):.4f}")
    table.add_column("nonzero", justify="right", footer=f"{nnz:,}")
    for name, shape, numel, tgt, real in rows:
        table.add_row(name, str(tuple(shape)), f"{numel:,}", f"{tgt:.4f}", f"{real:.4f}", f"{round(numel * real):,}")
    rich_console = Console()
    if not rich_console.is_terminal:  # logs and CI: do not squeeze layer names into 80 columns
        rich_console = Console(width=max(rich_console.width, 140))
    rich_console.print(table)  # a rich renderable for the terminal; the text goes back to the caller
    return text
