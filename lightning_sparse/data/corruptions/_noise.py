"""Noise corruptions: Gaussian, shot (Poisson), impulse (salt and pepper), speckle.

Every function takes a float image ``(H, W, C)`` in ``[0, 1]``, the severity's constant ``c``,
a ``numpy.random.Generator`` and the :class:`~._params.Preset`, and returns a float image in
``[0, 1]``. Noise is drawn independently for every pixel and channel, as in the reference.
"""

from __future__ import annotations

import numpy as np

from ._params import Preset


def gaussian_noise(x: np.ndarray, c: float, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """Additive zero-mean Gaussian noise of standard deviation ``c``."""
    return np.clip(x + rng.normal(scale=c, size=x.shape), 0.0, 1.0)


def shot_noise(x: np.ndarray, c: float, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """Poisson photon noise: ``Poisson(x * c) / c`` with ``c`` photons at full intensity."""
    return np.clip(rng.poisson(x * c) / c, 0.0, 1.0)


def impulse_noise(x: np.ndarray, c: float, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """Salt and pepper: each value is replaced with probability ``c``, by 1 or 0 with equal odds.

    This is ``skimage.util.random_noise(mode="s&p", amount=c)`` of current scikit-image; the
    2018 release the reference ran drew ``ceil(c * size / 2)`` coordinates per colour with
    ``randint(0, dim - 1)``, which never hit the last row, column or channel.
    """
    flipped = rng.random(x.shape) < c
    salt = rng.random(x.shape) < 0.5
    out = x.copy()
    out[flipped & salt] = 1.0
    out[flipped & ~salt] = 0.0
    return out


def speckle_noise(x: np.ndarray, c: float, rng: np.random.Generator, preset: Preset) -> np.ndarray:
    """Multiplicative Gaussian noise: ``x + x * N(0, c^2)``."""
    return np.clip(x + x * rng.normal(scale=c, size=x.shape), 0.0, 1.0)
