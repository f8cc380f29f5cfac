"""Audio-visual speech recognition: ResNet front-ends, a Conformer encoder, CTC and attention heads.

:class:`AVSR` follows auto_avsr (Ma, Haliassos, Fernandez-Lopez, Chen, Petridis, Pantic 2023,
"Auto-AVSR: Audio-Visual Speech Recognition with Automatic Labels", ICASSP, arXiv:2303.14307;
code github.com/mpc001/auto_avsr, ``espnet/nets/pytorch_backend/e2e_asr_conformer_av.py``), an
ESPnet-style hybrid CTC/attention model (Watanabe et al. 2017, "Hybrid CTC/Attention
Architecture for End-to-End Speech Recognition", IEEE JSTSP):

1. **Front-ends** (:mod:`~lightning_sparse.models.layers.resnet_frontends`): lip frames
   ``(B, T_v, H, W)`` at 25 fps through a 3D stem and a per-frame 2D ResNet-18
   (``video_frontend``), and/or 16 kHz waveforms ``(B, N)`` through a 1D ResNet-18
   (``audio_frontend``), each giving 25 Hz features (640 samples a frame) projected to
   ``d_model`` by ``video_proj`` / ``audio_proj`` (ESPnet's ``embed`` ``Linear(512, adim)``).
2. **Alignment** (``modality="audiovisual"``): each utterance keeps ``min(T_v, N // 640)``
   frames of both streams (the shorter stream sets its length; the longer one is cut).
3. **Fusion** (audiovisual only, ``fusion``: :class:`~lightning_sparse.models.layers.fusion.FusionMLP`):
   auto_avsr's ``MLPHead``, ``Linear(2 d_model, fusion_dim)`` -> ``BatchNorm1d`` -> ``ReLU`` ->
   ``Linear(fusion_dim, d_model)``, of the concatenated streams. ``fusion_stage="late"`` is auto_avsr's design: each stream has its own
   Conformer (``encoder`` for video, ``audio_encoder`` for audio) and the MLP fuses their
   outputs. ``fusion_stage="early"`` fuses the projected front-end features and runs one
   Conformer (``encoder``) on the fused stream: half the encoder cost, for small models.
4. **Encoder** (``encoder``): sinusoidal positions
   (:class:`~lightning_sparse.models.layers.transformer_decoder.SinusoidalPositionalEncoding`,
   ESPnet's ``PositionalEncoding``: ``x * sqrt(d_model) + pe``, then dropout) and a
   :class:`~lightning_sparse.models.conformer.MaskedConformer` (torchaudio's Conformer with
   padded frames zeroed before its depthwise convolutions).
5. **CTC head** (``ctc_head``): dropout (ESPnet's CTC module) and ``Linear(d_model,
   vocab_size)``; id 0 is the blank.
6. **Attention decoder** (``decoder``:
   :class:`~lightning_sparse.models.layers.transformer_decoder.AttentionDecoder`): token
   embedding, sinusoidal positions, a pre-norm ``torch.nn.TransformerDecoder`` (causal
   self-attention, cross-attention to the encoder output with its padding masked), a final
   layer norm and ``Linear(d_model, vocab_size + 1)``.
   The extra id ``vocab_size`` is both start and end of sentence (``sos_eos``), ESPnet's
   ``odim - 1`` convention; the decoder never has to emit the blank (0), which the decoding
   functions of :mod:`lightning_sparse.core.joint_decoding` exclude.

Registered sizes (parameter counts for the 29-token character vocabulary, checked in
``tests/models/test_avsr.py``):

| name | width | d_model | enc. layers | heads | ffn | kernel | dec. layers | fusion | audio | video | audiovisual |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
| `avsr_tiny` | 8 | 32 | 2 | 2 | 64 | 7 | 1 | early, 64 | 112.5 k | 228.2 k | 298.4 k |
| `avsr_small` | 16 | 128 | 4 | 4 | 512 | 15 | 2 | early, 512 | 2.33 M | 2.79 M | 3.25 M |
| `avsr_base` | 64 | 768 | 12 | 12 | 3072 | 31 | 6 | late, 8192 | 224.4 M | 231.7 M | 418.2 M |

``avsr_base`` has auto_avsr's sizes (``configs/model/*/resnet_conformer.yaml``: ``adim 768``,
``aheads 12``, ``eunits 3072``, ``elayers 12``, ``cnn_module_kernel 31``, ``dlayers 6``,
``dunits 3072``, ``fusion_hdim 8192``, Swish front-ends of width 64, ``dropout_rate 0.1``);
auto_avsr's own modules are slightly larger (its relative-position attention adds a position
projection and biases to every encoder layer). The base counts are computed on the meta device
in the test. ``avsr_small`` trains on the CPU (GRID); ``avsr_tiny`` is for tests.
``avsr(size=...)`` builds any of them with overrides.

Deviations from auto_avsr: torchaudio's Conformer has no positional encoding, so absolute
sinusoidal positions are added at its input instead of auto_avsr's relative-position attention;
``fusion_stage="early"`` is an addition; the decoder is torch's ``TransformerDecoder`` (pre-norm
like ESPnet's, ReLU feed-forward); a sequence's two streams are cut to the shorter one here,
while auto_avsr's data pipeline makes them equal.

Padding: in eval mode an utterance's outputs are the same alone or padded in a batch (tested),
since the video's padded frames are zeroed at the input, the audio front-end and the Conformer
zero padded positions before their convolutions, attention masks them, and the rest is
per frame. In training mode the batch norms' statistics see the padding.

Pre-trained front-ends: ``frontend_checkpoint`` is a local file holding a state dict (or
``{"state_dict": ...}``, e.g. a Lightning checkpoint of the task, whose ``model.`` prefix is
removed) with ``video_frontend.*`` and/or ``audio_frontend.*`` keys; the front-ends the modality
uses and the file has are loaded, strictly. auto_avsr's ``encoder.frontend.*`` (VSR or ASR
model) keys load after renaming that prefix to ``video_frontend.`` or ``audio_frontend.``.
Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_sparse._validation import check_choice, check_int, check_number
from lightning_sparse.models._checks import check_sizes
from lightning_sparse.models._registry import register_model
from lightning_sparse.models.conformer import MaskedConformer
from lightning_sparse.models.layers.fusion import FusionMLP
from lightning_sparse.models.layers.resnet_frontends import (
    FRONTEND_ACTIVATIONS,
    AudioResNetFrontend,
    VideoResNetFrontend,
)
from lightning_sparse.models.layers.transformer_decoder import (
    AttentionDecoder,
    SinusoidalPositionalEncoding,
    _valid_mask,
)

__all__ = [
    "AVSR",
    "AVSR_SIZES",
    "FUSION_STAGES",
    "MODALITIES",
    "AttentionDecoder",
    "FusionMLP",
    "SinusoidalPositionalEncoding",
    "avsr",
    "avsr_base",
    "avsr_small",
    "avsr_tiny",
]

MODALITIES = ("audio", "video", "audiovisual")
"""The allowed ``modality`` values."""
FUSION_STAGES = ("early", "late")
"""The allowed ``fusion_stage`` values."""

AVSR_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(width=8, d_model=32, num_layers=2, num_heads=2, ffn_dim=64, depthwise_conv_kernel_size=7,
                 decoder_layers=1, decoder_heads=2, decoder_ffn_dim=64, fusion_stage="early", fusion_dim=64),
    "small": dict(width=16, d_model=128, num_layers=4, num_heads=4, ffn_dim=512, depthwise_conv_kernel_size=15,
                  decoder_layers=2, decoder_heads=4, decoder_ffn_dim=512, fusion_stage="early", fusion_dim=512),
    "base": dict(width=64, d_model=768, num_layers=12, num_heads=12, ffn_dim=3072, depthwise_conv_kernel_size=31,
                 decoder_layers=6, decoder_heads=12, decoder_ffn_dim=3072, fusion_stage="late", fusion_dim=8192),
}
"""The registered sizes: builder ``avsr_<size>`` is ``AVSR(**AVSR_SIZES[size])``."""


def _fit(x: Tensor, steps: int) -> Tensor:
    """``x (B, T, D)`` cut or zero-padded to ``steps`` frames."""
    if x.shape[1] >= steps:
        return x[:, :steps]
    return torch.cat([x, x.new_zeros(x.shape[0], steps - x.shape[1], x.shape[2])], 1)


def _lengths(name: str, lengths: Tensor | None, batch: int, steps: int, device: torch.device) -> Tensor:
    """Checked ``(B,)`` int64 lengths on ``device``; ``None``: every sequence ``steps`` long."""
    if lengths is None:
        return torch.full((batch,), steps, dtype=torch.int64, device=device)
    if not isinstance(lengths, Tensor) or lengths.shape != (batch,) or lengths.is_floating_point():
        shape = tuple(lengths.shape) if isinstance(lengths, Tensor) else type(lengths).__name__
        raise ValueError(f"`{name}` must be an integer tensor of shape ({batch},), got {shape}.")
    if len(lengths) and (int(lengths.min()) < 0 or int(lengths.max()) > steps):
        raise ValueError(f"`{name}` must be in [0, {steps}] (the padded size), got {lengths.tolist()}.")
    return lengths.to(device=device, dtype=torch.int64)


class AVSR(nn.Module):
    """Hybrid CTC/attention audio-visual speech recognizer (see the module docstring).

    Inputs follow the audio-visual batch contract: ``video`` float ``(B, T_v, H, W)`` grayscale
    frames at 25 fps (normalised, zero-padded in time) with ``video_lengths`` ``(B,)``;
    ``audio`` float ``(B, N)`` 16 kHz waveforms with ``audio_lengths`` ``(B,)`` samples. The
    modality decides which are required; the other stream is ignored.

    ``input_convention = "audio_visual"``: the generic model tools cannot call ``forward`` with
    one tensor; :meth:`example_inputs` builds a valid keyword input, and ``example_input_size``
    maps each stream the model reads to one sample's shape (``"video"``: ``(T, H, W)``,
    ``"audio"``: ``(N,)``).

    Args:
        vocab_size: CTC outputs, the blank (id 0) included (29 for the character vocabulary).
            The decoder has ``vocab_size + 1`` outputs: id ``vocab_size`` is ``sos_eos``.
        modality: ``"audio"``, ``"video"`` or ``"audiovisual"``.
        width: Channels of the front-ends' first stage (their output: ``8 * width``).
        d_model: Width of the encoder and decoder.
        num_layers: Conformer blocks (per stream with ``fusion_stage="late"``).
        num_heads: Encoder attention heads; must divide ``d_model``.
        ffn_dim: Hidden size of the encoder's feed-forward modules.
        depthwise_conv_kernel_size: Taps of the encoder's depthwise convolutions; odd.
        decoder_layers: Transformer decoder layers.
        decoder_heads: Decoder attention heads (``None``: ``num_heads``); must divide ``d_model``.
        decoder_ffn_dim: Hidden size of the decoder's feed-forward layers (``None``: ``ffn_dim``).
        fusion_stage: ``"early"`` (fuse front-end features, one encoder) or ``"late"``
            (auto_avsr: one encoder per stream, fuse their outputs); audiovisual only.
        fusion_dim: Hidden size of the fusion MLP (``None``: ``4 * d_model``).
        activation: Front-end activation, one of ``("swish", "relu", "prelu")``.
        dropout: Dropout of the positions, encoder, CTC head and decoder, in ``[0, 1)``.
        samples_per_frame: Audio samples per encoder frame (640: 16 kHz audio with 25 fps video).
        frontend_checkpoint: Local path of pre-trained front-end weights (see the module
            docstring), or ``None``.

    Raises:
        ValueError: If an argument is out of range or ``frontend_checkpoint`` does not fit.

    Examples:
        >>> model = AVSR(vocab_size=29, modality="audiovisual", **AVSR_SIZES["tiny"]).eval()
        >>> video, audio = torch.randn(2, 10, 32, 32), torch.randn(2, 6400)
        >>> enc, lengths = model.encode(video, torch.tensor([10, 8]), audio, torch.tensor([6400, 6000]))
        >>> enc.shape, lengths.tolist()  # 6000 samples: 9 frames, the video has 8
        (torch.Size([2, 10, 32]), [10, 8])
        >>> model.ctc_logits(enc).shape, model.sos_eos
        (torch.Size([2, 10, 29]), 29)
        >>> model.decoder_logits(torch.tensor([[29, 3, 4], [29, 5, 0]]), enc, lengths).shape
        torch.Size([2, 3, 30])
    """

    input_convention = "audio_visual"
    """``encode(video, video_lengths, audio, audio_lengths) -> (encoder_out (B, T, D), lengths (B,))``."""

    def __init__(
        self,
        vocab_size: int = 29,
        modality: str = "audiovisual",
        width: int = 16,
        d_model: int = 128,
        num_layers: int = 4,
        num_heads: int = 4,
        ffn_dim: int = 512,
        depthwise_conv_kernel_size: int = 15,
        decoder_layers: int = 2,
        decoder_heads: int | None = None,
        decoder_ffn_dim: int | None = None,
        fusion_stage: str = "early",
        fusion_dim: int | None = None,
        activation: str = "swish",
        dropout: float = 0.1,
        samples_per_frame: int = 640,
        frontend_checkpoint: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        check_int("vocab_size", vocab_size, 2)
        check_choice("modality", modality, MODALITIES)
        decoder_heads = num_heads if decoder_heads is None else decoder_heads
        decoder_ffn_dim = ffn_dim if decoder_ffn_dim is None else decoder_ffn_dim
        fusion_dim = 4 * d_model if fusion_dim is None else fusion_dim
        check_sizes(width=width, d_model=d_model, num_layers=num_layers, num_heads=num_heads, ffn_dim=ffn_dim,
                    depthwise_conv_kernel_size=depthwise_conv_kernel_size, decoder_layers=decoder_layers,
                    decoder_heads=decoder_heads, decoder_ffn_dim=decoder_ffn_dim, fusion_dim=fusion_dim)
        for name, heads in (("num_heads", num_heads), ("decoder_heads", decoder_heads)):
            if d_model % heads:
                raise ValueError(f"`{name}` must divide `d_model` ({d_model}), got {heads}.")
        if depthwise_conv_kernel_size % 2 == 0:
            raise ValueError(f"`depthwise_conv_kernel_size` must be odd, got {depthwise_conv_kernel_size}.")
        check_choice("fusion_stage", fusion_stage, FUSION_STAGES)
        check_choice("activation", activation, FRONTEND_ACTIVATIONS)
        check_number("dropout", dropout, 0.0, 1.0, high_open=True)
        self.vocab_size, self.modality, self.d_model = vocab_size, modality, d_model
        self.sos_eos = vocab_size
        """Start/end-of-sentence id of the decoder (its last output), ESPnet's ``odim - 1``."""
        self.blank = 0
        self.fusion_stage = fusion_stage if modality == "audiovisual" else None
        self.uses_video, self.uses_audio = modality != "audio", modality != "video"
        self.example_input_size: dict[str, tuple[int, ...]] = {}
        if self.uses_video:
            self.video_frontend = VideoResNetFrontend(width, activation)
            self.video_proj = nn.Linear(self.video_frontend.out_features, d_model)
            self.example_input_size["video"] = (8, 32, 32)
        if self.uses_audio:
            self.audio_frontend = AudioResNetFrontend(width, activation, samples_per_frame)
            self.audio_proj = nn.Linear(self.audio_frontend.out_features, d_model)
            self.example_input_size["audio"] = (8 * samples_per_frame,)
        self.samples_per_frame = samples_per_frame
        if modality == "audiovisual":
            self.fusion = FusionMLP(2 * d_model, fusion_dim, d_model)
        self.pos_encoding = SinusoidalPositionalEncoding(d_model, dropout)

        def conformer() -> MaskedConformer:
            return MaskedConformer(input_dim=d_model, num_heads=num_heads, ffn_dim=ffn_dim, num_layers=num_layers,
                                   depthwise_conv_kernel_size=depthwise_conv_kernel_size, dropout=dropout)

        self.encoder = conformer()
        if self.fusion_stage == "late":
            self.audio_encoder = conformer()
        self.ctc_dropout = nn.Dropout(dropout)
        self.ctc_head = nn.Linear(d_model, vocab_size)
        self.decoder = AttentionDecoder(vocab_size + 1, d_model, decoder_layers, decoder_heads, decoder_ffn_dim,
                                        dropout)
        if frontend_checkpoint is not None:
            self.load_frontend(frontend_checkpoint)

    # ------------------------------------------------------------------ front-ends
    def load_frontend(self, path: str | os.PathLike) -> list[str]:
        """Load pre-trained front-end weights from a local state-dict file; return the loaded front-ends.

        Raises:
            ValueError: If the file is missing, holds no weights of a front-end this modality
                uses, or its weights do not fit.
        """
        file = Path(path).expanduser()
        if not file.is_file():
            raise ValueError(f"`frontend_checkpoint` must be the path of a saved state dict, got {str(path)!r} "
                             "(no such file).")
        state = torch.load(file, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"`frontend_checkpoint` must hold a state dict, got a {type(state).__name__} in {file}.")
        state = {(k[len("model."):] if k.startswith("model.") else k): v for k, v in state.items()}
        loaded = []
        for name in ("video_frontend", "audio_frontend"):
            if not hasattr(self, name):
                continue
            sub = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(f"{name}.")}
            if not sub:
                continue
            try:
                getattr(self, name).load_state_dict(sub, strict=True)
            except RuntimeError as err:
                raise ValueError(f"`frontend_checkpoint` {file}: the `{name}` weights do not fit ({err}).") from err
            loaded.append(name)
        if not loaded:
            wanted = [n for n in ("video_frontend", "audio_frontend") if hasattr(self, n)]
            raise ValueError(f"`frontend_checkpoint` {file} has no weights for {wanted} (keys starting with "
                             f"{[n + '.' for n in wanted]}); found keys like {sorted(state)[:3]}.")
        return loaded

    def _video_features(self, video: Any, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        if not isinstance(video, Tensor) or video.dim() != 4:
            shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
            raise ValueError(f"`video` must be grayscale frames (B, T, H, W), got {shape}.")
        lengths = _lengths("video_lengths", lengths, video.shape[0], video.shape[1], video.device)
        video = video * _valid_mask(lengths, video.shape[1])[:, :, None, None].to(video.dtype)  # padding is zero
        return self.video_proj(self.video_frontend(video)), lengths

    def _audio_features(self, audio: Any, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        if not isinstance(audio, Tensor) or audio.dim() != 2:
            shape = tuple(audio.shape) if isinstance(audio, Tensor) else type(audio).__name__
            raise ValueError(f"`audio` must be mono waveforms (B, N), got {shape}.")
        lengths = _lengths("audio_lengths", lengths, audio.shape[0], audio.shape[1], audio.device)
        features, frames = self.audio_frontend(audio, lengths)
        return self.audio_proj(features), frames

    # ------------------------------------------------------------------ the model
    def encode(
        self,
        video: Tensor | None = None,
        video_lengths: Tensor | None = None,
        audio: Tensor | None = None,
        audio_lengths: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Encoder output ``(B, T, d_model)`` at 25 Hz and each utterance's valid frames ``(B,)``.

        ``T`` is the longest utterance's frames (at least 1); a length may be 0 (audio shorter
        than one frame), then the CTC loss is infinite (``zero_infinity`` sets it to 0).

        Raises:
            ValueError: If a stream the modality needs is missing or a shape does not fit.
        """
        for name, needed, value in (("video", self.uses_video, video), ("audio", self.uses_audio, audio)):
            if needed and value is None:
                raise ValueError(f"`{name}` is required for modality {self.modality!r}, got None.")
        streams, lengths = [], None
        if self.uses_video:
            v, lengths = self._video_features(video, video_lengths)
            streams.append(v)
        if self.uses_audio:
            a, a_lengths = self._audio_features(audio, audio_lengths)
            if lengths is not None and len(a_lengths) != len(lengths):
                raise ValueError(f"`video` and `audio` must have the same batch size, got {len(lengths)} and "
                                 f"{len(a_lengths)}.")
            lengths = a_lengths if lengths is None else torch.minimum(lengths, a_lengths)
            streams.append(a)
        steps = max(int(lengths.max()), 1) if len(lengths) else 1
        streams = [_fit(x, steps) for x in streams]
        enc_lengths = lengths.clamp(1, steps)  # torchaudio's mask spans max(lengths): every sequence has >= 1 frame
        if self.fusion_stage == "late":
            v, _ = self.encoder(self.pos_encoding(streams[0]), enc_lengths)
            a, _ = self.audio_encoder(self.pos_encoding(streams[1]), enc_lengths)
            return self.fusion(torch.cat([v, a], -1)), lengths
        x = self.fusion(torch.cat(streams, -1)) if self.fusion_stage == "early" else streams[0]
        x, _ = self.encoder(self.pos_encoding(x), enc_lengths)
        return x, lengths

    def ctc_logits(self, encoder_out: Tensor) -> Tensor:
        """CTC logits ``(B, T, vocab_size)`` of the encoder output (dropout first in training)."""
        return self.ctc_head(self.ctc_dropout(encoder_out))

    def decoder_logits(self, tokens: Tensor, encoder_out: Tensor, encoder_lengths: Tensor | None = None) -> Tensor:
        """Next-token logits ``(B, U, vocab_size + 1)`` for decoder inputs ``tokens (B, U)``
        (``sos_eos`` first, e.g. from :func:`lightning_sparse.core.seq2seq.add_sos_eos`)."""
        return self.decoder(tokens, encoder_out, encoder_lengths)

    def forward(
        self,
        video: Tensor | None = None,
        video_lengths: Tensor | None = None,
        audio: Tensor | None = None,
        audio_lengths: Tensor | None = None,
        tokens: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """``{"encoder_out" (B, T, D), "lengths" (B,), "ctc_logits" (B, T, vocab_size)}``, plus
        ``"decoder_logits"`` ``(B, U, vocab_size + 1)`` when decoder input ``tokens`` are given."""
        encoder_out, lengths = self.encode(video, video_lengths, audio, audio_lengths)
        out = {"encoder_out": encoder_out, "lengths": lengths, "ctc_logits": self.ctc_logits(encoder_out)}
        if tokens is not None:
            out["decoder_logits"] = self.decoder_logits(tokens, encoder_out, lengths)
        return out

    def example_inputs(self, batch_size: int = 2, frames: int = 8, size: int = 32) -> dict[str, Tensor]:
        """Random keyword inputs for :meth:`forward` / :meth:`encode`: ``frames`` frames of
        ``size x size`` video and/or the matching audio, every sequence full length."""
        inputs: dict[str, Tensor] = {}
        if self.uses_video:
            inputs["video"] = torch.randn(batch_size, frames, size, size)
            inputs["video_lengths"] = torch.full((batch_size,), frames, dtype=torch.int64)
        if self.uses_audio:
            samples = frames * self.samples_per_frame
            inputs["audio"] = torch.randn(batch_size, samples)
            inputs["audio_lengths"] = torch.full((batch_size,), samples, dtype=torch.int64)
        return inputs


def _build(defaults: dict[str, Any], kwargs: dict[str, Any]) -> AVSR:
    """``AVSR(**defaults, **kwargs)``; ``num_classes`` (the registry's common name for the number
    of outputs) is ``vocab_size``."""
    if "num_classes" in kwargs:
        num_classes = kwargs.pop("num_classes")
        if kwargs.setdefault("vocab_size", num_classes) != num_classes:
            raise ValueError(
                f"`num_classes` is `vocab_size` here and must match it, got {num_classes} and {kwargs['vocab_size']}."
            )
    return AVSR(**{**defaults, **kwargs})


def avsr(size: str = "small", **kwargs: Any) -> AVSR:
    """The ``size`` preset of :data:`AVSR_SIZES` (``"tiny"``, ``"small"``, ``"base"``) with overrides.

    Examples:
        >>> avsr("tiny", modality="video", num_layers=1).modality
        'video'
    """
    check_choice("size", size, tuple(AVSR_SIZES))
    return _build(AVSR_SIZES[size], kwargs)


register_model(avsr)


@register_model
def avsr_tiny(**kwargs: Any) -> AVSR:
    """For tests: width 8, d_model 32, 2 encoder layers, 2 heads, ffn 64, kernel 7, 1 decoder layer."""
    return _build(AVSR_SIZES["tiny"], kwargs)


@register_model
def avsr_small(**kwargs: Any) -> AVSR:
    """CPU scale: width 16, d_model 128, 4 encoder layers, 4 heads, ffn 512, kernel 15, 2 decoder layers."""
    return _build(AVSR_SIZES["small"], kwargs)


@register_model
def avsr_base(**kwargs: Any) -> AVSR:
    """auto_avsr's sizes: width 64, d_model 768, 12 layers per stream, 12 heads, ffn 3072, kernel 31,
    6 decoder layers, late fusion with an 8192-wide MLP."""
    return _build(AVSR_SIZES["base"], kwargs)
