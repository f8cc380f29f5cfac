"""Speech recognition with CTC: log-mel front end, SpecAugment, a Conformer-CTC backbone.

The pipeline of a training step, on the speech batch dict of :mod:`lightning_sparse.data.speech`:

1. **Front end**: :class:`~lightning_sparse.models.layers.LogMelFilterbank` turns ``audio``
   ``(B, T)`` into log-mel ``features`` ``(B, T', n_mels)``; batches from the data modules'
   feature cache bring ``features`` and ``feature_lengths`` instead. Then, with
   ``normalize="utterance"``, each utterance's features are normalised to zero mean and unit
   variance per mel band over its valid frames (ESPnet's ``utterance_mvn``).
2. **Time drop** (training only): the optional :class:`~lightning_sparse.core.time_drop.TimeDrop`
   removes a share of each utterance's frames (time-wise data pruning; a data-pruning callback
   may set its ``ratio`` each epoch).
3. **SpecAugment** (training only; Park et al. 2019, "SpecAugment: A Simple Data Augmentation
   Method for Automatic Speech Recognition", arXiv:1904.08779): ``freq_masks`` frequency masks
   of up to ``freq_mask_param`` bands and ``time_masks`` time masks of up to
   ``time_mask_param`` frames, drawn per utterance (torchaudio's ``FrequencyMasking`` and
   ``TimeMasking``), without time warping. Time masks are placed in the padded batch, so one
   may fall on padding, which is zero already.
4. **Backbone** (``conformer_ctc_small`` by default): ``(features, lengths) -> (logits,
   lengths)``, 4x subsampled.
5. **Loss**: the CTC loss (Graves et al. 2006) of each utterance divided by its target length,
   ``F.ctc_loss(..., reduction="none", zero_infinity=True) / target_lengths`` (torch's
   ``reduction="mean"`` before its batch mean; a target of length 0 is divided by 1), reduced
   by :meth:`~lightning_sparse.tasks.base.SparseTask.reduce_loss`, so per-sample weights from a
   callback apply. An utterance too short for its transcript (fewer output frames than CTC
   needs) has an infinite loss, which ``zero_infinity`` sets to 0.

``training_step`` returns ``{"loss", "per_sample_loss"[, "index"]}``, the per-sample contract
of :mod:`lightning_sparse.core.per_sample` (``index`` when the batch has one).

Evaluation decodes greedily or with beam search (:mod:`lightning_sparse.core.ctc`), turns ids
into text with the tokenizer and scores it against the batch's ``text`` (normalised; the
decoded ``targets`` when a batch has no ``text``) with torchmetrics' word and character error
rates, accumulated over the epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor
from torchmetrics.text import CharErrorRate, WordErrorRate

from lightning_sparse._validation import check_choice, check_int
from lightning_sparse.core.ctc import BeamSearchDecoder, greedy_decode
from lightning_sparse.core.per_sample import per_sample_output
from lightning_sparse.core.text import build_tokenizer
from lightning_sparse.core.time_drop import TimeDrop
from lightning_sparse.models import create_model
from lightning_sparse.models.layers import LogMelFilterbank
from lightning_sparse.tasks.base import SparseTask, merge_backbone_kwargs

__all__ = ["SpeechRecognizer", "utterance_normalize"]

TIME_DROP_STATE_KEY = "lightning_sparse_time_drop_rng"
_FEATURE_KEYS = ("n_mels", "win_length", "hop_length", "n_fft")


def utterance_normalize(features: Tensor, lengths: Tensor, eps: float = 1e-5) -> Tensor:
    """Zero mean, unit variance per feature over each sequence's valid frames; padding stays 0.

    Examples:
        >>> x = torch.tensor([[[1.0], [3.0], [0.0]]])  # one utterance, 2 valid frames of 3
        >>> utterance_normalize(x, torch.tensor([2])).flatten().round(decimals=3).tolist()
        [-1.0, 1.0, 0.0]
    """
    valid = (torch.arange(features.shape[1], device=features.device)[None, :] < lengths[:, None].to(features.device))
    valid = valid.unsqueeze(-1).to(features.dtype)  # (B, T, 1)
    count = valid.sum(1, keepdim=True).clamp_min(1)
    mean = (features * valid).sum(1, keepdim=True) / count
    var = ((features - mean).square() * valid).sum(1, keepdim=True) / count
    return ((features - mean) * torch.rsqrt(var + eps)).masked_fill(valid == 0, 0.0)


class SpeechRecognizer(SparseTask):
    """Train a CTC speech recognizer (backbone at ``self.model``) on speech batch dicts.

    Logs ``train/loss`` (progress bar), ``val/loss``, ``val/wer`` (progress bar), ``val/cer``,
    ``test/loss``, ``test/wer`` and ``test/cer``; the error rates are epoch-level (errors over
    the epoch's words or characters). ``predict_step`` returns the transcripts.

    Args:
        backbone: A registered speech model (``input_convention = "features_lengths"``), e.g.
            ``"conformer_ctc_small"``; see :mod:`lightning_sparse.models.conformer`.
        backbone_kwargs: Extra builder arguments, e.g. ``{"dropout": 0.2}``; ``vocab_size`` and
            ``input_dim`` are passed for you.
        tokenizer: ``"char"`` or the path of a SentencePiece ``.model``; the vocabulary must be
            the data module's.
        sample_rate: Sampling rate of the batches' ``audio``, in Hz.
        features: :class:`~lightning_sparse.models.layers.LogMelFilterbank` settings besides
            ``sample_rate`` (``n_mels``, ``win_length``, ``hop_length``, ``n_fft``; a data
            module's ``frontend_settings`` fits); ``None``: its defaults (80 bands, 25 ms
            windows, 10 ms hop at 16 kHz). Cached features must have ``n_mels`` bands.
        normalize: ``"utterance"`` (per-utterance mean and variance normalisation) or
            ``"none"``.
        freq_masks: SpecAugment frequency masks per utterance (0: none).
        freq_mask_param: Widest frequency mask, in bands (at most ``n_mels``); ``None``: 27
            (Park et al.'s LibriSpeech policies), or ``n_mels`` when fewer.
        time_masks: SpecAugment time masks per utterance (0: none).
        time_mask_param: Widest time mask, in frames.
        time_drop: A :class:`~lightning_sparse.core.time_drop.TimeDrop` applied in training after
            the front end and before SpecAugment, or ``None``.
        decoder: ``"greedy"`` (best path) or ``"beam"`` (lexicon-free beam search, no LM).
        beam_size: Hypotheses of the beam search.
        optimizer: ``"adamw"`` (decoupled weight decay) or ``"adam"``.
        lr: Peak learning rate.
        weight_decay: Weight decay, non-negative.
        scheduler: ``"cosine"`` (per optimizer step to 0, after ``warmup_steps`` of linear
            warm-up) or ``"none"``.
        warmup_steps: Optimizer steps of linear warm-up; ``"cosine"`` only.

    Raises:
        ValueError: If an argument is out of range, or names an unknown backbone, tokenizer,
            optimizer, scheduler or decoder.

    Examples:
        >>> task = SpeechRecognizer("conformer_ctc_tiny", features={"n_mels": 40}, time_drop=TimeDrop(ratio=0.2))
        >>> batch = {"audio": torch.randn(2, 16000), "audio_lengths": torch.tensor([16000, 12000]),
        ...          "targets": torch.tensor([[3, 4, 5], [6, 7, 0]]), "target_lengths": torch.tensor([3, 2]),
        ...          "text": ["abc", "de"], "index": torch.tensor([5, 9])}
        >>> out = task.training_step(batch, 0)
        >>> out["loss"].shape, out["per_sample_loss"].shape, out["index"].tolist()
        (torch.Size([]), torch.Size([2]), [5, 9])
        >>> len(task.eval().predict_step(batch, 0))
        2
    """

    optimizer_choices = ("adamw", "adam")
    prog_bar_metrics = ("wer",)

    def __init__(
        self,
        backbone: str = "conformer_ctc_small",
        backbone_kwargs: dict[str, Any] | None = None,
        tokenizer: str = "char",
        sample_rate: int = 16000,
        features: dict[str, int] | None = None,
        normalize: str = "utterance",
        freq_masks: int = 2,
        freq_mask_param: int | None = None,
        time_masks: int = 2,
        time_mask_param: int = 20,
        time_drop: TimeDrop | None = None,
        decoder: str = "greedy",
        beam_size: int = 10,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-3,
        scheduler: str = "cosine",
        warmup_steps: int = 0,
    ) -> None:
        super().__init__()
        self.tokenizer = build_tokenizer(tokenizer)
        check_int("sample_rate", sample_rate, 1)
        features = dict(features or {})
        if features.get("sample_rate", sample_rate) != sample_rate:
            raise ValueError(f"`features['sample_rate']` must match `sample_rate`, got {features['sample_rate']} and {sample_rate}.")
        features.pop("sample_rate", None)  # a data module's full `frontend_settings` may be passed
        unknown = sorted(set(features) - set(_FEATURE_KEYS))
        if unknown:
            raise ValueError(f"`features` keys must be of {list(_FEATURE_KEYS)}, got {unknown} in {features}.")
        self.frontend = LogMelFilterbank(sample_rate=sample_rate, **features)
        n_mels = self.frontend.n_mels
        check_choice("normalize", normalize, ("utterance", "none"))
        check_int("freq_masks", freq_masks, 0)
        if freq_mask_param is None:
            freq_mask_param = min(27, n_mels)
        check_int("freq_mask_param", freq_mask_param, 0, n_mels)
        check_int("time_masks", time_masks, 0)
        check_int("time_mask_param", time_mask_param, 0)
        if time_drop is not None and not isinstance(time_drop, TimeDrop):
            raise ValueError(f"`time_drop` must be a TimeDrop or None, got {type(time_drop).__name__}.")
        check_choice("decoder", decoder, ("greedy", "beam"))
        check_int("beam_size", beam_size, 1)
        self.check_optimization_args(optimizer, scheduler, lr, weight_decay, warmup_steps)
        kwargs = merge_backbone_kwargs(backbone_kwargs, vocab_size=self.tokenizer.vocab_size, input_dim=n_mels)
        self.save_hyperparameters(ignore=["time_drop"])
        self.hparams.freq_mask_param = freq_mask_param
        speech_only = (f"`backbone` must be a speech model taking (features, lengths) (input_convention "
                       f"'features_lengths', e.g. 'conformer_ctc_small'), got {backbone!r}")
        try:
            self.model = create_model(backbone, **kwargs)
        except TypeError as err:  # a builder without `vocab_size` / `input_dim`
            raise ValueError(f"{speech_only} ({err}).") from err
        if getattr(self.model, "input_convention", None) != "features_lengths":
            raise ValueError(f"{speech_only}.")
        self.time_drop = time_drop
        self.freq_masking = torchaudio.transforms.FrequencyMasking(freq_mask_param, iid_masks=True)
        self.time_masking = torchaudio.transforms.TimeMasking(time_mask_param, iid_masks=True)
        self.beam_decoder = (BeamSearchDecoder(self.tokenizer.tokens, self.tokenizer.blank, beam_size)
                             if decoder == "beam" else None)
        self.add_metrics(wer=WordErrorRate, cer=CharErrorRate)

    # ------------------------------------------------------------------ the pipeline
    def forward(self, features: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The backbone's ``(logits (B, T', vocab_size), lengths (B,))`` for ``(B, T, n_mels)`` features."""
        return self.model(features, lengths)

    def batch_features(self, batch: Any) -> tuple[Tensor, Tensor]:
        """``(features (B, T', n_mels), lengths (B,))`` of a speech batch dict, normalised.

        Raises:
            ValueError: If ``batch`` is not a speech batch dict or its features do not fit.
        """
        if not isinstance(batch, Mapping) or not ("audio" in batch or "features" in batch):
            keys = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ValueError(
                "`batch` must be a speech batch dict with 'audio' (and 'audio_lengths') or 'features' "
                f"(and 'feature_lengths'), got {keys}."
            )
        if "features" in batch:
            x, lengths = batch["features"], batch.get("feature_lengths")
            if x.dim() != 3 or x.shape[-1] != self.frontend.n_mels:
                raise ValueError(
                    f"`batch['features']` must be (B, T, {self.frontend.n_mels}) (the task's `n_mels`), "
                    f"got shape {tuple(x.shape)}."
                )
            if lengths is None:
                lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.int64, device=x.device)
        else:
            x, lengths = self.frontend(batch["audio"], batch.get("audio_lengths"))
        if self.hparams.normalize == "utterance":
            x = utterance_normalize(x, lengths)
        return x, lengths

    def augment(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Time drop, then SpecAugment; the identity outside training mode."""
        if not self.training:
            return features, lengths
        if self.time_drop is not None:
            features, lengths = self.time_drop(features, lengths)
        hp = self.hparams
        if (hp.freq_masks and hp.freq_mask_param) or (hp.time_masks and hp.time_mask_param):
            x = features.transpose(1, 2).unsqueeze(1)  # (B, 1, n_mels, T): torchaudio's layout
            for _ in range(hp.freq_masks if hp.freq_mask_param else 0):
                x = self.freq_masking(x)
            for _ in range(hp.time_masks if hp.time_mask_param else 0):
                x = self.time_masking(x)
            features = x.squeeze(1).transpose(1, 2)
        return features, lengths

    def per_sample_losses(self, log_probs: Tensor, y: Any) -> Tensor:
        """CTC loss of each utterance over its target length, ``(B,)``.

        Args:
            log_probs: ``(B, T', V)`` log-probabilities.
            y: ``(out_lengths, targets, target_lengths)``.
        """
        out_lengths, targets, target_lengths = y
        losses = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths, target_lengths,
                            blank=self.tokenizer.blank, reduction="none", zero_infinity=True)
        return losses / target_lengths.to(losses).clamp_min(1)

    def _log_probs(self, batch: Any) -> tuple[Tensor, Tensor]:
        features, lengths = self.augment(*self.batch_features(batch))
        logits, out_lengths = self(features, lengths)
        return logits.float().log_softmax(-1), out_lengths

    def _losses(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        for key in ("targets", "target_lengths"):
            if isinstance(batch, Mapping) and key not in batch:  # not a dict: batch_features says so
                raise ValueError(f"`batch` must have '{key}' for the CTC loss, got keys {sorted(batch)}.")
        log_probs, out_lengths = self._log_probs(batch)
        losses = self.per_sample_losses(log_probs, (out_lengths, batch["targets"], batch["target_lengths"]))
        return losses, log_probs, out_lengths

    def decode(self, log_probs: Tensor, lengths: Tensor) -> list[str]:
        """Transcripts of ``(B, T', V)`` log-probabilities with the task's decoder."""
        if self.beam_decoder is not None:
            ids = self.beam_decoder(log_probs, lengths)
        else:
            ids = greedy_decode(log_probs, lengths, self.tokenizer.blank)
        return [self.tokenizer.decode(row) for row in ids]

    def references(self, batch: Mapping[str, Any]) -> list[str]:
        """The batch's normalised ``text``, or its decoded ``targets`` when it has no ``text``."""
        if batch.get("text") is not None:
            return [self.tokenizer.normalize(t) for t in batch["text"]]
        return [self.tokenizer.decode(row[:n].tolist()) for row, n in zip(batch["targets"], batch["target_lengths"])]

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        """``{"loss", "per_sample_loss"[, "index"]}`` (see :mod:`lightning_sparse.core.per_sample`)."""
        losses, _, _ = self._losses(batch)
        index = batch.get("index")
        out = per_sample_output(losses, index, reduction=lambda ls: self.reduce_loss(ls, index))
        self.log("train/loss", out["loss"], prog_bar=True, batch_size=len(losses))
        return out

    def _eval_step(self, batch: Any, stage: str) -> None:
        losses, log_probs, out_lengths = self._losses(batch)
        self.log(f"{stage}/loss", losses.mean(), batch_size=len(losses))
        hypotheses, refs = self.decode(log_probs, out_lengths), self.references(batch)
        for name, metric in self.stage_metrics(stage).items():
            metric.update(hypotheses, refs)
            self.log(f"{stage}/{name}", metric, on_step=False, on_epoch=True,
                     prog_bar=stage == "val" and name in self.prog_bar_metrics)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> list[str]:
        """Transcripts of a speech batch dict (targets not needed)."""
        log_probs, out_lengths = self._log_probs(batch)
        return self.decode(log_probs, out_lengths)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.time_drop is not None and self.time_drop.rng_state() is not None:
            checkpoint[TIME_DROP_STATE_KEY] = self.time_drop.rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.time_drop is not None:
            self.time_drop.set_rng_state(checkpoint.get(TIME_DROP_STATE_KEY))
