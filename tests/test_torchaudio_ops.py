"""torchaudio's compiled parts work with the installed torch: one op of each family we use.

torchaudio ships C++ / CUDA extensions built against one torch release; a mismatched pair
imports but fails at the first op. These tests run one small op of each family the speech code
uses, so a torch / torchaudio mismatch fails CI loudly instead of inside a training run.
"""

import math

import torch
import torchaudio
import torchaudio.functional as AF
import torchaudio.transforms as AT


def test_versions_are_a_pair():
    # torch X.Y.* goes with torchaudio X.Y.* (same major and minor release)
    assert torch.__version__.split("+")[0].split(".")[:2] == torchaudio.__version__.split("+")[0].split(".")[:2]


def test_forced_align_compiled_op():
    # emissions peaked on the path blank, a, a, blank, b -> alignment of targets [1, 2]
    path = torch.tensor([0, 1, 1, 0, 2])
    emissions = (torch.nn.functional.one_hot(path, 3) * 5.0).log_softmax(-1)[None]  # (1, T, C)
    labels, scores = AF.forced_align(emissions, torch.tensor([[1, 2]], dtype=torch.int32), blank=0)
    assert labels[0].tolist() == path.tolist()
    assert scores.shape == (1, 5) and torch.isfinite(scores).all()


def test_mel_spectrogram_and_resample():
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * math.pi * 1000 * t)[None]  # 1 kHz, 1 s at 16 kHz
    mel = AT.MelSpectrogram(sample_rate=16000, n_fft=512, hop_length=160, n_mels=40)(tone)
    assert mel.shape == (1, 40, 101) and torch.isfinite(mel).all()
    low = AF.resample(tone, 16000, 8000)
    assert low.shape == (1, 8000)
    spectrum = torch.fft.rfft(low[0]).abs()
    assert abs(int(spectrum.argmax()) - 1000) <= 1  # the tone stays at 1 kHz (1 Hz per bin for 1 s)


def test_conformer_forward_and_masking():
    torch.manual_seed(0)
    model = torchaudio.models.Conformer(input_dim=16, num_heads=2, ffn_dim=32, num_layers=1,
                                        depthwise_conv_kernel_size=3)
    out, lengths = model(torch.randn(2, 10, 16), torch.tensor([10, 6]))
    assert out.shape == (2, 10, 16) and lengths.tolist() == [10, 6] and torch.isfinite(out).all()
    x = torch.zeros(1, 1, 8, 20) + 1.0
    assert (AT.FrequencyMasking(4, iid_masks=True)(x) <= 1).all()
    assert AT.TimeMasking(5, iid_masks=True)(x).shape == x.shape


def test_ctc_decoder_flashlight():
    from torchaudio.models.decoder import ctc_decoder

    decoder = ctc_decoder(None, ["<blank>", " ", "a", "b"], beam_size=2, blank_token="<blank>", sil_token=" ")
    emissions = (torch.nn.functional.one_hot(torch.tensor([[2, 0, 3]]), 4) * 5.0).log_softmax(-1)
    hypo = decoder(emissions.contiguous())[0][0]
    assert [t for t in hypo.tokens.tolist() if t != 1] == [2, 3]  # " " marks start and end
