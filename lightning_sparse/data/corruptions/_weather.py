"""Weather corruptions: snow, frost and fog.

Same signature as :mod:`._noise`: float ``(H, W, C)`` in ``[0, 1]`` in and out.
"""

from __future__ import annotations

import numpy as np

from . import _ops
from ._frost import FROST_BANK_SIZE, frost_texture
from ._params import Preset


def plasma_fractal(mapsize: int, wibble_decay: float, rng: np.random.Generator) -> np.ndarray:
    """A periodic diamond-square height map ``(mapsize, mapsize)`` scaled to ``[0, 1]``.

    Fournier, Fussell & Carpenter 1982 ("Computer rendering of stochastic models"), in the
    variant of both generator scripts: corner 0 starts at zero, each new point is the mean of
    its four neighbours (wrapping around the edges) plus noise uniform in
    ``[-wibble^2, wibble^2]``, with ``wibble`` starting at 100 and divided by ``wibble_decay``
    after each halving of the step. Smaller decays keep more fine detail, i.e. denser fog.

    Args:
        mapsize: Side of the map, a power of two.
        wibble_decay: Per-octave divisor of the noise scale.
        rng: Source of the noise.
    """
    assert mapsize > 0 and mapsize & (mapsize - 1) == 0, mapsize
    heights = np.zeros((mapsize, mapsize))
    step, wibble = mapsize, 100.0

    def perturbed_mean(total: np.ndarray) -> np.ndarray:
        return total / 4.0 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        # square step: the centre of every square of corners `step` apart
        corners = heights[0::step, 0::step]
        around = corners + np.roll(corners, -1, axis=0)
        around = around + np.roll(around, -1, axis=1)
        heights[half::step, half::step] = perturbed_mean(around)
        # diamond step: the edge midpoints, from two corners and two square centres each
        centres = heights[half::step, half::step]
        corners = heights[0::step, 0::step]
        horizontal = corners + np.roll(corners, -1, axis=1) + centres + np.roll(centres, 1, axis=0)
        heights[0::step, half::step] = perturbed_mean(horizontal)
        vertical = corners + np.roll(corners, -1, axis=0) + centres + np.roll(centres, 1, axis=1)
        heights[half::step, 0::step] = perturbed_mean(vertical)
        step = half
        wibble /= wibble_decay
    heights -= heights.min()
    return heights / heights.max()


def fog(x: np.ndarray, c: tuple, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """Add ``strength`` times a plasma fractal, then rescale by ``max / (max + strength)``.

    The fractal has the preset's map size (32 for CIFAR, 256 for ImageNet), doubled until it
    covers the image, and is cropped at the top-left corner as in the reference.
    """
    strength, wibble_decay = c
    h, w = x.shape[:2]
    mapsize = preset.fog_mapsize
    while mapsize < max(h, w):
        mapsize *= 2
    fractal = plasma_fractal(mapsize, wibble_decay, rng)[:h, :w, None]
    max_val = x.max()
    return np.clip((x + strength * fractal) * max_val / (max_val + strength), 0.0, 1.0)


def frost(x: np.ndarray, c: tuple, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """Blend ``image_weight * x + frost_weight * frost`` with a random crop of a frost photo.

    One of the first ``FROST_BANK_SIZE`` published frost photos (:mod:`._frost`; procedural
    textures when the photos are not installed) is drawn, resized by the preset's
    ``frost_rescale`` (0.2 for CIFAR, as the CIFAR script does; enlarged further only if it
    would not cover the image) and cropped at a random position. Grey images blend with the
    photo's luma.
    """
    image_weight, frost_weight = c
    h, w, channels = x.shape
    index = int(rng.integers(FROST_BANK_SIZE))
    texture = frost_texture(index, h, w, preset.frost_rescale)
    top = int(rng.integers(0, texture.shape[0] - h + 1))
    left = int(rng.integers(0, texture.shape[1] - w + 1))
    layer = texture[top: top + h, left: left + w] / 255.0
    if channels == 1:
        layer = _ops.luma(layer)[..., None]
    return np.clip(image_weight * x + frost_weight * layer, 0.0, 1.0)


def snow(x: np.ndarray, c: tuple, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """Motion-blurred snowflakes over a whitened image.

    A Gaussian layer ``N(loc, scale)`` is zoomed into by ``zoom`` (larger flakes), thresholded
    at ``threshold``, quantised to 8 bits, motion-blurred (ImageMagick kernel, see
    :func:`._ops.motion_blur`) at an angle drawn from U(-135, -45) degrees, and added twice (as
    is and rotated by 180 degrees) to ``w * x + (1 - w) * max(x, 1.5 * grey(x) + 0.5)``.
    """
    loc, scale, zoom, threshold, blur_radius, blur_sigma, image_weight = c
    h, w = x.shape[:2]
    layer = rng.normal(loc=loc, scale=scale, size=(h, w))
    layer = _ops.clipped_zoom(layer, zoom)
    layer[layer < threshold] = 0.0
    layer = np.floor(np.clip(layer, 0.0, 1.0) * 255.0) / 255.0  # the reference's 8-bit PNG
    angle = rng.uniform(-135.0, -45.0)
    layer = _ops.motion_blur(layer, blur_radius, blur_sigma, angle)[..., None]
    grey = _ops.luma(x)[..., None]
    x = image_weight * x + (1.0 - image_weight) * np.maximum(x, grey * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2), 0.0, 1.0)
