"""CTC prefix scores: the probability of every label sequence that starts with a given prefix.

:class:`CTCPrefixScorer` runs the prefix recursion of Watanabe et al. 2017 ("Hybrid
CTC/Attention Architecture for End-to-End Speech Recognition", IEEE JSTSP, Algorithm 2), as
ESPnet's ``CTCPrefixScore`` (``espnet/nets/ctc_prefix_score.py``), over one utterance's CTC
posteriors, for a batch of prefixes and their candidate labels at once. The joint CTC/attention
beam search of :mod:`lightning_sparse.core.joint_decoding` scores its hypotheses with it.
Torch only: no Lightning import.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_sparse._validation import check_int

__all__ = ["CTCPrefixScorer"]

LOG_ZERO = -1.0e10
"""ESPnet's ``logzero``: the log-probability of an impossible path (finite, so differences stay defined)."""


class CTCPrefixScorer:
    """CTC prefix scores of label prefixes over one utterance's posteriors (Watanabe et al. 2017, Alg. 2).

    The state of a prefix ``g`` is ``r (T, 2)``: ``log r_t^n(g)`` and ``log r_t^b(g)``, the
    probability of the first ``t + 1`` frames emitting ``g`` with the last frame on ``g``'s last
    label (``n``) or on a blank (``b``). :meth:`score` extends a batch of prefixes (all of the
    same length) by candidate labels: the new states and ``log psi``, the prefix probability of
    ``g + c`` (every label sequence starting with it); for ``c = eos`` it is the probability of
    exactly ``g`` (``log(r_{T-1}^n(g) + r_{T-1}^b(g))``); for the blank it is ``LOG_ZERO``.

    Args:
        log_probs: ``(T, V)`` CTC log-probabilities of one utterance (its valid frames).
        blank: Blank id.
        eos: The end id (outside ``[0, V)``, e.g. ``V``).

    Raises:
        ValueError: If a shape or id does not fit.

    Examples:
        >>> log_probs = torch.randn(6, 4).log_softmax(-1)
        >>> scorer = CTCPrefixScorer(log_probs, blank=0, eos=4)
        >>> full = scorer.sequence_log_prob([2, 3])  # log p_ctc(2 3), by the prefix recursion
        >>> ctc = torch.nn.functional.ctc_loss(log_probs[:, None], torch.tensor([[2, 3]]), [6], [2], reduction="sum")
        >>> abs(full + ctc.item()) < 1e-4
        True
    """

    def __init__(self, log_probs: Tensor, blank: int = 0, eos: int | None = None) -> None:
        if not isinstance(log_probs, Tensor) or log_probs.dim() != 2 or log_probs.shape[0] < 1:
            shape = tuple(log_probs.shape) if isinstance(log_probs, Tensor) else type(log_probs).__name__
            raise ValueError(f"`log_probs` must be a tensor (T, V) with T >= 1, got {shape}.")
        vocab = log_probs.shape[1]
        check_int("blank", blank, 0, vocab - 1)
        eos = vocab if eos is None else eos
        if not isinstance(eos, int) or isinstance(eos, bool) or 0 <= eos < vocab:
            raise ValueError(f"`eos` must be an id outside the CTC vocabulary [0, {vocab}), got {eos!r}.")
        self.x, self.blank, self.eos, self.vocab = log_probs, blank, eos, vocab
        self.steps = log_probs.shape[0]

    def initial_state(self) -> Tensor:
        """State of the empty prefix (sos): ``r^n = LOG_ZERO``, ``r^b_t = sum_{s <= t} log y_s(blank)``."""
        r = torch.full((self.steps, 2), LOG_ZERO, dtype=self.x.dtype, device=self.x.device)
        r[:, 1] = torch.cumsum(self.x[:, self.blank], 0)
        return r

    def score(self, prefix_length: int, last: Tensor, states: Tensor, candidates: Tensor) -> tuple[Tensor, Tensor]:
        """Prefix scores and states of ``N`` prefixes extended by ``K`` candidates each.

        Args:
            prefix_length: Labels in each prefix (sos not counted).
            last: ``(N,)`` last label of each prefix (anything for the empty prefix).
            states: ``(N, T, 2)`` states of the prefixes.
            candidates: ``(N, K)`` candidate ids, in ``[0, V)`` or ``eos``.

        Returns:
            ``log psi`` ``(N, K)`` and the extended states ``(N, K, T, 2)``.
        """
        x, steps = self.x, self.steps
        n, k = candidates.shape
        ids = candidates.to(x.device)
        xs = x[:, ids.clamp(max=self.vocab - 1).reshape(-1)].reshape(steps, n, k)  # (T, N, K)
        r = torch.full((steps, 2, n, k), LOG_ZERO, dtype=x.dtype, device=x.device)
        if prefix_length == 0:
            r[0, 0] = xs[0]
        r_prev = states.to(x).permute(1, 0, 2)  # (T, N, 2)
        r_sum = torch.logaddexp(r_prev[..., 0], r_prev[..., 1])  # (T, N): log(r^n + r^b) of the prefix
        log_phi = r_sum.unsqueeze(-1).expand(steps, n, k)
        if prefix_length > 0:  # a repeated label needs a blank between: only the paths ending in blank
            same = (ids == last.to(x.device)[:, None]).unsqueeze(0)
            log_phi = torch.where(same, r_prev[..., 1].unsqueeze(-1), log_phi)
        start = max(prefix_length, 1)
        blank = x[:, self.blank]
        for t in range(start, steps):
            r[t, 0] = torch.logaddexp(r[t - 1, 0], log_phi[t - 1]) + xs[t]
            r[t, 1] = torch.logaddexp(r[t - 1, 0], r[t - 1, 1]) + blank[t]
        if start > steps:  # more labels than frames: only the end (still impossible) remains
            log_psi = torch.full((n, k), LOG_ZERO, dtype=x.dtype, device=x.device)
        else:
            log_psi = r[start - 1, 0]
        if start < steps:
            log_psi = torch.logaddexp(log_psi, torch.logsumexp(log_phi[start - 1:-1] + xs[start:], 0))
        log_psi = torch.where(ids == self.eos, r_sum[-1].unsqueeze(-1).expand(n, k), log_psi)
        log_psi = log_psi.masked_fill(ids == self.blank, LOG_ZERO)
        return log_psi, r.permute(2, 3, 0, 1)

    def prefix_log_prob(self, tokens: list[int], end: bool = False) -> float:
        """``log psi`` of ``tokens`` as a prefix (``end``: of exactly ``tokens``), label by label."""
        state, value = self.initial_state(), 0.0
        last = torch.zeros(1, dtype=torch.int64)
        for i, token in enumerate([*tokens, self.eos] if end else tokens):
            psi, states = self.score(i, last, state[None], torch.tensor([[token]]))
            value, state, last = float(psi[0, 0]), states[0, 0], torch.tensor([token])
        return value

    def sequence_log_prob(self, tokens: list[int]) -> float:
        """``log p_ctc(tokens)`` through the prefix recursion (equals ``-F.ctc_loss(..., reduction="sum")``)."""
        return self.prefix_log_prob(tokens, end=True)
