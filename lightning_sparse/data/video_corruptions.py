"""The video corruptions, also importable from here: see :mod:`lightning_sparse.data.video.corruptions`."""

from lightning_sparse.data.video.corruptions import (
    ALL_VIDEO_CORRUPTIONS,
    SPATIAL_CORRUPTIONS,
    TEMPORAL_CORRUPTIONS,
    TEMPORAL_MODES,
    VIDEO_CORRUPTIONS,
    CorruptedVideoDataset,
    compress_video,
    corrupt_video,
    drop_frames,
    resample_frame_rate,
)

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
