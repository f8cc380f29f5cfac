"""Which parameters are sparse: include/exclude globs, granularity and allowed regions.

A :class:`SparseTarget` describes one sparsified parameter. Masks are kept at the target's *unit*
granularity (``unit_shape``): one bit per element, or one bit per ``(out, in)`` kernel of a
convolution (the kernel-level masks of E2ENet, Wu et al. 2023, arXiv:2312.04727). An optional
``allowed`` region restricts where units may ever be active, and optional integer ``groups``
split the region into groups that keep their own exact counts: DSN's constrained receptive
fields (Xiao et al. 2022, "Dynamic Sparse Network for Time Series Classification: Learning What
to 'See'", NeurIPS 2022, arXiv:2212.09840), where output-channel group ``i`` of a large 1D kernel
may only use its first ``k_i`` taps and its number of active weights stays fixed.

A region is given as a bool tensor (``True`` = allowed, one group) or as an integer tensor of
group labels (``0`` = forbidden, ``g >= 1`` = group ``g``), of the parameter's shape or of the
mask unit shape.

Torch only: this module never imports Lightning.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._validation import preview

GRANULARITIES = ("element", "kernel")
DEFAULT_MODULE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)


@dataclass(frozen=True)
class SparseTarget:
    """One sparsified parameter.

    Attributes:
        name: qualified parameter name, as in ``module.named_parameters()``.
        shape: shape of the parameter.
        unit_shape: shape of its mask (``shape`` for ``element``, ``shape[:2]`` for ``kernel``).
        allowed: bool tensor of ``unit_shape`` where units may be active, or ``None`` for all.
        groups: int64 tensor of ``unit_shape`` with the group label of every unit (``0`` outside
            ``allowed``, labels ``>= 1`` inside), or ``None`` when the region is one group.
    """

    name: str
    shape: tuple[int, ...]
    unit_shape: tuple[int, ...]
    allowed: Tensor | None = None
    groups: Tensor | None = None

    @property
    def numel(self) -> int:
        """Number of elements of the parameter."""
        return int(torch.Size(self.shape).numel())

    @property
    def num_units(self) -> int:
        """Number of mask units."""
        return int(torch.Size(self.unit_shape).numel())

    @property
    def unit_size(self) -> int:
        """Elements covered by one mask unit (1 for ``element``, kernel volume for ``kernel``)."""
        return self.numel // self.num_units

    @property
    def capacity(self) -> int:
        """Largest number of units that may be active (the allowed region's size)."""
        return self.num_units if self.allowed is None else int(self.allowed.sum())

    @property
    def group_capacities(self) -> dict[int, int]:
        """Group label -> number of units of that group (empty when there are no groups)."""
        if self.groups is None:
            return {}
        labels, sizes = torch.unique(self.groups[self.groups > 0], return_counts=True)
        return {int(g): int(c) for g, c in zip(labels, sizes)}

    def expand(self, unit_mask: Tensor) -> Tensor:
        """Broadcast a unit-level mask to the parameter's shape."""
        if self.unit_shape == self.shape:
            return unit_mask
        extra = len(self.shape) - len(self.unit_shape)
        return unit_mask.reshape(*self.unit_shape, *([1] * extra)).expand(self.shape)

    def reduce(self, score: Tensor) -> Tensor:
        """Sum a parameter-shaped score over each unit (identity for ``element``)."""
        if self.unit_shape == self.shape:
            return score
        return score.flatten(len(self.unit_shape)).sum(-1)


def _unit_shape(shape: tuple[int, ...], granularity: str) -> tuple[int, ...]:
    if granularity == "kernel" and len(shape) >= 3:
        return shape[:2]
    return shape


def find_targets(
    module: nn.Module,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    granularity: str = "element",
    allowed_regions: Mapping[str, Tensor] | None = None,
    module_types: tuple[type[nn.Module], ...] = DEFAULT_MODULE_TYPES,
    include_frozen: bool = False,
) -> list[SparseTarget]:
    """Resolve which parameters of ``module`` are sparsified.

    By default the ``weight`` of every ``nn.Linear`` and ``nn.ConvNd`` (1d/2d/3d, transposed
    too); biases, norms and embeddings stay dense unless an ``include`` glob names them.

    Args:
        module: the model.
        include: ``fnmatch`` globs on qualified parameter names (a single string is one glob);
            when given, exactly the matching parameters are sparse (each glob must match at
            least one parameter).
        exclude: globs removed from the selection (e.g. ``["*fc.weight"]`` for a dense head).
        granularity: ``"element"`` or ``"kernel"`` (one mask bit per (out, in) conv kernel).
        allowed_regions: qualified name -> region of positions that may be active, of the
            parameter's or the unit shape: a bool tensor, or an integer tensor of group labels
            (``0`` forbidden, ``g >= 1`` group ``g``; see the module docstring). At kernel
            granularity a kernel is allowed if any of its elements is, and all of its allowed
            elements must carry the same label.
        module_types: module classes whose ``weight`` is sparse by default.
        include_frozen: also sparsify parameters with ``requires_grad=False`` (a frozen
            backbone). By default they stay dense: they never get a gradient, so a method that
            regrows by gradient could only ever remove their weights.

    Returns:
        The targets, in ``named_parameters`` order.

    Raises:
        ValueError: unknown granularity, an include glob that matches nothing, no sparsifiable
            parameter, or an allowed region with a wrong name, shape, dtype, a negative label,
            a kernel spanning two groups, or no allowed unit.

    Examples:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 10))
        >>> [t.name for t in find_targets(net, include=["0.*"])]
        ['0.weight', '0.bias']
        >>> groups = torch.tensor([[1, 1, 0], [2, 0, 0]])  # row 0: group 1, row 1: group 2
        >>> (t,) = find_targets(nn.Linear(3, 2), allowed_regions={"weight": groups})
        >>> t.capacity, t.group_capacities
        (3, {1: 2, 2: 1})
    """
    if granularity not in GRANULARITIES:
        raise ValueError(f"`granularity` must be one of {GRANULARITIES}, got {granularity!r}.")
    include = [include] if isinstance(include, str) else include  # one string is one pattern
    exclude = [exclude] if isinstance(exclude, str) else exclude
    all_params = dict(module.named_parameters())
    params = all_params if include_frozen else {n: p for n, p in all_params.items() if p.requires_grad}
    if include is not None:
        selected: set[str] = set()
        for pattern in include:
            hits = {n for n in params if fnmatch.fnmatchcase(n, pattern)}
            if not hits:
                frozen = [n for n in all_params if n not in params and fnmatch.fnmatchcase(n, pattern)]
                why = f" that trains (only frozen ones: {preview(frozen)}; pass include_frozen=True)" if frozen else ""
                raise ValueError(
                    f"`include` pattern {pattern!r} matches no parameter{why}. "
                    f"Parameter names look like: {preview(params)}."
                )
            selected |= hits
    else:
        selected = set()
        for mod_name, mod in module.named_modules():
            weight = getattr(mod, "weight", None)
            if isinstance(mod, module_types) and isinstance(weight, nn.Parameter):
                selected.add(f"{mod_name}.weight" if mod_name else "weight")
        selected &= set(params)
    for pattern in exclude or ():
        hits = {n for n in selected if fnmatch.fnmatchcase(n, pattern)}
        if not hits:
            warnings.warn(f"`exclude` pattern {pattern!r} matches no sparsified parameter.", stacklevel=2)
        selected -= hits
    if not selected:
        raise ValueError(
            f"{type(module).__name__} has no sparsifiable parameter (include={include}, exclude={exclude}); "
            f"by default the weights of {[t.__name__ for t in module_types]} are sparsified. "
            f"Parameters: {preview(params)}."
        )
    regions = dict(allowed_regions or {})
    unknown = set(regions) - selected
    if unknown:
        raise ValueError(f"`allowed_regions` names parameters that are not sparsified: {sorted(unknown)}.")
    targets = []
    for name, param in params.items():
        if name not in selected:
            continue
        shape = tuple(param.shape)
        unit_shape = _unit_shape(shape, granularity)
        allowed = groups = None
        if name in regions:
            allowed, groups = _check_region(name, regions[name], shape, unit_shape)
        targets.append(SparseTarget(name, shape, unit_shape, allowed, groups))
    return targets


def _check_region(
    name: str, region: Tensor, shape: tuple[int, ...], unit_shape: tuple[int, ...]
) -> tuple[Tensor, Tensor | None]:
    """``(allowed, groups)`` in unit shape from a bool region or an integer label region."""
    region = torch.as_tensor(region).detach().cpu()
    labelled = region.dtype != torch.bool
    if labelled and (region.is_floating_point() or region.is_complex()):
        raise ValueError(
            f"`allowed_regions[{name!r}]` must be a bool tensor or an integer tensor of group labels, "
            f"got dtype {region.dtype}."
        )
    if labelled and bool((region < 0).any()):
        raise ValueError(
            f"`allowed_regions[{name!r}]` group labels must be >= 0 (0 = forbidden), got {int(region.min())}."
        )
    if tuple(region.shape) == shape and shape != unit_shape:
        # an element-level region at kernel granularity: a kernel is allowed if any element is
        per_unit = region.flatten(len(unit_shape))
        if labelled:
            top = per_unit.amax(-1)
            low = per_unit.masked_fill(per_unit == 0, torch.iinfo(per_unit.dtype).max).amin(-1)
            if bool(((top > 0) & (low != top)).any()):
                raise ValueError(f"`allowed_regions[{name!r}]` puts elements of one kernel in different groups.")
            region = top
        else:
            region = per_unit.any(-1)
    if tuple(region.shape) != unit_shape:
        raise ValueError(
            f"`allowed_regions[{name!r}]` must have shape {unit_shape} (or {shape}), got {tuple(region.shape)}."
        )
    allowed = region > 0 if labelled else region
    if not allowed.any():
        raise ValueError(f"`allowed_regions[{name!r}]` allows no position.")
    groups = region.to(torch.int64).clone() if labelled else None
    return allowed.clone(), groups
