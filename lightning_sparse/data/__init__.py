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

from lightning_sparse.data.cifar import CIFAR10DataModule, CIFAR100DataModule  # noqa: E402
from lightning_sparse.data.image_folder import ImageFolderDataModule, TinyImageNetDataModule  # noqa: E402
from lightning_sparse.data.robustness import (  # noqa: E402
    CIFARCDataset,
    ImageNetCFolder,
    SupportsCorruptions,
    write_cifar_c,
)

__all__ += [
    "CIFAR100DataModule",
    "CIFAR10DataModule",
    "CIFARCDataset",
    "ImageFolderDataModule",
    "ImageNetCFolder",
    "SupportsCorruptions",
    "TinyImageNetDataModule",
    "write_cifar_c",
]
