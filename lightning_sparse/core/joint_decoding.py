"""Joint CTC/attention decoding: beam search and greedy attention decoding.

The one-pass joint decoding of Watanabe et al. 2017 ("Hybrid CTC/Attention Architecture for
End-to-End Speech Recognition", IEEE JSTSP, Sec. IV and Algorithm 2), as ESPnet's
``BeamSearch`` with a ``CTCPrefixScorer`` runs it (``espnet/nets/beam_search.py``,
``espnet/nets/ctc_prefix_score.py``; auto_avsr decodes with ``ctc_weight=0.1`` and
``beam_size=40``). A hypothesis ``h`` (a label prefix) scores

    ``(1 - lambda) * log p_att(h) + lambda * log p_ctc(h...) + length_bonus * |h|``

where ``p_ctc(h...)`` is the CTC *prefix* probability, the total probability of every label
sequence starting with ``h`` (:class:`~lightning_sparse.core.ctc_prefix.CTCPrefixScorer`, in
:mod:`lightning_sparse.core.ctc_prefix` and re-exported here); once ``h`` ends with eos it is
the CTC probability of exactly ``h``, so a finished hypothesis scores ``(1 - lambda) log
p_att(h, eos) + lambda log p_ctc(h)``.

:func:`beam_search` decodes one utterance: at every step each running hypothesis is extended by
its ``int(pre_beam_ratio * beam_size)`` best tokens under the attention decoder (ESPnet's
pre-beam; all tokens when ``lambda`` is 1), those get CTC prefix scores, and the ``beam_size``
best extensions over all hypotheses survive; extensions by eos move to the finished list. The
search stops when no hypothesis runs, at ``max_length`` tokens (then eos is the only allowed
token, scored), or, with ``end_detection``, when ESPnet's ``end_detect`` finds that finished
hypotheses of the last 3 lengths all score more than 10 (natural log) below the best finished
one. :func:`joint_decode` runs it over a batch (one utterance at a time) for a model with
``decoder_logits(tokens, encoder_out, encoder_lengths)`` (e.g.
:class:`~lightning_sparse.models.avsr.AVSR`); :func:`greedy_attention_decode` takes the
decoder's best token at every step, for a whole batch at once.

Vocabularies: the CTC posteriors have ``V`` ids, blank included; the decoder has ``V + 1``: the
last, ``sos_eos = V``, starts and ends a sentence (ESPnet's ``odim - 1``). The blank is never
emitted (ESPnet leaves that to the CTC score, so with ``lambda = 0`` its decoder could emit a
blank; here it is excluded in every mode, also by the greedy decoder).

Deviations from ESPnet: at ``max_length`` eos is forced with its score (ESPnet appends it
without one); ``min_length`` is enforced (eos is not allowed before it); the decoder is rerun
on the whole prefix at every step (no incremental state). Torch only: no Lightning import.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from lightning_sparse._validation import check_bool, check_int, check_number
from lightning_sparse.core.ctc_prefix import LOG_ZERO, CTCPrefixScorer  # noqa: F401 - LOG_ZERO re-exported

__all__ = [
    "CTCPrefixScorer",
    "Hypothesis",
    "beam_search",
    "end_detect",
    "greedy_attention_decode",
    "joint_decode",
]


class Hypothesis(NamedTuple):
    """A finished hypothesis: its ``tokens`` (without sos/eos) and scores (natural log)."""

    tokens: list[int]
    score: float
    """``(1 - ctc_weight) * att_score + ctc_weight * ctc_score + length_bonus * (len(tokens) + 1)``."""
    att_score: float
    """Decoder log-probability of ``tokens`` and the final eos (0 when the decoder is not used)."""
    ctc_score: float
    """CTC log-probability of ``tokens`` (0 when CTC is not used)."""


def end_detect(ended: list[tuple[float, int]], i: int, m: int = 3, d_end: float = -10.0) -> bool:
    """ESPnet's ``end_detect``: True when, for each of the lengths ``i, i - 1, .., i - m + 1``,
    finished hypotheses of that length exist and the best of them scores more than ``-d_end``
    below the best finished hypothesis.

    Args:
        ended: ``(score, length)`` of the finished hypotheses; ``length`` counts sos and eos.
        i: The current step.
        m: Lengths to check.
        d_end: Score margin (``log(exp(-10))``).

    Examples:
        >>> end_detect([(-1.0, 5), (-20.0, 6), (-30.0, 7), (-25.0, 8)], i=8)
        True
        >>> end_detect([(-1.0, 5), (-5.0, 7), (-25.0, 8)], i=8)
        False
    """
    if not ended:
        return False
    best = max(score for score, _ in ended)
    count = 0
    for back in range(m):
        same = [score for score, length in ended if length == i - back]
        if same and max(same) - best < d_end:
            count += 1
    return count == m


def beam_search(
    step: Callable[[Tensor], Tensor] | None,
    ctc_log_probs: Tensor | None,
    sos_eos: int,
    beam_size: int = 10,
    ctc_weight: float = 0.1,
    max_length: int | None = None,
    min_length: int = 0,
    blank: int = 0,
    pre_beam_ratio: float = 1.5,
    length_bonus: float = 0.0,
    end_detection: bool = True,
    nbest: int = 1,
) -> list[Hypothesis]:
    """Joint CTC/attention beam search over one utterance; the ``nbest`` best finished hypotheses.

    Args:
        step: ``prefixes (N, L)`` (sos first, int64, on the CPU) -> ``(N, sos_eos + 1)`` log-probabilities
            of the next token under the attention decoder; may be ``None`` when ``ctc_weight``
            is 1.
        ctc_log_probs: ``(T, sos_eos)`` CTC log-probabilities of the utterance's valid frames,
            or ``None`` when ``ctc_weight`` is 0.
        sos_eos: Start/end id, the decoder's last output.
        beam_size: Hypotheses kept per step.
        ctc_weight: ``lambda`` in ``[0, 1]``: 0 is attention-only, 1 CTC prefix search only.
        max_length: Most tokens of a hypothesis (eos not counted); ``None``: ``T`` (ESPnet's
            ``maxlenratio=0``); needed without CTC.
        min_length: Fewest tokens before eos is allowed.
        blank: Blank id (never emitted).
        pre_beam_ratio: Tokens per hypothesis scored by CTC: ``int(pre_beam_ratio * beam_size)``
            best under the decoder (all tokens when that covers the vocabulary or ``ctc_weight``
            is 1).
        length_bonus: Added per emitted token (eos included), ESPnet's ``penalty``.
        end_detection: Stop early by :func:`end_detect`.
        nbest: Hypotheses returned (best first).

    Returns:
        Up to ``nbest`` :class:`Hypothesis`, best first.

    Raises:
        ValueError: If an argument does not fit.

    Examples:
        >>> log_probs = torch.full((5, 4), -10.0)
        >>> log_probs[torch.arange(5), torch.tensor([2, 0, 3, 3, 0])] = 0.0  # best path "2 3"
        >>> hyp = beam_search(None, log_probs.log_softmax(-1), sos_eos=4, beam_size=3, ctc_weight=1.0)[0]
        >>> hyp.tokens
        [2, 3]
    """
    check_int("sos_eos", sos_eos, 1)
    check_int("beam_size", beam_size, 1)
    check_number("ctc_weight", ctc_weight, 0.0, 1.0)
    check_int("min_length", min_length, 0)
    check_int("blank", blank, 0, sos_eos - 1)
    check_number("pre_beam_ratio", pre_beam_ratio, 1.0)
    check_number("length_bonus", length_bonus)
    check_bool("end_detection", end_detection)
    check_int("nbest", nbest, 1)
    if ctc_weight < 1.0 and step is None:
        raise ValueError(f"`step` (the decoder) is needed when `ctc_weight` < 1, got ctc_weight={ctc_weight}.")
    scorer = None
    if ctc_weight > 0.0:
        if not isinstance(ctc_log_probs, Tensor) or ctc_log_probs.dim() != 2 or ctc_log_probs.shape[1] != sos_eos:
            shape = tuple(ctc_log_probs.shape) if isinstance(ctc_log_probs, Tensor) else type(ctc_log_probs).__name__
            raise ValueError(f"`ctc_log_probs` must be a tensor (T, {sos_eos}) (the CTC vocabulary, `sos_eos` ids) "
                             f"when `ctc_weight` > 0, got {shape}.")
        scorer = CTCPrefixScorer(ctc_log_probs, blank=blank, eos=sos_eos)
    if max_length is None:
        if scorer is None:
            raise ValueError("`max_length` is needed without CTC posteriors (ctc_weight=0), got None.")
        max_length = scorer.steps
    check_int("max_length", max_length, 0)
    vocab = sos_eos + 1
    pre_beam = int(pre_beam_ratio * beam_size)

    prefixes = torch.full((1, 1), sos_eos, dtype=torch.int64)  # running hypotheses (N, i + 1), CPU
    scores = torch.zeros(1, dtype=torch.float64)
    att_scores = torch.zeros(1, dtype=torch.float64)
    ctc_states = scorer.initial_state()[None] if scorer is not None else None  # (N, T, 2)
    ctc_psi = torch.zeros(1, dtype=torch.float64)  # log psi of each running prefix
    ended: list[tuple[float, int, list[int], float, float]] = []  # score, length with sos/eos, tokens, att, ctc
    for i in range(max_length + 1):
        n = prefixes.shape[0]
        token_scores = torch.zeros(n, vocab, dtype=torch.float64)
        att = torch.zeros(n, vocab, dtype=torch.float64)
        if ctc_weight < 1.0:
            att = step(prefixes).detach().to("cpu", torch.float64)
            if att.shape != (n, vocab):
                raise ValueError(f"`step` must return ({n}, {vocab}) log-probabilities, got {tuple(att.shape)}.")
            token_scores += (1.0 - ctc_weight) * att
        token_scores += length_bonus
        token_scores[:, blank] = -math.inf
        if i < min_length:
            token_scores[:, sos_eos] = -math.inf
        if i == max_length:  # the last step: only eos
            eos_column = token_scores[:, sos_eos].clone()
            token_scores.fill_(-math.inf)
            token_scores[:, sos_eos] = eos_column
        if scorer is not None:
            if ctc_weight < 1.0 and pre_beam < vocab:
                ids = token_scores.topk(pre_beam, dim=1).indices  # ESPnet's pre-beam on the decoder's scores
            else:
                ids = torch.arange(vocab).expand(n, vocab)
            psi, states = scorer.score(i, prefixes[:, -1], ctc_states, ids)
            psi = psi.to("cpu", torch.float64)
            cand = scores[:, None] + token_scores.gather(1, ids) + ctc_weight * (psi - ctc_psi[:, None])
        else:
            ids = torch.arange(vocab).expand(n, vocab)
            cand, psi, states = scores[:, None] + token_scores, None, None
        flat = cand.reshape(-1)
        finite = int(torch.isfinite(flat).sum())
        if finite == 0:
            break
        best = flat.topk(min(beam_size, finite)).indices
        rows, cols = best // ids.shape[1], best % ids.shape[1]
        tokens = ids[rows, cols]
        new_scores = flat[best]
        new_att = att_scores[rows] + att[rows, tokens]
        new_psi = psi[rows, cols] if psi is not None else torch.zeros(len(best), dtype=torch.float64)
        is_end = tokens == sos_eos
        for j in torch.nonzero(is_end).flatten().tolist():
            ended.append((float(new_scores[j]), i + 2, prefixes[rows[j], 1:].tolist(), float(new_att[j]),
                          float(new_psi[j])))
        keep = ~is_end
        if not bool(keep.any()):
            break
        prefixes = torch.cat([prefixes[rows[keep]], tokens[keep, None]], 1)
        scores, att_scores, ctc_psi = new_scores[keep], new_att[keep], new_psi[keep]
        if states is not None:
            ctc_states = states[rows[keep].to(states.device), cols[keep].to(states.device)]
        if end_detection and end_detect([(e[0], e[1]) for e in ended], i):
            break
    ended.sort(key=lambda e: e[0], reverse=True)
    return [Hypothesis(tokens, score, att_score if ctc_weight < 1.0 else 0.0, ctc if scorer is not None else 0.0)
            for score, _, tokens, att_score, ctc in ended[:nbest]]


def _max_lengths(encoder_lengths: Tensor, max_length_ratio: float) -> list[int]:
    return [max(1, int(max_length_ratio * int(n))) for n in encoder_lengths.tolist()]


def _check_encoder(encoder_out: Any, encoder_lengths: Any) -> None:
    if not isinstance(encoder_out, Tensor) or encoder_out.dim() != 3:
        shape = tuple(encoder_out.shape) if isinstance(encoder_out, Tensor) else type(encoder_out).__name__
        raise ValueError(f"`encoder_out` must be a tensor (B, T, D), got {shape}.")
    if not isinstance(encoder_lengths, Tensor) or encoder_lengths.shape != encoder_out.shape[:1]:
        shape = tuple(encoder_lengths.shape) if isinstance(encoder_lengths, Tensor) else type(encoder_lengths).__name__
        raise ValueError(f"`encoder_lengths` must be a tensor of shape ({encoder_out.shape[0]},), got {shape}.")


@torch.no_grad()
def joint_decode(
    decoder_logits: Callable[[Tensor, Tensor, Tensor], Tensor],
    encoder_out: Tensor,
    encoder_lengths: Tensor,
    ctc_log_probs: Tensor | None,
    sos_eos: int,
    beam_size: int = 10,
    ctc_weight: float = 0.1,
    max_length_ratio: float = 1.0,
    blank: int = 0,
    **kwargs: Any,
) -> list[list[int]]:
    """Token ids of the best joint CTC/attention hypothesis of every utterance of a batch.

    Args:
        decoder_logits: ``(tokens (N, L), encoder_out (N, T, D), encoder_lengths (N,))`` ->
            logits ``(N, L, sos_eos + 1)``, e.g. ``AVSR.decoder_logits``.
        encoder_out: ``(B, T, D)``.
        encoder_lengths: ``(B,)`` valid frames.
        ctc_log_probs: ``(B, T, sos_eos)`` CTC log-probabilities, or ``None`` with ``ctc_weight`` 0.
        sos_eos: Start/end id.
        beam_size: See :func:`beam_search`.
        ctc_weight: See :func:`beam_search`.
        max_length_ratio: Most tokens per utterance: ``max(1, int(ratio * frames))`` (1: ESPnet's
            ``maxlenratio=0``, at most one token per encoder frame).
        blank: Blank id.
        **kwargs: More :func:`beam_search` arguments (``pre_beam_ratio``, ``length_bonus``, ...).

    Returns:
        One list of token ids per utterance (empty when no hypothesis finished).

    Raises:
        ValueError: If a shape or argument does not fit.
    """
    _check_encoder(encoder_out, encoder_lengths)
    check_number("max_length_ratio", max_length_ratio, 0.0, low_open=True)
    results = []
    for b, max_length in enumerate(_max_lengths(encoder_lengths, max_length_ratio)):
        frames = max(1, min(int(encoder_lengths[b]), encoder_out.shape[1]))
        memory, memory_lengths = encoder_out[b: b + 1, :frames], encoder_lengths[b: b + 1].clamp(1, frames)

        def step(prefixes: Tensor, memory: Tensor = memory, memory_lengths: Tensor = memory_lengths) -> Tensor:
            n = prefixes.shape[0]
            logits = decoder_logits(prefixes.to(memory.device), memory.expand(n, -1, -1), memory_lengths.expand(n))
            return logits[:, -1].float().log_softmax(-1)

        posteriors = ctc_log_probs[b, :frames] if ctc_log_probs is not None and ctc_weight > 0 else None
        hyps = beam_search(step, posteriors, sos_eos, beam_size=beam_size, ctc_weight=ctc_weight,
                           max_length=max_length, blank=blank, **kwargs)
        results.append(hyps[0].tokens if hyps else [])
    return results


@torch.no_grad()
def greedy_attention_decode(
    decoder_logits: Callable[[Tensor, Tensor, Tensor], Tensor],
    encoder_out: Tensor,
    encoder_lengths: Tensor,
    sos_eos: int,
    max_length_ratio: float = 1.0,
    blank: int = 0,
) -> list[list[int]]:
    """The decoder's best token at every step (blank excluded) until eos, for a whole batch.

    Args:
        decoder_logits: As for :func:`joint_decode`.
        encoder_out: ``(B, T, D)``.
        encoder_lengths: ``(B,)`` valid frames.
        sos_eos: Start/end id.
        max_length_ratio: Most tokens per utterance, ``max(1, int(ratio * frames))``.
        blank: Blank id.

    Returns:
        One list of token ids per utterance (eos removed).

    Raises:
        ValueError: If a shape or argument does not fit.

    Examples:
        >>> def decoder(tokens, memory, lengths):  # always "1", then eos (id 3) after two tokens
        ...     logits = torch.zeros(*tokens.shape, 4)
        ...     logits[..., 1] = 1.0
        ...     logits[:, 2:, 3] = 2.0
        ...     return logits
        >>> greedy_attention_decode(decoder, torch.zeros(2, 5, 8), torch.tensor([5, 1]), sos_eos=3)
        [[1, 1], [1]]
    """
    _check_encoder(encoder_out, encoder_lengths)
    check_int("sos_eos", sos_eos, 1)
    check_int("blank", blank, 0, sos_eos - 1)
    check_number("max_length_ratio", max_length_ratio, 0.0, low_open=True)
    batch = encoder_out.shape[0]
    limits = torch.tensor(_max_lengths(encoder_lengths, max_length_ratio), device=encoder_out.device)
    tokens = torch.full((batch, 1), sos_eos, dtype=torch.int64, device=encoder_out.device)
    done = torch.zeros(batch, dtype=torch.bool, device=encoder_out.device)
    memory_lengths = encoder_lengths.to(encoder_out.device)
    for i in range(int(limits.max()) + 1 if batch else 0):
        scores = decoder_logits(tokens, encoder_out, memory_lengths)[:, -1].float()
        scores[:, blank] = -math.inf
        forced = limits <= i  # past its most tokens: end it
        scores[forced] = -math.inf
        scores[forced, sos_eos] = 0.0
        best = scores.argmax(-1).masked_fill(done, sos_eos)
        tokens = torch.cat([tokens, best[:, None]], 1)
        done |= best == sos_eos
        if bool(done.all()):
            break
    results = []
    for row in tokens[:, 1:].tolist():
        results.append(row[: row.index(sos_eos)] if sos_eos in row else row)
    return results
