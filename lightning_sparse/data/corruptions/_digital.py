"""Digital corruptions: brightness, contrast, saturate, JPEG, pixelate, elastic transform.

Same signature as :mod:`._noise`: float ``(H, W, C)`` in ``[0, 1]`` in and out.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

from . import _ops
from ._params import Preset


def _to_pil(x: np.ndarray) -> Image.Image:
    pixels = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels[..., 0] if x.shape[-1] == 1 else pixels)


def _from_pil(image: Image.Image, channels: int) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.float64) / 255.0
    return pixels.reshape(pixels.shape[:2] + (channels,))


def brightness(x: np.ndarray, c: float, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """Add ``c`` to the HSV value channel (clipped to 1), keeping hue and saturation."""
    if x.shape[-1] == 1:  # grey: V is the pixel itself
        return np.clip(x + c, 0.0, 1.0)
    hsv = _ops.rgb_to_hsv(x)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0.0, 1.0)
    return np.clip(_ops.hsv_to_rgb(hsv), 0.0, 1.0)


def contrast(x: np.ndarray, c: float, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """Scale every channel's deviation from its own mean by ``c``."""
    means = x.mean(axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0.0, 1.0)


def saturate(x: np.ndarray, c: tuple, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """Set the HSV saturation to ``S * c[0] + c[1]`` (clipped to ``[0, 1]``).

    Grey pixels have hue 0 (red) in scikit-image's convention, so a positive ``c[1]`` tints
    them red, as in the published data. Grey images are processed as RGB and converted back to
    luma, so severities 4-5 darken them slightly.
    """
    grey_input = x.shape[-1] == 1
    rgb = np.repeat(x, 3, axis=-1) if grey_input else x
    hsv = _ops.rgb_to_hsv(rgb)
    hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0.0, 1.0)
    out = np.clip(_ops.hsv_to_rgb(hsv), 0.0, 1.0)
    return _ops.luma(out)[..., None] if grey_input else out


def jpeg_compression(x: np.ndarray, c: int, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """Encode and decode with PIL's JPEG codec at quality ``c`` (default 4:2:0 chroma)."""
    buffer = io.BytesIO()
    _to_pil(x).save(buffer, format="JPEG", quality=int(c))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return _from_pil(decoded, x.shape[-1])


def pixelate(x: np.ndarray, c: float, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """Box-downsample to ``int(side * c)`` and box-upsample back (PIL ``BOX`` both ways)."""
    h, w, channels = x.shape
    image = _to_pil(x)
    small = image.resize((max(1, int(w * c)), max(1, int(h * c))), Image.Resampling.BOX)
    return _from_pil(small.resize((w, h), Image.Resampling.BOX), channels)


def _affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix ``A`` with ``A @ [p, 1] = q`` for three point pairs (getAffineTransform)."""
    lhs = np.hstack([src, np.ones((3, 1))])  # (3, 3)
    return np.linalg.solve(lhs, dst).T  # (2, 3)


def elastic_transform(x: np.ndarray, c: tuple, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """A random affine warp followed by a smooth random displacement field.

    Simard, Steinkraus & Platt 2003 ("Best practices for convolutional neural networks applied
    to visual document analysis"), in the variant of both generator scripts. Affine: three
    points around the centre (at +-``min(H, W) // 3``) move by U(-affine, affine) pixels each
    and the image is warped accordingly with bilinear interpolation and reflect-101 borders (as
    ``cv2.warpAffine``). Elastic: two fields of U(-1, 1) noise are Gaussian-smoothed (standard
    deviation ``sigma``, truncated at 3 sigma, reflected borders), scaled by ``alpha`` and used
    as row/column displacements with bilinear ``scipy.ndimage.map_coordinates`` (reflect).
    """
    alpha, sigma, affine = c
    h, w, channels = x.shape
    # points in (row, col); the reference used cv2's (x, y) order with the same numbers, which
    # mirrors the triangle on square images (the displacements are i.i.d., so equal in law)
    centre = np.array([h // 2, w // 2], dtype=np.float64)
    half = min(h, w) // 3
    src = np.array([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    dst = src + rng.uniform(-affine, affine, size=src.shape)
    forward = _affine_from_points(src, dst)  # maps source -> destination, like getAffineTransform
    inverse = np.linalg.inv(np.vstack([forward, [0.0, 0.0, 1.0]]))[:2]
    warped = np.stack([
        ndimage.affine_transform(x[..., k], inverse[:, :2], offset=inverse[:, 2], order=1,
                                 mode="mirror")
        for k in range(channels)
    ], axis=-1)

    noise = rng.uniform(-1.0, 1.0, size=(2, h, w))
    if sigma > 0:
        noise = ndimage.gaussian_filter(noise, (0, sigma, sigma), mode="reflect", truncate=3.0)
    dx, dy = noise * alpha  # the reference draws the column field first
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    coords = np.stack([rows + dy, cols + dx])
    out = np.stack([
        ndimage.map_coordinates(warped[..., k], coords, order=1, mode="reflect")
        for k in range(channels)
    ], axis=-1)
    return np.clip(out, 0.0, 1.0)
