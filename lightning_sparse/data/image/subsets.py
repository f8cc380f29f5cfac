"""The training-set options of the image DataModules: subsets by hardness, limited data, corrupted images.

Xiao et al. 2024, "Are Sparse Neural Networks Better Hard Sample Learners?" (BMVC,
arXiv:2409.09196) train on three kinds of hard data, each an argument of
:class:`~lightning_sparse.data.image.base.ImageDataModuleBase` parsed and checked here:

- the hardest share of the training set by a hardness score (EL2N, Paul et al. 2021, "Deep
  Learning on a Data Diet", arXiv:2107.07075), read from a scores file of
  :mod:`lightning_sparse.metrics.hardness`: ``subset="hardest:0.3"`` (``"easiest:F"`` and the
  ``"random:F"`` baseline too; :func:`parse_subset`, :func:`select_subset`);
- limited data: ``train_fraction`` (a stratified, seeded share; :func:`check_train_fraction`);
- corrupted training images: ``train_corruption="gaussian_noise:3"`` (:func:`parse_corruption`,
  :class:`PositionCorruptedDataset`), the corruptions of :mod:`lightning_sparse.data.corruptions`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lightning_sparse.data.corruptions import ALL_CORRUPTIONS, CorruptedDataset
from lightning_sparse.data.splits import stratified_take
from lightning_sparse.metrics.hardness import read_scores

__all__ = [
    "SUBSET_KINDS",
    "PositionCorruptedDataset",
    "check_scores_file",
    "check_train_fraction",
    "fraction_count",
    "parse_corruption",
    "parse_subset",
    "select_subset",
    "train_corruption_seed",
]

SUBSET_KINDS = ("hardest", "easiest", "random")
"""The kinds of ``subset``: highest scores, lowest scores, a stratified random draw."""
_SUBSET_FORMS = "None or 'hardest:F', 'easiest:F' or 'random:F' with F a fraction in (0, 1]"


def parse_subset(value: Any) -> tuple[str, float] | None:
    """``"kind:fraction"`` -> ``(kind, fraction)``; None stays None.

    Raises:
        ValueError: Naming ``subset``, the allowed forms and the value, if it is malformed.

    Examples:
        >>> parse_subset("hardest:0.3")
        ('hardest', 0.3)
        >>> parse_subset("hard:0.3")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `subset` must be None or 'hardest:F', 'easiest:F' or 'random:F' ..., got 'hard:0.3'.
    """
    if value is None:
        return None
    kind, _, number = value.partition(":") if isinstance(value, str) else ("", "", "")
    try:
        fraction = float(number)
    except ValueError:
        fraction = float("nan")
    if kind not in SUBSET_KINDS or not 0.0 < fraction <= 1.0:
        raise ValueError(f"`subset` must be {_SUBSET_FORMS}, got {value!r}.")
    return kind, fraction


def check_scores_file(value: Any, subset: tuple[str, float] | None) -> list[str] | None:
    """``scores_file`` as a list of paths; required by, and only by, ``hardest``/``easiest`` subsets.

    Raises:
        ValueError: If it is not a path or a non-empty list of paths, is missing for a
            ``hardest``/``easiest`` subset, or is given without one.

    Examples:
        >>> check_scores_file("run0.pt", ("hardest", 0.3))
        ['run0.pt']
        >>> check_scores_file(None, ("easiest", 0.5))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `subset='easiest:0.5'` ranks images by score: it needs `scores_file` ..., got None.
    """
    by_score = subset is not None and subset[0] != "random"
    if value is None:
        if by_score:
            raise ValueError(
                f"`subset='{subset[0]}:{subset[1]:g}'` ranks images by score: it needs `scores_file` (a "
                "scores file of HardnessScores, or a list of them to average), got None."
            )
        return None
    paths = [value] if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(paths, Sequence) or not paths or not all(isinstance(p, (str, os.PathLike)) for p in paths):
        raise ValueError(f"`scores_file` must be None, a path or a non-empty list of paths, got {value!r}.")
    if not by_score:
        raise ValueError(
            "`scores_file` is read only by `subset='hardest:F'` or `subset='easiest:F'`, got "
            f"subset={None if subset is None else f'{subset[0]}:{subset[1]:g}'!r} with scores_file={value!r}."
        )
    return [os.fspath(p) for p in paths]


def check_train_fraction(value: Any, train_subset: int | None) -> float | None:
    """``train_fraction``: None or a number in (0, 1]; exclusive with ``train_subset``.

    Raises:
        ValueError: If it is out of range, or given together with ``train_subset``.

    Examples:
        >>> check_train_fraction(0.25, None)
        0.25
        >>> check_train_fraction(0.25, 100)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `train_fraction` and `train_subset` ... give one of them, got train_fraction=0.25, train_subset=100.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"`train_fraction` must be None or a fraction in (0, 1], got {value!r}.")
    if train_subset is not None:
        raise ValueError(
            "`train_fraction` and `train_subset` both limit the training images: give one of them, got "
            f"train_fraction={value!r}, train_subset={train_subset!r}."
        )
    return float(value)


def parse_corruption(arg: str, value: Any) -> tuple[str, int] | None:
    """``"name:severity"`` -> ``(name, severity)`` for ``train_corruption`` / ``test_corruption``.

    Raises:
        ValueError: Naming ``arg``, the form, the corruption names and the value.

    Examples:
        >>> parse_corruption("train_corruption", "gaussian_noise:3")
        ('gaussian_noise', 3)
        >>> parse_corruption("train_corruption", "gaussian_noise:6")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `train_corruption` must be None or 'name:severity' with severity 1-5 and name one of ...
    """
    if value is None:
        return None
    name, _, level = value.partition(":") if isinstance(value, str) else ("", "", "")
    if name not in ALL_CORRUPTIONS or level not in ("1", "2", "3", "4", "5"):
        raise ValueError(
            f"`{arg}` must be None or 'name:severity' with severity 1-5 and name one of "
            f"{list(ALL_CORRUPTIONS)}, got {value!r}."
        )
    return name, int(level)


def fraction_count(arg: str, spec: Any, fraction: float, n: int) -> int:
    """``round(fraction * n)`` images, at least one.

    Raises:
        ValueError: If that rounds to no image.

    Examples:
        >>> fraction_count("train_fraction", 0.1, 0.1, 25)
        2
    """
    k = round(fraction * n)
    if k < 1:
        raise ValueError(f"`{arg}` must keep at least one of the {n} training images, got {spec!r} ({fraction * n:g}).")
    return k


def select_subset(
    positions: np.ndarray,
    labels: np.ndarray,
    subset: tuple[str, float],
    scores_file: list[str] | None,
    rng: np.random.Generator,
    pool_size: int,
) -> np.ndarray:
    """The positions that ``subset`` keeps of the training ``positions``.

    ``hardest`` / ``easiest``: the ``round(F * len(positions))`` highest / lowest scores of
    ``scores_file`` (averaged over the files), ties by position; ``random``: a stratified draw
    from ``rng``. The scores file must score every one of ``positions`` (it may score more).

    Args:
        positions: ``(M,)`` candidate positions in the full training split.
        labels: ``(M,)`` their labels (for the stratified random draw).
        subset: ``(kind, fraction)`` from :func:`parse_subset`.
        scores_file: Paths from :func:`check_scores_file`.
        rng: Generator of the random draw.
        pool_size: Images in the full training split (the range of valid positions).

    Returns:
        The kept positions, sorted.

    Raises:
        ValueError: If the scores file scores positions outside the training split or misses
            some of ``positions``, or the share rounds to no image.

    Examples:
        >>> import tempfile, torch
        >>> from lightning_sparse.metrics.hardness import save_scores
        >>> path = tempfile.mkdtemp() + "/el2n.pt"
        >>> save_scores(path, torch.tensor([0.9, 0.1, 0.5, 0.7]), torch.arange(4), "el2n", 1)
        >>> select_subset(np.array([0, 1, 2]), np.zeros(3), ("hardest", 0.67), [path],
        ...               np.random.default_rng(0), 4).tolist()
        [0, 2]
    """
    kind, fraction = subset
    spec = f"{kind}:{fraction:g}"
    k = fraction_count("subset", spec, fraction, len(positions))
    if kind == "random":
        return positions[stratified_take(labels, k, rng)[0]]
    scores, indices = (t.numpy() for t in read_scores(scores_file))  # sorted by position
    if len(indices) and (indices.min() < 0 or indices.max() >= pool_size):
        raise ValueError(
            f"`scores_file` {scores_file} scores positions up to {int(indices.max())}, but the training split "
            f"has {pool_size} images: it was written for another data set."
        )
    where = np.searchsorted(indices, positions).clip(max=max(len(indices) - 1, 0))
    missing = positions[(indices[where] != positions) if len(indices) else slice(None)]
    if len(missing):
        raise ValueError(
            f"`scores_file` {scores_file} scores {len(indices)} training images but misses {len(missing)} of the "
            f"{len(positions)} this DataModule trains on (positions {missing[:5].tolist()}...): score the same "
            "training set (data set, `val_split`, `seed`, `train_subset` / `train_fraction`)."
        )
    sign = -1.0 if kind == "hardest" else 1.0
    order = np.lexsort((positions, sign * scores[where]))  # by score, ties by position
    return np.sort(positions[order[:k]])


class PositionCorruptedDataset(CorruptedDataset):
    """:class:`~lightning_sparse.data.corruptions.CorruptedDataset` seeded by source position.

    Item ``i`` is corrupted with ``Corrupt(name, severity, seed).item_seed(source_indices[i])``:
    each training image keeps one fixed corruption, whatever the subset, validation split or
    order it is drawn in. ``dataset`` yields ``(uint8 image, label)``; ``transform`` (the
    augmentation or evaluation transform) runs after the corruption. ``labels`` and
    ``source_indices`` are passed through.

    Examples:
        >>> from lightning_sparse.data.image.datasets import ArrayImages
        >>> images = np.full((4, 32, 32, 3), 128, np.uint8)
        >>> a = ArrayImages(images, np.arange(4), np.arange(4))
        >>> b = ArrayImages(images[2:], np.arange(2, 4), np.arange(2, 4))
        >>> ca, cb = (PositionCorruptedDataset(d, "gaussian_noise", 3, seed=0) for d in (a, b))
        >>> bool((ca[2][0] == cb[0][0]).all()), bool((ca[2][0] == ca[3][0]).all())
        (True, False)
    """

    def __init__(self, dataset: Any, name: str, severity: int, seed: int = 0, params: str | None = None,
                 transform: Callable[[Any], Any] | None = None) -> None:
        super().__init__(dataset, name, severity, seed=seed, params=params, transform=transform)
        self.labels = dataset.labels
        self.source_indices = dataset.source_indices

    def __getitem__(self, index: int) -> Any:
        image, *rest = self.dataset[index]
        image = self.corruption(image, index=int(self.source_indices[index]))
        if self.transform is not None:
            image = self.transform(image)
        return (image, *rest)


def train_corruption_seed(corruption_seed: int) -> int:
    """The seed of the training-set corruptions, kept apart from the test set's ``corruption_seed``
    (else training image ``k`` and test image ``k`` would share their random draws).

    Examples:
        >>> train_corruption_seed(0) != 0
        True
    """
    return int(np.random.SeedSequence([corruption_seed, 1]).generate_state(1, np.uint32)[0])

