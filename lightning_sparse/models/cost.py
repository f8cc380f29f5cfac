"""The cost of a model: parameters (all and non-zero) and FLOPs (dense and sparse), as a table.

:func:`cost_report` measures one model on one example input: its parameters, how many of them
are non-zero (a mask, when given, counts its zeros even where the weight happens to be non-zero),
and the multiply-accumulates of its convolutions (transposed too) and linear layers from
:func:`~lightning_sparse.models.flops.conv_linear_flops`: dense, and with every masked layer
scaled by its mask density (the estimate of the sparse-training literature). FLOPs are ``2 x
MACs``. :func:`cost_table` prints reports side by side as a Markdown table, with the ratios to a
baseline (say, E2ENet against a dense 3D U-Net of similar width).

Torch only: never imports Lightning.

Examples:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.Conv3d(4, 2, 1))
    >>> report = cost_report(net, torch.randn(1, 1, 8, 8, 8), name="net")
    >>> report.params, report.nonzero_params, report.flops
    (122, 122, 118784)
    >>> half = {"0.weight": torch.arange(4 * 1 * 27).reshape(4, 1, 3, 3, 3) % 2 == 0}
    >>> sparse = cost_report(net, torch.randn(1, 1, 8, 8, 8), masks=half, name="half")
    >>> sparse.nonzero_params, sparse.sparse_flops
    (68, 63488.0)
    >>> cost_table([report, sparse], baseline="net").splitlines()[2]
    '| net | 122 | 122 | 1.00 | 118.8 k | 118.8 k | 1.00 |'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lightning_sparse.models.flops import conv_linear_flops

__all__ = ["CostReport", "cost_report", "cost_table"]


@dataclass(frozen=True)
class CostReport:
    """What one forward pass of a model costs.

    Attributes:
        name: A label for tables.
        params: All parameters.
        nonzero_params: Parameters that are non-zero (outside the masks: zero).
        flops: FLOPs (``2 x MACs``) of the dense network, convolutions and linear layers.
        sparse_flops: FLOPs with every masked layer scaled by its mask density.
    """

    name: str
    params: int
    nonzero_params: int
    flops: int
    sparse_flops: float

    @property
    def density(self) -> float:
        """``nonzero_params / params``."""
        return self.nonzero_params / self.params if self.params else 1.0


def _expand(mask: Tensor, param: Tensor) -> Tensor:
    """A mask of the parameter's shape, or of a leading part of it (one bit per kernel)."""
    if tuple(mask.shape) == tuple(param.shape):
        return mask.bool()
    lead = mask.dim()
    if tuple(param.shape[:lead]) != tuple(mask.shape):
        raise ValueError(f"a mask of shape {tuple(mask.shape)} does not fit a parameter of shape {tuple(param.shape)}.")
    return mask.bool().reshape(*mask.shape, *([1] * (param.dim() - lead))).expand(param.shape)


@torch.no_grad()
def cost_report(model: nn.Module, example_input: Tensor | tuple, masks: Mapping[str, Tensor] | None = None,
                name: str = "") -> CostReport:
    """Parameters and FLOPs of ``model`` on ``example_input`` (see the module docstring).

    Args:
        model: Any module (a LightningModule works: names then carry its prefix, e.g. ``model.``).
        example_input: The forward argument, or a tuple of positional arguments; pass a batch of
            one for a per-sample count.
        masks: Qualified parameter name -> bool mask of its shape or of its kernel grid (the
            ``masks`` of a mask-holding callback).
        name: The report's label; default the model's class name.

    Raises:
        ValueError: If a mask names no parameter or does not fit its parameter's shape.
    """
    params = dict(model.named_parameters())
    masks = dict(masks or {})
    unknown = sorted(set(masks) - set(params))
    if unknown:
        raise ValueError(f"`masks` must be keyed by parameter names such as {sorted(params)[:4]}; got {unknown[:5]}.")
    nonzero = 0
    for n, p in params.items():
        values = p.detach()
        if n in masks:
            values = values * _expand(masks[n].to(p.device), p)
        nonzero += int(torch.count_nonzero(values))
    conv_masks = {n: m for n, m in masks.items() if n.endswith("weight")}
    count = conv_linear_flops(model, example_input, conv_masks)
    return CostReport(name or type(model).__name__, sum(p.numel() for p in params.values()), nonzero,
                      2 * count.dense, 2 * count.sparse)


def _human(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f}"


def cost_table(reports: Sequence[CostReport], baseline: str | None = None) -> str:
    """A Markdown table of ``reports``: parameters, non-zero parameters, FLOPs, sparse FLOPs and
    the ratios of non-zero parameters and sparse FLOPs to ``baseline`` (a report's name; default
    the first report).

    Raises:
        ValueError: If ``reports`` is empty or ``baseline`` names none of them.
    """
    if not reports:
        raise ValueError("`reports` must hold at least one CostReport, got none.")
    names = [r.name for r in reports]
    base_name = names[0] if baseline is None else baseline
    if base_name not in names:
        raise ValueError(f"`baseline` must be one of {names}, got {baseline!r}.")
    base = reports[names.index(base_name)]
    lines = ["| model | parameters | non-zero | non-zero / baseline | FLOPs | sparse FLOPs | sparse FLOPs / baseline |",
             "|---|---|---|---|---|---|---|"]
    for r in reports:
        lines.append(
            f"| {r.name} | {r.params:,} | {r.nonzero_params:,} | {r.nonzero_params / max(base.nonzero_params, 1):.2f} | "
            f"{_human(r.flops)} | {_human(r.sparse_flops)} | {r.sparse_flops / max(base.sparse_flops, 1):.2f} |"
        )
    return "\n".join(lines)
