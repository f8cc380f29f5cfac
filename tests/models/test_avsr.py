"""AVSR: shapes, gradients and padding invariance in every modality, errors, registry sizes, real GRID clips."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lightning_sparse.core.seq2seq import add_sos_eos, hybrid_ctc_attention_loss
from lightning_sparse.models import AVSR, create_model, list_models
from lightning_sparse.models.avsr import AVSR_SIZES
from lightning_sparse.models.layers import AudioResNetFrontend, VideoResNetFrontend

GRID = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "grid-11" / "GRID"
needs_grid = pytest.mark.skipif(not GRID.is_dir(), reason="../shared/data/grid-11/GRID is not present")
MODALITIES = ("audio", "video", "audiovisual")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these tiny models only lose time to thread synchronisation on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(modality="audiovisual", **kwargs):
    torch.manual_seed(0)
    return create_model("avsr_tiny", modality=modality, **kwargs)


def batch(b=2, frames=10, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([frames - 3 * i for i in range(b)])
    video = torch.randn(b, frames, size, size, generator=g) * (torch.arange(frames) < lengths[:, None])[..., None, None]
    audio = torch.randn(b, frames * 640, generator=g) * (torch.arange(frames * 640) < 640 * lengths[:, None])
    return {"video": video, "video_lengths": lengths, "audio": audio, "audio_lengths": 640 * lengths}


def losses(model, inputs, targets, target_lengths):
    out = model(**inputs, tokens=add_sos_eos(targets, target_lengths, model.sos_eos)[0])
    return hybrid_ctc_attention_loss(out["ctc_logits"].log_softmax(-1), out["lengths"], out["decoder_logits"],
                                     targets, target_lengths).loss


@pytest.mark.parametrize("modality", MODALITIES)
def test_shapes_lengths_and_submodules(modality):
    model = tiny(modality).eval()
    inputs = batch()
    out = model(**inputs, tokens=torch.tensor([[29, 3, 4], [29, 5, 29]]))
    assert out["encoder_out"].shape == (2, 10, 32) and out["lengths"].tolist() == [10, 7]
    assert out["ctc_logits"].shape == (2, 10, 29) and out["decoder_logits"].shape == (2, 3, 30)
    assert model.input_convention == "audio_visual" and model.sos_eos == model.vocab_size == 29
    assert hasattr(model, "video_frontend") == (modality != "audio")
    assert hasattr(model, "audio_frontend") == (modality != "video")
    assert hasattr(model, "fusion") == (modality == "audiovisual") and not hasattr(model, "audio_encoder")
    assert model(**model.example_inputs(batch_size=3))["ctc_logits"].shape == (3, 8, 29)
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    assert {"encoder", "ctc_head", "decoder"} <= names


def test_audio_and_video_are_aligned_to_the_shorter_stream():
    model = tiny().eval()
    inputs = {"video": torch.randn(2, 12, 32, 32), "video_lengths": torch.tensor([12, 6]),
              "audio": torch.randn(2, 9 * 640 + 100), "audio_lengths": torch.tensor([9 * 640 + 100, 8 * 640 + 639])}
    enc, lengths = model.encode(**inputs)
    assert lengths.tolist() == [9, 6] and enc.shape == (2, 9, 32)  # min(12, 9), min(6, 8)
    frontend = AudioResNetFrontend(width=4)
    features, frames = frontend(torch.randn(1, 4 * 640), torch.tensor([3 * 640 + 639]))
    assert features.shape == (1, 4, 32) and frames.tolist() == [3]  # 640 samples a frame
    assert VideoResNetFrontend(width=4)(torch.randn(1, 3, 88, 88)).shape == (1, 3, 32)


@pytest.mark.parametrize(("modality", "stage"), [("audio", "early"), ("video", "early"), ("audiovisual", "early"),
                                                 ("audiovisual", "late")])
def test_backward_reaches_every_parameter_with_finite_gradients(modality, stage):
    model = tiny(modality, fusion_stage=stage)
    loss = losses(model, batch(), torch.tensor([[3, 4, 5], [6, 7, 0]]), torch.tensor([3, 2])).mean()
    assert torch.isfinite(loss)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), name
    assert (stage == "late") == hasattr(model, "audio_encoder")


@pytest.mark.parametrize(("modality", "stage"), [("audio", "early"), ("video", "early"), ("audiovisual", "early"),
                                                 ("audiovisual", "late")])
def test_eval_outputs_do_not_depend_on_batch_padding(modality, stage):
    model = tiny(modality, fusion_stage=stage).eval()
    inputs = batch(b=3, frames=12)
    n = 6  # the third utterance: 6 of 12 frames
    tokens = torch.tensor([[29, 3, 4, 5]] * 3)
    with torch.no_grad():
        full = model(**inputs, tokens=tokens)
        alone = model(video=inputs["video"][2:, :n], audio=inputs["audio"][2:, : n * 640], tokens=tokens[2:])
    assert full["lengths"][2] == alone["lengths"][0] == n
    assert torch.allclose(full["encoder_out"][2, :n], alone["encoder_out"][0], atol=1e-5)
    assert torch.allclose(full["decoder_logits"][2], alone["decoder_logits"][0], atol=1e-5)
    padded = {k: v.clone() for k, v in inputs.items()}  # garbage in the padding changes nothing either
    padded["video"][2, n:] = 50.0
    padded["audio"][2, n * 640:] = 3.0
    with torch.no_grad():
        garbage = model(**padded, tokens=tokens)
    assert torch.allclose(full["encoder_out"][2, :n], garbage["encoder_out"][2, :n], atol=1e-5)


def test_decoder_is_causal():
    model = tiny().eval()
    enc, lengths = model.encode(**batch())
    a = model.decoder_logits(torch.tensor([[29, 3, 4, 5], [29, 6, 7, 8]]), enc, lengths)
    b = model.decoder_logits(torch.tensor([[29, 3, 9, 9], [29, 6, 1, 1]]), enc, lengths)
    assert torch.allclose(a[:, :2], b[:, :2], atol=1e-6) and not torch.allclose(a[:, 2:], b[:, 2:])


def test_missing_streams_and_bad_arguments_raise():
    inputs = batch()
    with pytest.raises(ValueError, match="`video` is required for modality 'audiovisual', got None"):
        tiny().encode(audio=inputs["audio"], audio_lengths=inputs["audio_lengths"])
    with pytest.raises(ValueError, match="`audio` is required for modality 'audio', got None"):
        tiny("audio").encode(video=inputs["video"])
    tiny("video").encode(video=inputs["video"])  # a stream the modality does not read is not needed
    with pytest.raises(ValueError, match="`video` must be grayscale frames \\(B, T, H, W\\), got \\(2, 10, 3, 32, 32\\)"):
        tiny("video").encode(video=torch.randn(2, 10, 3, 32, 32))
    with pytest.raises(ValueError, match="`audio_lengths` must be in \\[0, 6400\\]"):
        tiny("audio").encode(audio=inputs["audio"], audio_lengths=torch.tensor([7000, 10]))
    for kwargs, match in [
        ({"modality": "lips"}, "`modality` must be one of \\('audio', 'video', 'audiovisual'\\), got 'lips'"),
        ({"num_heads": 3}, "`num_heads` must divide `d_model` \\(32\\), got 3"),
        ({"decoder_heads": 5}, "`decoder_heads` must divide `d_model` \\(32\\), got 5"),
        ({"depthwise_conv_kernel_size": 4}, "`depthwise_conv_kernel_size` must be odd, got 4"),
        ({"fusion_stage": "middle"}, "`fusion_stage` must be one of \\('early', 'late'\\), got 'middle'"),
        ({"activation": "tanh"}, "`activation` must be one of \\('swish', 'relu', 'prelu'\\), got 'tanh'"),
        ({"dropout": 1.0}, "`dropout` must be a number in \\[0, 1\\), got 1.0"),
        ({"width": 0}, "`width` must be an integer >= 1, got 0"),
        ({"num_classes": 7, "vocab_size": 9}, "`num_classes` is `vocab_size` here and must match it, got 7 and 9"),
    ]:
        with pytest.raises(ValueError, match=match):
            create_model("avsr_tiny", **kwargs)
    with pytest.raises(ValueError, match="`size` must be one of \\('tiny', 'small', 'base'\\), got 'huge'"):
        create_model("avsr", size="huge")


def test_frontend_checkpoint_loads_local_weights_only(tmp_path):
    source = tiny("audiovisual")
    path = tmp_path / "frontends.pt"
    state = {f"model.{k}": v for k, v in source.state_dict().items() if "frontend" in k}  # as in a task checkpoint
    torch.save({"state_dict": state}, path)
    torch.manual_seed(1)
    loaded = create_model("avsr_tiny", modality="video", frontend_checkpoint=str(path))
    for key, value in loaded.video_frontend.state_dict().items():
        assert torch.equal(value, source.video_frontend.state_dict()[key])
    assert not torch.equal(loaded.encoder.conformer_layers[0].ffn1.sequential[1].weight,
                           source.encoder.conformer_layers[0].ffn1.sequential[1].weight)
    with pytest.raises(ValueError, match="`frontend_checkpoint` must be the path of a saved state dict, got .*no such file"):
        create_model("avsr_tiny", frontend_checkpoint=str(tmp_path / "missing.pt"))
    torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="has no weights for \\['video_frontend', 'audio_frontend'\\]"):
        create_model("avsr_tiny", frontend_checkpoint=str(tmp_path / "other.pt"))
    torch.save(create_model("avsr_small", modality="video").state_dict(), tmp_path / "small.pt")
    with pytest.raises(ValueError, match="the `video_frontend` weights do not fit"):
        create_model("avsr_tiny", modality="video", frontend_checkpoint=str(tmp_path / "small.pt"))


def test_frontend_module_names_follow_auto_avsr():
    keys = set(tiny().state_dict())
    assert {"video_frontend.frontend3D.0.weight", "video_frontend.frontend3D.1.running_mean",
            "video_frontend.trunk.layer1.0.conv1.weight", "video_frontend.trunk.layer2.0.downsample.0.weight",
            "video_frontend.trunk.layer4.1.bn2.weight", "audio_frontend.trunk.conv1.weight",
            "audio_frontend.trunk.bn1.weight", "audio_frontend.trunk.layer3.0.downsample.1.weight",
            "fusion.fc1.weight", "fusion.bn1.weight", "fusion.fc2.weight"} <= keys


def test_registered_sizes_and_parameter_counts():
    assert {"avsr", "avsr_tiny", "avsr_small", "avsr_base"} <= set(list_models())
    counts = {(size, m): sum(p.numel() for p in create_model(f"avsr_{size}", modality=m).parameters())
              for size in ("tiny", "small") for m in MODALITIES}
    assert counts == {  # as in the docs of lightning_sparse/models/avsr.py
        ("tiny", "audio"): 112_459, ("tiny", "video"): 228_211, ("tiny", "audiovisual"): 298_403,
        ("small", "audio"): 2_331_035, ("small", "video"): 2_791_403, ("small", "audiovisual"): 3_249_483,
    }
    with torch.device("meta"):  # no memory: auto_avsr's sizes
        base = {m: create_model("avsr_base", modality=m) for m in MODALITIES}
    assert {m: sum(p.numel() for p in model.parameters()) for m, model in base.items()} == {
        "audio": 224_376_763, "video": 231_710_971, "audiovisual": 418_206_843}
    av = base["audiovisual"]
    assert len(av.encoder.conformer_layers) == len(av.audio_encoder.conformer_layers) == 12
    assert len(av.decoder.decoders.layers) == 6 and av.fusion.fc1.out_features == 8192
    assert av.video_frontend.out_features == 512 and av.d_model == 768
    assert create_model("avsr", size="tiny", num_classes=7).ctc_head.out_features == 7
    assert isinstance(create_model("avsr", size="tiny"), AVSR) and AVSR_SIZES["tiny"]["d_model"] == 32


@needs_grid
@pytest.mark.parametrize("modality", MODALITIES)
def test_forward_backward_on_real_grid_clips(modality, grid_batch):
    model = tiny(modality)
    loss = losses(model, grid_batch["inputs"], grid_batch["targets"], grid_batch["target_lengths"])
    assert loss.shape == (2,) and torch.isfinite(loss).all() and (loss > 0).all()
    loss.mean().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


@pytest.fixture(scope="module")
def grid_batch():
    from lightning_sparse.data.avsr import GRIDDataset

    ds = GRIDDataset(GRID)
    items = [ds[i] for i in range(2)]
    videos, audios, targets = [], [], []
    for item in items:
        frames = item["video"].float().div(255.0)  # (75, 288, 360, 3) RGB
        gray = (frames * torch.tensor([0.299, 0.587, 0.114])).sum(-1)  # ITU-R BT.601 luma
        small = F.interpolate(gray[:, None], size=(44, 44), mode="area")[:, 0]  # the whole face, 44 x 44
        videos.append((small - 0.421) / 0.165)  # auto_avsr's normalisation
        audios.append(item["audio"])
        targets.append(item["targets"])
    video_lengths = torch.tensor([len(v) for v in videos])
    audio_lengths = torch.tensor([len(a) for a in audios])
    video = torch.zeros(2, int(video_lengths.max()), 44, 44)
    audio = torch.zeros(2, int(audio_lengths.max()))
    padded = torch.zeros(2, max(len(t) for t in targets), dtype=torch.int64)
    for b in range(2):
        video[b, : video_lengths[b]] = videos[b]
        audio[b, : audio_lengths[b]] = audios[b]
        padded[b, : len(targets[b])] = targets[b]
    assert video_lengths.tolist() == [75, 75] and (audio_lengths // 640 >= 74).all()
    return {"inputs": {"video": video, "video_lengths": video_lengths, "audio": audio, "audio_lengths": audio_lengths},
            "targets": padded, "target_lengths": torch.tensor([len(t) for t in targets])}
