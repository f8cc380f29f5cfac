"""Vocabularies of the AVSR data: the library's tokenizers and auto_avsr's SentencePiece units list.

:func:`build_avsr_tokenizer` takes what :func:`~lightning_sparse.core.text.build_tokenizer`
takes (``"char"`` or a SentencePiece ``.model``) and also a units list ``.txt``, the vocabulary
of auto_avsr's pre-processed label lists (:class:`UnitsTokenizer`).

auto_avsr (after ESPnet) numbers its SentencePiece pieces by a units file of ``<piece> <id>``
lines, ids from 1 (``<unk> 1``), id 0 being the CTC blank; its label lists store those ids.
They are not the SentencePiece model's own piece ids (the units file lists the pieces in its
own order), so token ids from such a label list decode only with that units file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning_sparse.core.text import BLANK, build_tokenizer, normalize_text

__all__ = ["UnitsTokenizer", "build_avsr_tokenizer"]


class UnitsTokenizer:
    """The vocabulary of a units file (``<piece> <id>`` lines, ids 1, 2, ...): decodes token ids.

    Token ``i`` is the piece with id ``i``; 0 is the CTC blank. Decoding joins the pieces, turns
    SentencePiece's word marker ``\\u2581`` into spaces and normalises the text
    (:func:`~lightning_sparse.core.text.normalize_text`: lower case), so decoded texts compare
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
        """:func:`~lightning_sparse.core.text.normalize_text`."""
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


def build_avsr_tokenizer(spec: Any) -> Any:
    """``"char"``, a SentencePiece ``.model`` path, a units ``.txt`` path, or a tokenizer object.

    Examples:
        >>> build_avsr_tokenizer("char").vocab_size
        29
    """
    if isinstance(spec, (str, os.PathLike)):
        if str(spec).endswith(".txt"):
            return UnitsTokenizer(spec)
        return build_tokenizer(spec)
    if all(hasattr(spec, name) for name in ("encode", "decode", "normalize", "vocab_size")):
        return spec
    raise ValueError(f"`tokenizer` must be 'char', a SentencePiece .model or a units .txt path, got {spec!r}.")
