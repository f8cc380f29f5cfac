"""The published severity constants of CIFAR-10-C and ImageNet-C, one tuple per severity 1..5.

Read from the two generator scripts of Hendrycks & Dietterich 2019 ("Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations", ICLR, arXiv:1903.12261), repository
``hendrycks/robustness``: ``ImageNet-C/create_c/make_cifar_c.py`` (32x32 images) and
``ImageNet-C/create_c/make_imagenet_c.py`` (224x224 crops). Values are copied as the scripts
write them, including their quirks (noted next to each entry), so that they can be checked line
by line against the source. The meaning of every tuple is given in ``FIELDS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

# What each per-severity entry holds (a scalar when there is one field).
FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "gaussian_noise": ("std",),
    "shot_noise": ("photons",),  # Poisson rate per unit intensity: fewer photons = more noise
    "impulse_noise": ("amount",),  # share of values set to 0 or 1
    "speckle_noise": ("std",),  # multiplicative
    "defocus_blur": ("radius", "alias_blur"),
    "glass_blur": ("sigma", "max_delta", "iterations"),
    "motion_blur": ("radius", "sigma"),  # ImageMagick -motion-blur radius x sigma
    "zoom_blur": ("start", "stop", "step"),  # zoom factors are numpy.arange(start, stop, step)
    "gaussian_blur": ("sigma",),
    "snow": ("loc", "scale", "zoom", "threshold", "blur_radius", "blur_sigma", "image_weight"),
    "frost": ("image_weight", "frost_weight"),
    "fog": ("strength", "wibble_decay"),
    "spatter": ("loc", "scale", "sigma", "threshold", "intensity", "mud"),
    "brightness": ("v_shift",),
    "contrast": ("factor",),
    "saturate": ("s_scale", "s_shift"),
    "jpeg_compression": ("quality",),
    "pixelate": ("factor",),
    "elastic_transform": ("alpha", "sigma", "affine"),  # all in pixels
})

_CIFAR_IMSIZE = 32  # make_cifar_c.py: elastic constants are fractions of IMSIZE = 32
_IMAGENET_IMSIZE = 244  # make_imagenet_c.py writes 244 (its comment: "should have been 224")

CIFAR_CONSTANTS: Mapping[str, tuple[Any, ...]] = MappingProxyType({
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    # radius <= 0.5 keeps only the centre tap: blur then comes from alias_blur alone
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    # not monotone: sigma drops from 0.4 to 0.25 when iterations go from 1 to 2
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    # (6, 2) and (8, 2) are the same blur to 1e-9: taps beyond radius 6 weigh nothing at sigma 2
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    # float arange: (1, 1.06, 0.01) yields 7 factors 1.00..1.06, (1, 1.16, 0.01) 16 up to 1.15
    "zoom_blur": ((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01),
                  (1, 1.26, 0.01)),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1),
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95),
             (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
             (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    "spatter": ((0.62, 0.1, 0.7, 0.7, 0.5, 0),
                (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                (0.65, 0.3, 1, 0.69, 0.5, 0),
                (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    # severities 1-2 desaturate, 3-5 oversaturate: the order is by distortion, not by direction
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
    "jpeg_compression": (80, 65, 58, 50, 40),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    # severity 1 is a pure affine warp (alpha = 0); the affine part shrinks as alpha grows
    "elastic_transform": ((_CIFAR_IMSIZE * 0, _CIFAR_IMSIZE * 0, _CIFAR_IMSIZE * 0.08),
                          (_CIFAR_IMSIZE * 0.05, _CIFAR_IMSIZE * 0.2, _CIFAR_IMSIZE * 0.07),
                          (_CIFAR_IMSIZE * 0.08, _CIFAR_IMSIZE * 0.06, _CIFAR_IMSIZE * 0.06),
                          (_CIFAR_IMSIZE * 0.1, _CIFAR_IMSIZE * 0.04, _CIFAR_IMSIZE * 0.05),
                          (_CIFAR_IMSIZE * 0.1, _CIFAR_IMSIZE * 0.03, _CIFAR_IMSIZE * 0.03)),
})

IMAGENET_CONSTANTS: Mapping[str, tuple[Any, ...]] = MappingProxyType({
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    # iterations are not monotone (2, 1, 3, 2, 2); sigma and max_delta are
    "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
    "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    "zoom_blur": ((1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.02), (1, 1.26, 0.02),
                  (1, 1.31, 0.03)),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "snow": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8),
             (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
             (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
             (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
             (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
    "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
    "fog": ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
    "spatter": ((0.65, 0.3, 4, 0.69, 0.6, 0),
                (0.65, 0.3, 3, 0.68, 0.6, 0),
                (0.65, 0.3, 2, 0.68, 0.5, 0),
                (0.65, 0.3, 1, 0.65, 1.5, 1),
                (0.67, 0.4, 1, 0.65, 1.5, 1)),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
    "jpeg_compression": (25, 18, 15, 10, 7),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    # severities 1-2 are large smooth warps (sigma 171 and 20 px, affine up to 49 px); 3-5 are
    # local ripples (sigma 2.4 px) of growing alpha: distance from clean is not monotone
    "elastic_transform": ((_IMAGENET_IMSIZE * 2, _IMAGENET_IMSIZE * 0.7, _IMAGENET_IMSIZE * 0.1),
                          (_IMAGENET_IMSIZE * 2, _IMAGENET_IMSIZE * 0.08, _IMAGENET_IMSIZE * 0.2),
                          (_IMAGENET_IMSIZE * 0.05, _IMAGENET_IMSIZE * 0.01,
                           _IMAGENET_IMSIZE * 0.02),
                          (_IMAGENET_IMSIZE * 0.07, _IMAGENET_IMSIZE * 0.01,
                           _IMAGENET_IMSIZE * 0.02),
                          (_IMAGENET_IMSIZE * 0.12, _IMAGENET_IMSIZE * 0.01,
                           _IMAGENET_IMSIZE * 0.02)),
})


@dataclass(frozen=True)
class Preset:
    """One generator's constants plus the scale choices its script hard-wires.

    Attributes:
        name: ``"cifar"`` or ``"imagenet"``.
        image_size: The side the constants were tuned for (32 or 224).
        fog_mapsize: Side of the diamond-square height map (32 in the CIFAR script, 256 in the
            ImageNet one); grown to the next power of two when an image is larger.
        frost_rescale: Factor the frost photo is resized by before cropping (the CIFAR script
            shrinks its frost photos to 0.2; ImageNet crops them at full resolution).
        constants: Corruption name -> five per-severity entries.
    """

    name: str
    image_size: int
    fog_mapsize: int
    frost_rescale: float
    constants: Mapping[str, tuple[Any, ...]] = field(repr=False)

    def __call__(self, name: str, severity: int) -> Any:
        """The constant(s) of ``name`` at ``severity`` (1..5)."""
        return self.constants[name][severity - 1]


PRESETS: Mapping[str, Preset] = MappingProxyType({
    "cifar": Preset("cifar", 32, 32, 0.2, CIFAR_CONSTANTS),
    "imagenet": Preset("imagenet", 224, 256, 1.0, IMAGENET_CONSTANTS),
})

# params=None: images whose short side is at most this many pixels use the CIFAR constants
AUTO_CIFAR_MAX_SIDE = 64
