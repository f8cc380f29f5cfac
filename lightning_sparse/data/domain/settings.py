"""Class bookkeeping of the four unsupervised domain adaptation settings, and their standard splits.

A UDA task pairs a labelled source domain with an unlabelled target domain whose label sets may
differ. With ``S`` the source classes and ``T`` the target classes (global indices, the same
index space on both sides):

| setting | relation | example |
| --- | --- | --- |
| ``closed`` | ``S == T`` | Office-31 A -> W, all 31 classes |
| ``partial`` | ``T`` a proper subset of ``S`` | PADA: 31 source, 10 target classes |
| ``open`` | ``S`` a proper subset of ``T`` | OSBP: 10 known, 11 unknown target classes |
| ``universal`` | both have private classes | UAN: 10 shared, 10 source-, 11 target-private |

The classifier has ``K = len(S)`` outputs, source class ``S[k]`` (``S`` sorted) being output
``k``; a target sample of a class outside ``S`` is "unknown", coded ``K``
(:meth:`ClassSplit.target_label`).

:func:`standard_split` gives the class splits of the literature, by global index in the sorted
(alphabetical) class order of each benchmark:

* partial: PADA (Cao et al. 2018, "Partial Adversarial Domain Adaptation", ECCV,
  arXiv:1808.04205): Office-31 31 -> the first 10, Office-Home 65 -> the first 25; VisDA-2017
  12 -> the first 6 (ETN, Cao et al. 2019, CVPR; BA3US, Liang et al. 2020, ECCV).
* open: OSBP (Saito et al. 2018, "Open Set Domain Adaptation by Backpropagation", ECCV,
  arXiv:1804.10427): Office-31 source 0-9, target 0-9 plus 20-30 as unknown; Office-Home the
  first 25 classes known, all 65 in the target (STA, Liu et al. 2019, CVPR; ROS, Bucci et al.
  2020, ECCV, arXiv:2007.12360); VisDA-2017 the first 6 classes known, all 12 in the target (by
  index here; OSBP's own VisDA protocol takes bicycle, bus, car, motorcycle, train, truck as
  the known classes).
* universal: UAN (You et al. 2019, "Universal Domain Adaptation", CVPR): Office-31 10 shared
  (0-9), 10 source-private (10-19), 11 target-private (20-30); Office-Home 10 / 5 / 50; VisDA-2017
  6 / 3 / 3 (DANCE, Saito et al. 2020, NeurIPS, arXiv:2002.07953; OVANet, Saito & Saenko 2021).
* closed: every class on both sides.
* ``digits`` (MNIST <-> UCI digits, 10 classes, the CPU benchmark of this package): closed
  0-9 / 0-9; partial 0-9 / 0-4; open 0-5 / 0-9; universal 0-6 / 0-4 + 7-9 (shared 0-4,
  source-private 5-6, target-private 7-9).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lightning_sparse._validation import check_choice

__all__ = ["BENCHMARKS", "SETTINGS", "ClassSplit", "class_split", "infer_setting", "standard_split"]

SETTINGS: tuple[str, ...] = ("closed", "partial", "open", "universal")
"""The four UDA settings, by how the source and target label sets relate."""


def _r(a: int, b: int) -> tuple[int, ...]:
    """``a..b`` inclusive."""
    return tuple(range(a, b + 1))


_STANDARD: dict[str, dict[str, tuple[tuple[int, ...], tuple[int, ...]]]] = {
    "office31": {
        "closed": (_r(0, 30), _r(0, 30)),
        "partial": (_r(0, 30), _r(0, 9)),
        "open": (_r(0, 9), _r(0, 9) + _r(20, 30)),
        "universal": (_r(0, 19), _r(0, 9) + _r(20, 30)),
    },
    "officehome": {
        "closed": (_r(0, 64), _r(0, 64)),
        "partial": (_r(0, 64), _r(0, 24)),
        "open": (_r(0, 24), _r(0, 64)),
        "universal": (_r(0, 14), _r(0, 9) + _r(15, 64)),
    },
    "visda": {
        "closed": (_r(0, 11), _r(0, 11)),
        "partial": (_r(0, 11), _r(0, 5)),
        "open": (_r(0, 5), _r(0, 11)),
        "universal": (_r(0, 8), _r(0, 5) + _r(9, 11)),
    },
    "digits": {
        "closed": (_r(0, 9), _r(0, 9)),
        "partial": (_r(0, 9), _r(0, 4)),
        "open": (_r(0, 5), _r(0, 9)),
        "universal": (_r(0, 6), _r(0, 4) + _r(7, 9)),
    },
}

BENCHMARKS: tuple[str, ...] = tuple(_STANDARD)
"""The benchmarks :func:`standard_split` knows."""


def _index_set(name: str, classes: Iterable[int]) -> frozenset[int]:
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Iterable):
        raise ValueError(f"`{name}` must be a collection of class indices, got {classes!r}.")
    out = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, int) or c < 0:
            raise ValueError(f"`{name}` must hold non-negative integer class indices, got {c!r} in {classes!r}.")
        out.append(int(c))
    if not out:
        raise ValueError(f"`{name}` must name at least one class, got {classes!r}.")
    return frozenset(out)


def infer_setting(source_classes: Iterable[int], target_classes: Iterable[int]) -> str:
    """The UDA setting of a pair of label sets (see the module docstring).

    Raises:
        ValueError: If a set is empty or malformed, or the two share no class.

    Examples:
        >>> infer_setting(range(10), range(5)), infer_setting(range(5), range(10))
        ('partial', 'open')
        >>> infer_setting([0, 1, 2], [1, 2, 3]), infer_setting([0, 1], [1, 0])
        ('universal', 'closed')
        >>> infer_setting([0, 1], [2, 3])
        Traceback (most recent call last):
        ...
        ValueError: `source_classes` and `target_classes` must share at least one class, got [0, 1] and [2, 3].
    """
    s, t = _index_set("source_classes", source_classes), _index_set("target_classes", target_classes)
    if not s & t:
        raise ValueError("`source_classes` and `target_classes` must share at least one class, got "
                         f"{sorted(s)} and {sorted(t)}.")
    if s == t:
        return "closed"
    if t < s:
        return "partial"
    if s < t:
        return "open"
    return "universal"


@dataclass(frozen=True)
class ClassSplit:
    """The classes of a source / target pair and the label coding of the classifier.

    Attributes:
        source_classes: The source classes, sorted global indices.
        target_classes: The target classes, sorted global indices.
        shared: Classes in both.
        source_private: Source classes absent from the target.
        target_private: Target classes absent from the source (the "unknown" ones).
        setting: One of :data:`SETTINGS`.
        num_known: ``K = len(source_classes)``, the classifier size; ``K`` is the unknown label.
        source_index: Global source class -> its output ``0..K-1`` (a plain dict, so the split
            pickles; do not change it).
    """

    source_classes: tuple[int, ...]
    target_classes: tuple[int, ...]
    shared: tuple[int, ...]
    source_private: tuple[int, ...]
    target_private: tuple[int, ...]
    setting: str
    num_known: int
    source_index: dict[int, int]

    @property
    def unknown_label(self) -> int:
        """The label of target samples of a class outside the source classes (``K``)."""
        return self.num_known

    def target_label(self, global_label: int) -> int:
        """A target sample's evaluation label: its source index, or ``K`` for a target-private class.

        Raises:
            ValueError: If ``global_label`` is not a target class.
        """
        if global_label not in self.target_classes:
            raise ValueError(f"`global_label` must be one of the target classes {list(self.target_classes)}, "
                             f"got {global_label!r}.")
        return self.source_index.get(global_label, self.num_known)


def class_split(source_classes: Iterable[int], target_classes: Iterable[int]) -> ClassSplit:
    """The :class:`ClassSplit` of two label sets (global class indices).

    Raises:
        ValueError: As :func:`infer_setting`.

    Examples:
        >>> split = class_split(range(7), [0, 1, 2, 3, 4, 7, 8, 9])
        >>> split.setting, split.shared, split.source_private, split.target_private, split.num_known
        ('universal', (0, 1, 2, 3, 4), (5, 6), (7, 8, 9), 7)
        >>> [split.target_label(c) for c in split.target_classes]
        [0, 1, 2, 3, 4, 7, 7, 7]
    """
    setting = infer_setting(source_classes, target_classes)
    s, t = _index_set("source_classes", source_classes), _index_set("target_classes", target_classes)
    source = tuple(sorted(s))
    return ClassSplit(
        source_classes=source,
        target_classes=tuple(sorted(t)),
        shared=tuple(sorted(s & t)),
        source_private=tuple(sorted(s - t)),
        target_private=tuple(sorted(t - s)),
        setting=setting,
        num_known=len(source),
        source_index={c: k for k, c in enumerate(source)},
    )


def standard_split(benchmark: str, setting: str) -> tuple[list[int], list[int]]:
    """``(source_classes, target_classes)`` of the literature's split (see the module docstring).

    Args:
        benchmark: One of :data:`BENCHMARKS` (``"office31"``, ``"officehome"``, ``"visda"``,
            ``"digits"``).
        setting: One of :data:`SETTINGS`.

    Raises:
        ValueError: If ``benchmark`` or ``setting`` is unknown (listing the allowed values).

    Examples:
        >>> source, target = standard_split("office31", "universal")
        >>> len(source), len(target), infer_setting(source, target)
        (20, 21, 'universal')
    """
    check_choice("benchmark", benchmark, BENCHMARKS)
    check_choice("setting", setting, SETTINGS)
    source, target = _STANDARD[benchmark][setting]
    return list(source), list(target)
