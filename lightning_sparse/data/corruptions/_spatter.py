"""Spatter: water droplets (severities with ``mud == 0``) or mud splashes (``mud == 1``).

Same signature as :mod:`._noise`. The water branch of the reference is a chain of OpenCV calls
(Canny edges, distance transform, histogram equalisation, an emboss filter); each is
re-implemented here in numpy/scipy with OpenCV's rounding and border rules; on the same input
they give OpenCV's output exactly (checked against OpenCV 4 while writing this module).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from . import _ops
from ._params import Preset

_WATER = np.array([175.0, 238.0, 238.0]) / 255.0  # pale turquoise
_MUD = np.array([63.0, 42.0, 20.0]) / 255.0  # mud brown
_EMBOSS = np.array([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
_TAN_22_5 = np.tan(np.pi / 8)
# cv2.DIST_L2 with a 5x5 mask: step costs 1 (axial), 1.4 (diagonal), 2.1969 (knight), as
# float32 constants rounded to 16-bit fixed point
_CHAMFER = tuple(round(float(np.float32(v)) * 65536) / 65536 for v in (1.0, 1.4, 2.1969))


def chamfer_distance(zero: np.ndarray) -> np.ndarray:
    """``cv2.distanceTransform(src, DIST_L2, 5)``: distance of every pixel to the nearest
    pixel where ``zero`` is true, in the 5x5 chamfer metric OpenCV uses for this call.

    OpenCV's two raster passes, vectorised along each row: the costs from the two rows above
    (below, in the backward pass) are a shifted minimum, and the chain through the left
    (right) neighbour is a running minimum of ``cost - a * column``. Pixels outside the image
    are infinitely far; with no zero pixel at all every distance is infinite.
    """
    a, b, c = _CHAMFER
    h, w = zero.shape
    inf = np.inf
    d = np.full((h + 4, w + 4), inf)  # two rows/columns of padding on each side
    cols = np.arange(w, dtype=np.float64) * a
    for forward in (True, False):
        rows = range(h) if forward else range(h - 1, -1, -1)
        sign = -1 if forward else 1  # neighbouring rows already visited in this pass
        for y in rows:
            r = y + 2
            near, far = d[r + sign], d[r + 2 * sign]
            cost = d[r, 2:-2] if not forward else np.where(zero[y], 0.0, inf)
            cost = np.minimum.reduce([
                cost, near[2:-2] + a, near[1:-3] + b, near[3:-1] + b, near[:-4] + c,
                near[4:] + c, far[1:-3] + c, far[3:-1] + c,
            ])
            if forward:  # d[x] = min over k <= x of cost[k] + a * (x - k)
                d[r, 2:-2] = np.minimum.accumulate(cost - cols) + cols
            else:  # d[x] = min over k >= x of cost[k] + a * (k - x)
                d[r, 2:-2] = np.minimum.accumulate((cost + cols)[::-1])[::-1] - cols
    return d[2:-2, 2:-2]


def canny(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """``cv2.Canny(image, low, high)`` (3x3 Sobel, L1 gradient) as a boolean edge map.

    Sobel derivatives with replicated borders; non-maximum suppression along the gradient
    direction quantised to 0, 45, 90 or 135 degrees (a pixel must exceed one neighbour and equal
    or exceed the other, as in OpenCV); hysteresis keeps 8-connected runs of candidates
    (magnitude above ``low``) that contain a pixel above ``high``.
    """
    img = image.astype(np.float64)
    gx = ndimage.sobel(img, axis=1, mode="nearest")
    gy = ndimage.sobel(img, axis=0, mode="nearest")
    mag = np.abs(gx) + np.abs(gy)
    padded = np.pad(mag, 1)  # magnitudes outside the image are zero

    def neighbour(dy: int, dx: int) -> np.ndarray:
        h, w = mag.shape
        return padded[1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w]

    ax, ay = np.abs(gx), np.abs(gy)
    horizontal = ay < ax * _TAN_22_5
    vertical = ay > ax / _TAN_22_5
    same_sign = (gx * gy) >= 0
    maximum = np.where(
        horizontal, (mag > neighbour(0, -1)) & (mag >= neighbour(0, 1)),
        np.where(vertical, (mag > neighbour(-1, 0)) & (mag >= neighbour(1, 0)),
                 np.where(same_sign, (mag > neighbour(-1, -1)) & (mag > neighbour(1, 1)),
                          (mag > neighbour(-1, 1)) & (mag > neighbour(1, -1)))))
    candidate = maximum & (mag > low)
    labels, count = ndimage.label(candidate, structure=np.ones((3, 3)))
    if count == 0:
        return candidate
    strong = np.zeros(count + 1, dtype=bool)
    strong[np.unique(labels[candidate & (mag > high)])] = True
    strong[0] = False
    return strong[labels]


def equalize_hist(image: np.ndarray) -> np.ndarray:
    """``cv2.equalizeHist`` on a ``uint8`` image.

    The lowest occupied grey level maps to 0 and the cumulative count of the levels above it is
    scaled to 255 and rounded; a constant image stays constant.
    """
    hist = np.bincount(image.ravel(), minlength=256)
    first = int(np.flatnonzero(hist)[0])
    total = image.size
    if hist[first] == total:
        return image.copy()
    scale = 255.0 / (total - hist[first])
    cumulative = np.cumsum(hist) - hist[first]
    lut = np.clip(np.rint(cumulative * scale), 0, 255).astype(np.uint8)
    lut[: first + 1] = 0
    return lut[image]


def _water(x: np.ndarray, liquid: np.ndarray, intensity: float) -> np.ndarray:
    liquid8 = (np.clip(liquid, 0.0, 1.0) * 255.0).astype(np.uint8)  # truncation, as astype did
    edges = canny(liquid8, 50, 150)
    dist = np.minimum(chamfer_distance(edges), 20.0)  # cv2.threshold(..., 20, 20, THRESH_TRUNC)
    dist = _ops.box_blur3(dist.astype(np.float32)).astype(np.float32).astype(np.uint8)
    dist = equalize_hist(dist)
    # cv2.filter2D(dist, CV_8U, kernel): correlation, reflect-101 border, rounded and saturated
    dist = ndimage.correlate(dist.astype(np.float64), _EMBOSS, mode="mirror")
    dist = np.clip(np.rint(dist), 0, 255)
    dist = np.clip(np.rint(_ops.box_blur3(dist)), 0, 255)
    m = liquid8 * dist
    peak = m.max()
    m = m / peak * intensity if peak > 0 else m
    color = _WATER if x.shape[-1] == 3 else np.array([_ops.luma(_WATER[None, :])[0]])
    return np.clip(x + m[..., None] * color, 0.0, 1.0)


def _mud(x: np.ndarray, liquid: np.ndarray, threshold: float, sigma: float) -> np.ndarray:
    m = _ops.gaussian((liquid > threshold).astype(np.float64), sigma)
    m[m < 0.8] = 0.0
    m = m[..., None]
    color = _MUD if x.shape[-1] == 3 else np.array([_ops.luma(_MUD[None, :])[0]])
    return np.clip(x * (1.0 - m) + color * m, 0.0, 1.0)


def spatter(x: np.ndarray, c: tuple, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """Blurred Gaussian noise thresholded into blobs, drawn as water or as mud.

    Water: the blobs' edge distance map is equalised and embossed into glossy droplets, scaled
    to a peak of ``intensity`` and added in pale turquoise. Mud: the blob mask is blurred with
    ``sigma = intensity``, kept where above 0.8, and those pixels are painted mud brown.
    Grey images use the luma of these colours.
    """
    loc, scale, sigma, threshold, intensity, mud = c
    liquid = rng.normal(loc=loc, scale=scale, size=x.shape[:2])
    liquid = _ops.gaussian(liquid, sigma)
    liquid[liquid < threshold] = 0.0
    if mud:
        return _mud(x, liquid, threshold, intensity)
    return _water(x, liquid, intensity)
