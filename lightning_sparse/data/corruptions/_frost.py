"""Frost layers: the published frost photographs, or procedural ice textures as a fallback.

The published generators blend images with random crops of photographs of frost on glass
(``frost1.png`` .. ``frost6.jpg``; ``np.random.randint(5)`` means only the first five are ever
drawn, and ``frost2.png`` and ``frost3.png`` are the same picture). Those photos ship inside the
``imagecorruptions`` distribution (a declared dependency). :func:`frost_photos` reads them from
the installed files with PIL, without importing that package (its code needs numpy 1), and
converts them to RGB (alpha dropped), which is what the scripts' ``cv2.imread(...)[..., [2, 1,
0]]`` gives. Their mean brightness is 0.48-0.81 of full scale.

:func:`frost_texture` returns photo ``index`` resized by the preset's factor (0.2 for CIFAR,
with OpenCV's ``INTER_LINEAR`` rule and no anti-aliasing, as ``make_cifar_c.py`` does; 1 for
ImageNet). When the resized photo is smaller than the image (images larger than about 300
pixels with the ImageNet constants, larger than about 60 with the CIFAR ones), the factor is
raised until it covers the image, as the ``imagecorruptions`` package does; crystals then look
coarser than in the published 224- and 32-pixel crops.

Fallback: when the ``imagecorruptions`` files are not installed, a fixed bank of
``FROST_BANK_SIZE`` procedural textures is generated on first use from fixed seeds (identical
on every machine, nothing is downloaded):

* a soft fractal haze (value noise over six octaves) for the frosted background,
* dendritic ice crystals: stems that fork at +-60 degrees (the hexagonal habit of ice), twice
  recursively, drawn as thin lines, plus six-armed stellar crystals,
* a sharp copy of the crystals and a blurred glow of them, and fine grain,
* a cold tint (blue channel brightest), giving a mean brightness of about 0.4 of full scale.

They are idealised (straight stems, regular branching, even density, no lighting gradient or
lens blur) and darker than the photos: frost made from them changes images by only about
0.55-0.65 of the published amount, so frost error rates obtained with the fallback are not
comparable with published CIFAR-10-C or ImageNet-C frost numbers. :func:`frost_source` says
which source is in use.
"""

from __future__ import annotations

import functools
import importlib.metadata
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

FROST_BANK_SIZE = 5  # the scripts draw np.random.randint(5) of their six photos
FROST_PHOTOS = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
_PHOTO_DISTRIBUTION = "imagecorruptions"
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


@functools.lru_cache(maxsize=1)
def frost_photos() -> tuple[np.ndarray, ...] | None:
    """The first ``FROST_BANK_SIZE`` published frost photos as read-only RGB ``uint8`` arrays.

    Read once per process from the installed ``imagecorruptions`` distribution (its package is
    never imported). ``None`` when the distribution or one of its photos is missing.
    """
    try:
        distribution = importlib.metadata.distribution(_PHOTO_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    photos = []
    for name in FROST_PHOTOS[:FROST_BANK_SIZE]:
        path = Path(str(distribution.locate_file(f"imagecorruptions/frost/{name}")))
        if not path.is_file():
            return None
        with Image.open(path) as image:
            photo = np.array(image.convert("RGB"))
        photo.setflags(write=False)
        photos.append(photo)
    return tuple(photos)


def frost_source() -> str:
    """``"photos"`` (the published frost photos) or ``"procedural"`` (the fallback bank)."""
    return "photos" if frost_photos() is not None else "procedural"


@functools.lru_cache(maxsize=32)
def _photo_texture(index: int, scale: float) -> np.ndarray:
    photo = frost_photos()[index]
    if scale != 1.0:
        photo = _resize_linear(photo, scale)
        photo.setflags(write=False)
    return photo


@functools.lru_cache(maxsize=16)
def _bank_texture(index: int, side: int, rescale: float) -> np.ndarray:
    texture = _generate(index, side)
    if rescale != 1.0:
        texture = _resize_linear(texture, rescale)
    texture.setflags(write=False)
    return texture


def frost_texture(index: int, height: int, width: int, rescale: float = 1.0) -> np.ndarray:
    """Frost layer ``index``, resized by ``rescale``, at least ``height`` x ``width``.

    The published photo when installed (:func:`frost_photos`), else the procedural texture.
    If the resized photo would not cover the image, the factor is raised until it does.
    Cached per process.

    Args:
        index: Which photo / texture, ``0 <= index < FROST_BANK_SIZE``.
        height: The image's height; the returned layer is at least this tall.
        width: The image's width; the returned layer is at least this wide.
        rescale: Resize factor (0.2 for the CIFAR preset, 1 for ImageNet).

    Returns:
        A read-only ``uint8`` array ``(H, W, 3)`` with ``H >= height`` and ``W >= width``.

    Examples:
        >>> layer = frost_texture(0, 32, 32, 0.2)
        >>> layer.dtype, layer.shape[0] >= 32, layer.shape[1] >= 32
        (dtype('uint8'), True, True)
    """
    index, rescale = int(index), float(rescale)
    photos = frost_photos()
    if photos is not None:
        ph, pw = photos[index].shape[:2]
        scale = rescale
        if round(ph * scale) < height or round(pw * scale) < width:
            scale = max((height + 0.5) / ph, (width + 0.5) / pw)
        return _photo_texture(index, scale)
    min_side = max(height, width)
    side = max(_MIN_SIDE, int(math.ceil(min_side / rescale)) + 1)
    side = int(math.ceil(side / 64) * 64)  # few distinct sizes, so the cache stays small
    return _bank_texture(index, side, rescale)
