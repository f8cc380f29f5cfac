"""CTC decoding: greedy (best path) and beam search over the label posteriors of a CTC model.

Connectionist temporal classification (Graves et al. 2006, "Connectionist Temporal
Classification: Labelling Unsegmented Sequence Data with Recurrent Neural Networks", ICML) maps
a frame-wise path to a label sequence by merging repeated labels and then removing blanks.

- :func:`greedy_decode` takes the most likely label of every frame (the best path) and maps it.
- :class:`BeamSearchDecoder` searches label sequences with torchaudio's lexicon-free
  Flashlight beam search (:func:`torchaudio.models.decoder.ctc_decoder`; Kahn et al. 2022,
  "Flashlight: Enabling Innovation in Tools for Machine Learning", arXiv:2201.12465), without a
  language model. With ``log_add=True`` (the default here) hypotheses that reach the same label
  sequence add their probabilities, so the search ranks label sequences by their total
  probability over alignments (prefix beam search) rather than by their best single path.

Both return token ids (blank removed); a tokenizer's ``decode`` turns them into text. Torch only
(torchaudio's decoder needs the ``flashlight-text`` package): no Lightning import here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_sparse._validation import check_bool, check_int, check_number
from lightning_sparse.core.lengths import batch_lengths

__all__ = ["BeamSearchDecoder", "greedy_decode"]


def _check_log_probs(log_probs: Any, lengths: Any) -> Tensor:
    if not isinstance(log_probs, Tensor) or log_probs.dim() != 3:
        shape = tuple(log_probs.shape) if isinstance(log_probs, Tensor) else type(log_probs).__name__
        raise ValueError(f"`log_probs` must be a tensor (B, T, V), got {shape}.")
    batch, steps = log_probs.shape[:2]
    return batch_lengths(lengths, batch, steps)


def greedy_decode(log_probs: Tensor, lengths: Tensor | None = None, blank: int = 0) -> list[list[int]]:
    """Best-path decoding: the argmax label of each frame, repeats merged, blanks removed.

    Args:
        log_probs: Frame-wise scores ``(B, T, V)`` (log-probabilities or logits: only the
            argmax matters).
        lengths: Valid frames of each sequence ``(B,)``; ``None``: all ``T``.
        blank: Id of the blank label.

    Returns:
        One list of token ids per sequence.

    Raises:
        ValueError: If a shape does not fit or ``blank`` is not a label id.

    Examples:
        >>> best = torch.tensor([[0, 3, 3, 0, 3, 1, 1, 0], [2, 2, 0, 0, 0, 0, 0, 0]])  # argmax per frame
        >>> greedy_decode(torch.nn.functional.one_hot(best, 4).float().log(), torch.tensor([8, 2]))
        [[3, 3, 1], [2]]
    """
    lengths = _check_log_probs(log_probs, lengths)
    check_int("blank", blank, 0, log_probs.shape[-1] - 1)
    best = log_probs.argmax(dim=-1).cpu()  # (B, T)
    keep = torch.ones_like(best, dtype=torch.bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != blank
    keep &= torch.arange(best.shape[1])[None, :] < lengths[:, None]
    return [row[mask].tolist() for row, mask in zip(best, keep)]


class BeamSearchDecoder:
    """Lexicon-free CTC beam search (torchaudio's Flashlight decoder), returning token ids.

    Flashlight's decoder starts and ends every hypothesis with a *silence* token, which it also
    scores with ``sil_score`` wherever it is emitted. It is mapped to the vocabulary's word
    separator (the space token ``" "`` of the character vocabulary) when there is one and to the
    blank otherwise (SentencePiece pieces carry their word boundaries); the start and end
    markers are removed from the result. A space in the first frame merges with the start
    marker (it would be stripped from the text anyway).

    Args:
        tokens: The vocabulary, one string per id (e.g. ``CharTokenizer().tokens``); unique.
        blank: Id of the blank token.
        beam_size: Hypotheses kept after each frame.
        beam_size_token: Labels considered per frame (the most likely ones); ``None``: all.
        beam_threshold: Hypotheses scoring more than this below the best one are pruned.
        log_add: Merge hypotheses of the same label sequence by adding their probabilities
            (``True``, ranks sequences by total probability) or by keeping the best path.
        sil_token: The token Flashlight treats as silence; ``None``: ``" "`` when in ``tokens``,
            else the blank.
        sil_score: Score added whenever the silence token is emitted (a word insertion bonus
            when it is the space).

    Raises:
        ValueError: If an argument is out of range.

    Examples:
        >>> decoder = BeamSearchDecoder(["<blank>", " ", "a", "b"], beam_size=4)
        >>> best = torch.tensor([[2, 2, 0, 1, 3, 0, 0, 0]])  # "a b" as one peaked path
        >>> log_probs = (torch.nn.functional.one_hot(best, 4) * 10.0).log_softmax(-1)
        >>> decoder(log_probs), greedy_decode(log_probs)
        ([[2, 1, 3]], [[2, 1, 3]])
    """

    def __init__(
        self,
        tokens: Sequence[str],
        blank: int = 0,
        beam_size: int = 10,
        beam_size_token: int | None = None,
        beam_threshold: float = 50.0,
        log_add: bool = True,
        sil_token: str | None = None,
        sil_score: float = 0.0,
    ) -> None:
        tokens = list(tokens)
        if len(tokens) < 2 or not all(isinstance(t, str) and t for t in tokens) or len(set(tokens)) != len(tokens):
            raise ValueError(f"`tokens` must be at least 2 unique non-empty strings, got {tokens!r}.")
        check_int("blank", blank, 0, len(tokens) - 1)
        check_int("beam_size", beam_size, 1)
        check_int("beam_size_token", beam_size_token, 1, allow_none=True)
        check_number("beam_threshold", beam_threshold, 0.0, low_open=True)
        check_bool("log_add", log_add)
        check_number("sil_score", sil_score)
        if sil_token is None:
            sil_token = " " if " " in tokens else tokens[blank]
        if sil_token not in tokens:
            raise ValueError(f"`sil_token` must be one of the tokens or None, got {sil_token!r}.")
        self.tokens, self.blank, self.sil = tokens, blank, tokens.index(sil_token)
        self.beam_size, self.beam_size_token, self.beam_threshold = beam_size, beam_size_token, beam_threshold
        self.log_add, self.sil_score = log_add, sil_score
        self._decoder: Any = None  # built on first use; not pickled (a C++ object)

    def _build(self) -> Any:
        from torchaudio.models.decoder import ctc_decoder

        return ctc_decoder(
            lexicon=None, tokens=self.tokens, lm=None, nbest=1, beam_size=self.beam_size,
            beam_size_token=self.beam_size_token, beam_threshold=self.beam_threshold,
            log_add=self.log_add, sil_score=self.sil_score, blank_token=self.tokens[self.blank],
            sil_token=self.tokens[self.sil],
        )

    def __call__(self, log_probs: Tensor, lengths: Tensor | None = None) -> list[list[int]]:
        """Best label sequence of each of the ``(B, T, V)`` log-probabilities, as token ids.

        Raises:
            ValueError: If a shape does not fit the vocabulary.
        """
        lengths = _check_log_probs(log_probs, lengths)
        if log_probs.shape[-1] != len(self.tokens):
            raise ValueError(
                f"`log_probs` must have one score per token ({len(self.tokens)}), got shape {tuple(log_probs.shape)}."
            )
        if self._decoder is None:
            self._decoder = self._build()
        emissions = log_probs.detach().to("cpu", torch.float32).contiguous()
        results = self._decoder(emissions, lengths.to(torch.int32))
        out = []
        for hypos, length in zip(results, lengths.tolist()):
            if length == 0 or not hypos:
                out.append([])
                continue
            best = hypos[0]  # tokens merged and without blanks; timestep 0 / length + 1: the markers
            out.append([int(t) for t, step in zip(best.tokens.tolist(), best.timesteps.tolist())
                        if not (t == self.sil and step in (0, length + 1))])
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_decoder": None}

    def __repr__(self) -> str:
        return (f"BeamSearchDecoder(vocab_size={len(self.tokens)}, blank={self.blank}, beam_size={self.beam_size}, "
                f"log_add={self.log_add}, sil_token={self.tokens[self.sil]!r})")
