"""Conv2dSubsampling and ConformerCTC: exact lengths, padding, registered sizes, arguments."""

import pytest
import torch

from lightning_sparse.models import ConformerCTC, create_model
from lightning_sparse.models.layers import Conv2dSubsampling, subsampled_lengths


def test_subsampled_lengths_match_the_convolutions():
    sub = Conv2dSubsampling(20, 8)
    for length in range(7, 40):
        y, n = sub(torch.randn(1, length, 20), torch.tensor([length]))
        assert y.shape[1] == int(n) == ((length - 1) // 2 - 1) // 2
    assert subsampled_lengths(torch.tensor([0, 1, 2, 3, 6])).tolist() == [0, 0, 0, 0, 0]


def test_padding_never_reaches_valid_subsampled_frames():
    torch.manual_seed(0)
    sub = Conv2dSubsampling(16, 8)
    x = torch.randn(1, 40, 16)
    y, n = sub(x, torch.tensor([23]))
    noisy = x.clone()
    noisy[:, 23:] = torch.randn(1, 17, 16) * 100
    y2, _ = sub(noisy, torch.tensor([23]))
    assert int(n) == 5 and torch.allclose(y[:, :5], y2[:, :5])
    alone, _ = sub(x[:, :23])
    assert torch.allclose(y[:, :5], alone)


def test_short_inputs_are_padded_to_one_frame():
    y, n = Conv2dSubsampling(16, 8)(torch.randn(2, 3, 16), torch.tensor([3, 2]))
    assert y.shape == (2, 1, 8) and n.tolist() == [0, 0]


def test_conformer_ctc_shapes_lengths_and_finite_for_empty_sequences():
    torch.manual_seed(0)
    model = create_model("conformer_ctc_tiny", input_dim=40).eval()
    x = torch.randn(3, 50, 40)
    logits, n = model(x, torch.tensor([50, 30, 4]))  # the last one has no output frame
    assert logits.shape == (3, 11, 29) and n.tolist() == [11, 6, 0]
    assert torch.isfinite(logits).all()
    logits, n = model(x[:, :30], torch.tensor([30, 30, 30]))  # trimmed to the longest output
    assert logits.shape == (3, 6, 29)
    assert model(x)[0].shape == (3, 11, 29)  # lengths None: every frame valid


def test_attention_ignores_padding_apart_from_the_convolutions():
    """Without the depthwise convolution's reach (kernel 1) and in eval mode, a padded sequence's
    outputs equal its outputs alone."""
    torch.manual_seed(0)
    model = ConformerCTC(vocab_size=5, input_dim=16, d_model=16, num_layers=1, num_heads=2, ffn_dim=32,
                         depthwise_conv_kernel_size=1, dropout=0.0).eval()
    x = torch.randn(2, 60, 16)
    batch, n = model(x, torch.tensor([60, 31]))
    alone, m = model(x[1:, :31], torch.tensor([31]))
    assert int(n[1]) == int(m[0]) == 7
    assert torch.allclose(batch[1, :7], alone[0], atol=1e-5)


def test_registered_sizes_and_parameter_counts():
    counts = {name: sum(p.numel() for p in create_model(name).parameters())
              for name in ("conformer_ctc_tiny", "conformer_ctc_small", "conformer_ctc_medium", "conformer_ctc_large")}
    assert counts == {"conformer_ctc_tiny": 62_845, "conformer_ctc_small": 1_127_165,
                      "conformer_ctc_medium": 4_472_237, "conformer_ctc_large": 20_120_861}  # as in the docs
    large = create_model("conformer_ctc_large")
    assert len(large.encoder.conformer_layers) == 12 and large.head.in_features == 256
    assert large.example_input_size == (64, 80) and large.input_convention == "features_lengths"


def test_num_classes_is_the_vocabulary_size():
    assert create_model("conformer_ctc_tiny", num_classes=7).head.out_features == 7
    assert create_model("conformer_ctc_tiny", num_classes=7, vocab_size=7).vocab_size == 7
    with pytest.raises(ValueError, match="`num_classes` is `vocab_size` here and must match it, got 7 and 9"):
        create_model("conformer_ctc_tiny", num_classes=7, vocab_size=9)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"num_heads": 3}, "`num_heads` must divide `d_model` \\(32\\), got 3"),
    ({"depthwise_conv_kernel_size": 8}, "`depthwise_conv_kernel_size` must be odd, got 8"),
    ({"dropout": 1.0}, "`dropout` must be a number in \\[0, 1\\), got 1.0"),
    ({"vocab_size": 1}, "`vocab_size` must be an integer >= 2, got 1"),
    ({"input_dim": 6}, "`input_dim` must be an integer >= 7, got 6"),
    ({"num_layers": 0}, "`num_layers` must be an integer >= 1, got 0"),
])
def test_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("conformer_ctc_tiny", **kwargs)


def test_bad_subsampling_args_and_inputs():
    with pytest.raises(ValueError, match="`in_features` must be an integer >= 7, got 5"):
        Conv2dSubsampling(5, 8)
    with pytest.raises(ValueError, match="`x` must be \\(B, T, 16\\)"):
        Conv2dSubsampling(16, 8)(torch.randn(2, 10, 12))


def test_eval_output_does_not_depend_on_the_padding_of_the_batch():
    from lightning_sparse.models import create_model

    torch.manual_seed(0)
    model = create_model("conformer_ctc_tiny", input_dim=16).eval()
    feats = torch.randn(3, 80, 16)
    lengths = torch.tensor([80, 50, 23])
    for i in range(3):
        feats[i, lengths[i]:] = 0
    with torch.no_grad():
        batched, out_lengths = model(feats, lengths)
        for i in range(3):
            alone, n = model(feats[i:i + 1, : lengths[i]], lengths[i:i + 1])
            assert n.item() == out_lengths[i].item()
            torch.testing.assert_close(batched[i, : n.item()], alone[0, : n.item()], atol=1e-5, rtol=1e-4)
