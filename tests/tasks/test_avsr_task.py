"""AVSpeechRecognizer on hand-made audio-visual batch dicts: contract, loss, noise, modality dropout, fit, decoding."""

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader, Dataset

from lightning_sparse.core.seq2seq import add_sos_eos, hybrid_ctc_attention_loss
from lightning_sparse.core.text import CharTokenizer
from lightning_sparse.tasks import AVSpeechRecognizer
from lightning_sparse.tasks.avsr import RNG_STATE_KEY, add_white_noise, modality_dropout

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # steps without a Trainer

TEXTS = ["ab", "b a", "ca", "abc"]
TINY = {"backbone": "avsr_tiny", "backbone_kwargs": {"dropout": 0.0}, "scheduler": "none"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these tiny models only lose time to thread synchronisation on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Clips(Dataset):
    """Audio-visual items of 8 to 11 frames (24 x 24 video, 640 samples a frame) with short transcripts."""

    def __init__(self, n=4, seed=0):
        g, tok = torch.Generator().manual_seed(seed), CharTokenizer()
        self.items = []
        for i in range(n):
            frames = 11 - i % 4
            text = TEXTS[i % 4]
            self.items.append({"video": torch.randn(frames, 24, 24, generator=g),
                               "audio": 0.1 * torch.randn(frames * 640, generator=g), "text": text,
                               "targets": torch.tensor(tok.encode(text)), "index": i})

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def collate(items):
    """The audio-visual batch contract, zero-padded."""
    b = len(items)
    vl = torch.tensor([len(i["video"]) for i in items])
    al = torch.tensor([len(i["audio"]) for i in items])
    tl = torch.tensor([len(i["targets"]) for i in items])
    video, audio = torch.zeros(b, int(vl.max()), 24, 24), torch.zeros(b, int(al.max()))
    targets = torch.zeros(b, int(tl.max()), dtype=torch.int64)
    for k, item in enumerate(items):
        video[k, : vl[k]], audio[k, : al[k]], targets[k, : tl[k]] = item["video"], item["audio"], item["targets"]
    return {"video": video, "video_lengths": vl, "audio": audio, "audio_lengths": al, "targets": targets,
            "target_lengths": tl, "text": [i["text"] for i in items], "index": torch.tensor([i["index"] for i in items])}


def make_batch(n=4):
    return collate(Clips(n).items)


def task(**kwargs):
    torch.manual_seed(0)
    return AVSpeechRecognizer(**{**TINY, **kwargs})


def test_training_step_contract_and_per_sample_hybrid_loss():
    model = task(ctc_weight=0.3)
    batch = make_batch()
    out = model.training_step(batch, 0)
    assert sorted(out) == ["index", "loss", "per_sample_loss"] and out["index"].tolist() == [0, 1, 2, 3]
    assert out["per_sample_loss"].shape == (4,) and not out["per_sample_loss"].requires_grad
    assert out["loss"].requires_grad
    net = model.model
    enc, lengths = net.encode(batch["video"], batch["video_lengths"], batch["audio"], batch["audio_lengths"])
    ys_in, _ = add_sos_eos(batch["targets"], batch["target_lengths"], net.sos_eos)
    decoder_logits = net.decoder_logits(ys_in, enc, lengths)
    expected = hybrid_ctc_attention_loss(net.ctc_logits(enc).log_softmax(-1), lengths, decoder_logits,
                                         batch["targets"], batch["target_lengths"], ctc_weight=0.3).loss
    assert torch.allclose(out["per_sample_loss"], expected.detach(), atol=1e-5)
    assert torch.allclose(out["loss"], expected.mean(), atol=1e-5)
    no_index = {k: v for k, v in batch.items() if k != "index"}
    assert "index" not in model.training_step(no_index, 0)
    model.set_sample_weights(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    assert torch.allclose(model.training_step(batch, 0)["loss"], expected[0] / 4, atol=1e-5)


@pytest.mark.parametrize("modality", ["audio", "video"])
def test_single_modality_batches_need_only_their_stream(modality):
    model = task(modality=modality)
    batch = make_batch(2)
    other = "video" if modality == "audio" else "audio"
    partial = {k: v for k, v in batch.items() if not k.startswith(other)}
    assert model.training_step(partial, 0)["per_sample_loss"].shape == (2,)
    missing = {k: v for k, v in batch.items() if not k.startswith(modality)}
    with pytest.raises(ValueError, match=f"`batch` must have '{modality}' \\(and '{modality}_lengths'\\) for modality"):
        model.training_step(missing, 0)
    with pytest.raises(ValueError, match="`batch` must have '.*' \\(and"):
        task().training_step(partial, 0)  # the audiovisual task needs both


def test_white_noise_at_the_requested_snr_only_in_evaluation():
    batch = make_batch(2)
    audio, lengths = batch["audio"], batch["audio_lengths"]
    noisy = add_white_noise(audio, lengths, 5.0, torch.Generator().manual_seed(0))
    for b in range(2):
        n = int(lengths[b])
        noise = noisy[b, :n] - audio[b, :n]
        snr = 10 * torch.log10(audio[b, :n].square().sum() / noise.square().sum())
        assert abs(float(snr) - 5.0) < 0.01
        assert torch.equal(noisy[b, n:], audio[b, n:])  # the padding stays zero
    model = task(noise_snr=5.0, noise_seed=3)
    model.train()
    assert torch.equal(model.batch_inputs(batch)["audio"], audio)  # clean in training
    model.eval()
    first = model.batch_inputs(batch)["audio"]
    assert not torch.equal(first, audio) and torch.equal(model.batch_inputs(batch)["video"], batch["video"])
    model.on_validation_epoch_start()  # every evaluation epoch sees the same noise
    assert torch.equal(model.batch_inputs(batch)["audio"], first)
    trained = task(noise_snr=5.0, noise_in_training=True).train()
    assert not torch.equal(trained.batch_inputs(batch)["audio"], audio)


def test_modality_dropout_zeros_one_stream_per_utterance_in_training():
    video, audio = torch.ones(64, 3, 4, 4), torch.ones(64, 10)
    v, a, dv, da = modality_dropout(video, audio, 0.3, 0.5, torch.Generator().manual_seed(0))
    assert not (dv & da).any() and dv.any() and da.any()
    assert (v[dv] == 0).all() and (v[~dv] == 1).all() and (a[da] == 0).all() and (a[~da] == 1).all()
    model = task(video_dropout=1.0)
    batch = make_batch(2)
    inputs = model.train().batch_inputs(batch)
    assert (inputs["video"] == 0).all() and torch.equal(inputs["audio"], batch["audio"])
    assert torch.equal(inputs["video_lengths"], batch["video_lengths"])
    assert torch.equal(model.eval().batch_inputs(batch)["video"], batch["video"])  # evaluation: both streams
    inputs = task(audio_dropout=1.0).train().batch_inputs(batch)
    assert (inputs["audio"] == 0).all() and torch.equal(inputs["video"], batch["video"])


@pytest.mark.parametrize("decoder", ["ctc_greedy", "attention_greedy", "joint_beam"])
def test_decoders_return_one_transcript_per_utterance(decoder):
    model = task(decoder=decoder, beam_size=2).eval()
    batch = make_batch(3)
    with torch.no_grad():
        texts = model.predict_step(batch, 0)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)


def test_fit_three_steps_with_joint_beam_validation(tmp_path):
    model = task(decoder="joint_beam", beam_size=2, lr=3e-3, video_dropout=0.2, audio_dropout=0.2, noise_snr=10.0)
    loader = DataLoader(Clips(4), batch_size=2, collate_fn=collate)
    trainer = Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
                      num_sanity_val_steps=0, val_check_interval=2, default_root_dir=tmp_path)
    trainer.fit(model, loader, loader)
    assert trainer.global_step == 3
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/ctc_loss", "train/att_loss", "val/loss", "val/wer", "val/cer"):
        assert key in metrics and torch.isfinite(metrics[key]), key
    tested = trainer.test(model, DataLoader(Clips(2), batch_size=2, collate_fn=collate), verbose=False)[0]
    assert {"test/loss", "test/wer", "test/cer", "test/att_loss"} <= set(tested)


def test_training_generator_is_saved_and_restored():
    model = task(video_dropout=0.5, audio_dropout=0.5)
    model.train().batch_inputs(make_batch(2))  # advances the generator
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    state = checkpoint[RNG_STATE_KEY]
    expected = torch.rand(5, generator=model._train_rng)
    fresh = task(video_dropout=0.5, audio_dropout=0.5)
    fresh.on_load_checkpoint(checkpoint)
    assert torch.equal(torch.rand(5, generator=fresh._train_rng), expected) and state.dtype == torch.uint8


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"modality": "lips"}, "`modality` must be one of \\('audio', 'video', 'audiovisual'\\), got 'lips'"),
    ({"ctc_weight": 1.5}, "`ctc_weight` must be a number in \\[0, 1\\], got 1.5"),
    ({"label_smoothing": 1.0}, "`label_smoothing` must be a number in \\[0, 1\\), got 1.0"),
    ({"video_dropout": 0.7, "audio_dropout": 0.5}, "`video_dropout \\+ audio_dropout` must be <= 1"),
    ({"modality": "audio", "video_dropout": 0.1}, "`video_dropout` and `audio_dropout` need modality='audiovisual'"),
    ({"noise_in_training": True}, "`noise_in_training=True` needs `noise_snr`"),
    ({"modality": "video", "noise_snr": 5.0}, "`noise_snr` needs audio"),
    ({"noise_snr": "loud"}, "`noise_snr` must be a number finite or None, got 'loud'"),
    ({"decoder": "beam"}, "`decoder` must be one of \\('ctc_greedy', 'attention_greedy', 'joint_beam'\\), got 'beam'"),
    ({"beam_size": 0}, "`beam_size` must be an integer >= 1, got 0"),
    ({"decode_ctc_weight": -0.1}, "`decode_ctc_weight` must be a number in \\[0, 1\\], got -0.1"),
    ({"max_decode_ratio": 0.0}, "`max_decode_ratio` must be a number > 0, got 0.0"),
    ({"optimizer": "sgd"}, "`optimizer` must be one of \\['adamw', 'adam'\\], got 'sgd'"),
    ({"warmup_steps": 5}, "`warmup_steps` needs `scheduler='cosine'`"),
    ({"backbone": "conformer_ctc_tiny"}, "`backbone` must be an audio-visual model"),
    ({"backbone": "resnet20"}, "`backbone` must be an audio-visual model"),
    ({"backbone_kwargs": {"vocab_size": 5}}, "`backbone_kwargs\\['vocab_size'\\]` must match `vocab_size`, got 5 and 29"),
    ({"tokenizer": "words"}, "`tokenizer` must be 'char', the path of a SentencePiece .model file"),
])
def test_bad_arguments_raise_before_training(kwargs, match):
    with pytest.raises(ValueError, match=match):
        task(**kwargs)
