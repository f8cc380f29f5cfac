"""Conformer-CTC: convolutional subsampling, a Conformer encoder and a linear CTC head.

The Conformer (Gulati et al. 2020, "Conformer: Convolution-augmented Transformer for Speech
Recognition", arXiv:2005.08100) interleaves self-attention and depthwise convolution in
macaron-style blocks (half-step feed-forward, attention, convolution, half-step feed-forward).
:class:`ConformerCTC` is ``Conv2dSubsampling`` (4x in time) -> dropout ->
``torchaudio.models.Conformer`` -> ``Linear`` to the vocabulary (blank included), trained with
the CTC loss (as ESPnet's CTC-only Conformer, ``ctc_weight: 1.0``).

Registered sizes (parameter counts for the 29-token character vocabulary and 80 mel bands,
checked in ``tests/models/test_conformer.py``):

| name | d_model | layers | heads | ffn | kernel | parameters |
| --- | --- | --- | --- | --- | --- | --- |
| `conformer_ctc_tiny` | 32 | 2 | 2 | 64 | 7 | 62.8 k |
| `conformer_ctc_small` | 96 | 4 | 4 | 384 | 15 | 1.13 M |
| `conformer_ctc_medium` | 144 | 8 | 4 | 576 | 31 | 4.47 M |
| `conformer_ctc_large` | 256 | 12 | 4 | 1024 | 31 | 20.1 M |

``conformer_ctc_large`` is the encoder of ESPnet's LibriSpeech-100 Conformer recipe
(``egs2/librispeech_100/asr1/conf/tuning/train_asr_conformer_lr2e-3_warmup15k_amp_nondeterministic.yaml``
at github.com/espnet/espnet: ``output_size: 256``, ``attention_heads: 4``, ``linear_units:
1024``, ``num_blocks: 12``, ``cnn_module_kernel: 31``, ``dropout_rate: 0.1``,
``input_layer: conv2d``) with a CTC head instead of the attention decoder.
``conformer_ctc_medium`` has the width, heads and kernel of Conformer-S (Gulati et al. 2020,
Table 1: 144, 4, 32; 16 layers) at half its depth and an odd kernel; ``conformer_ctc_small``
trains in minutes on the CPU (Free Spoken Digit Dataset); ``conformer_ctc_tiny`` is for tests.

Deviations from ESPnet: torchaudio's Conformer has no positional encoding (ESPnet uses
relative positional encoding and relative-position self-attention), so word order reaches the
encoder through its depthwise convolutions.

Padding. torchaudio's Conformer masks padded frames in self-attention only; its depthwise
convolutions read them, and after the first block they are no longer zero, so in torchaudio a
sequence's output depends on how much padding its batch has (measured here: the CTC loss of a
batch of FSDD utterances 40% above that of the same utterances one by one). ``ConformerCTC``
zeros the padded frames right before every depthwise convolution (a forward pre-hook), so in
eval mode a sequence's output is the same batched or alone (tested); in training mode only
the batch-norm statistics still see the (zeroed) padded frames. That encoder is
:class:`MaskedConformer`, also used by the audio-visual model (:mod:`lightning_sparse.models.avsr`).
"""

from __future__ import annotations

from typing import Any

import torch
import torchaudio
from torch import Tensor, nn

from lightning_sparse._validation import check_int, check_number
from lightning_sparse.models._checks import check_sizes
from lightning_sparse.models._registry import register_model
from lightning_sparse.models.layers.subsampling import Conv2dSubsampling

__all__ = [
    "ConformerCTC",
    "MaskedConformer",
    "conformer_ctc_large",
    "conformer_ctc_medium",
    "conformer_ctc_small",
    "conformer_ctc_tiny",
]


class MaskedConformer(torchaudio.models.Conformer):
    """``torchaudio.models.Conformer`` that zeros padded frames before every depthwise convolution.

    Same arguments, parameters and ``forward(input (B, T, D), lengths (B,))`` as torchaudio's
    Conformer (``T`` must be ``max(lengths)``); a forward pre-hook on each block's depthwise
    convolution multiplies its input by the valid-frame mask, so in eval mode a sequence's output
    does not depend on the padding of its batch (see the module docstring).

    Examples:
        >>> enc = MaskedConformer(input_dim=8, num_heads=2, ffn_dim=16, num_layers=1,
        ...                       depthwise_conv_kernel_size=3).eval()
        >>> x = torch.randn(2, 5, 8)
        >>> batch, _ = enc(x, torch.tensor([5, 3]))  # the second sequence has 2 padded frames
        >>> alone, _ = enc(x[1:, :3], torch.tensor([3]))
        >>> torch.allclose(batch[1, :3], alone[0], atol=1e-5)
        True
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._valid: Tensor | None = None  # (B, 1, T) during forward: 1 on valid frames
        for layer in self.conformer_layers:
            layer.conv_module.sequential[2].register_forward_pre_hook(self._zero_padding)

    def _zero_padding(self, module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor, ...] | None:
        """Zero the padded frames of the depthwise convolution's input ``(B, C, T)``."""
        if self._valid is None or self._valid.shape[-1] != args[0].shape[-1]:
            return None
        return (args[0] * self._valid.to(args[0].dtype),)

    def forward(self, input: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:  # noqa: A002 (torchaudio's name)
        """torchaudio's ``(output (B, T, D), lengths (B,))``, padding zeroed before the depthwise convolutions."""
        steps = input.shape[1]
        self._valid = (torch.arange(steps, device=input.device)[None, :] < lengths.to(input.device)[:, None]).unsqueeze(1)
        try:
            return super().forward(input, lengths)
        finally:
            self._valid = None


class ConformerCTC(nn.Module):
    """``(features (B, T, input_dim), lengths (B,))`` -> ``(logits (B, T', vocab_size), lengths (B,))``.

    ``T' = ((T - 1) // 2 - 1) // 2`` for the longest sequence (4x subsampling, see
    :class:`~lightning_sparse.models.layers.Conv2dSubsampling`); the returned lengths are each
    sequence's valid output frames, for the CTC loss and decoding.

    The generic model tools read two attributes: ``example_input_size``, one utterance's
    features ``(T, input_dim)``, and ``input_convention = "features_lengths"``: ``forward``
    takes the features and their lengths and returns logits with their lengths.

    Args:
        vocab_size: Output tokens, the CTC blank included (29 for the character vocabulary).
        input_dim: Features per input frame (mel bands).
        d_model: Width of the encoder.
        num_layers: Conformer blocks.
        num_heads: Attention heads; must divide ``d_model``.
        ffn_dim: Hidden size of the feed-forward modules.
        depthwise_conv_kernel_size: Taps of the depthwise convolutions; odd.
        dropout: Dropout after the subsampling and inside the blocks, in ``[0, 1)``.

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> model = ConformerCTC(vocab_size=29, input_dim=80, d_model=32, num_layers=1, num_heads=2,
        ...                      ffn_dim=64, depthwise_conv_kernel_size=7)
        >>> logits, lengths = model(torch.randn(2, 100, 80), torch.tensor([100, 60]))
        >>> logits.shape, lengths.tolist()
        (torch.Size([2, 24, 29]), [24, 14])
    """

    input_convention = "features_lengths"
    """``forward(features (B, T, F), lengths (B,)) -> (logits (B, T', V), lengths (B,))``."""

    def __init__(
        self,
        vocab_size: int = 29,
        input_dim: int = 80,
        d_model: int = 144,
        num_layers: int = 4,
        num_heads: int = 4,
        ffn_dim: int = 576,
        depthwise_conv_kernel_size: int = 31,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size, 2)
        check_int("input_dim", input_dim, 7)
        check_sizes(d_model=d_model, num_layers=num_layers, num_heads=num_heads, ffn_dim=ffn_dim,
                    depthwise_conv_kernel_size=depthwise_conv_kernel_size)
        if d_model % num_heads:
            raise ValueError(f"`num_heads` must divide `d_model` ({d_model}), got {num_heads}.")
        if depthwise_conv_kernel_size % 2 == 0:
            raise ValueError(f"`depthwise_conv_kernel_size` must be odd, got {depthwise_conv_kernel_size}.")
        check_number("dropout", dropout, 0.0, 1.0, high_open=True)
        self.vocab_size, self.input_dim = vocab_size, input_dim
        self.example_input_size = (64, input_dim)  # one utterance: 64 frames (0.64 s at a 10 ms hop)
        self.subsampling = Conv2dSubsampling(input_dim, d_model)
        self.dropout = nn.Dropout(dropout)
        self.encoder = MaskedConformer(
            input_dim=d_model, num_heads=num_heads, ffn_dim=ffn_dim, num_layers=num_layers,
            depthwise_conv_kernel_size=depthwise_conv_kernel_size, dropout=dropout,
        )
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, features: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Logits ``(B, T', vocab_size)`` and output lengths ``(B,)``; ``lengths`` ``None``: all ``T``."""
        x, out_lengths = self.subsampling(features, lengths)
        steps = max(int(out_lengths.max()), 1) if len(out_lengths) else 1
        x = self.dropout(x[:, :steps])
        # torchaudio's padding mask spans max(lengths) frames: every sequence attends to >= 1 frame
        enc_lengths = out_lengths.clamp(1, steps).to(x.device)
        x, _ = self.encoder(x, enc_lengths)  # padding zeroed before the depthwise convolutions
        return self.head(x), out_lengths


def _build(defaults: dict[str, Any], kwargs: dict[str, Any]) -> ConformerCTC:
    """``ConformerCTC(**defaults, **kwargs)``; ``num_classes`` (the registry's common name for
    the number of outputs, which every builder takes) is ``vocab_size``."""
    if "num_classes" in kwargs:
        num_classes = kwargs.pop("num_classes")
        if kwargs.setdefault("vocab_size", num_classes) != num_classes:
            raise ValueError(
                f"`num_classes` is `vocab_size` here and must match it, got {num_classes} and {kwargs['vocab_size']}."
            )
    return ConformerCTC(**{**defaults, **kwargs})


@register_model
def conformer_ctc_tiny(**kwargs: Any) -> ConformerCTC:
    """For tests: d_model 32, 2 layers, 2 heads, ffn 64, kernel 7."""
    return _build(dict(d_model=32, num_layers=2, num_heads=2, ffn_dim=64, depthwise_conv_kernel_size=7), kwargs)


@register_model
def conformer_ctc_small(**kwargs: Any) -> ConformerCTC:
    """CPU scale: d_model 96, 4 layers, 4 heads, ffn 384, kernel 15."""
    return _build(dict(d_model=96, num_layers=4, num_heads=4, ffn_dim=384, depthwise_conv_kernel_size=15), kwargs)


@register_model
def conformer_ctc_medium(**kwargs: Any) -> ConformerCTC:
    """Conformer-S width at half depth: d_model 144, 8 layers, 4 heads, ffn 576, kernel 31."""
    return _build(dict(d_model=144, num_layers=8, num_heads=4, ffn_dim=576, depthwise_conv_kernel_size=31), kwargs)


@register_model
def conformer_ctc_large(**kwargs: Any) -> ConformerCTC:
    """ESPnet's LibriSpeech-100 Conformer encoder: d_model 256, 12 layers, 4 heads, ffn 1024, kernel 31."""
    return _build(dict(d_model=256, num_layers=12, num_heads=4, ffn_dim=1024, depthwise_conv_kernel_size=31), kwargs)
