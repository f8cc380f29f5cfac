"""House rules on the library's source that the strict docs build and the logging policy rely on."""

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_sparse"


def lines_matching(pattern: str) -> list[str]:
    return [
        f"{path.relative_to(PACKAGE.parent)}:{i}"
        for path in PACKAGE.rglob("*.py")
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if re.match(pattern, line)
    ]


def test_doctest_sections_are_titled_examples():
    """griffe (mkdocstrings) renders doctests only under ``Examples:``; under ``Example:`` their
    output is read as markdown and breaks ``mkdocs build --strict``."""
    offenders = lines_matching(r"\s*Example:\s*$")
    assert not offenders, f"use 'Examples:' in {offenders}"


def test_no_print_in_the_library():
    offenders = lines_matching(r"\s*print\(")
    assert not offenders, f"use rank_zero_info / logging instead of print: {offenders}"
