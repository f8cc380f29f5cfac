"""Vocabularies of the AVSR data: the library's tokenizers and auto_avsr's SentencePiece units list.

:func:`build_avsr_tokenizer` takes what :func:`~lightning_sparse.core.text.build_tokenizer`
takes (``"char"``, a SentencePiece ``.model``, or a units list ``.txt``: the vocabulary of
auto_avsr's pre-processed label lists, :class:`~lightning_sparse.core.text.UnitsTokenizer`) and
also a ready tokenizer object.

auto_avsr (after ESPnet) numbers its SentencePiece pieces by a units file of ``<piece> <id>``
lines, ids from 1 (``<unk> 1``), id 0 being the CTC blank; its label lists store those ids.
They are not the SentencePiece model's own piece ids (the units file lists the pieces in its
own order), so token ids from such a label list decode only with that units file.
"""

from __future__ import annotations

import os
from typing import Any

from lightning_sparse.core.text import UnitsTokenizer, build_tokenizer

__all__ = ["UnitsTokenizer", "build_avsr_tokenizer"]


def build_avsr_tokenizer(spec: Any) -> Any:
    """``"char"``, a SentencePiece ``.model`` path, a units ``.txt`` path, or a tokenizer object.

    Examples:
        >>> build_avsr_tokenizer("char").vocab_size
        29
    """
    if isinstance(spec, (str, os.PathLike)):
        return build_tokenizer(spec)
    if all(hasattr(spec, name) for name in ("encode", "decode", "normalize", "vocab_size")):
        return spec
    raise ValueError(f"`tokenizer` must be 'char', a SentencePiece .model or a units .txt path, got {spec!r}.")
