"""Collation of audio-visual speech items into the AVSR batch dict (see :mod:`lightning_sparse.data.avsr`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence

__all__ = ["collate_av"]


def collate_av(items: Sequence[dict[str, Any]], return_index: bool = False) -> dict[str, Any]:
    """Pad a list of audio-visual items into one batch.

    Items with ``"video"`` float ``(T_v, H, W)`` (every item the same ``H, W``) give ``"video"``
    float32 ``(B, T_v, H, W)`` zero-padded in time and ``"video_lengths"``; items with
    ``"audio"`` ``(N,)`` give ``"audio"`` float32 ``(B, N)`` zero-padded at the end and
    ``"audio_lengths"``. A stream the items lack (audio-only or video-only data) is absent from
    the batch. ``"targets"`` are padded with 0 (the CTC blank, never a target).

    Args:
        items: Dicts with ``"video"`` and / or ``"audio"``, and ``"text"``, ``"targets"``,
            ``"index"``.
        return_index: Add ``"index"`` int64 ``(B,)`` (the items' ``"index"``).

    Returns:
        The batch dict.

    Raises:
        ValueError: If the items carry neither stream, only some carry a stream, or their
            frame sizes differ.

    Examples:
        >>> items = [{"video": torch.ones(2, 3, 3), "audio": torch.ones(1280), "text": "ab",
        ...           "targets": torch.tensor([3, 4]), "index": 7},
        ...          {"video": torch.ones(1, 3, 3), "audio": torch.ones(640), "text": "c",
        ...           "targets": torch.tensor([5]), "index": 2}]
        >>> batch = collate_av(items, return_index=True)
        >>> batch["video"].shape, batch["video_lengths"].tolist(), batch["video"][1, 1].abs().sum().item()
        (torch.Size([2, 2, 3, 3]), [2, 1], 0.0)
        >>> batch["audio"].shape, batch["audio_lengths"].tolist(), batch["targets"].tolist()
        (torch.Size([2, 1280]), [1280, 640], [[3, 4], [5, 0]])
        >>> batch["target_lengths"].tolist(), batch["text"], batch["index"].tolist()
        ([2, 1], ['ab', 'c'], [7, 2])
        >>> sorted(collate_av([{"audio": torch.ones(4), "text": "", "targets": torch.zeros(0), "index": 0}]))
        ['audio', 'audio_lengths', 'target_lengths', 'targets', 'text']
    """
    if not items:
        raise ValueError("`items` must hold at least one item, got none.")
    batch: dict[str, Any] = {}
    for key, dims in (("video", 3), ("audio", 1)):
        present = [key in item and item[key] is not None for item in items]
        if not any(present):
            continue
        if not all(present):
            raise ValueError(f"every item must carry {key!r} when one does, got {sum(present)} of {len(items)}.")
        signals = [torch.as_tensor(item[key], dtype=torch.float32) for item in items]
        shapes = {tuple(s.shape[1:]) for s in signals}
        if any(s.ndim != dims for s in signals) or len(shapes) > 1:
            raise ValueError(f"{key!r} must be {'(T, H, W) with one H, W' if dims == 3 else '(N,)'} in every item, "
                             f"got shapes {[tuple(s.shape) for s in signals]}.")
        batch[key] = pad_sequence(signals, batch_first=True, padding_value=0.0)
        batch[f"{key}_lengths"] = torch.tensor([s.shape[0] for s in signals], dtype=torch.int64)
    if not batch:
        raise ValueError("items must carry 'video' or 'audio', got neither.")
    targets = [torch.as_tensor(item["targets"], dtype=torch.int64).reshape(-1) for item in items]
    batch["targets"] = pad_sequence(targets, batch_first=True, padding_value=0)
    batch["target_lengths"] = torch.tensor([t.shape[0] for t in targets], dtype=torch.int64)
    batch["text"] = [item["text"] for item in items]
    if return_index:
        batch["index"] = torch.tensor([int(item["index"]) for item in items], dtype=torch.int64)
    return batch
