"""The functional entry point :func:`corrupt`, its registry and its argument checks."""

from __future__ import annotations

from typing import Callable

import numpy as np

from . import _blur, _digital, _noise, _spatter, _weather
from ._params import AUTO_CIFAR_MAX_SIDE, PRESETS, Preset

__all__ = ["ALL_CORRUPTIONS", "CORRUPTIONS", "EXTRA_CORRUPTIONS", "PARAMS", "corrupt"]

# the 15 benchmark corruptions, in the order of the paper's figures and tables
CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog",
    "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
# the four held-out corruptions released with the benchmark for validation
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS: tuple[str, ...] = CORRUPTIONS + EXTRA_CORRUPTIONS
PARAMS: tuple[str, ...] = tuple(PRESETS)  # ("cifar", "imagenet")
MIN_SIDE = 8

_Fn = Callable[[np.ndarray, object, np.random.Generator, Preset], np.ndarray]
_REGISTRY: dict[str, _Fn] = {
    "gaussian_noise": _noise.gaussian_noise,
    "shot_noise": _noise.shot_noise,
    "impulse_noise": _noise.impulse_noise,
    "speckle_noise": _noise.speckle_noise,
    "defocus_blur": _blur.defocus_blur,
    "glass_blur": _blur.glass_blur,
    "motion_blur": _blur.motion_blur,
    "zoom_blur": _blur.zoom_blur,
    "gaussian_blur": _blur.gaussian_blur,
    "snow": _weather.snow,
    "frost": _weather.frost,
    "fog": _weather.fog,
    "spatter": _spatter.spatter,
    "brightness": _digital.brightness,
    "contrast": _digital.contrast,
    "saturate": _digital.saturate,
    "jpeg_compression": _digital.jpeg_compression,
    "pixelate": _digital.pixelate,
    "elastic_transform": _digital.elastic_transform,
}
assert set(_REGISTRY) == set(ALL_CORRUPTIONS)

# corruptions whose output does not depend on the seed
DETERMINISTIC: frozenset[str] = frozenset({
    "defocus_blur", "zoom_blur", "gaussian_blur", "brightness", "contrast", "saturate",
    "jpeg_compression", "pixelate",
})


def check_name(name: object) -> str:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(
            f"`name` must be one of {', '.join(ALL_CORRUPTIONS)}; got {name!r}."
        )
    return name


def check_severity(severity: object) -> int:
    if isinstance(severity, (bool, np.bool_)) or not isinstance(severity, (int, np.integer)) \
            or not 1 <= severity <= 5:
        raise ValueError(f"`severity` must be an integer from 1 to 5; got {severity!r}.")
    return int(severity)


def check_params(params: object) -> str | None:
    if params is not None and (not isinstance(params, str) or params not in PRESETS):
        raise ValueError(
            f"`params` must be None (choose by image size), {' or '.join(map(repr, PARAMS))}; "
            f"got {params!r}."
        )
    return params


def check_seed(seed: object) -> None:
    if seed is None or isinstance(seed, np.random.Generator):
        return
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(
            f"`seed` must be None, a non-negative integer or a numpy.random.Generator; got {seed!r}."
        )


def check_image(image: object) -> np.ndarray:
    """Validate an ``(H, W)`` or ``(H, W, C)`` uint8 array with C in {1, 3}; return it as HWC."""
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"`image` must be a numpy.ndarray of dtype uint8; got {type(image).__name__}."
        )
    if image.dtype != np.uint8:
        raise ValueError(f"`image` must have dtype uint8 (values 0..255); got dtype {image.dtype}.")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise ValueError(
            "`image` must have shape (H, W) or (H, W, C) with C = 1 or 3; "
            f"got shape {tuple(image.shape)}."
        )
    if min(image.shape[:2]) < MIN_SIDE:
        raise ValueError(
            f"`image` must be at least {MIN_SIDE}x{MIN_SIDE} pixels; got shape {tuple(image.shape)}."
        )
    return image if image.ndim == 3 else image[..., None]


def resolve_params(params: str | None, height: int, width: int) -> Preset:
    """The preset named ``params``, or by size: CIFAR up to 64 px on the short side, else ImageNet."""
    if params is None:
        params = "cifar" if min(height, width) <= AUTO_CIFAR_MAX_SIDE else "imagenet"
    return PRESETS[params]


def corrupt(
    image: np.ndarray,
    name: str,
    severity: int,
    seed: int | np.random.Generator | None = None,
    params: str | None = None,
) -> np.ndarray:
    """Apply one common corruption of Hendrycks & Dietterich 2019 to an image.

    "Benchmarking Neural Network Robustness to Common Corruptions and Perturbations" (ICLR
    2019, arXiv:1903.12261): the corruptions of CIFAR-10-C and ImageNet-C with their published
    constants. Deviations from the published generators are listed in the package docstring.

    Args:
        image: ``uint8`` array ``(H, W, 3)`` (RGB), ``(H, W, 1)`` or ``(H, W)`` (grey), at least
            8x8. It is not modified.
        name: One of :data:`ALL_CORRUPTIONS` (the 15 of :data:`CORRUPTIONS` plus the 4 of
            :data:`EXTRA_CORRUPTIONS`).
        severity: 1 (mildest) to 5.
        seed: Seed of a local ``numpy.random.default_rng`` (or a ``Generator`` to draw from);
            the same seed gives the same output. ``None`` draws fresh OS entropy. Global random
            state is never read or changed.
        params: ``"cifar"`` (CIFAR-10-C constants, tuned for 32x32), ``"imagenet"`` (ImageNet-C
            constants, tuned for 224x224), or ``None`` to choose by size: CIFAR when the short
            side is at most 64 pixels, else ImageNet.

    Returns:
        A new ``uint8`` array of the same shape (float results rounded to nearest).

    Raises:
        ValueError: If ``name``, ``severity``, ``seed`` or ``params`` is not one of the allowed
            values, or ``image`` is not a ``uint8`` array of a supported shape.

    Examples:
        >>> rng = np.random.default_rng(0)
        >>> clean = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        >>> noisy = corrupt(clean, "gaussian_noise", severity=3, seed=0)
        >>> noisy.shape, noisy.dtype
        ((32, 32, 3), dtype('uint8'))
        >>> bool((noisy == corrupt(clean, "gaussian_noise", severity=3, seed=0)).all())
        True
    """
    name = check_name(name)
    severity = check_severity(severity)
    params = check_params(params)
    check_seed(seed)
    hwc = check_image(image)
    preset = resolve_params(params, hwc.shape[0], hwc.shape[1])
    rng = np.random.default_rng(seed)
    x = hwc.astype(np.float64) / 255.0
    out = _REGISTRY[name](x, preset(name, severity), rng, preset)
    assert out.shape == x.shape, (name, out.shape, x.shape)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8).reshape(image.shape)


def corruption_revision(name: str) -> str:
    """The revision of corruption ``name``'s implementation, stored next to cached corrupted sets
    so that a cache written by an older implementation is regenerated rather than reused.

    Revision ``"1"`` is every corruption as first shipped; ``frost`` is ``"2-photos"`` with the
    published frost photos and ``"2-procedural"`` with the fallback textures.

    Examples:
        >>> corruption_revision("gaussian_noise")
        '1'
    """
    if name == "frost":
        from lightning_sparse.data.corruptions._frost import frost_source

        return f"2-{frost_source()}"
    return "1"
