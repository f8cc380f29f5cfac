"""Video classification data: PyAV decoding, clip sampling, UCF101 and folder-tree DataModules.

Decoding goes through PyAV (``av``, whose wheels bundle FFmpeg), so any container and codec
FFmpeg reads works (AVI/Xvid of UCF101 and HMDB51, MP4/H.264, WebM, MPEG-1/2 program streams)
on a bare machine; ``torchvision.io``'s video API is gone from torchvision 0.26.

* :func:`read_video_frames` decodes one clip into a ``uint8`` array ``(T, H, W, C)``; the frame
  choice is the pure function :func:`clip_indices`.
* :class:`VideoTransform` turns a ``uint8`` clip into the float ``(C, T, H, W)`` tensor that 3D
  CNNs such as R3D-18 expect: resize, crop, scale to [0, 1], normalise with the Kinetics-400
  mean and std of torchvision's video models.
* :class:`VideoFolderDataset` pairs files with labels; ``raw(i)`` gives the ``uint8`` clip
  before any transform, so corruptions (:mod:`lightning_sparse.data.video_corruptions`) act on
  pixels, as in the video robustness benchmarks.
* :class:`UCF101DataModule` reads the official UCF101 layout and split files (Soomro, Zamir &
  Shah 2012, "UCF101: A Dataset of 101 Human Actions Classes From Videos in The Wild",
  arXiv:1212.0402); :class:`VideoFolderDataModule` any ``<root>/<split>/<class>/<video>`` tree.
  Both offer ``corruption_datasets`` for :class:`~lightning_sparse.callbacks.robustness.CorruptionRobustness`.

Preprocessing follows Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions for Action
Recognition" (CVPR, arXiv:1711.11248), the R(2+1)D/R3D recipe of torchvision's video models:
frames resized to 128 pixels on the short side (128x171 for 320x240 UCF101 videos), random
112x112 crops for training, centre crops for evaluation. Training clips start at a random frame,
evaluation clips are the single centred clip of each video (clip accuracy, not the multi-clip
video accuracy that papers often report).

Frame indices assume a constant frame rate (index ``k`` is at ``k / fps`` seconds), true of
UCF101, HMDB51 and GRID; variable-rate files are sampled by decode order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from lightning_sparse.data.video_corruptions import (
    ALL_VIDEO_CORRUPTIONS,
    TEMPORAL_MODES,
    VIDEO_CORRUPTIONS,
    CorruptedVideoDataset,
    _check_params,
)

__all__ = [
    "KINETICS_MEAN",
    "KINETICS_STD",
    "VIDEO_EXTENSIONS",
    "UCF101DataModule",
    "VideoFolderDataModule",
    "VideoFolderDataset",
    "VideoTransform",
    "clip_indices",
    "read_ucf101_split",
    "read_video_frames",
]

# torchvision.models.video (R3D-18, MC3-18, R(2+1)D-18) normalisation, Kinetics-400 statistics
KINETICS_MEAN: tuple[float, float, float] = (0.43216, 0.394666, 0.37645)
KINETICS_STD: tuple[float, float, float] = (0.22803, 0.22145, 0.216989)
VIDEO_EXTENSIONS: tuple[str, ...] = (".avi", ".mp4", ".mpg", ".mpeg", ".mkv", ".webm", ".mov", ".m4v")
START_MODES: tuple[str, ...] = ("center", "random", "uniform")
PAD_MODES: tuple[str, ...] = ("loop", "edge", "zeros")


def _av() -> Any:
    try:
        import av
    except ImportError as err:  # pragma: no cover - av is a declared dependency
        raise ImportError("Video decoding needs PyAV: `pip install av` (its wheels bundle FFmpeg).") from err
    return av


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _positive_int(name: str, value: object, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not _is_int(value) or value < 1:
        extra = " or None" if allow_none else ""
        raise ValueError(f"`{name}` must be a positive integer{extra}; got {value!r}.")


def clip_indices(
    num_available: int,
    num_frames: int | None,
    step: float = 1.0,
    start: int | str = 0,
    pad: str = "loop",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Which decoded frames make up a clip: the pure sampling rule of :func:`read_video_frames`.

    A clip is ``num_frames`` frames ``step`` apart (``step`` may be fractional: nearest frame,
    ``floor(k * step + 0.5)``), starting at frame ``start``, at the centre (``"center"``) or at a
    uniformly drawn frame (``"random"``, from ``rng``) among the starts that keep the clip inside
    the video. ``"uniform"`` instead spreads the frames evenly over the whole video (the centre
    of each of ``num_frames`` equal segments, as TSN's test-time sampling), ignoring ``step``.
    ``num_frames=None`` takes every ``step``-th frame from ``start`` to the end.

    Videos shorter than the clip: ``pad="loop"`` wraps the indices around (the sampled sequence
    continues from the first frame), ``"edge"`` repeats the last frame, ``"zeros"`` marks the
    missing frames ``-1`` (black frames in :func:`read_video_frames`).

    Args:
        num_available: Frames in the video (at least 1).
        num_frames: Frames in the clip, or ``None`` for all.
        step: Distance between sampled frames, in source frames (``> 0``).
        start: First frame index, or one of ``"center"``, ``"random"``, ``"uniform"``.
        pad: ``"loop"``, ``"edge"`` or ``"zeros"``.
        rng: Generator for ``start="random"`` (default: fresh OS entropy).

    Returns:
        An ``int64`` array of frame indices (``-1`` for zero padding).

    Examples:
        >>> clip_indices(75, 4, step=2, start=0).tolist()
        [0, 2, 4, 6]
        >>> clip_indices(75, 4, step=2, start="center").tolist()
        [34, 36, 38, 40]
        >>> clip_indices(5, 4, step=2, start=0, pad="loop").tolist(), clip_indices(5, 4, 2, 0, "edge").tolist()
        ([0, 2, 4, 1], [0, 2, 4, 4])
        >>> clip_indices(75, 3, start="uniform").tolist()
        [12, 37, 62]
    """
    if num_available < 1:
        raise ValueError(f"`num_available` must be at least 1; got {num_available}.")
    if start == "uniform":
        if num_frames is None:
            raise ValueError('`start="uniform"` needs `num_frames`; got None.')
        return np.floor((np.arange(num_frames) + 0.5) * num_available / num_frames).astype(np.int64)
    if num_frames is None:
        first = start if _is_int(start) else 0
        count = max(1, int(np.floor((num_available - 1 - first) / step)) + 1)
        return first + np.floor(np.arange(count) * step + 0.5).astype(np.int64)
    offsets = np.floor(np.arange(num_frames) * step + 0.5).astype(np.int64)  # (num_frames,)
    slack = max(0, num_available - 1 - int(offsets[-1]))  # starts that keep the clip inside
    if start == "center":
        first = slack // 2
    elif start == "random":
        first = int((rng if rng is not None else np.random.default_rng()).integers(0, slack + 1))
    else:
        first = int(start)
    idx = first + offsets
    if pad == "loop":
        return idx % num_available
    if pad == "edge":
        return np.minimum(idx, num_available - 1)
    return np.where(idx < num_available, idx, -1)


def _output_size(size: int | Sequence[int] | None, height: int, width: int) -> tuple[int, int]:
    if size is None:
        return height, width
    if _is_int(size):
        scale = int(size) / min(height, width)  # short side to `size`, aspect ratio kept
        return max(1, round(height * scale)), max(1, round(width * scale))
    return int(size[0]), int(size[1])


def _check_read_args(num_frames, stride, fps, start, size, pad, seed) -> None:
    _positive_int("num_frames", num_frames, allow_none=True)
    _positive_int("stride", stride)
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float)) or fps <= 0):
        raise ValueError(f"`fps` must be None or a positive number (frames per second); got {fps!r}.")
    if fps is not None and stride != 1:
        raise ValueError(f"give either `stride` or `fps`, not both; got stride={stride!r}, fps={fps!r}.")
    if not (_is_int(start) and start >= 0) and start not in START_MODES:
        raise ValueError(
            f"`start` must be a non-negative frame index or one of {', '.join(START_MODES)}; got {start!r}."
        )
    if start == "uniform" and num_frames is None:
        raise ValueError('`start="uniform"` needs `num_frames` (frames to spread over the video); got None.')
    if size is not None and not (_is_int(size) and size >= 1) and not (
        isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_int(s) and s >= 1 for s in size)
    ):
        raise ValueError(f"`size` must be None, a positive int (short side) or (height, width); got {size!r}.")
    if pad not in PAD_MODES:
        raise ValueError(f"`pad` must be one of {', '.join(PAD_MODES)}; got {pad!r}.")
    if seed is not None and not isinstance(seed, np.random.Generator) and not (_is_int(seed) and seed >= 0):
        raise ValueError(f"`seed` must be None, a non-negative integer or a numpy Generator; got {seed!r}.")


def _decode(container: Any, stream: Any, limit: int | None) -> list:
    """Decoded frames in presentation order, up to ``limit``; undecodable packets are skipped."""
    av = _av()
    frames: list = []
    for packet in container.demux(stream):
        try:
            decoded = packet.decode()
        except av.error.InvalidDataError:  # a damaged packet: keep the rest of the video
            continue
        frames.extend(decoded)
        if limit is not None and len(frames) >= limit:
            return frames[:limit]
    return frames


def read_video_frames(
    path: str | os.PathLike,
    num_frames: int | None = None,
    stride: int = 1,
    fps: float | None = None,
    start: int | str = 0,
    size: int | Sequence[int] | None = None,
    seed: int | np.random.Generator | None = None,
    pad: str = "loop",
) -> np.ndarray:
    """Decode a clip of a video file into a ``uint8`` RGB array ``(T, H, W, 3)``.

    Any container and codec that FFmpeg reads (through PyAV). The file is decoded up to the
    last frame the clip needs (to the end for ``start`` given as a mode: the frame count of many
    containers is unknown or unreliable until decoded); only the chosen frames are converted to
    RGB and resized. Decoding is single-threaded, deterministic, and independent of global random
    state. Frame selection is :func:`clip_indices`; files shorter than the clip are padded per
    ``pad``.

    Args:
        path: Video file.
        num_frames: Frames in the clip (``None``: every selected frame to the end).
        stride: Take every ``stride``-th decoded frame.
        fps: Instead of ``stride``, sample at this frame rate (nearest frames; the source rate
            comes from the container, e.g. 25 fps -> 12.5 fps takes every second frame).
        start: First frame (an index into the decoded frames), ``"center"``, ``"random"`` (a
            uniform start among those keeping the clip inside the video, drawn with ``seed``) or
            ``"uniform"`` (``num_frames`` spread evenly over the whole video).
        size: ``None`` (native), an int (short side, aspect ratio kept) or ``(height, width)``;
            resized by FFmpeg's swscale (bilinear, area-aware when shrinking).
        seed: Seed or ``numpy.random.Generator`` for ``start="random"``; ``None`` draws fresh
            OS entropy.
        pad: For videos shorter than the clip: ``"loop"`` (wrap around to the first frame),
            ``"edge"`` (repeat the last frame) or ``"zeros"`` (black frames).

    Returns:
        ``uint8`` array ``(T, H, W, 3)``.

    Raises:
        ValueError: If an argument is not one of the allowed values, or the file has no video
            stream or no decodable frame (also when ``fps`` is given and the container states no
            frame rate).
        FileNotFoundError: If ``path`` does not exist.

    Examples:
        >>> import tempfile, av
        >>> path = os.path.join(tempfile.mkdtemp(), "ramp.mp4")
        >>> with av.open(path, "w") as out:  # 10 grey frames, 0, 25, ..., 225
        ...     stream = out.add_stream("mpeg4", rate=25, options={"qmin": "1", "qmax": "1"})
        ...     stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        ...     for v in range(0, 250, 25):
        ...         frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), v, np.uint8), format="rgb24")
        ...         out.mux(stream.encode(frame))
        ...     out.mux(stream.encode())
        >>> clip = read_video_frames(path, num_frames=4, stride=3, size=12)
        >>> clip.shape, clip.dtype, np.round(clip[:, 6, 8, 0] / 25).astype(int).tolist()
        ((4, 12, 16, 3), dtype('uint8'), [0, 3, 6, 9])
        >>> [np.round(read_video_frames(path, 6, stride=3, pad=pad)[:, 0, 0, 0] / 25).astype(int).tolist()
        ...  for pad in ("loop", "edge")]  # 10 frames for a clip spanning 16
        [[0, 3, 6, 9, 2, 5], [0, 3, 6, 9, 9, 9]]
    """
    _check_read_args(num_frames, stride, fps, start, size, pad, seed)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"`path` is not a file: {path!r}.")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    av = _av()
    with av.open(path) as container:  # read stream fields inside: they die with the container
        if not container.streams.video:
            raise ValueError(f"`path` has no video stream: {path!r}.")
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        stream.codec_context.thread_count = 1
        step = float(stride)
        if fps is not None:
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            if not rate:
                raise ValueError(f"`fps` needs the source frame rate, which {path!r} does not state.")
            step = float(rate) / float(fps)
        limit = None
        if _is_int(start) and num_frames is not None:
            limit = int(start) + int(np.floor((num_frames - 1) * step + 0.5)) + 1
        frames = _decode(container, stream, limit)
        if not frames:
            raise ValueError(f"`path` has no decodable video frame: {path!r}.")
        idx = clip_indices(len(frames), num_frames, step, start, pad, rng)
        height, width = _output_size(size, frames[0].height, frames[0].width)
        converted: dict[int, np.ndarray] = {}
        for i in np.unique(idx[(idx >= 0) & (idx < len(frames))]):
            converted[int(i)] = frames[int(i)].to_ndarray(
                format="rgb24", width=width, height=height, interpolation="BILINEAR"
            )
    black = np.zeros((height, width, 3), np.uint8)
    return np.stack([converted.get(int(i), black) for i in idx])  # (T, H, W, 3)


class VideoTransform:
    """``uint8`` clip ``(T, H, W, C)`` -> normalised float tensor ``(C, T, H, W)``.

    Resize the short side to ``resize_size`` (bilinear, antialiased; skipped when it already
    matches), crop ``crop_size`` (random position and a horizontal flip with probability 0.5 when
    ``train``, else the centre), scale to [0, 1] and normalise per channel. The same crop and
    flip apply to every frame.

    Args:
        crop_size: Side of the square crop.
        resize_size: Short side before cropping, at least ``crop_size``.
        train: Random crop and flip (from torch's global generator, or ``generator``).
        mean: Per-channel mean (default: Kinetics-400).
        std: Per-channel standard deviation (default: Kinetics-400).

    Raises:
        ValueError: If a size is not a positive integer or ``resize_size < crop_size``.

    Examples:
        >>> clip = np.full((8, 120, 160, 3), 128, dtype=np.uint8)
        >>> x = VideoTransform(crop_size=112, resize_size=128)(clip)
        >>> tuple(x.shape), x.dtype
        ((3, 8, 112, 112), torch.float32)
    """

    def __init__(
        self,
        crop_size: int = 112,
        resize_size: int = 128,
        train: bool = False,
        mean: Sequence[float] = KINETICS_MEAN,
        std: Sequence[float] = KINETICS_STD,
    ) -> None:
        _positive_int("crop_size", crop_size)
        _positive_int("resize_size", resize_size)
        if resize_size < crop_size:
            raise ValueError(f"`resize_size` must be at least `crop_size` ({crop_size}); got {resize_size}.")
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(f"`mean` and `std` must have one value per channel, std > 0; got {mean}, {std}.")
        self.crop_size, self.resize_size, self.train = int(crop_size), int(resize_size), bool(train)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1, 1)  # (C, 1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1, 1)

    def __call__(self, clip: np.ndarray | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(clip)).permute(0, 3, 1, 2).float().div_(255.0)  # (T, C, H, W)
        h, w = x.shape[-2:]
        if min(h, w) != self.resize_size:
            scale = self.resize_size / min(h, w)
            size = (max(self.resize_size, round(h * scale)), max(self.resize_size, round(w * scale)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            h, w = size
        c = self.crop_size
        if self.train:
            top = int(torch.randint(0, h - c + 1, (), generator=generator))
            left = int(torch.randint(0, w - c + 1, (), generator=generator))
            flip = bool(torch.rand((), generator=generator) < 0.5)
        else:
            top, left, flip = (h - c) // 2, (w - c) // 2, False
        x = x[..., top : top + c, left : left + c]
        if flip:
            x = x.flip(-1)
        x = x.permute(1, 0, 2, 3)  # (C, T, H, W)
        return ((x - self.mean) / self.std).contiguous()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(crop_size={self.crop_size}, resize_size={self.resize_size}, "
                f"train={self.train})")


class VideoFolderDataset(Dataset):
    """Labelled video files decoded into fixed-length clips.

    Item ``i`` is ``(clip, label)`` with ``clip`` the float ``(C, T, H, W)`` tensor of
    :class:`VideoTransform` (``(clip, label, i)`` with ``return_index``). :meth:`raw` returns the
    ``uint8`` ``(T, H, W, 3)`` clip before the transform: decoded at ``resize_size`` on the short
    side (or natively with ``native_resolution``), the corruption stage of the robustness sets.

    Training items (``train=True``) start at a random frame and get a random crop and flip,
    drawn from torch's global generator (reproducible under ``lightning.seed_everything``, distinct
    per DataLoader worker); evaluation items are deterministic: the centred clip, centre crop.

    Args:
        samples: ``(path, label)`` pairs, labels 0-based.
        classes: Class names, ``classes[label]``.
        frames_per_clip: Frames per clip ``T``.
        frame_stride: Distance between sampled frames.
        image_size: Side of the square crop.
        resize_size: Short side before cropping (default ``round(image_size * 8 / 7)``, 128 for
            112 as in the R3D recipe).
        train: Random clip start, crop and flip.
        native_resolution: Decode at the file's resolution (raw clips and corruptions at that
            size, resized after) instead of at ``resize_size``.
        return_index: Also yield the item's index (for data-pruning callbacks).
        pad: How clips longer than the video are filled (see :func:`clip_indices`).

    Raises:
        ValueError: If an argument is not one of the allowed values.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str | os.PathLike, int]],
        classes: Sequence[str],
        frames_per_clip: int = 16,
        frame_stride: int = 1,
        image_size: int = 112,
        resize_size: int | None = None,
        train: bool = False,
        native_resolution: bool = False,
        return_index: bool = False,
        pad: str = "loop",
    ) -> None:
        _positive_int("frames_per_clip", frames_per_clip)
        _positive_int("frame_stride", frame_stride)
        _positive_int("image_size", image_size)
        resize_size = round(image_size * 8 / 7) if resize_size is None else resize_size
        if pad not in PAD_MODES:
            raise ValueError(f"`pad` must be one of {', '.join(PAD_MODES)}; got {pad!r}.")
        for path, label in samples:
            if not _is_int(label) or not 0 <= label < len(classes):
                raise ValueError(f"labels must be in 0..{len(classes) - 1}; got {label!r} for {path}.")
        self.samples = [(os.fspath(p), int(y)) for p, y in samples]
        self.classes = list(classes)
        self.frames_per_clip, self.frame_stride = int(frames_per_clip), int(frame_stride)
        self.train, self.native_resolution, self.return_index, self.pad = train, native_resolution, return_index, pad
        self.transform = VideoTransform(image_size, resize_size, train=train)

    @property
    def targets(self) -> list[int]:
        """The label of every item, in order."""
        return [y for _, y in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def raw(self, index: int) -> tuple[np.ndarray, int]:
        """The ``uint8`` clip ``(T, H, W, 3)`` of item ``index`` and its label, before the transform."""
        path, label = self.samples[index]
        start: int | str = "center"
        seed = None
        if self.train:
            start, seed = "random", int(torch.randint(0, 2**62, ()))
        clip = read_video_frames(
            path, num_frames=self.frames_per_clip, stride=self.frame_stride, start=start,
            size=None if self.native_resolution else self.transform.resize_size, seed=seed, pad=self.pad,
        )
        return clip, label

    def __getitem__(self, index: int):
        clip, label = self.raw(index)
        x = self.transform(clip)
        return (x, label, index) if self.return_index else (x, label)


def _stratified_subset(labels: Sequence[int], subset: int | float | None, seed: int, arg: str) -> list[int]:
    """Seeded class-balanced subset: positions sorted by (rank within class, shuffled order)."""
    n = len(labels)
    if subset is None:
        return list(range(n))
    count = subset if _is_int(subset) else int(round(float(subset) * n))
    if count > n:
        raise ValueError(f"`{arg}` asks for {count} clips but the split has only {n}.")
    order = np.random.default_rng(seed).permutation(n)
    rank, seen = np.empty(n, np.int64), {}
    for pos in order:
        rank[pos] = seen.get(labels[pos], 0)
        seen[labels[pos]] = rank[pos] + 1
    where = np.empty(n, np.int64)
    where[order] = np.arange(n)
    chosen = sorted(range(n), key=lambda i: (rank[i], where[i]))[:count]
    return sorted(chosen)


def _check_subset(name: str, value: object) -> None:
    if value is None or (_is_int(value) and value >= 1):
        return
    if isinstance(value, float) and 0.0 < value <= 1.0:
        return
    raise ValueError(f"`{name}` must be None, a positive clip count or a fraction in (0, 1]; got {value!r}.")


class _VideoDataModule(L.LightningDataModule):
    """Loaders, subsets and corrupted test sets shared by the video DataModules."""

    def __init__(self, frames_per_clip, frame_stride, image_size, resize_size, batch_size, num_workers,
                 train_subset, test_subset, seed, return_index, native_resolution, corruption_temporal,
                 corruption_params) -> None:
        super().__init__()
        if corruption_temporal not in TEMPORAL_MODES:
            raise ValueError(f"`corruption_temporal` must be one of {', '.join(TEMPORAL_MODES)}; "
                             f"got {corruption_temporal!r}.")
        _check_params(corruption_params)
        self.corruption_temporal, self.corruption_params = corruption_temporal, corruption_params
        for name, value in (("frames_per_clip", frames_per_clip), ("frame_stride", frame_stride),
                            ("image_size", image_size), ("batch_size", batch_size)):
            _positive_int(name, value)
        _positive_int("resize_size", resize_size, allow_none=True)
        if resize_size is not None and resize_size < image_size:
            raise ValueError(f"`resize_size` must be at least `image_size` ({image_size}); got {resize_size}.")
        if not _is_int(num_workers) or num_workers < 0:
            raise ValueError(f"`num_workers` must be a non-negative integer; got {num_workers!r}.")
        _check_subset("train_subset", train_subset)
        _check_subset("test_subset", test_subset)
        if not _is_int(seed) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative integer; got {seed!r}.")
        self.frames_per_clip, self.frame_stride = frames_per_clip, frame_stride
        self.image_size, self.resize_size = image_size, resize_size
        self.batch_size, self.num_workers = batch_size, num_workers
        self.train_subset, self.test_subset = train_subset, test_subset
        self.seed, self.return_index, self.native_resolution = seed, return_index, native_resolution
        self.classes: list[str] | None = None
        self.train_dataset: VideoFolderDataset | None = None
        self.val_dataset: VideoFolderDataset | None = None
        self.test_dataset: VideoFolderDataset | None = None

    @property
    def num_classes(self) -> int:
        """Number of classes (after ``setup``)."""
        if self.classes is None:
            raise RuntimeError(f"`{type(self).__name__}.setup()` must run before `num_classes` is known.")
        return len(self.classes)

    @property
    def available_corruptions(self) -> tuple[str, ...]:
        """Every corruption ``corruption_datasets`` accepts (image corruptions + temporal ones)."""
        return ALL_VIDEO_CORRUPTIONS

    def _dataset(self, samples, train: bool, subset, return_index: bool) -> VideoFolderDataset:
        keep = _stratified_subset([y for _, y in samples], subset, self.seed,
                                  "train_subset" if train else "test_subset")
        return VideoFolderDataset(
            [samples[i] for i in keep], self.classes, self.frames_per_clip, self.frame_stride,
            self.image_size, self.resize_size, train=train, native_resolution=self.native_resolution,
            return_index=return_index,
        )

    def _loader(self, dataset: Dataset | None, shuffle: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"`{type(self).__name__}.setup()` must run before asking for a loader.")
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        """Shuffled batches of random training clips."""
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Batches of the validation split (the test split where there is none), in order."""
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Batches of centred test clips, in order."""
        return self._loader(self.test_dataset, shuffle=False)

    def corruption_datasets(
        self, corruptions: Sequence[str] | None = None, severities: Sequence[int] = (1, 2, 3, 4, 5)
    ) -> Iterator[tuple[str, int, Dataset]]:
        """Corrupted copies of the test split, one per (corruption, severity), built lazily.

        Item ``i`` of each copy is ``(clip, label)``: the ``uint8`` test clip ``raw(i)``,
        corrupted by :func:`~lightning_sparse.data.video_corruptions.corrupt_video` with a seed
        fixed by ``(seed, i)`` (the same item always gets the same corruption, whatever the
        order or number of workers), then the evaluation transform.

        Args:
            corruptions: Names from ``available_corruptions``; default the benchmark set
                :data:`~lightning_sparse.data.video_corruptions.VIDEO_CORRUPTIONS`.
            severities: Severities in 1..5.

        Returns:
            An iterator of ``(name, severity, dataset)``.

        Raises:
            ValueError: If a name or severity is not allowed (checked before any item is built).
        """
        names = list(VIDEO_CORRUPTIONS if corruptions is None else corruptions)
        unknown = [c for c in names if c not in self.available_corruptions]
        if unknown or isinstance(corruptions, str):
            raise ValueError(f"`corruptions` must be names from {', '.join(self.available_corruptions)}; "
                             f"got {corruptions!r}.")
        severities = list(severities)
        if not severities or any(not _is_int(s) or not 1 <= s <= 5 for s in severities):
            raise ValueError(f"`severities` must be a non-empty list of integers in 1..5; got {severities!r}.")
        if self.test_dataset is None:
            self.setup("test")
        test = self.test_dataset

        def generate() -> Iterator[tuple[str, int, Dataset]]:
            for name in names:
                for severity in severities:
                    yield name, int(severity), CorruptedVideoDataset(
                        test, name, int(severity), seed=self.seed, temporal=self.corruption_temporal,
                        params=self.corruption_params, transform=test.transform,
                    )

        return generate()


def read_ucf101_split(split_dir: str | os.PathLike, fold: int, split: str) -> tuple[list[tuple[str, int]], list[str]]:
    """Parse UCF101's ``classInd.txt`` and ``trainlist0{fold}.txt`` / ``testlist0{fold}.txt``.

    ``classInd.txt`` lines are ``<index> <ClassName>`` (1-based); train lines
    ``<ClassName>/v_<ClassName>_gXX_cYY.avi <label>`` (1-based); test lines carry no label, which
    comes from the class folder. Blank lines and Windows line ends (as in the official zip) are
    accepted.

    Args:
        split_dir: Folder with the split files (``ucfTrainTestlist`` in the official zip).
        fold: 1, 2 or 3.
        split: ``"train"`` or ``"test"``.

    Returns:
        ``(samples, classes)``: ``(relative path, 0-based label)`` pairs and the class names.

    Raises:
        ValueError: If ``fold`` or ``split`` is not allowed or a line is malformed or disagrees
            with ``classInd.txt``.
        FileNotFoundError: If a split file is missing.
    """
    if fold not in (1, 2, 3) or isinstance(fold, bool):
        raise ValueError(f"`fold` must be 1, 2 or 3; got {fold!r}.")
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test'; got {split!r}.")
    split_dir = Path(split_dir)

    def lines(name: str) -> list[tuple[int, list[str]]]:
        path = split_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"UCF101 split file not found: {path}.")
        text = path.read_text(encoding="utf-8-sig")
        return [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]

    classes: list[str] = []
    for n, parts in lines("classInd.txt"):
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
            raise ValueError(f"classInd.txt line {n} must be '<index> <ClassName>' with indices 1, 2, ...; "
                             f"got {' '.join(parts)!r}.")
        classes.append(parts[1])
    index = {c: i for i, c in enumerate(classes)}
    name = f"{split}list0{fold}.txt"
    samples: list[tuple[str, int]] = []
    for n, parts in lines(name):
        folder = parts[0].replace("\\", "/").split("/")[0]
        if folder not in index or len(parts) != (2 if split == "train" else 1):
            raise ValueError(f"{name} line {n} must be '<ClassName>/<file>{' <label>' if split == 'train' else ''}' "
                             f"with a class of classInd.txt; got {' '.join(parts)!r}.")
        if split == "train" and (not parts[1].isdigit() or int(parts[1]) - 1 != index[folder]):
            raise ValueError(f"{name} line {n}: label {parts[1]} disagrees with classInd.txt "
                             f"({folder} is {index[folder] + 1}).")
        samples.append((parts[0], index[folder]))
    return samples, classes


def _existing(root: Path, samples: list[tuple[str, int]], what: str) -> list[tuple[str, int]]:
    paths = [(str(root / rel), y) for rel, y in samples]
    missing = [p for p, _ in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} videos of the {what} are missing, e.g. {missing[:3]}.")
    return paths


class UCF101DataModule(_VideoDataModule):
    """UCF101 action recognition (101 classes, 13,320 clips) with the official three folds.

    Soomro, Zamir & Shah 2012, "UCF101: A Dataset of 101 Human Actions Classes From Videos in The
    Wild" (arXiv:1212.0402). Layout of the official archives: ``<data_dir>/<ClassName>/v_...avi``
    and ``<split_dir>/{classInd.txt, trainlist0N.txt, testlist0N.txt}``. Any container FFmpeg
    reads is accepted for the videos. UCF101 has no validation split: ``val_dataloader`` serves
    the test split, as usual in the literature. Batches are ``(clips, labels)`` with clips
    ``(B, 3, frames_per_clip, image_size, image_size)`` (``(clips, labels, index)`` for training
    with ``return_index``); see :class:`VideoFolderDataset` for sampling and
    :meth:`corruption_datasets` for the robustness sets.

    Args:
        data_dir: Root of the class folders (``UCF-101``).
        split_dir: Folder of the split files (default ``<data_dir>/ucfTrainTestlist`` if it
            exists, else ``data_dir``).
        fold: Official split 1, 2 or 3.
        frames_per_clip: Frames per clip.
        frame_stride: Distance between sampled frames (1 = consecutive, at 25 fps).
        image_size: Side of the square crop (112 for R3D-18).
        resize_size: Short side before cropping (default ``round(image_size * 8 / 7)``).
        batch_size: Clips per batch.
        num_workers: DataLoader worker processes.
        train_subset: ``None``, a clip count or a fraction: a seeded class-balanced subset.
        test_subset: The same for the test split.
        seed: Seed of the subsets and of the corruptions.
        return_index: Training batches also carry each clip's index.
        native_resolution: Decode (and corrupt) at the file's resolution, see
            :class:`VideoFolderDataset`.
        corruption_temporal: ``"consistent"`` (the same random draws in every frame) or
            ``"independent"``, for the spatial corruptions of :meth:`corruption_datasets`.
        corruption_params: Constants of the image corruptions: ``"cifar"``, ``"imagenet"`` or
            ``None`` (by frame size: ImageNet-C above 64 pixels on the short side).

    Raises:
        ValueError: If an argument is not one of the allowed values (at construction), or a
            split file is malformed (at ``setup``).
        FileNotFoundError: At ``setup``, if split files or listed videos are missing.

    Examples:
        >>> dm = UCF101DataModule("UCF-101", fold=2, frames_per_clip=16, image_size=112)
        >>> dm.fold, dm.resize_size, dm.available_corruptions[-3:]
        (2, None, ('frame_drop', 'frame_rate', 'video_compression'))
    """

    def __init__(
        self,
        data_dir: str,
        split_dir: str | None = None,
        fold: int = 1,
        frames_per_clip: int = 16,
        frame_stride: int = 1,
        image_size: int = 112,
        resize_size: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        train_subset: int | float | None = None,
        test_subset: int | float | None = None,
        seed: int = 0,
        return_index: bool = False,
        native_resolution: bool = False,
        corruption_temporal: str = "consistent",
        corruption_params: str | None = None,
    ) -> None:
        super().__init__(frames_per_clip, frame_stride, image_size, resize_size, batch_size, num_workers,
                         train_subset, test_subset, seed, return_index, native_resolution, corruption_temporal,
                         corruption_params)
        if fold not in (1, 2, 3) or isinstance(fold, bool):
            raise ValueError(f"`fold` must be 1, 2 or 3; got {fold!r}.")
        self.save_hyperparameters()
        self.data_dir, self.fold = Path(data_dir), fold
        default = self.data_dir / "ucfTrainTestlist"
        self.split_dir = Path(split_dir) if split_dir is not None else default if default.is_dir() else self.data_dir

    def setup(self, stage: str | None = None) -> None:
        """Read the fold's split files and build the train and test datasets (any stage)."""
        if self.test_dataset is not None:
            return
        train, self.classes = read_ucf101_split(self.split_dir, self.fold, "train")
        test, _ = read_ucf101_split(self.split_dir, self.fold, "test")
        self.train_dataset = self._dataset(_existing(self.data_dir, train, f"train list {self.fold}"), True,
                                           self.train_subset, self.return_index)
        self.test_dataset = self._dataset(_existing(self.data_dir, test, f"test list {self.fold}"), False,
                                          self.test_subset, False)
        self.val_dataset = self.test_dataset


def _scan_split(root: Path) -> dict[str, list[Path]]:
    return {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file())
            for d in sorted(root.iterdir()) if d.is_dir()}


class VideoFolderDataModule(_VideoDataModule):
    """Any video classification tree ``<data_dir>/<split>/<ClassName>/<video>``.

    Classes are the sorted class folders of the training split; videos are the files with an
    extension in :data:`VIDEO_EXTENSIONS` (any container FFmpeg reads). Without ``val_split``,
    ``val_dataloader`` serves the test split. Sampling, batches and corruptions as in
    :class:`UCF101DataModule`.

    Args:
        data_dir: Root of the split folders.
        train_split: Training split folder name.
        test_split: Test split folder name.
        val_split: Validation split folder name, or ``None`` (the test split).
        frames_per_clip: Frames per clip.
        frame_stride: Distance between sampled frames.
        image_size: Side of the square crop.
        resize_size: Short side before cropping (default ``round(image_size * 8 / 7)``).
        batch_size: Clips per batch.
        num_workers: DataLoader worker processes.
        train_subset: ``None``, a clip count or a fraction: a seeded class-balanced subset.
        test_subset: The same for the test (and validation) split.
        seed: Seed of the subsets and of the corruptions.
        return_index: Training batches also carry each clip's index.
        native_resolution: Decode (and corrupt) at the file's resolution.
        corruption_temporal: ``"consistent"`` or ``"independent"`` (see :class:`UCF101DataModule`).
        corruption_params: ``"cifar"``, ``"imagenet"`` or ``None`` (see :class:`UCF101DataModule`).

    Raises:
        ValueError: If an argument is not one of the allowed values, or (at ``setup``) a split
            has a class that the training split lacks or no video.
        FileNotFoundError: At ``setup``, if a split folder is missing.

    Examples:
        >>> VideoFolderDataModule("videos", val_split="val", image_size=64).resize_size is None
        True
    """

    def __init__(
        self,
        data_dir: str,
        train_split: str = "train",
        test_split: str = "test",
        val_split: str | None = None,
        frames_per_clip: int = 16,
        frame_stride: int = 1,
        image_size: int = 112,
        resize_size: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        train_subset: int | float | None = None,
        test_subset: int | float | None = None,
        seed: int = 0,
        return_index: bool = False,
        native_resolution: bool = False,
        corruption_temporal: str = "consistent",
        corruption_params: str | None = None,
    ) -> None:
        super().__init__(frames_per_clip, frame_stride, image_size, resize_size, batch_size, num_workers,
                         train_subset, test_subset, seed, return_index, native_resolution, corruption_temporal,
                         corruption_params)
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self.train_split, self.test_split, self.val_split = train_split, test_split, val_split

    def _samples(self, split: str) -> list[tuple[str, int]]:
        root = self.data_dir / split
        if not root.is_dir():
            raise FileNotFoundError(f"split folder not found: {root}.")
        found = _scan_split(root)
        extra = sorted(set(found) - set(self.classes or ()))
        if extra:
            raise ValueError(f"split {split!r} has classes the training split lacks: {extra}.")
        samples = [(str(p), self.classes.index(c)) for c, paths in found.items() for p in paths]
        if not samples:
            raise ValueError(f"split {split!r} has no video ({', '.join(VIDEO_EXTENSIONS)}) in {root}.")
        return samples

    def setup(self, stage: str | None = None) -> None:
        """Scan the split folders and build the datasets (any stage)."""
        if self.test_dataset is not None:
            return
        root = self.data_dir / self.train_split
        if not root.is_dir():
            raise FileNotFoundError(f"split folder not found: {root}.")
        self.classes = list(_scan_split(root))
        self.train_dataset = self._dataset(self._samples(self.train_split), True, self.train_subset,
                                           self.return_index)
        self.test_dataset = self._dataset(self._samples(self.test_split), False, self.test_subset, False)
        self.val_dataset = self.test_dataset if self.val_split is None else self._dataset(
            self._samples(self.val_split), False, self.test_subset, False)
