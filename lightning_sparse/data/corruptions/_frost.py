"""Procedural ice-crystal textures standing in for the frost photographs of ImageNet-C.

The reference blends images with random crops of six photographs of frost on glass
(``frost1.png`` .. ``frost6.jpg``, of which only the first five are ever drawn). Those photos are
not available here, so the frost corruption uses a fixed bank of ``FROST_BANK_SIZE`` textures
generated on first use from fixed seeds (identical on every machine, nothing is downloaded):

* a soft fractal haze (value noise over six octaves) for the frosted background,
* dendritic ice crystals: stems that fork at +-60 degrees (the hexagonal habit of ice), twice
  recursively, drawn as thin lines, plus six-armed stellar crystals,
* a sharp copy of the crystals and a blurred glow of them, and fine grain,
* a cold tint (blue channel brightest), giving a mean brightness of about 0.4 of full scale.

How they differ from the photos: the crystals are idealised (straight stems, regular
60-degree branching, uniform density over the texture), there is no lighting gradient, lens
blur or background colour from a real scene, and the brightness statistics were set by eye to
resemble frost on glass, not measured on the published files. Frost error rates are therefore
comparable between models evaluated with this package, not with published CIFAR-10-C or
ImageNet-C frost numbers.

Textures are generated at "photo scale" (crystals sized for 224-pixel crops) with a side of at
least 512 pixels, then resized with OpenCV's ``INTER_LINEAR`` rule (no anti-aliasing, which at
0.2 amounts to taking every fifth pixel) for the CIFAR preset, as its script does.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

FROST_BANK_SIZE = 5
_BANK_SEED = 1903_12261  # the arXiv id of the paper; fixed so the bank never changes
_MIN_SIDE = 512
_TINT = np.array([0.84, 0.93, 1.0])  # multiplies the grey texture: a cold, slightly blue white
_TINT_OFFSET = np.array([0.0, 0.02, 0.06])


def _value_noise(rng: np.random.Generator, side: int, octaves: int = 6, base_cells: int = 3) -> np.ndarray:
    """Fractal value noise in ``[0, 1]``: bicubically upsampled random grids, amplitude halving."""
    total = np.zeros((side, side), dtype=np.float32)
    amplitude = 1.0
    for octave in range(octaves):
        cells = base_cells * 2**octave + 1
        grid = rng.random((cells, cells)).astype(np.float32)
        up = Image.fromarray(grid, mode="F").resize((side, side), Image.Resampling.BICUBIC)
        total += amplitude * np.asarray(up)
        amplitude *= 0.5
    total -= total.min()
    return total / max(float(total.max()), 1e-12)


def _dendrite(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x0: float, y0: float,
              angle: float, length: float, width: int, level: int, value: float) -> None:
    """Draw a stem and, recursively, side branches forking at +-60 degrees along it."""
    x1, y1 = x0 + length * math.cos(angle), y0 + length * math.sin(angle)
    draw.line([(x0, y0), (x1, y1)], fill=int(value), width=width)
    if level == 0 or length < 6:
        return
    spacing = max(3.0, length * rng.uniform(0.07, 0.13))
    t = spacing * rng.uniform(0.5, 1.0)
    while t < length:
        px, py = x0 + t * math.cos(angle), y0 + t * math.sin(angle)
        remaining = length - t
        for side in (-1.0, 1.0):
            if rng.random() < 0.8:
                branch_angle = angle + side * math.pi / 3 + rng.normal(0.0, 0.06)
                branch_length = remaining * rng.uniform(0.25, 0.55)
                _dendrite(draw, rng, px, py, branch_angle, branch_length, max(1, width - 1),
                          level - 1, value * rng.uniform(0.75, 0.95))
        t += spacing * rng.uniform(0.8, 1.25)


def _crystals(rng: np.random.Generator, side: int) -> np.ndarray:
    """Dendritic and stellar crystals as a float image ``(side, side)`` in ``[0, 1]``."""
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    area_scale = (side / 512.0) ** 2
    for _ in range(int(round(rng.integers(34, 46) * area_scale))):  # feathery dendrites
        x0, y0 = rng.uniform(-0.1, 1.1, size=2) * side
        _dendrite(draw, rng, x0, y0, rng.uniform(0, 2 * math.pi), rng.uniform(0.08, 0.28) * side,
                  2, 2, rng.uniform(150, 255))
    for _ in range(int(round(rng.integers(10, 16) * area_scale))):  # six-armed stellar crystals
        x0, y0 = rng.uniform(0, 1, size=2) * side
        start, arm = rng.uniform(0, math.pi / 3), rng.uniform(0.015, 0.05) * side
        value = rng.uniform(150, 240)
        for k in range(6):
            _dendrite(draw, rng, x0, y0, start + k * math.pi / 3, arm, 1, 1, value)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _generate(index: int, side: int) -> np.ndarray:
    """Texture ``index`` of the bank as ``uint8`` ``(side, side, 3)``."""
    rng = np.random.default_rng([_BANK_SEED, index, side])
    haze = _value_noise(rng, side)
    crystals = _crystals(rng, side)
    sharp = ndimage.gaussian_filter(crystals, 0.6)
    glow = ndimage.gaussian_filter(crystals, 3.0)
    grain = ndimage.gaussian_filter(rng.random((side, side), dtype=np.float32), 0.8)
    grey = 0.16 + 0.36 * haze + 0.7 * sharp + 0.8 * glow + 0.25 * (grain - grain.mean())
    grey = np.clip(grey, 0.0, 1.0)
    rgb = np.clip(grey[..., None] * _TINT + _TINT_OFFSET, 0.0, 1.0)
    return np.rint(rgb * 255.0).astype(np.uint8)


def _resize_linear(image: np.ndarray, scale: float) -> np.ndarray:
    """``cv2.resize(image, (0, 0), fx=scale, fy=scale)`` with ``INTER_LINEAR``.

    Output side ``round(side * scale)``; output pixel ``i`` samples the input bilinearly at
    ``(i + 0.5) / scale - 0.5`` with replicated borders and no anti-aliasing.
    """
    h, w = image.shape[:2]
    out_h, out_w = int(round(h * scale)), int(round(w * scale))
    rows = np.clip((np.arange(out_h) + 0.5) / scale - 0.5, 0, h - 1)
    cols = np.clip((np.arange(out_w) + 0.5) / scale - 0.5, 0, w - 1)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    channels = [ndimage.map_coordinates(image[..., k].astype(np.float64), [rr, cc], order=1)
                for k in range(image.shape[2])]
    return np.rint(np.stack(channels, -1)).clip(0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=16)
def _bank_texture(index: int, side: int, rescale: float) -> np.ndarray:
    texture = _generate(index, side)
    if rescale != 1.0:
        texture = _resize_linear(texture, rescale)
    texture.setflags(write=False)
    return texture


def frost_texture(index: int, min_side: int, rescale: float = 1.0) -> np.ndarray:
    """Texture ``index`` of the bank, resized by ``rescale``, with a side of at least ``min_side``.

    Cached per process: generating one 512-pixel texture takes a few tens of milliseconds.

    Args:
        index: Which texture, ``0 <= index < FROST_BANK_SIZE``.
        min_side: The returned square side is at least this (the image to corrupt).
        rescale: Resize factor applied after generation (0.2 for the CIFAR preset).

    Returns:
        A read-only ``uint8`` array ``(S, S, 3)`` with ``S >= min_side``.

    Examples:
        >>> frost_texture(0, 32, 0.2).shape
        (102, 102, 3)
    """
    side = max(_MIN_SIDE, int(math.ceil(min_side / rescale)) + 1)
    side = int(math.ceil(side / 64) * 64)  # few distinct sizes, so the cache stays small
    return _bank_texture(int(index), side, float(rescale))
