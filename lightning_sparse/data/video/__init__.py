"""Video classification data: PyAV decoding, clip sampling, UCF101 and folder-tree DataModules.

Decoding goes through PyAV (``av``, whose wheels bundle FFmpeg), so any container and codec
FFmpeg reads works (AVI/Xvid of UCF101 and HMDB51, MP4/H.264, WebM, MPEG-1/2 program streams)
on a bare machine; ``torchvision.io``'s video API is gone from torchvision 0.26.

* :func:`read_video_frames` (:mod:`~lightning_sparse.data.video.decode`) decodes one clip into a ``uint8`` array ``(T, H, W, C)``; the frame
  choice is the pure function :func:`clip_indices`.
* :class:`VideoTransform` turns a ``uint8`` clip into the float ``(C, T, H, W)`` tensor that 3D
  CNNs such as R3D-18 expect: resize, crop, scale to [0, 1], normalise with the Kinetics-400
  mean and std of torchvision's video models.
* :class:`VideoFolderDataset` pairs files with labels; ``raw(i)`` gives the ``uint8`` clip
  before any transform, so corruptions (:mod:`lightning_sparse.data.video.corruptions`) act on
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

from lightning_sparse.data.video.base import VideoDataModule
from lightning_sparse.data.video.corruptions import (
    ALL_VIDEO_CORRUPTIONS,
    TEMPORAL_CORRUPTIONS,
    VIDEO_CORRUPTIONS,
    CorruptedVideoDataset,
    corrupt_video,
)
from lightning_sparse.data.video.datamodules import UCF101DataModule, VideoFolderDataModule, read_ucf101_split
from lightning_sparse.data.video.dataset import VideoFolderDataset
from lightning_sparse.data.video.decode import PAD_MODES, START_MODES, VIDEO_EXTENSIONS, clip_indices, read_video_frames
from lightning_sparse.data.video.transform import KINETICS_MEAN, KINETICS_STD, VideoTransform

__all__ = [
    "ALL_VIDEO_CORRUPTIONS",
    "CorruptedVideoDataset",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "PAD_MODES",
    "START_MODES",
    "TEMPORAL_CORRUPTIONS",
    "UCF101DataModule",
    "VIDEO_CORRUPTIONS",
    "VIDEO_EXTENSIONS",
    "VideoDataModule",
    "VideoFolderDataModule",
    "VideoFolderDataset",
    "VideoTransform",
    "clip_indices",
    "corrupt_video",
    "read_ucf101_split",
    "read_video_frames",
]
