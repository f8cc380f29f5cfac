"""LightningDataModules, corruptions and corrupted test sets for the recipes.

Every DataModule derives from :class:`DataModule` (:mod:`lightning_sparse.data.base`): shared
arguments, resumable training loaders (:mod:`lightning_sparse.data.loading`), ``return_index``
and a training sampler a callback can install. Modalities live in subpackages:
:mod:`lightning_sparse.data.image`, :mod:`lightning_sparse.data.video`,
:mod:`lightning_sparse.data.timeseries`, :mod:`lightning_sparse.data.speech`,
:mod:`lightning_sparse.data.avsr` (audio-visual speech), :mod:`lightning_sparse.data.medical`
(3D segmentation on MONAI); image corruptions in
:mod:`lightning_sparse.data.corruptions`.
"""

from lightning_sparse.data.avsr import AVDigitsDataModule, AVSRDataModule, GRIDDataModule, LRS3DataModule
from lightning_sparse.data.base import DataModule
from lightning_sparse.data.corruptions import (
    ALL_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    Corrupt,
    CorruptedDataset,
    corrupt,
)
from lightning_sparse.data.domain import (
    SETTINGS,
    ClassSplit,
    Domain,
    DomainAdaptationDataModule,
    DomainNet,
    FSDDSpeakerDomain,
    ImageListDomain,
    MNISTDomain,
    MultiTaskDataModule,
    Office31,
    OfficeHome,
    SemiSupervisedDADataModule,
    UCIDigitsDomain,
    VisDA2017,
    class_split,
    infer_setting,
    standard_split,
)
from lightning_sparse.data.image import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    CIFARCDataset,
    DigitsDataModule,
    ImageFolderDataModule,
    ImageNetCFolder,
    SupportsCorruptions,
    TinyImageNetDataModule,
    write_cifar_c,
)
from lightning_sparse.core.time_drop import TimeDrop
from lightning_sparse.data.loading import BucketBatchSampler, EpochSampler, IndexedDataset, ResumableDataLoader
from lightning_sparse.data.medical import DecathlonDataModule, SingleSubjectDataModule
from lightning_sparse.data.speech import (
    LibriSpeechDataModule,
    LJSpeechDataModule,
    ManifestDataModule,
    SpeechDataModule,
    SpokenDigitsDataModule,
)
from lightning_sparse.data.timeseries import TimeSeriesDataModule, UCRDataModule, UEADataModule
from lightning_sparse.data.video import (
    ALL_VIDEO_CORRUPTIONS,
    VIDEO_CORRUPTIONS,
    CorruptedVideoDataset,
    UCF101DataModule,
    VideoFolderDataModule,
    VideoFolderDataset,
    VideoTransform,
    corrupt_video,
    read_video_frames,
)

__all__ = [
    "ALL_CORRUPTIONS",
    "ALL_VIDEO_CORRUPTIONS",
    "AVDigitsDataModule",
    "AVSRDataModule",
    "BucketBatchSampler",
    "CIFAR100DataModule",
    "CIFAR10DataModule",
    "CIFARCDataset",
    "CORRUPTIONS",
    "ClassSplit",
    "Corrupt",
    "CorruptedDataset",
    "CorruptedVideoDataset",
    "DataModule",
    "DecathlonDataModule",
    "DigitsDataModule",
    "Domain",
    "DomainAdaptationDataModule",
    "DomainNet",
    "EXTRA_CORRUPTIONS",
    "EpochSampler",
    "FSDDSpeakerDomain",
    "GRIDDataModule",
    "ImageFolderDataModule",
    "ImageListDomain",
    "ImageNetCFolder",
    "IndexedDataset",
    "LJSpeechDataModule",
    "LRS3DataModule",
    "LibriSpeechDataModule",
    "MNISTDomain",
    "ManifestDataModule",
    "MultiTaskDataModule",
    "Office31",
    "OfficeHome",
    "ResumableDataLoader",
    "SETTINGS",
    "SemiSupervisedDADataModule",
    "SingleSubjectDataModule",
    "SpeechDataModule",
    "SpokenDigitsDataModule",
    "SupportsCorruptions",
    "TimeDrop",
    "TimeSeriesDataModule",
    "TinyImageNetDataModule",
    "UCF101DataModule",
    "UCIDigitsDomain",
    "UCRDataModule",
    "UEADataModule",
    "VIDEO_CORRUPTIONS",
    "VideoFolderDataModule",
    "VideoFolderDataset",
    "VideoTransform",
    "VisDA2017",
    "class_split",
    "corrupt",
    "corrupt_video",
    "infer_setting",
    "read_video_frames",
    "standard_split",
    "write_cifar_c",
]
