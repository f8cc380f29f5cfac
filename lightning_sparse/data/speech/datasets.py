"""Speech datasets: LibriSpeech, LJ Speech, the Free Spoken Digit Dataset and JSON-lines manifests.

Every dataset is a :class:`SpeechDataset`: a list of :class:`Utterance` (file, transcript,
speaker, duration when known) whose transcripts are normalized and encoded once, at
construction, by the tokenizer. Items are dicts::

    {"audio": (T,) float32, "text": str, "targets": (S,) int64, "index": int}

``audio`` is read when the item is (:func:`~lightning_sparse.data.speech.audio.read_audio`: mono,
float32, resampled to ``sample_rate``), ``text`` is the normalized transcript, ``targets`` its
token ids (no blank), ``index`` the item's position in the dataset. :attr:`SpeechDataset.durations`
gives every item's duration in seconds from the manifest or the files' headers, without decoding
any audio (what length bucketing needs).

Layouts (``root`` is the folder given; a relative path is relative to the working directory):

* LibriSpeech: ``<root>/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` with one
  ``<speaker>-<chapter>.trans.txt`` per chapter (lines ``<utt-id> TRANSCRIPT``); ``root`` may
  also be the folder that holds the extracted ``LibriSpeech/`` folder.
* LJ Speech: ``<root>/metadata.csv`` (lines ``id|text|normalized text``; the normalized text,
  which spells numbers out, is the transcript) and ``<root>/wavs/<id>.wav`` (or ``.flac``);
  ``root`` may also hold ``LJSpeech-1.1/``.
* Free Spoken Digit Dataset: ``<root>/recordings/{digit}_{speaker}_{take}.wav`` (or the files
  directly in ``root``); the transcript is the digit as a word (``"seven"``).
* Manifest: a JSON-lines file, one ``{"audio_filepath", "text", "duration"}`` object per line
  (``duration`` in seconds, optional; ``speaker`` optional); relative paths are resolved against
  the manifest's folder.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lightning_sparse.core.text import build_tokenizer
from lightning_sparse.data.speech.audio import audio_info, read_audio

__all__ = [
    "DIGIT_WORDS",
    "LIBRISPEECH_SPLITS",
    "LJSpeechDataset",
    "LibriSpeechDataset",
    "ManifestDataset",
    "SpeechDataset",
    "SpokenDigitsDataset",
    "Utterance",
    "librispeech_utterances",
    "ljspeech_utterances",
    "manifest_utterances",
    "parse_fsdd_name",
    "spoken_digit_utterances",
]

DIGIT_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
"""The transcripts of the Free Spoken Digit Dataset's digits 0-9."""

LIBRISPEECH_SPLITS: tuple[str, ...] = (
    "train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other", "test-clean", "test-other",
)
"""The published LibriSpeech splits (any folder of the same layout works as a split)."""

_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z0-9]+)_(\d+)\.wav$")


@dataclass(frozen=True)
class Utterance:
    """One recording and its transcript.

    Attributes:
        id: The utterance's name (``"84-121123-0000"``, ``"LJ001-0001"``, ``"7_theo_12"``).
        path: The audio file.
        text: The transcript as the source gives it (normalized by the dataset).
        speaker: The speaker's name or id (``""`` when unknown).
        duration: Seconds, when the source gives it (else read from the file's header on demand).
    """

    id: str
    path: str
    text: str
    speaker: str = ""
    duration: float | None = None


def _tokenizer(tokenizer: Any) -> Any:
    return build_tokenizer(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else tokenizer


class SpeechDataset(Dataset):
    """Utterances as items ``{"audio", "text", "targets", "index"}`` (see the module docstring).

    Args:
        utterances: The recordings, in item order.
        tokenizer: ``"char"``, the path of a SentencePiece ``.model``
            (:func:`~lightning_sparse.core.text.build_tokenizer`) or a tokenizer object; it
            normalizes and encodes every transcript once, here.
        sample_rate: Rate the audio is resampled to, in Hz.

    Examples:
        >>> import tempfile, numpy as np, soundfile as sf
        >>> path = tempfile.mkdtemp() + "/a.wav"
        >>> sf.write(path, np.zeros(4000, dtype=np.float32), 8000)
        >>> ds = SpeechDataset([Utterance("a", path, "Hello, World!")], sample_rate=16000)
        >>> item = ds[0]
        >>> item["audio"].shape, item["text"], item["targets"][:5].tolist(), item["index"]
        (torch.Size([8000]), 'hello world', [10, 7, 14, 14, 17], 0)
        >>> ds.durations.tolist()
        [0.5]
    """

    def __init__(self, utterances: Iterable[Utterance], tokenizer: Any = "char", sample_rate: int = 16000) -> None:
        tok = _tokenizer(tokenizer)
        self.utterances: list[Utterance] = list(utterances)
        self.sample_rate = sample_rate
        self.texts: list[str] = [tok.normalize(u.text) for u in self.utterances]
        encoded = [tok.encode(t) for t in self.texts]
        self._offsets = np.cumsum([0] + [len(e) for e in encoded]).astype(np.int64)
        self._ids = np.fromiter((i for e in encoded for i in e), dtype=np.int64, count=int(self._offsets[-1]))
        self._durations: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def durations(self) -> np.ndarray:
        """Every item's duration in seconds (float64 ``(N,)``): given ones, else the files' headers."""
        if self._durations is None:
            durations = np.empty(len(self.utterances), dtype=np.float64)
            for i, u in enumerate(self.utterances):
                if u.duration is None:
                    frames, rate = audio_info(u.path)
                    durations[i] = frames / rate
                else:
                    durations[i] = u.duration
            self._durations = durations
        return self._durations

    def targets(self, i: int) -> torch.Tensor:
        """Token ids ``(S,)`` int64 of item ``i``'s transcript."""
        return torch.from_numpy(self._ids[self._offsets[i] : self._offsets[i + 1]].copy())

    def audio(self, i: int) -> torch.Tensor:
        """The waveform ``(T,)`` float32 of item ``i`` at ``sample_rate``."""
        return read_audio(self.utterances[i].path, self.sample_rate)

    def labels(self, i: int) -> dict[str, Any]:
        """Item ``i`` without its audio: ``{"text", "targets", "index"}``."""
        return {"text": self.texts[i], "targets": self.targets(i), "index": i}

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} utterances")
        i %= len(self)
        return {"audio": self.audio(i), **self.labels(i)}

    def subset(self, indices: Sequence[int]) -> SpeechDataset:
        """A :class:`SpeechDataset` of the items at ``indices`` (positions renumbered from 0)."""
        indices = np.asarray(indices, dtype=np.int64)
        out = SpeechDataset.__new__(SpeechDataset)
        out.utterances = [self.utterances[i] for i in indices]
        out.sample_rate = self.sample_rate
        out.texts = [self.texts[i] for i in indices]
        lengths = self._offsets[indices + 1] - self._offsets[indices]
        out._offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        out._ids = (np.concatenate([self._ids[self._offsets[i] : self._offsets[i + 1]] for i in indices])
                    if len(indices) else np.zeros(0, np.int64))
        out._durations = None if self._durations is None else self._durations[indices]
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} utterances, sample_rate={self.sample_rate})"


# ---------------------------------------------------------------------------------------- layouts
def _folder(root: Path, name: str, nested: str) -> Path | None:
    for folder in (root / name, root / nested / name):
        if folder.is_dir():
            return folder
    return None


def librispeech_utterances(root: str | os.PathLike, split: str) -> list[Utterance]:
    """The utterances of one LibriSpeech split (``<root>/<split>`` or ``<root>/LibriSpeech/<split>``).

    Raises:
        FileNotFoundError: If the split's folder, its transcripts or an audio file is missing.
        ValueError: If a transcript line is malformed (naming the file and line).
    """
    root = Path(root).expanduser()
    folder = _folder(root, split, "LibriSpeech")
    if folder is None:
        raise FileNotFoundError(
            f"LibriSpeech split {split!r} not found: looked for {root / split} and {root / 'LibriSpeech' / split} "
            f"(published splits: {', '.join(LIBRISPEECH_SPLITS)})."
        )
    transcripts = sorted(folder.glob("*/*/*.trans.txt"))
    if not transcripts:
        raise FileNotFoundError(f"{folder} holds no <speaker>/<chapter>/<speaker>-<chapter>.trans.txt transcripts.")
    utterances = []
    for trans in transcripts:
        for number, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=1)
            utt = parts[0]
            if not re.fullmatch(r"[\w]+-[\w]+-[\w]+", utt):
                raise ValueError(f"{trans}:{number}: expected '<speaker>-<chapter>-<utt> TRANSCRIPT', got {line!r}.")
            path = trans.parent / f"{utt}.flac"
            if not path.is_file() and (trans.parent / f"{utt}.wav").is_file():
                path = trans.parent / f"{utt}.wav"
            if not path.is_file():
                raise FileNotFoundError(f"{trans}:{number}: no audio file {path} for utterance {utt!r}.")
            utterances.append(Utterance(utt, str(path), parts[1] if len(parts) > 1 else "", utt.split("-")[0]))
    return utterances


def ljspeech_utterances(root: str | os.PathLike) -> list[Utterance]:
    """The utterances of ``<root>/metadata.csv`` (or ``<root>/LJSpeech-1.1/metadata.csv``), in file order.

    Raises:
        FileNotFoundError: If ``metadata.csv`` or an audio file is missing.
        ValueError: If a line has no ``id|text`` fields (naming the file and line).
    """
    root = Path(root).expanduser()
    candidates = (root / "metadata.csv", root / "LJSpeech-1.1" / "metadata.csv")
    metadata = next((c for c in candidates if c.is_file()), None)
    if metadata is None:
        raise FileNotFoundError(f"LJ Speech's metadata.csv not found: looked for {' and '.join(map(str, candidates))}.")
    wavs = metadata.parent / "wavs"
    utterances = []
    for number, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("|")
        if len(fields) < 2 or not fields[0]:
            raise ValueError(f"{metadata}:{number}: expected 'id|text|normalized text', got {line!r}.")
        text = fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]
        path = next((p for p in (wavs / f"{fields[0]}.wav", wavs / f"{fields[0]}.flac") if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"{metadata}:{number}: no audio file {wavs / fields[0]}.wav or .flac.")
        utterances.append(Utterance(fields[0], str(path), text, "LJ"))
    return utterances


def parse_fsdd_name(name: str) -> tuple[int, str, int] | None:
    """``(digit, speaker, take)`` of a file name ``{digit}_{speaker}_{take}.wav`` (else None).

    Examples:
        >>> parse_fsdd_name("7_theo_12.wav"), parse_fsdd_name("notes.txt")
        ((7, 'theo', 12), None)
    """
    match = _FSDD_NAME.match(name)
    return None if match is None else (int(match[1]), match[2], int(match[3]))


def spoken_digit_utterances(root: str | os.PathLike) -> list[Utterance]:
    """Every recording of ``<root>/recordings/`` (or ``<root>/``), sorted by (speaker, digit, take).

    Raises:
        FileNotFoundError: If neither folder holds ``{digit}_{speaker}_{take}.wav`` files.
    """
    root = Path(root).expanduser()
    for folder in (root / "recordings", root):
        if folder.is_dir():
            found = [(parse_fsdd_name(p.name), p) for p in folder.iterdir()]
            found = [(parts, p) for parts, p in found if parts is not None]
            if found:
                found.sort(key=lambda x: (x[0][1], x[0][0], x[0][2]))
                return [Utterance(p.stem, str(p), DIGIT_WORDS[d], speaker) for (d, speaker, _), p in found]
    raise FileNotFoundError(f"No Free Spoken Digit Dataset recordings ({{digit}}_{{speaker}}_{{take}}.wav) in "
                            f"{root / 'recordings'} or {root}.")


def manifest_utterances(manifest: str | os.PathLike) -> list[Utterance]:
    """The lines of a JSON-lines manifest, in file order (relative paths against its folder).

    Raises:
        FileNotFoundError: If the manifest does not exist.
        ValueError: If a line is not a JSON object with ``audio_filepath`` and ``text`` (naming
            the file and line) or has a negative ``duration``.
    """
    path = Path(manifest).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"Manifest {path} does not exist.")
    utterances = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not a JSON object ({err.msg}).") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("audio_filepath"), str) \
                or not isinstance(entry.get("text"), str):
            raise ValueError(f"{path}:{number}: expected an object with string fields 'audio_filepath' and 'text', "
                             f"got {line.strip()[:120]!r}.")
        duration = entry.get("duration")
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                     or duration < 0):
            raise ValueError(f"{path}:{number}: 'duration' must be a number of seconds >= 0, got {duration!r}.")
        audio = Path(entry["audio_filepath"]).expanduser()
        audio = audio if audio.is_absolute() else path.parent / audio
        utterances.append(Utterance(entry.get("id", audio.stem), str(audio), entry["text"],
                                    str(entry.get("speaker", "")), None if duration is None else float(duration)))
    return utterances


# ---------------------------------------------------------------------------------------- datasets
class LibriSpeechDataset(SpeechDataset):
    """One or more LibriSpeech splits, in split order and then sorted by transcript file.

    Args:
        root: The folder holding the splits (or ``LibriSpeech/`` with them).
        splits: Split folder names, e.g. ``("train-clean-100",)``.
        tokenizer: See :class:`SpeechDataset`.
        sample_rate: See :class:`SpeechDataset`.
    """

    def __init__(self, root: str | os.PathLike, splits: Sequence[str] = ("dev-clean",), tokenizer: Any = "char",
                 sample_rate: int = 16000) -> None:
        utterances = [u for split in splits for u in librispeech_utterances(root, split)]
        super().__init__(utterances, tokenizer, sample_rate)


class LJSpeechDataset(SpeechDataset):
    """LJ Speech's utterances in ``metadata.csv`` order; transcripts from its normalized column.

    Args:
        root: The folder holding ``metadata.csv`` and ``wavs/`` (or ``LJSpeech-1.1/`` with them).
        tokenizer: See :class:`SpeechDataset`.
        sample_rate: See :class:`SpeechDataset`.
    """

    def __init__(self, root: str | os.PathLike, tokenizer: Any = "char", sample_rate: int = 16000) -> None:
        super().__init__(ljspeech_utterances(root), tokenizer, sample_rate)


class SpokenDigitsDataset(SpeechDataset):
    """Free Spoken Digit Dataset recordings, optionally only some speakers and takes.

    Args:
        root: The folder holding ``recordings/`` (or the ``.wav`` files).
        speakers: Keep only these speakers (None: all).
        takes: Keep only these take numbers (None: all); the official test split is takes 0-4.
        tokenizer: See :class:`SpeechDataset`.
        sample_rate: See :class:`SpeechDataset` (the recordings are 8 kHz).
    """

    def __init__(self, root: str | os.PathLike, speakers: Iterable[str] | None = None,
                 takes: Iterable[int] | None = None, tokenizer: Any = "char", sample_rate: int = 16000) -> None:
        keep_speakers = None if speakers is None else set(speakers)
        keep_takes = None if takes is None else {int(t) for t in takes}
        utterances = [u for u in spoken_digit_utterances(root)
                      if (keep_speakers is None or u.speaker in keep_speakers)
                      and (keep_takes is None or parse_fsdd_name(Path(u.path).name)[2] in keep_takes)]
        super().__init__(utterances, tokenizer, sample_rate)


class ManifestDataset(SpeechDataset):
    """The utterances of a JSON-lines manifest (see the module docstring), in file order.

    Args:
        manifest: The manifest file.
        tokenizer: See :class:`SpeechDataset`.
        sample_rate: See :class:`SpeechDataset`.
    """

    def __init__(self, manifest: str | os.PathLike, tokenizer: Any = "char", sample_rate: int = 16000) -> None:
        super().__init__(manifest_utterances(manifest), tokenizer, sample_rate)

