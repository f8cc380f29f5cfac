"""Common corruptions of videos: every image corruption applied over frames, plus temporal ones.

The video robustness benchmarks extend ImageNet-C (Hendrycks & Dietterich 2019, arXiv:1903.12261)
to clips and add corruptions of time and of the codec:

* Yi et al. 2021, "Benchmarking the Robustness of Spatial-Temporal Models Against Corruptions"
  (NeurIPS Datasets and Benchmarks, arXiv:2110.06513): Mini Kinetics-C and Mini SSV2-C, with
  frame-rate conversion, H.264/H.265 compression (CRF and bitrate) and bit errors;
* Schiappa et al. 2022, "A Large-scale Robustness Analysis of Video Action Recognition Models"
  (CVPR 2023, arXiv:2207.01398): UCF101-P, HMDB51-P, Kinetics400-P, SSv2-P, with noise, blur,
  digital, camera-motion and temporal perturbations (freezing, reversal, jumbling, box
  jumbling).

Here:

* Spatial corruptions (:data:`SPATIAL_CORRUPTIONS`): the 19 image corruptions of
  :mod:`lightning_sparse.data.corruptions`, frame by frame. ``temporal="consistent"`` (default)
  corrupts every frame with the same seed, so the random draws (the noise field, snow layout,
  frost crop, glass-blur shuffles, elastic field) are the same in every frame and stay put like
  a fixed camera defect: frame ``t`` equals ``corrupt(clip[t], name, severity, seed)``.
  ``temporal="independent"`` draws fresh randomness per frame (sensor noise that flickers), as
  Yi et al.'s generator does for its per-frame noise and rain; their fog, like ``"consistent"``,
  lays one random map over the whole clip.
* Temporal corruptions (:data:`TEMPORAL_CORRUPTIONS`), all keeping ``T``:

  - ``frame_drop``: a share ``0.12 * severity`` of the frames (never the first) is dropped and
    the previous shown frame repeated: Schiappa et al.'s "freezing", where their released
    generation script repeats the previous frame with probability ``0.12 * severity``.
    Deviation: the count is exact, ``round(share * (T - 1))``, and the dropped sets are nested
    across severities for a given seed, so severity is monotone per clip.
  - ``frame_rate``: the clip is converted to a lower frame rate and back, nearest frame each
    way (:func:`resample_frame_rate`): factors 20/30, 16/30, 12/30, 9/30, 6/30 of the source
    rate, Yi et al.'s Mini Kinetics-C targets of 20, 16, 12, 9 and 6 fps for 30 fps videos.
  - ``video_compression``: re-encoding with H.264 (libx264, through PyAV) at CRF 23, 30, 37, 44,
    51, the ``h264_crf`` constants of Yi et al.'s generator; decoded back to RGB (which also
    applies 4:2:0 chroma subsampling). Deviations: the clip, not the whole video, is encoded, at
    25 fps with x264's ``medium`` preset in one thread (deterministic); where an FFmpeg build
    lacks libx264 the MPEG-4 Part 2 encoder is used with a fixed quantiser of 4, 8, 14, 22, 31
    (our choice, same direction).

:data:`VIDEO_CORRUPTIONS` is the default evaluation set: the 15 ImageNet-C benchmark
corruptions and the 3 temporal ones; :data:`ALL_VIDEO_CORRUPTIONS` adds the 4 held-out image
corruptions. :class:`CorruptedVideoDataset` corrupts a dataset's raw clips on the fly with a
seed fixed per item.

Examples:
    >>> clip = np.random.default_rng(0).integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    >>> out = corrupt_video(clip, "gaussian_noise", severity=3, seed=0)
    >>> out.shape, out.dtype
    ((8, 32, 32, 3), dtype('uint8'))
    >>> len(VIDEO_CORRUPTIONS), len(ALL_VIDEO_CORRUPTIONS), TEMPORAL_CORRUPTIONS
    (18, 22, ('frame_drop', 'frame_rate', 'video_compression'))
"""

from __future__ import annotations

import io
from typing import Any, Callable

import numpy as np
from torch.utils.data import Dataset

from lightning_sparse.data.corruptions import ALL_CORRUPTIONS, CORRUPTIONS, PARAMS, corrupt

__all__ = [
    "ALL_VIDEO_CORRUPTIONS",
    "SPATIAL_CORRUPTIONS",
    "TEMPORAL_CORRUPTIONS",
    "TEMPORAL_MODES",
    "VIDEO_CORRUPTIONS",
    "CorruptedVideoDataset",
    "compress_video",
    "corrupt_video",
    "drop_frames",
    "resample_frame_rate",
]

SPATIAL_CORRUPTIONS: tuple[str, ...] = tuple(ALL_CORRUPTIONS)
TEMPORAL_CORRUPTIONS: tuple[str, ...] = ("frame_drop", "frame_rate", "video_compression")
VIDEO_CORRUPTIONS: tuple[str, ...] = tuple(CORRUPTIONS) + TEMPORAL_CORRUPTIONS
ALL_VIDEO_CORRUPTIONS: tuple[str, ...] = SPATIAL_CORRUPTIONS + TEMPORAL_CORRUPTIONS
TEMPORAL_MODES: tuple[str, ...] = ("consistent", "independent")

# severity 1..5; sources in the module docstring
FRAME_DROP_SHARES: tuple[float, ...] = (0.12, 0.24, 0.36, 0.48, 0.60)  # Schiappa et al., freezing
FRAME_RATE_FACTORS: tuple[float, ...] = (20 / 30, 16 / 30, 12 / 30, 9 / 30, 6 / 30)  # Yi et al.
H264_CRF: tuple[int, ...] = (23, 30, 37, 44, 51)  # Yi et al., h264_crf
MPEG4_QSCALE: tuple[int, ...] = (4, 8, 14, 22, 31)  # fallback without libx264 (ours)
CODECS: tuple[str, ...] = ("h264", "mpeg4")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_clip(clip: object) -> np.ndarray:
    if not isinstance(clip, np.ndarray) or clip.dtype != np.uint8:
        kind = f"dtype {clip.dtype}" if isinstance(clip, np.ndarray) else type(clip).__name__
        raise ValueError(f"`clip` must be a uint8 numpy array (T, H, W, C); got {kind}.")
    if clip.ndim != 4 or clip.shape[0] < 1 or clip.shape[3] not in (1, 3):
        raise ValueError(f"`clip` must have shape (T, H, W, C) with T >= 1 and C in (1, 3); got {clip.shape}.")
    return clip


def _check_params(params: object) -> None:
    if params is not None and params not in PARAMS:
        raise ValueError(f"`params` must be None (by frame size), {' or '.join(map(repr, PARAMS))}; got {params!r}.")


def drop_frames(clip: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Drop ``round(share * (T - 1))`` random frames (never the first), repeating the previous one.

    The dropped frames are the first of a random permutation of ``1..T-1``, so for one ``rng``
    state a larger share drops a superset. Runs of dropped frames freeze on the last kept frame.

    Examples:
        >>> clip = np.arange(6, dtype=np.uint8).reshape(6, 1, 1, 1)
        >>> drop_frames(clip, 0.4, np.random.default_rng(0)).ravel().tolist()
        [0, 1, 2, 2, 4, 4]
    """
    t = clip.shape[0]
    count = int(np.floor(share * (t - 1) + 0.5))
    dropped = np.zeros(t, dtype=bool)
    dropped[1 + rng.permutation(t - 1)[:count]] = True
    source = np.arange(t)
    for i in range(1, t):
        if dropped[i]:
            source[i] = source[i - 1]
    return clip[source]


def _nearest(count: int, ratio: float, limit: int) -> np.ndarray:
    return np.minimum(np.floor(np.arange(count) * ratio + 0.5).astype(np.int64), limit - 1)


def resample_frame_rate(clip: np.ndarray, factor: float, keep_duration: bool = True) -> np.ndarray:
    """Convert a clip to ``factor`` times its frame rate with nearest-frame selection.

    With ``keep_duration`` (the ``frame_rate`` corruption) the clip is converted and then shown
    again at its own rate: ``T`` frames covering the same time, where ``factor < 1`` repeats the
    surviving frames (information lost) and ``factor >= 1`` gives the clip back. Without it, the
    converted clip is returned: ``round(T * factor)`` frames (at least 1), frames dropped for
    ``factor < 1`` and repeated for ``factor > 1``.

    Examples:
        >>> clip = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1)
        >>> resample_frame_rate(clip, 0.5).ravel().tolist()
        [0, 2, 2, 4, 4, 6, 6, 8, 8, 8]
        >>> resample_frame_rate(clip, 0.5, keep_duration=False).ravel().tolist()
        [0, 2, 4, 6, 8]
    """
    if not factor > 0:
        raise ValueError(f"`factor` must be positive; got {factor!r}.")
    t = clip.shape[0]
    low = _nearest(max(1, int(np.floor(t * factor + 0.5))), 1.0 / factor, t)  # converted -> source
    if not keep_duration:
        return clip[low]
    return clip[low[_nearest(t, factor, len(low))]]  # shown frame k -> converted frame -> source


def compress_video(clip: np.ndarray, quality: int, codec: str = "h264", fps: int = 25) -> np.ndarray:
    """Encode a clip with a lossy codec in memory (PyAV) and decode it back.

    Args:
        clip: ``uint8`` ``(T, H, W, 3)`` (grey ``C = 1`` is encoded as RGB and returned as grey).
        quality: ``"h264"``: x264's CRF, 0..51 (higher = worse); ``"mpeg4"``: the fixed
            quantiser, 1..31.
        codec: ``"h264"`` (libx264, ``medium`` preset) or ``"mpeg4"`` (MPEG-4 Part 2).
        fps: Frame rate stated to the encoder (rate control depends on it).

    Returns:
        The decoded clip, same shape and dtype. Odd sizes are padded by edge replication for
        the 4:2:0 encoders and cropped back. Single-threaded, hence deterministic.

    Raises:
        ValueError: If ``codec`` or ``quality`` is not allowed, or the codec is not in this
            FFmpeg build.

    Examples:
        >>> clip = np.full((4, 16, 16, 3), 100, dtype=np.uint8)
        >>> out = compress_video(clip, 23)
        >>> out.shape, int(np.abs(out.astype(int) - 100).max()) <= 2
        ((4, 16, 16, 3), True)
    """
    import av

    if codec not in CODECS:
        raise ValueError(f"`codec` must be one of {', '.join(CODECS)}; got {codec!r}.")
    low, high = (0, 51) if codec == "h264" else (1, 31)
    if not _is_int(quality) or not low <= quality <= high:
        raise ValueError(f"`quality` for {codec} must be an integer in {low}..{high}; got {quality!r}.")
    encoder = "libx264" if codec == "h264" else "mpeg4"
    if encoder not in av.codecs_available:
        raise ValueError(f"`codec` {codec!r} needs the {encoder} encoder, which this FFmpeg build lacks.")
    clip = _check_clip(clip)
    t, h, w, c = clip.shape
    rgb = np.repeat(clip, 3, axis=3) if c == 1 else clip
    rgb = np.pad(rgb, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")  # 4:2:0 needs even sizes
    if codec == "h264":
        options = {"crf": str(quality), "preset": "medium"}
    else:
        options = {"qmin": str(quality), "qmax": str(quality)}
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream(encoder, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = rgb.shape[2], rgb.shape[1], "yuv420p"
        stream.codec_context.thread_count = 1
        for frame in rgb:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        out.mux(stream.encode())
    buffer.seek(0)
    with av.open(buffer) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == t, (len(decoded), t)
    out_clip = np.stack(decoded)[:, :h, :w]  # (T, H, W, 3)
    if c == 1:
        out_clip = np.round(out_clip.astype(np.float32).mean(axis=3, keepdims=True)).astype(np.uint8)
    return out_clip


def _default_codec() -> str:
    import av

    return "h264" if "libx264" in av.codecs_available else "mpeg4"


def _frame_seeds(seed: int | np.random.Generator | None, t: int, temporal: str) -> list[int | None]:
    if isinstance(seed, np.random.Generator):
        seed = int(seed.integers(0, 2**63 - 1))
    if temporal == "consistent":
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0] >> np.uint64(1))
        return [seed] * t
    if seed is None:
        return [None] * t
    return [int(np.random.SeedSequence([seed, i]).generate_state(1, np.uint64)[0] >> np.uint64(1))
            for i in range(t)]


def corrupt_video(
    clip: np.ndarray,
    name: str,
    severity: int,
    seed: int | np.random.Generator | None = None,
    temporal: str = "consistent",
    params: str | None = None,
) -> np.ndarray:
    """Apply one video corruption to a ``uint8`` clip ``(T, H, W, C)``.

    Spatial corruptions run :func:`~lightning_sparse.data.corruptions.corrupt` on every frame;
    temporal ones are :func:`drop_frames`, :func:`resample_frame_rate` and
    :func:`compress_video` with the per-severity constants of the module docstring (Yi et al.
    2021, arXiv:2110.06513; Schiappa et al. 2022, arXiv:2207.01398).

    Args:
        clip: ``uint8`` array ``(T, H, W, C)``, ``C`` 1 or 3, frames at least 8x8. Not modified.
        name: One of :data:`ALL_VIDEO_CORRUPTIONS`.
        severity: 1 (mildest) to 5.
        seed: Non-negative integer or ``numpy.random.Generator``; the same seed gives the same
            output. ``None`` draws fresh OS entropy.
        temporal: ``"consistent"`` (every frame corrupted with the same random draws: frame
            ``t`` is ``corrupt(clip[t], name, severity, seed)``) or ``"independent"`` (fresh
            draws per frame, seeds derived from ``(seed, t)``). Ignored by the temporal and the
            deterministic corruptions.
        params: ``"cifar"``, ``"imagenet"`` or ``None`` (by frame size), as in ``corrupt``.

    Returns:
        A new ``uint8`` clip of the same shape.

    Raises:
        ValueError: If ``clip``, ``name``, ``severity``, ``seed``, ``temporal`` or ``params`` is
            not one of the allowed values.

    Examples:
        >>> clip = np.random.default_rng(1).integers(60, 200, size=(4, 16, 16, 3), dtype=np.uint8)
        >>> out = corrupt_video(clip, "gaussian_noise", 2, seed=0)
        >>> residual = out.astype(int) - clip
        >>> bool((residual == residual[0]).all())  # the same noise field in every frame
        True
        >>> frozen = corrupt_video(clip, "frame_drop", 5, seed=0)
        >>> sum(bool((frozen[i] == frozen[i - 1]).all()) for i in range(1, 4))  # round(0.6 * 3)
        2
    """
    clip = _check_clip(clip)
    if not isinstance(name, str) or name not in ALL_VIDEO_CORRUPTIONS:
        raise ValueError(f"`name` must be one of {', '.join(ALL_VIDEO_CORRUPTIONS)}; got {name!r}.")
    if not _is_int(severity) or not 1 <= severity <= 5:
        raise ValueError(f"`severity` must be an integer from 1 to 5; got {severity!r}.")
    if seed is not None and not isinstance(seed, np.random.Generator) and not (_is_int(seed) and seed >= 0):
        raise ValueError(f"`seed` must be None, a non-negative integer or a numpy.random.Generator; got {seed!r}.")
    if temporal not in TEMPORAL_MODES:
        raise ValueError(f"`temporal` must be one of {', '.join(TEMPORAL_MODES)}; got {temporal!r}.")
    _check_params(params)
    level = int(severity) - 1
    if name == "frame_drop":
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return drop_frames(clip, FRAME_DROP_SHARES[level], rng).copy()
    if name == "frame_rate":
        return resample_frame_rate(clip, FRAME_RATE_FACTORS[level]).copy()
    if name == "video_compression":
        codec = _default_codec()
        quality = H264_CRF[level] if codec == "h264" else MPEG4_QSCALE[level]
        return compress_video(clip, quality, codec=codec)
    seeds = _frame_seeds(seed, clip.shape[0], temporal)
    return np.stack([corrupt(frame, name, int(severity), s, params) for frame, s in zip(clip, seeds)])


class CorruptedVideoDataset(Dataset):
    """Corrupt the raw clips of a video dataset on the fly, with a seed fixed per item.

    Item ``i`` is ``(transform(corrupt_video(clip, name, severity, seed=item_seed(i))), label)``
    where ``clip, label = dataset.raw(i)`` (:class:`~lightning_sparse.data.video.VideoFolderDataset`
    in evaluation mode gives the same clip every time). The result does not depend on the order,
    shuffling or number of DataLoader workers, like a stored corrupted test set.

    Args:
        dataset: A dataset with ``raw(i) -> (uint8 clip (T, H, W, C), label)`` and ``len``.
        name: One of :data:`ALL_VIDEO_CORRUPTIONS`.
        severity: 1 to 5.
        seed: Non-negative integer; item ``i`` uses :meth:`item_seed` ``(i)``.
        temporal: ``"consistent"`` or ``"independent"`` (see :func:`corrupt_video`).
        params: ``"cifar"``, ``"imagenet"`` or ``None`` (by frame size), as in :func:`corrupt_video`.
        transform: Applied to the corrupted ``uint8`` clip (e.g. the dataset's evaluation
            :class:`~lightning_sparse.data.video.VideoTransform`); ``None`` keeps it raw.

    Raises:
        ValueError: If an argument is not one of the allowed values, or ``dataset`` has no ``raw``.

    Examples:
        >>> class Clips:
        ...     def __len__(self): return 2
        ...     def raw(self, i): return np.full((4, 16, 16, 3), 50 * (i + 1), np.uint8), i
        >>> data = CorruptedVideoDataset(Clips(), "shot_noise", severity=2, seed=0)
        >>> clip, label = data[1]
        >>> clip.shape, label, bool((clip == data[1][0]).all())
        ((4, 16, 16, 3), 1, True)
    """

    def __init__(self, dataset: Any, name: str, severity: int, seed: int = 0, temporal: str = "consistent",
                 params: str | None = None, transform: Callable[[np.ndarray], Any] | None = None) -> None:
        if not callable(getattr(dataset, "raw", None)):
            raise ValueError(f"`dataset` must have a `raw(index)` method returning (uint8 clip, label); "
                             f"got {type(dataset).__name__}.")
        if not isinstance(name, str) or name not in ALL_VIDEO_CORRUPTIONS:
            raise ValueError(f"`name` must be one of {', '.join(ALL_VIDEO_CORRUPTIONS)}; got {name!r}.")
        if not _is_int(severity) or not 1 <= severity <= 5:
            raise ValueError(f"`severity` must be an integer from 1 to 5; got {severity!r}.")
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer (a fixed corrupted set); got {seed!r}.")
        if temporal not in TEMPORAL_MODES:
            raise ValueError(f"`temporal` must be one of {', '.join(TEMPORAL_MODES)}; got {temporal!r}.")
        _check_params(params)
        self.dataset, self.name, self.severity = dataset, name, int(severity)
        self.seed, self.temporal, self.params, self.transform = int(seed), temporal, params, transform

    def item_seed(self, index: int) -> int:
        """The corruption seed of item ``index``: a pure function of ``(seed, index)``."""
        state = np.random.SeedSequence([self.seed, int(index)]).generate_state(1, np.uint64)[0]
        return int(state >> np.uint64(1))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        clip, label = self.dataset.raw(index)
        clip = corrupt_video(clip, self.name, self.severity, seed=self.item_seed(index), temporal=self.temporal,
                             params=self.params)
        return (self.transform(clip) if self.transform is not None else clip), label
