"""Joint CTC/attention decoding: CTC prefix scores against brute force and F.ctc_loss, beam search modes, eos."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from lightning_sparse.core.ctc import greedy_decode
from lightning_sparse.core.joint_decoding import (
    LOG_ZERO,
    CTCPrefixScorer,
    beam_search,
    end_detect,
    greedy_attention_decode,
    joint_decode,
)


def collapse(path, blank=0):
    out, prev = [], None
    for label in path:
        if label != prev and label != blank:
            out.append(label)
        prev = label
    return out


def brute_force_prefix_log_prob(log_probs, prefix):
    """log sum over every frame path whose labelling starts with `prefix` (T and V tiny)."""
    steps, vocab = log_probs.shape
    total = []
    for path in itertools.product(range(vocab), repeat=steps):
        if collapse(path)[: len(prefix)] == list(prefix):
            total.append(sum(float(log_probs[t, c]) for t, c in enumerate(path)))
    return torch.logsumexp(torch.tensor(total, dtype=torch.float64), 0).item() if total else -math.inf


def test_prefix_scores_equal_brute_force_sums_over_paths():
    torch.manual_seed(0)
    log_probs = torch.randn(5, 3, dtype=torch.float64).log_softmax(-1)
    scorer = CTCPrefixScorer(log_probs, blank=0, eos=3)
    for prefix in ([1], [2], [1, 1], [1, 2], [2, 1, 2], [1, 1, 2]):
        assert scorer.prefix_log_prob(prefix) == pytest.approx(brute_force_prefix_log_prob(log_probs, prefix), abs=1e-9)


@pytest.mark.parametrize("target", [[3], [3, 4], [2, 2], [1, 2, 3, 3, 1], [4, 4, 4]])
def test_full_sequence_score_is_minus_the_ctc_loss(target):
    torch.manual_seed(1)
    log_probs = torch.randn(9, 5, dtype=torch.float64).log_softmax(-1)
    scorer = CTCPrefixScorer(log_probs, blank=0, eos=5)
    loss = F.ctc_loss(log_probs[:, None], torch.tensor([target]), [9], [len(target)], reduction="sum")
    assert scorer.sequence_log_prob(target) == pytest.approx(-loss.item(), abs=1e-9)


def test_batched_scores_match_one_by_one_and_special_ids():
    torch.manual_seed(2)
    log_probs = torch.randn(7, 4).log_softmax(-1)
    scorer = CTCPrefixScorer(log_probs, blank=0, eos=4)
    prefixes = [[1, 2], [2, 2], [3, 1]]
    states, last = [], []
    for prefix in prefixes:  # states of each prefix, label by label
        state, prev = scorer.initial_state(), torch.zeros(1, dtype=torch.int64)
        for i, token in enumerate(prefix):
            _, new = scorer.score(i, prev, state[None], torch.tensor([[token]]))
            state, prev = new[0, 0], torch.tensor([token])
        states.append(state)
        last.append(prefix[-1])
    candidates = torch.tensor([[0, 1, 2, 3, 4]] * 3)
    psi, new_states = scorer.score(2, torch.tensor(last), torch.stack(states), candidates)
    assert psi.shape == (3, 5) and new_states.shape == (3, 5, 7, 2)
    for n, prefix in enumerate(prefixes):
        for k, c in enumerate(candidates[n].tolist()):
            if c == 0:
                assert psi[n, k] == LOG_ZERO  # the blank is never a label
            elif c == 4:
                assert psi[n, k].item() == pytest.approx(scorer.sequence_log_prob(prefix), abs=1e-4)
            else:
                assert psi[n, k].item() == pytest.approx(scorer.prefix_log_prob([*prefix, c]), abs=1e-4)


class ToyDecoder:
    """Deterministic next-token log-probabilities from the prefix (a fixed random table per position and last token)."""

    def __init__(self, vocab=6, seed=0, peaked=None, strength=20.0):
        g = torch.Generator().manual_seed(seed)
        self.strength = strength
        self.table = torch.randn(40, vocab, vocab, generator=g)
        self.peaked = peaked  # a token sequence the decoder prefers strongly, then eos

    def __call__(self, prefixes):
        n, length = prefixes.shape
        logits = self.table[length - 1][prefixes[:, -1]].clone()
        if self.peaked is not None:
            want = (self.peaked + [logits.shape[1] - 1])[min(length - 1, len(self.peaked))]
            logits[:, want] += self.strength
        return logits.log_softmax(-1)

    def decoder_logits(self, tokens, memory, lengths):  # the model-style signature
        return torch.stack([self(tokens[:, : u + 1]) for u in range(tokens.shape[1])], 1)


def test_attention_only_beam_of_one_equals_greedy_decoding():
    decoder = ToyDecoder(vocab=6, seed=3)
    encoder_out, lengths = torch.zeros(1, 8, 4), torch.tensor([8])
    greedy = greedy_attention_decode(decoder.decoder_logits, encoder_out, lengths, sos_eos=5)
    hyp = beam_search(decoder, None, sos_eos=5, beam_size=1, ctc_weight=0.0, max_length=8, end_detection=False)[0]
    assert hyp.tokens == greedy[0] and 0 not in hyp.tokens
    assert hyp.score == pytest.approx(hyp.att_score) and hyp.ctc_score == 0.0
    joint = joint_decode(decoder.decoder_logits, encoder_out, lengths, None, sos_eos=5, beam_size=1, ctc_weight=0.0)
    assert joint == greedy


def test_attention_only_beam_equals_greedy_on_a_peaked_decoder_and_scores_are_log_probs():
    decoder = ToyDecoder(vocab=6, seed=4, peaked=[3, 1, 4, 1])
    hyps = beam_search(decoder, None, sos_eos=5, beam_size=4, ctc_weight=0.0, max_length=10, nbest=4)
    assert hyps[0].tokens == [3, 1, 4, 1]
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
    prefix = torch.tensor([[5, 3, 1, 4, 1]])
    expected = sum(decoder(prefix[:, : u + 1])[0, tok].item() for u, tok in enumerate([3, 1, 4, 1, 5]))
    assert hyps[0].score == pytest.approx(expected, abs=1e-5)


def test_ctc_only_beam_agrees_with_the_best_path_on_a_peaked_posterior():
    path = torch.tensor([0, 2, 2, 0, 3, 0, 0, 3, 1, 0])
    log_probs = (F.one_hot(path, 4) * 8.0).log_softmax(-1)  # (T, V) peaked on one path
    best_path = greedy_decode(log_probs[None])[0]
    assert best_path == [2, 3, 3, 1]
    hyp = beam_search(None, log_probs, sos_eos=4, beam_size=4, ctc_weight=1.0)[0]
    assert hyp.tokens == best_path
    loss = F.ctc_loss(log_probs[:, None], torch.tensor([best_path]), [10], [4], reduction="sum")
    assert hyp.ctc_score == pytest.approx(-loss.item(), abs=1e-4) and hyp.score == pytest.approx(hyp.ctc_score)


def test_joint_score_mixes_both_and_ctc_rescues_a_wrong_decoder():
    path = torch.tensor([0, 2, 0, 3, 3, 0, 1, 0])
    log_probs = (F.one_hot(path, 5) * 12.0).log_softmax(-1)
    decoder = ToyDecoder(vocab=6, seed=5, peaked=[4, 4], strength=4.0)  # prefers "4 4"; CTC says "2 3 1"
    assert beam_search(decoder, log_probs, sos_eos=5, beam_size=5, ctc_weight=0.0, max_length=8)[0].tokens == [4, 4]
    lam = 0.7
    hyp = beam_search(decoder, log_probs, sos_eos=5, beam_size=5, ctc_weight=lam)[0]
    assert hyp.tokens == [2, 3, 1]
    assert hyp.score == pytest.approx((1 - lam) * hyp.att_score + lam * hyp.ctc_score, abs=1e-6)
    scorer = CTCPrefixScorer(log_probs.double(), eos=5)
    assert hyp.ctc_score == pytest.approx(scorer.sequence_log_prob([2, 3, 1]), abs=1e-4)


def test_eos_handling_max_and_min_length():
    decoder = ToyDecoder(vocab=6, seed=6, peaked=[1, 2, 3, 4, 1, 2])
    short = beam_search(decoder, None, sos_eos=5, beam_size=3, ctc_weight=0.0, max_length=2)
    assert all(len(h.tokens) <= 2 for h in short) and short[0].tokens == [1, 2]  # eos forced after 2 tokens
    eos_first = ToyDecoder(vocab=6, seed=7, peaked=[])  # wants eos right away
    assert beam_search(eos_first, None, sos_eos=5, beam_size=2, ctc_weight=0.0, max_length=5)[0].tokens == []
    longer = beam_search(eos_first, None, sos_eos=5, beam_size=2, ctc_weight=0.0, max_length=5, min_length=2)[0]
    assert len(longer.tokens) >= 2 and 5 not in longer.tokens and 0 not in longer.tokens
    assert beam_search(decoder, None, sos_eos=5, ctc_weight=0.0, max_length=0)[0].tokens == []


def test_prefixes_longer_than_the_input_are_impossible_not_errors():
    log_probs = torch.randn(3, 4, dtype=torch.float64).log_softmax(-1)
    scorer = CTCPrefixScorer(log_probs, eos=4)
    assert scorer.prefix_log_prob([1, 2, 3, 1, 2]) <= LOG_ZERO / 2
    assert scorer.sequence_log_prob([1, 2, 3, 1]) <= LOG_ZERO / 2
    decoder = ToyDecoder(vocab=5, seed=9, peaked=[1, 2, 3, 1, 2, 3])
    hyp = beam_search(decoder, log_probs, sos_eos=4, beam_size=2, ctc_weight=0.5, max_length=8)[0]
    assert len(hyp.tokens) <= 3  # CTC rules out more labels than frames


def test_end_detection_stops_without_changing_the_best():
    path = torch.tensor([0, 2, 0, 3, 0, 1, 0, 0, 0, 0, 0, 0])
    log_probs = (F.one_hot(path, 5) * 10.0).log_softmax(-1)
    decoder = ToyDecoder(vocab=6, seed=8, peaked=[2, 3, 1])
    on = beam_search(decoder, log_probs, sos_eos=5, beam_size=3, ctc_weight=0.3)
    off = beam_search(decoder, log_probs, sos_eos=5, beam_size=3, ctc_weight=0.3, end_detection=False)
    assert on[0].tokens == off[0].tokens == [2, 3, 1]
    assert not end_detect([], 5)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"beam_size": 0}, "`beam_size` must be an integer >= 1, got 0"),
    ({"ctc_weight": 1.5}, "`ctc_weight` must be a number in \\[0, 1\\], got 1.5"),
    ({"ctc_weight": 0.5, "ctc_log_probs": torch.zeros(4, 3)}, "`ctc_log_probs` must be a tensor \\(T, 5\\)"),
    ({"ctc_weight": 0.0, "max_length": None}, "`max_length` is needed without CTC"),
    ({"step": None}, "`step` \\(the decoder\\) is needed when `ctc_weight` < 1"),
])
def test_beam_search_arguments_are_checked(kwargs, match):
    args = {"step": ToyDecoder(), "ctc_log_probs": torch.zeros(4, 5).log_softmax(-1), "sos_eos": 5, "max_length": 3,
            **kwargs}
    with pytest.raises(ValueError, match=match):
        beam_search(**args)
    with pytest.raises(ValueError, match="`eos` must be an id outside the CTC vocabulary"):
        CTCPrefixScorer(torch.zeros(3, 4), eos=2)
