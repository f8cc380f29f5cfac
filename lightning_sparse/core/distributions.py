"""Layer-wise density distributions: uniform, Erdos-Renyi (ER) and Erdos-Renyi-Kernel (ERK).

ER is from SET (Mocanu et al. 2018, "Scalable training of artificial neural networks with
adaptive sparse connectivity inspired by network science", arXiv:1707.04780); ERK, and the loop
that makes a layer dense when its density would exceed one, from RigL (Evci et al. 2020, "Rigging
the Lottery: Making All Tickets Winners", arXiv:1911.11134).

Densities become exact integer counts with :func:`density_counts`: the total number of active
elements equals ``round(density * total)`` (largest-remainder rounding); with kernel granularity
units differ in size between layers and the total can miss by less than one unit. A layer whose
allowed region is split into groups (DSN, Xiao et al. 2022, arXiv:2212.09840) shares its count
among the groups in proportion to their sizes with :func:`group_counts`.

Torch only: this module never imports Lightning.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence

DISTRIBUTIONS = ("uniform", "er", "erk")


def raw_scale(shape: Sequence[int], distribution: str, power_scale: float = 1.0) -> float:
    """The un-normalised density of one layer under a distribution.

    ``uniform``: 1. ``er``: ``(n_out + n_in) / (n_out * n_in)`` (kernel dimensions ignored).
    ``erk``: ``sum(shape) / prod(shape)`` over all dimensions. Both raised to ``power_scale``.

    Examples:
        >>> raw_scale((10, 20), "er")
        0.15
        >>> raw_scale((8, 4, 3, 3), "erk") == 18 / 288
        True
    """
    if distribution == "uniform":
        return 1.0
    if distribution == "er":
        dims = list(shape[:2]) if len(shape) >= 2 else list(shape)
    elif distribution == "erk":
        dims = list(shape)
    else:
        raise ValueError(f"`distribution` must be one of {DISTRIBUTIONS} or a mapping, got {distribution!r}.")
    return (sum(dims) / math.prod(dims)) ** power_scale


def layer_densities(
    shapes: Mapping[str, Sequence[int]],
    density: float,
    distribution: str = "erk",
    capacities: Mapping[str, float] | None = None,
    power_scale: float = 1.0,
    sizes: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Per-layer densities whose size-weighted mean is ``density``.

    Solves ``sum_l min(eps * r_l, c_l) * n_l = density * sum_l n_l`` for ``eps``, where ``r_l`` is
    :func:`raw_scale`, ``c_l`` the layer's largest density (1, or its allowed share) and ``n_l``
    its size (its number of elements): layers that would exceed their cap are fixed at the cap and
    ``eps`` is solved again for the others (RigL's dense-layer loop).

    Args:
        shapes: layer name -> parameter shape.
        density: target global density in ``(0, 1]``.
        distribution: ``"uniform"``, ``"er"`` or ``"erk"``.
        capacities: layer name -> largest allowed density (default 1).
        power_scale: exponent on the raw ER/ERK scale (RigL's ``erk_power_scale``).
        sizes: layer name -> number of positions its density refers to (default: the number of
            elements of ``shapes``); e.g. the size of the allowed region, when densities are
            measured inside the regions.

    Returns:
        Layer name -> density in ``[0, cap]``.

    Raises:
        ValueError: density outside ``(0, 1]``, unknown distribution, or caps too small to hold
            the budget.

    Examples:
        >>> d = layer_densities({"a": (100, 100), "b": (10, 100)}, 0.5, "erk")
        >>> round(d["a"] * 10000 + d["b"] * 1000)
        5500
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"`density` must be in (0, 1], got {density}.")
    numel = {k: float((sizes or {}).get(k, math.prod(s))) for k, s in shapes.items()}
    caps = {k: float((capacities or {}).get(k, 1.0)) for k in shapes}
    budget = density * sum(numel.values())
    if sum(caps[k] * numel[k] for k in shapes) < budget - 1e-6:
        raise ValueError(
            f"the allowed regions hold {sum(caps[k] * numel[k] for k in shapes):.0f} elements, "
            f"fewer than the {budget:.0f} that density {density} needs."
        )
    raw = {k: raw_scale(s, distribution, power_scale) for k, s in shapes.items()}
    fixed: dict[str, float] = {}
    while True:
        free = [k for k in shapes if k not in fixed]
        rest = budget - sum(fixed[k] * numel[k] for k in fixed)
        denom = sum(raw[k] * numel[k] for k in free)
        eps = rest / denom if denom > 0 else 0.0
        over = [k for k in free if eps * raw[k] > caps[k] + 1e-12]
        if not over:
            break
        for k in over:  # RigL makes every overflowing layer dense at once, then solves again
            fixed[k] = caps[k]
    return {k: fixed.get(k, min(eps * raw[k], caps[k])) for k in shapes}


def mapped_densities(names: Sequence[str], sparsities: Mapping[str, float]) -> dict[str, float]:
    """Densities from an explicit ``{name or glob: sparsity}`` mapping.

    An exact name wins over globs; among globs the first match in mapping order wins. Every name
    must be covered.

    Raises:
        ValueError: a sparsity outside ``[0, 1)``, a layer the mapping does not cover, or a key
            that matches no layer (a typo would otherwise fall back to another key silently).
    """
    for key, value in sparsities.items():
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"`distribution[{key!r}]` must be a sparsity in [0, 1), got {value}.")
    out = {}
    for name in names:
        if name in sparsities:
            out[name] = 1.0 - float(sparsities[name])
            continue
        match = next((k for k in sparsities if fnmatch.fnmatchcase(name, k)), None)
        if match is None:
            raise ValueError(
                f"`distribution` mapping gives no sparsity for {name!r}; keys: {list(sparsities)}. "
                "Add the name or a glob such as '*'."
            )
        out[name] = 1.0 - float(sparsities[match])
    unused = [k for k in sparsities if k not in names and not any(fnmatch.fnmatchcase(n, k) for n in names)]
    if unused:
        raise ValueError(
            f"`distribution` keys {unused} match no sparsified parameter; the parameters are: "
            f"{list(names)[:8]}{' ...' if len(names) > 8 else ''}."
        )
    return out


def density_counts(
    densities: Mapping[str, float],
    num_units: Mapping[str, int],
    unit_sizes: Mapping[str, int] | None = None,
    capacities: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """Exact integer numbers of active units per layer (largest-remainder rounding).

    The element budget ``round(sum_l densities[l] * num_units[l] * unit_sizes[l])`` is met
    exactly when all unit sizes are 1, and to within one unit otherwise. Counts stay within
    ``[0, capacities[l]]``.

    Examples:
        >>> density_counts({"a": 0.5, "b": 0.25}, {"a": 3, "b": 6})
        {'a': 2, 'b': 1}
    """
    sizes = {k: int((unit_sizes or {}).get(k, 1)) for k in densities}
    caps = {k: int((capacities or {}).get(k, num_units[k])) for k in densities}
    exact = {k: min(max(densities[k], 0.0), 1.0) * num_units[k] for k in densities}
    counts = {k: min(int(math.floor(exact[k] + 1e-9)), caps[k]) for k in densities}
    budget = round(sum(exact[k] * sizes[k] for k in densities))
    left = budget - sum(counts[k] * sizes[k] for k in densities)
    # hand out the remaining units by largest fractional part; ties go to the first layer
    order = sorted(densities, key=lambda k: -(exact[k] - math.floor(exact[k] + 1e-9)))
    for k in order:
        if left <= 0:
            break
        if counts[k] < caps[k] and sizes[k] <= left and exact[k] > counts[k]:
            counts[k] += 1
            left -= sizes[k]
    return counts


def group_counts(count: int, capacities: Mapping[int, int]) -> dict[int, int]:
    """Share ``count`` active units among groups in proportion to their sizes, exactly.

    Each group gets ``floor(count * c_g / sum(c))`` units, and the units left over go to the
    largest fractional parts (ties to the smallest label): largest-remainder rounding, so the
    counts sum to ``count`` and no group exceeds its size.

    Args:
        count: Active units of the layer, in ``[0, sum(capacities.values())]``.
        capacities: Group label -> number of units of the group (positive).

    Returns:
        Group label -> active units of the group.

    Raises:
        ValueError: If ``count`` is negative or larger than the groups can hold.

    Examples:
        >>> group_counts(10, {1: 13, 2: 26, 3: 39})  # 1.67, 3.33, 5.0
        {1: 2, 2: 3, 3: 5}
    """
    total = sum(capacities.values())
    if not 0 <= count <= total:
        raise ValueError(f"`count` must be in [0, {total}] (the groups' capacity), got {count}.")
    if total == 0:
        return {g: 0 for g in capacities}
    counts = {g: count * c // total for g, c in capacities.items()}
    left = count - sum(counts.values())
    order = sorted(capacities, key=lambda g: (-((count * capacities[g]) % total), g))
    for g in order[:left]:
        counts[g] += 1
    return counts
