"""Speech data: audio files, transcripts, length-bucketed batches and cached log-mel features.

Datasets (:mod:`~lightning_sparse.data.speech.datasets`): LibriSpeech, LJ Speech, the Free
Spoken Digit Dataset and JSON-lines manifests, items ``{"audio", "text", "targets", "index"}``.
DataModules (:mod:`~lightning_sparse.data.speech.datamodule`) on the shared
:class:`~lightning_sparse.data.base.DataModule` base: :class:`SpeechDataModule`,
:class:`LibriSpeechDataModule`, :class:`LJSpeechDataModule`, :class:`SpokenDigitsDataModule`,
:class:`ManifestDataModule`.

**The speech batch** (every split of every speech DataModule; :func:`collate_speech`) is a dict:

| key | type, shape | meaning |
| --- | --- | --- |
| ``audio`` | float32 ``(B, T)`` | waveforms at ``sample_rate``, zero-padded at the end |
| ``audio_lengths`` | int64 ``(B,)`` | valid samples of each waveform |
| ``targets`` | int64 ``(B, S)`` | token ids of the transcripts, padded with 0 (the blank) |
| ``target_lengths`` | int64 ``(B,)`` | valid ids of each row of ``targets`` |
| ``text`` | ``list[str]`` | the normalized transcripts |
| ``index`` | int64 ``(B,)`` | only in training batches with ``return_index=True``: positions in ``train_dataset`` |

With ``feature_cache=True``, ``features`` float32 ``(B, T', n_mels)`` (log-mel frames of
:class:`~lightning_sparse.models.layers.audio.LogMelFilterbank` with the DataModule's
``frontend_settings``, zero-padded) and ``feature_lengths`` int64 ``(B,)`` replace ``audio``
and ``audio_lengths``. Token ids come from the DataModule's ``tokenizer``
(:mod:`lightning_sparse.core.text`, ``vocab_size`` ids, 0 the CTC blank).

Examples:
    >>> import torch
    >>> batch = collate_speech([{"audio": torch.ones(4), "text": "a", "targets": torch.tensor([3]), "index": 0}])
    >>> sorted(batch)
    ['audio', 'audio_lengths', 'target_lengths', 'targets', 'text']
"""

from lightning_sparse.data.speech.audio import audio_info, read_audio, resample
from lightning_sparse.data.speech.collate import collate_speech
from lightning_sparse.data.speech.datamodule import (
    FSDD_TEST_TAKES,
    LibriSpeechDataModule,
    LJSpeechDataModule,
    ManifestDataModule,
    SpeechDataModule,
    SpokenDigitsDataModule,
)
from lightning_sparse.data.speech.datasets import (
    DIGIT_WORDS,
    LIBRISPEECH_SPLITS,
    LibriSpeechDataset,
    LJSpeechDataset,
    ManifestDataset,
    SpeechDataset,
    SpokenDigitsDataset,
    Utterance,
    librispeech_utterances,
    ljspeech_utterances,
    manifest_utterances,
    parse_fsdd_name,
    spoken_digit_utterances,
)
from lightning_sparse.data.speech.features import FEATURE_SETTINGS, FeatureCache, frontend_settings

__all__ = [
    "DIGIT_WORDS",
    "FEATURE_SETTINGS",
    "FSDD_TEST_TAKES",
    "FeatureCache",
    "LIBRISPEECH_SPLITS",
    "LJSpeechDataModule",
    "LJSpeechDataset",
    "LibriSpeechDataModule",
    "LibriSpeechDataset",
    "ManifestDataModule",
    "ManifestDataset",
    "SpeechDataModule",
    "SpeechDataset",
    "SpokenDigitsDataModule",
    "SpokenDigitsDataset",
    "Utterance",
    "audio_info",
    "collate_speech",
    "frontend_settings",
    "librispeech_utterances",
    "ljspeech_utterances",
    "manifest_utterances",
    "parse_fsdd_name",
    "read_audio",
    "resample",
    "spoken_digit_utterances",
]
