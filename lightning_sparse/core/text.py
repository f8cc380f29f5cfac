"""Text units for speech recognition: a character vocabulary and SentencePiece, blank id 0.

Both tokenizers share one interface (``tokens``, ``vocab_size``, ``blank``, ``normalize``,
``encode``, ``decode``) and reserve id 0 for the CTC blank, so the data modules (which encode
transcripts into targets) and the speech task (which decodes CTC outputs) agree on ids from one
spec string: :func:`build_tokenizer` takes ``"char"`` or the path of a SentencePiece ``.model``.

:func:`normalize_text` is the transcript normalisation of LibriSpeech-style character CTC: lower
case, letters ``a-z``, the apostrophe and single spaces; other characters (punctuation, digits,
accents) become spaces. Transcripts with digits (LJ Speech's raw text) should use their
normalized form (LJ Speech's third column spells numbers out).

Torch only (here: pure Python; ``sentencepiece`` is imported when a SentencePiece model is used).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

__all__ = [
    "BLANK",
    "CharTokenizer",
    "SentencePieceTokenizer",
    "Tokenizer",
    "UnitsTokenizer",
    "build_tokenizer",
    "normalize_text",
    "train_sentencepiece",
]

BLANK = "<blank>"
"""The CTC blank token, id 0 in every tokenizer."""

_NOT_ALLOWED = re.compile(r"[^a-z' ]+")
_SPACES = re.compile(r" +")


def normalize_text(text: str) -> str:
    """Lower case, ``a-z``, apostrophes and single spaces; everything else becomes a space.

    Accented letters lose their accents (NFKD), so ``"café"`` becomes ``"cafe"``.

    Examples:
        >>> normalize_text("Printing, then -- for our purpose!  It's  OK.")
        "printing then for our purpose it's ok"
        >>> normalize_text("Café 42")
        'cafe'
    """
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    text = text.replace("\u2019", "'")
    return _SPACES.sub(" ", _NOT_ALLOWED.sub(" ", text)).strip()


class Tokenizer(Protocol):
    """What the speech data modules and task need of a vocabulary."""

    tokens: list[str]
    blank: int

    @property
    def vocab_size(self) -> int: ...

    def normalize(self, text: str) -> str: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


class _Vocabulary:
    """What both tokenizers share: ``tokens`` with the blank at id 0, and the normalisation."""

    tokens: list[str]
    blank = 0

    @property
    def vocab_size(self) -> int:
        """Number of ids, the blank included."""
        return len(self.tokens)

    def normalize(self, text: str) -> str:
        """:func:`normalize_text` (also applied to the texts a SentencePiece model is trained on)."""
        return normalize_text(text)


class CharTokenizer(_Vocabulary):
    """Characters: ``<blank>`` (0), space (1), apostrophe (2), ``a`` .. ``z`` (3 .. 28).

    Examples:
        >>> tok = CharTokenizer()
        >>> tok.vocab_size, tok.blank, tok.tokens[:4]
        (29, 0, ['<blank>', ' ', "'", 'a'])
        >>> tok.encode("It's A")
        [11, 22, 2, 21, 1, 3]
        >>> tok.decode(tok.encode("seven  Eight"))
        'seven eight'
    """

    def __init__(self) -> None:
        self.tokens: list[str] = [BLANK, " ", "'", *"abcdefghijklmnopqrstuvwxyz"]
        self._ids = {t: i for i, t in enumerate(self.tokens)}

    def encode(self, text: str) -> list[int]:
        """Ids of the normalized ``text`` (no blank)."""
        return [self._ids[c] for c in self.normalize(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; blanks are dropped, spaces collapsed, ends stripped."""
        text = "".join(self.tokens[int(i)] for i in ids if int(i) != self.blank)
        return _SPACES.sub(" ", text).strip()

    def __repr__(self) -> str:
        return "CharTokenizer()"


class SentencePieceTokenizer(_Vocabulary):
    """A SentencePiece model as a CTC vocabulary: piece ``p`` has id ``p + 1``, 0 is the blank.

    Args:
        model_file: Path of a trained SentencePiece ``.model`` (see :func:`train_sentencepiece`).

    Raises:
        ValueError: If ``model_file`` does not exist.
    """

    def __init__(self, model_file: str | os.PathLike) -> None:
        path = Path(model_file)
        if not path.is_file():
            raise ValueError(f"`tokenizer` must be 'char' or the path of a SentencePiece .model file, got {str(model_file)!r} (no such file).")
        import sentencepiece as spm

        self.model_file = str(path)
        self._sp = spm.SentencePieceProcessor(model_file=self.model_file)
        self.tokens: list[str] = [BLANK] + [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]

    def encode(self, text: str) -> list[int]:
        """Piece ids (shifted by one) of the normalized ``text``."""
        return [i + 1 for i in self._sp.encode(self.normalize(text), out_type=int)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; blanks are dropped."""
        pieces = [int(i) - 1 for i in ids if int(i) != self.blank]
        return _SPACES.sub(" ", self._sp.decode(pieces)).strip()

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer({self.model_file!r})"


def train_sentencepiece(texts: Sequence[str], model_prefix: str | os.PathLike, vocab_size: int = 256,
                        model_type: str = "unigram") -> SentencePieceTokenizer:
    """Train a SentencePiece model on the normalized ``texts``; write ``<model_prefix>.model``.

    Args:
        texts: Training transcripts (normalized here).
        model_prefix: Output path without the ``.model`` suffix.
        vocab_size: Pieces in the model (the tokenizer has one more id, the blank).
        model_type: ``"unigram"``, ``"bpe"``, ``"char"`` or ``"word"``.

    Returns:
        The tokenizer of the written model.
    """
    import sentencepiece as spm

    prefix = Path(model_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([normalize_text(t) for t in texts]), model_prefix=str(prefix),
        vocab_size=vocab_size, model_type=model_type, character_coverage=1.0,
        bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2, hard_vocab_limit=False,
    )
    return SentencePieceTokenizer(f"{prefix}.model")


class UnitsTokenizer:
    """The vocabulary of a units file (``<piece> <id>`` lines, ids 1, 2, ...): decodes token ids.

    Token ``i`` is the piece with id ``i``; 0 is the CTC blank. Decoding joins the pieces, turns
    SentencePiece's word marker ``\\u2581`` into spaces and normalises the text
    (:func:`normalize_text`: lower case), so decoded texts compare
    with the normalised transcripts. Encoding text needs the SentencePiece model the units came
    from, which this class does not hold: :meth:`encode` raises.

    Args:
        units_file: The units file (auto_avsr: ``spm/unigram/unigram5000_units.txt``).

    Raises:
        ValueError: If the file does not exist or its ids are not 1, 2, ... in order.

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "units.txt"
        >>> _ = path.write_text("<unk> 1\\n\\u2581HE 2\\nLLO 3\\n\\u2581WORLD 4\\n")
        >>> tok = UnitsTokenizer(path)
        >>> tok.vocab_size, tok.blank, tok.decode([2, 3, 0, 4])
        (5, 0, 'hello world')
    """

    blank = 0

    def __init__(self, units_file: str | os.PathLike) -> None:
        path = Path(units_file).expanduser()
        if not path.is_file():
            raise ValueError(f"`tokenizer` must be 'char', a SentencePiece .model or a units .txt file, got "
                             f"{str(units_file)!r} (no such file).")
        self.units_file = str(path)
        self.tokens: list[str] = [BLANK]
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or parts[1] != str(len(self.tokens)):
                raise ValueError(f"{path}:{number}: a units line must be '<piece> {len(self.tokens)}' (ids 1, 2, ... "
                                 f"in order), got {line!r}.")
            self.tokens.append(parts[0])

    @property
    def vocab_size(self) -> int:
        """Number of ids, the blank included."""
        return len(self.tokens)

    def normalize(self, text: str) -> str:
        """:func:`normalize_text`."""
        return normalize_text(text)

    def encode(self, text: str) -> list[int]:
        """Not available: text is encoded by the SentencePiece model the units came from.

        Raises:
            ValueError: Always.
        """
        raise ValueError(f"{self!r} only decodes token ids; label lists with text need `tokenizer` 'char' or a "
                         f"SentencePiece .model, got text {text[:40]!r}.")

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; blanks are dropped."""
        pieces = "".join(self.tokens[int(i)] for i in ids if int(i) != self.blank)
        return normalize_text(pieces.replace("\u2581", " ").replace("<unk>", " "))

    def __repr__(self) -> str:
        return f"UnitsTokenizer({self.units_file!r})"


def build_tokenizer(spec: str | os.PathLike = "char") -> CharTokenizer | SentencePieceTokenizer | UnitsTokenizer:
    """``"char"`` -> :class:`CharTokenizer`; a ``.model`` path -> :class:`SentencePieceTokenizer`;
    a units ``.txt`` path -> :class:`UnitsTokenizer` (decoding only).

    Raises:
        ValueError: For anything else.

    Examples:
        >>> build_tokenizer("char").vocab_size
        29
        >>> build_tokenizer("words")
        Traceback (most recent call last):
        ...
        ValueError: `tokenizer` must be 'char', the path of a SentencePiece .model file or of a units .txt file, got 'words'.
    """
    if spec == "char":
        return CharTokenizer()
    if isinstance(spec, (str, os.PathLike)) and str(spec).endswith(".model"):
        return SentencePieceTokenizer(spec)
    if isinstance(spec, (str, os.PathLike)) and str(spec).endswith(".txt"):
        return UnitsTokenizer(spec)
    raise ValueError(
        f"`tokenizer` must be 'char', the path of a SentencePiece .model file or of a units .txt file, got {spec!r}."
    )
