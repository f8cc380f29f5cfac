"""Video decoding through PyAV and the frame choice of a clip.

Decoding goes through PyAV (``av``, whose wheels bundle FFmpeg), so any container and codec
FFmpeg reads works (AVI/Xvid of UCF101 and HMDB51, MP4/H.264, WebM, MPEG-1/2 program streams)
on a bare machine; ``torchvision.io``'s video API is gone from torchvision 0.26.
:func:`read_video_frames` decodes one clip into a ``uint8`` array ``(T, H, W, C)``; the frame
choice is the pure function :func:`clip_indices`. Frame indices assume a constant frame rate
(index ``k`` is at ``k / fps`` seconds), true of UCF101, HMDB51 and GRID; variable-rate files are
sampled by decode order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["PAD_MODES", "START_MODES", "VIDEO_EXTENSIONS", "clip_indices", "read_video_frames"]

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
