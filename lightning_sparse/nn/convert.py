"""Convert a masked dense model to truly sparse layers and back.

A model trained with binary masks (e.g. the masks of the ``DynamicSparseTraining`` callback,
keyed by qualified parameter name) is turned into :class:`SparseLinear` layers that store only
the non-zeros, as in "Nerva: a Truly Sparse Implementation of Neural Networks" (Wesselink et al.,
2024, arXiv:2407.17437), and back into ``nn.Linear`` layers plus masks. Both directions keep
every output unchanged (up to floating point) when the dense weights are zero outside the masks.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from lightning_sparse.nn.sparse_linear import SparseLinear

__all__ = ["to_masked", "to_truly_sparse"]


def _split(name: str) -> tuple[str, str]:
    parent, _, child = name.rpartition(".")
    return parent, child


def _replace(module: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, child = _split(name)
    setattr(module.get_submodule(parent_name), child, new)


def to_truly_sparse(
    module: nn.Module, masks: Mapping[str, Tensor], max_density: float = 1.0
) -> list[str]:
    """Replace masked ``nn.Linear`` submodules by :class:`SparseLinear`, in place.

    Each ``nn.Linear`` whose ``"<name>.weight"`` is in ``masks`` and whose mask density is at
    most ``max_density`` becomes ``SparseLinear.from_dense(linear, mask)`` (weights outside the
    mask are dropped), following Nerva (Wesselink et al., 2024, arXiv:2407.17437). The other
    layers stay dense, so their masks keep being applied by the caller.

    Args:
        module: the model; mask names are relative to it (e.g. ``"net.0.weight"``).
        masks: qualified weight name -> bool mask of the weight's shape.
        max_density: only layers with ``mask.sum() / mask.numel() <= max_density`` are
            converted (truly sparse layers are only faster at low density).

    Returns:
        The weight names of the converted layers, in ``masks`` order.

    Raises:
        ValueError: if a name in ``masks`` is not the weight of an ``nn.Linear`` submodule of
            ``module`` (the root module itself cannot be replaced in place), a mask is not a bool
            tensor of the weight's shape, or ``max_density`` is not in ``[0, 1]``.

    Examples:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> masks = {"0.weight": torch.rand(4, 6) < 0.3, "2.weight": torch.ones(2, 4, dtype=torch.bool)}
        >>> with torch.no_grad():
        ...     _ = model[0].weight.mul_(masks["0.weight"])
        >>> x = torch.randn(3, 6)
        >>> before = model(x)
        >>> to_truly_sparse(model, masks, max_density=0.5)
        ['0.weight']
        >>> type(model[0]).__name__, type(model[2]).__name__
        ('SparseLinear', 'Linear')
        >>> torch.allclose(model(x), before, atol=1e-6)
        True
    """
    if not 0.0 <= float(max_density) <= 1.0:
        raise ValueError(f"`max_density` must be in [0, 1], got {max_density}.")
    modules = dict(module.named_modules())
    selected: list[tuple[str, str, nn.Linear, Tensor]] = []
    for weight_name, mask in masks.items():
        layer_name, attr = _split(weight_name)
        layer = modules.get(layer_name) if layer_name else None
        if attr != "weight" or not isinstance(layer, nn.Linear):
            raise ValueError(
                f"`masks` key {weight_name!r} is not the weight of an nn.Linear submodule of `module`."
            )
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            given = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"`masks`[{weight_name!r}] must be a bool tensor, got {given}.")
        if tuple(mask.shape) != tuple(layer.weight.shape):
            raise ValueError(
                f"`masks`[{weight_name!r}] must have shape {tuple(layer.weight.shape)}, "
                f"got {tuple(mask.shape)}."
            )
        selected.append((weight_name, layer_name, layer, mask))
    converted: list[str] = []
    for weight_name, layer_name, layer, mask in selected:
        density = int(mask.sum()) / max(1, mask.numel())
        if density > max_density:
            continue
        sparse = SparseLinear.from_dense(layer, mask)
        sparse.values.requires_grad_(layer.weight.requires_grad)
        if sparse.bias is not None and layer.bias is not None:
            sparse.bias.requires_grad_(layer.bias.requires_grad)
        sparse.train(layer.training)
        _replace(module, layer_name, sparse)
        converted.append(weight_name)
    return converted


def to_masked(module: nn.Module) -> dict[str, Tensor]:
    """Replace every :class:`SparseLinear` submodule by its dense ``nn.Linear``, in place.

    The inverse of :func:`to_truly_sparse` (Nerva, Wesselink et al., 2024, arXiv:2407.17437):
    the dense weights are zero outside the pattern, and the returned masks let masked training
    (e.g. dynamic sparse training) continue from them.

    Args:
        module: the model.

    Returns:
        ``{"<name>.weight": bool mask}`` for each converted layer, names relative to ``module``.

    Raises:
        ValueError: if ``module`` itself is a ``SparseLinear`` (the root cannot be replaced in
            place; call ``module.to_dense()`` and ``module.mask()`` instead).

    Examples:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> mask = torch.rand(4, 6) < 0.3
        >>> to_truly_sparse(model, {"0.weight": mask})
        ['0.weight']
        >>> x = torch.randn(3, 6)
        >>> before = model(x)
        >>> masks = to_masked(model)
        >>> list(masks), torch.equal(masks["0.weight"], mask), type(model[0]).__name__
        (['0.weight'], True, 'Linear')
        >>> torch.allclose(model(x), before, atol=1e-6)
        True
    """
    if isinstance(module, SparseLinear):
        raise ValueError("`module` is itself a SparseLinear; use its to_dense() and mask().")
    sparse_layers = [(n, m) for n, m in module.named_modules() if isinstance(m, SparseLinear)]
    masks: dict[str, Tensor] = {}
    for name, layer in sparse_layers:
        dense = layer.to_dense()
        dense.weight.requires_grad_(layer.values.requires_grad)
        if dense.bias is not None and layer.bias is not None:
            dense.bias.requires_grad_(layer.bias.requires_grad)
        dense.train(layer.training)
        masks[f"{name}.weight"] = layer.mask()
        _replace(module, name, dense)
    return masks
