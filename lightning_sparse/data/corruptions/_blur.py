"""Blur corruptions: defocus, glass, motion, zoom and Gaussian blur.

Same signature as :mod:`._noise`: float ``(H, W, C)`` in ``[0, 1]`` in and out.
"""

from __future__ import annotations

import numpy as np

from . import _ops
from ._params import Preset


def defocus_blur(x: np.ndarray, c: tuple, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """Correlation with an anti-aliased disk of radius ``c[0]`` (``cv2.filter2D``, reflect-101)."""
    radius, alias_blur = c
    kernel = _ops.disk_kernel(radius, alias_blur)
    return np.clip(_ops.correlate2d_reflect101(x, kernel), 0.0, 1.0)


def _glass_sources(h: int, w: int, delta: int, rng: np.random.Generator) -> np.ndarray:
    """Flat source index of every pixel after one pass of the reference's local "swaps".

    The reference scans rows ``H - delta .. delta + 1`` and, inside each, columns
    ``W - delta .. delta + 1`` in descending order; for each scanned pixel it draws offsets
    ``dx, dy`` uniformly from ``[-delta, delta - 1]`` and runs
    ``x[h, w], x[h + dy, w + dx] = x[h + dy, w + dx], x[h, w]``. On an ``(H, W, 3)`` array both
    right-hand items are views, so this *copies* the neighbour into ``x[h, w]`` and leaves the
    neighbour unchanged: every scanned pixel takes the value its neighbour has at that moment.
    That value is the neighbour's final value when the neighbour was scanned earlier (it lies
    later in row-major order, inside the scanned window), else its value before the pass.

    The sequential scan is reproduced exactly without a Python loop: each pixel points either
    at an earlier-scanned pixel (whose final value it inherits) or at a fixed source; pointer
    doubling resolves the chains in ``O(log n)`` vectorised steps.
    """
    n = h * w
    sources = np.arange(n)
    rows = np.arange(h - delta, delta, -1)
    cols = np.arange(w - delta, delta, -1)
    if rows.size == 0 or cols.size == 0:
        return sources
    offsets = rng.integers(-delta, delta, size=(rows.size, cols.size, 2))  # (dx, dy) per pixel
    r, q = np.meshgrid(rows, cols, indexing="ij")
    src_r, src_q = r + offsets[..., 1], q + offsets[..., 0]
    target = (r * w + q).ravel()
    source = (src_r * w + src_q).ravel()
    scanned_before = (
        (src_r >= delta + 1) & (src_r <= h - delta) & (src_q >= delta + 1) & (src_q <= w - delta)
        & ((src_r > r) | ((src_r == r) & (src_q > q)))
    ).ravel()
    pointer = np.arange(n)  # a pixel's value equals its pointer's final value
    pointer[target[scanned_before]] = source[scanned_before]
    sources[target[~scanned_before]] = source[~scanned_before]
    while True:  # chains run forward in row-major order, so they end and have no cycles
        jumped = pointer[pointer]
        if np.array_equal(jumped, pointer):
            break
        pointer = jumped
    return sources[pointer]


def glass_blur(x: np.ndarray, c: tuple, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """Gaussian blur, ``iterations`` passes of local pixel shuffling, Gaussian blur again.

    Between the blurs the image is quantised to ``uint8`` by truncation, as in the reference.
    The shuffling reproduces what the reference code does (see :func:`_glass_sources`) on any
    image size; the reference hard-wired 32 or 224 as the scan range.
    """
    sigma, delta, iterations = c
    h, w, channels = x.shape
    blurred = np.floor(_ops.gaussian(x, sigma) * 255.0) / 255.0
    flat = blurred.reshape(h * w, channels)
    for _ in range(iterations):
        flat = flat[_glass_sources(h, w, delta, rng)]
    return np.clip(_ops.gaussian(flat.reshape(h, w, channels), sigma), 0.0, 1.0)


def motion_blur(x: np.ndarray, c: tuple, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """ImageMagick motion blur (:func:`._ops.motion_blur`) at an angle drawn from U(-45, 45)."""
    radius, sigma = c
    angle = rng.uniform(-45.0, 45.0)
    return np.clip(_ops.motion_blur(x, radius, sigma, angle), 0.0, 1.0)


def zoom_blur(x: np.ndarray, c: tuple, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """Mean of the image and its centre zooms by ``numpy.arange(*c)`` (which starts at 1)."""
    factors = np.arange(*c)
    x32 = x.astype(np.float32)
    total = x32.copy()
    for factor in factors:
        total += x32 if factor == 1 else _ops.clipped_zoom(x32, factor)
    return np.clip(total / (len(factors) + 1), 0.0, 1.0)


def gaussian_blur(x: np.ndarray, c: float, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """``skimage.filters.gaussian`` with standard deviation ``c`` (border: nearest)."""
    return np.clip(_ops.gaussian(x, c), 0.0, 1.0)
