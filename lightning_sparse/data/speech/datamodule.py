"""Speech DataModules: LibriSpeech, LJ Speech, the Free Spoken Digit Dataset and manifests.

:class:`SpeechDataModule` is the base: the tokenizer (``vocab_size``), the sample rate, the
``max_duration`` filter and the seeded ``train_fraction`` subset of the training split, the
feature cache, length-bucketed training batches and the speech batch dict
(:mod:`lightning_sparse.data.speech`). Its subclasses only list the utterances of each split.
The training loader is a :class:`~lightning_sparse.data.loading.ResumableDataLoader` over an
:class:`~lightning_sparse.data.loading.EpochSampler` (with ``bucketing``, through a
:class:`~lightning_sparse.data.loading.BucketBatchSampler`), so exact mid-epoch resume, DDP
sharding and a callback's training sampler (``set_train_sampler``) work as for every
:class:`~lightning_sparse.data.base.DataModule`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from lightning_sparse._validation import check_bool, check_choice, check_int, check_number
from lightning_sparse.core.text import build_tokenizer
from lightning_sparse.data.base import DataModule, check_count
from lightning_sparse.data.loading import BucketBatchSampler, EpochSampler, ResumableDataLoader
from lightning_sparse.data.speech.collate import collate_speech
from lightning_sparse.data.speech.datasets import (
    SpeechDataset,
    Utterance,
    librispeech_utterances,
    ljspeech_utterances,
    manifest_utterances,
    parse_fsdd_name,
    spoken_digit_utterances,
)
from lightning_sparse.data.speech.features import FeatureCache, frontend_settings
from lightning_sparse.data.splits import stratified_take

__all__ = [
    "FSDD_TEST_TAKES",
    "LJSpeechDataModule",
    "LibriSpeechDataModule",
    "ManifestDataModule",
    "SpeechDataModule",
    "SpokenDigitsDataModule",
]

FSDD_TEST_TAKES: tuple[int, ...] = tuple(range(5))
"""The Free Spoken Digit Dataset's official test takes (0-4); takes 5-49 are the training takes."""


def _names(name: str, value: Any, allow_empty: bool = True) -> tuple[str, ...]:
    """A name or a sequence of names as a tuple of non-empty strings."""
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, Sequence) or not all(isinstance(v, str) and v for v in names) \
            or (not allow_empty and not names):
        what = "a name or a non-empty list of names" if not allow_empty else "a name or a list of names"
        raise ValueError(f"`{name}` must be {what}, got {value!r}.")
    return tuple(names)


class SpeechDataModule(DataModule):
    """The base of the speech DataModules (subclasses implement :meth:`utterances`).

    Batches are the speech batch dict of :mod:`lightning_sparse.data.speech`: ``audio`` and
    ``audio_lengths`` (or, with ``feature_cache=True``, ``features`` and ``feature_lengths``),
    ``targets``, ``target_lengths``, ``text``, and with ``return_index=True`` the training
    batches' ``index`` (positions in ``train_dataset``).

    ``setup`` lists every split, drops training utterances longer than ``max_duration``, keeps
    a seeded ``train_fraction`` of the rest (stratified by speaker, by digit for the spoken
    digits) and wraps the splits in a :class:`~lightning_sparse.data.speech.features.FeatureCache`
    when ``feature_cache``. Validation and test splits are kept whole, in order.

    Args:
        sample_rate: Rate every recording is resampled to, in Hz.
        tokenizer: ``"char"`` or the path of a SentencePiece ``.model``
            (:func:`~lightning_sparse.core.text.build_tokenizer`); built at construction.
        bucketing: Length-bucketed training batches (:class:`~lightning_sparse.data.loading.BucketBatchSampler`);
            else batches of the epoch's order.
        bucket_size: Batches per sorted chunk of the epoch's order when ``bucketing``.
        feature_cache: Batches carry log-mel ``features`` computed once per utterance instead of
            ``audio``.
        features: ``LogMelFilterbank`` settings besides ``sample_rate`` (``n_mels``,
            ``win_length``, ``hop_length``, ``n_fft``) for the feature cache; None: its defaults.
            :attr:`frontend_settings` is the full set, for building the task's own front end.
        cache_dir: Keep the cached features on disk here too (needs ``feature_cache``).
        max_duration: Drop training utterances longer than this many seconds (None: keep all).
        train_fraction: Keep this seeded fraction of the training utterances (quick runs).
        **kwargs: ``batch_size``, ``num_workers``, ``seed`` (of the splits and subsets),
            ``return_index``: see :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: If an argument is out of range (naming it).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        tokenizer: str = "char",
        bucketing: bool = True,
        bucket_size: int = 100,
        feature_cache: bool = False,
        features: dict[str, int] | None = None,
        cache_dir: str | None = None,
        max_duration: float | None = None,
        train_fraction: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_int("sample_rate", sample_rate, 1)
        check_bool("bucketing", bucketing)
        check_count("bucket_size", bucket_size, 1)
        check_bool("feature_cache", feature_cache)
        self._frontend_settings = frontend_settings(sample_rate, features)
        if cache_dir is not None and not feature_cache:
            raise ValueError(f"`cache_dir` needs `feature_cache=True` (it holds cached features), got "
                             f"cache_dir={cache_dir!r} with feature_cache=False.")
        if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
            raise ValueError(f"`cache_dir` must be a folder path or None, got {cache_dir!r}.")
        check_number("max_duration", max_duration, 0.0, low_open=True, allow_none=True)
        check_number("train_fraction", train_fraction, 0.0, 1.0, low_open=True)
        self.tokenizer = build_tokenizer(tokenizer)
        self.sample_rate = sample_rate
        self.bucketing, self.bucket_size = bucketing, bucket_size
        self.feature_cache, self.features, self.cache_dir = feature_cache, features, cache_dir
        self.max_duration, self.train_fraction = max_duration, train_fraction

    # ------------------------------------------------------------------ what the task reads
    @property
    def vocab_size(self) -> int:
        """Token ids of the tokenizer, the CTC blank (id 0) included."""
        return self.tokenizer.vocab_size

    @property
    def frontend_settings(self) -> dict[str, Any]:
        """Every ``LogMelFilterbank`` argument of the feature cache (``sample_rate`` included)."""
        return dict(self._frontend_settings)

    # ------------------------------------------------------------------ splits
    def utterances(self) -> dict[str, list[Utterance] | None]:
        """The utterances of ``"train"``, ``"val"`` and ``"test"`` (None: no such split)."""
        raise NotImplementedError

    def _stratum(self, utterance: Utterance) -> str:
        """The group ``train_fraction`` stratifies by (the speaker)."""
        return utterance.speaker

    def _dataset(self, utterances: list[Utterance] | None) -> SpeechDataset | None:
        if utterances is None:
            return None
        return SpeechDataset(utterances, self.tokenizer, self.sample_rate)

    def _filter_train(self, train: SpeechDataset) -> SpeechDataset:
        total = len(train)
        if self.max_duration is not None:
            keep = np.flatnonzero(train.durations <= self.max_duration)
            if len(keep) == 0:
                raise ValueError(f"`max_duration` must keep some training utterances, got {self.max_duration!r} "
                                 f"(the shortest of {total} lasts {train.durations.min():.2f} s).")
            if len(keep) < total:
                rank_zero_info(f"{type(self).__name__}: max_duration={self.max_duration:g} s keeps "
                               f"{len(keep)} of {total} training utterances.")
                train = train.subset(keep)
        if self.train_fraction < 1.0:
            n = max(1, round(self.train_fraction * len(train)))
            strata = np.array([self._stratum(u) for u in train.utterances])
            taken, _ = stratified_take(strata, n, np.random.default_rng(self.seed))
            train = train.subset(taken)
        return train

    def _wrap(self, dataset: SpeechDataset | None) -> Dataset | None:
        if dataset is None or not self.feature_cache:
            return dataset
        features = {k: v for k, v in self._frontend_settings.items() if k != "sample_rate"}
        return FeatureCache(dataset, features, self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        """List and build every split (all of them, any stage; once)."""
        if self.train_dataset is not None:
            return
        splits = self.utterances()
        if not splits.get("train"):
            raise ValueError(f"{type(self).__name__}: the training split holds no utterances.")
        train = self._filter_train(self._dataset(splits["train"]))
        self.train_dataset = self._wrap(train)
        self.val_dataset = self._wrap(self._dataset(splits.get("val") or None))
        self.test_dataset = self._wrap(self._dataset(splits.get("test") or None))

    # ------------------------------------------------------------------ loaders
    def _loader(self, dataset: Dataset | None, name: str) -> DataLoader:
        """The speech loaders: collated dicts; resumable (and bucketed) for ``"train"``."""
        if dataset is None:
            raise self._no_setup(name)
        common = dict(num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                      collate_fn=partial(collate_speech, return_index=self.return_index and name == "train"))
        if name != "train":
            return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, **common)
        replicas, rank = self._shards()
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        sampler = EpochSampler(len(dataset), seed, self._train_sampler, replicas, rank)
        if not self.bucketing:
            return ResumableDataLoader(dataset, batch_size=self.batch_size, sampler=sampler,
                                       progress=self._batches_trained, **common)
        batches = BucketBatchSampler(sampler, self.batch_size, lengths=dataset.durations,
                                     bucket_size=self.bucket_size, seed=seed)
        return ResumableDataLoader(dataset, batch_sampler=batches, progress=self._batches_trained, **common)

    def test_dataloader(self) -> DataLoader | list:
        """Batches of the test split, in order; ``[]`` when there is none."""
        if self.test_dataset is None and self.train_dataset is not None:
            return []
        return self._loader(self.test_dataset, "test")


class LibriSpeechDataModule(SpeechDataModule):
    """LibriSpeech (Panayotov et al. 2015) or any folder of its layout, by split folders.

    Args:
        data_dir: The folder holding the split folders (or the extracted ``LibriSpeech/``).
        train_splits: Training split folder(s), e.g. ``("train-clean-100", "train-clean-360")``.
        val_splits: Validation split folder(s); ``()``: none.
        test_splits: Test split folder(s); ``()``: none.
        **kwargs: See :class:`SpeechDataModule` and :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: If an argument is malformed (naming it).
        FileNotFoundError: In ``setup``, if a split folder, transcript or audio file is missing.
    """

    def __init__(self, data_dir: str, train_splits: Sequence[str] = ("train-clean-100",),
                 val_splits: Sequence[str] = ("dev-clean",), test_splits: Sequence[str] = ("test-clean",),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir).expanduser()
        self.train_splits = _names("train_splits", train_splits, allow_empty=False)
        self.val_splits = _names("val_splits", val_splits)
        self.test_splits = _names("test_splits", test_splits)

    def utterances(self) -> dict[str, list[Utterance] | None]:
        """Every split's utterances (see :func:`~lightning_sparse.data.speech.datasets.librispeech_utterances`)."""
        def listed(splits: tuple[str, ...]) -> list[Utterance] | None:
            return [u for split in splits for u in librispeech_utterances(self.data_dir, split)] or None

        return {"train": listed(self.train_splits),
                "val": listed(self.val_splits) if self.val_splits else None,
                "test": listed(self.test_splits) if self.test_splits else None}


class LJSpeechDataModule(SpeechDataModule):
    """LJ Speech (Ito 2017), one speaker, with a seeded validation and test split.

    Args:
        data_dir: The folder holding ``metadata.csv`` and ``wavs/`` (or ``LJSpeech-1.1/``).
        val_fraction: Share of the utterances in the validation split (0: none).
        test_fraction: Share of the utterances in the test split (0: none).
        **kwargs: See :class:`SpeechDataModule` and :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: If a fraction is outside ``[0, 1)`` or they leave no training utterance.
        FileNotFoundError: In ``setup``, if ``metadata.csv`` or an audio file is missing.
    """

    def __init__(self, data_dir: str, val_fraction: float = 0.05, test_fraction: float = 0.05,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_number("val_fraction", val_fraction, 0.0, 1.0, high_open=True)
        check_number("test_fraction", test_fraction, 0.0, 1.0, high_open=True)
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(f"`val_fraction` + `test_fraction` must be < 1 (leaving training utterances), got "
                             f"{val_fraction!r} + {test_fraction!r}.")
        self.data_dir = Path(data_dir).expanduser()
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    def utterances(self) -> dict[str, list[Utterance] | None]:
        """``metadata.csv`` split by a permutation of ``seed``: test, then validation, then train."""
        utterances = ljspeech_utterances(self.data_dir)
        n = len(utterances)
        order = np.random.default_rng(self.seed).permutation(n)
        n_test, n_val = round(self.test_fraction * n), round(self.val_fraction * n)
        if n_test + n_val >= n:
            raise ValueError(f"`val_fraction` and `test_fraction` must leave training utterances, got "
                             f"{self.val_fraction!r} and {self.test_fraction!r} of {n}.")

        def pick(positions: np.ndarray) -> list[Utterance] | None:
            return [utterances[i] for i in np.sort(positions)] or None

        return {"test": pick(order[:n_test]), "val": pick(order[n_test : n_test + n_val]),
                "train": pick(order[n_test + n_val :])}


class SpokenDigitsDataModule(SpeechDataModule):
    """The Free Spoken Digit Dataset (Jakobovski et al.): 6 speakers x 10 digits x 50 takes, 8 kHz.

    Transcripts are the digits as words (``"seven"``). Two splits:

    * ``split="takes"``: the official split, takes 0-4 for test and 5-49 for training (every
      speaker in both); the validation split is the takes ``val_takes[0]..val_takes[1]``
      (inclusive) carved from the training takes.
    * ``split="speakers"``: speaker-disjoint, every take: ``test_speakers`` for test,
      ``val_speakers`` for validation, the other speakers for training.

    ``train_fraction`` stratifies by digit.

    Args:
        data_dir: The folder holding ``recordings/`` (or the ``{digit}_{speaker}_{take}.wav`` files).
        split: ``"takes"`` or ``"speakers"``.
        val_takes: ``(first, last)`` validation takes for ``split="takes"``, within 5-49; None: no
            validation split.
        val_speakers: Validation speakers for ``split="speakers"``; ``()``: none.
        test_speakers: Test speakers for ``split="speakers"`` (at least one).
        **kwargs: See :class:`SpeechDataModule` and :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: If an argument is malformed; in ``setup``, if a named speaker has no recordings.
        FileNotFoundError: In ``setup``, if ``data_dir`` holds no recordings.
    """

    def __init__(self, data_dir: str, split: str = "takes", val_takes: tuple[int, int] | None = (5, 9),
                 val_speakers: Sequence[str] = ("nicolas",), test_speakers: Sequence[str] = ("theo",),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_choice("split", split, ("takes", "speakers"))
        if val_takes is not None:
            ok = isinstance(val_takes, Sequence) and len(val_takes) == 2 and all(
                isinstance(t, int) and not isinstance(t, bool) for t in val_takes)
            if not ok or not 5 <= val_takes[0] <= val_takes[1] <= 49 or val_takes[1] - val_takes[0] >= 44:
                raise ValueError("`val_takes` must be None or (first, last) takes with 5 <= first <= last <= 49 "
                                 f"leaving training takes, got {val_takes!r}.")
            val_takes = (int(val_takes[0]), int(val_takes[1]))
        self.val_speakers = _names("val_speakers", val_speakers)
        self.test_speakers = _names("test_speakers", test_speakers, allow_empty=False)
        if set(self.val_speakers) & set(self.test_speakers):
            raise ValueError(f"`val_speakers` and `test_speakers` must be disjoint, got {self.val_speakers!r} and "
                             f"{self.test_speakers!r}.")
        self.data_dir = Path(data_dir).expanduser()
        self.split, self.val_takes = split, val_takes

    def _stratum(self, utterance: Utterance) -> str:
        return utterance.text  # the digit

    def utterances(self) -> dict[str, list[Utterance] | None]:
        """The recordings split by takes or by speakers (see the class docstring)."""
        every = spoken_digit_utterances(self.data_dir)
        if self.split == "takes":
            def take(u: Utterance) -> int:
                return parse_fsdd_name(Path(u.path).name)[2]

            low, high = self.val_takes if self.val_takes is not None else (0, -1)
            test = [u for u in every if take(u) in FSDD_TEST_TAKES]
            val = [u for u in every if low <= take(u) <= high]
            train = [u for u in every if take(u) not in FSDD_TEST_TAKES and not low <= take(u) <= high]
        else:
            speakers = sorted({u.speaker for u in every})
            for name, chosen in (("val_speakers", self.val_speakers), ("test_speakers", self.test_speakers)):
                for speaker in chosen:
                    check_choice(name, speaker, speakers, extra=f" (the speakers in {self.data_dir})")
            test = [u for u in every if u.speaker in self.test_speakers]
            val = [u for u in every if u.speaker in self.val_speakers]
            train = [u for u in every if u.speaker not in self.test_speakers + self.val_speakers]
        return {"train": train or None, "val": val or None, "test": test or None}


class ManifestDataModule(SpeechDataModule):
    """Splits given as JSON-lines manifests (``{"audio_filepath", "text", "duration"}`` per line).

    Args:
        train_manifest: The training manifest.
        val_manifest: The validation manifest (None: no validation split).
        test_manifest: The test manifest (None: no test split).
        **kwargs: See :class:`SpeechDataModule` and :class:`~lightning_sparse.data.base.DataModule`.

    Raises:
        ValueError: In ``setup``, if a manifest line is malformed (naming the file and line).
        FileNotFoundError: In ``setup``, if a manifest does not exist.
    """

    def __init__(self, train_manifest: str, val_manifest: str | None = None, test_manifest: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, value in (("train_manifest", train_manifest), ("val_manifest", val_manifest),
                            ("test_manifest", test_manifest)):
            if not (isinstance(value, (str, os.PathLike)) or (value is None and name != "train_manifest")):
                raise ValueError(f"`{name}` must be the path of a JSON-lines manifest"
                                 f"{'' if name == 'train_manifest' else ' or None'}, got {value!r}.")
        self.train_manifest, self.val_manifest, self.test_manifest = train_manifest, val_manifest, test_manifest

    def utterances(self) -> dict[str, list[Utterance] | None]:
        """Every manifest's lines."""
        def listed(manifest: str | None) -> list[Utterance] | None:
            return None if manifest is None else manifest_utterances(manifest)

        return {"train": listed(self.train_manifest), "val": listed(self.val_manifest),
                "test": listed(self.test_manifest)}
