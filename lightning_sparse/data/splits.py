"""The one stratified, seeded subset rule of every DataModule (splits, ``*_subset`` arguments)."""

from __future__ import annotations

import numpy as np

__all__ = ["stratified_take"]


def stratified_take(
    labels: np.ndarray, n: int, rng: np.random.Generator, balanced: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Choose ``n`` positions of ``labels``, stratified by class and seeded by ``rng``.

    Proportional (default): each class gets its share ``n * count / total`` rounded by largest
    remainder (ties drawn from ``rng``), its members drawn at random. ``balanced=True``: as equal
    a number per class as the class sizes allow (rank each class's members in a random order,
    take the first ``n`` by (rank, order)): the class-balanced subsets of the video DataModules.

    Args:
        labels: ``(N,)`` class labels.
        n: Positions to take, ``0 <= n <= N``.
        rng: The generator that decides the draw.
        balanced: Equal counts per class instead of proportional ones.

    Returns:
        ``(taken, rest)``, both sorted positions into ``labels``.

    Examples:
        >>> labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
        >>> taken, rest = stratified_take(labels, 4, np.random.default_rng(0))
        >>> np.bincount(labels[taken]).tolist(), len(rest)
        ([2, 1, 1], 4)
        >>> taken, _ = stratified_take(labels, 3, np.random.default_rng(0), balanced=True)
        >>> sorted(labels[taken].tolist())
        [0, 1, 2]
    """
    labels = np.asarray(labels)
    total = len(labels)
    if balanced:
        order = rng.permutation(total)
        rank, seen = np.empty(total, np.int64), {}
        for pos in order:
            rank[pos] = seen.get(labels[pos], 0)
            seen[labels[pos]] = rank[pos] + 1
        where = np.empty(total, np.int64)
        where[order] = np.arange(total)
        taken = np.sort(np.lexsort((where, rank))[:n]).astype(np.int64)
    else:
        classes, counts = np.unique(labels, return_counts=True)
        exact = n * counts / max(counts.sum(), 1)
        take = np.floor(exact).astype(np.int64)
        short = n - int(take.sum())
        if short:  # largest fractional parts first, random among (near-)ties
            order = np.lexsort((rng.random(len(classes)), -np.round(exact - take, 9)))
            take[order[:short]] += 1
        chosen = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)]
        taken = np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)
    return taken, np.setdiff1d(np.arange(total), taken)
