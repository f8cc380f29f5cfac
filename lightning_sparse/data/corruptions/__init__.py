"""Common corruptions of CIFAR-10-C and ImageNet-C, in numpy/scipy/PIL.

Hendrycks & Dietterich 2019, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR, arXiv:1903.12261). The 15 benchmark corruptions (:data:`CORRUPTIONS`:
noise, blur, weather, digital) and the 4 held-out ones (:data:`EXTRA_CORRUPTIONS`), each at
severities 1-5, with the constants of the published generator scripts
(``ImageNet-C/create_c/make_cifar_c.py`` and ``make_imagenet_c.py`` in ``hendrycks/robustness``;
see :mod:`._params`, which keeps them line by line).

* :func:`corrupt` ``(image, name, severity, seed=None, params=None)`` on ``uint8`` arrays
  ``(H, W, 3)``, ``(H, W, 1)`` or ``(H, W)``; deterministic given ``seed`` (a local
  ``numpy.random.default_rng``, never global state).
* :class:`Corrupt`: the same as a dataset transform (PIL images, arrays, tensors), with
  per-call or per-item seeds; :class:`CorruptedDataset`: a fixed corrupted copy of a dataset.
* ``params``: ``"cifar"`` (tuned for 32x32), ``"imagenet"`` (tuned for 224x224), or ``None``:
  CIFAR when the short side is at most 64 pixels, else ImageNet.

The CIFAR script is not a rescaled ImageNet script: besides smaller constants it builds fog
from a 32x32 fractal map (ImageNet: 256x256), shrinks its frost photos to 0.2 before taking
32x32 crops (ImageNet: full-resolution 224x224 crops), zooms by at most 1.06-1.26 in steps of
0.01 (ImageNet: 1.11-1.31, steps up to 0.03), shuffles glass blur by one pixel at every
severity (ImageNet: 1-4 pixels), and expresses elastic constants as fractions of 32 (ImageNet:
of 244, a typo for 224 that the script keeps and so do we). Several published severity scales
are not monotone in every statistic (glass blur, elastic transform, spatter and saturate; see
the comments in :mod:`._params`); the values are kept as published.

Compared in mean absolute change from the clean image on real 224-pixel photos, the other 14
benchmark corruptions were found within about 4% of an independent implementation, and
``elastic_transform`` equal to the published generator (the independent implementation changed
that algorithm, so it is no reference for it).

Deviations from the published generators:

* No ImageMagick, OpenCV or scikit-image. Each call they made is re-implemented with the same
  kernel, rounding and border rule (:mod:`._ops`): ImageMagick's motion blur (one-sided
  Gaussian of ``2 * ceil(radius) + 1`` taps along the angle, edge pixels replicated), OpenCV's
  ``filter2D``/``GaussianBlur``/``blur`` (reflect-101 borders), ``resize`` (``INTER_LINEAR``),
  ``Canny``, ``distanceTransform`` (the 16-bit fixed-point 5x5 chamfer metric of the OpenCV 3
  the reference ran) and ``equalizeHist`` (:mod:`._spatter`), scikit-image's ``gaussian`` and
  HSV conversions. Checked against OpenCV 4/5 and scikit-image 0.26 while writing: equal up to
  float rounding, except that ``warpAffine``'s 5-bit fixed-point interpolation weights become
  floats and OpenCV 5's float chamfer costs differ from OpenCV 3's fixed-point ones in the
  last bits. ImageMagick was not available: motion blur follows its source
  (``MagickCore/effect.c``) and is tested against that definition.
* Frost uses the published frost photographs, read from the files of the ``imagecorruptions``
  distribution (a dependency; its code is never imported) and converted to RGB as the scripts
  do; they are enlarged only when they would not cover the image (:mod:`._frost`). Only when
  those files are not installed does it fall back to procedurally generated ice textures,
  which are darker and change images by only about 0.55-0.7 of the published amount (frost
  numbers made with the fallback are not comparable with published ones;
  ``_frost.frost_source()`` says which is in use). With the photos, the mean absolute change
  is within 2% of the published formula at every severity (CIFAR-10 and 224-pixel photos;
  ``tests/data/test_frost.py``).
* Glass blur reproduces what the reference code does rather than what it says: its tuple
  "swap" of two numpy views copies the neighbour into the scanned pixel and leaves the
  neighbour unchanged. The sequential scan is computed exactly without Python loops
  (pointer doubling; tested against a literal loop).
* Impulse noise replaces each value with probability ``amount`` (current scikit-image); the
  2018 scikit-image release drew coordinates that never reached the last row, column or
  colour channel.
* Random numbers come from ``numpy.random.Generator`` (PCG64), not the legacy global state:
  same distributions, different draws, so outputs are not bit-identical to published files.
* The final conversion to ``uint8`` rounds to nearest; the reference truncated with
  ``np.uint8`` (a -0.5 bias that also turns 254.9999 into 254). Intermediate 8-bit steps of the
  reference (glass blur between its blurs, the snow layer, spatter's maps) are kept; the
  ImageMagick round trips through 8-bit PNG (motion blur, the snow layer after its blur) are
  not.
* Zooms (zoom blur, snow) compute only the kept window of ``scipy.ndimage.zoom(order=1)``;
  where scipy's float rounding put the last position just outside the input and output 0 for
  a whole edge row or column, positions are clamped instead.
* ImageNet-C images were stored as JPEG (quality 85) after corruption; no such re-encoding is
  applied here.
* Any image size works: scan ranges, crops and zooms use the image's own height and width
  (the scripts hard-wired 32 or 224 and square images), fog's map and frost's photo grow to
  cover the image. Constants stay the absolute pixel values tuned for 32 or 224.
* Grey images: channel-independent corruptions run on the single channel; snow's grey level
  is the image; frost and spatter blend the luma of their colours; saturate goes through RGB
  and back to luma.

Examples:
    >>> import numpy as np
    >>> clean = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    >>> [corrupt(clean, name, 3, seed=0).shape for name in ("snow", "pixelate")]
    [(32, 32, 3), (32, 32, 3)]
    >>> len(CORRUPTIONS), len(EXTRA_CORRUPTIONS), ALL_CORRUPTIONS[:2]
    (15, 4, ('gaussian_noise', 'shot_noise'))
"""

from lightning_sparse.data.corruptions._corrupt import (
    corruption_revision,
    ALL_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    PARAMS,
    corrupt,
)
from lightning_sparse.data.corruptions._dataset import CorruptedDataset
from lightning_sparse.data.corruptions._transform import Corrupt

__all__ = [
    "corruption_revision",
    "ALL_CORRUPTIONS",
    "CORRUPTIONS",
    "EXTRA_CORRUPTIONS",
    "PARAMS",
    "Corrupt",
    "CorruptedDataset",
    "corrupt",
]
