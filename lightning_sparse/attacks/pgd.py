"""Projected gradient descent (PGD), the L-inf adversarial attack of adversarial training.

Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks",
arXiv:1706.06083: from a uniform random start in the eps-ball around ``x``, ``steps`` times take
a step of size ``alpha`` along the sign of the input gradient of the loss, then project back to
the eps-ball and to the valid pixel range ``[0, 1]``.

The attack lives in *pixel* space even when the model eats normalised inputs: given ``mean`` and
``std`` (per channel), ``x`` is read as ``(pixels - mean) / std``, converted to pixels, attacked
there (so ``eps = 8/255`` means 8 grey levels, as in the paper), and the result is normalised
again. This is what the reference code of the sparse-robustness papers gets by putting the
normalisation inside the model (``QiaoXiao7282/hard_sample_learners``,
``adversarial_training/utils.py``: advertorch's ``LinfPGDAttack`` with ``clip_min=0``,
``clip_max=1`` on a model whose first layer is ``NormalizeByChannelMeanStd``).

Deviations from advertorch's ``LinfPGDAttack`` (the reference's implementation): none in the
maths (uniform start in ``[-eps, eps]`` clipped to the pixel range, sign steps, projection after
every step, summed cross-entropy); the input gradient comes from ``torch.autograd.grad``, so no
``.grad`` is left on the parameters and no parameter-gradient hook (DDP's, a mask's) fires.

The attack runs in whatever train/eval mode the caller put the model in; it does not switch it
(and restores every module's flag should a forward switch one). In train mode, batch norm uses
batch statistics and updates its running statistics at every attack step, as in the reference's
training loop; see :class:`lightning_sparse.callbacks.adversarial.AdversarialTraining`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["as_channel_stats", "pgd"]

RANGE_TOLERANCE = 1e-2
"""How far outside ``[0, 1]`` a pixel of the clean input may lie before :func:`pgd` refuses it:
rounding of the (de)normalisation stays far below it, normalised inputs read as pixels (no
``mean``/``std`` given) far above it (CIFAR's darkest pixel normalises to about -2)."""

Stats = float | Sequence[float] | Tensor


def _check_number(name: str, value: object, low: float = 0.0) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low:
        raise ValueError(f"`{name}` must be a finite number >= {low:g}, got {value!r}.")
    return float(value)


def as_channel_stats(mean: Stats | None, std: Stats | None) -> tuple[Tensor, Tensor] | None:
    """``mean`` and ``std`` as 1-D float32 tensors of equal length (``None`` for neither).

    Args:
        mean: Per-channel mean of the normalisation on the ``[0, 1]`` scale: a number (every
            channel), a sequence or a tensor.
        std: Per-channel standard deviation, all positive; the same length as ``mean``.

    Raises:
        ValueError: If only one is given, the lengths differ, a value is not finite or a std is
            not positive.

    Examples:
        >>> as_channel_stats([0.5, 0.4], (0.2, 0.25))
        (tensor([0.5000, 0.4000]), tensor([0.2000, 0.2500]))
        >>> as_channel_stats(0.5, None)
        Traceback (most recent call last):
        ...
        ValueError: `mean` and `std` must be given together (or neither), got mean=0.5 and std=None.
    """
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise ValueError(f"`mean` and `std` must be given together (or neither), got mean={mean!r} and std={std!r}.")
    stats = []
    for name, value in (("mean", mean), ("std", std)):
        try:
            t = torch.as_tensor(value, dtype=torch.float32).detach().cpu().flatten().clone()
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"`{name}` must be a number, a sequence of numbers or a tensor, got {value!r}.") from None
        if t.numel() == 0 or not torch.isfinite(t).all():
            raise ValueError(f"`{name}` must hold at least one finite value per channel, got {value!r}.")
        stats.append(t)
    if stats[0].numel() != stats[1].numel():
        raise ValueError(f"`mean` and `std` must have the same length, got {stats[0].numel()} and {stats[1].numel()}.")
    if (stats[1] <= 0).any():
        raise ValueError(f"`std` must be positive in every channel, got {stats[1].tolist()}.")
    return stats[0], stats[1]


def _broadcast(stat: Tensor, x: Tensor, name: str) -> Tensor:
    """``(C,)`` -> ``(1, C, 1, ...)`` on ``x``'s device, float32; one value broadcasts to every channel."""
    if stat.numel() != 1 and (x.dim() < 2 or x.shape[1] != stat.numel()):
        raise ValueError(
            f"`{name}` has {stat.numel()} values but `x` of shape {tuple(x.shape)} has "
            f"{x.shape[1] if x.dim() > 1 else 'no'} channels (dimension 1)."
        )
    shape = (1, -1) + (1,) * (x.dim() - 2) if stat.numel() != 1 else (1,) * x.dim()
    return stat.to(x.device).view(shape)


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float = 8 / 255,
    alpha: float = 2 / 255,
    steps: int = 10,
    random_start: bool = True,
    mean: Stats | None = None,
    std: Stats | None = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """L-inf PGD adversarial examples for ``model`` at ``(x, y)`` (Madry et al. 2018, arXiv:1706.06083).

    "Towards Deep Learning Models Resistant to Adversarial Attacks" (2018): ``delta`` starts
    uniform in ``[-eps, eps]`` (or at 0), then ``steps`` times
    ``delta <- clip_eps(delta + alpha * sign(grad_delta loss(model(x + delta), y)))``, with
    ``x + delta`` clipped to ``[0, 1]`` in pixel space after the start and every step. The
    perturbation is computed in float32 with autocast disabled; the model gets ``x``'s dtype.
    Works inside ``torch.no_grad`` / ``torch.inference_mode`` (it enables gradients itself).

    The model runs in the train/eval mode the caller set (evaluation: ``model.eval()``; the
    training callback follows the reference code and attacks in train mode), and every module's
    mode is as before on return.

    Args:
        model: Maps a batch like ``x`` to logits ``(B, num_classes)``.
        x: Clean inputs ``(B, C, ...)``: pixels in ``[0, 1]``, or normalised with ``mean``/``std``.
        y: Labels ``(B,)`` (or whatever ``loss_fn`` takes).
        eps: Radius of the L-inf ball in pixel units, e.g. ``8/255``; 0 returns ``x``.
        alpha: Step size in pixel units, e.g. ``2/255``.
        steps: Number of gradient steps; 0 returns the random start (``x`` without one).
        random_start: Start uniformly in the eps-ball (the paper's PGD) instead of at ``x``.
        mean: Per-channel mean of ``x``'s normalisation (pixels = ``x * std + mean``), or None
            when ``x`` already is in ``[0, 1]``.
        std: Per-channel std of the normalisation, given with ``mean``.
        loss_fn: ``loss_fn(logits, y)`` to ascend (default: summed cross-entropy); only the sign
            of its gradient is used, so a mean and a sum give the same attack.
        generator: Draws the random start (seeded runs); on any device.

    Returns:
        The adversarial inputs, detached, in ``x``'s space (normalised when ``x`` is) and dtype.

    Raises:
        ValueError: For a bad argument, ``mean``/``std`` that do not match ``x``'s channels, a
            non-floating ``x``, or pixels outside ``[0, 1]`` (normalised inputs without
            ``mean``/``std``).

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
        >>> x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
        >>> x_adv = pgd(model, x, y, eps=0.1, alpha=0.05, steps=5)
        >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6), bool(x_adv.min() >= 0), bool(x_adv.max() <= 1)
        (True, True, True)
        >>> loss = nn.functional.cross_entropy
        >>> bool(loss(model(x_adv), y) > loss(model(x), y))
        True
        >>> mean, std = (0.5, 0.4, 0.3), (0.2, 0.2, 0.3)
        >>> x_norm = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        >>> x_adv = pgd(model, x_norm, y, eps=0.1, steps=5, mean=mean, std=std)
        >>> pixels = x_adv * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
        >>> bool((pixels - x).abs().max() <= 0.1 + 1e-5)
        True
    """
    eps = _check_number("eps", eps)
    alpha = _check_number("alpha", alpha)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"`steps` must be an integer >= 0, got {steps!r}.")
    if not isinstance(random_start, bool):
        raise ValueError(f"`random_start` must be True or False, got {random_start!r}.")
    if not isinstance(x, Tensor) or not x.is_floating_point():
        kind = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"`x` must be a floating-point tensor, got {kind}.")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"`generator` must be a torch.Generator or None, got {type(generator).__name__}.")
    loss_fn = loss_fn or (lambda logits, target: F.cross_entropy(logits, target, reduction="sum"))

    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        stats = as_channel_stats(mean, std)  # made here: an inference tensor could not enter autograd
        clean = x.detach().clone() if x.is_inference() else x.detach()  # inference tensors: no autograd
        if isinstance(y, Tensor) and y.is_inference():
            y = y.clone()
        if stats is None:  # pixels already: the identity normalisation (exact in float)
            stats = torch.zeros(1), torch.ones(1)
        m, s = _broadcast(stats[0], clean, "mean"), _broadcast(stats[1], clean, "std")  # (1, C, 1, ...)
        pixels = clean.float() * s + m  # (B, C, ...) in [0, 1]

        def to_input(p: Tensor) -> Tensor:
            return ((p - m) / s).to(x.dtype)

        low, high = pixels.min().item(), pixels.max().item()
        if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
            where = "with the given `mean`/`std`" if mean is not None else "(pass `mean`/`std` for normalised inputs)"
            raise ValueError(f"`x` must lie in [0, 1] in pixel space {where}, got values in [{low:.3g}, {high:.3g}].")
        if eps == 0 or (steps == 0 and not random_start):
            return x.detach().clone()

        delta = torch.zeros_like(pixels)
        if random_start:
            device = generator.device if generator is not None else pixels.device
            noise = torch.rand(pixels.shape, generator=generator, device=device, dtype=torch.float32)
            delta = (2 * noise - 1).mul_(eps).to(pixels.device)
        delta = (pixels + delta).clamp_(0, 1) - pixels
        modes = [(module, module.training) for module in model.modules()]
        try:
            for _ in range(steps):
                delta.requires_grad_(True)
                loss = loss_fn(model(to_input(pixels + delta)), y)
                (grad,) = torch.autograd.grad(loss, delta)
                delta = (delta.detach() + alpha * grad.sign()).clamp_(-eps, eps)
                delta = (pixels + delta).clamp_(0, 1) - pixels
        finally:
            for module, training in modes:
                module.training = training
        return to_input(pixels + delta).detach()
