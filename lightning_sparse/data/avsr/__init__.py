"""Audio-visual speech data: GRID, LRS3 and audio-visual spoken digits, as one batch dict.

- :mod:`~lightning_sparse.data.avsr.grid`: GRID's sentence grammar (a sentence id such as
  ``bbaf2n`` is "bin blue at f two now"), its ``.align`` word timings, decoding a clip's video
  frames and audio (PyAV), :class:`GRIDDataset` (raw clips) and :class:`GRIDDataModule`.
- :mod:`~lightning_sparse.data.avsr.lrs3`: LRS3 in its published layout (``.mp4`` + ``.txt``,
  mouth crops from landmarks) and in auto_avsr's pre-processed layout: :class:`LRS3DataModule`.
- :mod:`~lightning_sparse.data.avsr.label_lists`: auto_avsr's pre-processed layout (mouth-crop
  videos, ``.wav`` audio, label lists of SentencePiece token ids): :func:`read_label_list`,
  :class:`LRS3LabelListDataset`.
- :mod:`~lightning_sparse.data.avsr.av_digits`: :class:`AVDigitsDataModule`, spoken digits
  (FSDD) paired with MNIST images of the digit. NOT lip reading: the video is a static
  handwritten digit, a stand-in for exercising audio-visual fusion on a CPU with real data.
- :mod:`~lightning_sparse.data.avsr.transforms`: grey frames, mouth crops from landmarks,
  resizing, crops, normalisation, audio alignment.
- :mod:`~lightning_sparse.data.avsr.datamodule`: the dataset and DataModule bases, on the shared
  :class:`~lightning_sparse.data.base.DataModule` (resumable loaders, ``return_index``,
  ``set_train_sampler``).

**The AVSR batch** (every split of every DataModule here; :func:`collate_av`) is a dict:

| key | type, shape | meaning |
| --- | --- | --- |
| ``video`` | float32 ``(B, T_v, H, W)`` | grey frames at 25 fps, normalised (``(x / 255 - mean) / std``), zero-padded in time |
| ``video_lengths`` | int64 ``(B,)`` | valid frames of each clip |
| ``audio`` | float32 ``(B, N)`` | mono waveforms at 16 kHz, zero-padded at the end |
| ``audio_lengths`` | int64 ``(B,)`` | valid samples of each waveform (``640 * video_lengths`` when both streams are present) |
| ``targets`` | int64 ``(B, U)`` | token ids of the transcripts, padded with 0 (the CTC blank) |
| ``target_lengths`` | int64 ``(B,)`` | valid ids of each row of ``targets`` |
| ``text`` | ``list[str]`` | the normalised transcripts |
| ``index`` | int64 ``(B,)`` | only in training batches with ``return_index=True``: positions in ``train_dataset`` |

With ``modality="audio"`` the batches have no ``video`` / ``video_lengths``, with ``"video"`` no
``audio`` / ``audio_lengths``. When both streams are present, each item's audio is trimmed or
zero-padded to exactly 640 samples (16 kHz / 25 fps) per video frame. Token ids come from the
DataModule's ``tokenizer`` (``vocab_size`` ids, 0 the blank).

Examples:
    >>> import torch
    >>> batch = collate_av([{"video": torch.zeros(2, 4, 4), "audio": torch.zeros(1280), "text": "a",
    ...                      "targets": torch.tensor([3]), "index": 0}])
    >>> sorted(batch)
    ['audio', 'audio_lengths', 'target_lengths', 'targets', 'text', 'video', 'video_lengths']
"""

from lightning_sparse.data.avsr.av_digits import (
    MNIST_MEAN,
    MNIST_STD,
    AVDigitsDataModule,
    AVDigitsDataset,
    pair_images,
    read_mnist_npz,
)
from lightning_sparse.data.avsr.collate import collate_av
from lightning_sparse.data.avsr.datamodule import MODALITIES, AVSpeechDataset, AVSRDataModule
from lightning_sparse.data.avsr.grid import (
    GRID_ALIGN_UNITS_PER_SECOND,
    GRID_CROP_BOX,
    GRID_GRAMMAR,
    GRIDClips,
    GRIDDataModule,
    GRIDDataset,
    find_mouth_crops,
    grid_transcript,
    read_align,
    read_audio_track,
    read_mouth_crops,
)
from lightning_sparse.data.avsr.label_lists import LabelRow, LRS3LabelListDataset, read_label_list
from lightning_sparse.data.avsr.lrs3 import (
    LRS3_SPLITS,
    LRS3DataModule,
    LRS3Dataset,
    lrs3_videos,
    read_landmarks,
    read_lrs3_text,
    read_lrs3_words,
)
from lightning_sparse.data.avsr.text import UnitsTokenizer, build_avsr_tokenizer
from lightning_sparse.data.avsr.transforms import (
    AUDIO_SAMPLES_PER_FRAME,
    AVSR_MEAN,
    AVSR_STD,
    AVSRVideoTransform,
    align_audio,
    crop_box,
    crop_mouth,
    mouth_centers,
    normalize_frames,
    resize_frames,
    to_grayscale,
)

__all__ = [
    "AUDIO_SAMPLES_PER_FRAME",
    "AVDigitsDataModule",
    "AVDigitsDataset",
    "AVSRDataModule",
    "AVSRVideoTransform",
    "AVSR_MEAN",
    "AVSR_STD",
    "AVSpeechDataset",
    "GRIDClips",
    "GRIDDataModule",
    "GRIDDataset",
    "GRID_ALIGN_UNITS_PER_SECOND",
    "GRID_CROP_BOX",
    "GRID_GRAMMAR",
    "LRS3DataModule",
    "LRS3Dataset",
    "LRS3LabelListDataset",
    "LRS3_SPLITS",
    "LabelRow",
    "MNIST_MEAN",
    "MNIST_STD",
    "MODALITIES",
    "UnitsTokenizer",
    "align_audio",
    "build_avsr_tokenizer",
    "collate_av",
    "crop_box",
    "crop_mouth",
    "find_mouth_crops",
    "grid_transcript",
    "lrs3_videos",
    "mouth_centers",
    "normalize_frames",
    "pair_images",
    "read_align",
    "read_audio_track",
    "read_label_list",
    "read_landmarks",
    "read_lrs3_text",
    "read_lrs3_words",
    "read_mnist_npz",
    "read_mouth_crops",
    "resize_frames",
    "to_grayscale",
]
