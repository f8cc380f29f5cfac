"""Hybrid CTC/attention losses: sos/eos targets, ESPnet's label smoothing by hand, the per-utterance mix."""

import math

import pytest
import torch
import torch.nn.functional as F

from lightning_sparse.core.seq2seq import IGNORE_ID, add_sos_eos, hybrid_ctc_attention_loss, label_smoothing_loss


def test_add_sos_eos_pads_input_with_eos_and_output_with_ignore():
    targets = torch.tensor([[3, 4, 5, 0], [6, 0, 0, 0], [0, 0, 0, 0]])
    ys_in, ys_out = add_sos_eos(targets, torch.tensor([3, 1, 0]), sos_eos=9)
    assert ys_in.tolist() == [[9, 3, 4, 5], [9, 6, 9, 9], [9, 9, 9, 9]]  # cut to max length + 1
    assert ys_out.tolist() == [[3, 4, 5, 9], [6, 9, -1, -1], [9, -1, -1, -1]]
    with pytest.raises(ValueError, match="`target_lengths` must be in \\[0, 4\\]"):
        add_sos_eos(targets, torch.tensor([5, 1, 0]), 9)
    with pytest.raises(ValueError, match="`targets` must be an integer tensor \\(B, U\\)"):
        add_sos_eos(targets.float(), torch.tensor([3, 1, 0]), 9)


def test_label_smoothing_loss_by_hand():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 5)
    ys_out = torch.tensor([[1, 4, IGNORE_ID], [2, 3, 0]])
    s, v = 0.1, 5
    per = label_smoothing_loss(logits, ys_out, smoothing=s, normalize_length=False)
    expected = []
    for b in range(2):
        total = 0.0
        for u in range(3):
            y = int(ys_out[b, u])
            if y == IGNORE_ID:
                continue
            q = torch.full((v,), s / (v - 1))
            q[y] = 1 - s
            logp = logits[b, u].log_softmax(-1)
            total += float((q * (q.log() - logp)).sum())  # KL(q || p), ESPnet's KLDivLoss
        expected.append(total)
    assert per.tolist() == pytest.approx(expected, abs=1e-5)
    normalized = label_smoothing_loss(logits, ys_out, smoothing=s)
    assert normalized.tolist() == pytest.approx([expected[0] / 2, expected[1] / 3], abs=1e-5)
    # the cross-entropy with the smoothed target minus its entropy: same gradient as that cross-entropy
    q = torch.full((v,), s / (v - 1))
    q[0] = 1 - s
    entropy = -float((q * q.log()).sum())
    ce = -(q * logits[1, 2].log_softmax(-1)).sum().item()
    one = label_smoothing_loss(logits[1:, 2:], ys_out[1:, 2:], smoothing=s)
    assert one.item() == pytest.approx(ce - entropy, abs=1e-5)


def test_label_smoothing_zero_is_cross_entropy_and_perfect_is_zero():
    logits = torch.randn(1, 4, 6)
    ys_out = torch.tensor([[1, 2, 3, 5]])
    ce = F.cross_entropy(logits[0], ys_out[0], reduction="sum")
    assert label_smoothing_loss(logits, ys_out, 0.0, normalize_length=False).item() == pytest.approx(ce.item(), rel=1e-5)
    peaked = F.one_hot(ys_out, 6) * 1e4
    assert label_smoothing_loss(peaked.float(), ys_out, 0.0).item() == pytest.approx(0.0, abs=1e-4)
    assert label_smoothing_loss(logits, torch.full((1, 4), IGNORE_ID)).item() == 0.0  # no token: 0, not NaN


def test_hybrid_loss_is_the_weighted_mix_of_per_utterance_terms():
    torch.manual_seed(1)
    ctc = torch.randn(2, 10, 5).log_softmax(-1)
    ctc_lengths = torch.tensor([10, 7])
    targets, lengths = torch.tensor([[1, 2, 3], [4, 4, 0]]), torch.tensor([3, 2])
    decoder_logits = torch.randn(2, 4, 6, requires_grad=True)
    out = hybrid_ctc_attention_loss(ctc, ctc_lengths, decoder_logits, targets, lengths, ctc_weight=0.3,
                                    label_smoothing=0.1)
    ctc_ref = F.ctc_loss(ctc.transpose(0, 1), targets, ctc_lengths, lengths, reduction="none") / lengths
    _, ys_out = add_sos_eos(targets, lengths, 5)
    att_ref = label_smoothing_loss(decoder_logits, ys_out, 0.1)
    assert torch.allclose(out.ctc, ctc_ref) and torch.allclose(out.att, att_ref)
    assert torch.allclose(out.loss, 0.3 * ctc_ref + 0.7 * att_ref)
    for weight, expected in ((0.0, att_ref), (1.0, ctc_ref)):
        mixed = hybrid_ctc_attention_loss(ctc, ctc_lengths, decoder_logits, targets, lengths, ctc_weight=weight).loss
        assert torch.allclose(mixed, expected)
    sums = hybrid_ctc_attention_loss(ctc, ctc_lengths, decoder_logits, targets, lengths, normalize_length=False)
    assert torch.allclose(sums.ctc, ctc_ref * lengths)
    out.loss.sum().backward()
    assert torch.isfinite(decoder_logits.grad).all()


def test_hybrid_loss_short_input_is_zero_not_inf_and_shapes_are_checked():
    ctc = torch.randn(1, 2, 5).log_softmax(-1)
    targets, lengths = torch.tensor([[1, 2, 3]]), torch.tensor([3])
    out = hybrid_ctc_attention_loss(ctc, torch.tensor([2]), torch.randn(1, 4, 6), targets, lengths)
    assert out.ctc.item() == 0.0 and math.isfinite(out.loss.item())
    with pytest.raises(ValueError, match="`decoder_logits` must be \\(B, max\\(target_lengths\\) \\+ 1, V_att\\)"):
        hybrid_ctc_attention_loss(ctc, torch.tensor([2]), torch.randn(1, 3, 6), targets, lengths)
    with pytest.raises(ValueError, match="`ctc_weight` must be a number in \\[0, 1\\], got 2"):
        hybrid_ctc_attention_loss(ctc, torch.tensor([2]), torch.randn(1, 4, 6), targets, lengths, ctc_weight=2)
