"""Frame and audio transforms of audio-visual speech recognition: grey frames, mouth crops, normalisation.

The visual front end of AVSR models (a 3D-conv + ResNet-18 stem) reads grey mouth regions at
25 fps. The steps here take decoded frames to that input, torch and numpy only:

1. :func:`to_grayscale`: RGB ``(T, H, W, 3)`` -> grey float ``(T, H, W)`` on the 0-255 scale
   (ITU-R BT.601 luma, the weights of ``torchvision.transforms.Grayscale``).
2. A region of interest, one of: :func:`crop_mouth`, a square of fixed size around the mouth
   centre given by per-frame facial landmarks (:func:`mouth_centers`: the mean of the mouth
   points, missing frames interpolated, smoothed over a window of frames, as the
   ``preparation`` step of auto_avsr, which also aligns every frame to a mean face first: that
   similarity warp is left out here); :func:`crop_box`, a fixed box; or the whole frame
   (clips that are mouth crops already).
3. :func:`resize_frames` to the region size (auto_avsr's mouth crops are 96 x 96).
4. :class:`AVSRVideoTransform`: a centre crop (evaluation) or a random crop (training), as
   auto_avsr's ``VideoTransform`` (88 x 88 of its 96 x 96 crops), an optional horizontal flip
   and time mask for training, then :func:`normalize_frames` (``/ 255``, then mean 0.421 and
   standard deviation 0.165, auto_avsr's statistics of LRS3's grey mouth crops).

Audio and video share one clock: 16 kHz audio and 25 fps video give
:data:`AUDIO_SAMPLES_PER_FRAME` = 640 samples per frame; :func:`align_audio` trims or
zero-pads a waveform to exactly 640 samples per video frame (auto_avsr's ``cut_or_pad``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_sparse._validation import check_bool, check_int, check_number

__all__ = [
    "AUDIO_SAMPLES_PER_FRAME",
    "AVSR_MEAN",
    "AVSR_STD",
    "AVSRVideoTransform",
    "MOUTH_POINTS",
    "align_audio",
    "check_box",
    "check_size",
    "crop_box",
    "crop_mouth",
    "landmark_frames",
    "mouth_centers",
    "normalize_frames",
    "resize_frames",
    "to_grayscale",
]

AVSR_MEAN = 0.421
"""Mean of auto_avsr's grey LRS3 mouth crops, on the 0-1 scale."""
AVSR_STD = 0.165
"""Standard deviation of auto_avsr's grey LRS3 mouth crops, on the 0-1 scale."""
AUDIO_SAMPLES_PER_FRAME = 640
"""Audio samples per video frame: 16000 Hz / 25 fps."""
MOUTH_POINTS = slice(48, 68)
"""The mouth points (outer and inner lip contours) of the 68-point facial landmark layout."""

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as torchvision's rgb_to_grayscale


def check_size(name: str, value: Any, allow_none: bool = False) -> tuple[int, int] | None:
    """A frame size as ``(height, width)``: a positive int (a square) or two positive ints.

    Examples:
        >>> check_size("crop_size", 88), check_size("image_size", [50, 100])
        ((88, 88), (50, 100))
        >>> check_size("crop_size", 0)
        Traceback (most recent call last):
        ...
        ValueError: `crop_size` must be a positive int or (height, width) of positive ints, got 0.
    """
    if value is None and allow_none:
        return None

    def positive(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1

    if positive(value):
        return int(value), int(value)
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2 and all(map(positive, value)):
        return int(value[0]), int(value[1])
    extra = " or None" if allow_none else ""
    raise ValueError(f"`{name}` must be a positive int or (height, width) of positive ints{extra}, got {value!r}.")


def check_box(name: str, value: Any, allow_none: bool = False) -> tuple[int, int, int, int] | None:
    """A ``(top, left, height, width)`` box of integers with positive height and width.

    Examples:
        >>> check_box("crop_box", (160, 110, 0, 112))
        Traceback (most recent call last):
        ...
        ValueError: `crop_box` must be (top, left, height, width) integers with height, width >= 1, got (160, 110, 0, 112).
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 4 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    if not ok or value[2] < 1 or value[3] < 1:
        extra = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be (top, left, height, width) integers with height, width >= 1{extra}, "
                         f"got {value!r}.")
    return int(value[0]), int(value[1]), int(value[2]), int(value[3])


def to_grayscale(frames: np.ndarray | Tensor) -> Tensor:
    """Grey frames float32 ``(T, H, W)`` on the input's scale (0-255 for ``uint8``).

    ``(T, H, W, 3)`` RGB is weighted by the BT.601 luma coefficients (0.299, 0.587, 0.114);
    ``(T, H, W)`` and ``(T, H, W, 1)`` are already grey.

    Raises:
        ValueError: If ``frames`` is not ``(T, H, W)``, ``(T, H, W, 1)`` or ``(T, H, W, 3)``.

    Examples:
        >>> rgb = np.zeros((2, 4, 4, 3), np.uint8); rgb[..., 1] = 100
        >>> to_grayscale(rgb)[0, 0, 0].item()
        58.70000076293945
    """
    x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, Tensor) else frames).float()
    if x.ndim == 3:
        return x
    if x.ndim == 4 and x.shape[-1] == 1:
        return x[..., 0]
    if x.ndim == 4 and x.shape[-1] == 3:
        weights = torch.tensor(_LUMA, dtype=torch.float32)
        return (x * weights).sum(-1)
    raise ValueError(f"`frames` must be (T, H, W), (T, H, W, 1) or (T, H, W, 3), got shape {tuple(x.shape)}.")


def _interpolate_missing(values: np.ndarray) -> np.ndarray:
    """Rows of NaN filled by linear interpolation between known rows; the ends repeat the nearest."""
    known = np.flatnonzero(~np.isnan(values).any(axis=1))
    if len(known) == len(values):
        return values
    steps = np.arange(len(values))
    return np.stack([np.interp(steps, known, values[known, k]) for k in range(values.shape[1])], axis=1)


def landmark_frames(landmarks: Any, where: str = "`landmarks`") -> list[np.ndarray | None]:
    """Per-frame ``(K, 2)`` float64 point arrays; ``None`` for a frame without landmarks (or all NaN).

    Raises:
        ValueError: If a frame does not hold ``(K, 2)`` points (``where`` names the source).

    Examples:
        >>> [None if f is None else f.shape for f in landmark_frames([np.zeros((3, 2)), None])]
        [(3, 2), None]
    """
    frames: list[np.ndarray | None] = []
    for t, frame in enumerate(landmarks):
        if frame is None:
            frames.append(None)
            continue
        frame = np.asarray(frame, dtype=np.float64)
        if frame.ndim != 2 or frame.shape[1] != 2:
            raise ValueError(f"{where} must hold (K, 2) (x, y) points per frame, got shape {frame.shape} at frame {t}.")
        frames.append(None if np.isnan(frame).all() else frame)
    return frames


def mouth_centers(landmarks: Sequence[Any] | np.ndarray, window: int = 12,
                  points: slice | Sequence[int] | None = None) -> np.ndarray:
    """The mouth centre ``(x, y)`` of every frame from facial landmarks, smoothed over frames.

    Per frame, the centre is the mean of the mouth points: points 48-67 of the 68-point layout
    (:data:`MOUTH_POINTS`), or every given point for other layouts (a few mouth points). Frames
    without landmarks (``None`` or NaN) take the centre interpolated linearly between the nearest
    frames that have them (the first and last known centres extend to the ends). The centres
    are then averaged over a window of ``window + 1`` frames centred on each frame, shrunk
    symmetrically at the ends (auto_avsr's ``window_margin=12``), which steadies the crop
    against landmark jitter.

    Args:
        landmarks: ``(T, K, 2)`` array of ``(x, y)`` pixel coordinates, or a length-``T`` list of
            ``(K, 2)`` arrays or ``None``.
        window: Frames averaged around each frame (0: no smoothing).
        points: Which of the ``K`` points are the mouth (default: 48-67 when ``K == 68``, else all).

    Returns:
        float64 ``(T, 2)``: ``(x, y)`` per frame.

    Raises:
        ValueError: If no frame has landmarks or they are not ``(K, 2)`` coordinates.

    Examples:
        >>> pts = np.zeros((5, 68, 2)); pts[:, 48:68] = [[10.0, 20.0]]
        >>> pts[:, 48:68, 0] += np.arange(5)[:, None]  # the mouth moves right 1 px per frame
        >>> mouth_centers(pts, window=0)[:, 0].tolist()
        [10.0, 11.0, 12.0, 13.0, 14.0]
        >>> mouth_centers([None, np.array([[4.0, 2.0]]), None, np.array([[8.0, 2.0]])], window=0)[:, 0].tolist()
        [4.0, 4.0, 6.0, 8.0]
    """
    check_int("window", window, 0)
    rows = []
    for frame in landmark_frames(landmarks):
        if frame is None:
            rows.append(None)
            continue
        chosen = frame[points] if points is not None else (frame[MOUTH_POINTS] if len(frame) == 68 else frame)
        rows.append(np.asarray(chosen).reshape(-1, 2).mean(axis=0))
    centers = np.array([[np.nan, np.nan] if r is None else r for r in rows], dtype=np.float64).reshape(-1, 2)
    if len(centers) == 0 or np.isnan(centers).any(axis=1).all():
        raise ValueError("`landmarks` must give the mouth in at least one frame, got none.")
    centers = _interpolate_missing(centers)
    if window == 0:
        return centers
    half, n = window // 2, len(centers)
    sums = np.concatenate([np.zeros((1, 2)), np.cumsum(centers, axis=0)])
    margins = np.minimum(half, np.minimum(np.arange(n), n - 1 - np.arange(n)))
    lo, hi = np.arange(n) - margins, np.arange(n) + margins + 1
    return (sums[hi] - sums[lo]) / (hi - lo)[:, None]


def _crop(frames: Tensor, tops: Sequence[int], lefts: Sequence[int], height: int, width: int) -> Tensor:
    """Per-frame crops of ``height x width`` at ``(tops[t], lefts[t])``, zero outside the frame."""
    t, h, w = frames.shape
    out = frames.new_zeros((t, height, width))
    for k in range(t):
        top, left = int(tops[k]), int(lefts[k])
        y0, y1, x0, x1 = max(top, 0), min(top + height, h), max(left, 0), min(left + width, w)
        if y0 < y1 and x0 < x1:
            out[k, y0 - top : y1 - top, x0 - left : x1 - left] = frames[k, y0:y1, x0:x1]
    return out


def crop_mouth(frames: Tensor, centers: np.ndarray, size: int | Sequence[int] = 96) -> Tensor:
    """Crop a ``size`` region centred on each frame's mouth centre (zero where it leaves the frame).

    Args:
        frames: Grey frames ``(T, H, W)``.
        centers: ``(T, 2)`` ``(x, y)`` centres (:func:`mouth_centers`).
        size: Side of the square, or ``(height, width)``, in source pixels.

    Raises:
        ValueError: If ``centers`` does not have one row per frame, or ``size`` is not a size.

    Examples:
        >>> frames = torch.zeros(2, 20, 20); frames[:, 10, 12] = 1.0
        >>> out = crop_mouth(frames, np.array([[12.0, 10.0], [12.0, 10.0]]), size=4)
        >>> out.shape, out[0, 2, 2].item()
        (torch.Size([2, 4, 4]), 1.0)
    """
    height, width = check_size("size", size)
    centers = np.asarray(centers, dtype=np.float64)
    if centers.shape != (frames.shape[0], 2):
        raise ValueError(f"`centers` must be ({frames.shape[0]}, 2), one (x, y) per frame, got {centers.shape}.")
    tops = np.round(centers[:, 1] - height / 2).astype(np.int64)
    lefts = np.round(centers[:, 0] - width / 2).astype(np.int64)
    return _crop(frames, tops, lefts, height, width)


def crop_box(frames: Tensor, box: Sequence[int]) -> Tensor:
    """The same ``(top, left, height, width)`` box of every frame (zero where it leaves the frame).

    Raises:
        ValueError: If ``box`` is not four integers with positive height and width.

    Examples:
        >>> crop_box(torch.arange(16.0).view(1, 4, 4), (1, 2, 2, 2)).tolist()
        [[[6.0, 7.0], [10.0, 11.0]]]
    """
    top, left, height, width = check_box("crop_box", box)
    n = frames.shape[0]
    return _crop(frames, [top] * n, [left] * n, height, width)


def resize_frames(frames: Tensor, size: int | Sequence[int]) -> Tensor:
    """Frames ``(T, H, W)`` resized to ``size`` (bilinear, antialiased when shrinking); a no-op at that size.

    Examples:
        >>> resize_frames(torch.ones(3, 50, 100), (25, 50)).shape
        torch.Size([3, 25, 50])
    """
    height, width = check_size("size", size)
    if tuple(frames.shape[-2:]) == (height, width) or frames.shape[0] == 0:
        return frames
    out = F.interpolate(frames[:, None].float(), size=(height, width), mode="bilinear", align_corners=False,
                        antialias=True)
    return out[:, 0]


def normalize_frames(frames: Tensor, mean: float = AVSR_MEAN, std: float = AVSR_STD) -> Tensor:
    """``(frames / 255 - mean) / std``: 0-255 frames to auto_avsr's normalised input.

    Examples:
        >>> [round(v, 4) for v in normalize_frames(torch.tensor([0.0, 255.0])).tolist()]
        [-2.5515, 3.5091]
    """
    return (frames.float() / 255.0 - mean) / std


def align_audio(audio: Tensor, num_frames: int, samples_per_frame: int = AUDIO_SAMPLES_PER_FRAME) -> Tensor:
    """Trim or zero-pad ``audio`` ``(N,)`` at the end to ``num_frames * samples_per_frame`` samples.

    Examples:
        >>> align_audio(torch.ones(1500), 2).shape, align_audio(torch.ones(1000), 2)[-1].item()
        (torch.Size([1280]), 0.0)
    """
    target = int(num_frames) * int(samples_per_frame)
    if audio.shape[0] >= target:
        return audio[:target]
    return F.pad(audio, (0, target - audio.shape[0]))


class AVSRVideoTransform:
    """Grey frames ``(T, H, W)`` (0-255) -> the model's input float32 ``(T, h, w)``.

    Resize to ``image_size`` (when given and different), crop ``crop_size`` (the centre; with
    ``train``, a position drawn uniformly, the same for every frame), with ``train`` optionally
    flip horizontally (probability 0.5) and mask stretches of frames, then
    :func:`normalize_frames`. auto_avsr's ``VideoTransform`` is ``image_size=None`` (its clips
    are 96 x 96 crops), ``crop_size=88``, ``time_mask=True`` in training, no flip; Ma et al.
    2021 (conformer AVSR) also flip. RGB frames are converted by :func:`to_grayscale` first.

    The time mask is auto_avsr's ``AdaptiveTimeMask(10, 25)``: per started second (25 frames)
    one stretch of 0-9 frames at a uniform position is set to black before normalising.

    Random draws use ``generator`` when given, else torch's global generator (seeded per
    DataLoader worker).

    Args:
        crop_size: Side or ``(height, width)`` of the crop; None: no crop.
        image_size: Resize to this size first; None: keep the frames' size.
        train: Random crop (and flip / time mask when enabled) instead of the centre crop.
        flip: With ``train``, flip horizontally with probability 0.5.
        time_mask: With ``train``, mask stretches of frames (see above).
        mean: Mean subtracted after ``/ 255``.
        std: Standard deviation divided by after subtracting ``mean``.

    Raises:
        ValueError: If a size is not a positive size, a flag not a bool, ``std`` not positive, or
            ``crop_size`` is larger than ``image_size``.

    Examples:
        >>> clip = torch.full((4, 96, 96), 255.0)
        >>> x = AVSRVideoTransform(crop_size=88)(clip)
        >>> tuple(x.shape), round(x[0, 0, 0].item(), 4)
        ((4, 88, 88), 3.5091)
        >>> AVSRVideoTransform(crop_size=88, image_size=(50, 100))
        Traceback (most recent call last):
        ...
        ValueError: `crop_size` must fit inside `image_size` (50, 100), got (88, 88).
    """

    def __init__(self, crop_size: int | Sequence[int] | None = 88, image_size: int | Sequence[int] | None = None,
                 train: bool = False, flip: bool = False, time_mask: bool = False, mean: float = AVSR_MEAN,
                 std: float = AVSR_STD) -> None:
        self.crop_size = check_size("crop_size", crop_size, allow_none=True)
        self.image_size = check_size("image_size", image_size, allow_none=True)
        if self.crop_size is not None and self.image_size is not None and (
                self.crop_size[0] > self.image_size[0] or self.crop_size[1] > self.image_size[1]):
            raise ValueError(f"`crop_size` must fit inside `image_size` {self.image_size}, got {self.crop_size}.")
        self.train, self.flip, self.time_mask = (check_bool("train", train), check_bool("flip", flip),
                                                 check_bool("time_mask", time_mask))
        self.mean = float(check_number("mean", mean))
        self.std = float(check_number("std", std, 0.0, low_open=True))

    def __call__(self, frames: np.ndarray | Tensor, generator: torch.Generator | None = None) -> Tensor:
        x = to_grayscale(frames)
        if self.image_size is not None:
            x = resize_frames(x, self.image_size)
        if self.crop_size is not None:
            (h, w), (ch, cw) = x.shape[-2:], self.crop_size
            if ch > h or cw > w:
                raise ValueError(f"`crop_size` {self.crop_size} does not fit frames of {h} x {w}.")
            if self.train:
                top = int(torch.randint(0, h - ch + 1, (), generator=generator))
                left = int(torch.randint(0, w - cw + 1, (), generator=generator))
            else:
                top, left = (h - ch) // 2, (w - cw) // 2
            x = x[:, top : top + ch, left : left + cw]
        if self.train and self.flip and bool(torch.rand((), generator=generator) < 0.5):
            x = x.flip(-1)
        if self.train and self.time_mask and x.shape[0] > 0:
            x = x.clone()
            n = x.shape[0]
            for _ in range(math.ceil(n / 25)):
                span = int(torch.randint(0, 10, (), generator=generator))
                if span == 0 or span >= n:
                    continue
                start = int(torch.randint(0, n - span, (), generator=generator))
                x[start : start + span] = 0.0
        return normalize_frames(x, self.mean, self.std).contiguous()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(crop_size={self.crop_size}, image_size={self.image_size}, train={self.train}, "
                f"flip={self.flip}, time_mask={self.time_mask}, mean={self.mean}, std={self.std})")
