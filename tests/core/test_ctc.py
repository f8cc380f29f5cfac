"""CTC decoding: greedy by hand, beam search against greedy and against total probability."""

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F

from lightning_sparse.core.ctc import BeamSearchDecoder, greedy_decode
from lightning_sparse.core.text import CharTokenizer

TOKENS = CharTokenizer().tokens  # <blank>, space, apostrophe, a..z


def peaked(best: torch.Tensor, vocab: int, scale: float = 8.0) -> torch.Tensor:
    """Log-probabilities (B, T, V) whose argmax is ``best`` (B, T), with some mass elsewhere."""
    noise = torch.randn(*best.shape, vocab, generator=torch.Generator().manual_seed(0))
    return (F.one_hot(best, vocab) * scale + noise).log_softmax(-1)


def sequence_log_prob(log_probs: torch.Tensor, ids: list[int]) -> float:
    """log p(ids | x) summed over every CTC alignment, for one sequence (T, V)."""
    target = torch.tensor([ids], dtype=torch.long)
    loss = F.ctc_loss(log_probs[:, None], target, torch.tensor([len(log_probs)]), torch.tensor([len(ids)]),
                      reduction="sum")
    return -float(loss)


def test_greedy_by_hand():
    best = torch.tensor([
        [0, 5, 5, 0, 5, 1, 1, 6, 0, 0],  # "c", "c" (blank between), space, "d"
        [7, 7, 7, 0, 0, 0, 0, 0, 8, 8],  # "e"; the "f" frames lie past the length
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # only blanks
    ])
    log_probs = peaked(best, len(TOKENS))
    assert greedy_decode(log_probs, torch.tensor([10, 8, 10])) == [[5, 5, 1, 6], [7], []]
    assert greedy_decode(log_probs) == [[5, 5, 1, 6], [7, 8], []]  # lengths None: every frame
    assert CharTokenizer().decode([5, 5, 1, 6]) == "cc d"
    # another blank id: 7 is removed, 0 is an ordinary label
    assert greedy_decode(log_probs, torch.tensor([10, 10, 3]), blank=7) == [[0, 5, 0, 5, 1, 6, 0], [0, 8], [0]]


def test_beam_size_one_equals_greedy_on_peaked_posteriors():
    best = torch.randint(0, len(TOKENS), (4, 30), generator=torch.Generator().manual_seed(1))
    best[:, 0] = 3  # not a space in the first frame (that one merges with Flashlight's start marker)
    best[:, ::3] = 0  # blanks between repeats and spaces
    log_probs, lengths = peaked(best, len(TOKENS)), torch.tensor([30, 25, 17, 1])
    beam = BeamSearchDecoder(TOKENS, beam_size=1)
    assert beam(log_probs, lengths) == greedy_decode(log_probs, lengths)
    assert any(1 in ids for ids in greedy_decode(log_probs, lengths))  # spaces kept inside the text


def test_beam_finds_a_more_probable_sequence_than_greedy():
    # Each frame: blank 0.6, "a" 0.4. Best path: blank blank -> "" (0.36); but "a" has the
    # alignments "aa", "a-", "-a": 0.16 + 0.24 + 0.24 = 0.64.
    log_probs = torch.tensor([[0.6, 0.0, 0.0, 0.4]] * 2).clamp_min(1e-9).log()[None]  # (1, 2, 4)
    tokens = ["<blank>", " ", "'", "a"]
    greedy = greedy_decode(log_probs)[0]
    beam = BeamSearchDecoder(tokens, beam_size=8)(log_probs)[0]
    assert greedy == [] and beam == [3]
    assert sequence_log_prob(log_probs[0], beam) > sequence_log_prob(log_probs[0], greedy)
    assert BeamSearchDecoder(tokens, beam_size=8, log_add=False)(log_probs)[0] == []  # best path only


def test_beam_on_a_longer_crafted_example():
    # Three frames of "b" at 0.45, blank at 0.55: "" (0.166) loses to "b" (every alignment with b).
    probs = torch.full((1, 3, 4), 1e-9)
    probs[..., 0], probs[..., 2] = 0.55, 0.45
    log_probs = probs.log()
    beam = BeamSearchDecoder(["<blank>", " ", "b", "c"], beam_size=4)(log_probs)[0]
    assert beam == [2]
    assert sequence_log_prob(log_probs[0], beam) > sequence_log_prob(log_probs[0], greedy_decode(log_probs)[0])


def test_vocabulary_without_a_space_uses_the_blank_as_silence():
    pieces = ["<blank>", "\u2581the", "\u2581cat", "s"]  # SentencePiece-like: no space token
    decoder = BeamSearchDecoder(pieces, beam_size=3)
    assert decoder.sil == 0
    best = torch.tensor([[1, 0, 2, 3, 3, 0]])
    assert decoder(peaked(best, 4)) == [[1, 2, 3]]


def test_lengths_zero_and_pickling():
    decoder = BeamSearchDecoder(TOKENS, beam_size=2)
    log_probs = peaked(torch.tensor([[3, 4, 5], [6, 7, 8]]), len(TOKENS))
    assert decoder(log_probs, torch.tensor([3, 0])) == [[3, 4, 5], []]
    for clone in (pickle.loads(pickle.dumps(decoder)), copy.deepcopy(decoder)):
        assert clone(log_probs) == [[3, 4, 5], [6, 7, 8]]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"tokens": ["a", "a"]}, "`tokens` must be at least 2 unique"),
    ({"blank": 40}, "`blank` must be an integer in \\[0, 28\\], got 40"),
    ({"beam_size": 0}, "`beam_size` must be an integer >= 1, got 0"),
    ({"beam_threshold": 0.0}, "`beam_threshold`"),
    ({"log_add": 1}, "`log_add` must be True or False"),
    ({"sil_token": "|"}, "`sil_token` must be one of the tokens or None, got '|'"),
])
def test_bad_decoder_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BeamSearchDecoder(**{"tokens": TOKENS, **kwargs})


def test_bad_inputs():
    with pytest.raises(ValueError, match="`log_probs` must be a tensor \\(B, T, V\\)"):
        greedy_decode(torch.randn(5, 4))
    with pytest.raises(ValueError, match="`lengths` must be in \\[0, 5\\]"):
        greedy_decode(torch.randn(1, 5, 4), torch.tensor([6]))
    with pytest.raises(ValueError, match="`blank`"):
        greedy_decode(torch.randn(1, 5, 4), blank=4)
    with pytest.raises(ValueError, match="one score per token \\(29\\)"):
        BeamSearchDecoder(TOKENS)(torch.randn(1, 5, 4))
