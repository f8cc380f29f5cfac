"""Image operations shared by the corruptions, in numpy/scipy only.

Each replaces a call the reference generators made to scikit-image, OpenCV or ImageMagick; the
docstrings say which and how the border handling maps. Images are float arrays ``(H, W, C)`` in
``[0, 1]`` unless stated otherwise.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, signal

# ITU-R BT.601 luma weights, as in OpenCV's RGB2GRAY and PIL's "L" conversion
LUMA = np.array([0.299, 0.587, 0.114])


def luma(image: np.ndarray) -> np.ndarray:
    """Grey level ``(H, W)`` of an ``(H, W, C)`` image; a single channel is returned as is."""
    if image.shape[-1] == 1:
        return image[..., 0]
    return image @ LUMA


def gaussian(image: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """``skimage.filters.gaussian``: spatial axes only, ``mode="nearest"``, ``truncate=4``."""
    sigmas = (sigma, sigma) + (0,) * (image.ndim - 2)
    return ndimage.gaussian_filter(image, sigmas, mode=mode, truncate=truncate)


def box_blur3(image: np.ndarray) -> np.ndarray:
    """``cv2.blur(image, (3, 3))`` on a 2-D image, before OpenCV's cast to the input type.

    OpenCV sums the 3x3 window exactly (reflect-101 border) and multiplies by ``1 / 9``; the
    float64 result here is that product (cast it to float32, or round it for ``uint8``, as
    OpenCV does).
    """
    padded = np.pad(image.astype(np.float64), 1, mode="reflect")
    h, w = image.shape
    total = sum(padded[dy: dy + h, dx: dx + w] for dy in range(3) for dx in range(3))
    return total * (1.0 / 9.0)


def correlate2d_reflect101(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``cv2.filter2D`` with a centred kernel and reflect-101 border, for each channel.

    Uses FFT convolution on a padded copy, which is much faster than a direct sum for the
    17x17 and 21x21 disks of defocus blur.
    """
    kh, kw = kernel.shape
    ph, pw = kh // 2, kw // 2
    pad = ((ph, ph), (pw, pw)) + ((0, 0),) * (image.ndim - 2)
    padded = np.pad(image, pad, mode="reflect")  # numpy "reflect" is OpenCV's reflect-101
    flipped = kernel[::-1, ::-1].reshape(kernel.shape + (1,) * (image.ndim - 2))
    return signal.fftconvolve(padded, flipped, mode="valid", axes=(0, 1))


def gaussian_kernel1d(ksize: int, sigma: float) -> np.ndarray:
    """``cv2.getGaussianKernel(ksize, sigma)`` for ``sigma > 0``."""
    x = np.arange(ksize) - (ksize - 1) / 2
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The anti-aliased disk of defocus blur (``disk`` in both generator scripts).

    A binary disk ``x^2 + y^2 <= radius^2`` on a 17x17 grid (``(2r+1)^2`` above radius 8),
    normalised to sum one, then smoothed by a 3x3 (5x5 above radius 8) Gaussian of standard
    deviation ``alias_blur`` as ``cv2.GaussianBlur`` does (reflect-101 border).
    """
    half = 8 if radius <= 8 else int(radius)
    ksize = 3 if radius <= 8 else 5
    coords = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(coords, coords)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = gaussian_kernel1d(ksize, alias_blur)
    disk = ndimage.correlate1d(disk, g, axis=0, mode="mirror")
    return ndimage.correlate1d(disk, g, axis=1, mode="mirror")


def motion_blur(image: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's ``MotionBlurImage(radius, sigma, angle)`` in numpy.

    ImageMagick (``MagickCore/effect.c``) uses ``width = 2 * ceil(radius) + 1`` taps with the
    one-sided Gaussian weights ``exp(-j^2 / (2 sigma^2))``, ``j = 0..width-1``, normalised to
    sum one; tap ``j`` reads the pixel at column offset ``ceil(j cos(angle) - 0.5)`` and row
    offset ``ceil(j sin(angle) - 0.5)`` (angle in degrees, rows grow downwards), with the
    default "edge" virtual pixels (coordinates clamped to the image). The blur therefore smears
    each pixel from one side only, like a streak behind a moving object.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` float array.
        radius: Kernel radius in pixels (not counting the centre).
        sigma: Standard deviation of the one-sided Gaussian, in pixels.
        angle: Direction of the streak in degrees.
    """
    width = int(2 * math.ceil(radius) + 1)
    taps = np.arange(width)
    weights = np.exp(-(taps.astype(np.float64) ** 2) / (2.0 * sigma * sigma))
    weights /= weights.sum()
    theta = math.radians(angle)
    # hypot normalisation in ImageMagick reduces to cos/sin of the angle
    dx = np.ceil(taps * math.cos(theta) - 0.5).astype(int)
    dy = np.ceil(taps * math.sin(theta) - 0.5).astype(int)
    h, w = image.shape[:2]
    pad_y, pad_x = int(np.abs(dy).max()), int(np.abs(dx).max())
    pad = ((pad_y, pad_y), (pad_x, pad_x)) + ((0, 0),) * (image.ndim - 2)
    padded = np.pad(image, pad, mode="edge")
    out = np.zeros(image.shape, dtype=np.float64)
    for weight, oy, ox in zip(weights, dy, dx):
        out += weight * padded[pad_y + oy: pad_y + oy + h, pad_x + ox: pad_x + ox + w]
    return out


def clipped_zoom(image: np.ndarray, factor: float) -> np.ndarray:
    """Zoom into the centre by ``factor`` keeping the size (``clipped_zoom`` in both scripts).

    Crops the central ``ceil(H / factor) x ceil(W / factor)`` window, enlarges it with
    ``scipy.ndimage.zoom(order=1)`` and trims the result back to ``H x W`` around the centre.
    The reference used the height for both sides (square images); here each side uses its own.
    Only the kept window is computed, as two linear-interpolation matrices with scipy's
    coordinate mapping (equal to the full zoom then trim up to float rounding, and much faster;
    positions are clamped to the input, where scipy's ``mode="constant"`` can round the last
    position just outside and output 0 for a whole edge row or column).
    """
    h, w = image.shape[:2]
    ch, cw = int(math.ceil(h / factor)), int(math.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = image[top: top + ch, left: left + cw].astype(np.float64)
    rows = _zoom_matrix(ch, factor, h)  # (h, ch)
    cols = _zoom_matrix(cw, factor, w)  # (w, cw)
    out = np.einsum("ij,jk...,lk->il...", rows, crop, cols, optimize=True)
    return out.astype(image.dtype, copy=False)


def _zoom_matrix(size: int, factor: float, keep: int) -> np.ndarray:
    """Rows ``trim .. trim + keep`` of the ``scipy.ndimage.zoom(order=1)`` operator on one axis.

    scipy enlarges ``size`` samples to ``round(size * factor)`` and maps output ``o`` to input
    ``o * (size - 1) / (out - 1)`` (``grid_mode=False``), interpolating linearly.
    """
    out = int(round(size * factor))
    trim = (out - keep) // 2
    o = np.arange(trim, trim + keep, dtype=np.float64)
    pos = o * (size - 1) / (out - 1) if out > 1 else np.zeros_like(o)
    low = np.clip(np.floor(pos).astype(int), 0, size - 1)
    high = np.minimum(low + 1, size - 1)
    frac = pos - low
    matrix = np.zeros((keep, size))
    np.add.at(matrix, (np.arange(keep), low), 1.0 - frac)
    np.add.at(matrix, (np.arange(keep), high), frac)
    return matrix


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """``skimage.color.rgb2hsv``: H in ``[0, 1)``, S = (max - min) / max, V = max.

    Grey pixels (max == min) get hue 0 and saturation 0, as in scikit-image.
    """
    v = rgb.max(-1)
    delta = v - rgb.min(-1)
    grey = delta == 0
    safe_delta = np.where(grey, 1.0, delta)
    s = np.where(grey, 0.0, delta / np.where(v == 0, 1.0, v))
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # scikit-image assigns red, then green, then blue: the last maximal channel wins (ties
    # give the same hue either way)
    h = np.where(r == v, (g - b) / safe_delta, 0.0)
    h = np.where(g == v, 2.0 + (b - r) / safe_delta, h)
    h = np.where(b == v, 4.0 + (r - g) / safe_delta, h)
    h = np.where(grey, 0.0, (h / 6.0) % 1.0)
    return np.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """``skimage.color.hsv2rgb``: the inverse of :func:`rgb_to_hsv`."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sector = np.floor(h * 6.0)
    f = h * 6.0 - sector
    p = v * (1.0 - s)
    q = v * (1.0 - f * s)
    t = v * (1.0 - (1.0 - f) * s)
    sector = sector.astype(np.int64) % 6
    choices = np.stack([
        np.stack([v, t, p], -1), np.stack([q, v, p], -1), np.stack([p, v, t], -1),
        np.stack([p, q, v], -1), np.stack([t, p, v], -1), np.stack([v, p, q], -1),
    ])  # (6, H, W, 3)
    return np.take_along_axis(choices, sector[None, ..., None].repeat(3, -1), axis=0)[0]
