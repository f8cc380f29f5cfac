"""Collation of speech items into the speech batch dict (documented in :mod:`lightning_sparse.data.speech`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

__all__ = ["collate_speech"]


def collate_speech(items: Sequence[dict[str, Any]], return_index: bool = False) -> dict[str, Any]:
    """Pad a list of speech items into one batch.

    Items with ``"audio"`` ``(T,)`` give ``"audio"`` ``(B, T)`` and ``"audio_lengths"``; items
    with ``"features"`` ``(T', n_mels)`` (the feature cache) give ``"features"`` ``(B, T', n_mels)``
    and ``"feature_lengths"``. Both are zero-padded at the end; ``"targets"`` are padded with 0
    (the blank id, never a target).

    Args:
        items: Dicts with ``"audio"`` or ``"features"``, and ``"text"``, ``"targets"``, ``"index"``.
        return_index: Add ``"index"`` int64 ``(B,)``.

    Returns:
        The batch dict.

    Examples:
        >>> items = [{"audio": torch.ones(3), "text": "ab", "targets": torch.tensor([3, 4]), "index": 5},
        ...          {"audio": torch.ones(2), "text": "c", "targets": torch.tensor([5]), "index": 1}]
        >>> batch = collate_speech(items, return_index=True)
        >>> batch["audio"].tolist(), batch["audio_lengths"].tolist(), batch["targets"].tolist()
        ([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], [3, 2], [[3, 4], [5, 0]])
        >>> batch["target_lengths"].tolist(), batch["text"], batch["index"].tolist()
        ([2, 1], ['ab', 'c'], [5, 1])
    """
    key, lengths_key = ("features", "feature_lengths") if "features" in items[0] else ("audio", "audio_lengths")
    signals = [item[key] for item in items]
    targets = [torch.as_tensor(item["targets"], dtype=torch.int64) for item in items]
    batch: dict[str, Any] = {
        key: pad_sequence(signals, batch_first=True, padding_value=0.0),
        lengths_key: torch.tensor([s.shape[0] for s in signals], dtype=torch.int64),
        "targets": pad_sequence(targets, batch_first=True, padding_value=0),
        "target_lengths": torch.tensor([t.shape[0] for t in targets], dtype=torch.int64),
        "text": [item["text"] for item in items],
    }
    if return_index:
        batch["index"] = torch.tensor([int(item["index"]) for item in items], dtype=torch.int64)
    return batch
