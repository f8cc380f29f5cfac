"""LightningDataModules for the datasets used by the recipes."""

from lightning_sparse.data.digits import DigitsDataModule

__all__ = ["DigitsDataModule"]

from lightning_sparse.data.video import (  # noqa: E402
    UCF101DataModule,
    VideoFolderDataModule,
    VideoFolderDataset,
    VideoTransform,
    read_video_frames,
)
from lightning_sparse.data.video_corruptions import (  # noqa: E402
    ALL_VIDEO_CORRUPTIONS,
    VIDEO_CORRUPTIONS,
    CorruptedVideoDataset,
    corrupt_video,
)

__all__ += [
    "ALL_VIDEO_CORRUPTIONS",
    "VIDEO_CORRUPTIONS",
    "CorruptedVideoDataset",
    "UCF101DataModule",
    "VideoFolderDataModule",
    "VideoFolderDataset",
    "VideoTransform",
    "corrupt_video",
    "read_video_frames",
]
