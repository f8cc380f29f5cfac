"""Dimension-aware layer factories: convolutions, pooling, normalisations and activations by name.

After MONAI's ``monai.networks.layers.factories`` (Cardoso et al. 2022, "MONAI: An open-source
framework for deep learning in healthcare", arXiv:2211.02701) and timm's ``create_act_layer`` /
``get_norm_layer`` (Wightman, PyTorch Image Models): one call site serves 1D, 2D and 3D networks
(``spatial_dims`` 1, 2 or 3), and a normalisation or activation is a *spec* a YAML recipe can
write, either a name (``"batch"``, ``"gelu"``) or a pair ``(name, kwargs)`` such as
``("group", {"num_groups": 8})`` or ``["leaky_relu", {"negative_slope": 0.1}]``.

Deviations from MONAI: :func:`conv` and :func:`pool` return the ``torch.nn`` class (layer
arguments are structural, written at the call site), while :func:`norm` and :func:`act` return a
built module; ``"layer"`` is a channels-first layer norm (:class:`ChannelLayerNorm`, as ConvNeXt's
``LayerNorm(data_format="channels_first")``), not ``nn.LayerNorm`` over the trailing dimensions;
``"group"`` defaults to ``gcd(32, channels)`` groups (32, as timm's ``GroupNorm``, whenever
``channels`` is a multiple of 32).

Examples:
    >>> conv(3)
    <class 'torch.nn.modules.conv.Conv3d'>
    >>> norm(("group", {"num_groups": 4}), 2, 16)
    GroupNorm(4, 16, eps=1e-05, affine=True)
    >>> act("relu", inplace=True)
    ReLU(inplace=True)
    >>> norm("btach", 2, 16)
    Traceback (most recent call last):
    ...
    ValueError: `norm` must be one of ('batch', 'instance', 'group', 'layer'), got 'btach'.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any, Union

from torch import nn

from lightning_sparse._validation import check_choice, check_int
from lightning_sparse.models.layers.channel_layer_norm import ChannelLayerNorm

__all__ = ["ACTS", "NORMS", "POOLS", "LayerSpec", "act", "conv", "norm", "pool", "same_padding"]

#: A normalisation or activation: a name, or ``(name, kwargs)`` (a list of two from YAML).
LayerSpec = Union[str, Sequence[Any]]

_CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_TRANSPOSES = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_POOLS: dict[str, dict[int, type[nn.Module]]] = {
    "max": {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d},
    "avg": {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d},
    "adaptive_max": {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d},
    "adaptive_avg": {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d},
}
_BATCH_NORMS = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCE_NORMS = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_ACTS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "prelu": nn.PReLU,
    "elu": nn.ELU,
    "celu": nn.CELU,
    "selu": nn.SELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "mish": nn.Mish,
    "hardswish": nn.Hardswish,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}

#: Names accepted by :func:`norm`, :func:`act` and :func:`pool`.
NORMS = ("batch", "instance", "group", "layer")
ACTS = tuple(_ACTS)
POOLS = tuple(_POOLS)


def _dims(spatial_dims: Any) -> int:
    return check_int("spatial_dims", spatial_dims, 1, 3)


def _parse(arg: str, spec: Any, allowed: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """Split a spec into ``(name, kwargs)``; raise naming ``arg`` if it is malformed or unknown."""
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif (
        isinstance(spec, Sequence)
        and len(spec) == 2
        and isinstance(spec[0], str)
        and isinstance(spec[1], Mapping)
    ):
        name, kwargs = spec[0], dict(spec[1])
    else:
        raise ValueError(f"`{arg}` must be a name or a pair (name, kwargs), got {spec!r}.")
    return check_choice(arg, name.lower(), allowed), kwargs


def conv(spatial_dims: int, transposed: bool = False) -> type[nn.Module]:
    """``nn.Conv1d``/``Conv2d``/``Conv3d`` (or the transposed ones) for ``spatial_dims`` 1/2/3.

    Raises:
        ValueError: If ``spatial_dims`` is not 1, 2 or 3.
    """
    return (_CONV_TRANSPOSES if transposed else _CONVS)[_dims(spatial_dims)]


def pool(name: str, spatial_dims: int) -> type[nn.Module]:
    """The pooling class ``name`` (one of :data:`POOLS`) for ``spatial_dims`` 1/2/3.

    Examples:
        >>> pool("adaptive_avg", 1)
        <class 'torch.nn.modules.pooling.AdaptiveAvgPool1d'>

    Raises:
        ValueError: If ``name`` or ``spatial_dims`` is not allowed.
    """
    return _POOLS[check_choice("pool", name, POOLS)][_dims(spatial_dims)]


def norm(spec: LayerSpec, spatial_dims: int, channels: int) -> nn.Module:
    """A normalisation of ``channels`` feature maps, from a name or ``(name, kwargs)``.

    ``"batch"`` and ``"instance"`` are ``nn.BatchNorm{1,2,3}d`` / ``nn.InstanceNorm{1,2,3}d``;
    ``"group"`` is ``nn.GroupNorm`` (kwarg ``num_groups``, default ``gcd(32, channels)``); ``"layer"`` is
    :class:`ChannelLayerNorm` (over the channels at each position). Other kwargs go to the
    module (``momentum``, ``eps``, ``affine``, ...).

    Raises:
        ValueError: If the name, ``spatial_dims`` or ``channels`` is not allowed, or ``channels``
            is not a multiple of ``num_groups``.
    """
    name, kwargs = _parse("norm", spec, NORMS)
    dims = _dims(spatial_dims)
    check_int("channels", channels, 1)
    if name == "batch":
        return _BATCH_NORMS[dims](channels, **kwargs)
    if name == "instance":
        return _INSTANCE_NORMS[dims](channels, **kwargs)
    if name == "layer":
        return ChannelLayerNorm(channels, **kwargs)
    groups = check_int("num_groups", kwargs.pop("num_groups", math.gcd(32, channels)), 1)
    if channels % groups:
        raise ValueError(
            f"`norm` ('group') needs `channels` divisible by num_groups={groups}, got {channels}."
        )
    return nn.GroupNorm(groups, channels, **kwargs)


def act(spec: LayerSpec, inplace: bool = False) -> nn.Module:
    """An activation from a name (one of :data:`ACTS`) or ``(name, kwargs)``.

    Args:
        spec: E.g. ``"relu"``, ``"gelu"``, ``("leaky_relu", {"negative_slope": 0.1})``.
        inplace: Build it in place when the activation supports it and ``kwargs`` does not say
            otherwise; safe right after a convolution or normalisation, whose output nothing else
            reads.

    Raises:
        ValueError: If the name is not allowed or the spec is malformed.
    """
    name, kwargs = _parse("act", spec, ACTS)
    cls = _ACTS[name]
    if inplace and "inplace" in inspect.signature(cls).parameters:
        kwargs.setdefault("inplace", True)
    return cls(**kwargs)


def same_padding(
    kernel_size: int | Sequence[int], dilation: int | Sequence[int] = 1
) -> int | tuple[int, ...]:
    """Padding that keeps the size at stride 1 for odd kernels: ``dilation * (k - 1) // 2`` per dim.

    Examples:
        >>> same_padding(3), same_padding((51, 5)), same_padding(3, dilation=2)
        (1, (25, 2), 2)
    """
    if isinstance(kernel_size, int) and isinstance(dilation, int):
        return dilation * (kernel_size - 1) // 2
    ks = (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)
    ds = (dilation,) * len(ks) if isinstance(dilation, int) else tuple(dilation)
    if len(ks) == 1:
        ks = ks * len(ds)
    return tuple(d * (k - 1) // 2 for k, d in zip(ks, ds))
