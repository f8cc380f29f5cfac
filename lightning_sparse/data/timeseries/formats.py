"""Readers of the UCR/UEA time-series archive formats (``.ts``, ``.tsv``, UCR text, ``.arff``).

Used by :class:`~lightning_sparse.data.timeseries.TimeSeriesDataModule`; see that module for the
archives (Dau et al. 2019, arXiv:1810.07758; Bagnall et al. 2018, arXiv:1811.00075) and for
DSN (Xiao et al. 2022, arXiv:2212.09840).

Readers (our own parsers; every error names the file and the line):

- :func:`read_ts`: the sktime/aeon ``.ts`` format. Header tags (case-insensitive) and
  ``#``/``%`` comments before ``@data``; ``@classLabel true <labels...>`` fixes the class
  order; one series per line, comma-separated values, ``:`` between channels, the label last,
  ``?`` or ``NaN`` for missing values, series of different lengths allowed; ``@timeStamps true``
  lines ``(t,v),(t,v):label`` keep the values ``v``.
- :func:`read_tsv`: UCR 2018 ``.tsv`` (label first, tab-separated, ``NaN`` padding of short
  series) and the UCR 2015 text files (``<Name>_TRAIN`` or ``.txt``, comma- or space-separated).
  No header: classes are the sorted labels (numerically when all are numbers).
- :func:`read_arff`: WEKA ``.arff``, univariate (numeric attributes then a nominal class) and the
  relational multivariate UEA form (``'ch1\\nch2\\n...',label``); class order from the header.

All return a :class:`SeriesCollection`: float32 ``(N, C, L)`` values with ``NaN`` at missing
values and past each series' end, per-series lengths, labels ``0..C-1`` and the class names. In
``.ts`` files a series' length is the number of values written; in ``.tsv`` and ``.arff`` files,
whose rows have a fixed width, trailing ``NaN``/``?`` shared by all channels are padding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SeriesCollection", "read_arff", "read_series_file", "read_ts", "read_tsv"]


@dataclass(frozen=True)
class SeriesCollection:
    """The series of one archive file.

    Attributes:
        series: float32 ``(N, C, L)``, ``NaN`` at missing values and past each series' length.
        lengths: int64 ``(N,)``, the number of time points of each series.
        labels: int64 ``(N,)`` in ``[0, len(class_names))``.
        class_names: The class names in label order.
    """

    series: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    @property
    def num_channels(self) -> int:
        """``C``, the channels (variables) per time step."""
        return self.series.shape[1]

    @property
    def series_length(self) -> int:
        """``L``, the length of the longest series."""
        return self.series.shape[2]


def _floats(tokens: list[str], path: Path, lineno: int) -> np.ndarray:
    tokens = ["nan" if t.strip() == "?" else t for t in tokens]
    try:
        return np.asarray(tokens, dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_number(t))
        raise ValueError(f"{path}, line {lineno}: cannot read {bad!r} as a number.") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _collect(cases: list[np.ndarray], labels: list[int], class_names: tuple[str, ...], path: Path,
             trim_trailing_nan: bool) -> SeriesCollection:
    """Stack ``(C, L_i)`` cases into a NaN-padded ``(N, C, max L_i)`` collection."""
    if not cases:
        raise ValueError(f"{path}: holds no series after the header.")
    lengths = np.asarray([c.shape[1] for c in cases], dtype=np.int64)
    if trim_trailing_nan:
        for i, case in enumerate(cases):
            valid = np.flatnonzero(~np.isnan(case).all(axis=0))
            lengths[i] = valid[-1] + 1 if valid.size else 0
    out = np.full((len(cases), cases[0].shape[0], max(int(lengths.max()), 1)), np.nan, np.float32)
    for i, case in enumerate(cases):
        out[i, :, : lengths[i]] = case[:, : lengths[i]]
    return SeriesCollection(out, lengths, np.asarray(labels, dtype=np.int64), class_names)


def _label_index(label: str, index: dict[str, int], path: Path, lineno: int) -> int:
    if label not in index:
        raise ValueError(f"{path}, line {lineno}: class label {label!r} is not one of the declared "
                         f"classes {list(index)}.")
    return index[label]


def _check_classes(names: list[str], path: Path, lineno: int) -> tuple[str, ...]:
    if not names:
        raise ValueError(f"{path}, line {lineno}: the class attribute lists no class labels.")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}, line {lineno}: the class labels repeat a name: {names}.")
    return tuple(names)


_TS_BOOLEANS = ("timestamps", "missing", "univariate", "equallength")


def read_ts(path: str | Path) -> SeriesCollection:
    """Read a ``.ts`` file (sktime/aeon format) of a classification problem.

    Args:
        path: The file.

    Returns:
        The series; labels follow the order of the header's ``@classLabel`` list.

    Raises:
        ValueError: If the file is malformed (naming the file and line), has no class labels
            (``@classLabel false`` or a regression ``@targetLabel``), or a series breaks its
            header (``@univariate``, ``@equalLength``, channel count).

    Examples:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "Toy_TRAIN.ts"
        >>> _ = f.write_text("@problemName Toy\\n@classLabel true b a\\n@data\\n"
        ...                  "1,2,?:3,4,5:a\\n6,7:8,9:b\\n")
        >>> data = read_ts(f)
        >>> data.series.shape, data.lengths.tolist(), data.labels.tolist(), data.class_names
        ((2, 2, 3), [3, 2], [1, 0], ('b', 'a'))
        >>> data.series[0].tolist()
        [[1.0, 2.0, nan], [3.0, 4.0, 5.0]]
    """
    path = Path(path)
    flags = {"timestamps": False, "univariate": None, "equallength": None}
    class_names: tuple[str, ...] | None = None
    lines = path.read_text(encoding="utf-8").splitlines()
    start = None
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith(("#", "%")):  # comments
            continue
        if not line.startswith("@"):
            raise ValueError(f"{path}, line {lineno}: expected a header tag or `@data` before the data, "
                             f"got {line[:40]!r}.")
        tag, *values = line[1:].split()
        tag = tag.lower()
        if tag == "data":
            start = lineno
            break
        if tag in _TS_BOOLEANS or tag in ("classlabel", "targetlabel"):
            if not values or values[0].lower() not in ("true", "false"):
                raise ValueError(f"{path}, line {lineno}: `@{tag}` must be followed by true or false, "
                                 f"got {' '.join(values)!r}.")
            flag = values[0].lower() == "true"
            if tag in _TS_BOOLEANS:
                flags[tag] = flag
            elif tag == "targetlabel" and flag:
                raise ValueError(f"{path}, line {lineno}: `@targetLabel true` marks a regression problem; "
                                 "only classification files (`@classLabel true ...`) can be read.")
            elif tag == "classlabel":
                if not flag:
                    raise ValueError(f"{path}, line {lineno}: `@classLabel false`: the file has no class "
                                     "labels to classify.")
                class_names = _check_classes(values[1:], path, lineno)
    if start is None:
        raise ValueError(f"{path}: no `@data` line ends the header.")
    if class_names is None:
        raise ValueError(f"{path}: the header has no `@classLabel true <labels...>` line.")
    index = {name: k for k, name in enumerate(class_names)}
    cases: list[np.ndarray] = []
    labels: list[int] = []
    n_channels = None
    for lineno, raw in enumerate(lines[start:], start + 1):
        line = raw.strip()
        if not line:
            continue
        if flags["timestamps"]:  # (t,v),(t,v):(t,v),...:label -> the values v
            *parts, label = re.split(r"(?<=\))\s*:", line)
            channels = [[pair.rsplit(",", 1)[-1] for pair in re.findall(r"\(([^()]*)\)", p)] for p in parts]
        else:
            *parts, label = line.split(":")
            channels = [p.split(",") for p in parts]
        if not channels:
            raise ValueError(f"{path}, line {lineno}: expected values and a class label separated by ':', "
                             f"got {line[:40]!r}.")
        if n_channels is None:
            n_channels = len(channels)
            if flags["univariate"] and n_channels > 1:
                raise ValueError(f"{path}, line {lineno}: `@univariate true` but the series has "
                                 f"{n_channels} channels.")
        elif len(channels) != n_channels:
            raise ValueError(f"{path}, line {lineno}: {len(channels)} channels, but the first series "
                             f"has {n_channels}.")
        values = [_floats(c, path, lineno) for c in channels]
        length = max(v.size for v in values)
        if flags["equallength"] and cases and length != cases[0].shape[1]:
            raise ValueError(f"{path}, line {lineno}: `@equalLength true` but the series has {length} "
                             f"values, the first {cases[0].shape[1]}.")
        case = np.full((n_channels, length), np.nan)
        for c, v in enumerate(values):
            case[c, : v.size] = v
        cases.append(case)
        labels.append(_label_index(label.strip(), index, path, lineno))
    return _collect(cases, labels, class_names, path, trim_trailing_nan=False)


def _sorted_labels(labels: set[str]) -> tuple[str, ...]:
    if all(_is_number(s) for s in labels):
        return tuple(sorted(labels, key=float))
    return tuple(sorted(labels))


def _canonical(label: str) -> str:
    """``"1.0000000e+00"`` (UCR 2015 text files) -> ``"1"``; other labels unchanged."""
    try:
        value = float(label)
    except ValueError:
        return label
    return str(int(value)) if value.is_integer() else label


def read_tsv(path: str | Path, class_names: tuple[str, ...] | list[str] | None = None,
             delimiter: str | None = None) -> SeriesCollection:
    """Read a univariate UCR file: label first, then the values (``.tsv``, UCR 2015 text).

    Args:
        path: The file.
        class_names: The classes in label order, e.g. those of the training file when reading
            the test file; None: the sorted labels found (numerically when all are numbers).
            Integral numeric labels are written without decimals (``"1.0e+00"`` -> ``"1"``).
        delimiter: Value separator; None: a tab if the first line has one, else a comma if it
            has one, else whitespace.

    Returns:
        The series, one channel; trailing ``NaN`` are padding.

    Raises:
        ValueError: If a value is not a number or a label is not in ``class_names`` (naming the
            file and line), or the file holds no series.

    Examples:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "Toy_TRAIN.tsv"
        >>> _ = f.write_text("2\\t0.5\\t1.5\\t2.5\\n1\\t3.0\\t4.0\\tNaN\\n")
        >>> data = read_tsv(f)
        >>> data.class_names, data.labels.tolist(), data.lengths.tolist()
        (('1', '2'), [1, 0], [3, 2])
    """
    path = Path(path)
    rows: list[tuple[int, str, list[str]]] = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if delimiter is None:
            delimiter = "\t" if "\t" in line else "," if "," in line else ""
        tokens = line.split(delimiter) if delimiter else line.split()
        if len(tokens) < 2:
            raise ValueError(f"{path}, line {lineno}: expected a label and values, got {line[:40]!r}.")
        rows.append((lineno, _canonical(tokens[0].strip()), tokens[1:]))
    if class_names is None:
        class_names = _sorted_labels({label for _, label, _ in rows})
    index = {name: k for k, name in enumerate(class_names)}
    cases = [_floats(values, path, lineno)[None] for lineno, _, values in rows]
    labels = [_label_index(label, index, path, lineno) for lineno, label, _ in rows]
    return _collect(cases, labels, tuple(class_names), path, trim_trailing_nan=True)


def _unquote(text: str) -> str:
    text = text.strip()
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text


def read_arff(path: str | Path) -> SeriesCollection:
    """Read a WEKA ``.arff`` file: numeric attributes, or one relational attribute, then a class.

    Args:
        path: The file.

    Returns:
        The series; labels follow the order of the class attribute's ``{...}`` list; trailing
        ``?`` are padding.

    Raises:
        ValueError: If the file is malformed (naming the file and line): attributes other than
            numeric ones (or one relational attribute) followed by a nominal class, a row with the
            wrong number of values, an unknown label.

    Examples:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "Toy_TRAIN.arff"
        >>> _ = f.write_text("@relation Toy\\n@attribute series relational\\n@attribute t0 numeric\\n"
        ...                  "@attribute t1 numeric\\n@end series\\n@attribute target {up,down}\\n"
        ...                  "@data\\n'1,2\\\\n3,4',down\\n")
        >>> data = read_arff(f)
        >>> data.series.tolist(), data.labels.tolist(), data.class_names
        ([[[1.0, 2.0], [3.0, 4.0]]], [1], ('up', 'down'))
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    kinds: list[str] = []  # top-level attribute kinds: "numeric" | "relational" | "nominal"
    class_names: tuple[str, ...] = ()
    in_relation = False
    start = None
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        low = line.lower()
        if low.startswith("@data"):
            start = lineno
            break
        if low.startswith("@end"):
            in_relation = False
            continue
        if not low.startswith("@attribute"):
            continue  # @relation and other header lines
        match = re.match(r"@attribute\s+('[^']*'|\"[^\"]*\"|\S+)\s+(.+)$", line, flags=re.IGNORECASE)
        if match is None:
            raise ValueError(f"{path}, line {lineno}: cannot read the attribute {line[:60]!r}.")
        kind = match.group(2).strip()
        if kind.startswith("{"):
            if in_relation:
                raise ValueError(f"{path}, line {lineno}: nominal attributes inside a relational one are "
                                 "not series values.")
            names = [_unquote(s) for s in kind.strip("{}").split(",") if s.strip()]
            kinds.append("nominal")
            class_names = _check_classes(names, path, lineno)
        elif kind.lower() in ("numeric", "real", "integer"):
            if not in_relation:
                kinds.append("numeric")
        elif kind.lower() == "relational":
            kinds.append("relational")
            in_relation = True
        else:
            raise ValueError(f"{path}, line {lineno}: attribute type {kind!r} is not numeric, relational "
                             "or a nominal class {...}.")
    if start is None:
        raise ValueError(f"{path}: no `@data` line ends the header.")
    body = kinds[:-1]
    relational = body == ["relational"]
    if not kinds or kinds[-1] != "nominal" or not (relational or (body and set(body) == {"numeric"})):
        raise ValueError(f"{path}: the attributes must be numeric ones (or one relational attribute) "
                         f"followed by a nominal class attribute, got {kinds}.")
    index = {name: k for k, name in enumerate(class_names)}
    cases: list[np.ndarray] = []
    labels: list[str] = []
    for lineno, raw in enumerate(lines[start:], start + 1):
        line = raw.strip()
        if not line or line.startswith("%"):
            continue
        if relational:
            quote = line[0]
            end = line.find(quote, 1) if quote in "'\"" else -1
            label = line[end + 1:].strip()
            if end < 0 or not label.startswith(","):
                raise ValueError(f"{path}, line {lineno}: expected 'ch1\\nch2\\n...',label, got {line[:40]!r}.")
            channels = [_floats(c.split(","), path, lineno) for c in line[1:end].split("\\n")]
            if len({c.size for c in channels}) != 1:
                raise ValueError(f"{path}, line {lineno}: the channels have different numbers of values "
                                 f"{[c.size for c in channels]}.")
            case, label = np.stack(channels), label[1:]
            if cases and case.shape[0] != cases[0].shape[0]:
                raise ValueError(f"{path}, line {lineno}: {case.shape[0]} channels, but the first series "
                                 f"has {cases[0].shape[0]}.")
        else:
            tokens = line.split(",")
            if len(tokens) != len(kinds):
                raise ValueError(f"{path}, line {lineno}: {len(tokens)} values, but the header declares "
                                 f"{len(kinds)} attributes.")
            case, label = _floats(tokens[:-1], path, lineno)[None], tokens[-1]
        cases.append(case)
        labels.append(_label_index(_unquote(label), index, path, lineno))
    return _collect(cases, labels, class_names, path, trim_trailing_nan=True)


def read_series_file(path: str | Path, class_names: tuple[str, ...] | list[str] | None = None) -> SeriesCollection:
    """Read any archive file by its suffix: ``.ts``, ``.arff``, else UCR text (:func:`read_tsv`).

    Args:
        path: The file.
        class_names: Expected classes in label order (e.g. the training file's): the label order
            of header-less text files; checked against the header of ``.ts`` and ``.arff`` files.

    Raises:
        ValueError: If the file is malformed or its header declares other classes.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".ts", ".arff"):
        return read_tsv(path, class_names)
    data = read_ts(path) if suffix == ".ts" else read_arff(path)
    if class_names is not None and tuple(class_names) != data.class_names:
        raise ValueError(f"{path}: declares the classes {list(data.class_names)}, expected "
                         f"{list(class_names)} (those of the training file).")
    return data
