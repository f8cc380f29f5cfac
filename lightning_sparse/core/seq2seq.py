"""Losses of hybrid CTC/attention speech recognition, per utterance.

The hybrid objective of Watanabe et al. 2017 ("Hybrid CTC/Attention Architecture for End-to-End
Speech Recognition", IEEE JSTSP) as ESPnet and auto_avsr (arXiv:2303.14307) train it,
``ctc_weight * L_ctc + (1 - ctc_weight) * L_att`` (ESPnet's ``mtlalpha``; auto_avsr: 0.1), with
every term kept per utterance so the per-sample contract of
:mod:`lightning_sparse.core.per_sample` (data pruning, loss weights) applies:

- :func:`add_sos_eos`: decoder input and output from the zero-padded targets (ESPnet's
  ``add_sos_eos``): ``[sos, y_1 .. y_n]`` in, ``[y_1 .. y_n, eos]`` out, one id for both.
- :func:`label_smoothing_loss`: ESPnet's ``LabelSmoothingLoss`` per utterance: the KL
  divergence from the smoothed target (``1 - smoothing`` on the true token, ``smoothing /
  (V - 1)`` on each other token) to the decoder's distribution, summed over the utterance's
  tokens (its ``n + 1`` outputs, eos included). That is the cross-entropy with that target
  minus the target's (constant) entropy: same gradients, 0 for a perfect prediction without
  smoothing. Note the smoothing mass is spread over the ``V - 1`` other tokens, not over all
  ``V`` as in ``torch.nn.functional.cross_entropy(label_smoothing=...)``.
- :func:`hybrid_ctc_attention_loss`: both terms and their mix; the CTC term is
  ``F.ctc_loss(reduction="none", zero_infinity=True)``.

Normalisation: with ``normalize_length=True`` (the default) each utterance's CTC loss is divided
by its target length and its attention loss by its number of decoder outputs (target length +
1), so both are per-token means, like the CTC task's loss. ESPnet and auto_avsr
(``transformer_length_normalized_loss: False``) instead use per-utterance sums averaged over the
batch: ``normalize_length=False``.

Torch only: no Lightning import here.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_sparse._validation import check_bool, check_int, check_number

__all__ = ["IGNORE_ID", "HybridLoss", "add_sos_eos", "hybrid_ctc_attention_loss", "label_smoothing_loss"]

IGNORE_ID = -1
"""Fill value of :func:`add_sos_eos`'s decoder outputs past each target (ESPnet's ``ignore_id``)."""


class HybridLoss(NamedTuple):
    """Per-utterance losses ``(B,)``: the mix, and its CTC and attention terms."""

    loss: Tensor
    ctc: Tensor
    att: Tensor


def _check_targets(targets: Any, target_lengths: Any) -> None:
    if not isinstance(targets, Tensor) or targets.dim() != 2 or targets.is_floating_point():
        shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise ValueError(f"`targets` must be an integer tensor (B, U), got {shape}.")
    if (not isinstance(target_lengths, Tensor) or target_lengths.shape != targets.shape[:1]
            or target_lengths.is_floating_point()):
        shape = tuple(target_lengths.shape) if isinstance(target_lengths, Tensor) else type(target_lengths).__name__
        raise ValueError(f"`target_lengths` must be an integer tensor of shape ({targets.shape[0]},), got {shape}.")
    if len(target_lengths) and (int(target_lengths.min()) < 0 or int(target_lengths.max()) > targets.shape[1]):
        raise ValueError(f"`target_lengths` must be in [0, {targets.shape[1]}] (the padded target size), "
                         f"got {target_lengths.tolist()}.")


def add_sos_eos(
    targets: Tensor, target_lengths: Tensor, sos_eos: int, ignore_id: int = IGNORE_ID
) -> tuple[Tensor, Tensor]:
    """Decoder input and output ``(B, L)``, ``L = max(target_lengths) + 1``, from padded targets.

    Input: ``sos_eos``, then the target, then ``sos_eos`` padding (ESPnet pads it with eos);
    output: the target, ``sos_eos`` (the end), then ``ignore_id``.

    Args:
        targets: ``(B, U)`` token ids, padded (any value past each length).
        target_lengths: ``(B,)`` tokens of each target.
        sos_eos: The start/end id (the decoder's last output, ``vocab_size``).
        ignore_id: Fill of the output past each end (skipped by :func:`label_smoothing_loss`).

    Raises:
        ValueError: If a shape does not fit.

    Examples:
        >>> ys_in, ys_out = add_sos_eos(torch.tensor([[3, 4, 5], [6, 0, 0]]), torch.tensor([3, 1]), sos_eos=9)
        >>> ys_in.tolist(), ys_out.tolist()
        ([[9, 3, 4, 5], [9, 6, 9, 9]], [[3, 4, 5, 9], [6, 9, -1, -1]])
    """
    _check_targets(targets, target_lengths)
    check_int("sos_eos", sos_eos, 0)
    batch = targets.shape[0]
    lengths = target_lengths.to(targets.device)
    steps = (int(lengths.max()) if batch else 0) + 1
    body = targets[:, : steps - 1]
    position = torch.arange(steps, device=targets.device)[None, :]
    ys_in = torch.cat([targets.new_full((batch, 1), sos_eos), body], 1)
    ys_in = ys_in.masked_fill(position > lengths[:, None], sos_eos)
    ys_out = torch.cat([body, targets.new_full((batch, 1), ignore_id)], 1)
    ys_out = ys_out.masked_fill(position == lengths[:, None], sos_eos)
    ys_out = ys_out.masked_fill(position > lengths[:, None], ignore_id)
    return ys_in, ys_out


def label_smoothing_loss(
    logits: Tensor,
    ys_out: Tensor,
    smoothing: float = 0.1,
    ignore_id: int = IGNORE_ID,
    normalize_length: bool = True,
) -> Tensor:
    """ESPnet's label-smoothed decoder loss of every utterance, ``(B,)``.

    Per output token with true id ``y``: ``KL(q || softmax(logits))`` with ``q[y] = 1 -
    smoothing`` and ``q[c] = smoothing / (V - 1)`` elsewhere; positions whose ``ys_out`` is
    ``ignore_id`` are skipped. Summed over each utterance, divided by its number of tokens when
    ``normalize_length`` (an utterance without tokens has loss 0).

    Args:
        logits: Decoder logits ``(B, L, V)``.
        ys_out: Decoder outputs ``(B, L)`` (:func:`add_sos_eos`).
        smoothing: Label smoothing in ``[0, 1)`` (ESPnet's ``lsm_weight``; auto_avsr: 0.1).
        ignore_id: Id of the skipped positions.
        normalize_length: Divide by each utterance's token count (else the sum).

    Raises:
        ValueError: If a shape or argument does not fit.

    Examples:
        >>> logits = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]]])
        >>> ys_out = torch.tensor([[0, -1]])  # one token (id 0), one ignored position
        >>> loss = label_smoothing_loss(logits, ys_out, smoothing=0.0)
        >>> torch.allclose(loss, -logits[0, 0].log_softmax(-1)[0])  # no smoothing: the cross-entropy
        True
    """
    if not isinstance(logits, Tensor) or logits.dim() != 3:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"`logits` must be a tensor (B, L, V), got {shape}.")
    if not isinstance(ys_out, Tensor) or ys_out.shape != logits.shape[:2]:
        shape = tuple(ys_out.shape) if isinstance(ys_out, Tensor) else type(ys_out).__name__
        raise ValueError(f"`ys_out` must have the shape of `logits` without its last dimension "
                         f"{tuple(logits.shape[:2])}, got {shape}.")
    check_number("smoothing", smoothing, 0.0, 1.0, high_open=True)
    check_bool("normalize_length", normalize_length)
    vocab = logits.shape[-1]
    log_probs = logits.float().log_softmax(-1)
    valid = ys_out != ignore_id
    target = ys_out.masked_fill(~valid, 0).to(logits.device)
    confidence, other = 1.0 - smoothing, smoothing / max(vocab - 1, 1)
    true_lp = log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (B, L)
    cross_entropy = -(confidence * true_lp + other * (log_probs.sum(-1) - true_lp))
    neg_entropy = (confidence * math.log(confidence) if confidence > 0 else 0.0) + (
        smoothing * math.log(other) if smoothing > 0 else 0.0)  # sum_c q_c log q_c
    per_token = (cross_entropy + neg_entropy) * valid.to(log_probs.dtype).to(logits.device)
    losses = per_token.sum(-1)
    if normalize_length:
        losses = losses / valid.sum(-1).to(losses).clamp_min(1)
    return losses


def hybrid_ctc_attention_loss(
    ctc_log_probs: Tensor,
    ctc_lengths: Tensor,
    decoder_logits: Tensor,
    targets: Tensor,
    target_lengths: Tensor,
    ctc_weight: float = 0.1,
    label_smoothing: float = 0.1,
    blank: int = 0,
    normalize_length: bool = True,
) -> HybridLoss:
    """Per-utterance ``ctc_weight * ctc + (1 - ctc_weight) * att`` and its two terms.

    Args:
        ctc_log_probs: CTC log-probabilities ``(B, T, V)`` (blank included).
        ctc_lengths: Valid frames ``(B,)``.
        decoder_logits: Decoder logits ``(B, max(target_lengths) + 1, V_att)`` for the input
            of :func:`add_sos_eos` with ``sos_eos = V_att - 1`` (``V_att = V + 1`` for
            :class:`~lightning_sparse.models.avsr.AVSR`).
        targets: ``(B, U)`` token ids, zero-padded (no blank inside a target).
        target_lengths: ``(B,)`` tokens per target.
        ctc_weight: Weight of the CTC term, in ``[0, 1]``.
        label_smoothing: Of the attention term (:func:`label_smoothing_loss`).
        blank: CTC blank id.
        normalize_length: Per-token means (see the module docstring) or per-utterance sums.

    Returns:
        A :class:`HybridLoss` of ``(B,)`` tensors; an utterance too short for its target has an
        infinite CTC loss, set to 0 (``zero_infinity``).

    Raises:
        ValueError: If a shape or argument does not fit.

    Examples:
        >>> ctc = torch.randn(2, 12, 5).log_softmax(-1)
        >>> targets, lengths = torch.tensor([[1, 2, 3], [4, 0, 0]]), torch.tensor([3, 1])
        >>> decoder_logits = torch.randn(2, 4, 6)  # 3 + 1 outputs, 5 + 1 ids (id 5: sos/eos)
        >>> out = hybrid_ctc_attention_loss(ctc, torch.tensor([12, 9]), decoder_logits, targets, lengths)
        >>> out.loss.shape, torch.allclose(out.loss, 0.1 * out.ctc + 0.9 * out.att)
        (torch.Size([2]), True)
    """
    _check_targets(targets, target_lengths)
    check_number("ctc_weight", ctc_weight, 0.0, 1.0)
    check_bool("normalize_length", normalize_length)
    if not isinstance(ctc_log_probs, Tensor) or ctc_log_probs.dim() != 3 or ctc_log_probs.shape[0] != targets.shape[0]:
        shape = tuple(ctc_log_probs.shape) if isinstance(ctc_log_probs, Tensor) else type(ctc_log_probs).__name__
        raise ValueError(f"`ctc_log_probs` must be a tensor ({targets.shape[0]}, T, V), got {shape}.")
    if not isinstance(decoder_logits, Tensor) or decoder_logits.dim() != 3:
        shape = tuple(decoder_logits.shape) if isinstance(decoder_logits, Tensor) else type(decoder_logits).__name__
        raise ValueError(f"`decoder_logits` must be a tensor (B, L, V_att), got {shape}.")
    _, ys_out = add_sos_eos(targets, target_lengths, decoder_logits.shape[-1] - 1)
    if decoder_logits.shape[:2] != ys_out.shape:
        raise ValueError(f"`decoder_logits` must be (B, max(target_lengths) + 1, V_att) = {tuple(ys_out.shape)} + "
                         f"(V_att,), got {tuple(decoder_logits.shape)}.")
    lengths = target_lengths.to(ctc_log_probs.device)
    ctc = F.ctc_loss(ctc_log_probs.float().transpose(0, 1), targets.to(ctc_log_probs.device), ctc_lengths, lengths,
                     blank=blank, reduction="none", zero_infinity=True)
    if normalize_length:
        ctc = ctc / lengths.to(ctc).clamp_min(1)
    att = label_smoothing_loss(decoder_logits, ys_out.to(decoder_logits.device), label_smoothing,
                               normalize_length=normalize_length).to(ctc.device)
    return HybridLoss(ctc_weight * ctc + (1.0 - ctc_weight) * att, ctc, att)
