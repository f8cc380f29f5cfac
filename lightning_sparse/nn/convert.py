"""Convert a masked dense model to truly sparse layers and back.

A model trained with binary masks (e.g. the masks of the ``DynamicSparseTraining`` callback,
keyed by qualified parameter name) is turned into :class:`SparseLinear` layers that store only
the non-zeros, as in "Nerva: a Truly Sparse Implementation of Neural Networks" (Wesselink et al.,
2024, arXiv:2407.17437), and back into ``nn.Linear`` layers plus masks. Both directions keep
every output unchanged (up to floating point) when the dense weights are zero outside the masks.

Training continues across a conversion when the optimizer follows: :func:`replace_optimizer_param`
swaps a parameter in an optimizer and gathers (dense -> values) or scatters (values -> dense)
every per-parameter state tensor, so SGD momentum and Adam moments carry over exactly.
:func:`memory_report` counts the bytes that truly sparse storage saves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from lightning_sparse.core.optim_state import fresh_state_value
from lightning_sparse.nn.sparse_linear import SparseLinear, set_output_layouts

__all__ = [
    "convert_param_state",
    "dense_optimizer_state",
    "dense_state_dict",
    "linear_to_sparse",
    "memory_report",
    "replace_optimizer_param",
    "set_submodule",
    "sparse_to_linear",
    "to_masked",
    "to_truly_sparse",
]


def _split(name: str) -> tuple[str, str]:
    parent, _, child = name.rpartition(".")
    return parent, child


def set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` at the qualified submodule ``name`` of ``root`` (in place)."""
    parent_name, child = _split(name)
    setattr(root.get_submodule(parent_name), child, new)



def linear_to_sparse(linear: nn.Linear, mask: Tensor, backend: str = "auto") -> SparseLinear:
    """One masked ``nn.Linear`` as a :class:`SparseLinear` (weights outside ``mask`` dropped).

    The bias ``Parameter`` object moves to the new layer (optimizers and DDP keep their
    reference); the weight's ``requires_grad`` and the training mode carry over.
    """
    sparse = SparseLinear.from_dense(linear, mask.to(linear.weight.device), backend=backend)
    sparse.values.requires_grad_(linear.weight.requires_grad)
    if linear.bias is not None:
        sparse.bias = linear.bias  # the same Parameter: optimizers keep their reference
    sparse.train(linear.training)
    return sparse


@torch.no_grad()
def sparse_to_linear(sparse: SparseLinear, linear: nn.Linear | None = None) -> nn.Linear:
    """The dense ``nn.Linear`` of a :class:`SparseLinear` (zeros outside its pattern).

    With ``linear`` (the module the layer was converted from), that module and its weight
    ``Parameter`` object come back with the current values, so every reference to them (an
    optimizer, a mask-holding callback) stays valid; otherwise a new ``nn.Linear`` is built. The
    bias ``Parameter`` object moves back.
    """
    if linear is None:
        linear = sparse.to_dense()
        linear.weight.requires_grad_(sparse.values.requires_grad)
    else:
        linear.weight.data = sparse.dense_weight()
        linear.weight.grad = None
    if sparse.bias is not None:
        linear.bias = sparse.bias
    linear.train(sparse.training)
    return linear


def to_truly_sparse(
    module: nn.Module, masks: Mapping[str, Tensor], max_density: float = 1.0, backend: str = "auto"
) -> list[str]:
    """Replace masked ``nn.Linear`` submodules by :class:`SparseLinear`, in place.

    Each ``nn.Linear`` whose ``"<name>.weight"`` is in ``masks`` and whose mask density is at
    most ``max_density`` becomes ``SparseLinear.from_dense(linear, mask)`` (weights outside the
    mask are dropped), following Nerva (Wesselink et al., 2024, arXiv:2407.17437). The other
    layers stay dense, so their masks keep being applied by the caller. The output layouts are
    then chosen by :func:`~lightning_sparse.nn.set_output_layouts`. The bias ``Parameter``
    object moves to the new layer; the weight becomes a new ``values`` parameter (see
    :func:`replace_optimizer_param` to carry an optimizer over).

    Args:
        module: the model; mask names are relative to it (e.g. ``"net.0.weight"``).
        masks: qualified weight name -> bool mask of the weight's shape.
        max_density: only layers with ``mask.sum() / mask.numel() <= max_density`` are
            converted (truly sparse layers are only faster at low density).
        backend: kernel choice of the new layers (see :class:`SparseLinear`).

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
        set_submodule(module, layer_name, linear_to_sparse(layer, mask, backend))
        converted.append(weight_name)
    if converted:
        set_output_layouts(module)
    return converted


def to_masked(module: nn.Module) -> dict[str, Tensor]:
    """Replace every :class:`SparseLinear` submodule by its dense ``nn.Linear``, in place.

    The inverse of :func:`to_truly_sparse` (Nerva, Wesselink et al., 2024, arXiv:2407.17437):
    the dense weights are zero outside the pattern, and the returned masks let masked training
    (e.g. dynamic sparse training) continue from them. The bias ``Parameter`` object moves to
    the new layer; the weight is a new parameter.

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
        masks[f"{name}.weight"] = layer.mask()
        set_submodule(module, name, sparse_to_linear(layer))
    return masks


@torch.no_grad()
def replace_optimizer_param(
    optimizer: torch.optim.Optimizer, old: Tensor, new: Tensor, mask: Tensor
) -> bool:
    """Put ``new`` in place of ``old`` in ``optimizer`` and convert its per-parameter state.

    One direction of a dense <-> truly sparse conversion (Nerva, Wesselink et al., 2024,
    arXiv:2407.17437). Exactly one of ``old`` and ``new`` has ``mask``'s shape (the dense
    weight); the other is the ``(mask.sum(),)`` values vector in row-major (CSR) order. Every
    state tensor shaped like ``old`` (SGD ``momentum_buffer``, Adam ``exp_avg``/``exp_avg_sq``,
    ...) is gathered at the mask (dense -> values) or scattered into a dense tensor that is zero
    elsewhere (values -> dense; Adagrad's ``sum`` is filled with its
    ``initial_accumulator_value``): the state a masked parameter would have. Scalars such as
    ``step`` are kept. The parameter keeps its position in its param group, so the optimizer's
    ``state_dict`` indices do not move.

    Args:
        optimizer: any ``torch.optim.Optimizer``.
        old: the parameter now in ``optimizer``.
        new: the parameter to put there.
        mask: bool tensor of the dense weight's shape; ``mask.sum()`` equals the values' length.

    Returns:
        Whether ``old`` was found in ``optimizer`` (nothing changes when it was not).

    Raises:
        ValueError: if the shapes of ``old``, ``new`` and ``mask`` do not fit together.

    Examples:
        >>> dense = nn.Parameter(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        >>> mask = dense != 0
        >>> opt = torch.optim.SGD([dense], lr=0.1, momentum=0.9)
        >>> dense.grad = torch.ones(2, 2) * mask; opt.step()
        >>> values = nn.Parameter(dense.detach()[mask])
        >>> replace_optimizer_param(opt, dense, values, mask)
        True
        >>> opt.param_groups[0]["params"][0] is values, opt.state[values]["momentum_buffer"].tolist()
        (True, [1.0, 1.0])
    """
    nnz = int(mask.sum())
    if tuple(old.shape) == tuple(mask.shape) and tuple(new.shape) == (nnz,):
        to_dense = False
    elif tuple(new.shape) == tuple(mask.shape) and tuple(old.shape) == (nnz,):
        to_dense = True
    else:
        raise ValueError(
            f"`old` and `new` must be a dense weight of `mask`'s shape {tuple(mask.shape)} and a values "
            f"vector of shape ({nnz},) (in either order), got {tuple(old.shape)} and {tuple(new.shape)}."
        )
    for group in optimizer.param_groups:
        params = group["params"]
        index = next((i for i, p in enumerate(params) if p is old), None)
        if index is None:
            continue
        params[index] = new  # in place: views of this list (e.g. LBFGS's) stay valid
        state = optimizer.state.pop(old, None)
        if state:
            optimizer.state[new] = convert_param_state(state, old.shape, mask, to_dense, group)
        return True
    return False


@torch.no_grad()
def convert_param_state(
    state: Mapping[str, object],
    shape: tuple[int, ...] | torch.Size,
    mask: Tensor,
    to_dense: bool,
    group: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """Gather (``to_dense=False``) or scatter (``to_dense=True``) one parameter's optimizer state.

    The per-parameter half of :func:`replace_optimizer_param`, also usable on the ``"state"``
    entries of an optimizer's ``state_dict`` (e.g. to write a truly sparse model's checkpoint in
    dense form). Tensors of shape ``shape`` (the current parameter's) are converted: dense ->
    values ``t[mask]`` (row-major = CSR order), values -> dense zeros with the values at
    ``mask`` (Adagrad's ``sum`` filled with the group's ``initial_accumulator_value``). Other
    entries (``step``) are kept. The input is not modified.

    Args:
        state: the state of one parameter, e.g. ``{"momentum_buffer": tensor}``.
        shape: the shape of the parameter the state belongs to now.
        mask: bool tensor of the dense weight's shape.
        to_dense: direction, values -> dense when true.
        group: the parameter's param group (hyper-parameters), for fill values.

    Returns:
        A new state dict.

    Examples:
        >>> mask = torch.tensor([[True, False], [False, True]])
        >>> convert_param_state({"exp_avg": torch.tensor([1.0, 2.0]), "step": torch.tensor(3.0)}, (2,), mask, True)
        {'exp_avg': tensor([[1., 0.],
                [0., 2.]]), 'step': tensor(3.)}
    """
    converted: dict[str, object] = {}
    for key, value in state.items():
        if torch.is_tensor(value) and value.dim() > 0 and tuple(value.shape) == tuple(shape):
            mask_d = mask.to(value.device)
            if to_dense:
                dense = value.new_full(mask.shape, fresh_state_value(key, group))
                dense[mask_d] = value
                value = dense
            else:
                value = value[mask_d]
        converted[key] = value
    return converted


def dense_state_dict(state: Mapping[str, Tensor], layers: Mapping[str, SparseLinear]) -> dict[str, Tensor]:
    """A model ``state_dict`` with the :class:`SparseLinear` layers written as ``nn.Linear``.

    ``layers`` maps module names to the sparse layers: their ``values`` become a dense
    ``<name>.weight`` (zeros outside the pattern), the CSR buffers are dropped and every other
    entry is kept, so the result loads into the plain dense model. The order of the entries is
    kept (with the same mapping type as ``state``).

    Examples:
        >>> layer = SparseLinear.from_dense(nn.Linear(3, 2), torch.eye(2, 3, dtype=torch.bool))
        >>> sorted(dense_state_dict(nn.Sequential(layer).state_dict(), {"0": layer}))
        ['0.bias', '0.weight']
    """
    dense = type(state)()
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        layer = layers.get(prefix)
        if layer is None or leaf == "bias":
            dense[key] = value
        elif leaf == "values":
            dense[f"{prefix}.weight"] = layer.dense_weight()
        # the CSR index buffers are dropped
    return dense


def dense_optimizer_state(
    optimizer: torch.optim.Optimizer, packed: Mapping[str, object], layers: Iterable[SparseLinear]
) -> dict[int, object]:
    """The ``"state"`` of ``optimizer.state_dict()`` (``packed``) with the state of every sparse
    layer's ``values`` scattered to the dense weight's shape (:func:`convert_param_state`), so
    the optimizer state loads next to :func:`dense_state_dict`."""
    flat = [p for g in optimizer.param_groups for p in g["params"]]
    groups = {i: g for g, pg in zip(optimizer.param_groups, packed["param_groups"]) for i in pg["params"]}
    new_state = dict(packed["state"])
    for layer in layers:
        index = next((i for i, p in enumerate(flat) if p is layer.values), None)
        if index is None or index not in new_state:
            continue
        new_state[index] = convert_param_state(new_state[index], layer.values.shape, layer.mask(), True, groups[index])
    return new_state


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def memory_report(
    module: nn.Module,
    optimizer: torch.optim.Optimizer | Iterable[torch.optim.Optimizer] | None = None,
) -> dict[str, int]:
    """Bytes of parameters and optimizer state, truly sparse versus the masked dense model.

    Nerva (Wesselink et al., 2024, arXiv:2407.17437) stores only the non-zeros; a masked model
    stores the dense weight, a mask and dense optimizer state. For each :class:`SparseLinear`
    the masked equivalent is its dense weight, a one-byte-per-weight bool mask and dense-shaped
    optimizer state; every other parameter counts the same in both columns. The CSR structure
    (the int32 -- int64 beyond 2**31 entries -- index buffers of ``SparseLinear``) is the price of truly sparse storage and is
    counted in ``index_bytes``.

    Args:
        module: the model (with or without ``SparseLinear`` layers).
        optimizer: optimizer(s) whose state for ``module``'s parameters is counted.

    Returns:
        Bytes, as ints: ``param_bytes``, ``index_bytes``, ``optimizer_state_bytes`` and their sum
        ``total_bytes`` (as stored now), and ``masked_param_bytes``, ``mask_bytes``,
        ``masked_optimizer_state_bytes`` and their sum ``masked_total_bytes`` (the masked
        equivalent), plus ``sparse_layers`` (the number of ``SparseLinear`` layers).

    Examples:
        >>> layer = SparseLinear.from_dense(nn.Linear(100, 10), torch.eye(10, 100, dtype=torch.bool))
        >>> report = memory_report(nn.Sequential(layer))
        >>> report["param_bytes"], report["masked_param_bytes"], report["mask_bytes"]
        (80, 4040, 1000)
    """
    if optimizer is None:
        optimizers: list[torch.optim.Optimizer] = []
    elif isinstance(optimizer, Iterable) and not hasattr(optimizer, "param_groups"):
        optimizers = list(optimizer)
    else:
        optimizers = [optimizer]  # type: ignore[list-item]
    sparse = {id(m.values): m for m in module.modules() if isinstance(m, SparseLinear)}
    report = dict.fromkeys(
        ("param_bytes", "index_bytes", "optimizer_state_bytes", "masked_param_bytes", "mask_bytes",
         "masked_optimizer_state_bytes"), 0
    )
    params = {id(p): p for p in module.parameters()}
    for key, p in params.items():
        report["param_bytes"] += _nbytes(p)
        layer = sparse.get(key)
        if layer is None:
            report["masked_param_bytes"] += _nbytes(p)
        else:
            numel = layer.in_features * layer.out_features
            report["masked_param_bytes"] += numel * p.element_size()
            report["mask_bytes"] += numel  # torch.bool
    for layer in sparse.values():
        report["index_bytes"] += sum(_nbytes(b) for b in layer.buffers(recurse=False))
    for opt in optimizers:
        for p in (q for g in opt.param_groups for q in g["params"]):
            if id(p) not in params:
                continue
            layer = sparse.get(id(p))
            for value in opt.state.get(p, {}).values():
                if not torch.is_tensor(value):
                    continue
                report["optimizer_state_bytes"] += _nbytes(value)
                if layer is not None and value.dim() > 0 and value.shape == p.shape:
                    dense_numel = layer.in_features * layer.out_features
                    report["masked_optimizer_state_bytes"] += dense_numel * value.element_size()
                else:
                    report["masked_optimizer_state_bytes"] += _nbytes(value)
    report["total_bytes"] = report["param_bytes"] + report["index_bytes"] + report["optimizer_state_bytes"]
    report["masked_total_bytes"] = (
        report["masked_param_bytes"] + report["mask_bytes"] + report["masked_optimizer_state_bytes"]
    )
    report["sparse_layers"] = len(sparse)
    return report
