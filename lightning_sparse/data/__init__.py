"""LightningDataModules, corruptions and corrupted test sets for the recipes."""

from lightning_sparse.data.cifar import CIFAR10DataModule, CIFAR100DataModule
from lightning_sparse.data.corruptions import (
    ALL_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    Corrupt,
    CorruptedDataset,
    corrupt,
)
from lightning_sparse.data.digits import DigitsDataModule
from lightning_sparse.data.image_folder import ImageFolderDataModule, TinyImageNetDataModule
from lightning_sparse.data.robustness import CIFARCDataset, ImageNetCFolder, SupportsCorruptions, write_cifar_c
from lightning_sparse.data.timeseries import TimeSeriesDataModule, UCRDataModule, UEADataModule
from lightning_sparse.data.video import (
    UCF101DataModule,
    VideoFolderDataModule,
    VideoFolderDataset,
    VideoTransform,
    read_video_frames,
)
from lightning_sparse.data.video_corruptions import (
    ALL_VIDEO_CORRUPTIONS,
    VIDEO_CORRUPTIONS,
    CorruptedVideoDataset,
    corrupt_video,
)

__all__ = [
    "ALL_CORRUPTIONS",
    "ALL_VIDEO_CORRUPTIONS",
    "CIFAR100DataModule",
    "CIFAR10DataModule",
    "CIFARCDataset",
    "CORRUPTIONS",
    "Corrupt",
    "CorruptedDataset",
    "CorruptedVideoDataset",
    "DigitsDataModule",
    "EXTRA_CORRUPTIONS",
    "ImageFolderDataModule",
    "ImageNetCFolder",
    "SupportsCorruptions",
    "TimeSeriesDataModule",
    "TinyImageNetDataModule",
    "UCF101DataModule",
    "UCRDataModule",
    "UEADataModule",
    "VIDEO_CORRUPTIONS",
    "VideoFolderDataModule",
    "VideoFolderDataset",
    "VideoTransform",
    "corrupt",
    "corrupt_video",
    "read_video_frames",
    "write_cifar_c",
]
