"""A timm-style model registry: ``@register_model`` builders looked up by name.

Builders are short functions returning a plain ``nn.Module``; their keyword arguments are
YAML-friendly so a recipe can name a model and override its arguments, e.g.
``create_model("resnet20", num_classes=10, width=16)``.

Follows ``timm/models/_registry.py`` (Wightman, PyTorch Image Models) in spirit, reduced to the
three functions this project needs.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from torch import nn

__all__ = ["create_model", "list_models", "register_model"]

_BuilderT = TypeVar("_BuilderT", bound=Callable[..., nn.Module])

_MODEL_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: _BuilderT) -> _BuilderT:
    """Register ``fn`` as a model builder under its function name.

    Args:
        fn: A function returning an ``nn.Module``; its ``__name__`` becomes the model name.

    Returns:
        ``fn`` unchanged, so this can be used as a decorator.

    Raises:
        ValueError: If a builder with the same name is already registered.

    Examples:
        >>> from torch import nn
        >>> @register_model
        ... def _doctest_identity(**kwargs):
        ...     return nn.Identity()
        >>> "_doctest_identity" in list_models()
        True
        >>> _ = _MODEL_BUILDERS.pop("_doctest_identity")
    """
    name = fn.__name__
    if name in _MODEL_BUILDERS:
        raise ValueError(f"`register_model`: a model named {name!r} is already registered.")
    _MODEL_BUILDERS[name] = fn
    return fn


def list_models() -> list[str]:
    """Return the sorted names of every registered model.

    Examples:
        >>> import lightning_sparse.models  # registers the built-in models
        >>> "resnet20" in list_models()
        True
    """
    return sorted(_MODEL_BUILDERS)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with keyword arguments ``kwargs``.

    Args:
        name: A registered model name (see :func:`list_models`).
        **kwargs: Passed to the builder, e.g. ``num_classes`` or ``in_channels``.

    Returns:
        The constructed ``nn.Module``.

    Raises:
        ValueError: If ``name`` is not a registered model.

    Examples:
        >>> import lightning_sparse.models
        >>> model = create_model("mlp", in_features=64, hidden_sizes=[32], num_classes=10)
        >>> sum(p.numel() for p in model.parameters())
        2410
    """
    if name not in _MODEL_BUILDERS:
        raise ValueError(
            f"`name` must be one of the registered models {list_models()}, got {name!r}."
        )
    return _MODEL_BUILDERS[name](**kwargs)
