"""The feature cache: log-mel features of every utterance computed once, in memory and on disk.

:class:`FeatureCache` wraps a :class:`~lightning_sparse.data.speech.datasets.SpeechDataset`;
its items carry ``"features"`` ``(T', n_mels)`` float32 instead of ``"audio"``: the output of
:class:`~lightning_sparse.models.layers.audio.LogMelFilterbank` (the speech task's own front
end, so cached and live features are the same numbers) on the utterance alone, cut to its
``feature_lengths``. Since the filterbank frames lie inside the utterance (``center=False``),
these are the frames the front end computes for that utterance inside any zero-padded batch.

An utterance's features are computed at its first use and kept in memory for the life of the
process (each DataLoader worker keeps its own copy: with ``num_workers > 0`` use persistent
workers, or a ``cache_dir``). With ``cache_dir`` they are also written to
``<cache_dir>/<key[:2]>/<key>.npy``, the key a hash of the audio file (resolved path, size,
modification time), the sample rate and every filterbank setting, so other processes, ranks
and later runs read them instead; a changed file or setting gets a new key. Files are written
atomically (a temporary name, then a rename), so concurrent ranks may share one ``cache_dir``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_sparse.data.speech.datasets import SpeechDataset
from lightning_sparse.models.layers.audio import LogMelFilterbank

__all__ = ["FEATURE_SETTINGS", "FeatureCache", "frontend_settings"]

_KEY_VERSION = 1  # bump when the features of the same settings change

FEATURE_SETTINGS: tuple[str, ...] = tuple(
    name for name in inspect.signature(LogMelFilterbank).parameters if name != "sample_rate"
)
"""The keys of a ``features`` dict: ``LogMelFilterbank``'s arguments other than ``sample_rate``."""


def frontend_settings(sample_rate: int, features: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every ``LogMelFilterbank`` argument: ``sample_rate``, ``features`` and the defaults of the rest.

    Raises:
        ValueError: If ``features`` is not a dict of :data:`FEATURE_SETTINGS` keys, or a value is
            out of range (the message names ``features`` and the setting).

    Examples:
        >>> frontend_settings(8000, {"n_mels": 40})
        {'sample_rate': 8000, 'n_mels': 40, 'win_length': 400, 'hop_length': 160, 'n_fft': 512}
        >>> frontend_settings(16000, {"mels": 40})
        Traceback (most recent call last):
        ...
        ValueError: `features` keys must be among ('n_mels', 'win_length', 'hop_length', 'n_fft'), got 'mels'.
    """
    features = {} if features is None else features
    if not isinstance(features, dict):
        raise ValueError(f"`features` must be a dict of LogMelFilterbank settings {FEATURE_SETTINGS} or None, "
                         f"got {features!r}.")
    for key in features:
        if key not in FEATURE_SETTINGS:
            raise ValueError(f"`features` keys must be among {FEATURE_SETTINGS}, got {key!r}.")
    params = inspect.signature(LogMelFilterbank).parameters
    settings = {"sample_rate": sample_rate, **{k: features.get(k, params[k].default) for k in FEATURE_SETTINGS}}
    try:
        LogMelFilterbank(**settings)
    except ValueError as err:
        raise ValueError(f"`features`: {err}") from None
    return settings


class FeatureCache(Dataset):
    """A speech dataset's items with cached log-mel ``"features"`` instead of ``"audio"``.

    Items: ``{"features": (T', n_mels) float32, "text", "targets", "index"}``.

    Args:
        dataset: The utterances (its ``sample_rate`` is the filterbank's).
        features: ``LogMelFilterbank`` settings other than ``sample_rate`` (:data:`FEATURE_SETTINGS`).
        cache_dir: Also keep the features on disk here (see the module docstring); None: memory only.

    Examples:
        >>> import tempfile, numpy as np, soundfile as sf
        >>> from lightning_sparse.data.speech.datasets import Utterance
        >>> path = tempfile.mkdtemp() + "/a.wav"
        >>> sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, 16000), 16000)
        >>> cached = FeatureCache(SpeechDataset([Utterance("a", path, "hi")]), {"n_mels": 40})
        >>> item = cached[0]
        >>> item["features"].shape, item["text"]
        (torch.Size([97, 40]), 'hi')
        >>> live, n = LogMelFilterbank(n_mels=40)(cached.dataset.audio(0)[None])
        >>> torch.equal(live[0, : n[0]], item["features"])
        True
    """

    def __init__(self, dataset: SpeechDataset, features: dict[str, Any] | None = None,
                 cache_dir: str | os.PathLike | None = None) -> None:
        self.dataset = dataset
        self.settings = frontend_settings(dataset.sample_rate, features)
        self.cache_dir = None if cache_dir is None else Path(cache_dir).expanduser()
        self._memory: dict[int, torch.Tensor] = {}
        self._frontend: LogMelFilterbank | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def durations(self) -> np.ndarray:
        """The wrapped dataset's durations in seconds."""
        return self.dataset.durations

    def key(self, i: int) -> str:
        """The disk cache key of item ``i``: a hash of its file and the filterbank settings."""
        path = Path(self.dataset.utterances[i].path).resolve()
        stat = path.stat()
        record = {"file": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                  "settings": self.settings, "version": _KEY_VERSION}
        return hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()

    def compute(self, i: int) -> torch.Tensor:
        """Item ``i``'s features, computed from its audio (no cache)."""
        if self._frontend is None:
            self._frontend = LogMelFilterbank(**self.settings)
        audio = self.dataset.audio(i)
        with torch.no_grad():
            feats, lengths = self._frontend(audio[None], torch.tensor([audio.shape[0]]))
        return feats[0, : int(lengths[0])].contiguous()

    def features(self, i: int) -> torch.Tensor:
        """Item ``i``'s features ``(T', n_mels)``: from memory, the disk cache, or computed (and kept)."""
        cached = self._memory.get(i)
        if cached is not None:
            return cached
        if self.cache_dir is None:
            feats = self.compute(i)
        else:
            key = self.key(i)
            file = self.cache_dir / key[:2] / f"{key}.npy"
            if file.is_file():
                feats = torch.from_numpy(np.load(file))
            else:
                feats = self.compute(i)
                file.parent.mkdir(parents=True, exist_ok=True)
                tmp = file.with_name(f"{file.stem}.{os.getpid()}.tmp")
                with open(tmp, "wb") as handle:
                    np.save(handle, feats.numpy())
                os.replace(tmp, file)
        self._memory[i] = feats
        return feats

    def precompute(self) -> FeatureCache:
        """Compute (or load) every item's features now, e.g. before timing training; returns self."""
        for i in range(len(self)):
            self.features(i)
        return self

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} utterances")
        i %= len(self)
        return {"features": self.features(i), **self.dataset.labels(i)}

    def __repr__(self) -> str:
        return f"FeatureCache({self.dataset!r}, settings={self.settings}, cache_dir={self.cache_dir})"
