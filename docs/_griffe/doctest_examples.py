"""Griffe extension for the docs build: render ``Example:`` sections as doctest examples.

The library's Google-style docstrings title their doctests ``Example:`` (singular). Griffe's
Google parser only knows ``Examples:``; any other ``Title:`` becomes an admonition whose body is
read as Markdown, so ``>>>`` lines turn into block quotes and doctest output such as
``['0.weight', '0.bias']`` into broken cross-references (which fail ``mkdocs build --strict``).
This extension renames the section before the docstring is parsed; the source stays untouched.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(?P<indent>[ \t]*)Example:[ \t]*$", re.MULTILINE)


class DoctestExamples(griffe.Extension):
    """Rename ``Example:`` section titles to ``Examples:`` in every loaded docstring."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is not None and "Example:" in docstring.value:
            docstring.value = _EXAMPLE.sub(r"\g<indent>Examples:", docstring.value)
