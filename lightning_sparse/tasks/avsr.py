"""Audio-visual speech recognition with the hybrid CTC/attention loss and joint decoding.

:class:`AVSpeechRecognizer` trains an audio-visual model (``input_convention =
"audio_visual"``, e.g. :class:`~lightning_sparse.models.avsr.AVSR`) on the audio-visual batch
dicts (``video`` ``(B, T_v, H, W)`` float grayscale frames at 25 fps with ``video_lengths``;
``audio`` ``(B, N)`` 16 kHz waveforms with ``audio_lengths``; zero-padded ``targets`` with
``target_lengths``; ``text``; optional ``index``) as auto_avsr (Ma et al. 2023,
arXiv:2303.14307) does:

1. **Robustness noise** (optional): white Gaussian noise at ``noise_snr`` dB over each
   waveform's valid samples (:func:`add_white_noise`, ``torchaudio.functional.add_noise``),
   in evaluation (validation, test, predict) and, with ``noise_in_training``, in training.
   Evaluation noise is drawn from a generator re-seeded with ``noise_seed`` at the start of
   every evaluation epoch, so each evaluation of the same data sees the same noise.
2. **Modality dropout** (training, audiovisual only): each utterance's video is zeroed with
   probability ``video_dropout``, else its audio with probability ``audio_dropout`` (never
   both); lengths are kept (:func:`modality_dropout`).
3. **Model**: encoder output, CTC log-probabilities and decoder logits for the
   ``[sos, y_1 .. y_n]`` input (:func:`~lightning_sparse.core.seq2seq.add_sos_eos`).
4. **Loss**: :func:`~lightning_sparse.core.seq2seq.hybrid_ctc_attention_loss` per utterance,
   ``ctc_weight * ctc + (1 - ctc_weight) * att`` (auto_avsr: 0.1, label smoothing 0.1),
   reduced by :meth:`~lightning_sparse.tasks.base.SparseTask.reduce_loss` (per-sample weights
   from a callback apply). ``training_step`` returns ``{"loss", "per_sample_loss"[, "index"]}``,
   the per-sample contract of :mod:`lightning_sparse.core.per_sample`.

Evaluation decodes with ``decoder``: ``"ctc_greedy"`` (CTC best path, cheapest),
``"attention_greedy"`` (the decoder's best token per step) or ``"joint_beam"`` (joint
CTC/attention beam search, :func:`~lightning_sparse.core.joint_decoding.joint_decode`, with
``beam_size`` and ``decode_ctc_weight``; auto_avsr: 40 and 0.1), and scores the text with
torchmetrics' word and character error rates against the batch's normalised ``text``.

The training generator (noise and modality dropout) is saved in checkpoints and restored on
resume, beside the global RNG states that :class:`~lightning_sparse.tasks.base.SparseTask` keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torchaudio
from torch import Tensor
from torchmetrics.text import CharErrorRate, WordErrorRate

from lightning_sparse._validation import check_bool, check_choice, check_int, check_number
from lightning_sparse.core.ctc import greedy_decode
from lightning_sparse.core.joint_decoding import greedy_attention_decode, joint_decode
from lightning_sparse.core.per_sample import per_sample_output
from lightning_sparse.core.seq2seq import HybridLoss, add_sos_eos, hybrid_ctc_attention_loss
from lightning_sparse.core.text import build_tokenizer
from lightning_sparse.models import create_model
from lightning_sparse.models.avsr import MODALITIES
from lightning_sparse.tasks.base import SparseTask, merge_backbone_kwargs

__all__ = ["AVSR_DECODERS", "AVSpeechRecognizer", "add_white_noise", "modality_dropout"]

AVSR_DECODERS = ("ctc_greedy", "attention_greedy", "joint_beam")
"""The allowed ``decoder`` values."""
RNG_STATE_KEY = "lightning_sparse_avsr_rng"
"""Checkpoint key of the training generator's state (noise and modality dropout)."""


def _valid(lengths: Tensor, steps: int) -> Tensor:
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def add_white_noise(audio: Tensor, lengths: Tensor | None, snr_db: float,
                    generator: torch.Generator | None = None) -> Tensor:
    """``audio (B, N)`` plus white Gaussian noise at ``snr_db`` dB over each waveform's valid samples.

    The noise is scaled per waveform so that ``10 log10(signal energy / noise energy) =
    snr_db`` over its first ``lengths`` samples (``torchaudio.functional.add_noise``); the
    padding and silent or empty waveforms are left unchanged. The noise is drawn on the CPU
    from ``generator``.

    Examples:
        >>> audio = torch.randn(2, 16000)
        >>> noisy = add_white_noise(audio, torch.tensor([16000, 8000]), 10.0, torch.Generator().manual_seed(0))
        >>> noise = noisy - audio
        >>> snr = 10 * torch.log10(audio[0].square().sum() / noise[0].square().sum())
        >>> round(float(snr), 3), bool(noise[1, 8000:].abs().max() == 0)
        (10.0, True)
    """
    check_number("snr_db", snr_db)
    if not isinstance(audio, Tensor) or audio.dim() != 2:
        shape = tuple(audio.shape) if isinstance(audio, Tensor) else type(audio).__name__
        raise ValueError(f"`audio` must be mono waveforms (B, N), got {shape}.")
    batch, samples = audio.shape
    if lengths is None:
        lengths = torch.full((batch,), samples, dtype=torch.int64)
    lengths = lengths.to(audio.device)
    mask = _valid(lengths, samples).to(audio.dtype)
    noise = torch.randn(audio.shape, generator=generator, dtype=torch.float32).to(audio) * mask
    snr = torch.full((batch,), float(snr_db), dtype=audio.dtype, device=audio.device)
    clean = audio * mask
    scaled_noise = torchaudio.functional.add_noise(clean, noise, snr, lengths) - clean
    audible = clean.square().sum(-1) > 0
    return audio + torch.where(audible[:, None], scaled_noise, torch.zeros_like(scaled_noise))


def modality_dropout(video: Tensor, audio: Tensor, video_p: float, audio_p: float,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Zero each utterance's video with probability ``video_p``, else its audio with ``audio_p``.

    One uniform draw per utterance (CPU ``generator``): below ``video_p`` the video goes, in
    ``[video_p, video_p + audio_p)`` the audio; so at most one stream of an utterance is
    dropped (``video_p + audio_p <= 1``).

    Returns:
        ``(video, audio, video_dropped (B,), audio_dropped (B,))``.

    Examples:
        >>> v, a, dv, da = modality_dropout(torch.ones(4, 2, 3, 3), torch.ones(4, 8), 0.5, 0.5)
        >>> bool((dv ^ da).all()), v.sum().item() + a.sum().item() > 0
        (True, True)
    """
    check_number("video_p", video_p, 0.0, 1.0)
    check_number("audio_p", audio_p, 0.0, 1.0)
    if video_p + audio_p > 1.0 + 1e-9:
        raise ValueError(f"`video_p + audio_p` must be <= 1 (one stream at most is dropped), got {video_p + audio_p}.")
    if video.shape[0] != audio.shape[0]:
        raise ValueError(
            f"`video` and `audio` must have the same batch size, got {video.shape[0]} and {audio.shape[0]}.")
    draw = torch.rand(video.shape[0], generator=generator).to(video.device)
    drop_video = draw < video_p
    drop_audio = (draw >= video_p) & (draw < video_p + audio_p)
    video = video * (~drop_video).to(video.dtype).view(-1, *[1] * (video.dim() - 1))
    audio = audio * (~drop_audio).to(audio.dtype).to(audio.device)[:, None]
    return video, audio, drop_video, drop_audio.to(audio.device)


class AVSpeechRecognizer(SparseTask):
    """Train an audio-visual speech recognizer (model at ``self.model``) on audio-visual batch dicts.

    Logs ``train/loss`` (progress bar), ``train/ctc_loss``, ``train/att_loss``; ``val/loss``,
    ``val/ctc_loss``, ``val/att_loss``, ``val/wer`` (progress bar), ``val/cer``; and the same
    under ``test/``. The error rates are epoch-level. ``predict_step`` returns the transcripts.

    Args:
        backbone: A registered audio-visual model (``input_convention = "audio_visual"``),
            e.g. ``"avsr_small"``; see :mod:`lightning_sparse.models.avsr`.
        backbone_kwargs: Extra builder arguments, e.g. ``{"dropout": 0.2}``; ``vocab_size`` and
            ``modality`` are passed for you.
        modality: ``"audio"``, ``"video"`` or ``"audiovisual"``: the streams the model reads
            (and the batches must have).
        tokenizer: ``"char"`` or the path of a SentencePiece ``.model``; the data's vocabulary.
        ctc_weight: Weight of the CTC term of the loss, in ``[0, 1]`` (auto_avsr: 0.1).
        label_smoothing: Of the attention term, in ``[0, 1)`` (auto_avsr: 0.1).
        normalize_length: Per-token loss means (``True``) or per-utterance sums (auto_avsr);
            see :mod:`lightning_sparse.core.seq2seq`.
        video_dropout: Probability of zeroing an utterance's video in training (audiovisual).
        audio_dropout: Probability of zeroing its audio instead; ``video_dropout +
            audio_dropout <= 1``.
        noise_snr: White-noise SNR in dB added to the audio in evaluation, or ``None`` (clean).
        noise_in_training: Also add that noise in training (needs ``noise_snr``).
        noise_seed: Seed of the noise and modality-dropout generators.
        decoder: ``"ctc_greedy"``, ``"attention_greedy"`` or ``"joint_beam"``.
        beam_size: Hypotheses of ``"joint_beam"`` (auto_avsr: 40).
        decode_ctc_weight: CTC weight of ``"joint_beam"``, in ``[0, 1]`` (auto_avsr: 0.1).
        max_decode_ratio: Most decoded tokens per encoder frame (attention decoders); 1: at
            most one per frame (ESPnet's ``maxlenratio=0``).
        optimizer: ``"adamw"`` (decoupled weight decay) or ``"adam"``.
        lr: Peak learning rate (auto_avsr: 1e-3).
        weight_decay: Weight decay, non-negative (auto_avsr: 0.03).
        scheduler: ``"cosine"`` (per optimizer step to 0, after ``warmup_steps`` of linear
            warm-up) or ``"none"``.
        warmup_steps: Optimizer steps of linear warm-up; ``"cosine"`` only.

    Raises:
        ValueError: If an argument is out of range, or names an unknown backbone, tokenizer,
            modality, decoder, optimizer or scheduler.

    Examples:
        >>> task = AVSpeechRecognizer("avsr_tiny", scheduler="none")
        >>> batch = {"video": torch.randn(2, 6, 32, 32), "video_lengths": torch.tensor([6, 5]),
        ...          "audio": torch.randn(2, 3840), "audio_lengths": torch.tensor([3840, 3200]),
        ...          "targets": torch.tensor([[3, 4], [5, 0]]), "target_lengths": torch.tensor([2, 1]),
        ...          "text": ["ab", "c"], "index": torch.tensor([7, 1])}
        >>> out = task.training_step(batch, 0)
        >>> out["loss"].shape, out["per_sample_loss"].shape, out["index"].tolist()
        (torch.Size([]), torch.Size([2]), [7, 1])
        >>> len(task.eval().predict_step(batch, 0))
        2
    """

    optimizer_choices = ("adamw", "adam")
    prog_bar_metrics = ("wer",)

    def __init__(
        self,
        backbone: str = "avsr_small",
        backbone_kwargs: dict[str, Any] | None = None,
        modality: str = "audiovisual",
        tokenizer: str = "char",
        ctc_weight: float = 0.1,
        label_smoothing: float = 0.1,
        normalize_length: bool = True,
        video_dropout: float = 0.0,
        audio_dropout: float = 0.0,
        noise_snr: float | None = None,
        noise_in_training: bool = False,
        noise_seed: int = 0,
        decoder: str = "ctc_greedy",
        beam_size: int = 10,
        decode_ctc_weight: float = 0.1,
        max_decode_ratio: float = 1.0,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 0.03,
        scheduler: str = "cosine",
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        self.tokenizer = build_tokenizer(tokenizer)
        check_choice("modality", modality, MODALITIES)
        check_number("ctc_weight", ctc_weight, 0.0, 1.0)
        check_number("label_smoothing", label_smoothing, 0.0, 1.0, high_open=True)
        check_bool("normalize_length", normalize_length)
        check_number("video_dropout", video_dropout, 0.0, 1.0)
        check_number("audio_dropout", audio_dropout, 0.0, 1.0)
        if video_dropout + audio_dropout > 1.0 + 1e-9:
            raise ValueError(f"`video_dropout + audio_dropout` must be <= 1 (one stream at most is dropped), got "
                             f"{video_dropout} + {audio_dropout}.")
        if (video_dropout or audio_dropout) and modality != "audiovisual":
            raise ValueError(f"`video_dropout` and `audio_dropout` need modality='audiovisual', got modality="
                             f"{modality!r} with video_dropout={video_dropout}, audio_dropout={audio_dropout}.")
        check_number("noise_snr", noise_snr, allow_none=True)
        check_bool("noise_in_training", noise_in_training)
        if noise_in_training and noise_snr is None:
            raise ValueError("`noise_in_training=True` needs `noise_snr` (the SNR in dB), got noise_snr=None.")
        if noise_snr is not None and modality == "video":
            raise ValueError(f"`noise_snr` needs audio (modality 'audio' or 'audiovisual'), got modality={modality!r}.")
        check_int("noise_seed", noise_seed, 0)
        check_choice("decoder", decoder, AVSR_DECODERS)
        check_int("beam_size", beam_size, 1)
        check_number("decode_ctc_weight", decode_ctc_weight, 0.0, 1.0)
        check_number("max_decode_ratio", max_decode_ratio, 0.0, low_open=True)
        self.check_optimization_args(optimizer, scheduler, lr, weight_decay, warmup_steps)
        kwargs = merge_backbone_kwargs(backbone_kwargs, vocab_size=self.tokenizer.vocab_size, modality=modality)
        self.save_hyperparameters()
        av_only = (f"`backbone` must be an audio-visual model taking video/audio streams (input_convention "
                   f"'audio_visual', e.g. 'avsr_small'), got {backbone!r}")
        try:
            self.model = create_model(backbone, **kwargs)
        except TypeError as err:  # a builder without `vocab_size` / `modality`
            raise ValueError(f"{av_only} ({err}).") from err
        if getattr(self.model, "input_convention", None) != "audio_visual":
            raise ValueError(f"{av_only}.")
        self._train_rng = torch.Generator().manual_seed(noise_seed)
        self._eval_rng = torch.Generator().manual_seed(noise_seed)
        self.add_metrics(wer=WordErrorRate, cer=CharErrorRate)

    # ------------------------------------------------------------------ the pipeline
    def forward(self, **inputs: Tensor) -> dict[str, Tensor]:
        """The model's output dict for keyword streams (``video``, ``audio``, their lengths, ``tokens``)."""
        return self.model(**inputs)

    def batch_inputs(self, batch: Any) -> dict[str, Tensor]:
        """The model's keyword inputs from a batch dict, with noise and modality dropout applied.

        Raises:
            ValueError: If ``batch`` is not a dict or lacks a stream the modality needs.
        """
        if not isinstance(batch, Mapping):
            raise ValueError(f"`batch` must be an audio-visual batch dict, got {type(batch).__name__}.")
        hp, inputs = self.hparams, {}
        for stream, used in (("video", hp.modality != "audio"), ("audio", hp.modality != "video")):
            if not used:
                continue
            if stream not in batch:
                raise ValueError(f"`batch` must have '{stream}' (and '{stream}_lengths') for modality "
                                 f"{hp.modality!r}, got keys {sorted(batch)}.")
            value = batch[stream]
            if not isinstance(value, Tensor) or not value.is_floating_point():
                kind = value.dtype if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"`batch['{stream}']` must be a float tensor (normalised), got {kind}.")
            inputs[stream], inputs[f"{stream}_lengths"] = value, batch.get(f"{stream}_lengths")
        if "audio" in inputs and hp.noise_snr is not None and (not self.training or hp.noise_in_training):
            rng = self._train_rng if self.training else self._eval_rng
            inputs["audio"] = add_white_noise(inputs["audio"], inputs["audio_lengths"], hp.noise_snr, rng)
        if self.training and (hp.video_dropout or hp.audio_dropout):
            inputs["video"], inputs["audio"], _, _ = modality_dropout(
                inputs["video"], inputs["audio"], hp.video_dropout, hp.audio_dropout, self._train_rng)
        return inputs

    def _losses(self, batch: Any) -> tuple[HybridLoss, Tensor, Tensor, Tensor]:
        """Per-utterance losses, encoder output, its lengths and the CTC log-probabilities."""
        inputs = self.batch_inputs(batch)
        for key in ("targets", "target_lengths"):
            if key not in batch:
                raise ValueError(f"`batch` must have '{key}' for the loss, got keys {sorted(batch)}.")
        encoder_out, lengths = self.model.encode(**inputs)
        ctc_log_probs = self.model.ctc_logits(encoder_out).float().log_softmax(-1)
        targets, target_lengths = batch["targets"], batch["target_lengths"]
        ys_in, _ = add_sos_eos(targets, target_lengths, self.model.sos_eos)
        decoder_logits = self.model.decoder_logits(ys_in, encoder_out, lengths)
        hp = self.hparams
        losses = hybrid_ctc_attention_loss(
            ctc_log_probs, lengths, decoder_logits, targets, target_lengths, ctc_weight=hp.ctc_weight,
            label_smoothing=hp.label_smoothing, blank=self.tokenizer.blank, normalize_length=hp.normalize_length)
        return losses, encoder_out, lengths, ctc_log_probs

    def decode(self, encoder_out: Tensor, lengths: Tensor, ctc_log_probs: Tensor) -> list[str]:
        """Transcripts of an encoded batch with the task's decoder."""
        hp, blank, sos_eos = self.hparams, self.tokenizer.blank, self.model.sos_eos
        if hp.decoder == "ctc_greedy":
            ids = greedy_decode(ctc_log_probs, lengths, blank)
        elif hp.decoder == "attention_greedy":
            ids = greedy_attention_decode(self.model.decoder_logits, encoder_out, lengths, sos_eos,
                                          max_length_ratio=hp.max_decode_ratio, blank=blank)
        else:
            ids = joint_decode(self.model.decoder_logits, encoder_out, lengths, ctc_log_probs, sos_eos,
                               beam_size=hp.beam_size, ctc_weight=hp.decode_ctc_weight,
                               max_length_ratio=hp.max_decode_ratio, blank=blank)
        return [self.tokenizer.decode(row) for row in ids]

    def references(self, batch: Mapping[str, Any]) -> list[str]:
        """The batch's normalised ``text``, or its decoded ``targets`` when it has no ``text``."""
        if batch.get("text") is not None:
            return [self.tokenizer.normalize(t) for t in batch["text"]]
        return [self.tokenizer.decode(row[:n].tolist()) for row, n in zip(batch["targets"], batch["target_lengths"])]

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """``{"loss", "per_sample_loss"[, "index"]}`` (see :mod:`lightning_sparse.core.per_sample`)."""
        losses, _, _, _ = self._losses(batch)
        index = batch.get("index")
        out = per_sample_output(losses.loss, index, reduction=lambda ls: self.reduce_loss(ls, index))
        size = len(losses.loss)
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=size)
        self.log("train/ctc_loss", losses.ctc.mean(), batch_size=size)
        self.log("train/att_loss", losses.att.mean(), batch_size=size)
        return out

    def _eval_step(self, batch: Any, stage: str) -> None:
        losses, encoder_out, lengths, ctc_log_probs = self._losses(batch)
        size = len(losses.loss)
        self.log(f"{stage}/loss", losses.loss.mean(), batch_size=size)
        self.log(f"{stage}/ctc_loss", losses.ctc.mean(), batch_size=size)
        self.log(f"{stage}/att_loss", losses.att.mean(), batch_size=size)
        hypotheses, refs = self.decode(encoder_out, lengths, ctc_log_probs), self.references(batch)
        for name, metric in self.stage_metrics(stage).items():
            metric.update(hypotheses, refs)
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True,
                     prog_bar=stage == "val" and name in self.prog_bar_metrics)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> list[str]:
        """Transcripts of an audio-visual batch dict (targets not needed)."""
        encoder_out, lengths = self.model.encode(**self.batch_inputs(batch))
        ctc_log_probs = self.model.ctc_logits(encoder_out).float().log_softmax(-1)
        return self.decode(encoder_out, lengths, ctc_log_probs)

    # ------------------------------------------------------------------ generators
    def _reseed_eval_noise(self) -> None:
        self._eval_rng.manual_seed(self.hparams.noise_seed)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._reseed_eval_noise()

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self._reseed_eval_noise()

    def on_predict_epoch_start(self) -> None:
        self._reseed_eval_noise()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[RNG_STATE_KEY] = self._train_rng.get_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if checkpoint.get(RNG_STATE_KEY) is not None:
            self._train_rng.set_state(checkpoint[RNG_STATE_KEY])
