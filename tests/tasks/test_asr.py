"""SpeechRecognizer on hand-made speech batch dicts: contract, CTC loss, weights, time drop, fit, decoding."""

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from lightning_sparse.core.text import CharTokenizer
from lightning_sparse.core.time_drop import TimeDrop
from lightning_sparse.tasks import SpeechRecognizer

pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # steps without a Trainer

TEXTS = ["ab", "cab", "b a", "ca"]
QUIET = {"freq_masks": 0, "time_masks": 0}  # no SpecAugment randomness
TINY = {"backbone": "conformer_ctc_tiny", "backbone_kwargs": {"dropout": 0.0}, "features": {"n_mels": 16}}


def collate_speech(items: list[dict], return_index: bool = False) -> dict:
    """The speech data modules' batch dict (features variant), built here by hand."""
    lengths = torch.tensor([len(i["features"]) for i in items])
    features = torch.zeros(len(items), int(lengths.max()), items[0]["features"].shape[1])
    targets = torch.zeros(len(items), max(len(i["targets"]) for i in items), dtype=torch.int64)
    for b, item in enumerate(items):
        features[b, :lengths[b]] = item["features"]
        targets[b, :len(item["targets"])] = item["targets"]
    batch = {"features": features, "feature_lengths": lengths, "targets": targets,
             "target_lengths": torch.tensor([len(i["targets"]) for i in items]), "text": [i["text"] for i in items]}
    if return_index:
        batch["index"] = torch.tensor([i["index"] for i in items])
    return batch


def items(n: int = 4, frames: int = 40, seed: int = 0) -> list[dict]:
    """Utterances with cached-style features (T, 16) of different lengths and their transcripts."""
    g, tok = torch.Generator().manual_seed(seed), CharTokenizer()
    return [{"features": torch.randn(frames - 4 * i, 16, generator=g), "text": TEXTS[i % 4],
             "targets": torch.tensor(tok.encode(TEXTS[i % 4])), "index": i} for i in range(n)]


def feature_batch(n: int = 4, return_index: bool = True) -> dict:
    return collate_speech(items(n), return_index=return_index)


def task(**kwargs) -> SpeechRecognizer:
    torch.manual_seed(0)
    return SpeechRecognizer(**{**TINY, "scheduler": "none", **QUIET, **kwargs})


def test_contract_keys_and_shapes_for_audio_and_feature_batches():
    model = task()
    batch = feature_batch()
    out = model.training_step(batch, 0)
    assert sorted(out) == ["index", "loss", "per_sample_loss"]
    assert out["per_sample_loss"].shape == (4,) and not out["per_sample_loss"].requires_grad
    assert out["loss"].requires_grad and out["index"].tolist() == [0, 1, 2, 3]
    assert "index" not in model.training_step(feature_batch(return_index=False), 0)
    audio = {"audio": torch.randn(2, 4000), "audio_lengths": torch.tensor([4000, 2500]),
             "targets": torch.tensor([[3, 4], [5, 0]]), "target_lengths": torch.tensor([2, 1]), "text": ["ab", "c"]}
    audio_task = task(features={"n_mels": 16}, sample_rate=8000)
    features, lengths = audio_task.batch_features(audio)
    assert features.shape == (2, 22, 16) and lengths.tolist() == [22, 13]  # 1 + (n - 512) // 160 frames
    assert audio_task.training_step(audio, 0)["per_sample_loss"].shape == (2,)


def test_per_sample_loss_is_ctc_over_target_length():
    model = task(normalize="none")
    batch = feature_batch()
    out = model.training_step(batch, 0)
    logits, lengths = model(batch["features"], batch["feature_lengths"])
    log_probs = logits.log_softmax(-1).transpose(0, 1)
    per_utterance = F.ctc_loss(log_probs, batch["targets"], lengths, batch["target_lengths"], reduction="none",
                               zero_infinity=True)
    assert torch.allclose(out["per_sample_loss"], per_utterance / batch["target_lengths"])
    mean = F.ctc_loss(log_probs, batch["targets"], lengths, batch["target_lengths"], zero_infinity=True)
    assert torch.allclose(out["loss"], mean)  # torch's "mean" reduction


def test_sample_and_index_weights_are_honoured():
    model = task()
    batch = feature_batch()
    weights = torch.tensor([0.0, 1.0, 2.0, 3.0])
    model.set_sample_weights(weights)
    out = model.training_step(batch, 0)
    assert torch.allclose(out["loss"], (weights * out["per_sample_loss"]).mean())
    model.set_index_weights(torch.tensor([4.0, 0.0, 0.0, 1.0]))
    out = model.training_step(batch, 0)
    assert torch.allclose(out["loss"], (torch.tensor([4.0, 0.0, 0.0, 1.0]) * out["per_sample_loss"]).mean())


def test_time_drop_only_in_training():
    model = task(time_drop=TimeDrop(mode="point", ratio=0.5, seed=0))
    assert any(isinstance(m, TimeDrop) for m in model.modules())  # where a data-pruning callback looks
    seen = []
    model.model.register_forward_pre_hook(lambda module, args: seen.append(args[1].tolist()))
    batch = feature_batch()
    model.train().training_step(batch, 0)
    model.eval().validation_step(batch, 0)
    model.predict_step(batch, 0)
    assert seen == [[20, 18, 16, 14], [40, 36, 32, 28], [40, 36, 32, 28]]


def test_spec_augment_only_in_training_and_harmless_to_padding():
    model = task(freq_masks=2, freq_mask_param=8, time_masks=2, time_mask_param=10, normalize="none")
    features, lengths = model.batch_features(feature_batch())
    masked, same = model.train().augment(features, lengths)
    assert same is lengths and masked.shape == features.shape
    assert (masked == 0).sum() > (features == 0).sum()  # something was masked
    assert (masked[features == 0] == 0).all()  # padding stays zero
    assert torch.equal(model.eval().augment(features, lengths)[0], features)


def test_a_few_steps_overfit_a_fixed_batch():
    model = task(lr=3e-3)
    batch = feature_batch()
    optimizer = model.configure_optimizers()
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = model.training_step(batch, 0)["loss"]
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_fit_one_epoch_logs_losses_and_error_rates(tmp_path):
    model = task(scheduler="cosine", warmup_steps=1, freq_masks=1, freq_mask_param=4, time_masks=1, time_mask_param=5)
    train = DataLoader(items(8), batch_size=4, collate_fn=lambda b: collate_speech(b, return_index=True))
    val = DataLoader(items(4, seed=1), batch_size=2, collate_fn=collate_speech)
    trainer = Trainer(default_root_dir=tmp_path, max_epochs=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, train, val)
    metrics = trainer.callback_metrics
    assert {"train/loss", "val/loss", "val/wer", "val/cer"} <= set(metrics)
    assert 0.0 <= float(metrics["val/cer"]) and torch.isfinite(metrics["val/loss"])
    assert "val/wer" in trainer.progress_bar_metrics
    predictions = trainer.predict(model, val)
    assert [len(p) for p in predictions] == [2, 2] and all(isinstance(t, str) for p in predictions for t in p)


def test_greedy_and_beam_decoding_and_references():
    greedy, beam = task(), task(decoder="beam", beam_size=4)
    beam.load_state_dict(greedy.state_dict())
    batch = feature_batch()
    logits, lengths = greedy.eval()(*greedy.batch_features(batch))
    log_probs = logits.log_softmax(-1)
    assert greedy.eval().predict_step(batch, 0) == greedy.decode(log_probs, lengths)
    assert len(beam.eval().predict_step(batch, 0)) == 4
    # a hand-made, peaked posterior: both decoders read "cab"
    ids = torch.tensor([[5, 0, 3, 3, 0, 4]])
    peaked = (F.one_hot(ids, 29) * 10.0).log_softmax(-1)
    assert greedy.decode(peaked, torch.tensor([6])) == beam.decode(peaked, torch.tensor([6])) == ["cab"]
    assert greedy.references(batch) == TEXTS
    no_text = {k: v for k, v in batch.items() if k != "text"}
    assert greedy.references(no_text) == TEXTS  # decoded from the targets


def test_time_drop_generator_travels_in_checkpoints():
    model = task(time_drop=TimeDrop(ratio=0.3, seed=5))
    model.training_step(feature_batch(), 0)
    checkpoint = {}
    model.on_save_checkpoint(checkpoint)
    other = task(time_drop=TimeDrop(ratio=0.3, seed=5))
    other.on_load_checkpoint(checkpoint)
    assert torch.equal(other.time_drop.generator.get_state(), model.time_drop.generator.get_state())


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"tokenizer": "words"}, "`tokenizer` must be 'char', the path"),
    ({"backbone": "mlp"}, "`backbone` must be a speech model"),
    ({"backbone": "nope"}, "`name` must be one of the registered models"),
    ({"optimizer": "sgd"}, "`optimizer` must be one of \\['adamw', 'adam'\\], got 'sgd'"),
    ({"scheduler": "step"}, "`scheduler` must be one of"),
    ({"decoder": "viterbi"}, "`decoder` must be one of \\('greedy', 'beam'\\), got 'viterbi'"),
    ({"beam_size": 0}, "`beam_size` must be an integer >= 1, got 0"),
    ({"normalize": "global"}, "`normalize` must be one of"),
    ({"features": {"n_bins": 16}}, "`features` keys must be of"),
    ({"features": {"n_mels": 16, "sample_rate": 8000}}, "`features\\['sample_rate'\\]` must match `sample_rate`"),
    ({"freq_mask_param": 17}, "`freq_mask_param` must be an integer in \\[0, 16\\], got 17"),
    ({"time_masks": -1}, "`time_masks`"),
    ({"time_drop": 0.2}, "`time_drop` must be a TimeDrop or None, got float"),
    ({"lr": 0.0}, "`lr`"),
    ({"warmup_steps": 5}, "`warmup_steps` needs `scheduler='cosine'`"),
    ({"backbone_kwargs": {"vocab_size": 10}}, "`backbone_kwargs\\['vocab_size'\\]` must match"),
])
def test_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        task(**kwargs)


def test_bad_batches():
    model = task()
    with pytest.raises(ValueError, match="`batch` must be a speech batch dict"):
        model.training_step((torch.randn(2, 40, 16), torch.tensor([1, 2])), 0)
    with pytest.raises(ValueError, match="must be \\(B, T, 16\\)"):
        model.training_step({**feature_batch(), "features": torch.randn(4, 40, 80)}, 0)
    with pytest.raises(ValueError, match="`batch` must have 'targets'"):
        model.training_step({"features": torch.randn(2, 40, 16)}, 0)
