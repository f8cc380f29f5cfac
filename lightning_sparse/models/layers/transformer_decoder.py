"""The attention decoder of hybrid CTC/attention models, and ESPnet's sinusoidal positional encoding.

:class:`AttentionDecoder` is the decoder of :class:`~lightning_sparse.models.avsr.AVSR`: token
embedding, sinusoidal positions (:class:`SinusoidalPositionalEncoding`, also the encoder's
input positions there), a pre-norm ``torch.nn.TransformerDecoder`` (causal self-attention,
cross-attention to the encoder output with its padding masked), a final layer norm and the
output ``Linear``. Torch only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lightning_sparse._validation import check_int

__all__ = ["AttentionDecoder", "SinusoidalPositionalEncoding"]


def _valid_mask(lengths: Tensor, steps: int) -> Tensor:
    """``(B, steps)`` bool, True on each sequence's first ``lengths`` positions."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


class SinusoidalPositionalEncoding(nn.Module):
    """ESPnet's ``PositionalEncoding``: ``dropout(x * sqrt(d_model) + pe)`` for ``x (B, T, d_model)``.

    ``pe[t, 2i] = sin(t / 10000^(2i / d))``, ``pe[t, 2i + 1] = cos(...)`` (Vaswani et al. 2017,
    arXiv:1706.03762); computed for the input's length, so no length limit and no buffer.

    Examples:
        >>> pe = SinusoidalPositionalEncoding(4, dropout=0.0)
        >>> [round(v, 3) for v in pe(torch.zeros(1, 2, 4))[0, 1].tolist()]  # sin(1), cos(1), sin(0.01), cos(0.01)
        [0.841, 0.54, 0.01, 1.0]
    """

    def __init__(self, d_model: int, dropout: float = 0.0) -> None:
        super().__init__()
        check_int("d_model", d_model, 1)
        self.d_model, self.scale = d_model, math.sqrt(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        steps = x.shape[1]
        position = torch.arange(steps, device=x.device, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, self.d_model, 2, device=x.device, dtype=torch.float32)
                        * (-math.log(10000.0) / self.d_model))
        pe = torch.zeros(steps, self.d_model, device=x.device)
        pe[:, 0::2] = torch.sin(position * div)
        pe[:, 1::2] = torch.cos(position * div)[:, : self.d_model // 2]
        return self.dropout(x * self.scale + pe.to(x.dtype))


class AttentionDecoder(nn.Module):
    """Transformer decoder: ``(tokens (B, U), memory (B, T, D), memory_lengths (B,))`` -> logits ``(B, U, V)``.

    ``embed`` (``nn.Embedding(num_tokens, d_model)``) -> sinusoidal positions -> ``decoders``
    (a pre-norm ``nn.TransformerDecoder`` with a final layer norm, causal self-attention,
    cross-attention ignoring memory frames past ``memory_lengths``) -> ``output_layer``
    (``Linear(d_model, num_tokens)``). Position ``u`` sees tokens ``0..u`` only, so the logits
    of a prefix do not depend on what follows it (tested).

    Examples:
        >>> dec = AttentionDecoder(num_tokens=6, d_model=8, num_layers=1, num_heads=2, ffn_dim=16).eval()
        >>> memory = torch.randn(2, 7, 8)
        >>> dec(torch.tensor([[5, 1, 2], [5, 3, 3]]), memory, torch.tensor([7, 4])).shape
        torch.Size([2, 3, 6])
    """

    def __init__(self, num_tokens: int, d_model: int, num_layers: int, num_heads: int, ffn_dim: int,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_tokens, d_model)
        self.pos_encoding = SinusoidalPositionalEncoding(d_model, dropout)
        layer = nn.TransformerDecoderLayer(d_model, num_heads, ffn_dim, dropout, batch_first=True, norm_first=True)
        self.decoders = nn.TransformerDecoder(layer, num_layers, norm=nn.LayerNorm(d_model))
        self.output_layer = nn.Linear(d_model, num_tokens)

    def forward(self, tokens: Tensor, memory: Tensor, memory_lengths: Tensor | None = None) -> Tensor:
        steps = tokens.shape[1]
        x = self.pos_encoding(self.embed(tokens))
        causal = torch.triu(torch.full((steps, steps), float("-inf"), device=x.device, dtype=x.dtype), diagonal=1)
        padding = None
        if memory_lengths is not None:  # every sequence attends to at least its first frame
            padding = ~_valid_mask(memory_lengths.to(memory.device).clamp(1, memory.shape[1]), memory.shape[1])
        x = self.decoders(x, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=padding)
        return self.output_layer(x)
